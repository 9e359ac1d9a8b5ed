"""Figures of an Optuna study: optimization history, parameter importances, Pareto front.

Uses optuna's matplotlib visualisations. Importances: fANOVA needs scikit-learn, which the project
does not depend on, so PED-ANOVA (no extra dependency) is used unless scikit-learn is importable.
Each figure is attempted separately; one that cannot be drawn (too few finished trials, ...)
yields a message instead of stopping the others.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from analysis.figure_style import save


def importance_evaluator():
    """fANOVA when scikit-learn is installed, else PED-ANOVA (works with numpy/scipy only)."""
    import optuna

    if importlib.util.find_spec("sklearn") is not None:
        return optuna.importance.FanovaImportanceEvaluator(seed=0)
    return optuna.importance.PedAnovaImportanceEvaluator()


def study_figures(storage: Any, study_name: str | None, out_dir: Path) -> tuple[list[Path], list[str]]:
    """Draw the study figures into `out_dir`; returns (files written, problems met).

    `storage` is an Optuna storage URL (e.g. ``sqlite:///study.db``) or storage object. With no
    `study_name`, every study in the storage is drawn.
    """
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ovm

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    problems: list[str] = []
    try:
        names = [study_name] if study_name else optuna.get_all_study_names(storage=storage)
    except Exception as exc:  # noqa: BLE001 - any storage error becomes a message
        return [], [f"Optuna storage {storage!r} cannot be opened ({type(exc).__name__}: {exc}); pass a valid --study URL such as sqlite:///study.db"]
    if not names:
        return [], [f"Optuna storage {storage!r} holds no study"]
    written: list[Path] = []
    for name in names:
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"Optuna study {name!r} cannot be loaded ({exc}); check --study-name")
            continue
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not done:
            problems.append(f"Optuna study {name!r} has no completed trial; nothing to plot")
            continue
        multi = len(study.directions) > 1
        targets = study.metric_names or [f"objective {i}" for i in range(len(study.directions))]
        plots = []
        if multi:
            plots.append(("pareto_front", lambda s=study: ovm.plot_pareto_front(s, target_names=targets)))
            for i, tname in enumerate(targets):
                plots.append((f"history_{i}", lambda s=study, i=i, n=tname: ovm.plot_optimization_history(s, target=lambda t: t.values[i], target_name=n)))
                plots.append((f"importance_{i}", lambda s=study, i=i, n=tname: ovm.plot_param_importances(
                    s, evaluator=importance_evaluator(), target=lambda t: t.values[i], target_name=n)))
        else:
            plots.append(("history", lambda s=study: ovm.plot_optimization_history(s)))
            plots.append(("importance", lambda s=study: ovm.plot_param_importances(s, evaluator=importance_evaluator())))
        for kind, draw in plots:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ax = draw()
            except Exception as exc:  # noqa: BLE001 - optuna raises various errors for thin studies
                problems.append(f"Optuna study {name!r}: {kind} figure not drawn ({type(exc).__name__}: {exc})")
                continue
            fig = np.ravel(ax)[0].figure
            written += save(fig, out_dir, f"optuna_{_safe(name)}_{kind}")
            plt.close(fig)
    return written, problems


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)
