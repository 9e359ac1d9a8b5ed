"""Helpers of the sharded-preparation tests (tests/test_sharded_prepare.py, the fault and bad-input suites): a small
two-task corpus of real files, its data config, and `python -m mer.data.prepare` run as a user runs it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from mer.data.config import DataConfig, TaskConfig, TokenizerConfig

REPO = Path(__file__).resolve().parents[1]
PIECE = 4096
WORDS = ("river stone light house garden winter morning letter window market bread silver quiet "
         "forest candle harbor meadow thunder valley whisper").split()


def _sentence(rng: np.random.Generator, n: int) -> str:
    return " ".join(WORDS[i] for i in rng.integers(0, len(WORDS), n)) + "."


def write_corpus(root: Path) -> dict[str, Path]:
    """A JSONL file (~40 KB, cut by lines) and a text file of paragraphs (~30 KB, cut after blank lines)."""
    rng = np.random.default_rng(0)
    jsonl = root / "a.jsonl"
    jsonl.write_text("".join(json.dumps({"text": _sentence(rng, int(rng.integers(5, 40)))}) + "\n"
                             for _ in range(400)))
    text = root / "b.txt"
    paragraphs = ("\n".join(_sentence(rng, int(rng.integers(3, 12))) for _ in range(int(rng.integers(1, 4))))
                  for _ in range(350))
    text.write_text("\n\n".join(paragraphs) + "\n")
    return {"jsonl": jsonl, "text": text}


def data_config(data_dir: Path, files: dict[str, Path]) -> DataConfig:
    return DataConfig(
        tasks=[TaskConfig(name="a", language="en", source="files", train_files=[str(files["jsonl"])],
                          val_fraction=0.1),
               TaskConfig(name="b", language="en", source="files", train_files=[str(files["text"])],
                          val_fraction=0.1)],
        data_dir=str(data_dir), tokenizer=TokenizerConfig(vocab_size=300, train_chars_per_task=10_000),
        budget_tokens=1000, min_val_tokens=2)  # tiny corpora: a held-out split of a few hundred tokens


def cli_args(data_dir: Path, files: dict[str, Path]) -> list[str]:
    return [f"data.data_dir={data_dir}", "data.tokenizer.vocab_size=300", "data.tokenizer.train_chars_per_task=10000",
            f"data.tasks=[{{name:a,language:en,source:files,train_files:['{files['jsonl']}'],val_fraction:0.1}},"
            f"{{name:b,language:en,source:files,train_files:['{files['text']}'],val_fraction:0.1}}]",
            f"piece_bytes={PIECE}", "data.min_val_tokens=2"]


def run_prepare(args: list[str], fault: str | None = None) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "MER_FAULT_AT"}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(REPO))
    if fault is not None:
        env["MER_FAULT_AT"] = fault
    return subprocess.run([sys.executable, "-m", "mer.data.prepare", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)


def folder_bytes(data_dir: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under the shard folders (the verification stamps, which record inodes
    and times of this machine's files, left out), plus the folders' names."""
    root = data_dir / "shards"
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "<dir>"
            for p in sorted(root.rglob("*")) if p.name != "verified.json" and not p.name.endswith(".lock")}




def run_prepare_async(args: list[str]) -> subprocess.Popen:
    """`python -m mer.data.prepare` started, not waited for."""
    env = {key: value for key, value in os.environ.items() if key != "MER_FAULT_AT"}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "mer.data.prepare", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
