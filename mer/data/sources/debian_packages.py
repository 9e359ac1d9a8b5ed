"""Which Debian packages the `source: debian` corpus of each language reads, and where its pages sit in them.

The defaults (`DEFAULT_PACKAGES`) were chosen by hand from the archive; a configuration may
replace them per language (`DebianDocsConfig.packages`). Packages that hold several languages
(debian-handbook, installation-guide-*) and the usual documentation families get the folder of
the language's pages, so that only those are read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from mer.data.corpus import DataError

SUPPORTED_LANGUAGES = ("en", "fr", "de", "es", "it", "ru", "ja", "zh", "ar")
"""Languages with default packages and a language check."""

# Where each language sits inside the packages that hold several languages.
_HANDBOOK_DIRS = {"en": "en-US", "fr": "fr-FR", "de": "de-DE", "es": "es-ES", "it": "it-IT",
                  "ru": "ru-RU", "ja": "ja-JP", "zh": "zh-CN", "ar": "ar-MA"}
_INSTALL_GUIDE_DIRS = {"en": "en", "fr": "fr", "de": "de", "es": "es", "it": "it", "ru": "ru",
                       "ja": "ja", "zh": "zh_CN"}
_INSTALL_GUIDE = "installation-guide-amd64"  # Architecture: all; the amd64 text is the most complete

# Default packages per language, smallest and most prose-like first (max_packages keeps a prefix).
# Found with `apt-cache search` on Debian 12 (bookworm); languages missing from a family have no
# translation there (no debian-reference-ru, no Arabic man pages, help or installation guide).
DEFAULT_PACKAGES: dict[str, tuple[str, ...]] = {
    "en": ("debian-reference-en", "manpages", "debian-handbook", _INSTALL_GUIDE,
           "libreoffice-help-en-us", "gimp-help-en", "manpages-dev"),
    "fr": ("debian-reference-fr", "manpages-fr", "debian-handbook", _INSTALL_GUIDE,
           "libreoffice-help-fr", "gimp-help-fr", "manpages-fr-dev"),
    "de": ("debian-reference-de", "manpages-de", "debian-handbook", _INSTALL_GUIDE,
           "libreoffice-help-de", "gimp-help-de", "manpages-de-dev"),
    "es": ("debian-reference-es", "manpages-es", "debian-handbook", _INSTALL_GUIDE,
           "libreoffice-help-es", "gimp-help-es", "manpages-es-dev"),
    "it": ("debian-reference-it", "manpages-it", "debian-handbook", _INSTALL_GUIDE,
           "libreoffice-help-it", "gimp-help-it", "manpages-it-dev"),
    "ru": ("manpages-ru", "debian-handbook", _INSTALL_GUIDE, "libreoffice-help-ru",
           "gimp-help-ru", "manpages-ru-dev"),
    "ja": ("debian-reference-ja", "manpages-ja", "debian-handbook", _INSTALL_GUIDE,
           "libreoffice-help-ja", "gimp-help-ja", "manpages-ja-dev"),
    "zh": ("debian-reference-zh-cn", "manpages-zh", "debian-handbook", _INSTALL_GUIDE,
           "libreoffice-help-zh-cn", "gimp-help-zh-cn"),
    "ar": ("debian-handbook",),
}

PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
"""What a package name may look like (Debian policy 5.6.1): checked in the configuration."""


def package_spec_problem(spec: object) -> str | None:
    """Why `spec` ("name" or "name:path/inside/package/") cannot name a package, or None when it can.

    One check for both places a package list is given (`DebianDocsConfig.packages` and a `source: debian` task's
    `packages`), so that the two accept and refuse the same specs, before anything is downloaded."""
    name = str(spec).split(":", 1)[0]
    if isinstance(spec, str) and PACKAGE_NAME.match(name):
        return None
    return (f"{spec!r} is not a Debian package name (lowercase letters, digits, + - .; "
            "optionally ':path/inside/package/')")


@dataclass(frozen=True)
class PackageSource:
    """One package and the folder inside it that holds the language's documents."""

    package: str
    prefix: str
    """Path inside the package ("usr/share/man/"); "" reads the whole package."""


def _known_prefix(package: str, language: str) -> str:
    """The folder of `language` inside a known documentation package ("" when not known)."""
    if package == "debian-handbook":
        return f"usr/share/doc/debian-handbook/html/{_HANDBOOK_DIRS[language]}/"
    if package.startswith("installation-guide-"):
        if language not in _INSTALL_GUIDE_DIRS:
            raise DataError(f"debian[{language}]: {package} has no {language} translation; remove it from packages")
        return f"usr/share/doc/{package}/{_INSTALL_GUIDE_DIRS[language]}/"
    if package == "manpages-zh":
        return "usr/share/man/zh_CN/"  # zh_TW (traditional) is left out: one script per task
    if package.startswith("manpages"):
        return "usr/share/man/"
    if package.startswith("debian-reference-"):
        return "usr/share/debian-reference/"
    if package.startswith("libreoffice-help-"):
        return "usr/share/libreoffice/help/"
    if package.startswith("gimp-help-"):
        return "usr/share/gimp/2.0/help/"
    return ""


class PackageChoice(Protocol):
    """What `package_sources` reads of a `DebianDocsConfig` (a protocol, so this module need not import the
    config, which imports this module's tables)."""

    packages: dict[str, list[str]]


def package_sources(language: str, cfg: PackageChoice) -> list[PackageSource]:
    """The packages (and folders inside them) read for `language`, in order, before max_packages."""
    if language not in SUPPORTED_LANGUAGES:
        raise DataError(
            f"debian: unknown language {language!r}; supported: {', '.join(SUPPORTED_LANGUAGES)} "
            "(for another language use the user-corpus source, source: files)"
        )
    specs = cfg.packages.get(language) or list(DEFAULT_PACKAGES[language])
    sources = []
    for spec in specs:
        name, sep, prefix = str(spec).partition(":")
        if sep:
            prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        else:
            prefix = _known_prefix(name, language)
        sources.append(PackageSource(name, prefix))
    return sources
