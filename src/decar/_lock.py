"""One decar process per output folder: an exclusive lock held for the life of a run.

The lock is `fcntl.flock` on ``FOLDER/.decar.lock``: the operating system releases it when its holder exits,
however it exits (SIGKILL included), so a lock can never outlive its process and no stale lock needs clearing.
The file keeps the holder's pid, host and command, for the message the next process gets.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

LOCK_NAME = ".decar.lock"


class OutputLocked(RuntimeError):
    """Another live decar process is writing to the same output folder."""


@contextlib.contextmanager
def output_lock(folder: str | Path, command: str) -> Iterator[None]:
    """Hold ``folder``'s lock (creating the folder) while the block runs; OutputLocked names the current holder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    handle = (folder / LOCK_NAME).open("a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "a process that left no details"
            raise OutputLocked(
                f"{folder} is in use by another decar run ({holder}); wait for it to end or choose another output"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}: {command}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the lock
