"""Whitespace and character widths shared by the Debian page readers and the paragraph filter.

Japanese and Chinese are written without spaces, so joining lines, measuring a paragraph and
comparing two paragraphs all need to know which characters are CJK; keeping that in one place
makes the HTML reader, the man page reader and the filter agree. Part of the extraction rule
(`debian_extract.EXTRACTOR_VERSION`).
"""

from __future__ import annotations

import re
import unicodedata

_WS = re.compile(r"\s+")


def is_wide(ch: str) -> bool:
    """CJK ideographs, kana, Hangul and full-width forms: scripts written without spaces."""
    o = ord(ch)
    return (
        0x3000 <= o <= 0x30FF  # CJK punctuation, hiragana, katakana
        or 0x3400 <= o <= 0x4DBF  # CJK extension A
        or 0x4E00 <= o <= 0x9FFF  # CJK unified ideographs
        or 0xF900 <= o <= 0xFAFF  # CJK compatibility ideographs
        or 0xFF00 <= o <= 0xFFEF  # full-width forms
        or 0xAC00 <= o <= 0xD7AF  # Hangul syllables
        or 0x31F0 <= o <= 0x31FF  # katakana phonetic extensions
    )


def join_lines(parts: list[str]) -> str:
    """Join the lines of one paragraph: a space between them, none between two CJK characters.

    Japanese and Chinese sources break lines inside sentences; a space there would be noise.
    Inner whitespace is collapsed and the result stripped.
    """
    out = ""
    for part in parts:
        part = _WS.sub(" ", part).strip()
        if not part:
            continue
        if out and not (is_wide(out[-1]) and is_wide(part[0])):
            out += " "
        out += part
    return out


def text_width(text: str) -> int:
    """Length of `text` with CJK characters counted twice (a CJK character carries about a word)."""
    return sum(2 if is_wide(c) else 1 for c in text)


def normalize_for_dedup(paragraph: str) -> str:
    """The form under which two paragraphs count as duplicates: NFKC, case-folded, whitespace collapsed."""
    return _WS.sub(" ", unicodedata.normalize("NFKC", paragraph).casefold()).strip()
