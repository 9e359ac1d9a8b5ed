"""Hydra's ConfigStore registration of the typed config schemas.

Only this module and the entry points import hydra/omegaconf; everything else receives plain
dataclasses (`OmegaConf.to_object`), whose `__post_init__` checks run before any work starts.
"""

from __future__ import annotations

from typing import Any, TypeVar

from mer.data.config import DataConfig

T = TypeVar("T")


def register_configs() -> None:
    """Store the schemas so that YAML files in conf/ can extend them (`defaults: [base_data]`)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(group="data", name="base_data", node=DataConfig)


def to_dataclass(cfg: Any, schema: type[T]) -> T:
    """Turn a composed DictConfig into its dataclass, running every validation check.

    OmegaConf reports type errors (a string where a float belongs) with the full key; our own checks
    raise ValueError naming the field. Both surface as one clear message before any work.
    """
    from omegaconf import OmegaConf

    obj = OmegaConf.to_object(cfg)
    if not isinstance(obj, schema):
        raise TypeError(f"expected a {schema.__name__} config, got {type(obj).__name__}")
    return obj
