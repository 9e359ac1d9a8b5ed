"""Language check of the Debian source: is a paragraph prose in the expected language?

Translated packages still hold untranslated English paragraphs, command lines and option lists;
`language_ok` drops them cheaply, without a model: the share of letters in the language's script,
plus for Latin-script languages a count of common function words that must beat every other
supported Latin-script language. Part of the extraction rule (`debian_extract.EXTRACTOR_VERSION`).
"""

from __future__ import annotations

import re

from mer.data.sources.debian_text import is_wide

# Common function words of the supported Latin-script languages (lowercase). Shared words
# ("la", "de", "in"...) count for every language that has them, so they cancel out.
STOP_WORDS: dict[str, frozenset[str]] = {
    "en": frozenset(
        "the of and to in is that for it with as on be by this are or an from at which not you your "
        "can if will has have was when these use used all more than other its into should may such "
        "also only must there their they we does do been were would how what".split()
    ),
    "fr": frozenset(
        "le la les de des du un une et est en que qui pour dans sur pas par au aux ce cette ces avec "
        "il elle sont ou plus se ne vous votre vos peut être sa son ses mais comme si l d qu n c "
        "leur tout tous aussi lorsque dont être été sont fait".split()
    ),
    "de": frozenset(
        "der die das und ist nicht ein eine einen einem einer zu den dem des mit auf für von im "
        "sich auch es sie werden wird kann können oder wenn bei aus nach als wie sind dass diese "
        "dieser dieses nur über noch zum zur um sein wurde in ihre ihr man".split()
    ),
    "es": frozenset(
        "el la los las de del y que en un una es por para con no se su sus al lo como más pero este "
        "esta estos son puede o si también cuando entre sin sobre ya hay muy desde todo ser está "
        "usted".split()
    ),
    "it": frozenset(
        "il lo la i gli le di del della dei delle degli e è che un una uno per con non in nel nella "
        "da dal dalla si sono come più ma questo questa anche se può essere al alla ad ed o tra "
        "tutti l dell all nell sull viene".split()
    ),
}

# Letter ranges of the non-Latin scripts. Kana is what tells Japanese from Chinese.
_SCRIPT_RANGES = {
    "cyrillic": ((0x0400, 0x052F),),
    "arabic": ((0x0600, 0x06FF), (0x0750, 0x077F), (0x08A0, 0x08FF), (0xFB50, 0xFDFF), (0xFE70, 0xFEFF)),
    "han": ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF)),
    "kana": ((0x3040, 0x30FF), (0x31F0, 0x31FF), (0xFF66, 0xFF9F)),
}
_LANGUAGE_SCRIPT = {"en": "latin", "fr": "latin", "de": "latin", "es": "latin", "it": "latin",
                    "ru": "cyrillic", "ar": "arabic", "ja": "japanese", "zh": "han"}
SUPPORTED_CHECK_LANGUAGES = tuple(_LANGUAGE_SCRIPT)

_WORD = re.compile(r"[^\W\d_]+")


def _script_of(ch: str) -> str | None:
    o = ord(ch)
    for script, ranges in _SCRIPT_RANGES.items():
        if any(lo <= o <= hi for lo, hi in ranges):
            return script
    if ch.isalpha() and (o < 0x0250 or 0x1E00 <= o <= 0x1EFF):
        return "latin"
    return None


def script_counts(text: str) -> dict[str, int]:
    """Number of letters of each script in `text` (latin, cyrillic, arabic, han, kana)."""
    counts: dict[str, int] = {}
    for ch in text:
        if ch.isalpha() or is_wide(ch):
            s = _script_of(ch)
            if s is not None:
                counts[s] = counts.get(s, 0) + 1
    return counts


def language_ok(paragraph: str, language: str, min_script_share: float = 0.5) -> bool:
    """Whether `paragraph` reads as prose in `language` (a code of `SUPPORTED_CHECK_LANGUAGES`).

    Non-Latin scripts: at least `min_script_share` of the letters in the language's script
    (for Japanese and Chinese, CJK characters weigh 3 letters, about one word each); Japanese
    needs kana (10% of its CJK characters), Chinese must have (almost) none. Latin scripts: at
    least that share of Latin letters, and function words of the language: at least 2, at least
    8% of the words, and strictly more than for any other supported Latin-script language.
    """
    if language not in _LANGUAGE_SCRIPT:
        raise ValueError(f"no language check for {language!r}; supported: {', '.join(_LANGUAGE_SCRIPT)}")
    counts = script_counts(paragraph)
    script = _LANGUAGE_SCRIPT[language]
    if script in ("japanese", "han"):
        han, kana = counts.get("han", 0), counts.get("kana", 0)
        cjk = han + kana
        others = sum(v for k, v in counts.items() if k not in ("han", "kana"))
        if cjk == 0 or 3 * cjk < min_script_share * (3 * cjk + others):
            return False
        if script == "japanese":
            return kana >= 0.1 * cjk
        return kana <= 0.02 * cjk
    letters = sum(counts.values())
    if letters == 0 or counts.get(script, 0) < min_script_share * letters:
        return False
    if script != "latin":
        return True
    words = [w.casefold() for w in _WORD.findall(paragraph)]
    if not words:
        return False
    scores = {lang: sum(w in stops for w in words) for lang, stops in STOP_WORDS.items()}
    own = scores.pop(language)
    return own >= 2 and own >= 0.08 * len(words) and all(own > s for s in scores.values())
