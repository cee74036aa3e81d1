"""The methods as plug-ins: their math alone (spherical k-means, Sinkhorn, EMA centroids, memory bank, schedules,
LARS), then each method end to end on generated audio: it learns, finds planted classes, resumes exactly."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from decar import dist
from decar.augment import AUGMENTATIONS, AugmentConfig, build_augmentation
from decar.checkpoint import load_checkpoint
from decar.cluster import (
    ema_centroids,
    nmi,
    pca_whiten,
    sharded_kmeans,
    sinkhorn,
    spherical_kmeans,
)
from decar.config import load_config
from decar.objectives import create_objective, list_objectives
from decar.objectives.base import SampleShare
from decar.objectives.projection import MemoryBank
from decar.optim import Lars
from decar.pretrain import fit
from decar.schedules import learning_rates, warmup_cosine

pytestmark = pytest.mark.usefixtures("one_thread")
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY = {"deepcluster_v1": "tiny.yaml", "dcv2": "tiny_v2.yaml", "online": "tiny_online.yaml"}
PITCHES = (220.0, 311.0, 440.0, 622.0, 880.0, 1245.0, 1760.0, 2489.0)


def _planted(count: int, dim: int = 16, clusters: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(clusters, dim, generator=generator), dim=1)
    labels = torch.arange(count) % clusters
    return F.normalize(centres[labels] + 0.05 * torch.randn(count, dim, generator=generator), dim=1), labels


def test_every_method_is_registered_with_a_tiny_config() -> None:
    assert sorted(TINY) == list_objectives()
    for method, name in TINY.items():
        assert load_config(CONFIGS / name).method == method
    for name, method in (("decar.yaml", "deepcluster_v1"), ("decar_v2.yaml", "dcv2"), ("decar_online.yaml", "online")):
        assert load_config(CONFIGS / name).method == method


def test_a_method_takes_only_its_own_settings() -> None:
    from decar._dicts import ConfigError

    with pytest.raises(ConfigError, match=r"objective\.pca_dim"):
        load_config(CONFIGS / "tiny_v2.yaml", ["objective.pca_dim=8"])
    with pytest.raises(ConfigError, match=r"unknown method 'byol'; known: dcv2, deepcluster_v1, online"):
        load_config(CONFIGS / "tiny.yaml", ["method=byol"])
    with pytest.raises(TypeError, match="DCv2Config"):
        create_objective("dcv2", load_config(CONFIGS / "tiny.yaml").objective, torch.nn.Identity(), 4)


def test_spherical_kmeans_finds_planted_clusters_and_leaves_none_empty() -> None:
    x, labels = _planted(200)
    result = spherical_kmeans(x, 4, num_iters=10, seed=0)
    assert nmi(result.assignments, labels) > 0.99
    torch.testing.assert_close(result.centroids.norm(dim=1), torch.ones(4))
    # More clusters than directions: the extra ones are re-seeded, never left dead.
    crowded = spherical_kmeans(x, 12, num_iters=10, seed=1)
    assert crowded.num_empty == 0
    assert torch.equal(spherical_kmeans(x, 4, 10, seed=0).assignments, result.assignments)


def test_sinkhorn_equalises_clusters_and_keeps_samples_whole() -> None:
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(64, 8, generator=generator)
    scores[:, 0] += 5  # every sample prefers cluster 0
    codes = sinkhorn(scores, epsilon=0.05, num_iters=500)
    torch.testing.assert_close(codes.sum(dim=1), torch.ones(64), atol=1e-4, rtol=0)
    torch.testing.assert_close(codes.sum(dim=0), torch.full((8,), 64 / 8), atol=0.05, rtol=0)
    assert torch.bincount(codes.argmax(dim=1), minlength=8).min() > 0  # no cluster takes every sample
    assert torch.isfinite(sinkhorn(scores * 1000, epsilon=0.01)).all()  # log-domain: no overflow


def test_ema_centroids_move_only_clusters_with_members() -> None:
    centroids = F.normalize(torch.eye(3, 4), dim=1)
    features = F.normalize(torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0]]), dim=1)
    moved, counts = ema_centroids(centroids, features, torch.tensor([0, 0]), decay=0.5)
    assert counts.tolist() == [2, 0, 0]
    assert torch.equal(moved[1:], centroids[1:])
    torch.testing.assert_close(moved.norm(dim=1), torch.ones(3))
    mean = features.mean(dim=0)
    assert moved[0] @ F.normalize(mean, dim=0) > centroids[0] @ F.normalize(mean, dim=0)


def test_memory_bank_overwrites_only_the_given_rows() -> None:
    bank = MemoryBank(6, 3)
    info = dist.DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    bank.write(torch.tensor([4, 1]), torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]), info, SampleShare(6))
    bank.write(torch.tensor([4]), torch.tensor([[0, 0, 1.0]]), info, SampleShare(6))
    assert bank.filled.tolist() == [False, True, False, False, True, False]
    assert bank.features[4].tolist() == [0, 0, 1.0] and bank.features[1].tolist() == [0, 1.0, 0]
    assert bank.features[0].abs().sum() == 0


def test_warmup_cosine_schedule() -> None:
    lrs = warmup_cosine(1.0, 0.01, warmup_steps=10, total_steps=110)
    assert len(lrs) == 110 and lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.01)
    assert np.all(np.diff(lrs[:10]) > 0) and np.all(np.diff(lrs[10:]) <= 0)
    assert len(learning_rates("warmup_cosine", 1.0, 0.0, 0.5, epochs=3, steps_per_epoch=7)) == 21
    assert set(learning_rates("constant", 0.05, 0.0, 0.0, 2, 5)) == {0.05}
    with pytest.raises(ValueError, match="warmup_steps"):
        warmup_cosine(1.0, 0.0, warmup_steps=20, total_steps=10)


def test_lars_limits_each_layer_step_to_a_trust_fraction_of_its_norm() -> None:
    weight = torch.nn.Parameter(torch.ones(4, 4))
    weight.grad = torch.full((4, 4), 100.0)
    optimizer = Lars(torch.optim.SGD([weight], lr=1.0, momentum=0.0, weight_decay=0.1), trust=0.001)
    before = weight.detach().clone()
    optimizer.step()
    step = (weight.detach() - before).norm() / before.norm()
    assert 0 < step <= 0.001 + 1e-6
    assert optimizer.param_groups[0]["weight_decay"] == 0.1  # restored after the step


@pytest.mark.parametrize("name", AUGMENTATIONS)
def test_every_augmentation_that_is_enabled_changes_the_batch(name: str) -> None:
    settings = {key: {"enabled": key == name} for key in AUGMENTATIONS}
    augment = build_augmentation(AugmentConfig.from_dict(settings)).train()
    assert len(augment) == 1
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, 1, 64, 32, generator=generator)
    augment(x + 1.0, generator=torch.Generator().manual_seed(1))  # mixup needs a memory to mix with
    y = augment(x, generator=torch.Generator().manual_seed(2))
    assert y.shape == x.shape and y.dtype == x.dtype and torch.isfinite(y).all()
    assert not torch.allclose(y, x)


def test_an_enabled_augmentation_missing_from_the_order_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"missing from augment\.order"):
        AugmentConfig.from_dict({"mixup": {"enabled": True}, "order": ["specaugment"]})


def _write_tones(folder: Path, per_pitch: int = 8) -> list[int]:
    """Tones of 8 pitches with random level, phase, vibrato and noise: the planted classes, in file order."""
    rng = np.random.default_rng(0)
    labels = []
    t = np.arange(16000) / 16000
    for index in range(per_pitch * len(PITCHES)):
        pitch = index % len(PITCHES)
        wobble = 1 + 0.01 * np.sin(2 * np.pi * rng.uniform(2, 6) * t)
        wave = np.sin(2 * np.pi * PITCHES[pitch] * wobble * t + rng.uniform(0, 2 * np.pi))
        wave = rng.uniform(0.1, 0.8) * wave + 0.01 * rng.standard_normal(t.size)
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(folder / f"tone_{index:03d}.wav", wave.astype(np.float32), 16000, subtype="PCM_16")
        labels.append(pitch)
    return labels


@pytest.fixture(scope="module")
def tones(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    folder = tmp_path_factory.mktemp("tones")
    return folder, _write_tones(folder)


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(TINY))
def test_each_method_learns_on_generated_audio(method: str, corpus: Path, tmp_path: Path) -> None:
    summary = fit(load_config(CONFIGS / TINY[method], ["optim.epochs=3", "num_threads=1"]), corpus, tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    losses = [record["loss"] for record in records]
    assert all(math.isfinite(loss) for loss in losses) and losses[-1] < losses[0]
    assert records[-1]["loss_chance"] == pytest.approx(math.log(8))
    for key in ("nmi_prev", "ami_duration", "ami_level", "assignment_entropy", "share_clustering", "clusters_empty"):
        assert records[-1][key] is not None, key
    assert summary["method"] == method and summary["files_used"] == 64
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    for check in ("ami_gain", "ami_cut"):  # the end-of-run shortcut checks
        assert isinstance(saved[check], float) and -1 <= saved[check] <= 1
    if method == "online":  # its EMA teacher embeds downstream, as DINO evaluates its teacher
        state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
        prefix = "teacher.encoder."
        teacher = {k.removeprefix(prefix): v for k, v in state["objective"].items() if k.startswith(prefix)}
        assert teacher.keys() == state["encoder"].keys()
        assert all(torch.equal(state["encoder"][name], weights) for name, weights in teacher.items())
        assert not all(torch.equal(state["objective"][f"network.encoder.{k}"], v) for k, v in teacher.items())


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(TINY))
def test_each_method_finds_planted_pitches(method: str, tones: tuple[Path, list[int]], tmp_path: Path) -> None:
    """Tones of 8 pitches: the final pseudo-labels must recover them, with one encoder (AudioNTT, which keeps
    the mel axis; EfficientNet's global pooling discards where a tone lies) for all. Mixup (which makes chords)
    and random resize crop (which rescales the frequency axis, i.e. shifts pitch) change this toy's very label,
    so they are off here; they are tested on their own above.

    Online clustering gets more epochs: its centroids never restart from the improved features as a per-epoch
    k-means does. Measured over seeds 0-4 with its teacher: 0.92, 0.71, 0.89, 0.90, 0.84 (without the teacher
    0.71-0.83; the variants tried are listed in its module)."""
    folder, labels = tones
    epochs = 8 if method == "online" else 3
    overrides = [f"optim.epochs={epochs}", "num_threads=1", "augment.mixup.enabled=false"]
    overrides += ["augment.random_resize_crop.enabled=false", "model.name=audiontt2020", "model.kwargs={d: 128}"]
    overrides += ["objective.num_clusters=8"] if method != "dcv2" else []
    fit(load_config(CONFIGS / TINY[method], overrides), folder, tmp_path / "run")
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["objective"]
    assert nmi(state["labels0" if method == "dcv2" else "labels"], labels) >= 0.8


def _with_a_dead_centroid(x: torch.Tensor) -> torch.Tensor:
    """Five rows of ``x`` and, last, the direction opposite their mean: a centroid no row chooses, so the first
    round must re-seed it with the row worst served (continuous distances: no tie to break)."""
    return F.normalize(torch.cat([x[::18][:5], -x.mean(dim=0, keepdim=True)]), dim=1)


class _StubEncoder(torch.nn.Module):
    embed_dim = 6


def _online_steps(info: dist.DistInfo, steps: int = 3, clips: int = 8) -> dict[str, torch.Tensor]:
    """Three steps of online clustering on this process's share of fixed inputs, through a fixed map (no
    BatchNorm, whose per-process statistics differ by design): its losses and the state it keeps."""
    from decar.objectives.online import OnlineConfig

    config = OnlineConfig(
        hidden_dim=8, projection_dim=4, num_clusters=3, queue_size=12, centroid_decay=0.5, teacher_momentum=0
    )
    objective = create_objective("online", config, _StubEncoder(), num_samples=steps * clips)
    objective.attach(info)
    weight = torch.randn(5, 4, generator=torch.Generator().manual_seed(7))
    inputs = torch.randn(steps, 2, clips, 5, generator=torch.Generator().manual_seed(8))
    share = slice(info.rank * clips // info.world_size, (info.rank + 1) * clips // info.world_size)
    losses = []
    for step in range(steps):
        x = torch.cat([inputs[step, 0, share], inputs[step, 1, share]])
        indices = torch.arange(step * clips, (step + 1) * clips)[share]
        losses.append(objective(lambda rows: F.normalize(rows @ weight, dim=1), x, indices)["loss"])
    state = objective.state_dict()
    return {"loss": torch.stack(losses), **{f"online.{k}": state[k] for k in ("centroids", "labels", "queue")}}


def test_learned_prototypes_stay_frozen_then_learn_and_stay_unit() -> None:
    from decar.objectives.online import OnlineConfig

    torch.manual_seed(0)
    config = OnlineConfig(
        hidden_dim=8,
        projection_dim=4,
        num_clusters=3,
        queue_size=0,
        prototypes="learned",
        freeze_prototypes_steps=2,
        teacher_momentum=0,
    )
    objective = create_objective("online", config, _LinearEncoder(), num_samples=8)
    optimizer = torch.optim.SGD(objective.network.parameters(), lr=0.5)
    weights = []
    for step in range(4):
        x = torch.randn(16, 5, generator=torch.Generator().manual_seed(step))
        loss = objective(objective.network, x, torch.arange(8))["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        weights.append(objective.network.prototypes.weight.detach().clone())
        assert torch.isfinite(loss)
    # frozen for the first two steps (re-normalised each step: unchanged up to rounding), then learning
    torch.testing.assert_close(weights[0], weights[1], rtol=0, atol=1e-6)
    assert float((weights[2] - weights[1]).abs().max()) > 1e-3
    objective(objective.network, torch.randn(16, 5), torch.arange(8))
    assert torch.allclose(objective.network.prototypes.weight.norm(dim=1), torch.ones(3))
    assert int(objective.state_dict()["steps"]) == 5


def test_the_teacher_follows_the_student_by_its_momentum_and_gets_no_gradient() -> None:
    from decar.objectives.online import OnlineConfig

    torch.manual_seed(0)
    config = OnlineConfig(hidden_dim=8, projection_dim=4, num_clusters=3, queue_size=6, teacher_momentum=0.75)
    objective = create_objective("online", config, _LinearEncoder(), num_samples=8)
    assert objective.teacher is not None
    optimizer = torch.optim.SGD(objective.network.parameters(), lr=0.5)
    x = torch.randn(16, 5, generator=torch.Generator().manual_seed(1))
    loss = objective(objective.network, x, torch.arange(8))["loss"]
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert all(p.grad is None for p in objective.teacher.parameters())
    before = {k: v.clone() for k, v in objective.teacher.state_dict().items()}
    student = objective.network.state_dict()
    assert not torch.equal(before["encoder.map.weight"], student["encoder.map.weight"])  # the student moved
    objective(objective.network, x, torch.arange(8))
    after = objective.teacher.state_dict()
    expected = 0.75 * before["encoder.map.weight"] + 0.25 * student["encoder.map.weight"]
    torch.testing.assert_close(after["encoder.map.weight"], expected)
    assert any(key.startswith("teacher.") for key in objective.state_dict())  # saved with the run, resumed


class _LinearEncoder(torch.nn.Module):
    embed_dim = 5

    def __init__(self) -> None:
        super().__init__()
        self.map = torch.nn.Linear(5, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.map(x)


def _distributed_worker(rank: int, world: int, init_file: str, out_file: str) -> None:
    """One of `world` gloo processes: each runs the objectives' collective math on its share of one problem."""
    import torch.distributed as torch_dist

    torch_dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        group = torch_dist.group.WORLD
        x, _labels = _planted(90, clusters=5, seed=3)
        result = spherical_kmeans(x, 5, num_iters=8, seed=4, group=group)
        scores = torch.randn(24, 6, generator=torch.Generator().manual_seed(5))
        codes = sinkhorn(scores[rank::world], epsilon=0.1, num_iters=5, group=group)
        features = F.normalize(torch.randn(24, 4, generator=torch.Generator().manual_seed(6)), dim=1)
        members = torch.arange(24) % 3
        centroids, counts = ema_centroids(
            F.normalize(torch.eye(3, 4), dim=1), features[rank::world], members[rank::world], 0.5, group
        )
        online = _online_steps(dist.DistInfo(rank, world, rank, torch.device("cpu")))
        half = torch.arange(rank * 45, (rank + 1) * 45)  # contiguous shards: rows never leave their process
        sharded = sharded_kmeans(x[half], half, 90, 12, num_iters=8, seed=4, group=group)
        reseeded = sharded_kmeans(x[half], half, 90, 6, 8, group=group, initial=_with_a_dead_centroid(x))
        whitened = pca_whiten(_v1_features()[half], out_dim=6, group=group)
        euclidean = sharded_kmeans(whitened, half, 90, 7, 8, seed=2, group=group, spherical=False)
        torch.save(
            {"kmeans": result.assignments, "centres": result.centroids, "codes": codes, "ema": centroids, "n": counts}
            | online
            | {"sharded": sharded.assignments, "sharded_centres": sharded.centroids, "sharded_empty": sharded.num_empty}
            | {"sharded_inertia": torch.tensor(sharded.inertia)}
            | {"reseeded": reseeded.assignments, "reseeded_centres": reseeded.centroids}
            | {"whitened": whitened, "euclidean": euclidean.assignments, "euclidean_centres": euclidean.centroids},
            f"{out_file}.{rank}",
        )
    finally:
        torch_dist.destroy_process_group()


