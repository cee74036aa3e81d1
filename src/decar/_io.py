"""Atomic file writes: a temp file in the target's folder, then a rename, so readers never see half a file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """Call `write(handle)` on a temp file next to `path`, then rename it over `path` (removed on failure)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; outputs get the permissions of any new file
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def remove_orphan_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files that writes killed midway left in ``folder`` (the caller holds its lock)."""
    orphans = [path for path in folder.glob(".*.tmp") if path.is_file()]
    for path in orphans:
        path.unlink(missing_ok=True)
    return orphans
