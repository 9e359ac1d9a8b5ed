"""Sharded preparation as a Slurm job array (issue 20, item 2), through the real single-node Slurm of the
`slurm_cluster` fixture: `python -m mer.data.prepare launcher=slurm` submits one array task per group of pieces
and gives the same shard folders, byte for byte, as one process."""

from __future__ import annotations

import json
import pickle
import re

import pytest
from prepare_helpers import PIECE, cli_args, data_config, folder_bytes, run_prepare, write_corpus

pytestmark = pytest.mark.cluster


def test_a_slurm_array_prepares_the_same_shards_as_one_process(slurm_cluster, tmp_path):
    from mer.data.pipeline import prepare_data
    from mer.data.prepare_config import PrepareConfig

    files = write_corpus(tmp_path)
    reference = tmp_path / "reference"
    prepare_data(data_config(reference, files), PrepareConfig(piece_bytes=PIECE))
    on_slurm = tmp_path / "slurm"
    proc = run_prepare([*cli_args(on_slurm, files), "launcher=slurm", "slurm.array_tasks=3", "slurm.cpus_per_task=1",
                        "slurm.timeout_min=10", "slurm.poll_s=1"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "submitted 3 Slurm array task(s)" in proc.stdout
    submitted = sorted(p.name for p in (on_slurm / ".submitit").iterdir())
    tasks = [name for name in submitted if "_" in name and not name.startswith(".")]  # <job>_<array index>
    assert len(tasks) == 3
    # The array tasks built the pieces (not the launching process after them): their results count them all.
    results = [pickle.loads(path.read_bytes()) for path in (on_slurm / ".submitit").rglob("*_result.pkl")]
    assert [outcome for outcome, _ in results] == ["success"] * 3
    manifests = [json.loads(path.read_text()) for path in (reference / "shards").rglob("manifest.json")]
    pieces = sum(len({shard["piece"] for split in ("train", "val") for shard in m["splits"][split]["shards"]})
                 for m in manifests)
    assert sum(counts["built"] for _, counts in results) == pieces > 3
    assert folder_bytes(on_slurm) == folder_bytes(reference)

    again = run_prepare([*cli_args(on_slurm, files), "launcher=slurm", "slurm.array_tasks=3"])
    assert again.returncode == 0 and "submitted" not in again.stdout  # everything prepared: no job
    assert sorted(p.name for p in (on_slurm / ".submitit").iterdir()) == submitted


def test_prepare_resume_after_kill_of_an_array_task(slurm_cluster, tmp_path):
    """Every array task SIGKILLed in the middle of its second piece (kill -9 as the OOM killer or a node loss
    gives): the command says which task failed and to run it again (exit 2); run again, it keeps the pieces the
    killed tasks finished, builds the rest, and the folder equals an uninterrupted preparation's."""
    from mer.data.pipeline import prepare_data
    from mer.data.prepare_config import PrepareConfig

    files = write_corpus(tmp_path)
    reference = tmp_path / "reference"
    prepare_data(data_config(reference, files), PrepareConfig(piece_bytes=PIECE))
    on_slurm = tmp_path / "slurm"
    launch = [*cli_args(on_slurm, files), "launcher=slurm", "slurm.array_tasks=3", "slurm.cpus_per_task=1",
              "slurm.timeout_min=10", "slurm.poll_s=1"]
    killed = run_prepare(launch, fault="prepare_piece:2")
    assert killed.returncode == 2, killed.stdout[-2000:] + killed.stderr[-3000:]
    assert "Slurm array task" in killed.stderr and "run the same command again" in killed.stderr
    logs = "".join(p.read_text() for p in (on_slurm / ".submitit").rglob("*.err"))
    assert logs.count("mer fault point prepare_piece:2 reached") == 3  # each array task died where meant
    kept = sum(1 for _ in (on_slurm / "shards").rglob("piece-*.json"))
    assert kept == 3  # one finished piece per killed task, on disk with its record
    again = run_prepare(launch)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    assert sum(int(n) for n in re.findall(r"(\d+) kept from an earlier", again.stdout)) == kept
    assert folder_bytes(on_slurm) == folder_bytes(reference)
