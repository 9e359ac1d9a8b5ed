"""The paper's four claims, each checked against a sweep with stated rules and intervals over seeds.

(a) Sequential training forgets: for each model size, the no-replay runs' forgetting (mean over
    all tasks but the last, in nats/token) with its t interval. A size supports the claim when the
    interval is above 0 and contradicts it when it is below 0.
(b) Replay reduces forgetting, and more so at a larger replay rate: for each size (Reptile off), consecutive
    replay rates 0 = alpha_0 < alpha_1 < ... The first step is judged on forgetting: the Welch interval of
    F(alpha_1) - F(0). Every further step is judged on signed backward transfer, BWT = mean of L_after - L_end
    (forgetting is clipped at 0 and has no room left once replay has nearly removed it; BWT is not clipped):
    the Welch interval of BWT(alpha_i) - BWT(alpha_{i-1}), where above 0 means less forgotten. A size supports
    the claim when every step reduces forgetting (F interval below 0, BWT interval above 0) and contradicts it
    when some step increases it. The claim states the seeds per setting its Bonferroni level needs
    (`seeds_needed`) and warns when the study has fewer.
(c) Reptile adds to replay: for each size and replay rate > 0, the Welch interval of the retained loss
    with Reptile minus without (same alpha). A pair supports the claim when Reptile lowers it (interval
    below 0) and contradicts it when Reptile raises it (interval above 0).
(d) Per FLOP, a small replay rate beats a bigger model and a large one does not: for each size
    (Reptile off), the smallest and the largest replay rate are each judged on retained loss twice: by the
    compute-equivalent multiplier (`analysis.compare`, from the no-replay fit, where it holds) and by dominance
    (`analysis.dominance`, from the measured no-replay sizes, no fit). A rate's verdict is the decisive one of the
    two ("better"/"worse than scaling"); when both are decisive and disagree it is undecided; when neither is,
    "no clear difference" if either says so. A size supports the claim when the small rate is "better than
    scaling" and the large one is "worse" or "no clear difference"; it contradicts it when the small rate is
    "worse than scaling" or the large one is "better than scaling". The intervals are the two multipliers per size
    (when the fit converged) and one dominance interval per no-replay size and rate. The report also lists the
    dominance verdicts on learned loss (`analysis.dominance.section`); they do not enter the claim.

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

import math
from dataclasses import dataclass, field

import pandas as pd

from analysis.bootstrap import CI_LEVEL
from analysis.compare import Comparison, compare_with_scaling
from analysis.dominance import BETTER, NO_DIFFERENCE, WORSE, Dominance, count_intervals, dominance
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
    seeds: int = 0
    """Fewest seeds of a setting the claim compares (0: not stated)."""
    seeds_needed: int = 0
    """Seeds per setting at which the claim's level is reachable at all (`seeds_needed`; 0: not stated)."""

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
        text = (f"{self.verdict} ({counts[SUPPORTS]} of {len(self.checks)} checks support, "
                f"{counts[CONTRADICTS]} contradict, {counts[UNDECIDED]} cannot tell; {_pct(self.level)} intervals)")
        return text + (f"; {self.seeds_warning}" if self.seeds_warning else "")

    @property
    def seeds_warning(self) -> str:
        """A warning when the study has fewer seeds per setting than the claim's level needs ("" otherwise)."""
        if not self.seeds_needed or self.seeds >= self.seeds_needed:
            return ""
        return (f"warning: its {_pct(self.level)} level needs {self.seeds_needed} seeds per setting to be reachable "
                f"without trusting normal noise, and this study has {self.seeds}")


def bonferroni(m: int) -> float:
    """Level of each of m intervals so that all m hold together with probability >= 95%."""
    return 1 - (1 - CI_LEVEL) / max(m, 1)


def seeds_needed(level: float) -> int:
    """Seeds per setting at which a two-setting comparison can reach `level` at all without assuming normal noise:
    the smallest n whose most extreme split of 2n runs into two groups of n (a two-sided exact permutation test,
    p = 2 / C(2n, n)) falls below 1 - level. E.g. 4 at 95%, 5 at 1 - 0.05/2, 6 at 1 - 0.05/10."""
    n = 2
    while 2 / math.comb(2 * n, n) > 1 - level:
        n += 1
    return n


