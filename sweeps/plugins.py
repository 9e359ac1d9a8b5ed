"""Register MER's Hydra plugins (hydra_plugins/mer_sweeps) with Hydra explicitly.

Hydra finds plugins by listing the `hydra_plugins` namespace package. That works for a regular install and
when the repository root is the working directory, but not through the import hook of a setuptools editable
install (`pip install -e .`), which can import `hydra_plugins.mer_sweeps` but cannot list it. Calling
`register_hydra_plugins()` before `@hydra.main` runs (mer.run does) makes `hydra/sweeper=mer_optuna`,
`hydra/sweeper=mer_grid`, `hydra/launcher=submitit_slurm|submitit_local` and `+sweep=<preset>` work in every install mode.
"""

from __future__ import annotations


def register_hydra_plugins() -> None:
    """Register the sweeper, the launchers and the search-path plugin; idempotent, cheap."""
    from hydra.core.plugins import Plugins

    plugins = Plugins.instance()  # scans hydra_plugins once (it may already have found ours)
    import hydra_plugins.mer_sweeps.config  # noqa: F401 - stores the structured configs in the ConfigStore
    from hydra_plugins.mer_sweeps.grid_sweeper import MerGridSweeper
    from hydra_plugins.mer_sweeps.optuna_sweeper import MerOptunaSweeper
    from hydra_plugins.mer_sweeps.searchpath import MerSweepsSearchPathPlugin
    from hydra_plugins.mer_sweeps.submitit_launcher import MerLocalLauncher, MerSlurmLauncher

    for clazz in (MerGridSweeper, MerOptunaSweeper, MerSweepsSearchPathPlugin, MerSlurmLauncher, MerLocalLauncher):
        if f"{clazz.__module__}.{clazz.__name__}" not in plugins.class_name_to_class:
            plugins.register(clazz)
