"""Result tables (mean ± std over seeds, fitted parameters, replay-vs-scaling) in Markdown and LaTeX.

Tables are built as DataFrames of display strings and rendered by two small writers: Markdown
(GitHub pipes) and LaTeX with booktabs rules (needs ``\\usepackage{booktabs}``). No extra
dependency (pandas' own writers need tabulate/jinja2 and give less control over rules).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from analysis.compare import Comparison
from analysis.families import FamilyFit, add_setting_columns
from analysis.seed_intervals import mean_interval

TABLE_KINDS = {
    "retained": ("loss_end.{}", "retained_loss", "Retained loss L_end(j) after the last task (nats/token); Avg = retained loss"),
    "learned": ("loss_after.{}", "learned_loss", "Learned loss L_after(j) right after task j (nats/token); Avg = learned loss"),
    "forgetting": ("forgetting.{}", "forgetting", "Forgetting of task j (nats/token); Avg = forgetting score, mean over all tasks but the last"),
}


def mean_std(values: Iterable[float]) -> tuple[float, float, int]:
    """Mean, sample std (NaN for one value) and count of the finite values."""
    v = np.asarray(list(values), dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), (float(v.std(ddof=1)) if v.size > 1 else math.nan), int(v.size)


def fmt_mean_std(values: Iterable[float], digits: int = 3) -> str:
    m, s, n = mean_std(values)
    if n == 0:
        return "–"
    return f"{m:.{digits}f}" if n == 1 else f"{m:.{digits}f} ± {s:.{digits}f}"


def method_table(runs: pd.DataFrame, tasks: list[str], kind: str) -> pd.DataFrame:
    """One row per setting (model, alpha, Reptile), one column per task and an Avg; mean ± std over seeds,
    and the Avg's 95% t interval over seeds ("–" with fewer than two seeds)."""
    col_fmt, avg_col, _ = TABLE_KINDS[kind]
    runs = add_setting_columns(runs)
    runs = runs.assign(_n=runs["n_params"].fillna(0)).sort_values(["_n", "model", "alpha", "k_eff", "eps_eff"])
    rows = []
    for setting, grp in runs.groupby("setting", sort=False):
        row = {"method": setting, "seeds": len(grp)}
        for t in tasks:
            row[t] = fmt_mean_std(grp[col_fmt.format(t)])
        row["Avg"] = fmt_mean_std(grp[avg_col])
        est = mean_interval(grp[avg_col])
        row["Avg 95% CI"] = f"[{est.low:.3f}, {est.high:.3f}]" if est.has_interval else "–"
        rows.append(row)
    return pd.DataFrame(rows, columns=["method", "seeds", *tasks, "Avg", "Avg 95% CI"])


def _fmt_num(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "–"
    return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.3e}"


def fit_table(fits: list[FamilyFit]) -> pd.DataFrame:
    """Fitted E, A, b with 95% bootstrap intervals (or why there are none), one row per family and metric."""
    rows = []
    for ff in fits:
        ci = ff.boot.ci() if ff.boot is not None else {}
        row = {"family": ff.family, "metric": ff.metric, "x": ff.x_col, "runs": len(ff.points)}
        for k, v in ff.fit.params.items():
            cell = _fmt_num(v) if ff.fit.converged else "–"
            if ff.fit.converged and k in ci and math.isfinite(ci[k][0]):
                cell += f" [{_fmt_num(ci[k][0])}, {_fmt_num(ci[k][1])}]"
            row[k] = cell
        row["status"] = "ok" if ff.fit.converged else f"failed: {ff.fit.reason}"
        row["law"] = ff.law if ff.fit.converged else "–"  # which form, and why (analysis.law_form)
        if ff.fit.converged:
            row["interval"] = ("not computed (n_boot=0)" if ff.boot is None
                               else ff.boot.reason or f"residual bootstrap, {ff.boot.ok.shape[0]} refits")
        else:
            row["interval"] = "–"
        rows.append(row)
    return pd.DataFrame(rows)


def compare_table(comparisons: list[Comparison]) -> pd.DataFrame:
    """Compute-equivalent multipliers with intervals and verdicts."""
    rows = []
    for c in comparisons:
        ci = "–" if math.isnan(c.ci_low) else f"[{_fmt_num(c.ci_low)}, {_fmt_num(c.ci_high)}]"
        rows.append({
            "setting": c.setting, "metric": c.metric, "runs": c.n_runs, "loss": _fmt_num(c.loss),
            "FLOPs/token used": _fmt_num(c.flops_used), "no-replay FLOPs/token needed": _fmt_num(c.flops_needed),
            "multiplier": _fmt_num(c.multiplier), "95% CI": ci, "verdict": c.verdict,
            "extrapolated": "yes" if c.extrapolated else "no",
        })
    return pd.DataFrame(rows)


def to_markdown(df: pd.DataFrame) -> str:
    """GitHub-flavoured Markdown table (pipes in cells are escaped)."""
    if df.empty:
        return "_(empty)_\n"
    cols = [str(c) for c in df.columns]
    esc = lambda v: str(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(esc(c) for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    out = "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))
    return out.replace("±", r"$\pm$").replace("–", "--")


def to_latex(df: pd.DataFrame, caption: str = "", label: str = "") -> str:
    """A booktabs `table` environment; first column left-aligned, the rest right-aligned."""
    if df.empty:
        return "% (empty table)\n"
    spec = "l" + "r" * (df.shape[1] - 1)
    lines = [r"\begin{table}[t]", r"\centering", r"\small"]
    if caption:
        lines.append(rf"\caption{{{latex_escape(caption)}}}")
    if label:
        lines.append(rf"\label{{{label}}}")
    lines += [rf"\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(latex_escape(c) for c in df.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_escape(v) for v in row) + r" \\" for row in df.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"
