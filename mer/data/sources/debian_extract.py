"""Text extraction for the Debian documentation source: HTML and man pages -> paragraphs, language check.

The rule that turns a package's pages into paragraphs, in one place to import from, and its
version. Pure functions on strings, no I/O beyond `read_html_file` / `read_man_file`, so they are
tested on exact inputs. The work is done by one module per job:

- `debian_html`: `html_paragraphs`, the prose of a DocBook / LibreOffice-help / GIMP-help page,
  one string per block element (p, li, td, h1...), navigation, tables of contents, scripts and
  code listings left out;
- `debian_man` (with `debian_roff` for the escapes): `man_paragraphs`, the prose of a roff man page
  (man(7) macros and the common mdoc(7) ones), one string per filled paragraph; no-fill blocks
  (examples, tables, verbatim) left out;
- `debian_language`: `language_ok`, a cheap check that a paragraph is prose in the expected
  language (script share, and function words for Latin-script languages);
- `debian_text`: joining lines and measuring paragraphs with CJK text in mind.

`EXTRACTOR_VERSION` names the rule of all of them: bump it whenever a change in any of those
modules changes the extracted text, so that cached corpora are rebuilt.
"""

from __future__ import annotations

from mer.data.sources.debian_html import decode_html, html_paragraphs, read_html_file
from mer.data.sources.debian_language import (
    STOP_WORDS,
    SUPPORTED_CHECK_LANGUAGES,
    language_ok,
    script_counts,
)
from mer.data.sources.debian_man import decode_man, man_paragraphs, read_man_file
from mer.data.sources.debian_text import join_lines, normalize_for_dedup, text_width

EXTRACTOR_VERSION = 1
"""Version of the extraction + language-check rule; part of every Debian corpus fingerprint."""

__all__ = [
    "EXTRACTOR_VERSION",
    "STOP_WORDS",
    "SUPPORTED_CHECK_LANGUAGES",
    "decode_html",
    "decode_man",
    "html_paragraphs",
    "join_lines",
    "language_ok",
    "man_paragraphs",
    "normalize_for_dedup",
    "read_html_file",
    "read_man_file",
    "script_counts",
    "text_width",
]
