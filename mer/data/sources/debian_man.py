"""Man pages (roff source) of Debian's translated manpages-* packages -> paragraphs of prose.

`man_paragraphs` reads the man(7) macros and the common mdoc(7) ones and keeps one string per
filled paragraph; no-fill blocks (examples, tables, verbatim) are left out. A small roff reader
rather than a call to groff: no dependency, and the output does not change with the groff
version. Part of the extraction rule (`debian_extract.EXTRACTOR_VERSION`).
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

from mer.data.sources.debian_roff import roff_args, roff_inline
from mer.data.sources.debian_text import join_lines

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
        plain = roff_inline(text, strings)
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
            strings[key] = roff_inline(value.lstrip('"'), strings)
            continue
        if name == "so":  # a page that only includes another: nothing of its own
            continue
        if name in ("SH", "SS", "Sh", "Ss"):
            flush()
            if rest:
                add(" ".join(roff_args(rest)))
            flush()
            continue
        if name in ("TP", "TQ"):  # the next line of text is the tag: its own paragraph
            flush()
            tag_pending = True
            continue
        if name == "IP":  # .IP tag indent: the tag is its own paragraph
            flush()
            args = roff_args(rest)
            if args:
                add(args[0])
                flush()
            continue
        if name in ("UR", "MT"):  # start of a link; without link text, the address is shown
            link = (roff_inline(rest, strings), len(buf))
            continue
        if name in ("UE", "ME"):  # end of a link: its argument is trailing punctuation
            if link is not None and link[0] and len(buf) == link[1]:
                buf.append(f"<{link[0]}>")
            link = None
            if rest and buf:
                buf[-1] += roff_inline(rest, strings)
            continue
        if name in _BREAKS:
            flush()
            continue
        if name in _MAN_FONT:
            if rest:
                add(" ".join(roff_args(rest)))
            continue
        if name in _MAN_ALT:
            add("".join(roff_args(rest)))
            continue
        if name == "It":  # mdoc list item: its arguments (the item's tag) are their own paragraph
            flush()
            name = "No"
        if name in _MDOC_MACROS or name == "Nd":
            words: list[str] = []
            args = roff_args(rest)
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
