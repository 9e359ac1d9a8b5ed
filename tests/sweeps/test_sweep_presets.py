"""Every named sweep preset (sweeps/conf/sweep/*.yaml) composes, describes the sweep it promises, and runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from sweep_helpers import REPO, compose, run_dirs, run_mer, summary

from mer.model.llama import CPU_SCALING_LADDER

PRESETS = sorted(p.stem for p in (REPO / "sweeps" / "conf" / "sweep").glob("*.yaml"))
GRID_SIZES = {"paper_grid": 27, "replay_vs_scale": 90, "replay_vs_scale_quick": 12, "replay_vs_scale_paper": 90,
              "size_matters_lr": 30, "size_matters": 90, "size_matters_debian": 30}
OPTUNA = {"optuna_mer": 1, "optuna_mer_pareto": 2}  # number of objectives


def grid_jobs(cfg) -> list[list[str]]:
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    lines = [f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()]
    return [job for batch in BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(lines), None)
            for job in batch]


def test_every_preset_is_known_to_the_tests():
    assert set(PRESETS) == set(GRID_SIZES) | set(OPTUNA), "a new preset needs an entry here and a smoke run below"


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_composes(preset):
    cfg = compose([f"+sweep={preset}"])
    assert cfg.runs_dir == f"runs/{preset}"  # each preset sweeps into its own directory
    from omegaconf import OmegaConf, open_dict

    from mer.config.run_config import RunConfig, to_dataclass

    job = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))  # without Hydra's own node
    with open_dict(job):
        del job["hydra"]
    job = OmegaConf.merge(OmegaConf.structured(RunConfig), job)
    to_dataclass(job, RunConfig)  # the fixed part of the config passes every check
    sweeper = cfg.hydra.sweeper
    if preset in GRID_SIZES:
        assert sweeper._target_ == "hydra_plugins.mer_sweeps.grid_sweeper.MerGridSweeper"  # runs every point, one table
        jobs = grid_jobs(cfg)
        assert len(jobs) == GRID_SIZES[preset]
        assert len({tuple(sorted(j)) for j in jobs}) == len(jobs)
    else:
        from hydra_plugins.mer_sweeps.search_space import parse_search_space

        assert sweeper._target_ == "hydra_plugins.mer_sweeps.optuna_sweeper.MerOptunaSweeper"
        assert sweeper.study_name == preset
        assert sweeper.sampler._target_ == "optuna.samplers.TPESampler" and sweeper.sampler.seed == 0
        directions = [sweeper.direction] if isinstance(sweeper.direction, str) else list(sweeper.direction)
        assert len(directions) == len(sweeper.objectives) == OPTUNA[preset]
        space = parse_search_space(dict(sweeper.params), [])
        assert set(space.distributions) == {"alpha", "k", "eps"}
        assert space.distributions["k"].log and space.distributions["eps"].log
        assert space.distributions["alpha"].high < 1


def test_grid_values_are_the_papers():
    jobs = grid_jobs(compose(["+sweep=paper_grid"]))
    values = {key: sorted({float(o.split("=")[1]) for job in jobs for o in job if o.startswith(key + "=")})
              for key in ("alpha", "k", "eps")}
    assert values == {"alpha": [0, 0.25, 0.5], "k": [100, 500, 1000], "eps": [0.01, 0.1, 0.5]}
    scale = grid_jobs(compose(["+sweep=replay_vs_scale"]))
    assert {o for job in scale for o in job if o.startswith("model=")} == {f"model={m}" for m in CPU_SCALING_LADDER}
    assert {o for job in scale for o in job if o.startswith("k=")} == {"k=0", "k=16"}
    paper = grid_jobs(compose(["+sweep=replay_vs_scale_paper"]))
    assert {o for job in paper for o in job if o.startswith("model=")} == {
        f"model={m}" for m in ("99m", "560m", "1b", "3b", "6b")}
    assert {o for job in paper for o in job if o.startswith("k=")} == {"k=0", "k=500"}  # the paper's interval


@pytest.mark.parametrize("sampler", ["tpe", "random", "grid", "gp", "nsgaii", "qmc"])
def test_sampler_choices_compose(sampler):
    cfg = compose(["+sweep=optuna_mer", f"hydra/sweeper/sampler={sampler}", "hydra.sweeper.sampler.seed=3"])
    assert cfg.hydra.sweeper.sampler.seed == 3
    assert cfg.hydra.sweeper.sampler._target_.startswith("optuna.samplers.")


@pytest.mark.parametrize("launcher", ["slurm", "local"])
def test_launcher_presets_compose(launcher):
    cfg = compose(["+sweep=paper_grid", f"hydra/launcher={launcher}"])
    target = cfg.hydra.launcher._target_
    assert target == f"hydra_plugins.mer_sweeps.submitit_launcher.Mer{launcher.capitalize()}Launcher"
    if launcher == "slurm":
        assert cfg.hydra.launcher.max_num_timeout > 0  # time-outs requeue
        assert cfg.hydra.launcher.additional_parameters.requeue is True
        for key in ("partition", "account", "qos", "timeout_min", "nodes", "gpus_per_node", "tasks_per_node",
                    "cpus_per_task", "mem_gb", "setup"):
            assert key in cfg.hydra.launcher


# ------------------------------------------------------------------------------------------- smoke runs
SHRINK = {  # command-line sweeps replace the preset's values of the same key
    "paper_grid": ["alpha=0,0.25", "k=2", "eps=0.5"],
    "replay_vs_scale": ["model=cpu-0.5m", "alpha=0.25", "k=0,2", "seed=0"],
    "replay_vs_scale_quick": ["model=cpu-0.5m", "alpha=0.5", "k=0,2", "seed=0"],
    "replay_vs_scale_paper": ["model=cpu-0.5m", "alpha=0", "k=2", "hydra.sweeper.params.seed='1'"],
    "size_matters": ["+tuned_size=cpu-ne27k", "alpha=0.25", "k=0,2", "seed=0"],
    "size_matters_lr": ["model=cpu-ne27k", "optim.lr=3e-3"],
    # The Debian tasks need apt and the archive: the smoke run trains the preset's grid on the tiny Bible tasks.
    "size_matters_debian": ["alpha=0.5", "k=0,2", "seed=0"],
    # The tiny budget has 2-4 steps a task: k is searched where it fires (a larger k would be refused).
    "optuna_mer": ["hydra.sweeper.n_trials=2", "k=tag(log, int(interval(1, 2)))"],
    "optuna_mer_pareto": ["hydra.sweeper.n_trials=2", "k=tag(log, int(interval(1, 2)))"],
}
EXPECTED_RUNS = {"paper_grid": 2, "replay_vs_scale": 2, "replay_vs_scale_quick": 2, "replay_vs_scale_paper": 1,
                 "size_matters": 2, "size_matters_lr": 1, "size_matters_debian": 2}
SIZES_FROM_THE_PRESET = ("replay_vs_scale", "size_matters")  # prefixes of the presets whose sweep chooses the model


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
def test_preset_smoke_run(preset, tiny, tmp_path):
    """Each preset, its grid shrunk, runs to completion on the tiny model (`model=` given by the preset wins
    over tiny's for replay_vs_scale: the sweep parameter is cpu-0.5m)."""
    sweep_dir = tmp_path / preset
    overrides = [o for o in tiny if not (preset.startswith(SIZES_FROM_THE_PRESET) and o.startswith("model="))]
    run_mer(["-m", f"+sweep={preset}", f"runs_dir={sweep_dir}", *SHRINK[preset], *overrides])
    runs = run_dirs(sweep_dir)
    assert all(summary(r)["status"] == "completed" for r in runs)
    if preset in EXPECTED_RUNS:
        assert len(runs) == EXPECTED_RUNS[preset]
        assert (sweep_dir / "multirun.yaml").exists()
    else:
        assert len(runs) == 2
        best = yaml.safe_load((sweep_dir / "best.yaml").read_text())
        assert best == json.loads((sweep_dir / "best.json").read_text())
        assert best["trials"] == {"complete": 2}
        if OPTUNA[preset] == 1:
            assert Path(best["best"]["run_dir"]).parent == sweep_dir.resolve()
            assert best["best"]["values"] == [summary(best["best"]["run_dir"])["metrics"]["retained_loss"]]
        else:
            front = best["pareto_front"]
            assert 1 <= len(front) <= 2
            for point in front:
                s = summary(point["run_dir"])
                assert point["values"] == [s["metrics"]["retained_loss"], s["totals"]["flops_train"]]


def test_plugins_are_found_outside_the_repository(tmp_path):
    """From any working directory (an editable install cannot list hydra_plugins): mer.run registers them."""
    proc = run_mer(["+sweep=optuna_mer", "hydra/launcher=slurm", "--cfg", "hydra"], cwd=tmp_path)
    assert "hydra_plugins.mer_sweeps.optuna_sweeper.MerOptunaSweeper" in proc.stdout, (
        "mer/run.py must call sweeps.plugins.register_hydra_plugins() before @hydra.main")
    assert "hydra_plugins.mer_sweeps.submitit_launcher.MerSlurmLauncher" in proc.stdout
