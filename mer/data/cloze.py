"""The built-in downstream task `bible_cloze`: choose the true ending of a held-out verse among four.

One multiple-choice task per Bible task of the sequence (`bible_cloze_<task>`, e.g. `bible_cloze_en`), all
in the harness group `bible_cloze`, written at preparation time as lm-evaluation-harness task YAML over
local JSONL, so `python -m mer.downstream RUN --tasks bible_cloze` needs no network.

How an item is made, deterministically (no randomness but seeded hashes of the verse ids):

- the text: every verse of the held-out books (`VALIDATION_BOOKS`: Ruth, Jonah, Philippians, James, the
  books no task trains on), in canonical order, of the task's translation;
- the cut: the verse's last share, drawn per verse in `ENDING_SHARES` (0.25 to 0.45, a third on average,
  seeded with the verse id), is its ending, the rest its context. A verse written with spaces (whitespace
  runs made single spaces) ends with its last round(n * share) words, at least two, and needs `MIN_WORDS`
  words; a verse of a language written without spaces (`UNSPACED_LANGUAGES`: Japanese) ends with its last
  round(n * share) characters and needs `MIN_CHARS`. Shorter verses give no item. One fixed share (version 1:
  a third) made an ending's length follow from its context's: choosing the ending closest to half the
  context's length scored 0.59 to 0.89;
- the distractors: three endings of OTHER items of the same task (never one whose text equals the true
  ending) that look like it to everything but the meaning: endings of its number of words (characters in
  Japanese), widened to nearby numbers only until there is room on both sides of it, sorted by their overlap
  with this item's context (distinct units shared, over the square root of the ending's distinct units), then
  characters and bytes; the four consecutive ones around the true ending are the choices, its rank among
  them drawn uniformly. Length in characters and tokens, position, and overlap with the context each pick
  the true ending within chance's interval on every language (tests/test_cloze.py, `test_cloze_heuristics_*`);
- the draws: generators seeded with the sha256 of `ITEMS_VERSION` and the verse id (which names the task,
  book, chapter and verse) draw the cut, the rank, the distractors' order and the true ending's position
  among the four, so the label is uniform;
- the harness scores each of the four endings by the log-likelihood the model gives it after the context
  (`acc`), per byte of the ending (`acc_norm`, which removes the bias toward short endings), and minus the
  ending's log-likelihood without the context (`acc_mutual_info`: what the context adds; it takes a second
  forward pass per ending).

Chance level is 1/4 = 0.25 for every metric. Every ending of the task is a true ending somewhere, so an
ending cannot be told apart by its own likelihood over the whole task: only the context decides.
About 345 verses per language are held out: 340 to 345 items per task with the default translations
(`count_items`; `python -m mer.data.prepare` prints them).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mer.data.atomic import atomic_directory
from mer.data.config import TaskConfig

ITEMS_VERSION = 2  # bump when the items change (cut, draws): a task's results compare only within one version
# 2: distractors matched to the true ending's length (version 1 drew them at random: length gave the answer away)
CLOZE_FORMAT = 3  # bump when anything written changes (items, YAML): the folder's hash changes, a new one is written
GROUP = "bible_cloze"
N_CHOICES = 4
ENDING_SHARE = 1 / 3
ENDING_SHARES = (0.25, 0.45)
"""The range each verse's ending share is drawn from (a third on average): with one fixed share an ending's length
follows from its context's, and any distractor of another length is told apart by arithmetic alone."""
MIN_WORDS = 6
MIN_CHARS = 12
MIN_POOL = 12
"""Fewest candidate endings an item's distractors are chosen among (widened to nearby lengths below it)."""
CHANCE = 1 / N_CHOICES
METRICS = ("acc", "acc_norm", "acc_mutual_info")
"""The harness metrics of every cloze task (module docstring)."""
UNSPACED_LANGUAGES = frozenset({"ja", "zh", "th", "lo", "km", "my"})
"""Languages written without spaces between words: their verses are cut between characters."""


@dataclass(frozen=True)
class ClozeItem:
    """One question: a context, four endings, the index of the true one."""

    id: str
    context: str
    endings: list[str]
    label: int

    def to_json(self) -> str:
        return json.dumps({"id": self.id, "context": self.context, "endings": self.endings, "label": self.label},
                          ensure_ascii=False)


