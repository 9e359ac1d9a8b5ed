"""The README.md (Hugging Face model card) written beside every exported model.

Front matter that the Hub reads (library, pipeline, languages, base model), then what a user of the
model needs to know about how it was made: the run's settings, the task sequence and where this model
stands in it, and the held-out losses measured by the trainer. Plain text from plain dicts: no torch.
"""

from __future__ import annotations

import json
from typing import Any


def model_card(title: str, config: dict[str, Any], tasks: list[str], after_task: str | None,
               losses: dict[str, float] | None, summary: dict[str, Any] | None = None) -> str:
    """The card of a model exported from the run `title` with resolved `config` (config.json), trained on `tasks`
    in order.

    `after_task`: the task at whose end the model was taken (None: the run's final model); `losses`: held-out
    loss (nats/token) per task of that model; `summary`: the run's summary.json, for its metrics when it is
    the final model of a completed run.
    """
    data = config.get("data", {})
    languages = sorted({t.get("language") or t.get("name") for t in data.get("tasks", []) if isinstance(t, dict)})
    init_from = (config.get("model") or {}).get("init_from")
    front = ["---", "library_name: transformers", "pipeline_tag: text-generation",
             "tags:", "- mer", "- continual-pretraining", "- llama"]
    if languages:
        front += ["language:"] + [f"- {lang}" for lang in languages if lang]
    if init_from:
        front.append(f"base_model: {json.dumps(str(init_from))}")
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
    lines += ["", "The run's resolved config:", "", "```json", json.dumps(config, indent=2, default=str), "```", ""]
    return "\n".join(lines)
