"""bench_buffer_scale.py's Markdown tables (memory, sampling, per-step overhead, checkpoint) and the
byte and count formats they and the progress log use."""

from __future__ import annotations

import statistics

MB, GB = 1e6, 1e9


def fmt_bytes(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x / GB:.2f} GB" if abs(x) >= GB else f"{x / MB:.1f} MB" if abs(x) >= MB else f"{x / 1e3:.1f} kB"


def fmt_n(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n:,}"


def table_memory(rows: list[dict]) -> str:
    out = ["| policy | id order | refs seen | refs held | RssAnon growth | bytes/ref seen (RSS) | bytes/ref held (RSS) "
           "| peak extra RSS | peak bytes/ref held | buffer arrays (allocated) | arrays bytes/ref held |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        out.append(f"| {r['policy']} | {r['order']} | {fmt_n(r['seen'])} | {fmt_n(r['held'])} | "
                   f"{fmt_bytes(r['anon_growth'])} | {r['anon_growth'] / r['seen']:.2f} | "
                   f"{r['anon_growth'] / r['held']:.2f} | {fmt_bytes(r['peak_extra'])} | "
                   f"{r['peak_extra'] / r['held']:.1f} | {fmt_bytes(r['arrays_alloc'])} | "
                   f"{r['arrays_alloc'] / r['held']:.2f} |")
    return "\n".join(out)


def table_sample(rows: list[dict], demand: dict, args) -> str:
    # Under data parallelism a rank reads only its own replay rows, so one GPU's demand is also a rank's.
    need1 = demand["replay_seq_s"]
    out = [f"| cache | mapping | prefetch | shard resident before | sample() wait ms/step, median (min-max) | "
           f"sequences/s read (prefetch off) | headroom vs 1 H100, also per rank ({need1:.1f} replay seq/s) |",
           "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        w = r["waits"]
        med = statistics.median(w)
        resident = "-" if r["resident"] is None else f"{100 * r['resident']:.0f}%"
        if r["prefetch"]:  # the read overlaps the simulated compute: the wait is what is left of it
            rate = f"read overlapped ({100 * med / (med + args.compute_ms / 1e3):.2f}% of the step waits)"
            head1 = "-"
        else:
            seq_s = args.n / med
            rate, head1 = f"{seq_s:,.0f}", f"{seq_s / need1:,.0f}x"
        out.append(f"| {r['cache']} | {r['mapping']} | {'on' if r['prefetch'] else 'off'} | {resident} | "
                   f"{1e3 * med:.2f} ({1e3 * min(w):.2f}-{1e3 * max(w):.2f}) | {rate} | {head1} |")
    return "\n".join(out)


def table_overhead(rows: list[dict], demand: dict) -> str:
    out = ["| policy | replay_current_task | refs held | eligible | add + sample (no reads) ms/step, median | max | "
           "share of a 1-H100 step |", "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        out.append(f"| {r['policy']} | {r['replay_current_task']} | {fmt_n(r['held'])} | {r['eligible']:.0%} | "
                   f"{r['ms_per_step']:.2f} | "
                   f"{r['ms_max']:.2f} | {r['ms_per_step'] / 1e3 / demand['step_s']:.4%} |")
    return "\n".join(out)


def table_checkpoint(rows: list[dict]) -> str:
    out = ["| policy | id order | refs seen | refs held | encoding (values stored) | file size | bytes/ref held | "
           "state_dict s (again at once) | torch.save + fsync s | torch.load s | load_state_dict s | "
           "peak extra RSS save | peak extra RSS load | round trip |",
           "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        lsd = r.get("load_state_dict_s")
        lsd_txt = f"{lsd:.2f}" if lsd is not None and not r.get("skipped") else (
            f"~{r['lsd_extrapolated']:.1f} (extrapolated, not run: {r['skipped']})" if r.get("skipped") else "-")
        peak_load = r.get("load_peak_extra")
        if r.get("skipped") and r.get("lsd_projected_extra"):
            peak_txt = f"{fmt_bytes(peak_load)} (torch.load only; ~{fmt_bytes(r['lsd_projected_extra'])} projected with load_state_dict)"
        else:
            peak_txt = fmt_bytes(peak_load)
        ok = "-" if "ok" not in r else ("ok" if r["ok"] else "MISMATCH")
        out.append(f"| {r['policy']} | {r['order']} | {fmt_n(r['seen'])} | {fmt_n(r['held'])} | {r['encoding']} "
                   f"({fmt_n(r['n_values'])}) | {fmt_bytes(r['bytes'])} | {r['bytes'] / r['held']:.2f} | "
                   f"{r['state_dict_s']:.2f} ({r['state_dict_again_s']:.2f}) | {r['save_s']:.2f} | {r['load_s']:.2f} | {lsd_txt} | "
                   f"{fmt_bytes(r['save_peak_extra'])} | {peak_txt} | {ok} |")
    return "\n".join(out)
