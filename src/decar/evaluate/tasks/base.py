"""What every downstream task is: labelled clips, a label vocabulary and a split rule.

Loaders for the standard corpora, HEAR task folders and plain manifests all produce a `Task`; protocols only
ever see `Task.splits()`, which enforces that model selection uses validation data and never test data.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

SplitMode = Literal["trainvaltest", "kfold"]


class TaskError(ValueError):
    """A task that cannot be evaluated: the message names the task, the file or split, and the problem."""


@dataclass(frozen=True)
class Clip:
    """One labelled audio segment.

    Attributes:
        path: audio file.
        labels: one label (multiclass) or several (multilabel), as strings of the task vocabulary.
        split: "train", "valid" or "test" for trainvaltest tasks; None for k-fold tasks.
        fold: fold number (0-based) for k-fold tasks; None otherwise.
        start_s: segment start within the file, seconds.
        duration_s: segment length, seconds (None: to the end of the file).
    """

    path: Path
    labels: tuple[str, ...]
    split: str | None = None
    fold: int | None = None
    start_s: float = 0.0
    duration_s: float | None = None


@dataclass(frozen=True)
class Split:
    """One evaluation round: fit on `train`, select on `valid`, report on `test`."""

    name: str
    train: list[Clip]
    valid: list[Clip]
    test: list[Clip]


@dataclass
class Task:
    """A downstream task.

    Attributes:
        name: short identifier used in reports, e.g. "speech_commands_v2_12".
        clips: every labelled clip.
        vocabulary: the label set in a fixed order (class index = position).
        multilabel: several labels per clip (scored by mAP) instead of one (scored by accuracy).
        split_mode: "trainvaltest" (clips carry split names) or "kfold" (clips carry folds; fold i is test and
            fold i+1 validation, as in HEAR).
        source: where the task was read from, for messages and reports.
    """

    name: str
    clips: list[Clip]
    vocabulary: list[str]
    multilabel: bool = False
    split_mode: SplitMode = "trainvaltest"
    source: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def num_folds(self) -> int:
        return len({c.fold for c in self.clips if c.fold is not None})

    def splits(self) -> Iterator[Split]:
        """The evaluation rounds; raises TaskError on empty splits or test classes never seen in training."""
        self.validate()
        if self.split_mode == "trainvaltest":
            groups = {name: [c for c in self.clips if c.split == name] for name in ("train", "valid", "test")}
            yield self._checked(Split("all", groups["train"], groups["valid"], groups["test"]))
            return
        folds = sorted({c.fold for c in self.clips if c.fold is not None})
        for position, fold in enumerate(folds):
            valid_fold = folds[(position + 1) % len(folds)]
            yield self._checked(
                Split(
                    f"fold{fold}",
                    train=[c for c in self.clips if c.fold not in (fold, valid_fold)],
                    valid=[c for c in self.clips if c.fold == valid_fold],
                    test=[c for c in self.clips if c.fold == fold],
                )
            )

    def validate(self) -> None:
        """Check labels against the vocabulary and the split fields against the split mode."""
        where = f"task {self.name!r} ({self.source})" if self.source else f"task {self.name!r}"
        if not self.clips:
            raise TaskError(f"{where} has no clips")
        if len(set(self.vocabulary)) != len(self.vocabulary):
            raise TaskError(f"{where}: the label vocabulary has duplicates")
        known = set(self.vocabulary)
        for clip in self.clips:
            unknown = [label for label in clip.labels if label not in known]
            if unknown:
                raise TaskError(f"{where}: {clip.path} has label(s) {unknown} absent from the vocabulary")
            if not clip.labels:
                raise TaskError(f"{where}: {clip.path} has no label")
            if not self.multilabel and len(clip.labels) != 1:
                raise TaskError(f"{where}: {clip.path} has {len(clip.labels)} labels in a multiclass task")
        if self.split_mode == "trainvaltest":
            bad = [c for c in self.clips if c.split not in ("train", "valid", "test")]
            if bad:
                raise TaskError(f"{where}: {bad[0].path} has split {bad[0].split!r}; expected train, valid or test")
        elif self.num_folds < 3:
            raise TaskError(f"{where}: k-fold evaluation needs at least 3 folds, found {self.num_folds}")

    def _checked(self, split: Split) -> Split:
        where = f"task {self.name!r} split {split.name!r}"
        for part in ("train", "valid", "test"):
            if not getattr(split, part):
                raise TaskError(f"{where}: the {part} set is empty")
        _check_no_shared_audio(where, split)
        if not self.multilabel:
            seen = {c.labels[0] for c in split.train}
            unseen = sorted({c.labels[0] for c in split.test} - seen)
            if unseen:
                raise TaskError(f"{where}: test class(es) {unseen[:5]} never appear in training")
        return split


SAMPLED_BYTES = 1 << 16
"""Bytes read from each end of a file to recognise it: the same audio under another path, link or copy."""


@functools.lru_cache(maxsize=1 << 18)
def _content_key(path: Path, size: int, mtime_ns: int) -> str:
    """Size plus a hash of the file's first and last SAMPLED_BYTES (cached per path and version of the file)."""
    del mtime_ns  # part of the cache key only
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(SAMPLED_BYTES))
        if size > 2 * SAMPLED_BYTES:
            handle.seek(size - SAMPLED_BYTES)
        digest.update(handle.read(SAMPLED_BYTES))
    return digest.hexdigest()


_EMPTY = hashlib.sha256(b"0").hexdigest()
"""The content key of an empty file."""


def _clip_identity(clip: Clip) -> tuple[str, float, float | None]:
    """What makes two clips the same audio: the file's content (whatever its path) and the segment."""
    resolved = clip.path.resolve()
    stat = resolved.stat()
    return _content_key(resolved, stat.st_size, stat.st_mtime_ns), float(clip.start_s), clip.duration_s


def _check_no_shared_audio(where: str, split: Split) -> None:
    """No clip of valid or test may be a train clip (nor valid and test share one) under another name: the
    same file by an absolute and a relative path, through `..` or a symlink, or a byte-identical copy."""
    seen: dict[tuple[str, float, float | None], tuple[str, Path]] = {}
    for part in ("train", "valid", "test"):
        for clip in getattr(split, part):
            try:
                identity = _clip_identity(clip)
            except OSError:
                continue  # an unreadable file is reported, and left out, when it is embedded
            if identity[0] == _EMPTY:
                continue  # likewise an empty one: it holds no audio to share
            first = seen.setdefault(identity, (part, clip.path))
            if first[0] != part:
                raise TaskError(
                    f"{where}: {clip.path} ({part}) is the same audio as {first[1]} ({first[0]}); a clip must not "
                    f"be in two splits, whatever its path"
                )


TaskLoader = Callable[[Path], Task]
"""A loader reads one corpus from its standard on-disk layout under a root folder."""

_LOADERS: dict[str, TaskLoader] = {}


def register_task(name: str) -> Callable[[TaskLoader], TaskLoader]:
    """Register a loader for `decar evaluate --task NAME:ROOT`."""

    def decorate(loader: TaskLoader) -> TaskLoader:
        if name in _LOADERS:
            raise ValueError(f"task loader {name!r} is registered twice")
        _LOADERS[name] = loader
        return loader

    return decorate


def list_tasks() -> list[str]:
    return sorted(_LOADERS)


def get_loader(name: str) -> TaskLoader:
    if name not in _LOADERS:
        raise TaskError(f"unknown task {name!r}; built-in tasks: {', '.join(list_tasks())}")
    return _LOADERS[name]
