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


GROUP_NOT_A_NAME = "Config group override must be a string or a list"
"""Hydra's bare ValueError for a group given a number (`model=560`): the override parser typed the value."""


def _is_usage_error(error: BaseException) -> bool:
    from hydra.errors import ConfigCompositionException, OverrideParseException, SearchPathException

    if isinstance(error, (ConfigCompositionException, OverrideParseException, SearchPathException, UsageError)):
        return True
    return _yaml_error(error) is not None or (isinstance(error, ValueError) and str(error).startswith(GROUP_NOT_A_NAME))


def _chain(error: BaseException | None) -> list[BaseException]:
    seen: list[BaseException] = []
    while error is not None and all(error is not e for e in seen):
        seen.append(error)
        error = error.__cause__ or error.__context__
    return seen


def _yaml_error(error: BaseException) -> BaseException | None:
    """A YAML syntax error of a config file (an experiment file with a tab, an unclosed bracket) in the chain."""
    import yaml

    return next((e for e in _chain(error) if isinstance(e, yaml.YAMLError)), None)


def _yaml_message(error: BaseException) -> str:
    mark = getattr(error, "problem_mark", None)
    where = f"{mark.name}:{mark.line + 1}:{mark.column + 1}" if mark is not None else "a config file"
    problem = " ".join(str(getattr(error, "problem", None) or error).split())
    hint = "; YAML indents with spaces, never tabs" if "\\t" in problem or "\t" in problem else ""
    return f"{where}: not valid YAML ({problem}){hint}; fix the file"


def _group_message(argv: list[str]) -> str:
    """`model=560`: the override that gives a config group a number, with the group's names."""
    from importlib.resources import files

    conf = files("mer.conf")
    for argument in argv:
        key, _, values = argument.lstrip("+~").partition("=")
        group = conf / key
        if not values or not group.is_dir():
            continue
        names = sorted(p.name[:-5] for p in group.iterdir() if p.name.endswith(".yaml") and not p.name.startswith("base_"))
        for value in values.split(","):  # a sweep: model=cpu-0.5m,560
            if value not in names:
                import difflib

                close = difflib.get_close_matches(value, names, n=1, cutoff=0.5)
                hint = f" Did you mean {key}={close[0]}?" if close else ""
                return (f"{key}={value} is not a config name of the group '{key}' (choose one of {names}).{hint} "
                        f"Quote a name that looks like a number: {key}=\'{value}\'")
    return f"{GROUP_NOT_A_NAME}: a config group takes the name of one of its files, not a number"


def _one_line(text: str) -> str:
    """Hydra's merge errors in one line: `Error merging override k=abc: Value 'abc' ... Integer`, without OmegaConf's
    full_key / object_type lines (the override already names the key)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    kept = [line for line in lines if not line.startswith(("full_key:", "object_type=", "reference_type="))]
    if any(line.startswith("Available options in") for line in kept):  # model=nope: the options as one list
        at = next(i for i, line in enumerate(kept) if line.startswith("Available options in"))
        kept = [*kept[:at], f"{kept[at]} {', '.join(kept[at + 1:])}"]
    message = ": ".join(line.rstrip(":") for line in kept[:-1]) + (": " if len(kept) > 1 else "") + kept[-1]
    import re

    integral = re.search(r"override (\S+?)=\S+.*Value '(-?\d+)\.0' of type 'float' could not be converted to Integer",
                         message)
    if integral:  # data.budget_tokens=1e4: YAML reads a float
        message += f"; write it as an integer: {integral.group(1)}={integral.group(2)}"
    return message


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
    if _yaml_error(error) is not None:
        return _yaml_message(_yaml_error(error))
    if isinstance(error, ValueError) and str(error).startswith(GROUP_NOT_A_NAME):
        return _group_message(sys.argv[1:])
    raised_in = cause or error.__context__  # Hydra raises its composition error while handling OmegaConf's
    in_file = isinstance(raised_in, (ConfigKeyError, ConfigAttributeError)) and first.startswith("In '")
    if schema is not None and in_file and getattr(raised_in, "full_key", None):  # a typo inside an experiment file
        from mer.config.strict import suggestion

        key, where = str(raised_in.full_key), first[len("In '"):].split("'")[0]
        hint = suggestion(key, schema, prefix)
        return (f"unknown config key '{key}' in {where}.yaml.{hint} Fix its spelling there; `python -m mer.run "
                "--cfg job` prints every valid key")
    text = text.split("\nConfig search path:")[0].strip()
    cause_text = str(cause).strip() if cause is not None and not isinstance(error, UsageError) else ""
    if cause_text and cause_text not in text:
        text = f"{text}\n{cause_text}"
    return _one_line(text)


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
