"""Cleaning of the Debian source: which extracted paragraphs are kept (length, language, first occurrence).

Pages give headings, option names, untranslated English and boilerplate repeated across packages
(translator credits, "report bugs to"); `filter_paragraphs` drops them and counts why, so that
the build can say what was dropped when too little text is left.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from mer.data.sources.debian_extract import language_ok, normalize_for_dedup, text_width

if TYPE_CHECKING:
    from mer.data.sources.debian_config import DebianDocsConfig


def filter_paragraphs(paragraphs: list[str], language: str, cfg: DebianDocsConfig, seen: set[bytes],
                      stats: dict[str, int] | None = None) -> list[str]:
    """The paragraphs kept: long enough, in `language`, not seen before (`seen` is updated).

    `stats`, when given, counts the dropped ones under "short", "wrong_language" and "duplicate".
    """
    stats = stats if stats is not None else {}
    kept = []
    for p in paragraphs:
        if text_width(p) < cfg.min_paragraph_chars:
            reason = "short"
        elif cfg.language_check and not language_ok(p, language, cfg.min_script_share):
            reason = "wrong_language"
        else:
            key = hashlib.blake2b(normalize_for_dedup(p).encode("utf-8"), digest_size=16).digest()
            if key not in seen:
                seen.add(key)
                kept.append(p)
                continue
            reason = "duplicate"
        stats[reason] = stats.get(reason, 0) + 1
    return kept
