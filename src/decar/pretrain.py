"""DECAR pretraining (DeepCluster v1, REFERENCE §1a): every epoch cluster the encoder's own features, then
learn to predict the cluster ids.

One epoch = feature pass over the whole set (eval mode, centre crops, sharded by rank) → PCA-whitening and
k-means on the gathered features (rank 0, labels broadcast) → new top layer → one pass of cross-entropy on
samples drawn uniformly over non-empty clusters. Runs in one process or under torchrun (DDP).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from decar import dist
from decar._io import atomic_write_text
from decar.audio import list_audio_files
from decar.checkpoint import export_encoder, load_checkpoint, save_checkpoint
from decar.cluster import balanced_cluster_indices, cluster_size_stats, kmeans, nmi, pca_whiten
from decar.config import DecarConfig
from decar.data import AudioCrops, Batch, BatchCollator, scan_files, step_seed, worker_init
from decar.frontend import compute_norm_stats
from decar.models import create_model
from decar.objectives import DeepClusterNet, DeepClusterV1Head
from decar.plots import plot_training_curves

log = logging.getLogger("decar.pretrain")

CHECKPOINT_NAME = "checkpoint.pt"
ENCODER_EXPORT_NAME = "encoder.safetensors"
STATS_MAX_FILES = 2000
# Settings a resumed run may change without invalidating what was already trained.
RESUMABLE_OVERRIDES = ("optim.epochs", "num_threads", "data.num_workers", "checkpoint_minutes", "device")


class PretrainError(RuntimeError):
    """A run that cannot start or continue; the message says why and what to do."""


@dataclass
class RunState:
    """Everything besides weights that a resumed run needs to continue exactly."""

    epoch: int = 0
    step: int = 0
    epoch_complete: bool = False
    assignments: torch.Tensor | None = None
    previous_assignments: torch.Tensor | None = None
    norm_stats: tuple[float, float] | None = None
    bad_files: dict[str, str] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch_totals: dict[str, float] = field(default_factory=dict)


def build_network(cfg: DecarConfig) -> DeepClusterNet:
    """Encoder from the registry plus the DeepCluster head, on CPU, in float32."""
    encoder = create_model(cfg.model.name, **cfg.model.kwargs)
    head = DeepClusterV1Head(
        encoder.embed_dim, cfg.objective.hidden_dim, cfg.objective.num_clusters, cfg.objective.dropout
    )
    return DeepClusterNet(encoder, head)


def fit(cfg: DecarConfig, data: str | Path, out_dir: str | Path, resume: bool = False) -> dict[str, Any]:
    """Pretrain on the audio under `data` (folder or list file), writing to `out_dir`; returns the run summary."""
    info = dist.init_distributed(cfg.device)
    try:
        with _caller_torch_settings_kept():
            return Trainer(cfg, Path(data), Path(out_dir), info, resume).run()
    finally:
        dist.shutdown()


@contextlib.contextmanager
def _caller_torch_settings_kept() -> Iterator[None]:
    """A run sets threads, seeds and determinism for itself; the calling program gets its own back afterwards."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
            torch.backends.cudnn.benchmark = benchmark


