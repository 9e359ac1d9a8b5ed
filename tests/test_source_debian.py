"""Tests of the Debian documentation source (mer.data.sources.debian and debian_extract).

Fast tests use pages copied from real Debian packages (tests/fixtures/debian/README.md) and, for
the build pipeline, a small .deb made from them with `dpkg-deb --build`, served in place of the
archive. The slow tests download two small real packages with `apt-get download`.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from pathlib import Path

import pytest

from mer.data.corpus import DataError, TaskCorpus
from mer.data.sources import debian
from mer.data.sources.debian import (
    DEFAULT_PACKAGES,
    SUPPORTED_LANGUAGES,
    DebianDocsConfig,
    build_debian_corpora,
    build_debian_corpus,
    filter_paragraphs,
    main,
    package_sources,
)
from mer.data.sources.debian_extract import (
    html_paragraphs,
    join_lines,
    language_ok,
    man_paragraphs,
    normalize_for_dedup,
    read_html_file,
    read_man_file,
    text_width,
)

FIXTURES = Path(__file__).parent / "fixtures" / "debian"
HAS_DPKG = shutil.which("dpkg-deb") is not None
HAS_APT = all(shutil.which(t) for t in ("apt-get", "apt-cache", "dpkg-deb"))
needs_dpkg = pytest.mark.skipif(not HAS_DPKG, reason="dpkg-deb not found: not a Debian system")
needs_apt = pytest.mark.skipif(not HAS_APT, reason="apt-get/apt-cache/dpkg-deb not found: not a Debian system")


# ---------------------------------------------------------------------------------------------
# HTML extraction
# ---------------------------------------------------------------------------------------------


def test_html_paragraphs_blocks_inline_and_skipped_parts():
    html = """<html><head><title>Titre</title><script>var x = "no";</script></head><body>
    <div class="navheader"><table><tr><td>Précédent</td><td>Suivant</td></tr></table></div>
    <div class="toc"><dl><dt>1. Chapitre</dt></dl></div>
    <h1>Un titre</h1>
    <p>Le <code class="command">apt-get</code> télécharge
       les paquets &amp; leurs   dépendances.</p>
    <pre class="screen">$ apt-get install foo</pre>
    <ul><li>premier</li><li>second <em>élément</em></li></ul>
    <p>Avant<br/>après</p>
    <span hidden="true" class="MAC">Préférences</span><span hidden="true" id="defaultx">Options</span>
    <div class="navfooter"><p>Pied</p></div></body></html>"""
    assert html_paragraphs(html) == [
        "Un titre",
        "Le apt-get télécharge les paquets & leurs dépendances.",
        "premier",
        "second élément",
        "Avant",
        "après",
        "Options",
    ]


def test_html_paragraphs_of_a_real_libreoffice_help_page():
    paragraphs = html_paragraphs(read_html_file(FIXTURES / "libreoffice-assistive.fr.html"))
    assert paragraphs[0] == "Outils de technologie assistive dans LibreOffice"
    assert (
        "LibreOffice supporte divers types de périphériques de saisie permettant d'accéder à toutes ses fonctions."
        in paragraphs
    )
    # The default platform variant of a menu path is kept, the hidden macOS one is not.
    assert "Outils - Options - LibreOffice - Accessibilité" in paragraphs
    assert not any("Préférences" in p for p in paragraphs)
    # Header, index, search box and the debug footer are not prose.
    text = "\n".join(paragraphs)
    for noise in ("Aide LibreOffice 7.4", "Rechercher dans tous les modules", "Help content debug info", "opengrok"):
        assert noise not in text
    assert all("<" not in p or "://" in p for p in paragraphs)


def test_html_paragraphs_of_a_real_handbook_page_skip_navigation():
    paragraphs = html_paragraphs(read_html_file(FIXTURES / "handbook-future-of-debian.fr.html"))
    text = "\n".join(paragraphs)
    assert "Download the ebook" not in text  # banner
    assert "Précédent" not in text and "Suivant" not in text  # docnav
    assert any(p.startswith("Le projet Debian n'est donc pas près de disparaître") for p in paragraphs)


# ---------------------------------------------------------------------------------------------
# Man page extraction
# ---------------------------------------------------------------------------------------------


def test_man_paragraphs_macros_escapes_and_blocks():
    roff = r""".\" a comment