def _v1_features() -> torch.Tensor:
    """90 unnormalised 10-d features in 3 loose groups, for PCA-whitening and Euclidean k-means."""
    generator = torch.Generator().manual_seed(8)
    return 3 * torch.randn(3, 10, generator=generator)[torch.arange(90) % 3] + torch.randn(90, 10, generator=generator)


@pytest.mark.slow
def test_collective_math_over_two_processes_matches_one(tmp_path: Path) -> None:
    torch.multiprocessing.spawn(
        _distributed_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "out")), nprocs=2, join=True
    )
    parts = [torch.load(tmp_path / f"out.{rank}", weights_only=True) for rank in range(2)]
    x, _labels = _planted(90, clusters=5, seed=3)
    single = spherical_kmeans(x, 5, num_iters=8, seed=4)
    for part in parts:  # every process ends with the whole, identical result
        assert torch.equal(part["kmeans"], single.assignments)
        torch.testing.assert_close(part["centres"], single.centroids)
    scores = torch.randn(24, 6, generator=torch.Generator().manual_seed(5))
    codes = sinkhorn(scores, epsilon=0.1, num_iters=5)
    torch.testing.assert_close(parts[0]["codes"], codes[0::2])
    torch.testing.assert_close(parts[1]["codes"], codes[1::2])
    features = F.normalize(torch.randn(24, 4, generator=torch.Generator().manual_seed(6)), dim=1)
    centroids, counts = ema_centroids(F.normalize(torch.eye(3, 4), dim=1), features, torch.arange(24) % 3, 0.5)
    for part in parts:
        torch.testing.assert_close(part["ema"], centroids)
        assert torch.equal(part["n"], counts)
    crowded = spherical_kmeans(x, 12, num_iters=8, seed=4)  # 12 clusters of 5 directions: re-seeding runs
    torch.testing.assert_close(torch.cat([part["sharded"] for part in parts]), crowded.assignments, rtol=0, atol=0)
    for part in parts:
        torch.testing.assert_close(part["sharded_centres"], crowded.centroids)
        assert int(part["sharded_empty"]) == crowded.num_empty == 0
        assert float(part["sharded_inertia"]) == pytest.approx(crowded.inertia, rel=1e-5)
    # DeepCluster v1 reading shards: PCA from summed moments, Euclidean k-means on rows that stay put.
    whitened = pca_whiten(_v1_features(), out_dim=6)
    torch.testing.assert_close(torch.cat([part["whitened"] for part in parts]), whitened, rtol=0, atol=1e-5)
    euclidean = sharded_kmeans(whitened, torch.arange(90), 90, 7, 8, seed=2, spherical=False)
    assert torch.equal(torch.cat([part["euclidean"] for part in parts]), euclidean.assignments)
    torch.testing.assert_close(parts[0]["euclidean_centres"], euclidean.centroids)
    alone = sharded_kmeans(x, torch.arange(90), 90, 6, 8, initial=_with_a_dead_centroid(x))
    assert not torch.allclose(alone.centroids[-1], _with_a_dead_centroid(x)[-1])  # the dead one was re-seeded
    assert torch.equal(torch.cat([part["reseeded"] for part in parts]), alone.assignments)
    for part in parts:
        torch.testing.assert_close(part["reseeded_centres"], alone.centroids)
    online = _online_steps(dist.DistInfo(0, 1, 0, torch.device("cpu")))
    torch.testing.assert_close((parts[0]["loss"] + parts[1]["loss"]) / 2, online["loss"])  # DDP averages ranks
    for part in parts:
        for key in ("online.centroids", "online.labels", "online.queue"):
            torch.testing.assert_close(part[key], online[key], msg=key)


@pytest.mark.slow
def test_the_model_sees_the_augmented_batch(corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from decar.objectives.dcv2 import DeepClusterV2
    from decar.pretrain import Trainer

    clean, seen = [], []
    to_input, forward = Trainer._to_input, DeepClusterV2.forward
    monkeypatch.setattr(Trainer, "_to_input", lambda self, batch: clean.append(to_input(self, batch)) or clean[-1])

    def recording_forward(self: DeepClusterV2, net: torch.nn.Module, x: torch.Tensor, idx: torch.Tensor) -> dict:
        seen.append(x.detach().clone())
        return forward(self, net, x, idx)

    monkeypatch.setattr(DeepClusterV2, "forward", recording_forward)
    fit(load_config(CONFIGS / "tiny_v2.yaml", ["optim.epochs=1", "optim.steps_per_epoch=3"]), corpus, tmp_path / "run")
    steps = clean[-3:]  # the last three inputs are the training steps' (the bank-filling pass came first)
    assert len(seen) == 3
    assert all(a.shape == b.shape and not torch.allclose(a, b) for a, b in zip(steps, seen, strict=True))
