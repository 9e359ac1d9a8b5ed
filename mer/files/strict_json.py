"""JSON that every parser reads: no bare `NaN` or `Infinity`, which Python's json writes by default.

Python's `json.dumps` writes a non-finite float as `NaN` / `Infinity`, which is not JSON (RFC 8259): `jq`,
JavaScript's `JSON.parse` and `json.loads(..., parse_constant=...)` refusing them cannot read the file. Every
file mer writes goes through `dumps` here: a non-finite float becomes `null`, and the writer that can say why a
value is undefined (summary.json's `metrics_undefined`) records the reason beside it.
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite(value: Any) -> Any:
    """`value` with every non-finite float (NaN, +-inf) inside dicts, lists and tuples replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    if hasattr(value, "item") and hasattr(value, "dtype") and getattr(value, "ndim", None) == 0:
        return finite(value.item())  # a numpy scalar
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """`json.dumps` of `value` with non-finite floats written as null (never `NaN`)."""
    return json.dumps(finite(value), allow_nan=False, **kwargs)
