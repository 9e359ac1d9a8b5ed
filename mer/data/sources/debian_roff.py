"""roff text lines -> plain text: the escapes (fonts, sizes, special characters, strings) and macro arguments.

The lower layer of the man page reader (`debian_man`): `roff_inline` resolves the escapes of one
line into the characters a reader would see (or nothing, for motions, fonts and registers),
`roff_args` splits a macro line's arguments the way roff does ("double quoted" ones included).
Part of the extraction rule (`debian_extract.EXTRACTOR_VERSION`).
"""

from __future__ import annotations

import re

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


def roff_inline(text: str, strings: dict[str, str]) -> str:
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


def roff_args(line: str) -> list[str]:
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

