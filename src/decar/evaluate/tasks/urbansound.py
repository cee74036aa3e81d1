"""UrbanSound8K urban sound classification with the official ten folds.

Layout: ``metadata/UrbanSound8K.csv`` (header ``slice_file_name,fsID,start,end,salience,fold,classID,class``) and
``audio/fold<k>/<slice_file_name>``. Folds 1-10 become ``Clip.fold`` 0-9; the corpus authors require the official
folds, since slices of one Freesound recording share a fold and a random split would leak them.
"""

from __future__ import annotations

from pathlib import Path

from decar.evaluate.tasks._common import indexed_vocabulary, one_based_fold, parse_int, read_table, require_files
from decar.evaluate.tasks.base import Clip, Task, register_task

TASK = "urbansound8k"
META_FILE = Path("metadata") / "UrbanSound8K.csv"
_COLUMNS = ("slice_file_name", "fold", "classID", "class")


@register_task(TASK)
def urbansound8k(root: Path) -> Task:
    """UrbanSound8K: 10 classes, 8732 slices of at most 4 s, 10 official folds.

    Args:
        root: the UrbanSound8K folder holding ``metadata/`` and ``audio/``.
    """
    meta = root / META_FILE
    rows = read_table(TASK, meta, _COLUMNS)
    vocabulary = indexed_vocabulary(
        TASK, meta, ((parse_int(TASK, meta, "classID", row["classID"]), row["class"]) for row in rows)
    )
    clips: list[Clip] = []
    for row in rows:
        fold = one_based_fold(TASK, meta, row["slice_file_name"], row["fold"])
        clips.append(Clip(root / "audio" / f"fold{fold}" / row["slice_file_name"], (row["class"],), fold=fold - 1))
    require_files(TASK, (clip.path for clip in clips), meta)
    clips.sort(key=lambda clip: (clip.fold, clip.path))
    return Task(TASK, clips, vocabulary, split_mode="kfold", source=str(root))
