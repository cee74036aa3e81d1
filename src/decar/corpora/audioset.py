"""AudioSet as people have it on disk: the segment CSVs of the release and a folder of downloaded clips.

Layout under the root (the files of the AudioSet release, and the audio however it was downloaded)::

    class_labels_indices.csv       index,mid,display_name (527 rows)
    balanced_train_segments.csv    # comment lines, then: YTID, start_seconds, end_seconds, "mid,mid,..."
    unbalanced_train_segments.csv
    eval_segments.csv
    <any folders>/<clip>.<wav|flac|ogg|opus|mp3>

A clip file is named by its YouTube id and start time, as the common downloaders write it: ``<YTID>_<start>``,
``<YTID>_<start>_<end>`` or either with a leading ``Y`` (``Y--PJHxphWEs_30.000_40.000.wav``); start times match
to the millisecond. Clips are found anywhere under the root, so any folder split (per subset, per shard) works.
Downloads are never complete (videos disappear): segments without a file are counted and left out.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from decar._io import atomic_write_text
from decar.audio import AUDIO_EXTENSIONS

SUBSETS = ("balanced_train", "unbalanced_train", "eval")
LABELS_FILE = "class_labels_indices.csv"


class AudioSetError(ValueError):
    """The AudioSet layout is incomplete or malformed; the message names the file and the line."""


@dataclass(frozen=True)
class Segment:
    """One row of a segment CSV."""

    ytid: str
    start_s: float
    end_s: float
    labels: tuple[str, ...]
    """Display names of the segment's positive labels."""


def read_label_names(root: Path) -> dict[str, str]:
    """mid → display name, in index order, from class_labels_indices.csv."""
    path = root / LABELS_FILE
    if not path.is_file():
        raise AudioSetError(f"{path} is missing (it comes with the AudioSet release)")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"index", "mid", "display_name"} - set(reader.fieldnames or ())
        if missing:
            raise AudioSetError(f"{path}: missing column(s) {sorted(missing)}")
        rows = sorted(reader, key=lambda row: int(row["index"]))
    names = {row["mid"]: row["display_name"] for row in rows}
    if len(set(names.values())) != len(names):
        raise AudioSetError(f"{path}: two classes share a display name")
    return names


def read_segments(root: Path, subset: str, names: dict[str, str]) -> list[Segment]:
    """The rows of ``<subset>_segments.csv``; comment lines (``#``) skipped, labels given by display name."""
    if subset not in SUBSETS:
        raise AudioSetError(f"unknown AudioSet subset {subset!r}; choose from {', '.join(SUBSETS)}")
    path = root / f"{subset}_segments.csv"
    if not path.is_file():
        raise AudioSetError(f"{path} is missing (it comes with the AudioSet release)")
    text = path.read_text(encoding="utf-8")
    segments = []
    reader = csv.reader(io.StringIO(text, newline=""), skipinitialspace=True)
    for fields in reader:
        if not fields or fields[0].startswith("#"):
            continue
        where = f"{path} line {reader.line_num}"
        if len(fields) != 4:
            raise AudioSetError(f"{where}: expected YTID, start_seconds, end_seconds, labels; got {fields}")
        try:
            start, end = float(fields[1]), float(fields[2])
        except ValueError:
            raise AudioSetError(f"{where}: start and end must be numbers, got {fields[1:3]}") from None
        mids = [mid.strip() for mid in fields[3].split(",") if mid.strip()]
        unknown = [mid for mid in mids if mid not in names]
        if unknown or not mids:
            raise AudioSetError(f"{where}: label(s) {unknown or '(none)'} not in {LABELS_FILE}")
        segments.append(Segment(fields[0], start, end, tuple(names[mid] for mid in mids)))
    if not segments:
        raise AudioSetError(f"{path} lists no segment")
    return segments


def _key(ytid: str, start_s: float) -> tuple[str, int]:
    return ytid, round(start_s * 1000)


def find_clips(root: Path, ytids: set[str]) -> dict[tuple[str, int], Path]:
    """Every audio file under ``root`` named after a segment of ``ytids``, keyed by (YTID, start in ms)."""
    found: dict[tuple[str, int], Path] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in AUDIO_EXTENSIONS or not path.is_file():
            continue
        parts = path.stem.split("_")
        numeric = 0
        while numeric < min(2, len(parts) - 1) and _is_number(parts[-1 - numeric]):
            numeric += 1
        for count in range(numeric, 0, -1):  # "<id>_<start>_<end>" first, then "<id>_<start>"
            ytid, start = "_".join(parts[: len(parts) - count]), float(parts[len(parts) - count])
            ytid = ytid if ytid in ytids else ytid[1:] if ytid.startswith("Y") and ytid[1:] in ytids else ""
            if ytid:
                found.setdefault(_key(ytid, start), path)
                break
    return found


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass
class AudioSetClips:
    """The segments of some subsets that have a clip on disk, and how many have none."""

    clips: dict[str, list[tuple[Segment, Path]]]
    missing: Counter[str]


def locate(root: Path, subsets: tuple[str, ...]) -> AudioSetClips:
    """Match the segments of ``subsets`` with the clip files under ``root``.

    Raises:
        AudioSetError: a release file is missing or malformed, or no segment has a clip on disk.
    """
    root = Path(root)
    names = read_label_names(root)
    segments = {subset: read_segments(root, subset, names) for subset in subsets}
    files = find_clips(root, {segment.ytid for rows in segments.values() for segment in rows})
    clips: dict[str, list[tuple[Segment, Path]]] = {}
    missing: Counter[str] = Counter()
    for subset, rows in segments.items():
        clips[subset] = []
        for segment in rows:
            path = files.get(_key(segment.ytid, segment.start_s))
            if path is None:
                missing[subset] += 1
            else:
                clips[subset].append((segment, path))
    if not any(clips.values()):
        raise AudioSetError(f"{root}: none of the {sum(missing.values())} segments has a clip file under it")
    return AudioSetClips(clips, missing)


def write_pretraining_list(root: Path, out: Path, subsets: tuple[str, ...] = ("balanced_train",)) -> AudioSetClips:
    """A list file of the clips of ``subsets`` for `decar pretrain --data` (absolute paths, one per line)."""
    found = locate(root, subsets)
    lines = [f"# AudioSet {', '.join(subsets)} under {Path(root).resolve()}: clips found on disk"]
    lines += [str(path.resolve()) for subset in subsets for _segment, path in found.clips[subset]]
    atomic_write_text(out, "\n".join(lines) + "\n")
    return found


def in_valid(ytid: str, fraction: float = 0.1) -> bool:
    """Whether a balanced_train video goes to the validation split (AudioSet has none): a salted hash of its id,
    so the choice is the same on every machine and never splits one video."""
    digest = hashlib.sha1(f"decar-audioset-valid:{ytid}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction
