"""NSynth instrument-family and pitch classification with the official train/valid/test sets.

Layout: ``nsynth-train/``, ``nsynth-valid/`` and ``nsynth-test/``, each holding ``examples.json`` (note name ->
record with ``instrument_family`` (int), ``instrument_family_str``, ``pitch`` (MIDI int), ...) and
``audio/<note name>.wav``. The vocabulary comes from the training set, ordered by the corpus's own ids (family id,
MIDI pitch): all 11 families occur in training, while ``synth_lead`` is absent from valid and test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from decar.evaluate.tasks._common import indexed_vocabulary, require_files
from decar.evaluate.tasks.base import Clip, Task, TaskError, register_task

SPLITS: dict[str, str] = {"train": "nsynth-train", "valid": "nsynth-valid", "test": "nsynth-test"}
"""Task split -> the corpus folder holding it."""


def _read_examples(task: str, path: Path, keys: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """examples.json, checked to map note names to records carrying `keys` (an int id first, then the label)."""
    if not path.is_file():
        raise TaskError(f"{task}: {path} is missing; an NSynth root holds {', '.join(SPLITS.values())}")
    try:
        examples = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TaskError(f"{task}: cannot read {path}: {err}") from err
    if not isinstance(examples, dict) or not examples:
        raise TaskError(f"{task}: {path} should map note names to example records")
    for note, record in examples.items():
        if not isinstance(record, dict) or any(key not in record for key in keys):
            raise TaskError(f"{task}: {path} example {note!r} lacks field(s) {[k for k in keys if k not in record]}")
        index = record[keys[0]]
        if not isinstance(index, int) or isinstance(index, bool):
            raise TaskError(f"{task}: {path} example {note!r} has {keys[0]} {index!r}, expected an integer")
    return examples


def _load(root: Path, task: str, id_key: str, label_key: str) -> Task:
    vocabulary: list[str] = []
    clips: list[Clip] = []
    for split, folder_name in SPLITS.items():
        folder = root / folder_name
        path = folder / "examples.json"
        examples = _read_examples(task, path, tuple(dict.fromkeys((id_key, label_key))))
        labelled = {note: (record[id_key], str(record[label_key])) for note, record in examples.items()}
        if split == "train":
            vocabulary = indexed_vocabulary(task, path, labelled.values())
        unknown = sorted({label for _, label in labelled.values()} - set(vocabulary))
        if unknown:
            raise TaskError(f"{task}: {path} has class(es) {unknown[:5]} that never occur in nsynth-train")
        found = [Clip(folder / "audio" / f"{note}.wav", (label,), split=split) for note, (_, label) in labelled.items()]
        require_files(task, (clip.path for clip in found), path)
        clips += sorted(found, key=lambda clip: clip.path)
    return Task(task, clips, vocabulary, source=str(root))


@register_task("nsynth_instrument")
def nsynth_instrument(root: Path) -> Task:
    """NSynth instrument family (11 classes: bass, brass, flute, ..., vocal).

    Args:
        root: the folder holding ``nsynth-train/``, ``nsynth-valid/`` and ``nsynth-test/``.
    """
    return _load(root, "nsynth_instrument", "instrument_family", "instrument_family_str")


@register_task("nsynth_pitch")
def nsynth_pitch(root: Path) -> Task:
    """NSynth pitch: one class per MIDI pitch found in training, labelled by its number ("60" = middle C).

    Args:
        root: the folder holding ``nsynth-train/``, ``nsynth-valid/`` and ``nsynth-test/``.
    """
    return _load(root, "nsynth_pitch", "pitch", "pitch")
