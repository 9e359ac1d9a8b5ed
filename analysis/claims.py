"""The paper's four claims, each checked against a sweep with stated rules and intervals over seeds.

(a) Sequential training forgets: for each model size, the no-replay runs' forgetting (mean over
    all tasks but the last, in nats/token) with its t interval. A size supports the claim when the
    interval is above 0 and contradicts it when it is below 0.
(b) Replay reduces forgetting, and more so at a larger replay rate: for each size (Reptile off), the
    Welch intervals of F(alpha_2) - F(alpha_1) for consecutive replay rates 0 = alpha_0 < alpha_1 < ...
    A size supports the claim when every step lowers forgetting (interval below 0) and contradicts it
    when some step raises it (interval above 0).
(c) Reptile adds to replay: for each size and replay rate > 0, the Welch interval of the retained loss
    with Reptile minus without (same alpha). A pair supports the claim when Reptile lowers it (interval
    below 0) and contradicts it when Reptile raises it (interval above 0).
(d) Per FLOP, a small replay rate beats a bigger model and a large one does not: for each size
    (Reptile off), the compute-equivalent multipliers on retained loss (`analysis.compare`) of the
    smallest and the largest replay rate. A size supports the claim when the small rate is "better
    than scaling" and the large one is not; it contradicts it when the small rate is "worse than
    scaling" or the large one is "better than scaling".

A check whose interval contains 0 (or is missing) neither supports nor contradicts. The overall
verdict of a claim: "supports" when every check supports; "contradicts" when at least one check
contradicts and none supports; "cannot tell" otherwise (mixed or undecided), with the counts.

A claim rests on m intervals (m checks, or two per check for (b) with three alphas and for (d)), and
one of m 95% intervals excludes 0 by chance far more often than 5% of the time (about 40% for
m = 10). So every interval of a claim is a Bonferroni interval at level 1 - 0.05/m: the chance that
any check of a claim supports or contradicts it by chance alone stays under 5%. The rules were
fixed before the study was run and do not depend on its outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from analysis.bootstrap import CI_LEVEL
from analysis.compare import Comparison, compare_with_scaling
from analysis.families import FamilyFit, add_setting_columns, no_replay_runs
from analysis.seed_intervals import difference_interval, mean_interval

SUPPORTS, CONTRADICTS, UNDECIDED = "supports", "contradicts", "cannot tell"


@dataclass(frozen=True)
class Check:
    """One comparison behind a claim (one model size, or one size and replay rate)."""

    label: str
    estimate: str
    """The number(s) with 95% intervals, as text."""
    outcome: str
    """SUPPORTS, CONTRADICTS or UNDECIDED."""


@dataclass(frozen=True)
class Claim:
    key: str
    statement: str
    rule: str
    checks: list[Check] = field(default_factory=list)
    level: float = CI_LEVEL
    """Level of each of the claim's intervals (Bonferroni: 1 - 0.05/m)."""

    @property
    def verdict(self) -> str:
        outcomes = [c.outcome for c in self.checks]
        if outcomes and all(o == SUPPORTS for o in outcomes):
            return SUPPORTS
        if CONTRADICTS in outcomes and SUPPORTS not in outcomes:
            return CONTRADICTS
        return UNDECIDED

    def summary(self) -> str:
        counts = {o: sum(c.outcome == o for c in self.checks) for o in (SUPPORTS, CONTRADICTS, UNDECIDED)}
        if not self.checks:
            return f"{UNDECIDED}: the sweep has no runs for this claim"
        return (f"{self.verdict} ({counts[SUPPORTS]} of {len(self.checks)} checks support, "
                f"{counts[CONTRADICTS]} contradict, {counts[UNDECIDED]} cannot tell; {_pct(self.level)} intervals)")


def bonferroni(m: int) -> float:
    """Level of each of m intervals so that all m hold together with probability >= 95%."""
    return 1 - (1 - CI_LEVEL) / max(m, 1)


def _pct(level: float) -> str:
    return f"{100 * level:.4g}%"


def _outcome(sign: int, good: int) -> str:
    """SUPPORTS when the interval lies on the `good` side of 0, CONTRADICTS on the other, else UNDECIDED."""
    return SUPPORTS if sign == good else (CONTRADICTS if sign == -good else UNDECIDED)


def _sizes(runs: pd.DataFrame) -> list[str]:
    order = runs.assign(_n=runs["n_params"].fillna(0)).sort_values(["_n", "model"])
    return list(dict.fromkeys(order["model"]))


def forgetting_claim(runs: pd.DataFrame) -> Claim:
    nr = no_replay_runs(runs)
    sizes = _sizes(nr)
    level = bonferroni(len(sizes))
    checks = []
    for model in sizes:
        est = mean_interval(nr.loc[nr["model"] == model, "forgetting"], level)
        checks.append(Check(model, f"forgetting {est.text()}", _outcome(est.sign(), +1)))
    return Claim("a", "Sequential training forgets.",
                 "no-replay forgetting per size: interval above 0 supports, below 0 contradicts", checks, level)


