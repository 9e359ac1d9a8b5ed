"""Config and usage errors of the Hydra entry points: one clear message on stderr, no traceback, exit code 2.

Hydra prints a bad override (`alpha=abc`, `model=nope`, `optim.lrr=1`, a grammar error) with its own
formatting and exits with code 1, the code of every other failure, so a script cannot tell a typo from a
crash. `run_hydra_main` runs a `@hydra.main` function with `HYDRA_FULL_ERROR=1`, so that Hydra raises instead
of exiting, and turns the errors of composing the config into one message and exit code 2 (`USAGE_ERROR`).
Other errors keep their traceback and exit code 1; a config refused by the dataclasses' checks already exits
with code 2 in `mer.run` (docs/design.md, "Settings that cannot take effect are refused").

A user who sets HYDRA_FULL_ERROR=1 gets Hydra's full traceback as before.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import NoReturn

from hydra.errors import CompactHydraException

USAGE_ERROR = 2
"""Exit code of a config or usage error (argparse's convention): nothing was written."""


class UsageError(CompactHydraException):
    """A config error found by MER's own Hydra plugins (e.g. a sweeper's storage): one message, exit code 2."""


def _is_usage_error(error: BaseException) -> bool:
    from hydra.errors import ConfigCompositionException, OverrideParseException, SearchPathException

    return isinstance(error, (ConfigCompositionException, OverrideParseException, SearchPathException, UsageError))


def _message(error: BaseException, schema: type | None, prefix: str) -> str:
    """Hydra's message, less what does not help: the config search path, and an advice to append with `+` that
    the strict key check would refuse (`mer.config.strict`): an unknown key gets the closest valid key instead."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    text = str(error).strip()
    cause = error.__cause__
    first = text.splitlines()[0] if text else type(error).__name__
    unknown_key = isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and first.startswith("Could not override '")
    if schema is not None and unknown_key:
        from mer.config.strict import suggestion

        key = first[len("Could not override '"):].rstrip("'.")
        hint = suggestion(key, schema, prefix)
        return (f"unknown config key '{key}'.{hint} Fix its spelling; `python -m mer.run --cfg job` prints every "
                "valid key")
    text = text.split("\nConfig search path:")[0].strip()
    cause_text = str(cause).strip() if cause is not None and not isinstance(error, UsageError) else ""
    if cause_text and cause_text not in text:
        text = f"{text}\n{cause_text}"
    return text


def run_hydra_main(main: Callable[[], object], schema: type | None = None, prefix: str = "") -> None:
    """Call a `@hydra.main` function; a config/usage error prints `error: <message>` and exits with code 2.

    `schema` (the root dataclass) and `prefix` (where it sits in the composed config) let an unknown key be
    answered with the closest valid key."""
    before = os.environ.get("HYDRA_FULL_ERROR")
    asked_full = before == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises the error instead of printing it and exiting with 1
    try:
        main()
    except Exception as error:  # classified below; everything else is raised again
        if asked_full:
            raise
        if _is_usage_error(error):
            usage_exit(_message(error, schema, prefix))
        from hydra.errors import CompactHydraException

        if isinstance(error, CompactHydraException):  # e.g. a sweep with failed points: its message is the report
            print(str(error), file=sys.stderr, flush=True)
            sys.exit(1)
        raise
    finally:
        if before is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = before


def usage_exit(message: str) -> NoReturn:
    """Print `error: <message>` to stderr and exit with code 2."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(USAGE_ERROR)
