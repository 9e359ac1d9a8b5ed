"""Sweep analysis: run directories -> tidy tables -> power-law fits -> figures, tables, report.md.

Modules (one job each): `rundir` reads one run, `collect` builds the runs/evals tables,
`powerlaw` fits, `bootstrap` gives intervals, `families` picks and fits the no-replay and replay
families, `compare` computes compute-equivalent multipliers, `figures`/`study`/`palette` draw
(with `figure_data`, `figure_marks`, `figure_style` and `log_axes` shared by every figure), `tables`
formats, `report` is the command (``python -m analysis.report``), which fills a `report_contents.Report`
that `results_page`, `alignment` and `downstream` read. Never imports torch.
"""
