"""A results page for docs/: what was run, the four claims, the verdicts, tables and figures, all from the runs.

    python -m analysis.report <sweeps> --out <dir> --results-page docs/results/<name>.md [--machine "..."]

writes the page and, beside it, a folder `<name>/` with its figures as small PNGs (palette-compressed,
each under `MAX_FIGURE_BYTES`). The page says how to regenerate itself and is never edited by hand:
every number on it comes from the report (`analysis.report_contents.Report`, which `analysis.report`
builds and hands over), the sweeps' own `multirun.yaml` (the commands) and the runs' `summary.json`
(software versions). Only the machine, which the runs do not record, is taken from `--machine`.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pandas as pd
import yaml
from PIL import Image

from analysis import tables
from analysis.claims import Claim
from analysis.compare import summary_lines
from analysis.dominance import section as dominance_section
from analysis.extrapolation import section as prediction_section
from analysis.families import METRIC_WORDS, METRICS, add_setting_columns
from analysis.lr_search import section as lr_search_section
from analysis.problems import group_problems
from analysis.report_contents import Report
from analysis.size_effect import section as size_section
from mer.rundir.layout import read_summary

MAX_FIGURE_BYTES = 200_000
FIGURE_WIDTH = 1400
"""Pixels: wide enough to read a two-panel figure on a page, small enough to stay under the byte limit."""


def sweep_commands(runs: pd.DataFrame) -> list[str]:
    """`python -m mer.run -m ...` of every sweep the runs came from (its multirun.yaml), each followed by a
    comment saying how many of the runs it holds (a sweep can be stopped early and finished by another)."""
    lines = []
    for sweep, held in runs.groupby(runs["run_dir"].map(lambda p: str(Path(p).parent)), sort=True):
        path = Path(sweep) / "multirun.yaml"
        if not path.is_file():
            lines.append(f"# {len(held)} runs in {sweep} (no multirun.yaml: not started as a sweep)")
            continue
        overrides = (yaml.safe_load(path.read_text()) or {}).get("hydra", {}).get("overrides", {}).get("task", [])
        lines.append("python -m mer.run -m " + " ".join(shlex.quote(str(o)) for o in overrides)
                     + f"  # {len(held)} of the runs used here")
    return lines


def software_versions(runs: pd.DataFrame) -> list[str]:
    """Distinct `versions` records of the runs' summary.json, e.g. 'python 3.11.7, torch 2.13.0+cpu'."""
    seen: dict[str, None] = {}
    for run_dir in runs["run_dir"]:
        summary = read_summary(Path(run_dir))
        if summary is None:
            continue
        versions = summary.get("versions") or {}
        seen.setdefault(", ".join(f"{k} {v}" for k, v in versions.items()), None)
    return list(seen)