def task_name(task: str) -> str:
    """The harness name of the cloze task of mer task `task`."""
    return f"{GROUP}_{task}"


def spaced(language: str) -> bool:
    """Whether a language separates words with spaces (the cut, and the harness' target delimiter, depend on it)."""
    return language not in UNSPACED_LANGUAGES


def split_verse(text: str, with_spaces: bool = True, share: float = ENDING_SHARE) -> tuple[str, str] | None:
    """(context, ending) of a verse, the ending its last `share` (at least two units), or None when it is too short
    to make an item (module docstring)."""
    text = " ".join(text.split())
    if with_spaces:  # cut at a word boundary
        words = text.split(" ")
        if len(words) < MIN_WORDS:
            return None
        cut = len(words) - max(2, round(len(words) * share))
        return " ".join(words[:cut]), " ".join(words[cut:])
    if len(text) < MIN_CHARS:
        return None
    cut = len(text) - max(2, round(len(text) * share))
    return text[:cut], text[cut:]


def units(text: str, with_spaces: bool = True) -> list[str]:
    """What a verse is cut into: its words, or its characters in a language written without spaces."""
    return text.split(" ") if with_spaces else list(text)


def overlap(ending: str, context: str, with_spaces: bool = True) -> int:
    """How many distinct units (lower-cased words, or characters) an ending shares with a context."""
    return len({u.lower() for u in units(ending, with_spaces)} & {u.lower() for u in units(context, with_spaces)})


def _seed(text: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{ITEMS_VERSION}|{text}".encode()).digest()[:8], "little")


def ending_share(verse_id: str) -> float:
    """The share of verse `verse_id` that is its ending: drawn in ENDING_SHARES, seeded with the verse id."""
    low, high = ENDING_SHARES
    return float(np.random.default_rng(_seed(f"cut|{verse_id}")).uniform(low, high))


def _choices_around(ending: str, context: str, by_units: dict[int, list[str]], with_spaces: bool) -> list[str]:
    """The candidates of the true `ending` (itself included), in the order the choices are taken from.

    Endings of its number of units, widened one unit at a time (nearest first) until there are MIN_POOL with
    N_CHOICES - 1 on either side of the true one, sorted by their overlap with `context` over the square root of
    their distinct units, then characters and UTF-8 bytes (ties in a seeded order). The true ending usually
    shares more with its context than other endings of its length do: without room above it, it would be the
    top choice. The square root sits between the count (which favours long endings) and the share (which
    favours short ones), so the neighbours found are neither longer nor shorter on average."""
    n = len(units(ending, with_spaces))

    def key(other: str) -> tuple:
        related = overlap(other, context, with_spaces) / len(set(units(other, with_spaces))) ** 0.5
        return related, len(other), len(other.encode("utf-8")), _seed(other)

    pool = list(by_units.get(n, []))
    for step in range(1, max(by_units) + 1):
        order = sorted(pool, key=key)
        where = order.index(ending)
        if len(order) >= MIN_POOL and min(where, len(order) - 1 - where) >= N_CHOICES - 1:
            return order
        pool += by_units.get(n - step, []) + by_units.get(n + step, [])
    return sorted(pool, key=key)


def build_items(task: str, verses: Iterable[tuple[int, int, int, str]], with_spaces: bool = True) -> list[ClozeItem]:
    """The items of one task from its held-out verses (book, chapter, verse, text), in the verses' order.

    Each verse is cut at its own seeded share (`ending_share`); the choices are the four consecutive candidates
    around the true ending in `_choices_around`'s order, its rank among them drawn uniformly, the distractors'
    order and the label (the true ending's position among the choices) drawn apart from that rank."""
    cut = [(verse_id, split) for b, c, v, text in verses
           if (split := split_verse(text, with_spaces, ending_share(verse_id := f"{task}-{b}-{c}-{v}"))) is not None]
    # Distinct endings (a verse repeated elsewhere must not offer the true ending twice), by number of units.
    by_units: dict[int, list[str]] = {}
    for ending in dict.fromkeys(ending for _, (_, ending) in cut):
        by_units.setdefault(len(units(ending, with_spaces)), []).append(ending)
    if sum(len(group) for group in by_units.values()) < N_CHOICES:
        return []
    items = []
    for verse_id, (context, ending) in cut:
        rng = np.random.default_rng(_seed(verse_id))
        order = _choices_around(ending, context, by_units, with_spaces)
        where = order.index(ending)
        start = min(max(where - int(rng.integers(N_CHOICES)), 0), len(order) - N_CHOICES)
        distractors = [e for e in order[start:start + N_CHOICES] if e != ending]  # [3]
        distractors = [distractors[j] for j in rng.permutation(len(distractors)).tolist()]
        label = int(rng.integers(N_CHOICES))
        choices = distractors[:label] + [ending] + distractors[label:]
        items.append(ClozeItem(verse_id, context, choices, label))
    return items


def _task_yaml(name: str, data_file: Path, delimiter: str) -> str:
    # JSON is valid YAML: no YAML library needed, and every string is quoted safely.
    config = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file)}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "{{context}}",
        "doc_to_choice": "{{endings}}",
        "doc_to_target": "{{label}}",
        "target_delimiter": delimiter,
        "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True} for m in METRICS],
        "metadata": {"version": ITEMS_VERSION},
    }
    return json.dumps(config, indent=2, ensure_ascii=False) + "\n"


