"""Atomic writes: whole files or nothing, with the permissions any new file would get."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from decar._io import atomic_write, atomic_write_text


def test_written_files_get_the_usual_permissions(tmp_path: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    atomic_write_text(tmp_path / "out" / "a.txt", "hello")
    assert (tmp_path / "out" / "a.txt").read_text() == "hello"
    assert stat.S_IMODE((tmp_path / "out" / "a.txt").stat().st_mode) == 0o666 & ~umask


def test_a_failed_write_leaves_neither_the_file_nor_a_temp(tmp_path: Path) -> None:
    def fail(handle: object) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(tmp_path / "b.bin", fail)
    assert list(tmp_path.iterdir()) == []
