"""The configuration of the Debian documentation source (`DebianDocsConfig`), checked when it is made.

What may be asked of the source (fields, defaults, limits) reads here on its own, apart from the
build; every mistake is named with its field when the config is made, before anything is downloaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from mer.data.sources.debian_packages import SUPPORTED_LANGUAGES, package_spec_problem


def default_cache_dir() -> str:
    """$XDG_CACHE_HOME/mer/debian (~/.cache/mer/debian): where `cache_dir: null` puts the cache."""
    return str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mer" / "debian")


@dataclass
class DebianDocsConfig:
    """Which Debian documentation to turn into text, and how."""

    languages: list[str] = field(default_factory=lambda: ["en", "fr", "de", "ar", "ja"])
    """Languages built by `build_debian_corpora` and the command line; each one of SUPPORTED_LANGUAGES."""
    packages: dict[str, list[str]] = field(default_factory=dict)
    """Per-language override of DEFAULT_PACKAGES, e.g. {"fr": ["debian-reference-fr", "maint-guide-fr"]}.
    An entry is a package name, or "name:path/inside/package/" to read only that folder; known
    multi-language packages (debian-handbook, installation-guide-*) get the language's folder."""
    cache_dir: str | None = None
    """Folder of downloaded .deb files and extracted text; None: $XDG_CACHE_HOME/mer/debian (~/.cache/mer/debian)."""
    val_percent: int = 5
    """Percent of source files (documents) held out for validation, chosen by a hash of package + path; 1..50."""
    min_paragraph_chars: int = 50
    """Shorter paragraphs (headings, option names, menu paths) are dropped; CJK characters count twice."""
    max_packages: int | None = None
    """Use at most this many of the language's packages (the first ones of the list); None: all."""
    language_check: bool = True
    """Drop paragraphs that are not in the expected language (script share + function words)."""
    min_script_share: float = 0.5
    """Language check: least share of a paragraph's letters in the language's script, in (0, 1]."""
    min_total_chars: int = 20_000
    """A language whose kept text is shorter than this is an error (nothing usable was extracted)."""
    keep_debs: bool = True
    """Keep downloaded .deb files in <cache_dir>/debs so that a rule change re-extracts without downloading."""

    def __post_init__(self) -> None:
        supported = ", ".join(SUPPORTED_LANGUAGES)
        if isinstance(self.languages, str):
            raise ValueError(f"languages must be a list such as ['fr', 'de'], not the string {self.languages!r}")
        for lang in list(self.languages) + list(self.packages):
            if lang not in SUPPORTED_LANGUAGES:
                raise ValueError(
                    f"languages/packages: unknown language {lang!r}; supported: {supported} "
                    "(for another language use the user-corpus source, source: files)"
                )
        if len(set(self.languages)) != len(self.languages):
            raise ValueError(f"languages: {list(self.languages)} lists a language twice; list each once")
        for lang, specs in self.packages.items():
            if isinstance(specs, str) or not specs:
                raise ValueError(f"packages[{lang!r}]: give a non-empty list of package names, got {specs!r}")
            for spec in specs:
                if (problem := package_spec_problem(spec)) is not None:
                    raise ValueError(f"packages[{lang!r}]: {problem}")
        if not isinstance(self.val_percent, int) or not 1 <= self.val_percent <= 50:
            raise ValueError(f"val_percent: must be an integer from 1 to 50, got {self.val_percent!r}")
        if not isinstance(self.min_paragraph_chars, int) or self.min_paragraph_chars < 1:
            raise ValueError(f"min_paragraph_chars: must be a positive integer, got {self.min_paragraph_chars!r}")
        if self.max_packages is not None and (not isinstance(self.max_packages, int) or self.max_packages < 1):
            raise ValueError(f"max_packages: must be a positive integer or None (all), got {self.max_packages!r}")
        if not 0 < self.min_script_share <= 1:
            raise ValueError(f"min_script_share: must be in (0, 1], got {self.min_script_share!r}")
        if not isinstance(self.min_total_chars, int) or self.min_total_chars < 0:
            raise ValueError(f"min_total_chars: must be a non-negative integer, got {self.min_total_chars!r}")

    def resolved_cache_dir(self) -> Path:
        """The cache folder, with ~ expanded and the default filled in."""
        return Path(self.cache_dir or default_cache_dir()).expanduser()
