"""Entry point: `python -m mer.data.prepare [data=...] [data.data_dir=...]`.

Builds the tokenizer and token shards of a task sequence once (later calls reuse the cache) and
prints tokens per task and split. `workers=N` tokenizes the pieces of the input in N processes, `launcher=slurm`
as a Slurm job array (`slurm.*`, mer.data.prepare_config); a killed preparation keeps its finished pieces.
`model.init_from=DIR` prepares with that model's tokenizer, exactly as
`python -m mer.run model.init_from=DIR` will (the same cache), checked the same way.
`--verify` prepares nothing: it hashes every input file and shard of the prepared data again (`mer.data.verify`).
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from mer.config.run_config import register_configs, to_dataclass
from mer.config.usage_errors import run_hydra_main, usage_exit
from mer.data.config import DataConfig
from mer.data.corpus import DataError
from mer.data.pipeline import format_table, prepare_data
from mer.data.prepare_config import PrepareConfig

register_configs()
VERIFY_FLAG = "--verify"
verify_only = False
"""Set from the command line before Hydra parses it (Hydra knows no `--verify`)."""


def engine_config(values: dict) -> PrepareConfig:
    """The command's own keys as a checked PrepareConfig (a wrong type or range: ValueError naming the key)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        merged = OmegaConf.merge(OmegaConf.structured(PrepareConfig), values)
    except OmegaConfBaseException as error:
        raise ValueError(str(error).splitlines()[0]) from None
    return to_dataclass(merged, PrepareConfig)


@hydra.main(config_path="pkg://mer.conf", config_name="prepare", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        engine_keys = {"workers", "launcher", "piece_bytes", "slurm"}
        unknown = sorted(set(cfg) - {"data", "model"} - engine_keys)  # `+key=value` at the top: prepare reads these
        unknown += sorted(f"model.{key}" for key in set(cfg.get("model") or {}) - {"init_from"})
        if unknown:
            raise ValueError(f"unknown config key(s) {unknown}: python -m mer.data.prepare reads only data.*, "
                             f"model.init_from and {', '.join(sorted(engine_keys))}")
        engine = engine_config({key: cfg[key] for key in engine_keys if key in cfg})
        data_cfg = to_dataclass(cfg.data, DataConfig, prefix="data.")
        init_from = (cfg.get("model") or {}).get("init_from")
        if init_from is not None:  # the run's tokenizer: the model's own unless data.tokenizer.path says otherwise
            from mer.model.pretrained import check_model_directory, check_tokenizer

            check_model_directory(str(init_from))
            data_cfg.tokenizer.path = check_tokenizer(str(init_from), data_cfg.tokenizer.path)
    except ValueError as error:
        usage_exit(str(error))
    try:
        if verify_only:
            from mer.data.verify import verify_data

            print("\n".join(verify_data(data_cfg)))
            print("verified: every file was read and hashed again")
            return
        prepared = prepare_data(data_cfg, engine)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(format_table(prepared))
    if prepared.pieces:
        print(prepared.pieces)
    print(f"done in {prepared.seconds:.1f} s")


if __name__ == "__main__":
    if VERIFY_FLAG in sys.argv[1:]:
        sys.argv.remove(VERIFY_FLAG)
        verify_only = True
    run_hydra_main(main, DataConfig, prefix="data.")  # a bad override: one message, exit code 2
