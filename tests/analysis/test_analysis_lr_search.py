"""The learning-rate search (`analysis.lr_search`) and the size sentence (`analysis.size_effect`), on synthetic runs
whose losses are set by hand, so the right choice and the right sentence are known."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from synthetic_runs import Spec, write_run

from analysis.lr_search import choose, load_search, search_from_runs, section, study_rate_check
from analysis.report import build_report
from analysis.size_effect import verdict

# model -> {lr: learned loss}: m1 best at the largest rate and m3 at the smallest (grid edges), m2 in the middle.
# Apart by 0.1 nats, far beyond the runs' 0.3% noise (exact ties are tested on a grid without noise below).
GRID = {"m1": {1e-3: 4.0, 3e-3: 3.8, 1e-2: 3.6}, "m2": {1e-3: 3.7, 3e-3: 3.5, 1e-2: 3.9},
        "m3": {1e-3: 3.4, 3e-3: 3.5, 1e-2: 3.6}}


def write_search(root: Path) -> None:
    """One no-replay seed-0 run per model and rate, each in its own sweep folder (the rate is not in the run name)."""
    for model, rates in GRID.items():
        for lr, learned in rates.items():
            run = write_run(root / f"lr={lr:g}", Spec(model=model, losses=(learned, learned + 1.0)))
            config = yaml.safe_load((run / "config.yaml").read_text())
            config["optim"] = {"lr": lr}
            (run / "config.yaml").write_text(yaml.safe_dump(config))


def test_lr_search_chooses_the_lowest_learned_loss_and_flags_grid_edges(tmp_path):
    write_search(tmp_path)
    search = load_search([tmp_path])
    assert search.chosen == pytest.approx({"m1": 1e-2, "m2": 3e-3, "m3": 1e-3}, rel=1e-2)  # losses carry 0.3% noise
    assert search.at_edge("m1") and not search.at_edge("m2")
    text = "\n".join(section(search, pd.DataFrame()))
    assert "| m1 |" in text and "(grid edge)" in text and "**" in text


def test_lr_search_ties_go_to_the_smaller_rate():
    grid = pd.DataFrame({"model": ["a", "a", "a"], "lr": [3e-3, 1e-3, 1e-2], "learned_loss": [3.0, 3.0, 3.1]})
    assert choose(grid) == {"a": 1e-3}


def test_lr_search_leaves_out_replay_runs_and_says_so():
    runs = pd.DataFrame({"model": ["a", "a"], "alpha": [0.0, 0.25], "reptile": [False, False], "usable": [True, True],
                         "lr": [1e-3, 3e-3], "learned_loss": [3.0, 2.0], "retained_loss": [4.0, 3.0],
                         "n_params_nonembedding": [1e3, 1e3]})
    search = search_from_runs(runs)
    assert search.chosen == {"a": 1e-3}  # the replay run's lower loss does not choose the rate
    assert any("replay or Reptile" in p for p in search.problems)


def test_lr_search_check_names_a_size_trained_off_its_chosen_rate():
    search = search_from_runs(pd.DataFrame({
        "model": ["a", "a", "b"], "alpha": [0.0] * 3, "reptile": [False] * 3, "usable": [True] * 3,
        "lr": [1e-3, 3e-3, 1e-3], "learned_loss": [3.0, 3.2, 2.5], "retained_loss": [4.0] * 3,
        "n_params_nonembedding": [1e3, 1e3, 1e4]}))
    study = pd.DataFrame({"model": ["a", "a", "b", "c"], "lr": [1e-3, 1e-3, 3e-3, 1e-3]})
    lines = study_rate_check(search, study)
    assert lines[0] == "a: trained at 0.001, the rate the search chose"
    assert lines[1].startswith("b: trained at 0.003, but the search chose 0.001")
    assert lines[2].startswith("c: not in the search")


def _no_replay(means: dict[str, float], spread: float = 0.01) -> pd.DataFrame:
    sizes = {name: 10 ** (4 + i * 0.5) for i, name in enumerate(means)}
    rows = [{"model": m, "alpha": 0.0, "reptile": False, "n_params_nonembedding": sizes[m],
             "learned_loss": mean + d, "retained_loss": 5.0 + d}
            for m, mean in means.items() for d in (-spread, 0.0, spread)]
    return pd.DataFrame(rows)


@pytest.mark.parametrize(("means", "expected"), [
    ({"a": 4.0, "b": 3.8, "c": 3.6, "d": 3.5}, "falls with size at every step of the ladder"),
    ({"a": 4.0, "b": 3.7, "c": 3.8, "d": 3.5}, "falls overall, but not at every step"),
    ({"a": 4.0, "b": 3.7, "c": 3.8, "d": 4.0}, "does not clearly fall with size"),
])
def test_size_sentence_follows_its_rule(means, expected):
    sentence = verdict(_no_replay(means))
    assert expected in sentence
    assert "1.50 decades" in sentence and "from a to d" in sentence


def test_size_sentence_with_one_size_says_nothing_can_be_said():
    assert "fewer than two sizes" in verdict(_no_replay({"a": 4.0}))


def test_report_and_page_carry_the_search_and_the_size_sentence(tmp_path):
    write_search(tmp_path / "search")
    for model in GRID:
        for seed in range(3):
            write_run(tmp_path / "study", Spec(model=model, seed=seed))
    page = tmp_path / "docs" / "page.md"
    rep = build_report([tmp_path / "study"], tmp_path / "out", n_boot=0, progress=False, results_page=page,
                       lr_search=[tmp_path / "search"])
    assert rep.lr_search is not None and set(rep.lr_search.chosen) == set(GRID)
    for text in (page.read_text(), (tmp_path / "out" / "report.md").read_text()):
        assert "## The learning-rate search" in text and "## Does model size matter here?" in text
        assert "No-replay learned loss falls with size at every step of the ladder" in text
        # the study's synthetic runs record no rate: the page says so instead of claiming agreement
        assert "m1: trained at an unknown rate, but the search chose 0.01" in text
