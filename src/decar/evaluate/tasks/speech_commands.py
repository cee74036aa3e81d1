"""Speech Commands v1 (v0.01) and v2 (v0.02) keyword spotting, read from the archive's own layout.

Layout: ``<word>/<speaker>_nohash_<n>.wav``, ``validation_list.txt`` and ``testing_list.txt`` (paths relative to the
root; every file in neither list is training data) and ``_background_noise_/*.wav`` (long noise recordings, not a
class). The lists split by speaker hash, so honouring them keeps speakers out of two splits.

Tasks:
    speech_commands_v1_12 / speech_commands_v2_12: the ten commands, ``_unknown_`` (every other word, all of its
        files, as TensorFlow Datasets does) and ``_silence_`` (1 s segments of the background noise, see
        :func:`silence_clips`).
    speech_commands_v1_30 / speech_commands_v2_35: every word of the version, no silence or unknown class.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from decar.audio import AudioError, audio_info
from decar.evaluate.tasks.base import Clip, Task, TaskError, register_task

COMMANDS: tuple[str, ...] = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
V1_WORDS: frozenset[str] = frozenset(
    {
        *COMMANDS,
        *("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
        *("bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow"),
    }
)
V2_ONLY_WORDS: frozenset[str] = frozenset({"backward", "forward", "follow", "learn", "visual"})
SILENCE = "_silence_"
UNKNOWN = "_unknown_"
BACKGROUND_FOLDER = "_background_noise_"
SILENCE_SECONDS = 1.0
SILENCE_PORTIONS: dict[str, tuple[float, float]] = {"train": (0.0, 0.8), "valid": (0.8, 0.9), "test": (0.9, 1.0)}
"""Which fraction of every background-noise file each split cuts its silence clips from."""

_LISTS = {"valid": "validation_list.txt", "test": "testing_list.txt"}


def _read_list(root: Path, task: str, split: str) -> set[str]:
    path = root / _LISTS[split]
    if not path.is_file():
        raise TaskError(f"{task}: {path} is missing; {root} is not a Speech Commands root (word folders + split lists)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise TaskError(f"{task}: cannot read {path}: {err}") from err
    return {line.strip() for line in text.splitlines() if line.strip()}


def _word_files(root: Path) -> dict[str, list[str]]:
    """Word folder -> sorted wav names, for every non-hidden, non-underscore folder holding wav files."""
    words: dict[str, list[str]] = {}
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if not entry.is_dir() or entry.name.startswith((".", "_")):
            continue
        names = sorted(n for n in os.listdir(entry.path) if n.lower().endswith(".wav") and not n.startswith("."))
        if names:
            words[entry.name] = names
    return words


def _check_words(task: str, root: Path, present: set[str], version: int, required: set[str]) -> None:
    unexpected = sorted(present - V1_WORDS - V2_ONLY_WORDS)
    if unexpected:
        raise TaskError(f"{task}: {root} has folders that are not Speech Commands words: {unexpected[:5]}")
    v2_present = present & V2_ONLY_WORDS
    if version == 1 and v2_present:
        raise TaskError(
            f"{task}: {root} holds v2-only words {sorted(v2_present)}; it is Speech Commands v2, use the v2 task"
        )
    if version == 2 and v2_present != V2_ONLY_WORDS:
        raise TaskError(
            f"{task}: {root} lacks the v2 words {sorted(V2_ONLY_WORDS - v2_present)}; "
            "it looks like Speech Commands v1, use the v1 task"
        )
    missing = sorted(required - present)
    if missing:
        raise TaskError(f"{task}: {root} lacks word folder(s) {missing[:10]} ({len(missing)} missing)")


def _split_of(task: str, lists: dict[str, set[str]], words: dict[str, list[str]]) -> dict[str, str]:
    """Relative path -> split; list entries without a file on disk mean a mismatched root or version."""
    on_disk = {f"{word}/{name}" for word, names in words.items() for name in names}
    both = sorted(lists["valid"] & lists["test"])
    if both:
        raise TaskError(f"{task}: {len(both)} file(s) are in both validation and testing lists, e.g. {both[:3]}")
    listed = lists["valid"] | lists["test"]
    absent = sorted(listed - on_disk)
    if absent:
        raise TaskError(
            f"{task}: {len(absent)} file(s) named in the split lists are not on disk, e.g. {absent[:3]} "
            "(wrong root, or lists from another version?)"
        )
    split = dict.fromkeys(on_disk, "train")
    split.update(dict.fromkeys(lists["valid"], "valid"))
    split.update(dict.fromkeys(lists["test"], "test"))
    return split


def silence_clips(task: str, noise_files: list[Path], counts: dict[str, int]) -> list[Clip]:
    """Cut deterministic 1 s ``_silence_`` segments from the background-noise recordings.

    Rule: split ``s`` takes its clips from the fraction ``SILENCE_PORTIONS[s]`` of every noise file (train the first
    80 %, valid the next 10 %, test the last 10 %), so no noise sample is shared between splits while every split
    hears every noise type. ``counts[s]`` clips are dealt round-robin over the files, and each file's clips are
    spaced evenly over its portion (they overlap when the portion is short, as the random offsets of the
    TensorFlow recipe do). Only the file headers are read, for their durations.

    Args:
        task: task name, for messages.
        noise_files: the background-noise wav files, sorted.
        counts: number of silence clips wanted per split.
    """
    durations: list[float] = []
    for path in noise_files:
        try:
            durations.append(audio_info(path).duration_s)
        except AudioError as err:
            raise TaskError(f"{task}: background noise {err}") from err
    clips: list[Clip] = []
    for split, (lo, hi) in SILENCE_PORTIONS.items():
        spans = [(d * lo, d * hi) for d in durations]
        usable = [i for i, (a, b) in enumerate(spans) if b - a >= SILENCE_SECONDS]
        if not usable:
            shortest = math.ceil(SILENCE_SECONDS / (hi - lo))
            raise TaskError(
                f"{task}: the background-noise files are too short to cut {SILENCE_SECONDS:g} s silence clips for "
                f"the {split} split (each split uses {hi - lo:.0%} of a file; need files of at least {shortest} s)"
            )
        total = counts[split]
        for rank, index in enumerate(usable):
            n = total // len(usable) + (rank < total % len(usable))
            start, stop = spans[index][0], spans[index][1] - SILENCE_SECONDS
            step = (stop - start) / (n - 1) if n > 1 else 0.0
            clips.extend(
                Clip(
                    noise_files[index],
                    (SILENCE,),
                    split=split,
                    start_s=math.floor((start + k * step) * 1000) / 1000,
                    duration_s=SILENCE_SECONDS,
                )
                for k in range(n)
            )
    return clips


def _load(root: Path, task: str, version: int, twelve: bool) -> Task:
    lists = {split: _read_list(root, task, split) for split in _LISTS}
    words = _word_files(root)
    all_words = V1_WORDS | V2_ONLY_WORDS if version == 2 else V1_WORDS
    _check_words(task, root, set(words), version, set(COMMANDS) if twelve else set(all_words))
    split_of = _split_of(task, lists, words)
    clips = [
        Clip(
            root / word / name,
            (word if not twelve or word in COMMANDS else UNKNOWN,),
            split=split_of[f"{word}/{name}"],
        )
        for word, names in words.items()
        for name in names
    ]
    metadata = {"version": f"v{version}", "files": str(len(clips))}
    if not twelve:
        return Task(task, clips, sorted(all_words), source=str(root), metadata=metadata)
    noise_folder = root / BACKGROUND_FOLDER
    noise_files = (
        sorted(p for p in noise_folder.glob("*.wav") if not p.name.startswith(".")) if noise_folder.is_dir() else []
    )
    if not noise_files:
        raise TaskError(f"{task}: {noise_folder} has no wav files; the _silence_ class is cut from them")
    counts = {
        split: max(1, round(sum(1 for c in clips if c.split == split and c.labels[0] in COMMANDS) / len(COMMANDS)))
        for split in SILENCE_PORTIONS
    }
    clips.extend(silence_clips(task, noise_files, counts))
    metadata["silence_clips"] = ",".join(f"{split}={n}" for split, n in counts.items())
    return Task(task, clips, [SILENCE, UNKNOWN, *COMMANDS], source=str(root), metadata=metadata)


@register_task("speech_commands_v1_12")
def speech_commands_v1_12(root: Path) -> Task:
    """Speech Commands v1, 12 classes (10 commands, unknown, silence)."""
    return _load(root, "speech_commands_v1_12", version=1, twelve=True)


@register_task("speech_commands_v2_12")
def speech_commands_v2_12(root: Path) -> Task:
    """Speech Commands v2, 12 classes (10 commands, unknown, silence): the SPCV2/12 of BYOL-A and EVAR."""
    return _load(root, "speech_commands_v2_12", version=2, twelve=True)


@register_task("speech_commands_v1_30")
def speech_commands_v1_30(root: Path) -> Task:
    """Speech Commands v1, all 30 words."""
    return _load(root, "speech_commands_v1_30", version=1, twelve=False)


@register_task("speech_commands_v2_35")
def speech_commands_v2_35(root: Path) -> Task:
    """Speech Commands v2, all 35 words: the SPCV2 of BYOL-A and EVAR."""
    return _load(root, "speech_commands_v2_35", version=2, twelve=False)
