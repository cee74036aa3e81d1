import pickle
from pathlib import Path

import pytest
import torch

from decar.checkpoint import FORMAT_VERSION, CheckpointError, load_checkpoint, save_checkpoint


def test_save_load_round_trip_weights_only(tmp_path: Path) -> None:
    state = {"config": {"a": 1}, "encoder": {"w": torch.arange(6.0).reshape(2, 3)}, "epoch": 3}
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, state)
    loaded = load_checkpoint(path)
    assert loaded["format_version"] == FORMAT_VERSION and loaded["epoch"] == 3
    assert torch.equal(loaded["encoder"]["w"], state["encoder"]["w"])
    assert not list(tmp_path.glob("*.tmp"))


def test_loading_never_unpickles_code(tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self):  # would run on an unsafe load
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "decar-checkpoint", "format_version": 1, "x": Payload()}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pt"):
        load_checkpoint(path)


def test_clear_errors_for_non_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"garbage\.pt"):
        load_checkpoint(garbage)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="not a decar checkpoint"):
        load_checkpoint(other)
    newer = tmp_path / "newer.pt"
    torch.save({"format": "decar-checkpoint", "format_version": 99}, newer)
    with pytest.raises(CheckpointError, match="upgrade decar"):
        load_checkpoint(newer)


def test_interrupted_write_keeps_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"epoch": 1})

    class Unpicklable:
        def __reduce__(self):
            raise pickle.PicklingError("boom")

    with pytest.raises(pickle.PicklingError):
        save_checkpoint(path, {"epoch": 2, "bad": Unpicklable()})
    assert load_checkpoint(path)["epoch"] == 1
    assert not list(tmp_path.glob(".*.tmp"))
