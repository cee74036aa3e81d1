"""ESC-50 and ESC-10 environmental sound classification with the official five folds.

Layout: ``meta/esc50.csv`` (header ``filename,fold,target,category,esc10,src_file,take``) and
``audio/<filename>``. Folds 1-5 become ``Clip.fold`` 0-4; the official folds already keep clips cut from one
source recording together. ESC-10 is the subset whose ``esc10`` column reads ``True``.
"""

from __future__ import annotations

from pathlib import Path

from decar.evaluate.tasks._common import indexed_vocabulary, one_based_fold, parse_int, read_table, require_files
from decar.evaluate.tasks.base import Clip, Task, TaskError, register_task

META_FILE = Path("meta") / "esc50.csv"
_COLUMNS = ("filename", "fold", "target", "category", "esc10")


def _load(root: Path, task: str, esc10_only: bool) -> Task:
    meta = root / META_FILE
    rows = read_table(task, meta, _COLUMNS)
    flags = {row["esc10"] for row in rows} - {"True", "False"}
    if flags:
        raise TaskError(f"{task}: {meta} column 'esc10' holds {sorted(flags)[:3]}, expected True or False")
    if esc10_only:
        rows = [row for row in rows if row["esc10"] == "True"]
        if not rows:
            raise TaskError(f"{task}: no row of {meta} has esc10 == True")
    vocabulary = indexed_vocabulary(
        task, meta, ((parse_int(task, meta, "target", row["target"]), row["category"]) for row in rows)
    )
    clips: list[Clip] = []
    for row in rows:
        fold = one_based_fold(task, meta, row["filename"], row["fold"])
        clips.append(Clip(root / "audio" / row["filename"], (row["category"],), fold=fold - 1))
    require_files(task, (clip.path for clip in clips), meta)
    clips.sort(key=lambda clip: clip.path)
    return Task(task, clips, vocabulary, split_mode="kfold", source=str(root))


@register_task("esc50")
def esc50(root: Path) -> Task:
    """ESC-50: 50 classes, 2000 five-second clips, 5 official folds.

    Args:
        root: the ESC-50 folder holding ``meta/esc50.csv`` and ``audio/``.
    """
    return _load(root, "esc50", esc10_only=False)


@register_task("esc10")
def esc10(root: Path) -> Task:
    """ESC-10: the 10-class, 400-clip subset of ESC-50 flagged in its ``esc10`` column, same folds.

    Args:
        root: the ESC-50 folder holding ``meta/esc50.csv`` and ``audio/``.
    """
    return _load(root, "esc10", esc10_only=True)
