"""The weight files of a `model.init_from` folder checked before any work: readable, complete, finite.

Without these checks a damaged folder fails late and obscurely: a header-corrupted or truncated safetensors
file raises safetensors' own error from deep inside transformers once the run directory exists (a `failed`
run, exit 1), and NaN weights train to a NaN loss that is blamed on the learning rate. Here each problem is
a ValueError naming the file (and the tensor) with the fix, which `python -m mer.run` prints as one line
(exit 2) before it writes anything:

- `check_weight_files(path)`: the structure, cheap (headers and sizes, no tensor read), run with the config
  check: every file an index names exists; a safetensors file has a readable header whose tensors lie within
  the file (a truncated file ends before its last tensor); a pytorch_model.bin opens as a zip archive;
- `check_finite_weights(path)`: every floating-point tensor read once (one at a time, memory-mapped) and
  checked for NaN and inf, run by the command just before training starts.
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

import torch

FIX = "save the model again with save_pretrained (or copy or download it again)"
_MAX_HEADER_BYTES = 100 << 20  # safetensors' own limit: a larger header length is a corrupted one


def weight_files(directory: Path) -> list[Path]:
    """The weight files of a model folder: the shards its index names, else its single file (none: [])."""
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = directory / index_name
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
                return [directory / name for name in sorted(set(weight_map.values()))]
            except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
                raise ValueError(f"{index} is not a readable weight index ({type(error).__name__}: {error}); "
                                 f"{FIX}") from None
    return [directory / name for name in ("model.safetensors", "pytorch_model.bin") if (directory / name).is_file()]


def _safetensors_header(path: Path) -> dict:
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise ValueError(f"{path} is damaged: {size} bytes, shorter than a safetensors header; {FIX}")
        (length,) = struct.unpack("<Q", head)
        if length > min(size - 8, _MAX_HEADER_BYTES):
            raise ValueError(f"{path} is damaged: its header claims {length:,} bytes, the file has {size:,} "
                             f"(a corrupted or truncated safetensors file); {FIX}")
        try:
            header = json.loads(handle.read(length).decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise ValueError(f"{path} is damaged: its safetensors header is not readable JSON; {FIX}") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path} is damaged: its safetensors header is not a table of tensors; {FIX}")
    end = max((int(info["data_offsets"][1]) for name, info in header.items() if name != "__metadata__"), default=0)
    if 8 + length + end > size:
        raise ValueError(f"{path} is truncated: its tensors need {8 + length + end:,} bytes, the file has {size:,}; "
                         f"{FIX}")
    return header


def check_weight_files(path: str) -> None:
    """Raise ValueError naming the file when a weight file of the model folder `path` is missing, unreadable or
    incomplete (module docstring); reads headers only."""
    for file in weight_files(Path(path).expanduser()):
        where = f"model.init_from={path!r}: "
        if not file.is_file():
            raise ValueError(f"{where}{file.name}, named by the folder's weight index, is missing; {FIX}")
        try:
            if file.suffix == ".safetensors":
                _safetensors_header(file)
            elif not zipfile.is_zipfile(file):  # torch.save's format since torch 1.6
                raise ValueError(f"{file} is damaged: not a readable torch archive; {FIX}")
        except ValueError as error:
            raise ValueError(where + str(error)) from None
        except OSError as error:
            raise ValueError(f"{where}{file} cannot be read ({error.strerror or error}); {FIX}") from None


def check_finite_weights(path: str) -> None:
    """Raise ValueError naming the file and tensor when a floating-point weight of the model folder `path` is NaN
    or infinite (module docstring). Reads every tensor once."""
    check_weight_files(path)
    for file in weight_files(Path(path).expanduser()):
        if file.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(file), framework="pt") as handle:
                for name in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                    _check_tensor(path, file, name, handle.get_tensor(name))
        else:
            state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
            for name, tensor in state.items():
                _check_tensor(path, file, name, tensor)


def _check_tensor(path: str, file: Path, name: str, tensor: torch.Tensor) -> None:
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(f"model.init_from={path!r}: {file} holds {bad:,} non-finite value(s) (NaN or inf) in tensor "
                         f"{name!r}: the base model is broken, not the learning rate; use an intact copy of the "
                         "model (save it again with save_pretrained)")
