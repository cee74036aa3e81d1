"""Readers and split rules shared by the corpus loaders, so every loader reports bad input the same way.

CSV tables with named columns, audio presence checks, class-index vocabularies, and deterministic hash-ranked
splits (stratified per class, or by key such as speaker or session).
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from decar.evaluate.tasks.base import TaskError

VALID_FRACTION = 0.1
TEST_FRACTION = 0.1
HELD_OUT_FRACTION = 0.1
"""Share of every group that `stratified_split` puts in valid, and again in test."""
SPLIT_SALT = "decar-split-v1"
"""Seed of the hash order behind `stratified_split`: changing it reshuffles every derived split."""


def read_table(task: str, path: Path, columns: Sequence[str], delimiter: str = ",") -> list[dict[str, str]]:
    """The `columns` of every row of a headed CSV file, stripped.

    Raises:
        TaskError: naming `path` when it is missing, unreadable, empty, lacks a column or has a short row.
    """
    if not path.is_file():
        raise TaskError(f"{task}: {path} is missing")
    rows: list[dict[str, str]] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle, delimiter=delimiter)
            absent = [column for column in columns if column not in (reader.fieldnames or ())]
            if absent:
                raise TaskError(f"{task}: {path} lacks column(s) {absent}; its header is {reader.fieldnames}")
            for row in reader:
                if any(row[column] is None for column in columns):
                    raise TaskError(f"{task}: {path} line {reader.line_num} has too few fields")
                rows.append({column: row[column].strip() for column in columns})
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise TaskError(f"{task}: cannot read {path}: {err}") from err
    if not rows:
        raise TaskError(f"{task}: {path} has no rows")
    return rows


def parse_int(task: str, path: Path, column: str, value: str) -> int:
    """`value` of `column` in `path` as an integer, or a TaskError naming both."""
    try:
        return int(value)
    except ValueError:
        raise TaskError(f"{task}: {path} column {column!r} holds {value!r}, expected an integer") from None


def one_based_fold(task: str, path: Path, file: str, value: str) -> int:
    """The 1-based fold number `value` given to `file` in `path`, or a TaskError naming both."""
    fold = parse_int(task, path, "fold", value)
    if fold < 1:
        raise TaskError(f"{task}: {path} gives {file} fold {fold}; folds are numbered from 1")
    return fold


def indexed_vocabulary(task: str, path: Path, pairs: Iterable[tuple[int, str]]) -> list[str]:
    """Class names ordered by their index, so class index = the corpus's own class id.

    Raises:
        TaskError: when one index carries two names or one name two indices.
    """
    by_index: dict[int, str] = {}
    by_name: dict[str, int] = {}
    for index, name in pairs:
        if by_index.setdefault(index, name) != name:
            raise TaskError(f"{task}: {path} gives class id {index} two names: {by_index[index]!r} and {name!r}")
        if by_name.setdefault(name, index) != index:
            raise TaskError(f"{task}: {path} gives class {name!r} two ids: {by_name[name]} and {index}")
    return [by_index[index] for index in sorted(by_index)]


def require_files(task: str, paths: Iterable[Path], listed_in: Path | str) -> None:
    """Raise when audio files listed in `listed_in` are absent, with their count and the first few names.

    Lists each folder once instead of probing every file, which matters for corpora of 10^5 clips.
    """
    listings: dict[Path, set[str]] = {}
    missing: list[str] = []
    for path in paths:
        names = listings.get(path.parent)
        if names is None:
            names = listings[path.parent] = set(os.listdir(path.parent)) if path.parent.is_dir() else set()
        if path.name not in names:
            missing.append(str(path))
    if missing:
        raise TaskError(f"{task}: {len(missing)} audio file(s) listed in {listed_in} are missing, e.g. {missing[:3]}")


def stratified_split(task: str, groups: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """Deterministic train/valid/test assignment of unique keys, stratified by group.

    Within each group the keys are ordered by a salted SHA-1 of the key (stable across machines and Python runs,
    unlike `hash()`); the first `HELD_OUT_FRACTION` (at least one) goes to test, the next as many to valid and the
    rest to train, so every group appears in every split.

    Args:
        task: task name for messages.
        groups: group name (a class, or a corpus and class) -> its keys (e.g. paths relative to the corpus root).

    Returns:
        key -> "train", "valid" or "test".
    """
    assignment: dict[str, str] = {}
    for group, keys in groups.items():
        if len(keys) < 3:
            raise TaskError(f"{task}: {group!r} has {len(keys)} file(s); a train/valid/test split needs at least 3")
        held_out = max(1, round(HELD_OUT_FRACTION * len(keys)))
        ordered = sorted(keys, key=lambda key: hashlib.sha1(f"{SPLIT_SALT}:{key}".encode()).hexdigest())
        for position, key in enumerate(ordered):
            assignment[key] = "test" if position < held_out else "valid" if position < 2 * held_out else "train"
    return assignment


def hash_split(
    keys: Iterable[str], valid_fraction: float = VALID_FRACTION, test_fraction: float = TEST_FRACTION
) -> dict[str, str]:
    """Assign keys to train/valid/test deterministically, with no random state.

    Keys are ordered by the SHA-1 of their text, then the last ``round(n * test_fraction)`` go to test and the
    ``round(n * valid_fraction)`` before them to valid (each at least 1 when there are 3 or more keys; fewer keys all
    go to train). The order, unlike Python's ``hash``, is the same in every process and on every machine.

    Args:
        keys: distinct names (utterances, sessions, speakers).
        valid_fraction: share of keys for validation.
        test_fraction: share of keys for test.

    Returns:
        key -> "train", "valid" or "test".
    """
    ordered = sorted(set(keys), key=lambda k: (hashlib.sha1(k.encode("utf-8")).hexdigest(), k))
    n = len(ordered)
    n_valid = max(1, int(n * valid_fraction + 0.5)) if n >= 3 else 0
    n_test = max(1, int(n * test_fraction + 0.5)) if n >= 3 else 0
    n_train = n - n_valid - n_test
    return {
        key: "train" if i < n_train else "valid" if i < n_train + n_valid else "test" for i, key in enumerate(ordered)
    }
