"""How often the report's 95% intervals contain the truth: a simulation on synthetic power laws.

    python -m analysis.coverage [--replicates 200] [--n-boot 200] [--seeds 3] [--seed 0]

Each replicate draws a no-replay sweep from a known curve L(C) = E + A C^-b (model sizes spread
log-evenly over the stated decades of C, `--seeds` runs per size, relative noise of 1% per run)
plus one replay setting with the same number of runs whose true compute multiplier is known, and
runs the report's own code on it: `analysis.families.fit_family` for the curve and its intervals,
`analysis.compare.compare_with_scaling` for the multiplier and its interval. It counts how often the
95% intervals of E, b and the multiplier contain the true values. A replicate whose full fit fails
counts as a miss for every quantity (a missing interval is no coverage).

The numbers of record are in docs/analysis.md; `tests/analysis/test_analysis_coverage.py` asserts
the 0.90 floor with 100 replicates per design.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.compare import compare_with_scaling
from analysis.families import NO_REPLAY, fit_family
from analysis.fingerprints import COLUMN

NOISE = 0.01
"""Relative noise of one run's loss (lognormal sigma), the issue's 1%."""


@dataclass(frozen=True)
class Design:
    """One synthetic sweep: the true curve, its sizes and the replay setting to compare."""

    name: str
    n_sizes: int
    decades: float
    E: float = 2.0
    b: float = 0.3
    reducible_at_smallest: float = 0.6
    """A is chosen so that A C_min^-b = this fraction of E (how far above the floor the smallest model is)."""
    multiplier: float = 2.0
    """True compute multiplier of the replay setting."""
    c_min: float = 1e6

    def sizes(self) -> np.ndarray:
        return np.geomspace(self.c_min, self.c_min * 10**self.decades, self.n_sizes)

    @property
    def A(self) -> float:
        return self.reducible_at_smallest * self.E * self.c_min**self.b

    def loss(self, c: np.ndarray | float) -> np.ndarray:
        return self.E + self.A * np.asarray(c, dtype=float) ** -self.b


DESIGNS = (
    Design("5 sizes over 2 decades", 5, 2.0),
    Design("7 sizes over 3 decades", 7, 3.0),
    Design("6 sizes over 2.5 decades, steeper (b=0.5), multiplier 0.7", 6, 2.5, b=0.5, multiplier=0.7),
)


def synthetic_runs(design: Design, seeds: int, rng: np.random.Generator) -> pd.DataFrame:
    """A runs table (the columns the fits and comparisons read) for one replicate of `design`."""
    sizes = design.sizes()
    c_used = float(np.sqrt(sizes[0] * sizes[1]))  # inside the observed range, not on a grid point
    rows = []
    for i, c in enumerate(sizes):
        for s in range(seeds):
            rows.append(dict(run_id=f"m{i}-s{s}", model=f"m{i}", alpha=0.0, k=0, eps=1.0, reptile=False,
                             flops_per_new_token=c, loss_true=float(design.loss(c))))
    true_replay_loss = float(design.loss(design.multiplier * c_used))
    for s in range(seeds):
        rows.append(dict(run_id=f"replay-s{s}", model="m1", alpha=0.25, k=0, eps=1.0, reptile=False,
                         flops_per_new_token=c_used, loss_true=true_replay_loss))
    runs = pd.DataFrame(rows)
    runs["retained_loss"] = runs["loss_true"] * np.exp(NOISE * rng.standard_normal(len(runs)))
    runs[COLUMN] = "synthetic"
    return runs


def replicate(design: Design, seeds: int, n_boot: int, rng: np.random.Generator, seed: int) -> dict[str, bool]:
    """Whether each 95% interval (E, b, multiplier) of one synthetic sweep contains the truth."""
    runs = synthetic_runs(design, seeds, rng)
    nr = runs[runs["alpha"] == 0]
    ff = fit_family(NO_REPLAY, nr, "retained_loss", stratum="model", n_boot=n_boot, seed=seed)
    if not ff.fit.converged or ff.boot is None:
        return {"E": False, "b": False, "multiplier": False}
    ci = ff.boot.ci()
    (cmp,) = compare_with_scaling(runs, ff, seed=seed)
    return {
        "E": ci["E"][0] <= design.E <= ci["E"][1],
        "b": ci["b"][0] <= design.b <= ci["b"][1],
        "multiplier": cmp.ci_low <= design.multiplier <= cmp.ci_high,
    }


def coverage(design: Design, *, replicates: int, seeds: int = 3, n_boot: int = 200, seed: int = 0) -> dict[str, float]:
    """Fraction of `replicates` whose 95% intervals contain the truth, per quantity."""
    rng = np.random.default_rng(seed)
    hits = [replicate(design, seeds, n_boot, rng, seed + i) for i in range(replicates)]
    return {q: float(np.mean([h[q] for h in hits])) for q in ("E", "b", "multiplier")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.coverage", description=__doc__.split("\n")[0])
    parser.add_argument("--replicates", type=int, default=200)
    parser.add_argument("--n-boot", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=3, help="runs per model size and of the replay setting")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print("| design | seeds per size | replicates | bootstrap refits | coverage of E | of b | of the multiplier | seconds |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for design in DESIGNS:
        t0 = time.perf_counter()
        cov = coverage(design, replicates=args.replicates, seeds=args.seeds, n_boot=args.n_boot, seed=args.seed)
        print(f"| {design.name} | {args.seeds} | {args.replicates} | {args.n_boot} | {cov['E']:.3f} | {cov['b']:.3f} | "
              f"{cov['multiplier']:.3f} | {time.perf_counter() - t0:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
