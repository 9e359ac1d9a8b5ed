"""The analysis reads a run's settings from config.json when config.yaml is unreadable, and never tabulates a
run as usable on guessed settings (analysis/rundir.py through mer.rundir.layout.read_config)."""

from __future__ import annotations

import json

import synthetic_runs as sr
import yaml

from analysis.collect import collect
from analysis.rundir import read_run

SPEC = sr.Spec(model="m3", alpha=0.25, k=5, eps=0.1, seed=1)


def row_of(root, spec=SPEC):
    return collect([root], progress=False).runs.set_index("run_name").loc[spec.name]


def test_a_damaged_config_yaml_is_read_from_config_json(tmp_path):
    run = sr.write_run(tmp_path, SPEC)
    config = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.json").write_text(json.dumps(config))
    (run / "config.yaml").write_bytes(b"alpha: [unclosed\n\x00garbage")
    data = read_run(run)
    assert (data.settings["alpha"], data.settings["k"], data.settings["eps"], data.settings["seed"]) == (0.25, 5, 0.1, 1)
    assert not data.unusable
    row = row_of(tmp_path)
    assert row["alpha"] == 0.25 and row["usable"]  # the real values, not "alpha=0"


def test_a_damaged_config_json_is_read_from_config_yaml_and_named(tmp_path):
    run = sr.write_run(tmp_path, SPEC)
    (run / "config.json").write_text('{"alpha": 0.25, "k":')  # a truncated write
    data = read_run(run)
    assert data.settings["alpha"] == 0.25 and not data.unusable
    assert any(f"{run / 'config.json'} unreadable" in p and "settings read from config.yaml" in p
               for p in data.problems), data.problems


def test_a_run_whose_config_cannot_be_read_at_all_is_never_usable(tmp_path):
    run = sr.write_run(tmp_path, SPEC)
    (run / "config.yaml").write_text("alpha: [unclosed")
    data = read_run(run)
    assert data.unusable and f"{run / 'config.yaml'} unreadable" in data.unusable[0]
    row = row_of(tmp_path)
    assert not row["usable"] and "settings unknown" in row["problems"] and "config.yaml" in row["problems"]
    assert row["complete"]  # its losses are all there: only its settings are unknown


def test_a_run_without_any_config_is_still_found_and_flagged(tmp_path):
    run = sr.write_run(tmp_path, SPEC)
    (run / "config.yaml").unlink()
    row = row_of(tmp_path)
    assert not row["usable"] and "has neither config.json nor config.yaml" in row["problems"]


def test_a_config_without_a_setting_is_not_filled_in_with_a_guess(tmp_path):
    run = sr.write_run(tmp_path, SPEC)
    config = yaml.safe_load((run / "config.yaml").read_text())
    del config["alpha"]
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    row = row_of(tmp_path)
    assert not row["usable"] and f"{run / 'config.yaml'} has no alpha: settings unknown" in row["problems"]
