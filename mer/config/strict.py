"""Unknown config keys are refused, also those added with Hydra's `+key=value`.

Hydra keeps a composed config in struct mode, so `optim.lrr=1` fails to compose; but `+optim.lrr=1` (append)
force-adds the key, and `OmegaConf.to_object` then sets it as a stray attribute on the dataclass: the run
trained with the typo ignored and the typo in its name. `check_known_keys` walks the composed config against
its dataclass schema and refuses every key that is not a field, naming the closest valid key (difflib).

Config-group appends are not keys and stay valid: `+sweep=paper_grid` and `+experiment=cpu_paper` select
`@package _global_` presets whose content is merged into the known keys (docs/design.md, "Settings that
cannot take effect are refused").
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from typing import Any


class UnknownConfigKey(ValueError):
    """A config key that no dataclass field reads; the message names it and the closest valid key."""


def _fields(schema: type) -> list[str]:
    return [f.name for f in dataclasses.fields(schema)]


def _schema_of(node: Any) -> type | None:
    from omegaconf import DictConfig, OmegaConf

    if isinstance(node, DictConfig):
        kind = OmegaConf.get_type(node)
        if kind is not None and dataclasses.is_dataclass(kind):
            return kind
    return None


def known_paths(schema: type, prefix: str = "") -> list[str]:
    """Every dotted key of `schema` and of its nested dataclasses (fields typed as a dataclass or a list of them)."""
    import typing

    paths = []
    hints = typing.get_type_hints(schema)
    for name in _fields(schema):
        path = f"{prefix}{name}"
        paths.append(path)
        kind = hints.get(name)
        args = typing.get_args(kind)
        inner = kind if dataclasses.is_dataclass(kind) else (args[0] if len(args) == 1 else None)
        if inner is not None and dataclasses.is_dataclass(inner):
            paths.extend(known_paths(inner, f"{path}." if inner is kind else f"{path}.<i>."))
    return paths


def _suggestion(path: str, key: str, siblings: list[str], prefix: str, every_path: list[str]) -> str:
    """` Did you mean 'x'?` for the closest sibling, else the closest known key anywhere; '' when none is close."""
    close = difflib.get_close_matches(key, siblings, n=1, cutoff=0.6)
    if close:
        return f" Did you mean '{prefix}{close[0]}'?"
    every_path = [p for p in every_path if not path.startswith(f"{p}.")]  # never the key's own parents
    anywhere = difflib.get_close_matches(path, every_path, n=1, cutoff=0.75)
    if not anywhere:  # e.g. `lr` at the top level: the leaf names match, the paths do not
        by_leaf = {p.rsplit(".", 1)[-1]: p for p in every_path}
        leaf = difflib.get_close_matches(key, list(by_leaf), n=1, cutoff=0.8)
        anywhere = [by_leaf[leaf[0]]] if leaf else []
    return f" Did you mean '{anywhere[0]}'?" if anywhere else ""


def suggestion(path: str, schema: type, prefix: str = "") -> str:
    """` Did you mean 'x'?` for the dotted key `path` (as given on the command line) of a config whose `schema`
    sits at `prefix`; '' when no valid key is close."""
    generic = [f"{prefix}{p}" for p in known_paths(schema)]  # list items as <i>: data.tasks.<i>.name
    parent, _, key = path.rpartition(".")
    at = re.sub(r"(^|\.)\d+(?=\.|$)", r"\1<i>", parent)  # data.tasks.0 -> data.tasks.<i>
    siblings = [p[len(at) + 1:] for p in generic if p.startswith(f"{at}.") and "." not in p[len(at) + 1:]]
    if not parent:
        siblings = [p for p in generic if "." not in p]
    every_path = [p.replace("<i>.", "") for p in generic]
    return _suggestion(path, key, siblings, f"{parent}." if parent else "", every_path)


def unknown_keys(cfg: Any, schema: type, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted key, suggestion) of every key of the composed `cfg` that `schema` (a dataclass) has no field for."""
    from omegaconf import DictConfig, ListConfig

    every_path = [p.replace("<i>.", "") for p in known_paths(schema)]
    found: list[tuple[str, str]] = []

    def walk(node: Any, kind: type, at: str) -> None:
        names = _fields(kind)
        for key in node.keys():
            path = f"{at}{key}"
            if key not in names:
                found.append((path, _suggestion(path, str(key), names, at, every_path)))
                continue
            child = node._get_node(key)  # the node itself: no interpolation is resolved here
            if isinstance(child, DictConfig) and _schema_of(child) is not None:
                walk(child, _schema_of(child), f"{path}.")
            elif isinstance(child, ListConfig) and not child._is_missing() and not child._is_none():
                for index, item in enumerate(child):
                    inner = child._get_node(index)
                    if isinstance(inner, DictConfig) and _schema_of(inner) is not None:
                        walk(inner, _schema_of(inner), f"{path}.{index}.")

    if isinstance(cfg, DictConfig):
        walk(cfg, schema, prefix)
    return found


def check_known_keys(cfg: Any, schema: type, prefix: str = "") -> None:
    """Raise UnknownConfigKey naming every key of `cfg` that `schema` does not read (see the module docstring)."""
    found = unknown_keys(cfg, schema, prefix)
    if not found:
        return
    lines = [f"unknown config key '{path}'.{hint}" for path, hint in found]
    raise UnknownConfigKey(" ".join(lines) + " Remove it or fix its spelling (a `+key=value` override adds a key "
                           "that nothing reads; `python -m mer.run --cfg job` prints every valid key).")
