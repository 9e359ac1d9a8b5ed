"""What the integrity checks cost (docs/run_directory.md, "What is verified when"): the shards of the default
data hashed from scratch and with their verified-stamps, the cached tokenizer's files, and a checkpoint's
manifest written and verified for the default model (cpu-2m, state.pt with AdamW moments).

    python benchmarks/integrity_cost.py                    # prepares the default data in a temporary folder
    python benchmarks/integrity_cost.py --data-dir ~/.cache/mer --rounds 5

Prints a Markdown table (median and min-max over rounds) with the machine; the numbers are reported in
docs/benchmarks.md, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import format_machine, machine_info  # noqa: E402
from rounds import log, spread  # noqa: E402


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="a data cache to use (default: a fresh temporary one)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import torch

    from mer.data.config import DataConfig
    from mer.data.pipeline import prepare_data
    from mer.data.shard_check import STAMP_FILE, verify_shard_files
    from mer.data.tokenizer_check import verify_cached_tokenizer
    from mer.model.llama import build_model, get_preset
    from mer.optim.schedule import OptimConfig, build_optimizer
    from mer.rundir.checkpoint_integrity import verify_checkpoint, write_manifest

    info = machine_info()
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = args.data_dir or Path(scratch) / "data"
        cfg = DataConfig(data_dir=str(data_dir))  # the default five Bible tasks and 4096-token BPE
        log(f"preparing the default data in {data_dir} ...")
        prepared = prepare_data(cfg)
        time.sleep(2.1)  # files written in the last 2 s are never stamped (mer.data.shard_check.RACY_NS)
        shard_bytes = sum(s.path(split).stat().st_size for s in prepared.shards for split in ("train", "val"))

        def verify_all() -> None:
            for s in prepared.shards:
                verify_shard_files(s.directory, s.manifest, {sp: s.path(sp) for sp in ("train", "val")}, s.dtype)

        cold, warm, tokenizer = [], [], []
        for _ in range(args.rounds):
            for s in prepared.shards:
                (s.directory / STAMP_FILE).unlink(missing_ok=True)
            cold.append(_timed(verify_all))
            warm.append(_timed(verify_all))
            tokenizer.append(_timed(lambda: verify_cached_tokenizer(prepared.tokenizer_dir)))
        stamped = all((s.directory / STAMP_FILE).is_file() for s in prepared.shards)

        model = build_model(get_preset("cpu-2m"), len(prepared.tokenizer))
        optimizer = build_optimizer(model, OptimConfig())
        batch = torch.randint(0, len(prepared.tokenizer), (2, 65))
        model(input_ids=batch[:, :-1], labels=batch[:, 1:]).loss.backward()
        optimizer.step()  # the AdamW moments exist, as in every checkpoint after step 0
        ckpt = Path(scratch) / "run" / "checkpoint.tmp"
        ckpt.mkdir(parents=True)
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, ckpt / "state.pt")
        state_bytes = (ckpt / "state.pt").stat().st_size
        metrics = {"bytes": 0, "records": 0, "sha256": "", "last": None}
        written = [_timed(lambda: write_manifest(ckpt, metrics, 1)) for _ in range(args.rounds)]
        verified = [_timed(lambda: verify_checkpoint(ckpt)) for _ in range(args.rounds)]

    info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    print(format_machine(info))
    print()
    print("| check | bytes read | seconds, median (min-max) |")
    print("| --- | ---: | ---: |")
    print(f"| 10 default shards (5 tasks x train/val), no stamps: sha256 + token ids | {shard_bytes:,} | {spread(cold, '{:.3f}')} |")
    print(f"| the same shards with their stamps (stat only){'' if stamped else ' - NOT STAMPED'} | 0 | {spread(warm, '{:.4f}')} |")
    print(f"| cached tokenizer's files against files.sha256.json | - | {spread(tokenizer, '{:.4f}')} |")
    print(f"| checkpoint manifest written (cpu-2m state.pt with AdamW moments) | {state_bytes:,} | {spread(written, '{:.3f}')} |")
    print(f"| checkpoint verified before a resume | {state_bytes:,} | {spread(verified, '{:.3f}')} |")
    print(json.dumps({"cold": cold, "warm": warm, "tokenizer": tokenizer, "write": written, "verify": verified}),
          file=sys.stderr)


if __name__ == "__main__":
    main()
