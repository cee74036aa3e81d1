"""TUT Urban Acoustic Scenes 2018 (DCASE 2018 task 1A development set), ten scenes, official fold 1.

Layout: ``meta.csv`` (tab-separated, header ``filename<TAB>scene_label<TAB>identifier<TAB>source_label``; the
identifier is the recording location, e.g. ``barcelona-0``), ``evaluation_setup/fold1_train.csv`` and
``evaluation_setup/fold1_evaluate.csv`` (tab-separated, header ``filename<TAB>scene_label``; the header-less
``.txt`` variants of older releases are accepted too) and ``audio/<scene>-<city>-<location>-<segment>-a.wav``.
Filenames in the lists are relative to the root (``audio/...``).

Test is ``fold1_evaluate``. Validation is carved from ``fold1_train`` by location, so no location is in both train
and valid (segments of one location sound alike, and a random split would reward recognising the place): the
locations are ranked by a salted SHA-1 of their identifier and taken in turn while some scene they cover has fewer
than 10 % of its training clips in valid, and never when that would leave a scene without training clips.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from pathlib import Path

from decar.evaluate.tasks._common import SPLIT_SALT, read_table, require_files
from decar.evaluate.tasks.base import Clip, Task, TaskError, register_task

TASK = "tut_scenes_2018"
META_FILE = "meta.csv"
SETUP_FOLDER = "evaluation_setup"
VALID_FRACTION = 0.1
"""Share of every scene's fold-1 training clips moved to valid (at least; whole locations move)."""


def _setup_file(root: Path, stem: str) -> Path:
    for suffix in (".csv", ".txt"):
        path = root / SETUP_FOLDER / f"{stem}{suffix}"
        if path.is_file():
            return path
    raise TaskError(f"{TASK}: {root / SETUP_FOLDER} has neither {stem}.csv nor {stem}.txt (the official fold-1 setup)")


def _read_setup(path: Path) -> list[tuple[str, str]]:
    """(filename, scene) rows of a fold list; a first line starting with ``filename`` is the header."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise TaskError(f"{TASK}: cannot read {path}: {err}") from err
    rows: list[tuple[str, str]] = []
    for number, line in enumerate(lines, start=1):
        fields = [field.strip() for field in line.split("\t")]
        if not line.strip() or (number == 1 and fields[0] == "filename"):
            continue
        if len(fields) < 2 or not fields[0] or not fields[1]:
            raise TaskError(f"{TASK}: {path} line {number}: expected 'filename<TAB>scene_label', got {line!r}")
        rows.append((fields[0], fields[1]))
    if not rows:
        raise TaskError(f"{TASK}: {path} lists no files")
    return rows


def _valid_locations(train: list[tuple[str, str]]) -> set[str]:
    """Locations to move from train to valid, given the (scene, location) of every training clip."""
    per_location: dict[str, Counter[str]] = {}
    for scene, location in train:
        per_location.setdefault(location, Counter())[scene] += 1
    left = Counter(scene for scene, _ in train)
    target = {scene: math.ceil(VALID_FRACTION * count) for scene, count in left.items()}
    taken: Counter[str] = Counter()
    chosen: set[str] = set()
    for location in sorted(per_location, key=lambda loc: hashlib.sha1(f"{SPLIT_SALT}:{loc}".encode()).hexdigest()):
        counts = per_location[location]
        wanted = any(taken[scene] < target[scene] for scene in counts)
        if wanted and all(left[scene] > count for scene, count in counts.items()):
            chosen.add(location)
            taken.update(counts)
            left.subtract(counts)
    return chosen


def _audio_path(root: Path, filename: str) -> Path:
    """Lists name files as ``audio/<name>``; a bare name is looked up in ``audio/`` as well."""
    return root / filename if len(Path(filename).parts) > 1 else root / "audio" / filename


@register_task(TASK)
def tut_scenes_2018(root: Path) -> Task:
    """TUT Urban Acoustic Scenes 2018 development set: fold-1 train (minus valid locations) / valid / evaluate.

    Args:
        root: the ``TUT-urban-acoustic-scenes-2018-development`` folder.
    """
    meta_path = root / META_FILE
    meta = {
        row["filename"]: row for row in read_table(TASK, meta_path, ("filename", "scene_label", "identifier"), "\t")
    }
    parts: dict[str, list[tuple[str, str, str]]] = {}
    for part, stem in (("train", "fold1_train"), ("test", "fold1_evaluate")):
        path = _setup_file(root, stem)
        parts[part] = []
        for filename, scene in _read_setup(path):
            record = meta.get(filename)
            if record is None:
                raise TaskError(f"{TASK}: {path} lists {filename}, which {meta_path} does not describe")
            if record["scene_label"] != scene:
                raise TaskError(
                    f"{TASK}: {path} labels {filename} {scene!r} but {meta_path} says {record['scene_label']!r}"
                )
            parts[part].append((filename, scene, record["identifier"]))
    shared = sorted({row[0] for row in parts["train"]} & {row[0] for row in parts["test"]})
    if shared:
        raise TaskError(f"{TASK}: {len(shared)} file(s) are in both fold1_train and fold1_evaluate, e.g. {shared[:3]}")
    valid = _valid_locations([(scene, location) for _, scene, location in parts["train"]])
    clips = [
        Clip(_audio_path(root, filename), (scene,), split="valid" if location in valid else "train")
        for filename, scene, location in parts["train"]
    ]
    clips += [Clip(_audio_path(root, filename), (scene,), split="test") for filename, scene, _ in parts["test"]]
    require_files(TASK, (clip.path for clip in clips), root / SETUP_FOLDER)
    clips.sort(key=lambda clip: clip.path)
    vocabulary = sorted({row["scene_label"] for row in meta.values()})
    return Task(TASK, clips, vocabulary, source=str(root), metadata={"valid_locations": str(len(valid))})
