"""Shared fixtures: a small real data set prepared once per test session."""

from __future__ import annotations

import os

import pytest

# Tests never touch the user's cache or a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from mer_testing import small_bible_config  # noqa: E402  (helpers shared with test modules)


@pytest.fixture(scope="session")
def small_bible(tmp_path_factory):
    """Tokenizer and shards of a small five-language Bible sequence (real text from the packages)."""
    from mer.data.pipeline import prepare_data

    cfg = small_bible_config(tmp_path_factory.mktemp("data"))
    return cfg, prepare_data(cfg)
