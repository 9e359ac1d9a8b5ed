"""Entry point: `python -m mer.data.prepare [data=...] [data.data_dir=...]`.

Builds the tokenizer and token shards of a task sequence once (later calls reuse the cache) and
prints tokens per task and split.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from mer.config import register_configs, to_dataclass
from mer.data.config import DataConfig
from mer.data.corpus import DataError
from mer.data.pipeline import format_table, prepare_data

register_configs()


@hydra.main(config_path="pkg://mer.conf", config_name="prepare", version_base="1.3")
def main(cfg: DictConfig) -> None:
    data_cfg = to_dataclass(cfg.data, DataConfig)
    try:
        prepared = prepare_data(data_cfg)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(format_table(prepared))
    print(f"done in {prepared.seconds:.1f} s")


if __name__ == "__main__":
    main()
