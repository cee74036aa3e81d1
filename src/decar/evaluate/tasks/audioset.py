"""AudioSet's 527-class multilabel tagging (scored by mAP and d′), from the usual local download layout.

The layout and the matching of clip files to segments are those of :mod:`decar.corpora.audioset`. Splits:
train is balanced_train less a validation share, valid is 10 % of balanced_train's videos (AudioSet has no
validation set; the choice hashes the video id, so it is the same everywhere), test is eval. Segments whose
clip was never downloaded are left out and counted in the task's metadata.
"""

from __future__ import annotations

from pathlib import Path

from decar.corpora.audioset import AudioSetError, in_valid, locate, read_label_names
from decar.evaluate.tasks.base import Clip, Task, TaskError, register_task

TASK = "audioset"


@register_task(TASK)
def audioset(root: Path) -> Task:
    """AudioSet balanced_train (train and valid) and eval (test), 527 classes, multilabel."""
    try:
        names = read_label_names(root)
        found = locate(root, ("balanced_train", "eval"))
    except AudioSetError as err:
        raise TaskError(f"{TASK}: {err}") from err
    clips = []
    for subset, rows in found.clips.items():
        for segment, path in rows:
            split = "test" if subset == "eval" else "valid" if in_valid(segment.ytid) else "train"
            clips.append(Clip(path, segment.labels, split=split))
    missing = ", ".join(f"{subset} {count}" for subset, count in sorted(found.missing.items()))
    return Task(
        TASK,
        clips,
        list(names.values()),
        multilabel=True,
        source=str(root),
        metadata={"segments_without_a_clip": missing or "none"},
    )
