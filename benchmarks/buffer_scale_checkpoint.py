"""The buffer's checkpoint round trip at scale: `state_dict` + `torch.save` (file evicted from the page
cache), then `torch.load` + `load_state_dict` into a fresh buffer, checked by checksum; times, file size
and peak extra memory. A load whose projected peak exceeds `--mem-limit-gb` is skipped."""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
from buffer_scale_data import checksum, held
from buffer_scale_tables import GB
from process_memory import Peak, mem

from mer.replay.buffer import BufferConfig, ReplayBuffer


def checkpoint_save(buffer: ReplayBuffer, path: Path) -> dict:
    """state_dict + torch.save (fsync) of the buffer; times, size, peak extra memory, checksum."""
    with Peak() as peak:
        started = time.perf_counter()
        state = buffer.state_dict()
        t_state = time.perf_counter() - started
        # Again at once: the first call's output memory is fresh (first-touch page faults, which on a VM can
        # cost seconds per GB when the host has taken the pages back); the second reuses the pages just freed.
        del state
        started = time.perf_counter()
        state = buffer.state_dict()
        t_state_again = time.perf_counter() - started
        started = time.perf_counter()
        torch.save(state, path)
        fd = os.open(path, os.O_RDONLY)
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # the load below reads from disk
        os.close(fd)
        t_save = time.perf_counter() - started
        encoding = "runs" if state["refs"]["run_lengths"] is not None else "raw"
        n_values = int(state["refs"]["values"].numel())
        del state
    return {"held": len(buffer), "seen": buffer.n_seen, "bytes": os.path.getsize(path), "encoding": encoding,
            "n_values": n_values, "state_dict_s": t_state, "state_dict_again_s": t_state_again, "save_s": t_save,
            "save_peak_extra": peak.extra, "checksum": checksum(held(buffer))}


def checkpoint_load(cfg: BufferConfig, reader, seed: int, path: Path, saved: dict, args,
                    load_bytes_per_ref: float | None) -> dict:
    """torch.load(weights_only=True) + load_state_dict into a fresh buffer, unless projected too big."""
    out = {}
    with Peak() as peak:
        started = time.perf_counter()
        state = torch.load(path, weights_only=True)
        out["load_s"] = time.perf_counter() - started
        projected = mem()["VmRSS"] + (load_bytes_per_ref or 0) * saved["held"]
        out["projected_peak"] = projected if load_bytes_per_ref else None
        if load_bytes_per_ref and projected > args.mem_limit_gb * GB:
            out["load_state_dict_s"] = None  # filled in by extrapolation
            out["skipped"] = f"projected peak {projected / GB:.1f} GB > --mem-limit-gb {args.mem_limit_gb}"
            del state
        else:
            with Peak() as inner:
                fresh = ReplayBuffer(cfg, reader, seed)
                started = time.perf_counter()
                fresh.load_state_dict(state)
                out["load_state_dict_s"] = time.perf_counter() - started
            out["lsd_peak_extra"] = inner.extra
            out["ok"] = len(fresh) == saved["held"] and checksum(held(fresh)) == saved["checksum"]
            del state, fresh
    out["load_peak_extra"] = peak.extra
    return out
