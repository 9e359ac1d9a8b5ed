"""Text extraction for the Debian documentation source: HTML and man pages -> paragraphs, language check.

Pure functions on strings, no I/O beyond `read_html_file` / `read_man_file`, so they are tested
on exact inputs. Everything here is part of the "rule" that `EXTRACTOR_VERSION` names: bump it
whenever a change here changes the extracted text, so that cached corpora are rebuilt.

- `html_paragraphs`: the prose of a DocBook / LibreOffice-help / GIMP-help page, one string per
  block element (p, li, td, h1...), navigation, tables of contents, scripts and code listings left out.
- `man_paragraphs`: the prose of a roff man page (man(7) macros and the common mdoc(7) ones),
  one string per filled paragraph; no-fill blocks (examples, tables, verbatim) left out. A small
  roff reader rather than a call to groff: no dependency, and the output does not change with the
  groff version.
- `language_ok`: a cheap check that a paragraph is prose in the expected language: share of letters
  in the language's script, plus for Latin-script languages a count of common function words that
  must beat every other supported Latin-script language (rejects untranslated English paragraphs
  inside a French package, command lines, option lists).
"""

from __future__ import annotations

import gzip
import re
import unicodedata
from html.parser import HTMLParser
from pathlib import Path

EXTRACTOR_VERSION = 1
"""Version of the extraction + language-check rule; part of every Debian corpus fingerprint."""

# ---------------------------------------------------------------------------------------------
# Whitespace and character classes
# ---------------------------------------------------------------------------------------------

_WS = re.compile(r"\s+")


def _is_wide(ch: str) -> bool:
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
        if out and not (_is_wide(out[-1]) and _is_wide(part[0])):
            out += " "
        out += part
    return out


def text_width(text: str) -> int:
    """Length of `text` with CJK characters counted twice (a CJK character carries about a word)."""
    return sum(2 if _is_wide(c) else 1 for c in text)


def normalize_for_dedup(paragraph: str) -> str:
    """The form under which two paragraphs count as duplicates: NFKC, case-folded, whitespace collapsed."""
    return _WS.sub(" ", unicodedata.normalize("NFKC", paragraph).casefold()).strip()


# ---------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# Man pages (roff)
# ---------------------------------------------------------------------------------------------

# Special characters \(xx and \[xx] that occur in prose; others become nothing.
_ROFF_CHARS = {
    "em": "—", "en": "–", "hy": "-", "mi": "-", "lq": "“", "rq": "”", "oq": "‘", "cq": "’",
    "aq": "'", "dq": '"', "bu": "•", "co": "©", "rg": "®", "tm": "™", "dg": "†", "de": "°",
    "mu": "×", "di": "÷", "+-": "±", "<=": "≤", ">=": "≥", "!=": "≠", "->": "→", "<-": "←",
    "Fo": "«", "Fc": "»", "fo": "‹", "fc": "›", "ti": "~", "ha": "^", "rs": "\\", "sl": "/",
    "ba": "|", "or": "|", "pl": "+", "eq": "=", "sc": "§", "ps": "¶", "ua": "↑", "da": "↓",
    "bv": "|", "ga": "`", "aa": "´", "ss": "ß", "lh": "☜", "rh": "☞", "ct": "¢", "Po": "£",
    "Eu": "€", "eu": "€", "Ye": "¥", "OK": "✓", "if": "∞", "pc": "·", "r!": "¡", "r?": "¿",
}
# Predefined strings \*(xx of man(7), mdoc(7) and pod2man preambles.
_ROFF_STRINGS = {
    "lq": "“", "rq": "”", "R": "®", "Tm": "™", "L\"": "“", "R\"": "”", "C`": '"', "C'": '"',
    "--": "—", "PI": "π", "Ba": "|", "Ge": "≥", "Le": "≤", "Gt": ">", "Lt": "<", "Pi": "π",
    "Ne": "≠", "Am": "&", "q": '"', "Lq": "“", "Rq": "”", "Aq": "'",
}
_ESCAPE = re.compile(
    r"""\\(?:
        (?P<comment>["#].*)                      # comment to end of line
      | f(?:\[[^\]]*\]|\(..|.)                   # font change
      | s(?:[-+]?\d+|\([-+]?\d\d|\[[^\]]*\]|'[^']*')  # size change
      | \((?P<char2>..)                          # special character \(xx
      | \[(?P<charn>[^\]]*)\]                    # special character \[name]
      | \*(?:\((?P<str2>..)|\[(?P<strn>[^\]]*)\]|(?P<str1>.))  # string
      | [nmgkVY](?:\(..|\[[^\]]*\]|.)            # register, colour, environment...
      | [hvwlLoXDNbRSxZCAB]'[^']*'               # escapes with a quoted argument
      | (?P<literal>[-e\\.'`])                   # \- \e \\ \. \' \`
      | (?P<space>[ ~0t])                        # unbreakable / digit-width space, tab
      | [&|^%:)!c{}zdru,/]                     # zero-width, hyphenation, joins, motions
      | (?P<other>.)
    )""",
    re.X,
)
_LITERALS = {"-": "-", "e": "\\", "\\": "\\", ".": ".", "'": "'", "`": "`"}


