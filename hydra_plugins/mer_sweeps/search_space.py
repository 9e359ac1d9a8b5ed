"""Hydra sweep syntax -> Optuna distributions, and sampled values -> override strings.

The syntax is Hydra's override grammar, as in its other sweepers:

| override                              | Optuna distribution                                  |
| ------------------------------------- | ---------------------------------------------------- |
| `x=a,b,c` / `x=choice(a,b,c)`         | `CategoricalDistribution([a, b, c])`                 |
| `x=range(1,10,3)` (stop excluded)     | `IntDistribution(1, 7, step=3)` (floats: Float, step) |
| `x=interval(0,1)`                     | `FloatDistribution(0.0, 1.0)`                        |
| `x=int(interval(10,1000))`            | `IntDistribution(10, 1000)`                          |
| `x=tag(log, interval(0.01,1))`        | `FloatDistribution(0.01, 1.0, log=True)`             |
| `x=tag(log, int(interval(10,1000)))`  | `IntDistribution(10, 1000, log=True)`                |

Any other override (no sweep) is fixed: every trial gets it unchanged.
"""

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep

_PRIMITIVE = (type(None), bool, int, float, str)


@dataclass
class SearchSpace:
    """What the sweeper searches (`distributions`) and what every trial gets as is (`fixed`)."""

    distributions: Dict[str, Any] = field(default_factory=dict)
    """Override key (with its `+`/`++` prefix) -> Optuna distribution."""
    fixed: List[str] = field(default_factory=list)
    """Overrides without a sweep, passed unchanged to every trial."""
    encodings: Dict[str, Dict[Any, str]] = field(default_factory=dict)
    """For categorical choices that are not plain values (lists, dicts): choice label -> override text."""
    grid: Dict[str, List[Any]] = field(default_factory=dict)
    """The finite values of each parameter (choice / range), for GridSampler; intervals have none."""

    def overrides(self, params: dict[str, Any]) -> list[str]:
        """The override list of one trial: the fixed overrides, then one `key=value` per parameter."""
        out = list(self.fixed)
        for key in self.distributions:
            value = params[key]
            text = self.encodings.get(key, {}).get(value)
            out.append(f"{key}={text if text is not None else format_value(value)}")
        return out


def format_value(value: Any) -> str:
    """A Python value as Hydra override text (`0.1`, `1e-05`, `null`, `'a b'`, `[1,2]`)."""
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ValueError(f"cannot pass {value} as an override value")
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return Override._get_value_element_as_str(value)


def _distribution(key: str, sweep: Any) -> tuple[Any, dict[Any, str], list[Any] | None]:
    import optuna.distributions as dist

    log = "log" in sweep.tags
    if isinstance(sweep, ChoiceSweep):
        if log:
            raise ValueError(f"{key}: tag(log, ...) applies to interval() and range(), not to choice()")
        choices, encodings = [], {}
        for item in sweep.list:
            if isinstance(item, _PRIMITIVE) and not hasattr(item, "with_quotes"):
                choices.append(item)
            else:  # a list/dict/quoted string: Optuna stores a label, the override gets the exact text
                text = Override._get_value_element_as_str(item)
                choices.append(text)
                encodings[text] = text
        if len(set(map(repr, choices))) != len(choices):
            raise ValueError(f"{key}: choice() lists a value twice: {choices}")
        return dist.CategoricalDistribution(choices), encodings, choices
    if isinstance(sweep, RangeSweep):
        start, stop, step = sweep.start, sweep.stop, sweep.step
        if step <= 0 or stop <= start:
            raise ValueError(f"{key}: range({start}, {stop}, {step}) must go upward with a positive step")
        n = math.ceil((stop - start) / step)  # Hydra's range() excludes stop
        values = [start + i * step if isinstance(start + step, int) else round(start + i * step, 12) for i in range(n)]
        if all(isinstance(v, int) for v in (start, stop, step)):
            if log and step != 1:
                raise ValueError(f"{key}: a log-scaled range needs step 1 (Optuna's rule)")
            return dist.IntDistribution(start, values[-1], log=log, step=step), {}, values
        if log:
            raise ValueError(f"{key}: a log-scaled float range is not supported; use tag(log, interval(...))")
        return dist.FloatDistribution(float(start), float(values[-1]), step=float(step)), {}, values
    if isinstance(sweep, IntervalSweep):
        start, end = sweep.start, sweep.end
        if not end > start:
            raise ValueError(f"{key}: interval({start}, {end}) is empty")
        if log and start <= 0:
            raise ValueError(f"{key}: tag(log, interval({start}, {end})) needs a positive lower bound")
        if isinstance(start, int) and isinstance(end, int):  # int(interval(...))
            return dist.IntDistribution(start, end, log=log), {}, None
        return dist.FloatDistribution(float(start), float(end), log=log), {}, None
    raise ValueError(f"{key}: unsupported sweep {sweep!r}")


def parse_search_space(params: dict[str, str] | None, arguments: list[str], config_loader: Any = None) -> SearchSpace:
    """Combine `hydra.sweeper.params` (config) with the command-line `arguments`; the command line wins per key."""
    parser = OverridesParser.create(config_loader=config_loader)
    lines = [f"{key}={value}" for key, value in (params or {}).items()] + list(arguments)
    by_key: dict[str, Override] = {}
    for override in parser.parse_overrides(lines):
        by_key.pop(override.get_key_element(), None)  # keep the order of the last occurrence
        by_key[override.get_key_element()] = override
    space = SearchSpace()
    for key, override in by_key.items():
        if not override.is_sweep_override():
            space.fixed.append(override.input_line or f"{key}={override.get_value_element_as_str()}")
            continue
        if override.is_delete():
            raise ValueError(f"{key}: cannot sweep a deletion (~)")
        distribution, encodings, grid = _distribution(key, override.value())
        space.distributions[key] = distribution
        if encodings:
            space.encodings[key] = encodings
        if grid is not None:
            space.grid[key] = grid
    return space
