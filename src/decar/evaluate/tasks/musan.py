"""MUSAN music / speech / noise discrimination.

Layout: ``music/<source>/*.wav``, ``speech/<source>/*.wav`` and ``noise/<source>/*.wav`` (sources such as
``music/fma``, ``speech/librivox``, ``noise/free-sound``; their ``ANNOTATIONS``, ``LICENSE`` and ``README`` files are
ignored). The class is the top folder.

MUSAN has no official split. Each file is a separate recording, but a class has only two to five source folders,
too few to hold whole folders out while keeping every class in every split. So the unit is the recording: within
each class the files are ranked by a salted SHA-1 of their path relative to the root and cut 10 % test, 10 % valid,
80 % train (see :func:`~decar.evaluate.tasks.esc50.stratified_split`). The split depends only on the relative
paths present, so the same tree gives the same split on any machine; adding or removing files may move others.
"""

from __future__ import annotations

from pathlib import Path

from decar.evaluate.tasks._common import stratified_split
from decar.evaluate.tasks.base import Clip, Task, TaskError, register_task

TASK = "musan"
CLASSES: tuple[str, ...] = ("music", "speech", "noise")


@register_task(TASK)
def musan(root: Path) -> Task:
    """MUSAN, three classes, a deterministic per-class 80/10/10 split of its recordings.

    Args:
        root: the MUSAN folder holding ``music/``, ``speech/`` and ``noise/``.
    """
    absent = [name for name in CLASSES if not (root / name).is_dir()]
    if absent:
        raise TaskError(f"{TASK}: {root} lacks the folder(s) {absent}; a MUSAN root holds {list(CLASSES)}")
    files: dict[str, list[str]] = {}
    for name in CLASSES:
        found = sorted(
            path.relative_to(root).as_posix()
            for path in (root / name).rglob("*")
            if path.suffix.lower() == ".wav" and not path.name.startswith(".") and path.is_file()
        )
        if not found:
            raise TaskError(f"{TASK}: {root / name} holds no .wav files")
        files[name] = found
    splits = stratified_split(TASK, files)
    clips = [Clip(root / rel, (name,), split=splits[rel]) for name, rels in files.items() for rel in rels]
    clips.sort(key=lambda clip: clip.path)
    return Task(TASK, clips, list(CLASSES), source=str(root))
