"""The README.md (Hugging Face model card) written beside every exported model.

Front matter that the Hub reads (library, pipeline, languages, tags, license, base model), then what a
user of the model needs to know about how it was made: the run's settings, the task sequence and where this
model stands in it, and the held-out losses measured by the trainer. Plain text from plain dicts: no torch.

- the architecture tag is the model's own `model_type` (`llama`, `mistral`, `qwen2`, `qwen3`), never a
  hard-coded `llama`;
- `base_model` is a Hub id, never a local path: the id a folder of the Hugging Face cache stands for
  (`.../models--org--name/snapshots/<rev>`), or the `_name_or_path` of the base's config.json when that is a
  Hub id. A base known only by its local path gets no `base_model` (the path is in the card's table);
- `license`: a model continued from a base carries the base's licence (its README's front matter), or
  `other` with a note when the base names none; a model trained from random weights on the built-in Bible
  source alone (public-domain text) carries mer's own, MIT; on any other data, `other` with a note.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

OWN_LICENSE = "mit"
"""mer's licence (pyproject.toml), that of models it trains from random weights on public-domain text."""
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_CACHE_FOLDER = re.compile(r"models--([^/]+?)--([^/]+)$")


def hub_id(base: Path) -> str | None:
    """The Hub id of the base model in `base`, or None when nothing says it (module docstring)."""
    for part in reversed(base.expanduser().parts):
        found = _CACHE_FOLDER.match(part)
        if found:
            return f"{found.group(1)}/{found.group(2)}"
    try:
        base_config = json.loads((base.expanduser() / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        base_config = {}
    name = str(base_config.get("_name_or_path") or "") if isinstance(base_config, dict) else ""
    if _HUB_ID.match(name) and not Path(name).expanduser().exists():
        return name
    return None


def front_matter(folder: Path) -> dict[str, str]:
    """The top-level `key: value` lines of the YAML front matter of `folder`/README.md (none: {})."""
    readme = folder / "README.md"
    try:
        text = readme.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    if not text.startswith("---"):
        return {}
    block = text[3:].split("\n---", 1)[0]
    found = {}
    for line in block.splitlines():
        key, sep, value = line.partition(":")
        if sep and key and not key.startswith((" ", "-", "#")) and value.strip():
            found[key.strip()] = value.strip().strip("'\"")
    return found


def license_lines(config: dict[str, Any]) -> tuple[list[str], str | None]:
    """The front-matter licence lines of a run's model and, where the licence could not be settled, a note."""
    init_from = (config.get("model") or {}).get("init_from")
    if init_from:
        base = front_matter(Path(str(init_from)).expanduser())
        if base.get("license"):
            return ([f"license: {base['license']}"] + [f"{k}: {json.dumps(base[k])}" for k in ("license_name",
                                                                                             "license_link") if k in base],
                    None)
        return ["license: other"], ("The base model's folder names no licence: the base model's licence applies "
                                    "to this model; set `license` here before publishing it.")
    tasks = [t for t in (config.get("data") or {}).get("tasks", []) if isinstance(t, dict)]
    if tasks and all(t.get("source", "bible") == "bible" for t in tasks):
        return [f"license: {OWN_LICENSE}"], None
    return ["license: other"], ("Trained on data of your own: their licences apply to this model; set `license` "
                                "here before publishing it.")


def model_card(title: str, config: dict[str, Any], tasks: list[str], after_task: str | None,
               losses: dict[str, float] | None, summary: dict[str, Any] | None = None,
               model_type: str = "llama") -> str:
    """The card of a model exported from the run `title` with resolved `config` (config.json), trained on `tasks`
    in order.

    `after_task`: the task at whose end the model was taken (None: the run's final model); `losses`: held-out
    loss (nats/token) per task of that model; `summary`: the run's summary.json, for its metrics when it is
    the final model of a completed run; `model_type`: the architecture's (its config.json's), the card's tag.
    """
    data = config.get("data", {})
    languages = sorted({t.get("language") or t.get("name") for t in data.get("tasks", []) if isinstance(t, dict)})
    init_from = (config.get("model") or {}).get("init_from")
    front = ["---", "library_name: transformers", "pipeline_tag: text-generation",
             "tags:", "- mer", "- continual-pretraining", f"- {model_type}"]
    if languages:
        front += ["language:"] + [f"- {lang}" for lang in languages if lang]
    licence, licence_note = license_lines(config)
    front += licence
    base_id = hub_id(Path(str(init_from))) if init_from else None
    if base_id:
        front.append(f"base_model: {json.dumps(base_id)}")
    front.append("---")
    done = tasks if after_task is None else tasks[: tasks.index(after_task) + 1]
    stage = ("the final model of the run" if after_task is None
             else f"the model at the end of task `{after_task}` ({len(done)} of {len(tasks)})")
    lines = front + [
        "",
        f"# {title}",
        "",
        f"Continual pre-training with `mer` (replay and Reptile); this is {stage}.",
        f"Trained on the task sequence {' -> '.join(tasks)}; tasks done: {', '.join(done)}.",
        "",
        "| setting | value |",
        "| --- | --- |",
        f"| start | {'`' + str(init_from) + '`' if init_from else 'random weights'} |",
        f"| model | {(config.get('model') or {}).get('name')} |",
        f"| replay ratio alpha | {config.get('alpha')} |",
        f"| Reptile k, eps | {config.get('k')}, {config.get('eps')} |",
        f"| new tokens per task | {data.get('budget_tokens') or str(data.get('budget_steps')) + ' steps'} |",
        f"| block length | {(config.get('model') or {}).get('seq_len')} |",
        f"| seed | {config.get('seed')} |",
    ]
    if losses:
        lines += ["", "Held-out loss (nats/token, the trainer's evaluation) of this model on each task:", "",
                  "| " + " | ".join(losses) + " |", "|" + " --- |" * len(losses),
                  "| " + " | ".join(f"{v:.4f}" for v in losses.values()) + " |"]
    metrics = (summary or {}).get("metrics")
    if after_task is None and metrics:
        lines += ["", "Run metrics: " + ", ".join(f"{k} {metrics[k]:.4f}" for k in
                                                   ("learned_loss", "retained_loss", "forgetting", "backward_transfer")
                                                   if isinstance(metrics.get(k), (int, float)))]
    if licence_note:
        lines += ["", f"Licence: {licence_note}"]
    lines += ["", "The run's resolved config:", "", "```json", json.dumps(config, indent=2, default=str), "```", ""]
    return "\n".join(lines)