def _roff_inline(text: str, strings: dict[str, str]) -> str:
    """Resolve the escapes of one line of roff text into plain text."""

    def repl(m: re.Match[str]) -> str:
        if m.group("comment") is not None:
            return ""
        if (c := m.group("char2") or m.group("charn")) is not None:
            if c.startswith(("u", "char")) and re.fullmatch(r"u[0-9A-Fa-f]{4,6}", c):
                return chr(int(c[1:], 16))
            return _ROFF_CHARS.get(c, "")
        if (s := m.group("str2") or m.group("strn") or m.group("str1")) is not None:
            return strings.get(s, _ROFF_STRINGS.get(s, ""))
        if (lit := m.group("literal")) is not None:
            return _LITERALS[lit]
        if m.group("space") is not None:
            return " "
        if (o := m.group("other")) is not None:
            return o if not o.isalnum() else ""
        return ""

    return _ESCAPE.sub(repl, text)


def _roff_args(line: str) -> list[str]:
    """Arguments of a macro line (after the macro name): blank-separated, "double quoted" allowed."""
    args, i, n = [], 0, len(line)
    while i < n:
        while i < n and line[i] in " \t":
            i += 1
        if i >= n:
            break
        if line[i] == '"':
            i += 1
            arg = []
            while i < n:
                if line[i] == '"':
                    if i + 1 < n and line[i + 1] == '"':  # "" inside quotes is a literal quote
                        arg.append('"')
                        i += 2
                        continue
                    i += 1
                    break
                arg.append(line[i])
                i += 1
            args.append("".join(arg))
        else:
            j = i
            while j < n and line[j] not in " \t":
                j += 1
            args.append(line[i:j])
            i = j
    return args


# man(7) macros whose arguments are text set in one font (joined by spaces).
_MAN_FONT = frozenset({"B", "I", "SM", "SB", "R"})
# man(7) macros alternating two fonts: arguments joined without spaces.
_MAN_ALT = frozenset({"BR", "BI", "IB", "IR", "RB", "RI"})
# Macros that end the current paragraph and produce no text of their own.
_BREAKS = frozenset(
    {"PP", "LP", "P", "HP", "sp", "br", "RS", "RE", "in", "ti", "bp", "ne", "PD", "Sp",
     "Pp", "Lp", "Bl", "El", "Ed", "SY", "YS", "Dd", "Dt", "Os", "Rs", "Re"}
)
# Blocks left out whole: start macro -> end macro (no-fill text: examples, tables, verbatim, equations).
_SKIP_BLOCKS = {"nf": "fi", "EX": "EE", "Vb": "Ve", "TS": "TE", "EQ": "EN", "PS": "PE", "ig": "..",
                "de": "..", "de1": "..", "am": "..", "CS": "CE", "Bd -literal": "Ed", "Bd -unfilled": "Ed"}
# mdoc(7) macros: dropped from their line, their arguments kept.
_MDOC_MACROS = frozenset(
    "Ac Ad An Ao Ap Aq Ar At Bc Bf Bk Ek Bo Bq Brc Bro Brq Bsx Bx Cd Cm D1 Dc Dl Do Dq Dv Ec Ef Em Eo Er Es Ev Ex "
    "Fa Fc Fd Fl Fn Fo Fr Ft Fx Hf Ic In Lb Li Lk Me Ms Mt Nm No Ns Nx Oc Oo Op Ot Ox Pa Pc Pf Po "
    "Pq Qc Ql Qo Qq Sc So Sq St Sx Sy Tn Ux Va Vt Xc Xo Xr %A %B %D %I %J %N %O %P %Q %R %T %U %V".split()
)

# mdoc punctuation arguments written against the preceding word.
_MDOC_CLOSING = frozenset({".", ",", ":", ";", ")", "]", "?", "!"})


