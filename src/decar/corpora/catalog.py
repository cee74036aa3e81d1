"""The catalogue of usable recordings: every scanned file with its duration and content hash.

Files that cannot be decoded, or that are empty, are skipped and counted per package, never fatal. The
content hash finds the same audio shipped twice (symlinked copies, a kit's samples reused by another kit),
so that a held-out recording cannot come back into the corpus under another name.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from decar.audio import AudioError, audio_info
from decar.corpora.sources import Recording

MIN_RECORDING_S = 0.1


@dataclass(frozen=True)
class Entry:
    """A usable recording: duration in seconds and sha256 of its file."""

    recording: Recording
    duration_s: float
    digest: str


@dataclass
class Catalog:
    """Usable recordings in source-id order, and per package how many were skipped (and why)."""

    entries: list[Entry] = field(default_factory=list)
    skipped: Counter[tuple[str, str]] = field(default_factory=Counter)

    def select(self, predicate: Callable[[Entry], bool]) -> list[Entry]:
        return [entry for entry in self.entries if predicate(entry)]


def _digest(path_bytes: bytes) -> str:
    return hashlib.sha256(path_bytes).hexdigest()


def build_catalog(recordings: list[Recording], advance: Callable[[int], None] = lambda _n: None) -> Catalog:
    """Read each recording's header and hash its bytes; skip (and count) what cannot be used."""
    catalog = Catalog()
    for recording in sorted(recordings, key=lambda item: item.source_id):
        advance(1)
        try:
            info = audio_info(recording.path)
            data = recording.path.read_bytes()
        except (AudioError, OSError) as err:
            reason = err.reason if isinstance(err, AudioError) else "unreadable"
            catalog.skipped[(recording.package, reason.split(" (")[0])] += 1
            continue
        if info.duration_s < MIN_RECORDING_S:
            catalog.skipped[(recording.package, "shorter than 0.1 s")] += 1
            continue
        catalog.entries.append(Entry(recording, info.duration_s, _digest(data)))
    return catalog