class Trainer:
    """Owns the model, optimisers, data and run state of one pretraining run."""

    def __init__(self, cfg: DecarConfig, data: Path, out_dir: Path, info: dist.DistInfo, resume: bool) -> None:
        self.info = info
        self.out_dir = out_dir
        self.checkpoint_path = out_dir / CHECKPOINT_NAME
        checkpoint = self._existing_checkpoint(resume)
        if checkpoint is not None:
            cfg = _merge_resumed_config(DecarConfig.from_dict(checkpoint["config"]), cfg)
        self.cfg = cfg.validate()
        _configure_torch(cfg)
        self.device = info.device
        self.state = RunState()

        self.files, self.state.bad_files = self._discover(data)
        if info.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            cfg.to_yaml(out_dir / "config.yaml")
            atomic_write_text(out_dir / "files.txt", "".join(f"{p}\n" for p in self.files))
        self.dataset = AudioCrops(
            self.files,
            cfg.frontend,
            cfg.data.crop_seconds,
            random_crop=cfg.data.random_crop,
            pad_to_crop=cfg.data.pad_to_crop,
            cache_dir=cfg.data.cache_dir,
            specaugment=cfg.augment.specaugment,
            seed=cfg.seed,
        )
        self.net = build_network(cfg).to(self.device)
        if cfg.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.train_net: torch.nn.Module = self.net
        if info.is_distributed:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_net = DistributedDataParallel(self.net, device_ids=device_ids)
        backbone = [p for n, p in self.net.named_parameters() if not n.startswith("head.top_layer.")]
        self.optimizer = self._sgd(backbone)
        self.top_optimizer = self._sgd(self.net.head.top_layer.parameters())
        if checkpoint is not None:
            self._restore(checkpoint)

    # ----------------------------------------------------------------------------------------------- setup
    def _existing_checkpoint(self, resume: bool) -> dict[str, Any] | None:
        if self.checkpoint_path.exists() and not resume:
            raise PretrainError(
                f"{self.out_dir} already holds a run ({CHECKPOINT_NAME}); pass --resume to continue it "
                "or choose another --out"
            )
        if resume and self.checkpoint_path.exists():
            return load_checkpoint(self.checkpoint_path)
        if resume and self.info.is_main:
            log.warning("--resume given but %s has no checkpoint yet: starting a new run", self.out_dir)
        return None

    def _discover(self, data: Path) -> tuple[list[Path], dict[str, str]]:
        paths = list_audio_files(data)
        if self.cfg.data.max_files is not None:
            paths = paths[: self.cfg.data.max_files]
        good, bad = scan_files(paths, self.cfg.data.min_seconds)
        if self.info.is_main:
            for path, reason in bad.items():
                log.warning("skipping %s: %s", path, reason)
        if len(good) < self.cfg.objective.num_clusters:
            raise PretrainError(
                f"{data} has {len(good)} usable audio files ({len(bad)} skipped), fewer than "
                f"objective.num_clusters={self.cfg.objective.num_clusters}; add audio or lower num_clusters"
            )
        return good, bad

    def _sgd(self, params: Iterator[torch.nn.Parameter] | list[torch.nn.Parameter]) -> torch.optim.SGD:
        o = self.cfg.optim
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)

    def _restore(self, checkpoint: dict[str, Any]) -> None:
        if checkpoint["files"] != [str(p) for p in self.files]:
            raise PretrainError(
                f"the audio files under the data path differ from those of the checkpoint in {self.out_dir}: "
                "cluster assignments would no longer match; resume with the same data"
            )
        self.net.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.top_optimizer.load_state_dict(checkpoint["top_optimizer"])
        s = checkpoint["run_state"]
        self.state = RunState(
            epoch=s["epoch"],
            step=s["step"],
            epoch_complete=s["epoch_complete"],
            assignments=checkpoint.get("assignments"),
            previous_assignments=checkpoint.get("previous_assignments"),
            norm_stats=tuple(checkpoint["frontend_stats"].values()),
            bad_files=dict(s["bad_files"]),
            history=list(s["history"]),
            epoch_totals=dict(s["epoch_totals"]),
        )
        torch.set_rng_state(checkpoint["rng"]["torch"])
        if self.state.epoch_complete:
            self.state.epoch, self.state.step, self.state.epoch_complete = self.state.epoch + 1, 0, False
            self.state.epoch_totals = {}
        if self.info.is_main:
            log.info("resumed %s at epoch %d, step %d", self.out_dir, self.state.epoch, self.state.step)

    # ------------------------------------------------------------------------------------------------ loop
    def run(self) -> dict[str, Any]:
        start = time.perf_counter()
        if self.state.norm_stats is None:
            self.state.norm_stats = self._normalisation_stats()
        mean, std = self.state.norm_stats
        self.norm_mean, self.norm_std = mean, std
        with self._progress() as progress:
            while self.state.epoch < self.cfg.optim.epochs:
                self._run_epoch(progress)
        summary = self._summary(time.perf_counter() - start)
        if self.info.is_main:
            export_encoder(self.out_dir / ENCODER_EXPORT_NAME, self._checkpoint_state())
            atomic_write_text(self.out_dir / "summary.json", _json(summary))
        return summary

    def _run_epoch(self, progress: Progress) -> None:
        state, cfg = self.state, self.cfg
        totals = state.epoch_totals
        if state.step == 0:
            t0 = time.perf_counter()
            state.previous_assignments = state.assignments
            state.assignments, inertia = self._cluster(progress)
            totals.clear()
            totals.update(seconds_cluster=time.perf_counter() - t0, inertia=inertia)
            self.net.head.reset_top_layer(
                cfg.objective.top_layer_std,
                torch.Generator().manual_seed(step_seed(cfg.seed, state.epoch, 2)),
            )
            self.top_optimizer = self._sgd(self.net.head.top_layer.parameters())
        self._train(progress)
        record = self._epoch_record()
        state.history.append(record)
        state.epoch_complete = True
        self._save()
        if self.info.is_main:
            atomic_write_text(self.out_dir / "log.jsonl", "".join(_json(r) + "\n" for r in state.history))
            plot_training_curves(state.history, self.out_dir / "curves.png")
            log.info(_format_record(record))
        state.epoch, state.step, state.epoch_complete = state.epoch + 1, 0, False
        state.epoch_totals = {}

    def _loader(self, batches: list[list[tuple[int, int]]]) -> DataLoader:
        workers = self.cfg.data.num_workers
        return DataLoader(
            self.dataset,
            batch_sampler=batches,
            collate_fn=BatchCollator(self.cfg.frontend),
            num_workers=workers,
            worker_init_fn=worker_init if workers else None,
            pin_memory=self.device.type == "cuda",
        )

    def _to_input(self, batch: Batch) -> torch.Tensor:
        x = (batch.logmel.to(self.device, non_blocking=True) - self.norm_mean) / self.norm_std
        return x.contiguous(memory_format=torch.channels_last) if self.cfg.channels_last else x

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.precision == "bf16")

    def _record_failures(self, failures: list[tuple[int, str]]) -> None:
        for index, reason in failures:
            path = str(self.files[index])
            if path not in self.state.bad_files:
                self.state.bad_files[path] = reason
                log.warning("skipping %s: %s", path, reason)

    def _normalisation_stats(self) -> tuple[float, float]:
        """Mean/std of log-mel over (up to STATS_MAX_FILES of) the data, computed once and kept in the model."""
        self.dataset.mode = "stats"
        count = len(self.files)
        chosen = sorted({round(i * count / min(count, STATS_MAX_FILES)) for i in range(min(count, STATS_MAX_FILES))})
        mine = chosen[self.info.rank :: self.info.world_size]
        totals = torch.zeros(3, dtype=torch.float64)
        for batch in self._loader([[(i, i)] for i in mine]):
            self._record_failures(batch.failures)
            if batch.logmel.numel():
                mean, std = compute_norm_stats([batch.logmel])
                n = batch.logmel.numel()
                totals += torch.tensor([n, mean * n, (std**2 + mean**2) * n], dtype=torch.float64)
        totals = dist.all_reduce_sum(totals.to(self.device), self.info).cpu()
        n, first, second = totals.tolist()
        mean = first / n
        return mean, math.sqrt(max(second / n - mean**2, 1e-12))

    def _recalibrate_batchnorm(self, batch_size: int) -> None:
        """Rank 0 re-estimates BatchNorm statistics on a random subset and broadcasts them.

        One process does it, on the same batches whatever the world size, so N processes start the feature
        pass from exactly the statistics a single process would have.
        """
        if self.info.is_main:
            generator = torch.Generator().manual_seed(step_seed(self.cfg.seed, self.state.epoch, 6))
            count = min(len(self.files), batch_size * self.cfg.objective.bn_recalibration_batches)
            subset = torch.randperm(len(self.files), generator=generator)[:count].tolist()
            batches = [[(i, i) for i in subset[k : k + batch_size]] for k in range(0, count, batch_size)]
            loader = self._loader(batches)
            recalibrate_batchnorm(self.net.encoder, (self._to_input(b) for b in loader if b.indices.numel()))
        for norm in self.net.encoder.modules():
            if isinstance(norm, torch.nn.modules.batchnorm._BatchNorm):
                dist.broadcast(norm.running_mean, self.info)
                dist.broadcast(norm.running_var, self.info)

    @torch.no_grad()
    def _cluster(self, progress: Progress) -> tuple[torch.Tensor, float]:
        """Features of every file → PCA-whitening → k-means; returns assignments (N,), −1 for unusable files."""
        cfg, info = self.cfg, self.info
        self.dataset.mode = "features"
        mine = list(range(info.rank, len(self.files), info.world_size))
        eval_batch = max(1, cfg.optim.batch_size)
        batches = [[(i, i) for i in mine[k : k + eval_batch]] for k in range(0, len(mine), eval_batch)]
        when = cfg.objective.bn_recalibration
        if when == "every" or (when == "first" and self.state.epoch == 0):
            self._recalibrate_batchnorm(eval_batch)
        self.net.eval()
        task = progress.add_task(f"epoch {self.state.epoch}: features", total=len(batches), visible=info.is_main)
        indices, features = [], []
        for batch in self._loader(batches):
            self._record_failures(batch.failures)
            if batch.indices.numel():
                with self._autocast():
                    features.append(self.net.features(self._to_input(batch)).float())
                indices.append(batch.indices.to(self.device))
            progress.advance(task)
        progress.remove_task(task)
        hidden = cfg.objective.hidden_dim
        local_idx = torch.cat(indices) if indices else torch.empty(0, dtype=torch.long, device=self.device)
        local_feat = torch.cat(features) if features else torch.empty(0, hidden, device=self.device)
        all_idx = dist.all_gather_rows(local_idx, info).cpu()
        all_feat = dist.all_gather_rows(local_feat, info).cpu()
        order = torch.argsort(all_idx)
        all_idx, all_feat = all_idx[order], all_feat[order]

        assignments = torch.full((len(self.files),), -1, dtype=torch.long)
        inertia = torch.zeros(1, dtype=torch.float64)
        if info.is_main:
            whitened = pca_whiten(all_feat, out_dim=cfg.objective.pca_dim)
            result = kmeans(
                whitened,
                cfg.objective.num_clusters,
                num_iters=cfg.objective.kmeans_iters,
                seed=step_seed(cfg.seed, self.state.epoch, 3) % (2**31),
                backend=cfg.objective.kmeans_backend,
            )
            assignments[all_idx] = result.assignments.cpu()
            inertia[0] = result.inertia
        assignments = dist.broadcast(assignments.to(self.device), info).cpu()
        inertia = dist.broadcast(inertia.to(self.device), info).cpu()
        # Files that failed on another rank were logged there; count them here too.
        self._record_failures(
            [
                (i, "could not be decoded (reported by another process)")
                for i in torch.nonzero(assignments < 0).flatten().tolist()
            ]
        )
        return assignments, float(inertia[0])

    def _epoch_batches(self) -> list[list[tuple[int, int]]]:
        """This rank's share of every global batch of the epoch, as (file index, position) pairs."""
        assert self.state.assignments is not None
        valid = torch.nonzero(self.state.assignments >= 0).flatten()
        generator = torch.Generator().manual_seed(step_seed(self.cfg.seed, self.state.epoch, 4))
        world = self.info.world_size
        global_batch = min(self.cfg.optim.batch_size, len(valid)) // world * world
        if global_batch == 0:
            raise PretrainError(f"{len(valid)} usable files cannot be split across {world} processes")
        steps = self.cfg.optim.steps_per_epoch or max(1, len(valid) // global_batch)
        draws = balanced_cluster_indices(self.state.assignments[valid], steps * global_batch, generator=generator)
        order = valid[draws]
        local = global_batch // world
        batches = []
        for step in range(steps):
            first = step * global_batch + self.info.rank * local
            batches.append([(int(order[p]), p) for p in range(first, first + local)])
        return batches

    def _train(self, progress: Progress) -> None:
        cfg, state, totals = self.cfg, self.state, self.state.epoch_totals
        self.dataset.mode, self.dataset.epoch = "train", state.epoch
        self.train_net.train()
        batches = self._epoch_batches()
        task = progress.add_task(f"epoch {state.epoch}: train", total=len(batches), visible=self.info.is_main)
        progress.advance(task, state.step)
        last_save = time.perf_counter()
        tick = time.perf_counter()
        for batch in self._loader(batches[state.step :]):
            self._record_failures(batch.failures)
            torch.manual_seed(step_seed(cfg.seed, state.epoch, state.step, 5))
            targets = self.state.assignments[batch.indices].to(self.device)
            with self._autocast():
                logits = self.train_net(self._to_input(batch))
            loss = F.cross_entropy(logits.float(), targets)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {loss.item()} at epoch {state.epoch} step {state.step}; stopping")
            self.optimizer.zero_grad(set_to_none=True)
            self.top_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.optim.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.net.parameters(), cfg.optim.grad_clip)
            self.optimizer.step()
            self.top_optimizer.step()
            state.step += 1
            now = time.perf_counter()
            global_clips = len(batch.indices) * self.info.world_size
            totals["loss_sum"] = totals.get("loss_sum", 0.0) + loss.item() * global_clips
            totals["clips"] = totals.get("clips", 0) + global_clips
            totals["seconds_train"] = totals.get("seconds_train", 0.0) + now - tick
            tick = now
            progress.update(task, advance=1, description=f"epoch {state.epoch}: train loss {loss.item():.3f}")
            if now - last_save > cfg.checkpoint_minutes * 60 and state.step < len(batches):
                self._save()
                last_save = time.perf_counter()
                tick = last_save
        progress.remove_task(task)

    # ------------------------------------------------------------------------------------- state and logs
    def _checkpoint_state(self) -> dict[str, Any]:
        s = self.state
        mean, std = s.norm_stats or (0.0, 1.0)
        return {
            "config": self.cfg.to_dict(),
            "encoder": self.net.encoder.state_dict(),
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "top_optimizer": self.top_optimizer.state_dict(),
            "frontend_stats": {"mean": mean, "std": std},
            "epoch": s.epoch,
            "assignments": s.assignments,
            "previous_assignments": s.previous_assignments,
            "files": [str(p) for p in self.files],
            "rng": {"torch": torch.get_rng_state()},
            "run_state": {
                "epoch": s.epoch,
                "step": s.step,
                "epoch_complete": s.epoch_complete,
                "bad_files": s.bad_files,
                "history": s.history,
                "epoch_totals": s.epoch_totals,
            },
        }

    def _save(self) -> None:
        if self.info.is_main:
            save_checkpoint(self.checkpoint_path, self._checkpoint_state())

    def _epoch_record(self) -> dict[str, Any]:
        s, totals = self.state, self.state.epoch_totals
        assert s.assignments is not None
        valid = s.assignments >= 0
        sizes = cluster_size_stats(s.assignments[valid], self.cfg.objective.num_clusters)
        nmi_prev = None
        if s.previous_assignments is not None:
            both = valid & (s.previous_assignments >= 0)
            nmi_prev = nmi(s.assignments[both], s.previous_assignments[both])
        seconds_train = totals.get("seconds_train", 0.0)
        clips = totals.get("clips", 0)
        return {
            "epoch": s.epoch,
            "loss": totals.get("loss_sum", 0.0) / max(clips, 1),
            "nmi_prev": nmi_prev,
            "clusters_min": sizes["min"],
            "clusters_median": sizes["median"],
            "clusters_max": sizes["max"],
            "clusters_empty": sizes["empty"],
            "kmeans_inertia": totals.get("inertia"),
            "clips_per_s": clips / seconds_train if seconds_train else None,
            "lr": self.optimizer.param_groups[0]["lr"],
            "seconds_cluster": totals.get("seconds_cluster", 0.0),
            "seconds_train": seconds_train,
            "files_used": int(valid.sum()),
            "files_skipped": len(s.bad_files),
        }

    def _summary(self, seconds: float) -> dict[str, Any]:
        last = self.state.history[-1] if self.state.history else {}
        return {
            "run_dir": str(self.out_dir),
            "epochs": len(self.state.history),
            "final_loss": last.get("loss"),
            "first_loss": self.state.history[0]["loss"] if self.state.history else None,
            "nmi_prev": last.get("nmi_prev"),
            "files_used": last.get("files_used"),
            "files_skipped": len(self.state.bad_files),
            "skipped": dict(sorted(self.state.bad_files.items())),
            "clips_per_s": last.get("clips_per_s"),
            "seconds": seconds,
            "checkpoint": str(self.checkpoint_path),
            "encoder": str(self.out_dir / ENCODER_EXPORT_NAME),
            "world_size": self.info.world_size,
            "device": str(self.device),
        }

    def _progress(self) -> Progress:
        return Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            disable=not self.info.is_main,
            transient=True,
        )


