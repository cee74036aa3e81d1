"""One decar process per output folder: an exclusive lock held for the life of a run.

The lock is a POSIX record lock (`fcntl.lockf`) on ``FOLDER/.decar.lock``: the operating system releases it
when its holder exits, however it exits (SIGKILL included), so a lock can never outlive its process and no
stale lock needs clearing. Unlike `flock`, it is not shared with forked children, so DataLoader workers left
behind by a killed run do not keep its folder locked. POSIX locks do not exclude the process holding them,
so the folders this process holds are also kept in a set. The file keeps the holder's pid, host and command,
for the message the next process gets.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

LOCK_NAME = ".decar.lock"
_HELD_HERE: set[Path] = set()  # lock files this process holds (process-wide, as the locks themselves are)


class OutputLocked(RuntimeError):
    """Another live decar process is writing to the same output folder."""


@contextlib.contextmanager
def output_lock(folder: str | Path, command: str) -> Iterator[None]:
    """Hold ``folder``'s lock (creating the folder) while the block runs; OutputLocked names the current holder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = (folder / LOCK_NAME).resolve()
    if path in _HELD_HERE:  # checked before opening: closing a second handle would drop this process's lock
        raise OutputLocked(_in_use(folder, path.read_text(encoding="utf-8").strip()))
    handle = path.open("a+", encoding="utf-8")
    try:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            handle.seek(0)
            raise OutputLocked(_in_use(folder, handle.read().strip())) from None
        _HELD_HERE.add(path)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}: {command}\n")
        handle.flush()
        yield
    finally:
        _HELD_HERE.discard(path)
        handle.close()  # closing releases the lock


def _in_use(folder: Path, holder: str) -> str:
    holder = holder or "a process that left no details"
    return f"{folder} is in use by another decar run ({holder}); wait for it to end or choose another output"
