"""The built-in downstream task bible_cloze: items made deterministically from the held-out verses only."""

from __future__ import annotations

import json
from collections import Counter

from mer.data import cloze
from mer.data.config import TaskConfig
from mer.data.sources.bible import VALIDATION_BOOKS, bible_verses, find_translation


def _held_out(language: str) -> list[tuple[int, int, int, str]]:
    return [v for v in bible_verses(find_translation(language, None)) if v[0] in VALIDATION_BOOKS]


def test_items_are_verses_of_the_held_out_books_cut_into_context_and_true_ending():
    verses = _held_out("en")
    items = cloze.build_items("en", verses)
    assert len(items) == 345 == len(verses)  # every KJV verse of Ruth, Jonah, Philippians and James has 6+ words
    by_id = {f"en-{b}-{c}-{v}": text for b, c, v, text in verses}
    for item in items:
        assert item.id in by_id and int(item.id.split("-")[1]) in VALIDATION_BOOKS
        assert f"{item.context} {item.endings[item.label]}" == " ".join(by_id[item.id].split())
        assert len(item.endings) == cloze.N_CHOICES == len(set(item.endings))
        assert len(item.endings[item.label].split()) >= 2
    ending_of = {item.id: item.endings[item.label] for item in items}
    for item in items:  # distractors are true endings of other held-out verses
        assert all(e in ending_of.values() for e in item.endings)
    labels = Counter(item.label for item in items)
    assert set(labels) == {0, 1, 2, 3} and max(labels.values()) < 0.32 * len(items)  # about uniform: chance is 1/4


def test_items_are_deterministic_and_unspaced_languages_are_cut_between_characters():
    verses = _held_out("ja")
    first, second = cloze.build_items("ja", verses, with_spaces=False), cloze.build_items("ja", verses, with_spaces=False)
    assert first == second and len(first) > 300
    item = first[0]
    assert item.context + item.endings[item.label] == " ".join(verses[0][3].split())
    assert not cloze.spaced("ja") and cloze.spaced("en") and cloze.spaced("ar")


def test_the_task_folder_is_written_once_as_harness_yaml_over_local_jsonl(tmp_path):
    tasks = [TaskConfig(name="en"), TaskConfig(name="ja"), TaskConfig(name="x", source="files", train_files=["a"])]
    fingerprints = {"en": "f-en", "ja": "f-ja"}
    folder = cloze.prepare_cloze(tasks, fingerprints, tmp_path)
    assert folder.parent == tmp_path / "downstream" and folder.name.startswith("bible_cloze-")
    assert sorted(p.name for p in folder.iterdir()) == ["_bible_cloze.yaml", "bible_cloze_en.jsonl", "bible_cloze_en.yaml",
                                                      "bible_cloze_ja.jsonl", "bible_cloze_ja.yaml"]
    en = json.loads((folder / "bible_cloze_en.yaml").read_text())  # JSON is YAML: the harness reads it
    assert en["task"] == "bible_cloze_en" and en["output_type"] == "multiple_choice"
    assert en["dataset_kwargs"]["data_files"]["test"] == str(folder / "bible_cloze_en.jsonl")
    assert en["target_delimiter"] == " " and json.loads((folder / "bible_cloze_ja.yaml").read_text())["target_delimiter"] == ""
    assert json.loads((folder / "_bible_cloze.yaml").read_text())["task"] == ["bible_cloze_en", "bible_cloze_ja"]
    assert cloze.count_items(folder) == {"bible_cloze_en": 345, "bible_cloze_ja": len(cloze.build_items(
        "ja", _held_out("ja"), with_spaces=False))}
    stamp = (folder / "bible_cloze_en.jsonl").stat().st_mtime_ns
    assert cloze.prepare_cloze(tasks, fingerprints, tmp_path) == folder  # cached: not written again
    assert (folder / "bible_cloze_en.jsonl").stat().st_mtime_ns == stamp
    assert cloze.prepare_cloze(tasks, {**fingerprints, "en": "changed"}, tmp_path) != folder  # other text, other folder
    assert cloze.prepare_cloze(tasks[2:], fingerprints, tmp_path) is None  # no Bible task, no cloze task


def test_preparation_writes_the_cloze_tasks_and_says_where(small_bible):
    from mer.data.pipeline import format_table

    _, prepared = small_bible
    assert prepared.cloze_dir is not None and (prepared.cloze_dir / "_bible_cloze.yaml").is_file()
    table = format_table(prepared)
    assert "downstream task bible_cloze (4 choices, chance 0.25): bible_cloze_ar 340, bible_cloze_de 345" in table
    assert str(prepared.cloze_dir) in table
