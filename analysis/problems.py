"""report.md lists each distinct problem once, with the runs, fits or settings it affects.

The analysis records problems as one line per occurrence ("run X: ...", "fit of M for 'F' not
usable: ..."), which is what the command line prints. For the report they are grouped: lines that
say the same thing about different runs or families become one entry naming all of them. Numbers
in parentheses (the value a parameter got stuck at, say) differ between occurrences of one
problem and are left out of the grouping key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_RUN = re.compile(r"^run (?P<who>\S+): (?P<what>.*)$", re.S)
_FIT = re.compile(r"^fit of (?P<metric>.+?) for '(?P<who>.+?)' not usable: (?P<what>.*)$", re.S)
_NUMBER_IN_PARENS = re.compile(r" \([-+0-9.e]+\)")


@dataclass
class Problem:
    message: str
    affects: list[str] = field(default_factory=list)

    def line(self, shown: int = 12) -> str:
        if not self.affects:
            return self.message
        names = ", ".join(f"`{a}`" for a in self.affects[:shown])
        more = f" and {len(self.affects) - shown} more" if len(self.affects) > shown else ""
        return f"{self.message} — affects {len(self.affects)}: {names}{more}"


def group_problems(lines: list[str]) -> list[Problem]:
    """Distinct problems in first-seen order, each with what it affects (see the module docstring)."""
    grouped: dict[str, Problem] = {}
    for line in lines:
        if m := _FIT.match(line):
            key = f"fit of {m['metric']} not usable: {_NUMBER_IN_PARENS.sub('', m['what'])}"
            who = m["who"]
        elif m := _RUN.match(line):
            key, who = m["what"], m["who"]
        else:
            key, who = line, None
        problem = grouped.setdefault(key, Problem(key))
        if who is not None and who not in problem.affects:
            problem.affects.append(who)
    return list(grouped.values())
