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


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda s: s.pop("config"), "no 'config' mapping"),
        (lambda s: s.pop("frontend_stats"), "no 'frontend_stats'"),
        (lambda s: s.update(frontend_stats={"mean": 0.0, "std": float("nan")}), "finite numbers"),
        (lambda s: s.pop("format_version"), "no integer format_version"),
        (lambda s: s["config"]["model"]["kwargs"].update(width=3), "cannot rebuild the model.*'width'"),
        (lambda s: s["encoder"].pop(next(iter(s["encoder"]))), "cannot rebuild the model.*Missing key"),
        (lambda s: s["encoder"].update({k: v[..., :1] for k, v in list(s["encoder"].items())[:1]}), "size mismatch"),
        (lambda s: next(v for v in s["encoder"].values() if v.is_floating_point()).fill_(float("nan")), "NaN"),
    ],
)
def test_a_malformed_checkpoint_is_one_error_naming_file_and_field(tmp_path: Path, damage, message: str) -> None:
    import decar
    from decar.testing import write_random_checkpoint

    path = write_random_checkpoint(tmp_path / "good.pt")
    state = torch.load(path, weights_only=True)
    damage(state)
    broken = tmp_path / "broken.pt"
    torch.save(state, broken)
    with pytest.raises(CheckpointError, match=rf"broken\.pt.*{message}"):
        decar.load(broken)


def test_byola_on_a_pickle_is_a_clear_error(tmp_path: Path) -> None:
    from decar.models import load_byola_weights

    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps(object(), protocol=2))
    with pytest.raises(ValueError, match=r"evil\.pth: cannot read it as a weights-only torch file"):
        load_byola_weights(evil)
