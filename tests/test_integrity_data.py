"""Damaged data caches are refused before any training, naming the file and a fix that works (the test runs it):
token shards against their manifest (sha256, token ids below the vocabulary), the cached tokenizer's files,
a lost manifest; and the staging folder a killed preparation leaves behind is cleaned by the next one."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from mer.data import shard_check
from mer.data.atomic import atomic_directory
from mer.data.corpus import DataError
from mer.data.pipeline import prepare_data
from mer.data.tokenizer_check import RECORD_FILE


@pytest.fixture
def cache(small_bible, tmp_path):
    """A private copy of the small Bible data cache (its config and what preparing it gives)."""
    cfg, prepared = small_bible
    data_dir = tmp_path / "data"
    shutil.copytree(cfg.data_dir, data_dir)
    cfg = dataclasses.replace(cfg, data_dir=str(data_dir))
    return cfg, prepare_data(cfg)


def _run_the_fix(message: str) -> None:
    """Run the `rm -r ...` the message prints, exactly as printed."""
    command = re.search(r"`(rm -r [^`]+)`", message).group(1)
    subprocess.run(shlex.split(command), check=True)


def _refused(cfg, pattern: str) -> str:
    with pytest.raises(DataError, match=pattern) as refused:
        prepare_data(cfg)
    return str(refused.value)


def test_a_shard_zeroed_at_the_same_size_is_refused_and_rebuilt(cache):
    cfg, prepared = cache
    shard = prepared.shards[1].path("train")
    manifest = prepared.shards[1].manifest
    shard.write_bytes(bytes(shard.stat().st_size))
    message = _refused(cfg, r"token shard .*fr-\w+/train\.bin does not match .*manifest\.json: its sha256 is")
    assert str(shard) in message
    _run_the_fix(message)
    again = prepare_data(cfg)
    assert again.shards[1].manifest["splits"] == manifest["splits"]  # the same tokens, prepared again
    assert shard_check.scan_tokens(shard, np.dtype("uint16"))[0] == manifest["splits"]["train"]["shards"][0]["sha256"]


def test_a_zeroed_shard_with_its_mtime_set_back_is_still_refused(cache, monkeypatch):
    cfg, prepared = cache
    monkeypatch.setattr(shard_check, "RACY_NS", 0)  # stamp the files now, as if prepared long ago
    prepare_data(cfg)
    shard = prepared.shards[0].path("val")
    before = shard.stat()
    assert json.loads((shard.parent / shard_check.STAMP_FILE).read_text())["val"]["identity"]["inode"] == before.st_ino
    with open(shard, "r+b") as handle:  # in place: same inode, same size
        handle.write(bytes(before.st_size))
    os.utime(shard, ns=(before.st_atime_ns, before.st_mtime_ns))  # the ctime still moves
    _refused(cfg, r"en-\w+/val\.bin does not match")


def test_random_bytes_in_a_shard_are_refused(cache):
    cfg, prepared = cache
    shard = prepared.shards[2].path("train")
    shard.write_bytes(np.random.default_rng(0).bytes(shard.stat().st_size))
    _refused(cfg, r"de-\w+/train\.bin does not match")


def test_token_ids_of_shards_prepared_before_manifests_had_hashes_are_checked(cache):
    """An older manifest has neither sha256 nor max_token_id (nor a list of shards: format 1, one file a split): the
    ids are still checked against the vocabulary."""
    cfg, prepared = cache
    info = prepared.shards[3]
    old = ("sha256", "max_token_id", "shards")
    manifest = dict(info.manifest, splits={s: {k: v for k, v in e.items() if k not in old}
                                           for s, e in info.manifest["splits"].items()})
    (info.directory / "manifest.json").write_text(json.dumps(manifest))
    tokens = np.fromfile(info.path("train"), dtype=np.uint16)
    tokens[len(tokens) // 2] = 60_000  # one id past the 512-token vocabulary
    tokens.tofile(info.path("train"))
    message = _refused(cfg, r"ar-\w+/train\.bin holds token id 60000, but the tokenizer it was made with has "
                            r"512 tokens")
    _run_the_fix(message)
    assert int(prepare_data(cfg).shards[3].tokens("train").max()) < 512


def test_the_manifest_records_the_largest_token_id(cache):
    for info in cache[1].shards:
        for split in ("train", "val"):
            assert info.manifest["splits"][split]["max_token_id"] == int(info.tokens(split).max()) < 512


def test_unchanged_shards_are_not_read_again(cache, monkeypatch):
    cfg, _ = cache
    for stamp in Path(cfg.data_dir).rglob(shard_check.STAMP_FILE):  # the fixture's preparation may have stamped some
        stamp.unlink()
    monkeypatch.setattr(shard_check, "RACY_NS", 0)
    scanned = []
    real_scan = shard_check.scan_tokens
    monkeypatch.setattr(shard_check, "scan_tokens", lambda path, dtype: scanned.append(path) or real_scan(path, dtype))
    prepared = prepare_data(cfg)
    assert len(scanned) == 10  # 5 tasks x 2 splits, none stamped
    scanned.clear()
    prepare_data(cfg)
    assert scanned == []  # stamps match: nothing hashed
    os.utime(prepared.shards[4].path("train"))  # touched: read again, found intact
    prepare_data(cfg)
    assert scanned == [prepared.shards[4].path("train")]


def test_a_file_written_just_now_is_not_stamped(cache, monkeypatch):
    """Another write in the same clock tick could leave its times unchanged (git's "racy" case): hash it again."""
    cfg, prepared = cache
    shard = prepared.shards[0].path("train")
    stamp_file = shard.parent / shard_check.STAMP_FILE
    shard.write_bytes(shard.read_bytes())  # rewritten now, same bytes
    # A window of an hour instead of 2 s, so that a slow preparation on a busy machine still counts as "just now".
    monkeypatch.setattr(shard_check, "RACY_NS", 3600 * 10**9)
    prepare_data(cfg)
    assert "train" not in (json.loads(stamp_file.read_text()) if stamp_file.exists() else {})
    monkeypatch.setattr(shard_check, "RACY_NS", 0)
    prepare_data(cfg)
    assert json.loads(stamp_file.read_text())["train"]["identity"]["size"] == shard.stat().st_size


def test_a_shard_folder_without_its_manifest_is_refused_and_rebuilt(cache):
    cfg, prepared = cache
    directory = prepared.shards[0].directory
    (directory / "manifest.json").unlink()
    message = _refused(cfg, r"en-\w+ has no manifest\.json, so its shards cannot be checked; delete the folder")
    _run_the_fix(message)
    assert prepare_data(cfg).shards[0].manifest["splits"] == prepared.shards[0].manifest["splits"]


@pytest.mark.parametrize("damage", ["deleted", "changed"])
def test_a_damaged_cached_tokenizer_is_refused_and_retrained_identically(cache, damage):
    cfg, prepared = cache
    folder = prepared.tokenizer_dir
    recorded = json.loads((folder / RECORD_FILE).read_text())
    tokenizer_json = folder / "tokenizer.json"
    if damage == "deleted":
        tokenizer_json.unlink()
        pattern = r"tokenizer file .*tokenizer\.json is missing"
    else:
        tokenizer_json.write_text(tokenizer_json.read_text().replace('"<|endoftext|>"', '"<|end|>"'))
        pattern = r"tokenizer file .*tokenizer\.json changed since the tokenizer was trained"
    message = _refused(cfg, pattern)
    _run_the_fix(message)
    again = prepare_data(cfg)
    assert json.loads((folder / RECORD_FILE).read_text()) == recorded  # the very same files
    assert [s.manifest["splits"] for s in again.shards] == [s.manifest["splits"] for s in prepared.shards]


def test_a_users_tokenizer_folder_without_tokenizer_json_is_named(cache, tmp_path):
    cfg, prepared = cache
    mine = tmp_path / "my_tokenizer"
    shutil.copytree(prepared.tokenizer_dir, mine)
    (mine / "tokenizer.json").unlink()
    user_cfg = dataclasses.replace(cfg, tokenizer=dataclasses.replace(cfg.tokenizer, path=str(mine)))
    _refused(user_cfg, r"the tokenizer folder .*my_tokenizer \(data\.tokenizer\.path\) has no tokenizer\.json")


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_killed_preparations_staging_folder_is_removed_by_the_next(tmp_path):
    final = tmp_path / "entry"
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
        from pathlib import Path
        from mer.data.atomic import atomic_directory
        with atomic_directory(Path({str(final)!r})) as staging:
            (staging / "half.bin").write_bytes(b"x" * 1000)
            print(staging, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)  # killed mid-build: no cleanup runs
    """)
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL
    left = Path(killed.stdout.strip())
    assert left.is_dir() and left.name.startswith(".entry.staging-")
    old_style = tmp_path / f".entry.staging-{_dead_pid()}-0123abcd"  # named by an older mer: pid only
    old_style.mkdir()
    in_use = tmp_path / f".entry.staging-{os.getpid()}-89abcdef"  # a live owner (this process)
    in_use.mkdir()
    with atomic_directory(final) as staging:
        (staging / "done.bin").write_bytes(b"y")
    assert not left.exists() and not old_style.exists() and in_use.is_dir()
    assert (final / "done.bin").is_file()


def test_a_stale_staging_folder_beside_a_finished_entry_is_removed(cache):
    """The entry was finished by another job later: the next preparation still removes what the killed one left."""
    cfg, prepared = cache
    directory = prepared.shards[0].directory
    stale = directory.parent / f".{directory.name}.staging-{_dead_pid()}-deadbeef"
    (stale / "sub").mkdir(parents=True)
    prepare_data(cfg)
    assert not stale.exists()


@pytest.mark.slow
def test_the_prepare_command_refuses_a_damaged_shard_in_one_line(cache):
    """As a user runs it: exit code 2, one line naming the file and the fix, no traceback."""
    cfg, prepared = cache
    shard = prepared.shards[0].path("val")
    shard.write_bytes(bytes(shard.stat().st_size))
    tasks = "[" + ",".join(f"{{name:{t.name},max_train_documents:{t.max_train_documents}}}" for t in cfg.tasks) + "]"
    args = [sys.executable, "-m", "mer.data.prepare", f"data.tasks={tasks}", f"data.data_dir={cfg.data_dir}",
            f"data.tokenizer.vocab_size={cfg.tokenizer.vocab_size}",
            f"data.tokenizer.train_chars_per_task={cfg.tokenizer.train_chars_per_task}"]
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    refused = subprocess.run(args, cwd=repo, capture_output=True, text=True, timeout=600, env=env)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "Traceback" not in refused.stderr and f"error: token shard {shard} does not match" in refused.stderr
    _run_the_fix(refused.stderr)
    rebuilt = subprocess.run(args, cwd=repo, capture_output=True, text=True, timeout=600, env=env)
    assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]


def test_another_hosts_staging_folder_is_removed_only_when_idle_for_an_hour(tmp_path):
    """On a shared file system: under the entry's lock, and only after an hour without a change."""
    import time

    final = tmp_path / "entry"
    idle = tmp_path / ".entry.staging-otherhost-12345-0000aaaa"
    busy = tmp_path / ".entry.staging-otherhost-12346-0000bbbb"
    for folder in (idle, busy):
        (folder / "part").mkdir(parents=True)
        (folder / "part" / "train.bin").write_bytes(b"z")
    two_hours_ago = time.time() - 7200
    for path in (idle / "part" / "train.bin", idle / "part", idle):
        os.utime(path, (two_hours_ago, two_hours_ago))
    with atomic_directory(final) as staging:
        (staging / "done.bin").write_bytes(b"y")
    assert not idle.exists() and busy.is_dir()
