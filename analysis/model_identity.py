"""Which model a run trained: its architecture and parameter counts, never a name that an override can contradict.

A run's `model.name` is a label the user chose. Before issue 19 a custom shape had to be called `custom` and a preset
kept its name under `model.d_model=144`, so grouping by the name pooled different models into one "size" (a ladder of
four custom shapes became one size whose "seeds" were four models). The analysis therefore groups runs by their
**identity**: the architecture fields of the run's config (`ARCHITECTURE_FIELDS`: layers, width, heads, key/value
heads, SwiGLU width, tied embeddings), the vocabulary, and the parameter counts summary.json records (`n_params`,
`n_params_nonembedding`). Runs written before the config recorded a shape (no shape fields) are identified by their
name and parameter counts.

The label shown for an identity (the `model` column every table, fit and claim groups by) is the recorded name when
that name is unambiguous: it names this identity only, this identity carries no other name, and it is not the bare
`custom`. Otherwise the label is built from the identity (`shape_label`): `L4-d144-h4-ff384-V4096` (`-kv2` for grouped
key/value heads, `-tied` for tied embeddings), or, without shape fields, the name with the parameter count
(`cpu-2m (1.79M)`). The recorded name stays in the `model_name` column and the relabelling is listed as a note.
Since issue 19 the trainer's config renames such a model itself (`mer.model.llama.shape_label`), so new runs never
need it; old run directories still analyse.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

ARCHITECTURE_FIELDS = ("n_layer", "d_model", "n_head", "n_kv_head", "d_ff", "tie_embeddings")
"""The config's model fields that make the architecture (the same as `mer.model.llama.ARCHITECTURE_FIELDS`)."""
SHAPE_COLUMNS = ("n_layer", "d_model", "n_head", "n_kv_head", "d_ff", "tie_embeddings", "vocab_size")
"""Columns of the runs table that describe the shape (NaN / None where the config does not say)."""


def model_shape(model: Any) -> dict[str, Any]:
    """The architecture fields of a config's `model` section (None for each field it lacks; n_kv_head=null -> n_head)."""
    model = model if isinstance(model, dict) else {}
    shape: dict[str, Any] = {}
    for f in ARCHITECTURE_FIELDS:
        v = model.get(f)
        if f == "tie_embeddings":
            shape[f] = bool(v) if isinstance(v, bool) else None
        else:
            shape[f] = int(v) if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) else None
    if shape["n_kv_head"] is None and shape["n_head"] is not None and "n_layer" in model:
        shape["n_kv_head"] = shape["n_head"]  # null means full multi-head attention
    return shape


def vocab_size(shape: dict[str, Any], n_params: float, n_nonembedding: float) -> float:
    """The vocabulary, from the embedding parameters: (total - non-embedding) / (d_model x 1 or 2 matrices); NaN when
    the counts or the shape are missing or do not divide."""
    d, tied = shape.get("d_model"), shape.get("tie_embeddings")
    if d is None or tied is None or not (math.isfinite(n_params) and math.isfinite(n_nonembedding)):
        return math.nan
    per_token = d * (1 if tied else 2)
    embedding = n_params - n_nonembedding
    return float(embedding // per_token) if embedding > 0 and embedding % per_token == 0 else math.nan


def shape_label(row: pd.Series | dict) -> str:
    """The label of an identity: L<layers>-d<width>-h<heads>[-kv<kv heads>]-ff<SwiGLU width>[-tied][-V<vocab>], or
    '<name> (<parameters>)' for a run whose config records no shape."""
    if _known(row.get("n_layer")) and _known(row.get("d_model")):
        label = f"L{int(row['n_layer'])}-d{int(row['d_model'])}-h{int(row['n_head'])}"
        if _known(row.get("n_kv_head")) and int(row["n_kv_head"]) != int(row["n_head"]):
            label += f"-kv{int(row['n_kv_head'])}"
        label += f"-ff{int(row['d_ff'])}" + ("-tied" if row.get("tie_embeddings") is True else "")
        return label + (f"-V{int(row['vocab_size'])}" if _known(row.get("vocab_size")) else "")
    n = row.get("n_params")
    return f"{row['model_name']} ({n / 1e6:.3g}M)" if _known(n) else f"{row['model_name']} (size unknown)"


def identity_key(row: pd.Series | dict) -> tuple:
    """What makes two runs the same model: shape, vocabulary and parameter counts (the name only without a shape)."""
    shape = tuple(_plain(row.get(c)) for c in SHAPE_COLUMNS)
    counts = (_plain(row.get("n_params")), _plain(row.get("n_params_nonembedding")))
    name = () if _known(row.get("n_layer")) else (row.get("model_name"),)
    return (*name, *shape, *counts)


def label_models(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """`runs` with `model` set to each run's identity label (module docstring), and the notes on names relabelled.

    Expects `model_name` (the recorded name) and the `SHAPE_COLUMNS`, `n_params`, `n_params_nonembedding` columns."""
    if runs.empty:
        return runs, []
    out = runs.copy()
    keys = [identity_key(r) for _, r in out.iterrows()]
    names_of: dict[tuple, set[str]] = {}
    keys_of: dict[str, set[tuple]] = {}
    for key, name in zip(keys, out["model_name"], strict=True):
        names_of.setdefault(key, set()).add(str(name))
        keys_of.setdefault(str(name), set()).add(key)
    labels: dict[tuple, str] = {}
    for key, names in names_of.items():
        (name,) = names if len(names) == 1 else (None,)
        unambiguous = name is not None and name != "custom" and len(keys_of[name]) == 1
        labels[key] = name if unambiguous else shape_label(out.iloc[keys.index(key)])
    out["model"] = [labels[k] for k in keys]
    notes = []
    for name, ks in sorted(keys_of.items()):
        relabelled = sorted({labels[k] for k in ks} - {name})
        if relabelled:
            why = (f"names {len(ks)} different models" if len(ks) > 1 else
                   "is not a shape" if name == "custom" else "shares its model with another name")
            notes.append(f"model name '{name}' {why}: its runs are analysed by their architecture as "
                         f"{', '.join(relabelled)} (analysis.model_identity)")
    return out, notes


def _known(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def _plain(v: Any) -> Any:
    """A hashable stand-in for a cell: None for missing, ints for whole numbers (1.0 and 1 are one key)."""
    if not _known(v):
        return None
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float) and float(v).is_integer():
        return int(v)
    return v