def _fewest_seeds(groups: list[pd.Series]) -> int:
    return min((int(g.notna().sum()) for g in groups), default=0)


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
    checks, compared = [], []
    for model, sub, steps in groups:
        ests = []
        for i, (lo, hi) in enumerate(steps):
            # The first step on forgetting; later ones on signed backward transfer, which is not clipped at 0.
            metric, name, good = ("forgetting", "F", -1) if i == 0 else ("backward_transfer", "BWT", +1)
            a, b = sub.loc[sub["alpha"] == hi, metric], sub.loc[sub["alpha"] == lo, metric]
            compared += [a, b]
            ests.append((f"{name}(alpha={hi:g}) - {name}(alpha={lo:g})", difference_interval(a, b, level), good))
        signs = [e.sign() * good for _, e, good in ests]  # +1: this step reduced forgetting
        outcome = SUPPORTS if all(s == 1 for s in signs) else (CONTRADICTS if any(s == -1 for s in signs) else UNDECIDED)
        checks.append(Check(model, "; ".join(f"{name} {e.text()}" for name, e, _ in ests), outcome))
    return Claim("b", "Replay reduces forgetting, and more so at a larger replay rate.",
                 "per size, the first step up in alpha lowers forgetting (Welch interval below 0) and every further step "
                 "raises backward transfer (interval above 0) supports; any step the other way contradicts", checks, level,
                 seeds=_fewest_seeds(compared), seeds_needed=seeds_needed(level) if checks else 0)


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
    fewest = _fewest_seeds([g["retained_loss"] for _, on, off in pairs for g in (on, off)])
    for label, on, off in pairs:
        est = difference_interval(on["retained_loss"], off["retained_loss"], level)
        checks.append(Check(label, f"retained loss with - without Reptile {est.text()}", _outcome(est.sign(), -1)))
    return Claim("c", "Reptile adds to replay.",
                 "per size and alpha > 0, retained loss with Reptile minus without: interval below 0 supports, "
                 "above 0 contradicts", checks, level, seeds=fewest, seeds_needed=seeds_needed(level) if checks else 0)


def compute_claim(runs: pd.DataFrame, no_replay: FamilyFit | None, *, seed: int = 0) -> Claim:
    """Claim (d) from the multipliers and the dominance verdicts on retained loss of the smallest and largest alpha
    per size (Reptile off), at the claim's Bonferroni level (module docstring)."""
    plain = runs[~runs["reptile"].astype(bool) & (runs["alpha"] > 0)]
    sizes = [m for m in _sizes(plain) if plain.loc[plain["model"] == m, "alpha"].nunique() >= 2]
    fitted = no_replay is not None and no_replay.fit.converged
    level = bonferroni(2 * len(sizes) * ((1 if fitted else 0) + count_intervals(runs)))
    rule = ("per size (Reptile off), on retained loss, by multiplier and by dominance: the smallest alpha 'better than "
            "scaling' and the largest not supports; the smallest 'worse than scaling' or the largest 'better than "
            "scaling' contradicts")
    statement = "Per FLOP, a small replay rate beats a bigger model and a large one does not."
    if not sizes:
        return Claim("d", statement, rule, [], level)
    alphas = {m: sorted(plain.loc[plain["model"] == m, "alpha"].unique()) for m in sizes}
    chosen = plain[[a in (alphas[m][0], alphas[m][-1]) for m, a in zip(plain["model"], plain["alpha"], strict=True)]]
    comparisons = compare_with_scaling(chosen, no_replay, seed=seed, level=level) if no_replay is not None else []
    dominances = dominance(pd.concat([chosen, no_replay_runs(runs)]), "retained_loss", level=level)
    if no_replay is None and count_intervals(runs) == 0:
        return Claim("d", statement, rule, [], level)
    return Claim("d", statement, rule, [_compute_check(m, comparisons, dominances, alphas[m]) for m in sizes], level)


def _compute_check(model: str, comparisons: list[Comparison], dominances: list[Dominance] = (),
                   alphas: list[float] | None = None) -> Check:
    mults = {c.alpha: c for c in comparisons if c.model == model}
    doms = {d.alpha: d for d in dominances if d.model == model}
    rates = sorted(set(mults) | set(doms)) if alphas is None else [alphas[0], alphas[-1]]
    small, large = rates[0], rates[-1]
    verdicts, texts = {}, []
    for alpha in (small, large):
        verdicts[alpha] = _combined(mults.get(alpha), doms.get(alpha))
        parts = ([f"fit {_mult(mults[alpha])}"] if alpha in mults else []) + (
            [f"dominance {doms[alpha].text()}"] if alpha in doms else [])
        texts.append(f"alpha={alpha:g}: " + "; ".join(parts or ["no comparison"]))
    text = " | ".join(texts)
    if verdicts[small] == BETTER and verdicts[large] in (WORSE, NO_DIFFERENCE):
        return Check(model, text, SUPPORTS)
    if verdicts[small] == WORSE or verdicts[large] == BETTER:
        return Check(model, text, CONTRADICTS)
    return Check(model, text, UNDECIDED)


def _combined(mult: Comparison | None, dom: Dominance | None) -> str | None:
    """One rate's verdict from its multiplier and its dominance (see (d) in the module docstring); None: undecided."""
    words = {"better than scaling": BETTER, "worse than scaling": WORSE, "no clear difference from scaling": NO_DIFFERENCE}
    fit = words.get(mult.verdict) if mult is not None else None
    dom_v = dom.verdict if dom is not None and dom.verdict in (BETTER, WORSE, NO_DIFFERENCE) else None
    decisive = {v for v in (fit, dom_v) if v in (BETTER, WORSE)}
    if len(decisive) == 2:
        return None  # the fit and the runs disagree
    if decisive:
        return decisive.pop()
    return NO_DIFFERENCE if NO_DIFFERENCE in (fit, dom_v) else None


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
