"""LibriSpeech train-clean-100 speaker identification (251 speakers), split per speaker by utterance.

Layout: ``train-clean-100/<speaker>/<chapter>/<speaker>-<chapter>-<n>.flac``. The corpus has no speaker-ID split,
so each speaker's utterances are divided 80/10/10 by :func:`hash_split`: ordered by a hash of their name (mixing
chapters into every split, unlike a positional cut of the sorted list) and cut by position, which guarantees at
least one valid and one test utterance for every speaker with three or more. Speakers with fewer are dropped and
counted in ``Task.metadata["dropped_speakers"]``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from decar.evaluate.tasks._common import hash_split
from decar.evaluate.tasks.base import Clip, Task, TaskError, register_task

TASK = "librispeech100_speaker"
SUBSET = "train-clean-100"


def _subset_folder(root: Path) -> Path:
    if (root / SUBSET).is_dir():
        return root / SUBSET
    if root.name == SUBSET:
        return root
    raise TaskError(f"{TASK}: {root} is neither the LibriSpeech folder holding {SUBSET}/ nor {SUBSET}/ itself")


def _utterances(subset: Path) -> dict[str, list[Path]]:
    """Speaker -> sorted flac files, checking that file names agree with their folders."""
    speakers: dict[str, list[Path]] = {}
    for speaker in sorted(os.listdir(subset)):
        if not speaker.isdigit() or not (subset / speaker).is_dir():
            continue
        files: list[Path] = []
        for chapter in sorted(os.listdir(subset / speaker)):
            folder = subset / speaker / chapter
            if not folder.is_dir():
                continue
            pattern = re.compile(rf"{re.escape(speaker)}-{re.escape(chapter)}-\d+\.flac")
            for name in sorted(os.listdir(folder)):
                if not name.endswith(".flac") or name.startswith("."):
                    continue
                if not pattern.fullmatch(name):
                    raise TaskError(
                        f"{TASK}: {folder / name} does not follow <speaker>-<chapter>-<n>.flac for its folders "
                        f"{speaker}/{chapter}"
                    )
                files.append(folder / name)
        if files:
            speakers[speaker] = files
    if not speakers:
        raise TaskError(f"{TASK}: {subset} has no <speaker>/<chapter>/*.flac files")
    return speakers


@register_task(TASK)
def librispeech100_speaker(root: Path) -> Task:
    """Speaker identification over train-clean-100, utterances split 80/10/10 within each speaker.

    Args:
        root: the LibriSpeech folder holding ``train-clean-100/``, or ``train-clean-100/`` itself.
    """
    subset = _subset_folder(root)
    clips: list[Clip] = []
    dropped = 0
    for speaker, files in _utterances(subset).items():
        if len(files) < 3:
            dropped += 1
            continue
        split_of = hash_split(f.stem for f in files)
        clips.extend(Clip(f, (speaker,), split=split_of[f.stem]) for f in files)
    if not clips:
        raise TaskError(f"{TASK}: no speaker in {subset} has the 3 utterances needed for train, valid and test")
    speakers = sorted({c.labels[0] for c in clips}, key=int)
    metadata = {"speakers": str(len(speakers)), "dropped_speakers": str(dropped)}
    return Task(TASK, clips, speakers, source=str(root), metadata=metadata)
