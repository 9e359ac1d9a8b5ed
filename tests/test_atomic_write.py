"""The one atomic-write helper (mer/files/atomic.py): a file or folder is its old version or its new one."""

from __future__ import annotations

import errno

import pytest

from mer.files.atomic import (
    DiskFull,
    atomic_path,
    is_disk_full,
    publish_directory,
    write_text,
)


def test_a_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "summary.json"
    write_text(path, "old")
    write_text(path, "new")
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    path = tmp_path / "config.json"
    write_text(path, "old")
    with pytest.raises(RuntimeError, match="killed half way"), atomic_path(path) as tmp:
        tmp.write_text("half a fi")
        raise RuntimeError("killed half way")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_a_folder_is_replaced_whole_and_the_old_one_goes(tmp_path):
    final = tmp_path / "after_en"
    for version in ("one", "two"):
        staging = tmp_path / f".after_en.staging-{version}"
        staging.mkdir()
        (staging / "model.safetensors").write_text(version)
        publish_directory(staging, final)
    assert (final / "model.safetensors").read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["after_en"]


def test_a_full_disk_is_recognised_through_the_errors_it_caused():
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as full:
            raise RuntimeError("PytorchStreamWriter failed writing file data/0") from full
    except RuntimeError as error:
        assert is_disk_full(error)
    assert is_disk_full(DiskFull("no space left on the device of runs/x"))
    assert not is_disk_full(ValueError("the loss is nan"))
    assert str(DiskFull("one line")) == "one line"
