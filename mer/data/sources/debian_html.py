"""HTML pages of Debian documentation packages -> paragraphs of prose.

The Debian Reference and the Administrator's Handbook are DocBook / Publican HTML, the LibreOffice
and GIMP help are XHTML: `html_paragraphs` keeps one string per block element (p, li, td, h1...)
and leaves out what is not prose or repeats on every page (navigation, tables of contents,
scripts, code listings, the LibreOffice help's hidden platform variants). Python's own
`html.parser`, no dependency. Part of the extraction rule (`debian_extract.EXTRACTOR_VERSION`).
"""

from __future__ import annotations

import gzip
import re
from html.parser import HTMLParser
from pathlib import Path

from mer.data.sources.debian_text import join_lines

# Elements whose whole content is left out: not prose, or the same on every page.
_SKIP_TAGS = frozenset(
    {"head", "script", "style", "noscript", "nav", "header", "footer", "aside", "pre", "select",
     "button", "template", "svg", "math", "textarea", "object", "iframe", "form"}
)
# DocBook / Publican navigation and generated lists (same on every page or just links).
_SKIP_CLASSES = frozenset(
    {"navheader", "navfooter", "docnav", "toc", "list-of-tables", "list-of-figures",
     "list-of-examples", "index", "indexterm", "screen", "programlisting", "synopsis",
     "cmdsynopsis", "funcsynopsis", "debug", "MAC"}
)
_SKIP_IDS = frozenset({"banner", "SearchFrame", "DonationFrame", "DEBUG"})
# Elements that end a paragraph (content on either side is not joined).
_BLOCK_TAGS = frozenset(
    {"p", "div", "li", "ul", "ol", "dl", "dt", "dd", "h1", "h2", "h3", "h4", "h5", "h6", "td", "th",
     "tr", "table", "thead", "tbody", "caption", "blockquote", "br", "hr", "section", "article",
     "main", "body", "html", "title", "figure", "figcaption", "address", "center", "img", "label"}
)
_VOID_TAGS = frozenset(
    {"br", "hr", "img", "meta", "link", "input", "area", "base", "col", "embed", "param",
     "source", "track", "wbr"}
)


class _ParagraphParser(HTMLParser):
    """Collects the text between block elements; a skipped element is left out whole, nested ones included."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[str] = []
        self._buf: list[str] = []
        self._skip_tag: str | None = None  # name of the element being skipped
        self._skip_depth = 0  # open elements of that name inside the skipped one

    def _flush(self) -> None:
        text = join_lines(self._buf)
        self._buf = []
        if text:
            self.paragraphs.append(text)

    def _starts_skip(self, tag: str, attrs: list[tuple[str, str | None]]) -> bool:
        if tag in _SKIP_TAGS:
            return True
        a = dict(attrs)
        classes = set((a.get("class") or "").split())
        if classes & _SKIP_CLASSES or (a.get("id") or "") in _SKIP_IDS:
            return True
        # LibreOffice help: platform variants are `hidden`; keep the default one, drop the others.
        return "hidden" in a and not (a.get("id") or "").startswith("default")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skip_tag is not None:
            if tag == self._skip_tag:
                self._skip_depth += 1
            return
        if tag in _BLOCK_TAGS:
            self._flush()
        if tag not in _VOID_TAGS and self._starts_skip(tag, attrs):
            self._skip_tag, self._skip_depth = tag, 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # <br/>, <img/>, and XHTML's self-closed <a id="x"/>: never opens a skipped element.
        if self._skip_tag is None and tag in _BLOCK_TAGS:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if self._skip_tag is not None:
            if tag == self._skip_tag:
                self._skip_depth -= 1
                if self._skip_depth == 0:
                    self._skip_tag = None
            return
        if tag in _BLOCK_TAGS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if self._skip_tag is None:
            self._buf.append(data)

    def close(self) -> None:
        super().close()
        self._flush()


def html_paragraphs(html: str) -> list[str]:
    """Paragraphs of prose of one HTML page, in document order, whitespace collapsed."""
    parser = _ParagraphParser()
    parser.feed(html)
    parser.close()
    return parser.paragraphs


_META_CHARSET = re.compile(rb"""<meta[^>]+charset=["']?([A-Za-z0-9_-]+)""", re.I)


def decode_html(raw: bytes) -> str:
    """Decode an HTML page (gzipped or not): its declared charset, else UTF-8 (bad bytes replaced)."""
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    m = _META_CHARSET.search(raw[:4096])
    encoding = m.group(1).decode("ascii") if m else "utf-8"
    try:
        return raw.decode(encoding, errors="replace")
    except LookupError:
        return raw.decode("utf-8", errors="replace")


def read_html_file(path: Path) -> str:
    """`decode_html` of a file."""
    return decode_html(Path(path).read_bytes())
