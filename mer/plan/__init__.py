"""What a run or a sweep will cost, before it is launched: `python -m mer.run ... plan=true` (docs/plan.md).

One job per module: `counts` (steps, tokens, Reptile interpolations and evaluations, from the config alone),
`memory` (bytes per device by part and parallelism mode), `disk` (checkpoints, replay buffer, exports),
`timing` (a measured step rate on CPU, an assumed MFU on GPU), `estimate` (all of it for one run, printed
as a plan or a CSV row), `fit` (the refusal of a run that does not fit the device) and `sweep_plan` (a
sweep's rows, totals and CSV).
"""
