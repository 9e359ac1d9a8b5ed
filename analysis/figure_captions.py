"""The captions report.md gives its figures (by file stem); a figure without one is an Optuna study figure."""

from __future__ import annotations

FIGURE_CAPTIONS: dict[str, str] = {
    "task_losses": "Per-task validation loss over training, one panel per configuration: mean over seeds with a band of "
                   "± 1 sample std; dotted lines mark task boundaries.",
    "loss_vs_flops": "Mean loss over all tasks vs training FLOPs (log-log). Left: no-replay runs coloured by model size "
                     "(key: model and parameter count); then one panel per model with replay or Reptile runs, coloured by "
                     "replay rate, Reptile setting as line style and marker. Lines: mean over seeds with a band of ± 1 sample "
                     "std, marker at the end of training; grey: the no-replay fit of retained loss with its 95% band (when it converged).",
    "stability_plasticity": "Retained and learned loss vs FLOPs per new token, one point per configuration: mean ± 1 sample "
                            "std over seeds (no bar for a single seed); colour: replay rate, marker: Reptile setting; "
                            "fits that converged, the no-replay fit with its 95% bootstrap band.",
    "forgetting_alpha_reptile": "Forgetting by replay rate (rows) and Reptile setting (columns: off, then each k and eps, never "
                                "pooled), one panel per model; cells: mean ± 1 sample std over seeds (n: seeds, shown when "
                                "they differ; blank: not run).",
}
