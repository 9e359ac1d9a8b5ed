"""One command from sweep folders to a report: tables, figures, fitted parameters and report.md.

    python -m analysis.report <sweep dirs, run dirs or globs> --out <dir> [--n-boot 200] [--seed 0]
                              [--study sqlite:///study.db [--study-name NAME]] [--no-progress]
                              [--results-page docs/results/<name>.md [--machine "..."]]
                              [--lr-search <the learning-rate search's sweep dir> ...]

Writes into <dir>: data/ (runs and evals as CSV and Parquet), tables/ (Markdown and LaTeX),
figures/ (PNG and PDF), fits.json (every fit and comparison), report.md (ties them together, with
the paper's four claims checked by `analysis.claims`) and, if anything went wrong inside the
analysis, errors.log. `--results-page` also writes a page for docs/ (`analysis.results_page`). Every problem (no runs, mixed task
sequences, runs scored on different evaluations (refused: no fit, no comparison), too few points, a fit
that does not converge, a figure that cannot be drawn) becomes a message in report.md that names it and
the fix, and the rest of the report is still produced.
Exit status: 0 when a report was written from at least one run, 1 when no run was found.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from analysis import figures, tables
from analysis.alignment import add_alignment
from analysis.claims import check_claims
from analysis.collect import collect, write_tables
from analysis.compare import compare_with_scaling, summary_lines
from analysis.dominance import dominance
from analysis.dominance import section as dominance_section
from analysis.extrapolation import predictions
from analysis.extrapolation import section as prediction_section
from analysis.families import (
    METRIC_WORDS,
    METRICS,
    NO_REPLAY,
    FamilyFit,
    fit_family,
    fit_summary,
    no_replay_runs,
    replay_families,
)
from analysis.figure_captions import FIGURE_CAPTIONS
from analysis.fingerprints import MixedEvaluations, check_same_evaluation
from analysis.lr_search import load_search
from analysis.lr_search import section as lr_search_section
from analysis.problems import group_problems
from analysis.provenance import mixed_code_warning, provenance_table
from analysis.report_contents import Report
from analysis.results_page import write_results_page
from analysis.size_effect import section as size_section
from mer.rundir.layout import strict_dumps


def build_report(
    paths: Sequence[str | Path],
    out: Path,
    *,
    n_boot: int = 200,
    seed: int = 0,
    study: str | None = None,
    study_name: str | None = None,
    progress: bool = True,
    results_page: Path | None = None,
    command: str = "python -m analysis.report",
    machine: str | None = None,
    lr_search: Sequence[str | Path] = (),
) -> Report:
    """Run the whole analysis; never raises for bad input (see the module docstring).

    With `results_page`, also writes that page and its figures (`analysis.results_page`); `command`
    is the command line the page names to regenerate itself and `machine` the machine the runs ran on.
    `lr_search`: the sweep folders of the learning-rate search the study's sizes were tuned by (`analysis.lr_search`).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    col = collect(paths, progress=progress)
    rep = Report(out=out, collection=col, problems=list(col.problems))
    if col.runs.empty:
        _write_markdown(rep, paths)
        return rep
    with _stage(rep, "writing the run tables"):
        rep.files += write_tables(col, out / "data")
    with _stage(rep, "selecting runs"):
        _select(rep)
    if lr_search:
        with _stage(rep, "reading the learning-rate search"):
            rep.lr_search = load_search(lr_search)
    with _stage(rep, "fitting power laws"):
        _fit_all(rep, n_boot=n_boot, seed=seed, progress=progress)
    with _stage(rep, "comparing replay with scaling"):
        warning = mixed_code_warning(rep.usable, "this report's fits and comparisons")  # analysis.provenance
        if warning:
            rep.problems.append(warning)
        for metric in METRICS:
            ff = _find_fit(rep, NO_REPLAY, metric)
            if ff is not None:
                rep.comparisons += compare_with_scaling(rep.usable, ff, seed=seed)
    with _stage(rep, "comparing replay with scaling by dominance"):
        if rep.fits:  # the same runs as the fits: none when their evaluations differ
            rep.dominance = {metric: dominance(rep.usable, metric) for metric in METRICS}
    with _stage(rep, "checking the paper's claims"):
        if not rep.usable.empty:
            rep.claims = check_claims(rep.usable, _find_fit(rep, NO_REPLAY, "retained_loss"), seed=seed)
    with _stage(rep, "checking whether the laws predict their largest size"):
        rep.extrapolations = predictions([f for f in rep.fits if f.x_col == "flops_per_new_token"], n_boot=n_boot, seed=seed)
    with _stage(rep, "writing tables"):
        _write_tables(rep)
    _draw_figures(rep)
    if study:
        with _stage(rep, "drawing the Optuna study"):
            from analysis.study import study_figures

            files, probs = study_figures(study, study_name, out / "figures")
            rep.files += files
            rep.problems += probs
    with _stage(rep, "writing fits.json"):
        path = out / "fits.json"
        path.write_text(strict_dumps({
            "task_sequence": rep.sequence,
            "fits": [fit_summary(f) for f in rep.fits],
            "comparisons": [c.to_dict() for c in rep.comparisons],
            "extrapolations": [e.to_dict() for e in rep.extrapolations],
            "dominance": {m: [{"setting": d.setting, "verdict": d.verdict, "text": d.text()} for d in ds]
                          for m, ds in rep.dominance.items()},
        }, indent=2))
        rep.files.append(path)
    _write_markdown(rep, paths)
    with _stage(rep, "adding the gradient alignment"):  # runs trained with eval.grad_alignment=true
        add_alignment(rep)
    with _stage(rep, "adding the downstream accuracy"):  # runs scored with lm-evaluation-harness (mer.evaluation.downstream)
        from analysis.downstream import add_downstream

        add_downstream(rep)
    if results_page is not None:
        with _stage(rep, "writing the results page"):
            rep.files += write_results_page(rep, results_page, command=command, machine=machine)
    return rep