def man_paragraphs(source: str) -> list[str]:
    """Paragraphs of prose of one man page in roff source, in order.

    Section headings, `.TP`/`.IP` tags and descriptions come out as paragraphs of their own;
    the caller's length and language checks drop the short ones. A `.so` redirection yields nothing.
    """
    paragraphs: list[str] = []
    buf: list[str] = []
    strings: dict[str, str] = {}
    skip_until: str | None = None
    brace_depth = 0  # inside a skipped \{ ... \} conditional block
    join_next = False  # previous text line ended in \c
    tag_pending = False  # after .TP: the next line of text is the tag, a paragraph of its own
    link: tuple[str, int] | None = None  # after .UR/.MT: (address, text pieces so far)

    def flush() -> None:
        text = join_lines(buf)
        buf.clear()
        if text:
            paragraphs.append(text)

    def add(text: str) -> None:
        nonlocal join_next, tag_pending
        text = text.rstrip()
        ends_c = text.endswith("\\c")
        if ends_c:
            text = text[:-2]
        plain = _roff_inline(text, strings)
        if join_next and buf:
            buf[-1] += plain
        else:
            buf.append(plain)
        join_next = ends_c
        if tag_pending and not ends_c:
            tag_pending = False
            flush()

    for raw in source.splitlines():
        line = raw.rstrip("\n")
        if brace_depth:
            brace_depth += line.count("\\{") - line.count("\\}")
            continue
        is_control = line[:1] in (".", "'")
        if skip_until is not None:
            if is_control and line[1:].strip().split(" ")[0:1] == [skip_until]:
                skip_until = None
            elif skip_until == ".." and line.strip() == "..":
                skip_until = None
            continue
        if not is_control:
            if not line.strip():  # a blank line is a paragraph break in roff
                flush()
            else:
                add(line)
            continue

        body = line[1:].lstrip()
        if body.startswith(('\\"', "\\#")) or not body:
            continue
        name, _, rest = body.replace("\t", " ").partition(" ")
        rest = rest.strip()

        if name in ("if", "ie", "el", "while"):  # conditionals: left out, with their \{ block
            brace_depth = max(0, line.count("\\{") - line.count("\\}"))
            continue
        block_key = f"{name} {rest.split(' ')[0]}" if name == "Bd" and rest else name
        if block_key in _SKIP_BLOCKS:
            flush()
            skip_until = _SKIP_BLOCKS[block_key]
            continue
        if name == "ds" and rest:  # user-defined string, used by \*(xx
            key, _, value = rest.partition(" ")
            strings[key] = _roff_inline(value.lstrip('"'), strings)
            continue
        if name == "so":  # a page that only includes another: nothing of its own
            continue
        if name in ("SH", "SS", "Sh", "Ss"):
            flush()
            if rest:
                add(" ".join(_roff_args(rest)))
            flush()
            continue
        if name in ("TP", "TQ"):  # the next line of text is the tag: its own paragraph
            flush()
            tag_pending = True
            continue
        if name == "IP":  # .IP tag indent: the tag is its own paragraph
            flush()
            args = _roff_args(rest)
            if args:
                add(args[0])
                flush()
            continue
        if name in ("UR", "MT"):  # start of a link; without link text, the address is shown
            link = (_roff_inline(rest, strings), len(buf))
            continue
        if name in ("UE", "ME"):  # end of a link: its argument is trailing punctuation
            if link is not None and link[0] and len(buf) == link[1]:
                buf.append(f"<{link[0]}>")
            link = None
            if rest and buf:
                buf[-1] += _roff_inline(rest, strings)
            continue
        if name in _BREAKS:
            flush()
            continue
        if name in _MAN_FONT:
            if rest:
                add(" ".join(_roff_args(rest)))
            continue
        if name in _MAN_ALT:
            add("".join(_roff_args(rest)))
            continue
        if name == "It":  # mdoc list item: its arguments (the item's tag) are their own paragraph
            flush()
            name = "No"
        if name in _MDOC_MACROS or name == "Nd":
            words: list[str] = []
            args = _roff_args(rest)
            glue = False  # attach the next argument to the previous one (Ns, Pf, opening bracket)
            for i, a in enumerate(args):
                if a in ("Ns", "Pf"):
                    glue = True
                    continue
                if a in _MDOC_MACROS:
                    continue
                if (name == "Fl" and i == 0) or (i > 0 and args[i - 1] == "Fl"):
                    a = "-" + a
                if words and (glue or a in _MDOC_CLOSING):
                    words[-1] += a
                else:
                    words.append(a)
                glue = a in ("(", "[")
            if name == "Fl" and not args:
                words = ["-"]
            if words:
                add(" ".join(words))
            if body.startswith("It"):
                flush()
            continue
        # Anything else (requests such as .ft .ad .IX, unknown user macros): no text.
    flush()
    return paragraphs


_CODING = re.compile(rb"coding:\s*([A-Za-z0-9_-]+)")


def decode_man(raw: bytes) -> str:
    """Decode a man page (gzipped or not): UTF-8, else the `-*- coding: x -*-` it declares, else Latin-1."""
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    m = _CODING.search(raw.split(b"\n", 1)[0])
    if m:
        try:
            return raw.decode(m.group(1).decode("ascii"), errors="replace")
        except LookupError:
            pass
    return raw.decode("latin-1")


def read_man_file(path: Path) -> str:
    """`decode_man` of a file."""
    return decode_man(Path(path).read_bytes())


# ---------------------------------------------------------------------------------------------
# Language check
# ---------------------------------------------------------------------------------------------

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
        if ch.isalpha() or _is_wide(ch):
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
