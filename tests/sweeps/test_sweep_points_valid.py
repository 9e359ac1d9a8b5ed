"""Every point a sweep preset launches passes the run's own checks at the preset's budget, without training.

The check is the one `python -m mer.run` runs first (`RunConfig.__post_init__`), so a preset whose Reptile
interval cannot fire in some task (or any other refused setting) fails here, not after hours of sweeping.
"""

from __future__ import annotations

import functools
import itertools
import math
from pathlib import Path

import pytest
from sweep_helpers import REPO, compose

from mer.config.run_config import RunConfig, to_dataclass
from mer.model.llama import SMALL_VOCAB_LADDER

PRESETS = sorted(p.stem for p in (REPO / "sweeps" / "conf" / "sweep").glob("*.yaml"))


def run_config(overrides: list[str]) -> RunConfig:
    """The validated RunConfig of one job of a sweep, composed as Hydra composes it for the job. Composed once per
    job: several tests read the same presets' points (a composition takes about a second); callers only read it."""
    return _composed_run_config(tuple(overrides))


@functools.cache
def _composed_run_config(overrides: tuple[str, ...]) -> RunConfig:
    from omegaconf import OmegaConf, open_dict

    cfg = compose(list(overrides))
    with open_dict(cfg):
        del cfg["hydra"]
    return to_dataclass(OmegaConf.merge(OmegaConf.structured(RunConfig), cfg), RunConfig)


def grid_points(preset: str) -> list[list[str]]:
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = compose([f"+sweep={preset}"]).hydra.sweeper.params
    lines = [f"{key}={value}" for key, value in params.items()]
    return [job for batch in BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(lines), None)
            for job in batch]


def optuna_corners(preset: str) -> list[list[str]]:
    """Every corner of the search space: the extremes are where a k can stop fitting a budget."""
    from hydra_plugins.mer_sweeps.search_space import parse_search_space

    space = parse_search_space(dict(compose([f"+sweep={preset}"]).hydra.sweeper.params), [])
    axes = {name: (dist.low, dist.high) for name, dist in space.distributions.items()}
    return [[f"{name}={value}" for name, value in zip(axes, corner)] for corner in itertools.product(*axes.values())]


def preset_points(preset: str) -> list[list[str]]:
    sweeper = compose([f"+sweep={preset}"]).hydra.sweeper
    return optuna_corners(preset) if "Optuna" in sweeper._target_ else grid_points(preset)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_point_of_the_preset_is_valid(preset):
    points = preset_points(preset)
    assert points
    for point in points:
        cfg = run_config([f"+sweep={preset}", *point])  # raises the refusal's ValueError for a bad point
        if cfg.k:
            # Reptile is asked for: it fires in every task (anchor reset per task) at this point's budget.
            assert min(cfg.task_steps) >= cfg.k, (preset, point, cfg.task_steps)


def test_cpu_paper_makes_the_card_grid_meaningful():
    """`+experiment=cpu_paper alpha=0,0.25,0.5 k=100,500,1000`: all 9 points valid, every k fires in every task."""
    for alpha, k in itertools.product((0, 0.25, 0.5), (100, 500, 1000)):
        cfg = run_config(["+experiment=cpu_paper", f"alpha={alpha}", f"k={k}"])
        assert min(cfg.task_steps) >= k
        assert len(set(cfg.task_steps)) == 1  # one budget: the same steps in every task


def test_the_card_grid_on_the_default_config_is_refused_with_the_way_out():
    """Without the preset, k=100 cannot fire in a default task: refused, naming the steps and both fixes."""
    with pytest.raises(ValueError) as refusal:
        run_config(["alpha=0", "k=100"])
    message = str(refusal.value)
    assert "k=100 cannot fire" in message and "en 20" in message  # the default run: 40,960 new tokens a task
    assert "k<=20" in message and "data.budget_tokens>=" in message and "reptile_at_task_end=true" in message


def test_the_readme_grid_on_the_default_config_is_valid():
    readme = (REPO / "README.md").read_text()
    assert "python -m mer.run -m alpha=0,0.25,0.5 k=0,20" in readme
    for alpha, k in itertools.product((0, 0.25, 0.5), (0, 20)):
        run_config([f"alpha={alpha}", f"k={k}"])


def test_ladder_presets_share_one_budget_and_seq_len():
    """Fixed new tokens per task for every size (as in the paper), one context length, one tokenizer."""
    for preset in ("replay_vs_scale", "replay_vs_scale_quick", "size_matters", "size_matters_lr"):
        configs = [run_config([f"+sweep={preset}", *point]) for point in grid_points(preset)]
        assert len({c.data.budget_tokens for c in configs}) == 1
        assert len({c.model.seq_len for c in configs}) == 1
        assert len({(c.data.tokenizer.vocab_size, c.data.tokenizer.path) for c in configs}) == 1
    assert Path(REPO / "conf" / "experiment" / "cpu_paper.yaml").exists()


def test_size_matters_trains_each_size_at_its_searched_rate_and_reptile_at_least_30_times_a_task():
    """+sweep=size_matters (issue #19): every size at the rate its search chose (tuned_size/<size>.yaml), the
    search's grid brackets every choice, the ladder spans 1.5 decades, and k=8 interpolates >= 30 times a task at
    every alpha > 0 (steps per task = budget / (seq_len * new sequences per batch))."""
    search = grid_points("size_matters_lr")
    rates = sorted({float(dict(o.split("=", 1) for o in point)["optim.lr"]) for point in search})
    configs = [run_config(["+sweep=size_matters", *point]) for point in grid_points("size_matters")]
    per_size: dict[str, set[float]] = {}
    for c in configs:
        per_size.setdefault(c.model.name, set()).add(c.optim.lr)
    assert set(per_size) == set(SMALL_VOCAB_LADDER)
    for size, used in per_size.items():
        assert len(used) == 1 and rates[0] < used.pop() < rates[-1], (size, used, rates)  # not at a grid edge
    for c in configs:
        if c.alpha > 0 and c.k > 0:
            new_per_step = round((1 - c.alpha) * c.optim.batch_size) * c.model.seq_len
            assert math.ceil(c.data.budget_tokens / new_per_step) // c.k >= 30, (c.alpha, c.k)
        assert c.data.tokenizer.vocab_size == 512 and [t.name for t in c.data.tasks] == ["en", "fr", "de"]


def test_gradient_alignment_is_on_where_it_is_affordable():
    """eval.grad_alignment (docs/benchmarks.md): on in cpu_paper (and the sweeps built on it) and replay_vs_scale,
    off in replay_vs_scale_quick (its cost) and replay_vs_scale_paper (run with parallel=fsdp, which refuses it)."""
    expected = {"paper_grid": True, "optuna_mer": True, "optuna_mer_pareto": True, "replay_vs_scale": True,
                "replay_vs_scale_quick": False, "replay_vs_scale_paper": False, "size_matters": False,
                "size_matters_lr": False, "size_matters_debian": False}
    assert set(expected) == set(PRESETS)
    for preset, on in expected.items():
        assert run_config([f"+sweep={preset}"]).eval.grad_alignment is on, preset
    assert run_config(["+experiment=cpu_paper"]).eval.grad_alignment and not run_config([]).eval.grad_alignment
