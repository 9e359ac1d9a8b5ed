"""Shared fixtures: one synthetic sweep and one report built from it, reused by many tests."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

import synthetic_runs  # noqa: E402  (tests/analysis is on sys.path: rootdir-relative import mode)

from analysis.collect import Collection, collect  # noqa: E402
from analysis.report import Report, build_report  # noqa: E402


@pytest.fixture(scope="session")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sweep folder with the standard synthetic runs (incl. one failed and one running run)."""
    root = tmp_path_factory.mktemp("sweeps") / "replay_vs_scale"
    synthetic_runs.write_sweep(root)
    return root


@pytest.fixture(scope="session")
def collection(sweep_dir: Path) -> Collection:
    return collect([sweep_dir], progress=False)


@pytest.fixture(scope="session")
def report(sweep_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Report:
    out = tmp_path_factory.mktemp("report")
    return build_report([sweep_dir], out, n_boot=40, seed=0, progress=False)
