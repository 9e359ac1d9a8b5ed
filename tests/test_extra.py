"""The harness is an optional extra: declared with a bounded range, and absent from the core install."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_harness_is_an_optional_extra_and_the_core_does_not_grow():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    for package in ("lm-eval", "lm_eval", "accelerate", "datasets", "evaluate"):
        assert package not in core
    extra = project["optional-dependencies"]["eval"]
    harness = next(d for d in extra if d.startswith("lm-eval"))
    assert ">=" in harness and "<" in harness.split(">=", 1)[1]  # a bounded range: no next major, no pre-release
    assert re.search(r'-e "\.\[[a-z,]*\beval\b[a-z,]*\]"', (REPO / ".ci" / "run").read_text())  # CI installs it: its tests run there


def test_the_core_does_not_import_the_harness():
    import subprocess
    import sys

    code = ("import sys, mer.run, mer.training.trainer, mer.hf.export, mer.evaluation.downstream, mer.evaluation.harness; "
            "print(sorted(m for m in ('lm_eval', 'datasets', 'evaluate') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    # imported only when a downstream evaluation runs (transformers itself imports accelerate when it is installed)
    assert out.stdout.strip() == "[]"
