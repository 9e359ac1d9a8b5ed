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


def test_every_package_folder_is_listed_for_the_wheel():
    """pyproject.toml lists the packages by hand (mer.conf maps to a folder outside mer/): a new subpackage that
    is not listed would import from a checkout and be missing from a regular install."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {str(init.parent.relative_to(REPO)).replace(os.sep, ".")
             for top in ("mer", "analysis", "sweeps", "hydra_plugins")
             for init in (REPO / top).rglob("__init__.py") if "__pycache__" not in init.parts}
    found = {"mer.conf" if name == "conf" else name for name in found}
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages in pyproject.toml"
