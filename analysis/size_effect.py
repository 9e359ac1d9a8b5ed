"""Does model size matter in this study? The no-replay loss of each size, and one plain sentence about it.

"Replay or a bigger model?" has an answer only where a bigger model helps: if no-replay learned loss does not
fall with size, every comparison with scaling is a comparison with nothing. So before the claims, the report
states, from the no-replay runs (alpha = 0, Reptile off), each size's learned and retained loss with 95% t
intervals over seeds, the span of non-embedding parameters, and the Welch interval of largest minus smallest.
The sentence's rule: learned loss "falls with size" when the largest-minus-smallest interval lies below 0 and
every step of the ladder has a mean below the previous step's; "falls overall, not at every step" when only the
first holds; "does not clearly fall with size" when the interval does not lie below 0 (it may still fall: the seeds
cannot tell it from no change).
"""

from __future__ import annotations

import math

import pandas as pd

from analysis import tables
from analysis.families import no_replay_runs
from analysis.seed_intervals import difference_interval, mean_interval

METRICS = ("learned_loss", "retained_loss")


def size_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per size of the no-replay runs, smallest first: parameters, seeds, and each metric's mean [95%]."""
    nr = no_replay_runs(runs)
    order = nr.drop_duplicates("model").sort_values("n_params_nonembedding")
    rows = []
    for model, ne in zip(order["model"], order["n_params_nonembedding"], strict=True):
        mine = nr[nr["model"] == model]
        row = {"model": model, "non-embedding": f"{ne / 1e3:,.0f}k", "seeds": len(mine)}
        for metric in METRICS:
            row[metric.replace("_", " ")] = mean_interval(mine[metric]).text()
        rows.append(row)
    return pd.DataFrame(rows)


def verdict(runs: pd.DataFrame, metric: str = "learned_loss") -> str:
    """The plain sentence on `metric` against size (see the module docstring for the rule)."""
    nr = no_replay_runs(runs)
    order = nr.drop_duplicates("model").sort_values("n_params_nonembedding")
    if len(order) < 2:
        return f"No-replay {metric.replace('_', ' ')}: fewer than two sizes, so nothing can be said about size."
    small, large = order["model"].iloc[0], order["model"].iloc[-1]
    decades = math.log10(order["n_params_nonembedding"].iloc[-1] / order["n_params_nonembedding"].iloc[0])
    diff = difference_interval(nr.loc[nr["model"] == large, metric], nr.loc[nr["model"] == small, metric])
    means = [nr.loc[nr["model"] == m, metric].mean() for m in order["model"]]
    steps_down = all(b < a for a, b in zip(means, means[1:]))
    words = metric.replace("_", " ")
    span = f"from {small} to {large} ({decades:.2f} decades of non-embedding parameters)"
    if diff.sign() < 0:
        how = "falls with size at every step of the ladder" if steps_down else "falls overall, but not at every step"
        return f"No-replay {words} {how} {span}: largest minus smallest {diff.text()} nats/token (95%)."
    return (f"No-replay {words} does not clearly fall with size {span}: largest minus smallest {diff.text()} nats/token "
            "(95%; the interval includes 0).")


def section(runs: pd.DataFrame) -> list[str]:
    """Markdown: the per-size table and a sentence for learned and for retained loss."""
    if runs.empty or no_replay_runs(runs).empty:
        return []
    return ["## Does model size matter here?", "",
            "No-replay runs (alpha = 0, Reptile off); mean over seeds with 95% t intervals (`analysis/size_effect.py`).", "",
            tables.to_markdown(size_table(runs)), f"- {verdict(runs, 'learned_loss')}",
            f"- {verdict(runs, 'retained_loss')}", ""]