def small_png(src: Path, dest: Path) -> Path:
    """Copy a PNG figure at `FIGURE_WIDTH` pixels wide with an adaptive palette; halve it until it fits."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(src) as img:
        img = img.convert("RGB")
        width = min(FIGURE_WIDTH, img.width)
        while True:
            scaled = img.resize((width, round(img.height * width / img.width)), Image.LANCZOS)
            scaled.quantize(colors=128).save(dest, optimize=True)
            if dest.stat().st_size <= MAX_FIGURE_BYTES or width < 400:
                return dest
            width //= 2


def _design(usable: pd.DataFrame, tasks: list[str]) -> list[str]:
    runs = add_setting_columns(usable)
    sizes = runs.drop_duplicates("model").sort_values("n_params")
    reptile = sorted({(k, e) for k, e in zip(runs["k_eff"], runs["eps_eff"], strict=True)})
    seeds = sorted(runs["seed"].dropna().astype(int).unique()) if "seed" in runs else []
    return [
        "- Model sizes: " + ", ".join(f"{m} ({n / 1e6:.2f}M parameters, {ne / 1e6:.3f}M non-embedding)"
                                       for m, n, ne in zip(sizes["model"], sizes["n_params"], sizes["n_params_nonembedding"], strict=True)),
        f"- Replay rates alpha: {', '.join(f'{a:g}' for a in sorted(runs['alpha'].unique()))}; Reptile: "
        + ", ".join("off" if k == 0 else f"k={k} eps={e:g}" for k, e in reptile)
        + f"; seeds: {', '.join(map(str, seeds))}.",
        f"- Task sequence: {' -> '.join(tasks)}; {len(usable)} usable runs, "
        f"{usable['final_tokens_new'].median() / len(tasks):,.0f} new tokens per task (median run).",
        f"- Evaluation: every run scored on the same held-out windows (fingerprint "
        f"`{str(usable['eval_fingerprint'].iloc[0])[:12]}`).",
    ]


def _wall_time(runs: pd.DataFrame) -> str:
    total = float(runs["final_wall_time"].sum())
    per_size = runs.groupby("model")["final_wall_time"].sum().reindex(runs.sort_values("n_params")["model"].unique())
    parts = ", ".join(f"{m} {s / 60:.0f} min" for m, s in per_size.items())
    return (f"{total / 3600:.2f} h of training and evaluation summed over the runs' own wall times "
            f"(start-up and data loading excluded): {parts}.")


def _claims(claims: list[Claim]) -> list[str]:
    lines = ["| claim | this run |", "|---|---|"]
    lines += [f"| ({c.key}) {c.statement} | **{c.summary()}** |" for c in claims]
    lines.append("")
    for c in claims:
        lines += [f"### ({c.key}) {c.statement}", "", f"Rule: {c.rule}. Verdict: **{c.summary()}**.", ""]
        if c.checks:
            lines += [f"| check | estimate [{100 * c.level:.4g}% interval] | outcome |", "|---|---|---|"]
            lines += [f"| {ch.label} | {ch.estimate} | {ch.outcome} |" for ch in c.checks]
            lines.append("")
    return lines


def _comparisons(rep: Report) -> list[str]:
    lines = []
    for metric in METRICS:
        cs = [c for c in rep.comparisons if c.metric == metric]
        if cs:
            lines += [f"**{METRIC_WORDS[metric].capitalize()}**:", ""] + [f"- {line}" for line in summary_lines(cs)] + [""]
    return lines or ["No comparison could be made (see the problems below).", ""]


def write_results_page(rep: Report, page: Path, *, command: str, machine: str | None) -> list[Path]:
    """Write the page and its figures; returns the files written."""
    page = Path(page)
    fig_dir = page.with_suffix("")
    usable = rep.usable
    tasks = rep.sequence.split(">") if rep.sequence else []
    lines = [f"# Results ({page.stem}): replay versus model scale on {' -> '.join(tasks) or 'no tasks'}", "",
             f"_Generated from the runs by `{command}`. Do not edit by hand: rerun that command._", ""]
    if usable.empty:
        lines += ["No usable run was found, so there is nothing to report.", ""]
        page.write_text("\n".join(lines), encoding="utf-8")
        return [page]
    lines += ["## What was run", ""]
    lines += ["Commands (the sweeps' own `multirun.yaml`), then this page:", "", "```bash"]
    lines += sweep_commands(usable) + [command, "```", ""]
    lines += _design(usable, tasks)
    lines += [f"- Wall time: {_wall_time(usable)}",
              f"- Machine: {machine or 'not stated (pass --machine)'}; software: {'; '.join(software_versions(usable)) or 'not recorded'}.", ""]
    lines += size_section(usable) + lr_search_section(rep.lr_search, usable)
    lines += ["## The paper's four claims", "",
              "Intervals are t (one setting) or Welch (a difference of two settings) intervals over seeds, each at its "
              "claim's Bonferroni level 1 - 0.05/m (m intervals in the claim); the multipliers' intervals are described "
              "in docs/analysis.md. The rules are in `analysis/claims.py`, fixed before the study was run.", ""]
    lines += _claims(rep.claims)
    lines += ["## Replay versus a bigger model (compute-equivalent multipliers)", ""] + _comparisons(rep)
    if rep.dominance:
        lines += dominance_section(rep.dominance)
    if rep.fits:
        lines += ["## Power-law fits", "", tables.to_markdown(tables.fit_table(rep.fits))]
        lines += prediction_section(rep.extrapolations)
    for kind, title in (("retained", "Retained loss"), ("learned", "Learned loss"), ("forgetting", "Forgetting")):
        lines += [f"## {title} per task", "", tables.TABLE_KINDS[kind][2] + "; mean ± std over seeds, 95% t interval of Avg.", "",
                  tables.to_markdown(tables.method_table(usable, tasks, kind))]
    written = [page]
    pngs = sorted(p for p in rep.files if p.parent.name == "figures" and p.suffix == ".png")
    if pngs:
        lines += ["## Figures", ""]
        for png in pngs:
            dest = small_png(png, fig_dir / png.name)
            written.append(dest)
            lines += [f"### {png.stem}", "", f"![{png.stem}]({fig_dir.name}/{png.name})", ""]
    problems = group_problems(rep.errors + rep.problems)
    if problems:
        lines += ["## Problems and notes", ""] + [f"- {p.line()}" for p in problems] + [""]
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text("\n".join(lines), encoding="utf-8")
    return written

