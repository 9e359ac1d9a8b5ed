"""Replay against scaling by dominance: no fit, only the measured no-replay sizes (pre-registered for claim (d)).

The compute-equivalent multiplier (`analysis.compare`) needs a no-replay power law; when that fit fails every
multiplier is "undetermined", even where a replay setting beats every no-replay size at a fraction of the compute.
Dominance answers from the runs themselves. For a setting S (alpha > 0 or Reptile on; its seeds pooled) with mean
FLOPs per new token c_S, and each no-replay model size N with mean FLOPs per new token c_N, take the Welch interval
of loss(S) - loss(N) over seeds (`analysis.seed_intervals.difference_interval`) at the level asked for:

- **better than scaling**: at least one no-replay size used at least S's compute (c_N >= c_S), and the interval lies
  below 0 for every such size: no bigger model, as run, reached S's loss;
- **worse than scaling**: some no-replay size that used no more compute (c_N <= c_S) has the interval above 0: a
  model without replay did better for less;
- both at once (the no-replay losses do not fall with size): **mixed**; neither: **no clear difference**; no
  no-replay size to compare with: **not comparable**.

Each verdict rests on one interval per compared size, so callers that make a claim of several verdicts pass the
Bonferroni level of all those intervals (`analysis.claims.compute_claim`). A size or a setting with one run gives no
interval, so it cannot decide a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from analysis.bootstrap import CI_LEVEL
from analysis.families import METRIC_WORDS, X_COL, add_setting_columns, no_replay_runs
from analysis.seed_intervals import Estimate, difference_interval

BETTER, WORSE, MIXED, NO_DIFFERENCE, NOT_COMPARABLE = (
    "better than scaling", "worse than scaling", "mixed", "no clear difference from scaling", "not comparable")


@dataclass(frozen=True)
class Dominance:
    """One setting against every no-replay size on one metric."""

    setting: str
    model: str
    alpha: float
    k: int
    eps: float
    metric: str
    flops: float
    """Mean FLOPs per new token of the setting's runs."""
    against: list[tuple[str, float, Estimate]]
    """(no-replay size, its mean FLOPs per new token, Welch interval of loss(setting) - loss(size))."""
    verdict: str
    level: float

    @property
    def n_intervals(self) -> int:
        return len(self.against)

    def text(self) -> str:
        """The verdict with every difference, e.g. 'better than scaling on retained loss; minus no-replay m4 (at 4x
        the compute) -0.50 [-0.60, -0.40]; ...'."""
        parts = [f"{size} (at {flops / self.flops:.2g}x the compute) {est.text(2)}" for size, flops, est in self.against]
        return f"{self.verdict} on {METRIC_WORDS[self.metric]}; minus no-replay " + "; ".join(parts)


def dominance(runs: pd.DataFrame, metric: str, *, level: float = CI_LEVEL) -> list[Dominance]:
    """Every setting of `runs` that is not in the no-replay family, against the no-replay sizes (module docstring)."""
    runs = add_setting_columns(runs)
    sizes = [(str(m), float(g[X_COL].mean()), g[metric]) for m, g in no_replay_runs(runs).groupby("model")]
    sizes.sort(key=lambda s: s[1])
    others = runs[(runs["alpha"] > 0) | runs["reptile"].astype(bool)]
    out = []
    for (model, alpha, k, eps), grp in others.groupby(["model", "alpha", "k_eff", "eps_eff"], sort=True):
        flops = float(grp[X_COL].mean())
        against = [(size, c, difference_interval(grp[metric], losses, level)) for size, c, losses in sizes]
        out.append(Dominance(str(grp["setting"].iloc[0]), str(model), float(alpha), int(k), float(eps), metric,
                             flops, against, _verdict(flops, against), level))
    return out


def _verdict(flops: float, against: list[tuple[str, float, Estimate]]) -> str:
    if not against:
        return NOT_COMPARABLE
    bigger = [est for _, c, est in against if c >= flops]
    better = bool(bigger) and all(est.sign() == -1 for est in bigger)
    worse = any(est.sign() == 1 for _, c, est in against if c <= flops)
    if better and worse:
        return MIXED
    return BETTER if better else WORSE if worse else NO_DIFFERENCE


def count_intervals(runs: pd.DataFrame) -> int:
    """How many no-replay sizes each setting is compared with (the intervals one dominance verdict rests on)."""
    return int(no_replay_runs(runs)["model"].nunique())


def section(by_metric: dict[str, list[Dominance]]) -> list[str]:
    """The report's section on dominance (Markdown lines): one line per setting and metric."""
    lines = ["## Replay versus scaling by dominance", "",
             "No fit: a setting is better than scaling when its loss is below that of every no-replay size that used at "
             "least its FLOPs per new token, and worse when some no-replay size that used no more lies below it "
             "(Welch intervals over seeds, 95%; `analysis/dominance.py`). Claim (d) uses the same rule at its Bonferroni "
             "level.", ""]
    if not any(by_metric.values()):
        return lines + ["No replay setting and no-replay size to compare.", ""]
    for metric, ds in by_metric.items():
        if ds:
            lines += [f"**{METRIC_WORDS[metric].capitalize()}:**", ""] + [f"- {d.setting} — {d.text()}" for d in ds] + [""]
    return lines
