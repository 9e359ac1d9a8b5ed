#!/usr/bin/env bash
# Install mer with the lowest dependency versions it declares (requirements/min-versions.txt) in a fresh
# virtual environment and run the tests that exercise those libraries (model, tokenizer, trainer, config,
# analysis, search spaces). About 16 minutes on 2 busy cores; not part of .ci/run, which keeps to 45 minutes.
# Usage: scripts/check_min_versions.sh [VENV_DIR]   (default /tmp/mer-min-versions)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-/tmp/mer-min-versions}
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet -c requirements/min-versions.txt -e ".[dev]"
"$venv/bin/pip" check
"$venv/bin/pip" list 2>/dev/null | grep -iE "^(torch|transformers|tokenizers|numpy|pandas|scipy|optuna|pyarrow) "
HF_HUB_OFFLINE=1 "$venv/bin/python" -m pytest -q -p no:cacheprovider -m "not slow and not cluster" \
    tests/test_model.py tests/test_pretrained.py tests/test_export.py tests/analysis tests/test_run_config.py \
    tests/test_tokenizer.py tests/test_trainer.py tests/sweeps/test_sweep_search_space.py
