"""Pretraining that reads tar shards: exact resume mid-epoch, per-rank state under torchrun, health from counts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from decar.checkpoint import load_checkpoint
from decar.cluster import ami, contingency, labels_from_contingency, nmi
from decar.config import load_config
from decar.pretrain import PretrainError, assignment_health, fit
from decar.shards import write_shards
from decar.testing import pretrain_killed_after_first_checkpoint, torchrun_decar, write_synthetic_corpus

pytestmark = pytest.mark.slow
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DCV2 = CONFIGS / "tiny_v2.yaml"
V1 = CONFIGS / "tiny.yaml"
SHORT = ["optim.epochs=2", "optim.steps_per_epoch=5", "deterministic=true", "num_threads=1"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64 clips of 1.2 s in 8 shards of 8."""
    root = tmp_path_factory.mktemp("shard_corpus")
    write_synthetic_corpus(root / "audio", files_per_kind=8, seconds=1.2)
    write_shards([root / "audio"], root / "shards", shard_size=8)
    return root / "shards"


def _pretrain_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "decar.cli", "pretrain", *args]


def test_labels_from_a_contingency_table_give_the_same_scores() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 7, 500), rng.integers(0, 4, 500)
    b[:250] = a[:250] % 4  # related in half the rows
    table = contingency(torch.from_numpy(a), torch.from_numpy(b), 7, 4)
    again_a, again_b = labels_from_contingency(table)
    assert table.sum() == 500
    assert ami(again_a, again_b) == pytest.approx(ami(a, b), abs=1e-12)
    assert nmi(again_a, again_b) == pytest.approx(nmi(a, b), abs=1e-12)
    with pytest.raises(ValueError, match="2-D table of counts"):
        labels_from_contingency(np.array([1, 2]))


def test_a_killed_shard_run_with_two_loader_workers_resumes_exactly(shards: Path, tmp_path: Path) -> None:
    """Killed mid-epoch, the resumed run continues each worker's stream where it stopped: the same weights."""
    overrides = [*SHORT, "checkpoint_minutes=0", "data.num_workers=2"]
    reference = tmp_path / "reference"
    fit(load_config(DCV2, overrides), shards, reference)

    killed = tmp_path / "killed"
    args = _pretrain_cli("--config", str(DCV2), "--data", str(shards), "--out", str(killed), *overrides)
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    checkpoint = killed / "checkpoint.pt"
    stopped = pretrain_killed_after_first_checkpoint(args, killed, linger_s=0.5)  # a kill inside the epoch
    assert not (stopped["epoch"] == 1 and stopped["epoch_complete"]), "run ended before the kill"

    done = subprocess.run([*args, "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    expected, resumed = load_checkpoint(reference / "checkpoint.pt"), load_checkpoint(checkpoint)
    for key, value in expected["encoder"].items():
        assert torch.equal(value, resumed["encoder"][key]), key
    for key, value in expected["objective"].items():  # bank, prototypes, labels
        assert torch.equal(value, resumed["objective"][key]), key
    assert sorted(p.name for p in killed.glob("rank*.pt")) == ["rank000-e1-s5-1.pt"]  # older states removed


@pytest.mark.parametrize("method", ["dcv2", "deepcluster_v1"])
def test_two_processes_keep_their_own_samples_and_log_whole_corpus_health(
    method: str, shards: Path, tmp_path: Path
) -> None:
    config, labels_key = (DCV2, "labels0") if method == "dcv2" else (V1, "labels")
    out = tmp_path / "double"
    overrides = ["optim.epochs=2", "optim.steps_per_epoch=3", "num_threads=1", "optim.batch_size=16"]
    args = torchrun_decar(2, "pretrain", "--config", str(config), "--data", str(shards), "--out", str(out), *overrides)
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    checkpoint = load_checkpoint(out / "checkpoint.pt")
    states = [load_checkpoint(out / f"rank{r:03d}-{checkpoint['rank_state']}.pt") for r in range(2)]
    # Rank r owns shards r, r + 2, ...: 4 shards of 8 clips each, and keeps the labels (and bank) of those only.
    owned = [np.concatenate([np.arange(s * 8, s * 8 + 8) for s in range(r, 8, 2)]) for r in range(2)]
    labels = torch.zeros(64, dtype=torch.long)
    levels = torch.zeros(64, dtype=torch.float64)
    for rank, state in enumerate(states):
        assert state["objective"][labels_key].shape == (32,) and bool((state["objective"][labels_key] >= 0).all())
        assert state["levels"].shape == (32,)
        if method == "dcv2":
            assert len(state["objective"]["bank.features"]) == 32 and bool(state["objective"]["bank.filled"].all())
        labels[owned[rank]] = state["objective"][labels_key]
        levels[owned[rank]] = state["levels"]
    # The logged health, from counts summed over the ranks, is that of the whole corpus's labels.
    record = checkpoint["run_state"]["history"][-1]
    durations = torch.full((64,), 1.2, dtype=torch.float64)
    whole = assignment_health(labels, None, 8, durations, levels)
    for key in ("clusters_min", "clusters_median", "clusters_max", "clusters_empty", "ami_level"):
        assert record[key] == pytest.approx(whole[key], abs=1e-9), key
    assert record["assignment_entropy"] == pytest.approx(whole["assignment_entropy"], abs=1e-9)

    resumed = subprocess.run([*args, "optim.epochs=3", "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert len(load_checkpoint(out / "checkpoint.pt")["run_state"]["history"]) == 3
    with pytest.raises(PretrainError, match="resume it with the same number"):
        fit(load_config(config, [*overrides, "optim.epochs=4"]), shards, out, resume=True)


def test_balancing_by_folder_is_refused_for_shards_with_the_reason(shards: Path, tmp_path: Path) -> None:
    with pytest.raises(PretrainError, match=r"shard folder: data\.max_files_per_folder balances a corpus of files"):
        fit(load_config(DCV2, ["data.max_files_per_folder=4"]), shards, tmp_path / "run")


def test_a_corrupt_shard_is_named_and_skipped(shards: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for path in shards.iterdir():
        (damaged / path.name).write_bytes(path.read_bytes())
    (damaged / "shard-000003.tar").write_bytes(b"not a tar archive" * 100)
    overrides = ["optim.epochs=1", "optim.steps_per_epoch=4", "num_threads=1"]
    summary = fit(load_config(DCV2, overrides), damaged, tmp_path / "run")
    reasons = list(summary["skipped"].values())
    assert len(reasons) == 1 and "shard-000003.tar: unreadable shard" in reasons[0]
    assert summary["epochs"] == 1


@pytest.mark.parametrize("workers", [0, 2])
def test_the_feature_pass_has_as_many_batches_as_counted_and_every_clip_once(shards: Path, workers: int) -> None:
    from decar import dist
    from decar.data import AudioCrops
    from decar.shards import ShardFeed

    cfg = load_config(DCV2)
    crops = AudioCrops([], cfg.frontend, cfg.data.crop_seconds)
    info = dist.DistInfo(rank=1, world_size=2, local_rank=1, device=torch.device("cpu"))
    feed = ShardFeed(shards, crops, info, workers, False, cfg.data.min_seconds)
    for epoch in (0, 3):
        batches = list(feed.feature_batches(epoch, 5, views=False))
        assert len(batches) == feed.feature_batch_count(5)
        assert sorted(int(i) for batch in batches for i in batch.indices) == feed.owned.tolist()
