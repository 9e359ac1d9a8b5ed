"""The replay policies by the name `buffer.policy` selects them with; one file per policy.

Adding a policy is one new file here (a `ReplayPolicy` subclass with its `name`) and one
conf/buffer/<name>.yaml (docs/replay_policies.md): every module of this folder is imported below and each
policy class defined in them is registered under its `name`, so nothing else is edited.
"""

from __future__ import annotations

import importlib
import pkgutil

from mer.replay.policy import ReplayPolicy


def _discover() -> dict[str, type[ReplayPolicy]]:
    for module in sorted(info.name for info in pkgutil.iter_modules(__path__)):
        importlib.import_module(f"{__name__}.{module}")
    found: dict[str, type[ReplayPolicy]] = {}
    # Classes defined in this folder only: a subclass made elsewhere (a test's) is not a configurable policy.
    for cls in ReplayPolicy.__subclasses__():
        if not cls.__module__.startswith(f"{__name__}."):
            continue
        if cls.name in found:
            raise ImportError(f"two replay policies are named {cls.name!r}: {found[cls.name].__module__} and "
                              f"{cls.__module__}; rename one (its `name` is the buffer.policy value)")
        found[cls.name] = cls
    listed_first = ("all", "reservoir")  # the built-in ones, in the order messages list the choices
    return dict(sorted(found.items(), key=lambda item: (item[0] not in listed_first, listed_first.index(item[0])
                                                        if item[0] in listed_first else 0, item[0])))


POLICIES: dict[str, type[ReplayPolicy]] = _discover()
"""`buffer.policy` value -> policy class: the built-in `all` and `reservoir` first, then the others."""

__all__ = ["POLICIES"]
