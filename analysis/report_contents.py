"""`Report`: what one run of the report produced (runs, fits, comparisons, claims, files, problems).

Its own module so that arrows point one way: `analysis.report` builds a Report and hands it to the
pages and sections that read it (`analysis.results_page`, `analysis.alignment`, `analysis.downstream`),
and none of those has to import the command that calls them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis.claims import Claim
from analysis.collect import Collection
from analysis.compare import Comparison
from analysis.dominance import Dominance
from analysis.extrapolation import Extrapolation
from analysis.families import FamilyFit
from analysis.lr_search import LrSearch


@dataclass
class Report:
    """What a report run produced (returned for tests and scripting)."""

    out: Path
    collection: Collection
    sequence: str = ""
    usable: pd.DataFrame = field(default_factory=pd.DataFrame)
    fits: list[FamilyFit] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    dominance: dict[str, list[Dominance]] = field(default_factory=dict)
    """Every replay setting against the no-replay sizes, per metric (`analysis.dominance`)."""
    extrapolations: list[Extrapolation] = field(default_factory=list)
    """Leave-largest-out checks of the no-replay fits (`analysis.extrapolation`)."""
    lr_search: LrSearch | None = None
    """The learning-rate search the study's sizes were tuned by (`analysis.lr_search`), when given."""
    files: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """Unexpected exceptions (bugs), with tracebacks in errors.log."""
