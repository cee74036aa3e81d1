"""Tasks from plain manifests: a CSV with a header or JSON Lines, one labelled clip per row.

Keys (CSV columns or JSON object keys):
    path: audio file; relative paths resolve against the manifest's folder.
    label: one label; a value with ``;`` in it ("dog;bark") makes the task multilabel.
    labels: instead of ``label``: several labels, ``;``-separated (or a JSON list); makes the task multilabel.
    split: train, valid or test; or
    fold: a fold number (``3`` or ``fold3``), which makes the task k-fold (fold i test, fold i+1 validation).
    start_s, duration_s: optional segment within the file, seconds.

Every row needs a split or a fold, and one manifest uses one of the two. The task is named after the file stem and
its vocabulary is the sorted set of labels. Other columns are ignored, so a manifest may carry metadata.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from decar.evaluate.tasks.base import Clip, Task, TaskError

SPLITS = ("train", "valid", "test")

Row = tuple[int, dict[str, Any]]
"""(line number in the manifest, the row's fields)."""


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise TaskError(f"manifest {path}: cannot read it as UTF-8 text: {err}") from err


def _read_csv(path: Path) -> tuple[list[str], list[Row]]:
    # csv's own line handling: quoted fields may hold newlines, and U+2028, \x85 or \f are text, not line ends
    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
    rows: list[Row] = []
    try:
        for row in reader:
            if None in row:
                raise TaskError(f"manifest {path} line {reader.line_num}: more fields than the header has columns")
            rows.append((reader.line_num, {k: v for k, v in row.items() if v not in (None, "")}))
    except csv.Error as err:
        raise TaskError(f"manifest {path} line {reader.line_num}: {err}") from err
    return list(reader.fieldnames or []), rows


def _read_jsonl(path: Path) -> tuple[list[str], list[Row]]:
    rows: list[Row] = []
    keys: set[str] = set()
    for number, line in enumerate(_read_text(path).split("\n"), start=1):  # JSON strings may hold U+2028
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise TaskError(f"manifest {path} line {number}: not valid JSON ({err.msg})") from err
        if not isinstance(row, dict):
            raise TaskError(f"manifest {path} line {number}: expected a JSON object, got {type(row).__name__}")
        keys.update(row)
        rows.append((number, {k: v for k, v in row.items() if v not in (None, "")}))
    return sorted(keys), rows


def _labels(where: str, value: Any, multilabel: bool) -> tuple[str, ...]:
    items = value if isinstance(value, list) else str(value).split(";") if multilabel else [value]
    if any(isinstance(item, bool) or not isinstance(item, str | int) for item in items):
        raise TaskError(f"{where}: labels must be strings, got {value!r}")
    labels = tuple(dict.fromkeys(str(item).strip() for item in items if str(item).strip()))
    if not labels:
        raise TaskError(f"{where}: empty label")
    return labels


def _fold(where: str, value: Any) -> int:
    text = str(value).strip().lower().removeprefix("fold")
    if isinstance(value, bool) or not text.isdigit():
        raise TaskError(f"{where}: fold {value!r} is not a fold number (0, 1, ... or fold0, fold1, ...)")
    return int(text)


def _seconds(where: str, key: str, value: Any, positive: bool) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0 or (positive and seconds == 0):
        raise TaskError(f"{where}: {key} {value!r} is not a {'positive' if positive else 'non-negative'} number")
    return seconds


def _clip(path: Path, number: int, row: dict[str, Any], multilabel: bool) -> Clip:
    where = f"manifest {path} line {number}"
    label_key = "labels" if "labels" in row else "label"
    for key in ("path", label_key):
        if key not in row:
            raise TaskError(f"{where}: no {key!r} value")
    audio = Path(str(row["path"])).expanduser()
    audio = audio if audio.is_absolute() else path.parent / audio
    if not audio.exists() and not audio.is_symlink():  # a typo or a wrong root: the manifest's error
        raise TaskError(f"{where}: audio file {audio} does not exist")
    # A broken symlink or a folder named like audio is a bad file of the corpus: kept, reported when loaded.
    split = str(row["split"]).strip().lower() if "split" in row else None
    if split is not None and split not in SPLITS:
        raise TaskError(f"{where}: split {row['split']!r} is not one of {', '.join(SPLITS)}")
    return Clip(
        audio,
        _labels(where, row[label_key], multilabel),
        split=split,
        fold=_fold(where, row["fold"]) if "fold" in row else None,
        start_s=_seconds(where, "start_s", row["start_s"], positive=False) if "start_s" in row else 0.0,
        duration_s=_seconds(where, "duration_s", row["duration_s"], positive=True) if "duration_s" in row else None,
    )


def _check_split_fields(path: Path, rows: list[Row]) -> bool:
    """Every row has exactly one of split and fold, the same one throughout; returns whether it is k-fold."""
    first_split = next((n for n, row in rows if "split" in row), None)
    first_fold = next((n for n, row in rows if "fold" in row), None)
    for number, row in rows:
        if "split" not in row and "fold" not in row:
            raise TaskError(
                f"manifest {path} line {number}: the row has neither a split nor a fold (columns 'split', 'fold')"
            )
    if first_split is not None and first_fold is not None:
        raise TaskError(
            f"manifest {path} mixes split (line {first_split}) and fold (line {first_fold}); use one of the two"
        )
    return first_fold is not None


def _check_test_labels_seen(path: Path, rows: list[Row], clips: list[Clip]) -> None:
    """A multiclass test label missing from training cannot be predicted: name its line now."""
    trained = {c.labels[0] for c in clips if c.split == "train"}
    for (number, _), clip in zip(rows, clips, strict=True):
        if clip.split == "test" and clip.labels[0] not in trained:
            raise TaskError(f"manifest {path} line {number}: test label {clip.labels[0]!r} never appears in train")


def load_manifest(path: Path) -> Task:
    """Read a CSV (with a header) or JSONL manifest into a task.

    Args:
        path: the manifest, ``.csv`` or ``.jsonl``.

    Raises:
        TaskError: unreadable or empty file, missing ``path``/``label`` column, a row with neither split nor fold,
            mixed split and fold rows, a bad value, an audio path that does not exist (a broken symlink or a
            folder is kept: loading reports it and leaves it out), or a test label never seen in training;
            the message names the manifest and the line.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl"):
        raise TaskError(f"manifest {path}: expected a .csv or .jsonl file")
    keys, rows = _read_csv(path) if suffix == ".csv" else _read_jsonl(path)
    if not rows:
        raise TaskError(f"manifest {path} has no rows")
    if "path" not in keys or not {"label", "labels"} & set(keys):
        raise TaskError(f"manifest {path}: needs a 'path' and a 'label' (or 'labels') column; it has {keys}")
    if {"label", "labels"} <= set(keys):
        raise TaskError(f"manifest {path}: has both 'label' and 'labels'; use one")
    kfold = _check_split_fields(path, rows)
    multilabel = "labels" in keys or any(
        isinstance(row.get("label"), list) or ";" in str(row.get("label", "")) for _, row in rows
    )
    clips = [_clip(path, number, row, multilabel) for number, row in rows]
    seen: dict[tuple[Path, float, float | None], int] = {}
    for (number, _), clip in zip(rows, clips, strict=True):
        key = (clip.path, clip.start_s, clip.duration_s)
        if key in seen:
            raise TaskError(f"manifest {path} line {number}: repeats the clip of line {seen[key]}")
        seen[key] = number
    if not kfold and not multilabel:
        _check_test_labels_seen(path, rows, clips)
    return Task(
        path.stem,
        clips,
        sorted({label for clip in clips for label in clip.labels}),
        multilabel=multilabel,
        split_mode="kfold" if kfold else "trainvaltest",
        source=str(path),
        metadata={"rows": str(len(clips))},
    )
