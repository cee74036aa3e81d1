"""VoxForge spoken language identification, split by speaker so no voice is heard in two splits.

Layout: ``<language>/<speaker>-<yyyymmdd>-<tag>/wav/*.wav`` (some sessions ship ``flac/*.flac`` instead; both are
read, anywhere under the session folder). Every non-hidden top-level folder holding session folders is a language,
so the usual six (en, de, fr, es, it, ru) or any other set works.

Split rule: a session's speaker is the name before ``-<yyyymmdd>-``; sessions by "anonymous" (many different
people) or with names outside that pattern are their own speaker. Within each language the speakers go to
train/valid/test by :func:`~decar.evaluate.tasks.librispeech.hash_split` (about 80/10/10, every split non-empty
when a language has three or more speakers), and every session of a speaker follows it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from decar.evaluate.tasks._common import hash_split
from decar.evaluate.tasks.base import Clip, Task, TaskError, register_task

TASK = "voxforge_lid"
_SESSION = re.compile(r"(?P<speaker>.+)-\d{8}-[^-]+")
_SUFFIXES = (".wav", ".flac")


def speaker_of(session: str) -> str:
    """The speaker a session folder belongs to, for grouping sessions into splits."""
    match = _SESSION.fullmatch(session)
    if match is None or match["speaker"].lower() == "anonymous":
        return session
    return match["speaker"]


def _audio_under(folder: Path) -> list[Path]:
    found: list[Path] = []
    for current, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(Path(current) / f for f in files if f.lower().endswith(_SUFFIXES) and not f.startswith("."))
    return sorted(found)


def _sessions(language: Path) -> dict[str, list[Path]]:
    """Session folder name -> its audio files, refusing audio that sits outside a session folder."""
    sessions: dict[str, list[Path]] = {}
    for entry in sorted(os.scandir(language), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and entry.name.lower().endswith(_SUFFIXES):
            raise TaskError(
                f"{TASK}: {entry.path} is not inside a session folder (<language>/<speaker-date-tag>/wav/); "
                "without sessions the split cannot keep speakers apart"
            )
        if entry.is_dir():
            files = _audio_under(Path(entry.path))
            if files:
                sessions[entry.name] = files
    return sessions


@register_task(TASK)
def voxforge_lid(root: Path) -> Task:
    """Language identification over per-language VoxForge folders.

    Args:
        root: the folder holding one folder per language.
    """
    if not root.is_dir():
        raise TaskError(f"{TASK}: {root} is not a folder")
    clips: list[Clip] = []
    few_speakers: list[str] = []
    for language in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        sessions = _sessions(language)
        if not sessions:
            continue
        split_of = hash_split(speaker_of(s) for s in sessions)
        if len(split_of) < 3:
            few_speakers.append(language.name)
        for session, files in sessions.items():
            split = split_of[speaker_of(session)]
            clips.extend(Clip(f, (language.name,), split=split) for f in files)
    languages = sorted({c.labels[0] for c in clips})
    if len(languages) < 2:
        raise TaskError(
            f"{TASK}: {root} holds {len(languages)} language folder(s) with <session>/wav/*.wav audio; "
            "need at least 2 (it should be the folder holding en/, de/, fr/, ...)"
        )
    metadata = {"languages": ",".join(languages)}
    if few_speakers:
        metadata["train_only_languages"] = ",".join(few_speakers)
    return Task(TASK, clips, languages, source=str(root), metadata=metadata)
