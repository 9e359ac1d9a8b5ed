"""MER's Hydra plugins: the grid sweeper that runs every point and ends with one table (`hydra/sweeper=mer_grid`,
the default), the Optuna sweeper (`hydra/sweeper=mer_optuna`), submitit launchers that skip
completed runs and requeue preempted jobs (`hydra/launcher=slurm|local`, conf/hydra/launcher/), and the search
path entry of the named sweep presets (`+sweep=<name>`). See docs/sweeps.md.

Hydra imports every module of the `hydra_plugins` namespace at start-up: keep imports here light.
"""
