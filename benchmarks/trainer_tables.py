"""bench_trainer.py's Markdown tables, one per part, from the raw timings: medians, min-max spreads over
rounds, and the verdict against each part's target."""

from __future__ import annotations

from rounds import med, spread, verdict

FIT_TARGET = 0.90  # issue #22: fit() with its evaluations and checkpoints against the plain loop


def table_step(results: list[dict]) -> str:
    lines = ["| model | params | seq_len x batch | rounds x steps | trainer tok/s | plain tok/s | trainer ms/step "
             "| plain ms/step | ratio trainer/plain (wall) | ratio (CPU time) | target >= 0.95 |",
             "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in results:
        tok = r["tokens_per_round"]
        ratios = [p / t for t, p in zip(r["trainer"], r["plain"])]
        cpu_ratios = [p / t for t, p in zip(r["trainer_cpu"], r["plain_cpu"])]
        lines.append(
            f"| {r['model']} | {r['n_params'] / 1e6:.2f}M | {r['seq_len']} x {r['batch']} | {r['rounds']} x {r['steps']} "
            f"| {spread([tok / t for t in r['trainer']], '{:,.0f}')} | {spread([tok / t for t in r['plain']], '{:,.0f}')} "
            f"| {med(r['trainer']) / r['steps'] * 1e3:.0f} | {med(r['plain']) / r['steps'] * 1e3:.0f} "
            f"| {spread(ratios, '{:.3f}')} | {med(cpu_ratios):.3f} | {verdict(med(ratios), 0.95, True, '{:.3f}')} |")
    return "\n".join(lines)


def table_fit(results: list[dict], steps: list[dict]) -> str:
    lines = ["| model | tasks x steps | evals + checkpoints | fit tok/s | plain tok/s | ratio fit/plain "
             "| fit - plain (s) | one eval (s) | one checkpoint (s) | ratio from parts | target >= 0.90 |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    per_step = {r["model"]: r for r in steps}
    for r in results:
        tok = r["tokens"]
        ratios = [p / f for f, p in zip(r["fit"], r["plain"])]
        over = [f - p for f, p in zip(r["fit"], r["plain"])]
        # The same run rebuilt from robust parts: steps at the interleaved per-step times + evals + checkpoints.
        parts = "n/a"
        if r["model"] in per_step:
            s = per_step[r["model"]]
            t_tr, t_pl = med(s["trainer"]) / s["steps"], med(s["plain"]) / s["steps"]
            fit_est = r["steps"] * t_tr + r["evals"] * med(r["eval"]) + r["saves"] * med(r["save"])
            parts = f"{r['steps'] * t_pl / fit_est:.3f}"
        lines.append(
            f"| {r['model']} | {r['tasks']} x {r['steps_per_task'][0]} | {r['evals']} + {r['saves']} "
            f"| {spread([tok / t for t in r['fit']], '{:,.0f}')} | {spread([tok / t for t in r['plain']], '{:,.0f}')} "
            f"| {spread(ratios, '{:.3f}')} | {spread(over, '{:.2f}')} | {med(r['eval']):.2f} | {med(r['save']):.3f} "
            f"| {parts} | {verdict(med(ratios), FIT_TARGET, True, '{:.3f}')} |")
    return "\n".join(lines)


def table_reptile(results: list[dict]) -> str:
    lines = ["| model | params | interpolation ms | trainer ms/step | share at k=500 | share at k=100 "
             "| target <= 1% at k=500 |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in results:
        if not r["reptile"]:
            continue
        t_int, t_step = med(r["reptile"]), med(r["trainer"]) / r["steps"]
        share500, share100 = t_int / (500 * t_step), t_int / (100 * t_step)
        lines.append(f"| {r['model']} | {r['n_params'] / 1e6:.2f}M | {spread([x * 1e3 for x in r['reptile']], '{:.2f}')} "
                     f"| {t_step * 1e3:.0f} | {share500:.4%} | {share100:.4%} "
                     f"| {verdict(share500, 0.01, False, '{:.2%}')} |")
    return "\n".join(lines)


def table_wait(waits: list[dict], steps: list[dict]) -> str:
    lines = ["| model | alpha | new + replay per step | buffer.prefetch | data wait ms/step | step ms | wait share "
             "| target <= 2% |",
             "| --- | ---: | --- | --- | ---: | ---: | ---: | --- |"]
    for r in steps:  # alpha=0 baseline from the step part
        shares = [w / t for w, t in zip(r["data_wait"], r["trainer"])]
        lines.append(f"| {r['model']} | 0 | {r['batch']} + 0 | (no replay) | {med(r['data_wait']) / r['steps'] * 1e3:.2f} "
                     f"| {med(r['trainer']) / r['steps'] * 1e3:.0f} | {spread(shares, '{:.3%}')} "
                     f"| {verdict(med(shares), 0.02, False, '{:.2%}')} |")
    for r in waits:
        for prefetch in ("False", "True"):
            w, t = r["t_wait"][prefetch], r["t_step"][prefetch]
            shares = [a / b for a, b in zip(w, t)]
            lines.append(f"| {r['model']} | {r['alpha']} | {r['n_new']} + {r['n_replay']} | {prefetch.lower()} "
                         f"| {med(w) / r['steps'] * 1e3:.2f} | {med(t) / r['steps'] * 1e3:.0f} | {spread(shares, '{:.3%}')} "
                         f"| {verdict(med(shares), 0.02, False, '{:.2%}')} |")
    return "\n".join(lines)


def table_trackers(results: list[dict]) -> str:
    lines = ["| model | tracker | rounds x steps | steps/s | ms/step | train line ms (in the step) "
             "| ratio tracker/jsonl | target >= 0.98 |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for r in results:
        base = r["times"]["jsonl"]
        for name, times in r["times"].items():
            ratios = [b / t for b, t in zip(base, times)]
            lines.append(f"| {r['model']} | {'metrics.jsonl only' if name == 'jsonl' else name} "
                         f"| {r['rounds']} x {r['steps']} | {spread([r['steps'] / t for t in times], '{:.2f}')} "
                         f"| {med(times) / r['steps'] * 1e3:.0f} "
                         f"| {spread([t / r['steps'] * 1e3 for t in r['log_times'][name]], '{:.3f}')} "
                         f"| {spread(ratios, '{:.3f}')} "
                         f"| {'(baseline)' if name == 'jsonl' else verdict(med(ratios), 0.98, True, '{:.3f}')} |")
        for name in r["not_installed"]:
            lines.append(f"| {r['model']} | {name} | not installed (pip install -e \".[{name}]\") | | | | | |")
    return "\n".join(lines)


def table_alignment(results: list[dict]) -> str:
    lines = ["| model | tasks | steps | evals | windows per task | steps/s off | steps/s on | overhead (on/off - 1) "
             "| one measurement at the last task (s) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        overhead = [on / off - 1 for on, off in zip(r["on"], r["off"])]
        lines.append(f"| {r['model']} | {r['tasks']} | {r['steps']} | {r['evals']} | {r.get('windows', 'n/a')} "
                     f"| {spread([r['steps'] / t for t in r['off']], '{:.2f}')} "
                     f"| {spread([r['steps'] / t for t in r['on']], '{:.2f}')} | {spread(overhead, '{:.1%}')} "
                     f"| {med(r['measure']):.2f} |")
    return "\n".join(lines)
