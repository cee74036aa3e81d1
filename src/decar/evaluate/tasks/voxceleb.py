"""VoxCeleb1 speaker identification with the official identification split.

Layout: ``wav/<speaker_id>/<video_id>/<n>.wav`` and ``iden_split.txt``, whose lines read
``<1|2|3> <speaker_id>/<video_id>/<n>.wav`` (1 train, 2 valid, 3 test). The speaker vocabulary comes from the split
file (1251 speakers in the real corpus), never from a hard-coded list.
"""

from __future__ import annotations

from pathlib import Path

from decar.evaluate.tasks.base import Clip, Task, TaskError, register_task

SPLIT_FILE = "iden_split.txt"
_SPLIT_CODES = {"1": "train", "2": "valid", "3": "test"}
TASK = "voxceleb1_iden"


def _read_split_file(path: Path) -> list[tuple[int, str, str]]:
    """(line number, split, relative path) for every non-blank line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise TaskError(f"{TASK}: cannot read {path}: {err}") from err
    rows: list[tuple[int, str, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[0] not in _SPLIT_CODES or len(Path(fields[1]).parts) != 3:
            raise TaskError(
                f"{TASK}: {path} line {number}: expected '<1|2|3> <speaker>/<video>/<n>.wav', got {line.strip()!r}"
            )
        rows.append((number, _SPLIT_CODES[fields[0]], fields[1]))
    if not rows:
        raise TaskError(f"{TASK}: {path} is empty")
    return rows


@register_task(TASK)
def voxceleb1_iden(root: Path) -> Task:
    """VoxCeleb1 identification: one class per speaker, splits from ``iden_split.txt``.

    Args:
        root: the VoxCeleb1 folder holding ``wav/`` and ``iden_split.txt``.
    """
    split_file, wav = root / SPLIT_FILE, root / "wav"
    if not split_file.is_file():
        raise TaskError(f"{TASK}: {split_file} is missing (the official identification split file)")
    if not wav.is_dir():
        raise TaskError(f"{TASK}: {wav} is missing; {root} is not a VoxCeleb1 root (wav/<id>/<video>/<n>.wav)")
    rows = _read_split_file(split_file)
    seen: dict[str, int] = {}
    for number, _, rel in rows:
        if rel in seen:
            raise TaskError(f"{TASK}: {split_file} line {number} repeats {rel} (first on line {seen[rel]})")
        seen[rel] = number
    missing = [rel for _, _, rel in rows if not (wav / rel).is_file()]
    if missing:
        raise TaskError(
            f"{TASK}: {len(missing)} file(s) listed in {split_file} are missing under {wav}, e.g. {missing[:3]}"
        )
    clips = [Clip(wav / rel, (Path(rel).parts[0],), split=split) for _, split, rel in sorted(rows, key=lambda r: r[2])]
    speakers = sorted({c.labels[0] for c in clips})
    return Task(TASK, clips, speakers, source=str(root), metadata={"speakers": str(len(speakers))})
