"""Output folders take one decar process at a time; a killed holder never leaves a lock behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from decar._lock import LOCK_NAME, OutputLocked, output_lock
from decar.config import load_config
from decar.pretrain import fit

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
HOLD = (
    "from decar._lock import output_lock\n"
    "with output_lock({folder!r}, 'x'):\n    print('held', flush=True)\n    input()"
)


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path: Path) -> None:
    first = rf"in use by another decar run \(pid {os.getpid()} on .*decar pretrain\)"
    with (
        output_lock(tmp_path / "out", "decar pretrain"),
        pytest.raises(OutputLocked, match=first),
        output_lock(tmp_path / "out", "decar embed"),
    ):
        pass
    with output_lock(tmp_path / "out", "decar embed"):  # released at the end of the block
        assert "decar embed" in (tmp_path / "out" / LOCK_NAME).read_text()


def test_a_killed_holder_leaves_no_lock(tmp_path: Path) -> None:
    command = [sys.executable, "-c", HOLD.format(folder=str(tmp_path))]
    holder = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(OutputLocked, match=f"pid {holder.pid}"), output_lock(tmp_path, "y"):
        pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    deadline = time.monotonic() + 5
    while True:  # the kernel releases the lock with the process
        try:
            with output_lock(tmp_path, "y"):
                break
        except OutputLocked:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_pretrain_refuses_a_run_folder_in_use(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    with output_lock(out, "decar pretrain"), pytest.raises(OutputLocked, match="in use by another decar run"):
        fit(load_config(TINY, ["optim.epochs=1", "optim.steps_per_epoch=1"]), corpus, out)
    assert not (out / "config.yaml").exists()  # refused before writing anything