def _group_yaml(names: Sequence[str]) -> str:
    config = {
        "group": GROUP,
        "task": list(names),
        "aggregate_metric_list": [{"metric": m, "aggregation": "mean", "weight_by_size": False} for m in METRICS],
        "metadata": {"version": ITEMS_VERSION},
    }
    return json.dumps(config, indent=2) + "\n"


def cloze_tasks(tasks: Sequence[TaskConfig]) -> list[TaskConfig]:
    """The tasks of a sequence that get a cloze task: those on the built-in Bible source."""
    return [t for t in tasks if t.source == "bible"]


def cloze_hash(tasks: Sequence[TaskConfig], fingerprints: dict[str, str]) -> str:
    """Names the folder of a sequence's cloze tasks: the recipe and every Bible task's text fingerprint."""
    key = json.dumps({"format": CLOZE_FORMAT, "tasks": [[t.name, fingerprints[t.name]] for t in tasks]})
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def prepare_cloze(tasks: Sequence[TaskConfig], fingerprints: dict[str, str], data_dir: Path) -> Path | None:
    """Write (once) the cloze task folder of the Bible tasks among `tasks`; its path, or None without any.

    The folder `<data_dir>/downstream/bible_cloze-<hash>/` holds `bible_cloze_<task>.jsonl` (one item a line),
    `bible_cloze_<task>.yaml` (a harness task reading it by absolute path) and `_bible_cloze.yaml` (the group).
    `fingerprints` maps each Bible task's name to its corpus fingerprint (`TaskCorpus.fingerprint`).
    Raises `mer.data.corpus.DataError` as the Bible source does (a missing package or translation).
    """
    from mer.data.sources.bible import VALIDATION_BOOKS, bible_verses, find_translation

    bible = cloze_tasks(tasks)
    if not bible:
        return None
    final = data_dir / "downstream" / f"{GROUP}-{cloze_hash(bible, fingerprints)}"
    with atomic_directory(final) as staging:
        if staging is not None:
            for task in bible:
                translation = find_translation(task.language, task.translation)
                held_out = (v for v in bible_verses(translation) if v[0] in VALIDATION_BOOKS)
                items = build_items(task.name, held_out, spaced(task.language))
                name = task_name(task.name)
                data_file = final / f"{name}.jsonl"  # the path it will have once the folder is renamed
                (staging / f"{name}.jsonl").write_text("".join(item.to_json() + "\n" for item in items),
                                                       encoding="utf-8")
                # Text with spaces: the ending follows the context after one space (the harness' usual
                # delimiter); Japanese, written without spaces, continues directly.
                delimiter = " " if spaced(task.language) else ""
                (staging / f"{name}.yaml").write_text(_task_yaml(name, data_file, delimiter), encoding="utf-8")
            (staging / f"_{GROUP}.yaml").write_text(_group_yaml([task_name(t.name) for t in bible]))
    return final


def count_items(folder: Path) -> dict[str, int]:
    """Items per cloze task in a prepared folder (for the preparation table and the docs)."""
    return {path.stem: sum(1 for _ in path.open(encoding="utf-8")) for path in sorted(folder.glob("*.jsonl"))}
