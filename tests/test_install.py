"""Configs in conf/ are found from a regular (non-editable) install, run from another directory."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_regular_install_finds_the_configs(tmp_path):
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "wheel"), str(REPO)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    wheel = next((tmp_path / "wheel").glob("mer-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "mer/conf/config.yaml" in names and "mer/conf/model/cpu-2m.yaml" in names
    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                              str(wheel)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run([sys.executable, "-c", "import mer; print(mer.__file__)"], cwd=elsewhere, env=env,
                           capture_output=True, text=True)
    assert where.stdout.startswith(str(target)), where.stdout + where.stderr  # the installed copy, not the repo
    composed = subprocess.run([sys.executable, "-m", "mer.run", "--cfg", "job", "model=cpu-8m", "buffer=reservoir"],
                              cwd=elsewhere, env=env, capture_output=True, text=True)
    assert composed.returncode == 0, composed.stderr
    assert "name: cpu-8m" in composed.stdout and "policy: reservoir" in composed.stdout
