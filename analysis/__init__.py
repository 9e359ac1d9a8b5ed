"""Sweep analysis: run directories -> tidy tables -> power-law fits -> figures, tables, report.md.

Modules (one job each): `rundir` reads one run, `collect` builds the runs/evals tables,
`powerlaw` fits, `bootstrap` gives intervals, `families` picks and fits the no-replay and replay
families, `compare` computes compute-equivalent multipliers, `figures`/`study`/`palette` draw,
`tables` formats, `report` is the command (``python -m analysis.report``). Never imports torch.
"""