@contextmanager
def _stage(rep: Report, what: str) -> Iterator[None]:
    """Turn an unexpected exception into a message (and a traceback in errors.log) and carry on."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - the report must survive a bug in one part
        rep.errors.append(f"internal error while {what}: {type(exc).__name__}: {exc} (traceback in errors.log)")
        with (rep.out / "errors.log").open("a", encoding="utf-8") as fh:
            fh.write(f"--- while {what} ---\n{traceback.format_exc()}\n")


def _select(rep: Report) -> None:
    """Pick the task sequence to analyse and the usable runs of it; explain what is left out."""
    runs = rep.collection.runs
    known = runs[runs["task_sequence"] != ""]
    counts = Counter(known[known["usable"]]["task_sequence"]) or Counter(known["task_sequence"])
    if not counts:
        rep.problems.append("no run records its task sequence (config.yaml data.tasks); nothing to analyse")
        return
    rep.sequence = counts.most_common(1)[0][0]
    seqs = sorted(set(known["task_sequence"]))
    if len(seqs) > 1:
        others = known[known["task_sequence"] != rep.sequence]
        rep.problems.append(
            f"runs from {len(seqs)} different task sequences are mixed ({', '.join(repr(s) for s in seqs)}); "
            f"this report analyses {rep.sequence!r} and leaves out {len(others)} run(s) of other sequences "
            f"({', '.join(others['run_id'].head(5))}{', ...' if len(others) > 5 else ''}). "
            "Fix: run the report once per task sequence, e.g. `python -m analysis.report <that sweep> --out <its own dir>`"
        )
    rep.usable = runs[(runs["task_sequence"] == rep.sequence) & runs["usable"]].copy()
    if rep.usable.empty:
        rep.problems.append(
            f"no usable run of {rep.sequence!r}: every run is failed, incomplete or diverged; "
            "metrics need a boundary evaluation for every task (let the runs finish or resume them)"
        )


def _fit_all(rep: Report, *, n_boot: int, seed: int, progress: bool) -> None:
    usable = rep.usable
    if usable.empty:
        return
    try:  # every fit and comparison combines these runs: refuse them all at once, with one explanation
        check_same_evaluation(usable, "fit power laws or compare replay with scaling")
    except MixedEvaluations as refused:
        rep.problems.append(f"{refused}. The tables and figures below still show these runs side by side: "
                            "read them with that in mind")
        return
    nr = no_replay_runs(usable)
    jobs: list[tuple[str, pd.DataFrame, str, str, str]] = []
    if nr.empty:
        rep.problems.append(
            "no no-replay runs (alpha=0, Reptile off): replay cannot be compared with scaling; "
            "add runs with alpha=0 k=0 at several model sizes"
        )
    else:
        jobs += [(NO_REPLAY, nr, m, "model", "flops_per_new_token") for m in METRICS]
        jobs.append((NO_REPLAY + ", total FLOPs", nr, "retained_loss", "model", "final_flops_train"))
    for name, fam in replay_families(usable).items():
        jobs += [(name, fam, m, "alpha", "flops_per_new_token") for m in METRICS]
    # A bar only in a terminal: in a log it would print its first and last state as two lines.
    quiet = not progress or n_boot * len(jobs) < 100 or not sys.stderr.isatty()
    bar = tqdm(total=len(jobs) * max(n_boot, 0), desc="bootstrap fits", unit="fit", disable=quiet)
    for done, (family, runs, metric, stratum, x_col) in enumerate(jobs, start=1):
        ff = fit_family(family, runs, metric, stratum=stratum, n_boot=n_boot, seed=seed, x_col=x_col, progress=bar.update)
        bar.update(done * max(n_boot, 0) - bar.n)  # a fit without an interval (one seed per size) refits nothing
        rep.fits.append(ff)
        if not ff.fit.converged:
            rep.problems.append(f"fit of {METRIC_WORDS[metric]} for '{family}' not usable: {ff.fit.reason}")
        elif ff.boot is not None and ff.boot.n_failed > 0.2 * n_boot:
            rep.problems.append(
                f"fit of {METRIC_WORDS[metric]} for '{family}': {ff.boot.n_failed} of {n_boot} bootstrap refits did not "
                "converge, so its interval is unreliable; more seeds per scale would help"
            )
    bar.close()


def _find_fit(rep: Report, family: str, metric: str) -> FamilyFit | None:
    return next((f for f in rep.fits if f.family == family and f.metric == metric and f.x_col == "flops_per_new_token"), None)


def _write_tables(rep: Report) -> None:
    tdir = rep.out / "tables"
    tdir.mkdir(parents=True, exist_ok=True)
    tasks = rep.sequence.split(">") if rep.sequence else []
    made: dict[str, tuple[pd.DataFrame, str]] = {}
    if not rep.usable.empty:
        for kind, (_, _, caption) in tables.TABLE_KINDS.items():
            made[kind] = (tables.method_table(rep.usable, tasks, kind), caption + "; mean ± std over seeds")
    if rep.fits:
        made["fits"] = (tables.fit_table(rep.fits), "Inverse power-law fits L = E + A x^-b, 95% bootstrap intervals over runs")
    if rep.comparisons:
        made["compare"] = (tables.compare_table(rep.comparisons), "Compute-equivalent multiplier of replay against a bigger model")
    for name, (df, caption) in made.items():
        (tdir / f"{name}.md").write_text(tables.to_markdown(df), encoding="utf-8")
        (tdir / f"{name}.tex").write_text(tables.to_latex(df, caption=caption, label=f"tab:{name}"), encoding="utf-8")
        rep.files += [tdir / f"{name}.md", tdir / f"{name}.tex"]


def _draw_figures(rep: Report) -> None:
    fdir = rep.out / "figures"
    col, usable = rep.collection, rep.usable
    if usable.empty:
        return
    evals = col.evals[col.evals["run_id"].isin(usable["run_id"])] if not col.evals.empty else col.evals
    tasks = rep.sequence.split(">")
    total_fit = next((f for f in rep.fits if f.x_col == "final_flops_train"), None)

    def task_losses():
        fig, dropped = figures.plot_task_losses(evals, usable, tasks)
        if dropped:
            rep.problems.append(f"task_losses figure shows the first {figures.MAX_PANELS} settings; {dropped} more are in data/evals.csv")
        return fig

    jobs: list[tuple[str, Callable[[], object], str]] = [
        ("task_losses", task_losses, "no evaluations"),
        ("loss_vs_flops", lambda: figures.plot_loss_vs_flops(evals, usable, total_fit), "no evaluations"),
        ("stability_plasticity", lambda: figures.plot_stability_plasticity(usable, [f for f in rep.fits if f.x_col == "flops_per_new_token"]), "no runs"),
        ("forgetting_alpha_reptile", lambda: figures.plot_forgetting_heatmap(usable),
         "needs a model with >= 2 values of alpha or >= 2 Reptile settings (k, eps)"),
    ]
    for name, draw, why in jobs:
        with _stage(rep, f"drawing figure {name}"):
            fig = draw()
            if fig is None:
                rep.problems.append(f"figure {name} skipped: {why}")
                continue
            rep.files += figures.save(fig, fdir, name)


def _write_markdown(rep: Report, paths: Sequence[str | Path]) -> None:
    lines = ["# MER sweep report", ""]
    lines.append("Sources: " + ", ".join(f"`{p}`" for p in paths) + ".")
    if rep.sequence:
        lines.append(f"Task sequence analysed: `{rep.sequence.replace('>', ' -> ')}`.")
    lines.append("")
    issues = group_problems(rep.errors + rep.problems)
    if issues:
        lines += ["## Problems and notes", ""] + [f"- {p.line()}" for p in issues] + [""]
    runs = rep.collection.runs
    if runs.empty:
        lines += ["No run was found, so there is nothing else to report.", ""]
        (rep.out / "report.md").write_text("\n".join(lines), encoding="utf-8")
        return

    lines += ["## Runs", ""]
    status = runs.groupby(["status", "usable"]).size().reset_index(name="runs")
    lines.append(f"{len(runs)} run directories found; {len(rep.usable)} usable (every task finished, finite losses, sequence analysed).")
    lines += ["", tables.to_markdown(status.rename(columns={"usable": "usable in fits"}))]
    lines += ["Code version (git commit; +dirty: uncommitted changes) and command of each run's last attempt:", "",
              tables.to_markdown(provenance_table(runs))]
    left = runs[~runs["run_id"].isin(rep.usable["run_id"])] if not rep.usable.empty else runs
    if not left.empty:
        lines += ["Runs left out of fits, tables and figures (kept in `data/runs.csv` with their flags):", ""]
        for _, r in left.iterrows():
            why = r["incomplete_reason"] or r["problems"] or f"task sequence {r['task_sequence']!r}"
            err = f"; error: {r['error']}" if r["error"] else ""
            lines.append(f"- `{r['run_id']}` (status {r['status']}, {r['tasks_done']}/{r['n_tasks']} tasks done): {why}{err}")
        lines.append("")
    agree = runs["summary_agrees"].dropna()
    if len(agree):
        lines += [f"Metrics recomputed from metrics.jsonl agree with summary.json for {int(agree.sum())} of {len(agree)} runs that have both.", ""]

    lines += size_section(rep.usable) + lr_search_section(rep.lr_search, rep.usable)
    lines += ["## Replay versus scaling", ""]
    lines += [
        "Compute-equivalent multiplier: the training FLOPs per new token a model *without* replay needs, by the "
        "no-replay family's fitted curve, to reach the same loss, divided by the FLOPs per new token the setting used. "
        "Above 1, replay is cheaper than a bigger model. Intervals: 95%, from a residual bootstrap of the no-replay "
        "curve with a redrawn noise level and the setting's mean loss redrawn with the pooled seed-to-seed noise "
        "(coverage simulated in docs/analysis.md); none, and no verdict, where a model size or a setting has one run.", "",
    ]
    if rep.comparisons:
        for metric in METRICS:
            cs = [c for c in rep.comparisons if c.metric == metric]
            if cs:
                lines += [f"**{METRIC_WORDS[metric].capitalize()}** ({'stability' if metric == 'retained_loss' else 'plasticity'}):", ""]
                lines += [f"- {line}" for line in summary_lines(cs)] + [""]
        lines += ["Table: [tables/compare.md](tables/compare.md) ([LaTeX](tables/compare.tex)).", ""]
    else:
        lines += ["No comparison could be made (see the problems above).", ""]
    if rep.dominance:
        lines += dominance_section(rep.dominance)

    if rep.claims:
        lines += ["## The paper's four claims", "", "Rules: `analysis/claims.py` (docs/analysis.md); intervals over seeds.", ""]
        lines += [f"- ({c.key}) {c.statement} **{c.summary()}**" for c in rep.claims] + [""]

    if rep.fits:
        lines += ["## Power-law fits", "", "L = E + A x^-b with x = training FLOPs per new-data token (`final_flops_train` for the total-FLOPs fit); "
                  "Huber loss on log-residuals, L-BFGS-B from a grid of starts; 95% bootstrap intervals. Each family also "
                  "fits the pure law L = A x^-b and keeps the form the column `law` names (`analysis/law_form.py`: the pure "
                  "law when E runs to its lower bound, else the lower AIC).", ""]
        lines += [tables.to_markdown(tables.fit_table(rep.fits)), "All parameters: [fits.json](fits.json).", ""]
        lines += prediction_section(rep.extrapolations)

    for kind, title in (("retained", "Retained loss"), ("learned", "Learned loss"), ("forgetting", "Forgetting")):
        path = rep.out / "tables" / f"{kind}.md"
        if path.exists():
            lines += [f"## {title} per task", "", tables.TABLE_KINDS[kind][2] + "; mean ± std over seeds.", "", path.read_text(encoding="utf-8"),
                      f"LaTeX: [tables/{kind}.tex](tables/{kind}.tex).", ""]

    figs = sorted({p.stem for p in rep.files if p.parent.name == "figures" and p.suffix == ".png"})
    if figs:
        lines += ["## Figures", ""]
        for name in figs:
            lines += [f"### {name}", "", FIGURE_CAPTIONS.get(name, "Optuna study figure."), "", f"![{name}](figures/{name}.png)", ""]
    lines += ["## Data", "", "- `data/runs.csv`, `data/runs.parquet`: one row per run (config, sizes, status flags, metrics).",
              "- `data/evals.csv`, `data/evals.parquet`: one row per evaluation (`val_loss.<task>` columns).", ""]
    (rep.out / "report.md").write_text("\n".join(lines), encoding="utf-8")
    rep.files.append(rep.out / "report.md")


def main(argv: list[str] | None = None) -> int:
    import matplotlib

    matplotlib.use("Agg")  # files only; the CLI never opens a window
    parser = argparse.ArgumentParser(prog="python -m analysis.report", description="Sweep folders -> tables, figures, fits and report.md.")
    parser.add_argument("paths", nargs="+", help="sweep folders, run folders or globs (quote globs)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--n-boot", type=int, default=200, help="bootstrap replicates per fit (default 200; 0 = no intervals)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    parser.add_argument("--study", help="Optuna storage URL, e.g. sqlite:///sweeps/study.db, for the study figures")
    parser.add_argument("--study-name", help="study in --study to draw (default: all)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--results-page", type=Path,
                        help="also write a results page for docs/ (e.g. docs/results/cpu_bible.md) with its figures beside it")
    parser.add_argument("--machine", help="the machine the runs ran on, for the results page (the runs do not record it)")
    parser.add_argument("--lr-search", nargs="+", default=[], metavar="PATH",
                        help="sweep folders of the learning-rate search the study's sizes were tuned by (analysis/lr_search.py)")
    args = parser.parse_args(argv)
    command = "python -m analysis.report " + shlex.join(sys.argv[1:] if argv is None else argv)
    rep = build_report(args.paths, args.out, n_boot=args.n_boot, seed=args.seed, study=args.study,
                       study_name=args.study_name, progress=not args.no_progress,
                       results_page=args.results_page, command=command, machine=args.machine,
                       lr_search=args.lr_search)
    for p in rep.errors + rep.problems:
        print(f"warning: {p}", file=sys.stderr)
    print(f"report: {args.out / 'report.md'}")
    return 1 if rep.collection.runs.empty else 0


if __name__ == "__main__":
    raise SystemExit(main())
