"""HEAR task folders, as written by hear-preprocess, read as a :class:`Task`.

Layout of one task folder::

    task_metadata.json     task_name, embedding_type (scene|event), prediction_type (multiclass|multilabel),
                           split_mode (trainvaltest|new_split_kfold|presplit_kfold), nfolds (k-fold), ...
    labelvocabulary.csv    header idx,label
    train.json valid.json test.json        (trainvaltest) or fold00.json fold01.json ...  (k-fold):
                           audio file name -> list of labels
    <sample_rate>/<split>/<audio file>     one tree per sample rate, e.g. 16000/train/...

The 16000 Hz tree is used when present (decar models run at 16 kHz), else the highest rate present, so the audio
loses as little as possible when resampled. Only scene (clip-level) tasks are supported; fold ``foldNN`` becomes
``Clip.fold`` NN, and :meth:`Task.splits` then uses fold i+1 for validation as HEAR does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from decar.evaluate.tasks._common import indexed_vocabulary, parse_int, read_table, require_files
from decar.evaluate.tasks.base import Clip, Task, TaskError

METADATA_FILE = "task_metadata.json"
VOCABULARY_FILE = "labelvocabulary.csv"
PREFERRED_SAMPLE_RATE = 16000
REQUIRED_KEYS = ("task_name", "embedding_type", "prediction_type", "split_mode")
_KFOLD_MODES = ("new_split_kfold", "presplit_kfold")


def _read_json(where: str, path: Path) -> Any:
    if not path.is_file():
        raise TaskError(f"{where}: {path} is missing")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TaskError(f"{where}: cannot read {path}: {err}") from err


def _read_metadata(folder: Path) -> dict[str, Any]:
    """task_metadata.json, checked for what a clip-level evaluation needs."""
    path = folder / METADATA_FILE
    if not folder.is_dir() or not path.is_file():
        raise TaskError(f"{folder} is not a HEAR task folder: it has no {METADATA_FILE}")
    metadata = _read_json(f"HEAR task {folder}", path)
    if not isinstance(metadata, dict):
        raise TaskError(f"HEAR task {folder}: {path} should hold a JSON object")
    absent = [key for key in REQUIRED_KEYS if key not in metadata]
    if absent:
        raise TaskError(f"HEAR task {folder}: {path} lacks key(s) {absent}")
    if metadata["embedding_type"] == "event":
        raise TaskError(
            f"HEAR task {metadata['task_name']!r} ({folder}) is an event (timestamp) task; "
            "event tasks are not supported yet, only scene tasks"
        )
    for key, allowed in (
        ("embedding_type", ("scene",)),
        ("prediction_type", ("multiclass", "multilabel")),
        ("split_mode", ("trainvaltest", *_KFOLD_MODES)),
    ):
        if metadata[key] not in allowed:
            raise TaskError(f"HEAR task {folder}: {path} has {key} {metadata[key]!r}; expected one of {allowed}")
    return metadata


def _split_names(folder: Path, metadata: dict[str, Any]) -> list[str]:
    """train/valid/test, or fold00 ... from ``nfolds`` (or, without it, from the foldNN.json files present)."""
    if metadata["split_mode"] == "trainvaltest":
        return ["train", "valid", "test"]
    nfolds = metadata.get("nfolds")
    if nfolds is None:
        found = sorted(path.stem for path in folder.glob("fold[0-9][0-9].json"))
        if not found:
            raise TaskError(f"HEAR task {folder}: k-fold task without nfolds in {METADATA_FILE} nor foldNN.json files")
        return found
    if not isinstance(nfolds, int) or isinstance(nfolds, bool) or nfolds < 1:
        raise TaskError(f"HEAR task {folder}: {METADATA_FILE} has nfolds {nfolds!r}; expected a positive integer")
    return [f"fold{index:02d}" for index in range(nfolds)]


def _audio_folder(folder: Path) -> Path:
    rates = sorted(int(path.name) for path in folder.iterdir() if path.is_dir() and path.name.isdigit())
    if not rates:
        raise TaskError(f"HEAR task {folder}: no audio folder named by a sample rate (e.g. {PREFERRED_SAMPLE_RATE}/)")
    return folder / str(PREFERRED_SAMPLE_RATE if PREFERRED_SAMPLE_RATE in rates else rates[-1])


def _read_split(where: str, path: Path, known: set[str], multilabel: bool) -> dict[str, tuple[str, ...]]:
    """One split file: audio file name -> labels, checked against the vocabulary and the prediction type."""
    entries = _read_json(where, path)
    if not isinstance(entries, dict) or not entries:
        raise TaskError(f"{where}: {path} should map audio file names to lists of labels")
    split: dict[str, tuple[str, ...]] = {}
    for name, labels in entries.items():
        if not isinstance(labels, list) or not all(isinstance(label, str | int) for label in labels):
            raise TaskError(f"{where}: {path} entry {name!r} should be a list of labels, got {labels!r}")
        unknown = [str(label) for label in labels if str(label) not in known]
        if unknown:
            raise TaskError(f"{where}: {path} labels {name!r} {unknown}, absent from {VOCABULARY_FILE}")
        if not labels or (len(labels) > 1 and not multilabel):
            expected = "at least one (multilabel task)" if multilabel else "exactly one (multiclass task)"
            raise TaskError(f"{where}: {path} gives {name!r} {len(labels)} label(s), expected {expected}")
        split[name] = tuple(str(label) for label in labels)
    return split


def load_hear_task(folder: Path) -> Task:
    """Read a HEAR scene task folder (see the module docstring for the layout).

    Args:
        folder: the task folder holding ``task_metadata.json``.

    Raises:
        TaskError: not a HEAR task folder, an event task, missing metadata keys or files, labels absent from the
            vocabulary, or audio files absent from the chosen sample-rate tree.
    """
    folder = Path(folder)
    metadata = _read_metadata(folder)
    name = str(metadata["task_name"])
    where = f"HEAR task {name!r} ({folder})"
    vocabulary_path = folder / VOCABULARY_FILE
    rows = read_table(where, vocabulary_path, ("idx", "label"))
    vocabulary = indexed_vocabulary(
        where, vocabulary_path, ((parse_int(where, vocabulary_path, "idx", row["idx"]), row["label"]) for row in rows)
    )
    audio = _audio_folder(folder)
    evaluation = metadata.get("evaluation", [])
    kfold = metadata["split_mode"] != "trainvaltest"
    multilabel = metadata["prediction_type"] == "multilabel"
    clips: list[Clip] = []
    for split_name in _split_names(folder, metadata):
        path = folder / f"{split_name}.json"
        entries = _read_split(where, path, set(vocabulary), multilabel)
        fold = int(split_name.removeprefix("fold")) if kfold else None
        found = [
            Clip(audio / split_name / file, labels, split=None if kfold else split_name, fold=fold)
            for file, labels in sorted(entries.items())
        ]
        require_files(where, (clip.path for clip in found), path)
        clips += found
    return Task(
        name,
        clips,
        vocabulary,
        multilabel=multilabel,
        split_mode="kfold" if kfold else "trainvaltest",
        source=str(folder),
        metadata={
            "hear_split_mode": str(metadata["split_mode"]),
            "sample_rate": audio.name,
            "evaluation": ",".join(map(str, evaluation)) if isinstance(evaluation, list) else str(evaluation),
        },
    )