def replay_claim(runs: pd.DataFrame) -> Claim:
    plain = runs[~runs["reptile"].astype(bool)]
    groups = []
    for model in _sizes(plain):
        sub = plain[plain["model"] == model]
        alphas = sorted(sub["alpha"].unique())
        if len(alphas) >= 2 and alphas[0] == 0:
            groups.append((model, sub, list(zip(alphas, alphas[1:], strict=False))))
    level = bonferroni(sum(len(steps) for *_, steps in groups))
    checks = []
    for model, sub, steps in groups:
        ests = [(f"F(alpha={hi:g}) - F(alpha={lo:g})",
                 difference_interval(sub.loc[sub["alpha"] == hi, "forgetting"], sub.loc[sub["alpha"] == lo, "forgetting"], level))
                for lo, hi in steps]
        signs = [e.sign() for _, e in ests]
        outcome = SUPPORTS if all(s == -1 for s in signs) else (CONTRADICTS if any(s == 1 for s in signs) else UNDECIDED)
        checks.append(Check(model, "; ".join(f"{name} {e.text()}" for name, e in ests), outcome))
    return Claim("b", "Replay reduces forgetting, and more so at a larger replay rate.",
                 "per size, every step up in alpha lowers forgetting (Welch interval below 0) supports; "
                 "any step that raises it (interval above 0) contradicts", checks, level)


def reptile_claim(runs: pd.DataFrame) -> Claim:
    pairs = []
    for model in _sizes(runs):
        sub = runs[(runs["model"] == model) & (runs["alpha"] > 0)]
        for alpha in sorted(sub["alpha"].unique()):
            at = sub[sub["alpha"] == alpha]
            off = at[~at["reptile"].astype(bool)]
            for (k, eps), on in at[at["reptile"].astype(bool)].groupby(["k_eff", "eps_eff"], sort=True):
                pairs.append((f"{model}, alpha={alpha:g}, k={k} eps={eps:g}", on, off))
    level = bonferroni(len(pairs))
    checks = []
    for label, on, off in pairs:
        est = difference_interval(on["retained_loss"], off["retained_loss"], level)
        checks.append(Check(label, f"retained loss with - without Reptile {est.text()}", _outcome(est.sign(), -1)))
    return Claim("c", "Reptile adds to replay.",
                 "per size and alpha > 0, retained loss with Reptile minus without: interval below 0 supports, "
                 "above 0 contradicts", checks, level)


def compute_claim(runs: pd.DataFrame, no_replay: FamilyFit | None, *, seed: int = 0) -> Claim:
    """Claim (d) from the multipliers on retained loss of the smallest and largest alpha per size (Reptile off).

    The multipliers are recomputed here at the claim's Bonferroni level (two intervals per size).
    """
    plain = runs[~runs["reptile"].astype(bool) & (runs["alpha"] > 0)]
    sizes = [m for m in _sizes(plain) if plain.loc[plain["model"] == m, "alpha"].nunique() >= 2]
    level = bonferroni(2 * len(sizes))
    rule = ("per size (Reptile off), on retained loss: the smallest alpha 'better than scaling' and the largest not "
            "supports; the smallest 'worse than scaling' or the largest 'better than scaling' contradicts")
    statement = "Per FLOP, a small replay rate beats a bigger model and a large one does not."
    if no_replay is None or not sizes:
        return Claim("d", statement, rule, [], level)
    alphas = {m: sorted(plain.loc[plain["model"] == m, "alpha"].unique()) for m in sizes}
    chosen = plain[[a in (alphas[m][0], alphas[m][-1]) for m, a in zip(plain["model"], plain["alpha"], strict=True)]]
    comparisons = compare_with_scaling(chosen, no_replay, seed=seed, level=level)
    return Claim("d", statement, rule, [_compute_check(m, comparisons) for m in sizes], level)


def _compute_check(model: str, comparisons: list[Comparison]) -> Check:
    small, large = sorted((c for c in comparisons if c.model == model), key=lambda c: c.alpha)
    text = f"alpha={small.alpha:g}: {_mult(small)}; alpha={large.alpha:g}: {_mult(large)}"
    if small.verdict == "better than scaling" and large.verdict in ("worse than scaling", "no clear difference from scaling"):
        return Check(model, text, SUPPORTS)
    if small.verdict == "worse than scaling" or large.verdict == "better than scaling":
        return Check(model, text, CONTRADICTS)
    return Check(model, text, UNDECIDED)


def _mult(c: Comparison) -> str:
    if c.verdict == "undetermined":
        return "undetermined"
    ci = "no interval" if c.ci_low != c.ci_low else f"CI {c.ci_low:.3g}x to {c.ci_high:.3g}x"
    return f"{c.multiplier:.3g}x ({ci}) {c.verdict}"


def check_claims(runs: pd.DataFrame, no_replay: FamilyFit | None, *, seed: int = 0) -> list[Claim]:
    """The four claims on usable runs of one task sequence (see the module docstring for the rules).

    `no_replay` is the no-replay family's fit of retained loss (None: claim (d) has no checks).
    """
    runs = add_setting_columns(runs)
    return [forgetting_claim(runs), replay_claim(runs), reptile_claim(runs), compute_claim(runs, no_replay, seed=seed)]