.TH TEST 1 "2023" "x" "y"
.ds Qx Q-string
.SH DESCRIPTION
The \fBfoo\fR command \- a \(lqtest\(rq of \e\*(Qx
with a second line.
.PP
.B bold words
and
.BR ls (1),
then \fIitalic\fP\c
joined.
.TP
\fB\-a\fR, \fB\-\-all\fR
show all.
.nf
code line one
code line two
.fi
.if n \{\
hidden text
\}
.IP \(bu 2
Bullet text.
.UR https://example.org
.UE .
.MT a@b.c
.ME
.SS Next
.Sh MDOC
.Nm prog
.Op Fl v
reads
.Pa /etc/x ,
done.
"""
    assert man_paragraphs(roff) == [
        "DESCRIPTION",
        "The foo command - a “test” of \\Q-string with a second line.",
        "bold words and ls(1), then italicjoined.",
        "-a, --all",
        "show all.",
        "•",
        "Bullet text. <https://example.org>. <a@b.c>",
        "Next",
        "MDOC",
        "prog -v reads /etc/x, done.",
    ]


def test_man_paragraphs_so_redirect_is_empty():
    assert man_paragraphs(".so man1/other.1\n") == []


def test_man_paragraphs_of_a_real_french_page():
    paragraphs = man_paragraphs(read_man_file(FIXTURES / "ls.fr.1.gz"))
    assert "ls - Afficher le contenu de répertoires" in paragraphs
    assert "-a, --all" in paragraphs  # .TP tag: a paragraph of its own
    assert "inclure les entrées débutant par « . »" in paragraphs
    assert (
        "Si vous découvrez un bogue dans la traduction de cette page de manuel, veuillez envoyer un message "
        "à <debian-l10n-french@lists.debian.org>." in paragraphs
    )
    for p in paragraphs:  # no roff left over
        assert "\\f" not in p and "\\-" not in p and not p.startswith(".")


def test_man_paragraphs_of_a_real_japanese_page_join_lines_without_spaces():
    paragraphs = man_paragraphs(read_man_file(FIXTURES / "free.ja.1.gz"))
    assert (
        "free はシステムの物理メモリとスワップメモリそれぞれに対して、使用量と空き容量を表示し、"
        "カーネルが用いているバッファも表示する。共有メモリの欄は無視してほしい。これは古い機能の名残である。"
    ) in paragraphs


def test_man_paragraphs_of_a_real_mdoc_page():
    paragraphs = man_paragraphs(read_man_file(FIXTURES / "talkd.it.8.gz"))
    assert "talkd server di comunicazione con utenti remoti" in paragraphs
    assert any("di tipo LOOK_UP (vedere protocols/talkd.h). Questo induce" in p for p in paragraphs)
    assert "-d, -debug" in paragraphs
    assert "Abilita la modalità di debug." in paragraphs


def test_join_lines_and_width():
    assert join_lines(["漢字の", "続き", " and", "more  text "]) == "漢字の続き and more text"
    assert text_width("ab漢字") == 6


# ---------------------------------------------------------------------------------------------
# Language check and dedup
# ---------------------------------------------------------------------------------------------

FR = "Le projet Debian n'est donc pas près de disparaître, et les contributeurs sont de plus en plus nombreux."
EN = "Beyond the apparent satisfaction of most Debian users, a deep trend is becoming more and more indisputable."
DE = "Die Pakete werden aus dem Archiv geladen und in das System eingespielt, wenn der Benutzer das wünscht."
ES = "El proyecto Debian no está cerca de desaparecer, y los colaboradores son cada vez más numerosos en todo el mundo."
IT = "Il progetto Debian non è vicino alla scomparsa, e i collaboratori sono sempre più numerosi nel mondo."
JA = "free はシステムの物理メモリとスワップメモリそれぞれに対して、使用量と空き容量を表示する。"
ZH = "在创建用户定义数据类型的时候，系统自动创建一个与之关联的数组类型，其名字由该基本类型的名字组成。"
RU = "Выбранный цвет станет цветом фона, как показано в области цвета на панели инструментов."
AR = "يمكن تطبيق RAID باستخدام عتاد خاص أو برمجيًا عبر النواة، سواء كان النظام يعتمد على العتاد أو البرمجيات."


@pytest.mark.parametrize(
    "text, language",
    [(FR, "fr"), (EN, "en"), (DE, "de"), (ES, "es"), (IT, "it"), (JA, "ja"), (ZH, "zh"), (RU, "ru"), (AR, "ar")],
)
def test_language_check_accepts_own_and_rejects_others(text, language):
    assert language_ok(text, language)
    for other in SUPPORTED_LANGUAGES:
        if other != language:
            assert not language_ok(text, other), (other, text)


def test_language_check_rejects_commands_and_option_lists():
    assert not language_ok("ls [OPTION]... [FICHIER]... --block-size=TAILLE -l -h", "fr")
    assert not language_ok("cdrecord -v -dummy speed=2 dev=2,0 -audio track*.cdaudio", "en")


def test_language_check_on_a_real_french_page_with_untranslated_paragraphs():
    paragraphs = html_paragraphs(read_html_file(FIXTURES / "handbook-future-of-debian.fr.html"))
    french = [p for p in paragraphs if language_ok(p, "fr")]
    english = [p for p in paragraphs if language_ok(p, "en")]
    assert any(p.startswith("Malgré son ancienneté") for p in french)
    assert any(p.startswith("There are recurring discussions") for p in english)
    assert not set(french) & set(english)
    assert not any(p.startswith("There are recurring discussions") for p in french)


def test_filter_paragraphs_dedups_normalized_and_counts():
    cfg = DebianDocsConfig(min_paragraph_chars=20)
    seen: set[bytes] = set()
    stats: dict[str, int] = {}
    variant = FR.upper().replace(" ", "  ")
    kept = filter_paragraphs([FR, "Court.", EN, variant, FR], "fr", cfg, seen, stats)
    assert kept == [FR]
    assert stats == {"short": 1, "wrong_language": 1, "duplicate": 2}
    assert normalize_for_dedup(variant) == normalize_for_dedup(FR)
    # Dedup spans calls (files, packages) through `seen`.
    assert filter_paragraphs([FR, IT], "fr", cfg, seen) == []
    # The language check can be turned off.
    assert filter_paragraphs([EN], "fr", DebianDocsConfig(min_paragraph_chars=20, language_check=False), set()) == [EN]


# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"languages": ["fr", "xx"]}, "unknown language 'xx'"),
        ({"languages": "fr"}, "languages"),
        ({"languages": ["fr", "fr"]}, "languages"),
        ({"packages": {"fr": []}}, "packages['fr']"),
        ({"packages": {"fr": ["Not A Package"]}}, "packages['fr']"),
        ({"packages": {"klingon": ["x"]}}, "unknown language 'klingon'"),
        ({"val_percent": 0}, "val_percent"),
        ({"val_percent": 60}, "val_percent"),
        ({"min_paragraph_chars": 0}, "min_paragraph_chars"),
        ({"max_packages": 0}, "max_packages"),
        ({"min_script_share": 0.0}, "min_script_share"),
        ({"min_total_chars": -1}, "min_total_chars"),
    ],
)
def test_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field.replace("[", r"\[").replace("]", r"\]")):
        DebianDocsConfig(**kwargs)


def test_unknown_language_lists_supported_ones(tmp_path):
    with pytest.raises(ValueError) as e:
        DebianDocsConfig(languages=["xx"])
    assert all(lang in str(e.value) for lang in SUPPORTED_LANGUAGES)
    with pytest.raises(DataError, match="supported: en, fr, de"):
        build_debian_corpus("xx", DebianDocsConfig(cache_dir=str(tmp_path)))


def test_package_sources_defaults_and_overrides():
    cfg = DebianDocsConfig(packages={"de": ["manpages-de", "debian-handbook", "maint-guide-de:usr/share/doc/x/"]})
    assert [s.package for s in package_sources("fr", cfg)] == list(DEFAULT_PACKAGES["fr"])
    handbook = [s for s in package_sources("ar", cfg) if s.package == "debian-handbook"]
    assert handbook[0].prefix == "usr/share/doc/debian-handbook/html/ar-MA/"
    de = package_sources("de", cfg)
    assert [(s.package, s.prefix) for s in de] == [
        ("manpages-de", "usr/share/man/"),
        ("debian-handbook", "usr/share/doc/debian-handbook/html/de-DE/"),
        ("maint-guide-de", "usr/share/doc/x/"),
    ]
    zh = {s.package: s.prefix for s in package_sources("zh", cfg)}
    assert zh["manpages-zh"] == "usr/share/man/zh_CN/"
    assert zh["installation-guide-amd64"] == "usr/share/doc/installation-guide-amd64/zh_CN/"


# ---------------------------------------------------------------------------------------------
# Build pipeline on a local package made from the fixtures
# ---------------------------------------------------------------------------------------------

FAKE = "mer-test-docs-fr"


def _make_deb(out_dir: Path, version: str) -> Path:
    root = out_dir / f"root-{version}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {FAKE}\nVersion: {version}\nArchitecture: all\nMaintainer: test <t@example.org>\n"
        "Description: pages copied from Debian packages for tests\n"
    )
    man = root / "usr/share/man/fr/man1"
    man.mkdir(parents=True)
    shutil.copy(FIXTURES / "ls.fr.1.gz", man / "ls.1.gz")
    (man / "dir.1.gz").symlink_to("ls.1.gz")  # an alias: must not become a second document
    html = root / "usr/share/doc" / FAKE / "html"
    html.mkdir(parents=True)
    shutil.copy(FIXTURES / "handbook-future-of-debian.fr.html", html / "future.html")
    shutil.copy(FIXTURES / "libreoffice-assistive.fr.html", html / "assistive.html")
    shutil.copy(FIXTURES / "libreoffice-assistive.fr.html", html / "assistive-copy.html")  # all duplicates
    (html / "image.png").write_bytes(b"\x89PNG")
    deb = out_dir / f"{FAKE}_{version}_all.deb"
    subprocess.run(["dpkg-deb", "-Zgzip", "--root-owner-group", "--build", str(root), str(deb)],
                   check=True, capture_output=True)
    return deb


FAKE_BOOK = "mer-test-book-fr"
"""A second local package: 12 HTML chapters of distinct French prose, enough text (about 27,000 characters) for
the source's default min_total_chars, which a task of `data.tasks` cannot lower."""


def _make_book_deb(out_dir: Path, version: str) -> Path:
    root = out_dir / f"book-{version}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {FAKE_BOOK}\nVersion: {version}\nArchitecture: all\nMaintainer: test <t@example.org>\n"
        "Description: French prose for tests\n")
    html = root / "usr/share/doc" / FAKE_BOOK / "html"
    html.mkdir(parents=True)
    for chapter in range(12):
        paragraphs = "".join(
            f"<p>Le chapitre {chapter} explique à la section {n} comment le système installe les paquets, et "
            f"pourquoi les utilisateurs de la machine {chapter * 100 + n} doivent lire la documentation avant de "
            "modifier la configuration.</p>" for n in range(12))
        (html / f"ch{chapter:02d}.html").write_text(f"<html><body><h1>Chapitre {chapter}</h1>{paragraphs}</body></html>",
                                                   encoding="utf-8")
    deb = out_dir / f"{FAKE_BOOK}_{version}_all.deb"
    subprocess.run(["dpkg-deb", "-Zgzip", "--root-owner-group", "--build", str(root), str(deb)],
                   check=True, capture_output=True)
    return deb


class FakeArchive:
    """Stands in for apt: knows FAKE and FAKE_BOOK at `version`, counts downloads; real apt-cache for other names."""

    builders = {FAKE: _make_deb, FAKE_BOOK: _make_book_deb}

    def __init__(self, tmp_path: Path, version: str = "1.0"):
        self.dir = tmp_path / "archive"
        self.dir.mkdir(exist_ok=True)
        self.version = version
        self.downloads: list[tuple[str, str]] = []
        self._real = debian._candidate_versions

    def candidate_versions(self, packages: list[str]) -> dict[str, str | None]:
        others = [p for p in packages if p not in self.builders]
        found = self._real(others) if HAS_APT and others else {p: None for p in others}
        return {p: self.version if p in self.builders else found[p] for p in packages}

    def download(self, package: str, version: str, debs_dir: Path) -> Path:
        assert package in self.builders
        self.downloads.append((package, version))
        deb = self.builders[package](self.dir, version)
        debs_dir.mkdir(parents=True, exist_ok=True)
        target = debian._deb_path(debs_dir, package, version)
        shutil.copy(deb, target)
        return target


@pytest.fixture
def archive(tmp_path, monkeypatch):
    if not HAS_DPKG:
        pytest.skip("dpkg-deb not found: not a Debian system")
    fake = FakeArchive(tmp_path)
    monkeypatch.setattr(debian, "_apt_available", lambda: True)
    monkeypatch.setattr(debian, "_candidate_versions", fake.candidate_versions)
    monkeypatch.setattr(debian, "_apt_get_download", fake.download)
    return fake


def _cfg(tmp_path: Path, **kw) -> DebianDocsConfig:
    kw.setdefault("packages", {"fr": [FAKE]})
    kw.setdefault("min_total_chars", 500)
    kw.setdefault("val_percent", 30)
    return DebianDocsConfig(languages=["fr"], cache_dir=str(tmp_path / "cache"), **kw)


def test_build_documents_per_file_filtered_and_split(archive, tmp_path):
    corpus = build_debian_corpus("fr", _cfg(tmp_path), task_name="fr-debian")
    assert isinstance(corpus, TaskCorpus)
    assert (corpus.name, corpus.language) == ("fr-debian", "fr")
    assert f"{FAKE} 1.0" in corpus.description
    train, val = list(corpus.train_documents()), list(corpus.val_documents())
    docs = train + val
    # ls.1.gz, future.html, assistive.html; the alias and the all-duplicate copy give nothing.
    assert len(docs) == 3 and train and val
    assert not set(train) & set(val)
    assert list(corpus.train_documents()) == train  # same order every time
    paragraphs = [p for d in docs for p in d.split("\n\n")]
    assert len(paragraphs) == len(set(paragraphs))
    assert all(language_ok(p, "fr") and text_width(p) >= 50 for p in paragraphs)
    assert not any(p.startswith("There are recurring discussions") for p in paragraphs)  # English dropped
    assert any(p.startswith("Malgré son ancienneté") for p in paragraphs)


def test_split_rule_is_a_fixed_hash_of_package_and_path(archive, tmp_path):
    # Pinned: changing the rule would move documents between train and validation of existing caches.
    assert debian._bucket(f"{FAKE}/usr/share/man/fr/man1/ls.1.gz") == 4014
    cfg = _cfg(tmp_path)
    meta = debian._build_meta("fr", cfg)
    lines = [json.loads(line) for line in open(Path(cfg.cache_dir) / "text" / meta["text_file"], encoding="utf-8")]
    assert [d["bucket"] for d in lines] == [debian._bucket(d["id"]) for d in lines]
    val_ids = sorted(d["id"] for d in lines if d["bucket"] < meta["val_threshold"])
    # A new package version (new fingerprint, rebuilt) keeps every document on its side.
    archive.version = "2.0"
    meta2 = debian._build_meta("fr", cfg)
    assert meta2["fingerprint"] != meta["fingerprint"]
    lines2 = [json.loads(line) for line in open(Path(cfg.cache_dir) / "text" / meta2["text_file"], encoding="utf-8")]
    assert sorted(d["id"] for d in lines2 if d["bucket"] < meta2["val_threshold"]) == val_ids
    assert archive.downloads == [(FAKE, "1.0"), (FAKE, "2.0")]


def test_second_build_reads_the_cache_without_downloading(archive, tmp_path, monkeypatch):
    cfg = _cfg(tmp_path)
    first = build_debian_corpus("fr", cfg)
    text_files = list((Path(cfg.cache_dir) / "text").glob("fr-*.jsonl"))
    assert len(text_files) == 1
    mtime = text_files[0].stat().st_mtime_ns

    def no_download(*args):
        raise AssertionError("downloaded although the text is cached")

    real_deb_files = debian._deb_files

    monkeypatch.setattr(debian, "_apt_get_download", no_download)
    monkeypatch.setattr(debian, "_deb_files", no_download)
    second = build_debian_corpus("fr", cfg)
    assert second.fingerprint == first.fingerprint
    assert list(second.val_documents()) == list(first.val_documents())
    assert text_files[0].stat().st_mtime_ns == mtime
    assert len(archive.downloads) == 1
    # A different rule is a different corpus: new fingerprint, re-extracted from the kept .deb.
    monkeypatch.setattr(debian, "_deb_files", real_deb_files)
    third = build_debian_corpus("fr", _cfg(tmp_path, min_paragraph_chars=80))
    assert third.fingerprint != first.fingerprint
    assert len(archive.downloads) == 1


def test_failed_download_falls_back_to_the_cache_of_older_versions(archive, tmp_path, monkeypatch, caplog):
    cfg = _cfg(tmp_path)
    old = build_debian_corpus("fr", cfg)
    archive.version = "2.0"  # the archive moved on, but the network is gone

    def offline(package, version, debs_dir):
        raise debian._DownloadError(f"debian: `apt-get download {package}={version}` failed (exit 100)")

    monkeypatch.setattr(debian, "_apt_get_download", offline)
    with caplog.at_level(logging.WARNING, logger="mer.data.sources.debian"):
        again = build_debian_corpus("fr", cfg)
    assert again.fingerprint == old.fingerprint
    assert "older package versions" in caplog.text
    with pytest.raises(DataError, match="apt-get download"):  # no older cache for another configuration
        build_debian_corpus("fr", _cfg(tmp_path, val_percent=10))


def test_keep_debs_off_deletes_the_download(archive, tmp_path):
    cfg = _cfg(tmp_path, keep_debs=False)
    build_debian_corpus("fr", cfg)
    assert not list((Path(cfg.cache_dir) / "debs").glob("*.deb"))


def test_build_all_languages_of_the_config(archive, tmp_path):
    corpora = build_debian_corpora(_cfg(tmp_path))
    assert list(corpora) == ["fr"] and corpora["fr"].name == "fr"


def test_apt_missing_without_cache_points_to_user_corpus(tmp_path, monkeypatch):
    monkeypatch.setattr(debian.shutil, "which", lambda name: None)
    with pytest.raises(DataError, match=r"debian\[fr\].*apt-get.*user-corpus"):
        build_debian_corpus("fr", DebianDocsConfig(cache_dir=str(tmp_path)))


def test_apt_missing_with_cache_uses_the_cache(archive, tmp_path, monkeypatch, caplog):
    cfg = _cfg(tmp_path)
    built = build_debian_corpus("fr", cfg)
    monkeypatch.setattr(debian, "_apt_available", lambda: False)
    with caplog.at_level(logging.WARNING, logger="mer.data.sources.debian"):
        cached = build_debian_corpus("fr", cfg)
    assert cached.fingerprint == built.fingerprint
    assert "apt not found" in caplog.text
    with pytest.raises(DataError, match="user-corpus"):  # another configuration: nothing cached
        build_debian_corpus("fr", _cfg(tmp_path, val_percent=10))


@needs_apt
def test_candidate_versions_from_apt():
    versions = debian._candidate_versions(["mer-no-such-package-xyz", "apt"])
    assert versions["mer-no-such-package-xyz"] is None
    assert versions["apt"] and versions["apt"][0].isdigit()


@needs_apt
def test_missing_package_is_named(tmp_path):
    cfg = DebianDocsConfig(cache_dir=str(tmp_path), packages={"fr": ["mer-no-such-package-xyz"]})
    with pytest.raises(DataError, match=r"debian\[fr\].*mer-no-such-package-xyz.*apt-cache search"):
        build_debian_corpus("fr", cfg)


@needs_apt
def test_missing_package_is_skipped_with_a_warning_when_others_exist(archive, tmp_path, caplog):
    cfg = _cfg(tmp_path, packages={"fr": ["mer-no-such-package-xyz", FAKE]})
    with caplog.at_level(logging.WARNING, logger="mer.data.sources.debian"):
        corpus = build_debian_corpus("fr", cfg)
    assert "mer-no-such-package-xyz does not exist" in caplog.text
    assert FAKE in corpus.description and "mer-no-such-package-xyz" not in corpus.description


def test_too_little_text_names_the_language(archive, tmp_path):
    with pytest.raises(DataError, match=r"debian\[fr\]: extraction produced too little text"):
        build_debian_corpus("fr", _cfg(tmp_path, min_total_chars=10**9))
    assert not list((Path(tmp_path) / "cache" / "text").glob("fr-*"))  # nothing half-written left


def test_wrong_language_package_gives_too_little_text(archive, tmp_path):
    # French pages read as German: every paragraph fails the language check.
    with pytest.raises(DataError, match=r"debian\[de\].*not in 'de'"):
        build_debian_corpus("de", _cfg(tmp_path, packages={"de": [FAKE]}))


def test_command_line_prints_counts(archive, tmp_path, capsys):
    args = ["--languages", "fr", "--cache-dir", str(tmp_path / "cache"), "--packages", f"fr={FAKE}",
            "--min-total-chars", "500", "--val-percent", "30"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert FAKE in out and "TOTAL (train/val docs: " in out
    assert main(["--languages", "fr", "de", "--list-packages"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("fr: debian-reference-fr")


# ---------------------------------------------------------------------------------------------
# A task of a run's data config (`data.tasks`): its packages reach the build and name the data
# ---------------------------------------------------------------------------------------------


def _prepare_task(tmp_path: Path, **fields):
    """`prepare_data` of one `source: debian` task (the pipeline a run uses), on the local package."""
    from mer.data.config import DataConfig, TaskConfig, TokenizerConfig
    from mer.data.pipeline import prepare_data

    # The local packages give 12 to 15 documents, so the validation split is one or two pages: the minimum is lowered.
    cfg = DataConfig(tasks=[TaskConfig(name="fr", source="debian", **fields)], data_dir=str(tmp_path / "data"),
                     min_val_tokens=2, tokenizer=TokenizerConfig(vocab_size=300, train_chars_per_task=10_000))
    return prepare_data(cfg)


def test_task_packages_reach_the_build_and_name_the_data(archive, tmp_path, monkeypatch):
    cache = str(tmp_path / "data" / "debian")
    book = _prepare_task(tmp_path, packages=[FAKE_BOOK])
    manifest = book.shards[0].manifest
    assert f"{FAKE_BOOK} 1.0" in manifest["source"] and FAKE not in manifest["source"]
    assert archive.downloads == [(FAKE_BOOK, "1.0")]
    # The same text as the source's own config with that package list: one fingerprint for one choice.
    direct = build_debian_corpus("fr", DebianDocsConfig(languages=["fr"], packages={"fr": [FAKE_BOOK]}, cache_dir=cache))
    assert manifest["fingerprint"] == direct.fingerprint

    # Another list (the book and the pages of the other package): other text, fingerprint, tokenizer, shard folder.
    both = _prepare_task(tmp_path, packages=[FAKE_BOOK, FAKE])
    other = both.shards[0].manifest
    assert f"{FAKE} 1.0" in other["source"] and archive.downloads == [(FAKE_BOOK, "1.0"), (FAKE, "1.0")]
    assert other["fingerprint"] != manifest["fingerprint"]
    assert both.tokenizer_hash != book.tokenizer_hash and both.shards[0].directory != book.shards[0].directory
    chars = {name: sum(m["splits"][split]["characters"] for split in ("train", "val"))
             for name, m in (("book", manifest), ("both", other))}
    assert chars["both"] > chars["book"]

    # max_packages reaches the build too: the first of the two is the book alone, the same data as before.
    first = _prepare_task(tmp_path, packages=[FAKE_BOOK, FAKE], max_packages=1)
    assert first.tokenizer_hash == book.tokenizer_hash
    assert first.shards[0].manifest["fingerprint"] == manifest["fingerprint"]

    # Neither field set: the language's default list, with the fingerprint the pipeline gave before the fields
    # existed (its config was DebianDocsConfig(languages=[language], cache_dir=...)).
    monkeypatch.setitem(debian.DEFAULT_PACKAGES, "fr", (FAKE_BOOK,))
    default = _prepare_task(tmp_path)
    before = build_debian_corpus("fr", DebianDocsConfig(languages=["fr"], cache_dir=cache))
    assert default.shards[0].manifest["fingerprint"] == before.fingerprint == manifest["fingerprint"]
    assert len(archive.downloads) == 2  # every later build read the kept .deb files or the text cache


# ---------------------------------------------------------------------------------------------
# Real packages from the Debian archive (network)
# ---------------------------------------------------------------------------------------------

REAL = {"it": "manpages-it", "es": "manpages-es"}  # 0.4 and 1 MB downloads


@pytest.mark.slow
@needs_apt
def test_real_packages_download_extract_and_cache(tmp_path, monkeypatch):
    cfg = DebianDocsConfig(languages=list(REAL), packages={k: [v] for k, v in REAL.items()},
                           cache_dir=str(tmp_path / "cache"))
    calls: list[str] = []
    real_download = debian._apt_get_download

    def counting_download(package, version, debs_dir):
        calls.append(package)
        return real_download(package, version, debs_dir)

    monkeypatch.setattr(debian, "_apt_get_download", counting_download)
    corpora = build_debian_corpora(cfg)
    assert sorted(calls) == sorted(REAL.values())
    for lang, package in REAL.items():
        corpus = corpora[lang]
        assert package in corpus.description
        train, val = list(corpus.train_documents()), list(corpus.val_documents())
        assert len(train) > 20 and val and not set(train) & set(val)
        paragraphs = [p for d in train + val for p in d.split("\n\n")]
        assert sum(map(len, paragraphs)) > 100_000
        assert all(language_ok(p, lang) for p in paragraphs[:: max(1, len(paragraphs) // 200)])
        assert len(list((Path(cfg.cache_dir) / "debs").glob(f"{package}_*.deb"))) == 1
    again = build_debian_corpora(cfg)
    assert sorted(calls) == sorted(REAL.values())  # no second download
    assert {k: c.fingerprint for k, c in again.items()} == {k: c.fingerprint for k, c in corpora.items()}


@pytest.mark.slow
@needs_apt
def test_real_command_line_and_missing_package(tmp_path, capsys, caplog):
    cache = str(tmp_path / "cache")
    assert main(["--languages", "it", "--cache-dir", cache, "--packages", "it=mer-no-such-package-xyz,manpages-it"]) == 0
    out = capsys.readouterr().out
    assert "manpages-it" in out and "TOTAL" in out
    assert "mer-no-such-package-xyz does not exist" in caplog.text
