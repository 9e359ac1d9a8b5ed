"""Fixtures of the sweep tests: one data cache for the session and the local Slurm cluster."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from sweep_helpers import SLURM_SCRIPT, tiny_overrides


@pytest.fixture(scope="session")
def sweep_data_dir(tmp_path_factory) -> Path:
    """One data cache (tokenizer + shards) for every sweep test; safe for concurrent jobs."""
    return tmp_path_factory.mktemp("sweep-data")


@pytest.fixture(scope="session")
def tiny(sweep_data_dir) -> list[str]:
    return tiny_overrides(sweep_data_dir)


# ------------------------------------------------------------------------------------------- Slurm


def _slurm_responds(env: dict) -> bool:
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and bool(out.stdout.strip())  # the controller answers (any node state)


@pytest.fixture(scope="session")
def slurm_cluster():
    """A real single-node Slurm on localhost: the one .ci/run started (SLURM_CONF or /tmp/mer-slurm), or one
    this fixture starts with scripts/slurm_local.sh and stops (by PID) at the end of the session.

    Skips only when Slurm is not installed (no `sinfo`), and never on CI (CI=true): there it fails."""
    if shutil.which("sinfo") is None:
        message = ("Slurm is not installed (no sinfo on PATH): apt-get install -y slurmctld slurmd slurm-client "
                   "munge, then scripts/slurm_local.sh start")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {message}")
        pytest.skip(message)
    state_dir = Path(os.environ.get("MER_SLURM_DIR", "/tmp/mer-slurm"))
    candidates = [os.environ["SLURM_CONF"]] if os.environ.get("SLURM_CONF") else []
    candidates.append(str(state_dir / "slurm.conf"))
    started = False
    for conf in candidates:
        if Path(conf).exists() and _slurm_responds({**os.environ, "SLURM_CONF": conf}):
            break
    else:
        proc = subprocess.run(["bash", str(SLURM_SCRIPT), "start"], env={**os.environ, "MER_SLURM_DIR": str(state_dir)},
                              capture_output=True, text=True, timeout=180)
        if proc.returncode != 0:
            pytest.fail(f"could not start the local Slurm cluster:\n{proc.stderr[-3000:]}")
        conf, started = str(state_dir / "slurm.conf"), "already running" not in proc.stderr
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf
    yield conf
    if previous is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = previous
    if started:
        subprocess.run(["bash", str(SLURM_SCRIPT), "stop"], env={**os.environ, "MER_SLURM_DIR": str(state_dir)},
                       capture_output=True, text=True, timeout=120)
