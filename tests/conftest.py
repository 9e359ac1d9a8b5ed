"""Shared fixtures: a small real data set prepared once per test session."""

from __future__ import annotations

import os

import pytest

# Tests never touch the user's cache or a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Nor the per-machine cache of the CPU matmul rate (mer.compute.mfu): every test process measures its own.
os.environ.setdefault("MER_CPU_RATE_CACHE", "")

from mer_testing import small_bible_config  # noqa: E402  (helpers shared with test modules)


@pytest.fixture(scope="session")
def small_bible(tmp_path_factory):
    """Tokenizer and shards of a small five-language Bible sequence (real text from the packages)."""
    from mer.data.pipeline import prepare_data

    cfg = small_bible_config(tmp_path_factory.mktemp("data"))
    return cfg, prepare_data(cfg)


@pytest.fixture(scope="session", autouse=True)
def _harness_datasets_cache(tmp_path_factory):
    """The harness loads task data through `datasets`: keep its cache out of the user's and never go online."""
    os.environ["HF_DATASETS_CACHE"] = str(tmp_path_factory.mktemp("hf_datasets"))
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def exported_run(small_bible, tmp_path_factory):
    """A completed tiny five-task run trained with export_each_task=true: (run directory, its config, summary).
    128-token blocks: its models then take every bible_cloze item (the longest ending is 87 tokens of this BPE)."""
    import dataclasses
    import json

    from mer_testing import tiny_run_config

    from mer.launch.runner import run_training
    from mer.model.llama import get_preset

    cfg = tiny_run_config(small_bible[0], tmp_path_factory.mktemp("exported"), export_each_task=True,
                          model=get_preset("cpu-0.5m", seq_len=128))
    summary = run_training(cfg, "run", json.loads(json.dumps(dataclasses.asdict(cfg), default=str)))
    from pathlib import Path

    return Path(cfg.runs_dir) / "run", cfg, summary
