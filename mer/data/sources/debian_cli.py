"""The command line of the Debian source (`python -m mer.data.sources.debian`): its options and its table.

Reading the options into a `DebianDocsConfig` and printing the counts per package, so that
`debian.main` is left with the loop over languages. The command exists to see what a language
would give (packages, documents, paragraphs, characters, what was dropped) before training on it.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from mer.data.sources.debian_config import DebianDocsConfig, default_cache_dir
from mer.data.sources.debian_packages import SUPPORTED_LANGUAGES, package_sources


def _parse_package_overrides(items: list[str]) -> dict[str, list[str]]:
    """--packages LANG=PKG[,PKG...] (repeatable) -> DebianDocsConfig.packages."""
    out: dict[str, list[str]] = {}
    for item in items:
        lang, sep, names = item.partition("=")
        if not sep or not names:
            raise SystemExit(f"--packages expects LANG=PKG[,PKG...], got {item!r}")
        out.setdefault(lang, []).extend(n for n in names.split(",") if n)
    return out


def parse_command_line(argv: list[str] | None) -> tuple[argparse.Namespace, DebianDocsConfig]:
    """The options and the configuration they make; sets up logging (-v: downloads and skipped packages)."""
    parser = argparse.ArgumentParser(
        prog="python -m mer.data.sources.debian",
        description="Build (or read back from the cache) the Debian documentation corpus of some "
        "languages and print documents, paragraphs and characters per language.",
    )
    defaults = DebianDocsConfig()
    parser.add_argument("--languages", nargs="+", default=defaults.languages,
                        help=f"languages among {' '.join(SUPPORTED_LANGUAGES)} (default: %(default)s)")
    parser.add_argument("--cache-dir", default=None, help=f"cache folder (default: {default_cache_dir()})")
    parser.add_argument("--packages", action="append", default=[], metavar="LANG=PKG[,PKG...]",
                        help="replace a language's default packages (repeatable)")
    parser.add_argument("--max-packages", type=int, default=None, help="use the first N packages per language")
    parser.add_argument("--val-percent", type=int, default=defaults.val_percent)
    parser.add_argument("--min-paragraph-chars", type=int, default=defaults.min_paragraph_chars)
    parser.add_argument("--min-total-chars", type=int, default=defaults.min_total_chars)
    parser.add_argument("--list-packages", action="store_true",
                        help="print the packages each language would use and exit (no download)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log downloads and skipped packages")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        cfg = DebianDocsConfig(
            languages=list(args.languages), packages=_parse_package_overrides(args.packages),
            cache_dir=args.cache_dir, val_percent=args.val_percent,
            min_paragraph_chars=args.min_paragraph_chars, max_packages=args.max_packages,
            min_total_chars=args.min_total_chars,
        )
    except ValueError as e:
        parser.error(str(e))
    return args, cfg


def print_package_lists(cfg: DebianDocsConfig) -> None:
    """--list-packages: one line per language, its packages (with the folder read in each), no download."""
    for lang in cfg.languages:
        names = [s.package + (f":{s.prefix}" if s.prefix else "") for s in package_sources(lang, cfg)]
        print(f"{lang}: {' '.join(names)}")


def print_table_header() -> None:
    """The column names of `print_language_counts`."""
    print(f"{'lang':<5} {'package':<28} {'version':<24} {'docs':>6} {'paragraphs':>10} {'chars':>11}"
          f" {'short':>7} {'wrong-lang':>10} {'dup':>7}")


def print_language_counts(lang: str, meta: dict, cache_dir: Path) -> None:
    """The rows of one language's cache record: one per package, the totals, and the text file's path."""
    for p in meta["packages"]:
        print(f"{lang:<5} {p['package']:<28} {p['version']:<24} {p['documents']:>6} {p['paragraphs']:>10} "
              f"{p['chars']:>11} {p['short']:>7} {p['wrong_language']:>10} {p['duplicate']:>7}")
    t = meta["totals"]
    print(f"{lang:<5} {'TOTAL (train/val docs: ' + str(t['train_documents']) + '/' + str(t['val_documents']) + ')':<53}"
          f" {t['documents']:>6} {t['paragraphs']:>10} {t['chars']:>11} {t['short']:>7} "
          f"{t['wrong_language']:>10} {t['duplicate']:>7}")
    print(f"{lang:<5} text: {cache_dir / 'text' / meta['text_file']}")
