"""Table formatting: mean ± std over seeds, Markdown and booktabs LaTeX."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis import tables


def test_mean_std_and_formatting() -> None:
    m, s, n = tables.mean_std([1.0, 2.0, 3.0, float("nan")])
    assert (m, s, n) == (2.0, 1.0, 3)
    assert tables.fmt_mean_std([1.0, 2.0, 3.0]) == "2.000 ± 1.000"
    assert tables.fmt_mean_std([1.23456]) == "1.235"
    assert tables.fmt_mean_std([]) == "–"
    assert math.isnan(tables.mean_std([5.0])[1])


def test_method_table_has_task_columns_and_average(collection) -> None:
    usable = collection.runs[collection.runs["usable"]]
    t = tables.method_table(usable, ["en", "fr", "de"], "retained")
    assert list(t.columns) == ["method", "seeds", "en", "fr", "de", "Avg", "Avg 95% CI"]
    row = t.set_index("method").loc["m1, alpha=0"]
    assert row["seeds"] == 3
    runs = usable[(usable["model"] == "m1")]
    assert row["Avg"] == tables.fmt_mean_std(runs["retained_loss"])
    v = runs["retained_loss"].to_numpy()
    half = 4.302653 * v.std(ddof=1) / np.sqrt(3)  # t(0.975, 2 df): three seeds
    assert row["Avg 95% CI"] == f"[{v.mean() - half:.3f}, {v.mean() + half:.3f}]"
    assert row["en"] == tables.fmt_mean_std(runs["loss_end.en"])
    # sorted by model size: m1 first, m5 last
    assert t["method"].iloc[0].startswith("m1") and t["method"].iloc[-1].startswith("m5")
    f = tables.method_table(usable, ["en", "fr", "de"], "forgetting").set_index("method")
    assert f.loc["m3, alpha=0.25", "Avg"] == tables.fmt_mean_std(usable[(usable["model"] == "m3") & (usable["alpha"] == 0.25) & ~usable["reptile"]]["forgetting"])


def test_markdown_and_latex_rendering() -> None:
    df = pd.DataFrame({"method": ["m3, alpha=0.25_x"], "en": ["3.1 ± 0.2"], "Avg": ["a|b"]})
    md = tables.to_markdown(df)
    assert md.splitlines()[0] == "| method | en | Avg |"
    assert md.splitlines()[1] == "|---|---|---|"
    assert "a\\|b" in md
    tex = tables.to_latex(df, caption="Retained 100%", label="tab:r")
    for piece in (r"\toprule", r"\midrule", r"\bottomrule", r"\begin{tabular}{lrr}", r"alpha=0.25\_x", r"3.1 $\pm$ 0.2",
                  r"\caption{Retained 100\%}", r"\label{tab:r}"):
        assert piece in tex
    assert tables.to_markdown(pd.DataFrame()) == "_(empty)_\n"