@torch.no_grad()
def recalibrate_batchnorm(
    module: torch.nn.Module, inputs: Iterable[Any], forward: Callable[[Any], object] | None = None
) -> None:
    """Replace BatchNorm running statistics by their plain average over `inputs` (train-mode forwards).

    `forward(x)` runs one input through `module` (default: `module(x)`), for modules fed other than by a tensor.
    """
    norms = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    was_training = module.training
    module.train()
    for x in inputs:
        (forward or module)(x)
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    module.train(was_training)


def _configure_torch(cfg: DecarConfig) -> None:
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def _merge_resumed_config(saved: DecarConfig, given: DecarConfig) -> DecarConfig:
    """The checkpoint's config wins, except for settings that do not change what was learned."""
    saved_flat, given_flat = _flatten(saved.to_dict()), _flatten(given.to_dict())
    for key in RESUMABLE_OVERRIDES:
        saved_flat[key] = given_flat[key]
    ignored = sorted(k for k in saved_flat if saved_flat[k] != given_flat.get(k))
    if ignored:
        log.warning("resuming with the checkpoint's settings; ignoring given values for: %s", ", ".join(ignored))
    return DecarConfig.from_dict(_unflatten(saved_flat))


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key != "kwargs":
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data, default=str)


def _format_record(record: dict[str, Any]) -> str:
    nmi_text = "–" if record["nmi_prev"] is None else f"{record['nmi_prev']:.3f}"
    return (
        f"epoch {record['epoch']}: loss {record['loss']:.4f}  NMI(prev) {nmi_text}  clusters "
        f"min/med/max {record['clusters_min']}/{record['clusters_median']}/{record['clusters_max']} "
        f"empty {record['clusters_empty']}  {record['clips_per_s'] or 0:.1f} clips/s  "
        f"cluster {record['seconds_cluster']:.1f}s train {record['seconds_train']:.1f}s"
    )
