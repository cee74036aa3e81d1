"""Pretraining loop, the same for every method: the method itself is a plug-in objective (`decar.objectives`).

Per epoch: the objective's start-of-epoch hook (cluster, reset a head, fill a memory bank; it may ask for a
no-grad feature pass over the whole corpus), then steps over the samples in the order the objective asks for.
Each step: crops → normalised log-mel → augmentations on the device → objective loss → SGD (optionally LARS)
at the learning rate the precomputed schedule gives for that step. Every epoch ends with a checkpoint and a
log record of health signals: loss against its chance level ln K, cluster sizes and entropy, NMI with the
previous epoch's assignments and with clip duration and loudness (a shortcut detector), and the share of time
spent clustering. Runs in one process or under torchrun (DDP).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import Progress
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from decar import dist
from decar._console import progress_bar
from decar._io import atomic_write_text, remove_orphan_temporaries
from decar._lock import output_lock
from decar.audio import list_audio_files, list_entry
from decar.augment import build_augmentation
from decar.checkpoint import FORMAT_VERSION, export_encoder, load_checkpoint, save_checkpoint
from decar.cluster import ami, contingency, labels_from_contingency, nmi, size_stats_of_counts
from decar.config import DecarConfig
from decar.data import AudioCrops, Batch, FileFeed, cap_per_folder, scan_files, step_seed
from decar.models import create_model
from decar.models.batchnorm import recalibrate_batchnorm
from decar.moments import RunningMoments
from decar.objectives import EpochContext, Objective, SampleShare, create_objective
from decar.optim import Lars
from decar.plots import plot_training_curves
from decar.schedules import learning_rates
from decar.shards import ShardFeed, is_shard_folder
from decar.shortcuts import ProbeClips, check_shortcuts, clip_seconds, corpus_clips

log = logging.getLogger("decar.pretrain")

CHECKPOINT_NAME = "checkpoint.pt"
ENCODER_EXPORT_NAME = "encoder.safetensors"

SHORTCUT_CHECK_CLIPS = 1500
"""Corpus clips of the end-of-run shortcut checks (about a minute on 2 CPU cores for a d = 512 encoder)."""

STATS_MAX_FILES = 2000
SHORTCUT_BINS = 10
SHORTCUT_EDGE_SAMPLE = 100_000
# Settings a resumed run may change without invalidating what was already trained.
RESUMABLE_OVERRIDES = (
    "optim.epochs",
    "num_threads",
    "data.num_workers",
    "checkpoint_minutes",
    "time_budget_minutes",
    "device",
    "shortcut_check_epochs",
)


class PretrainError(RuntimeError):
    """A run that cannot start or continue; the message says why and what to do."""


@dataclass
class RunState:
    """Everything besides weights that a resumed run needs to continue exactly."""

    epoch: int = 0
    step: int = 0
    epoch_complete: bool = False
    previous_assignments: Tensor | None = None
    norm_stats: tuple[float, float] | None = None
    bad_files: dict[str, str] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch_totals: dict[str, float] = field(default_factory=dict)
    seconds_before: float = 0.0


def build_objective(cfg: DecarConfig, num_samples: int) -> Objective:
    """Encoder from the registry inside the configured objective, on CPU, in float32."""
    encoder = create_model(cfg.model.name, **cfg.model.kwargs)
    return create_objective(cfg.method, cfg.objective, encoder, num_samples)


def fit(cfg: DecarConfig, data: str | Path, out_dir: str | Path, resume: bool = False) -> dict[str, Any]:
    """Pretrain on the audio under `data` (folder or list file), writing to `out_dir`; returns the run summary."""
    info = dist.init_distributed(cfg.device)
    try:
        # Rank 0 holds the run folder's lock: the other ranks write nothing there.
        lock = output_lock(out_dir, "decar pretrain") if info.is_main else contextlib.nullcontext()
        with lock, _caller_torch_settings_kept():
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
    """Owns the objective (encoder + method state), optimiser, schedule, data and run state of one run."""

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

        self.dataset = AudioCrops(
            [],
            cfg.frontend,
            cfg.data.crop_seconds,
            random_crop=cfg.data.random_crop,
            pad_to_crop=cfg.data.pad_to_crop,
            cache_dir=cfg.data.cache_dir,
            seed=cfg.seed,
            pad_mode=cfg.data.pad_mode,
        )
        self.data = data
        self.feed, self.share, durations = self._discover(data)
        self.durations = torch.as_tensor(durations, dtype=torch.float64)
        self.levels = torch.full((self.share.count,), math.nan, dtype=torch.float64)
        if info.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            for orphan in remove_orphan_temporaries(out_dir):
                log.info("removed %s, left by a write that was killed", orphan.name)
            cfg.to_yaml(out_dir / "config.yaml")
            _record_command(out_dir, info.world_size)
            atomic_write_text(out_dir / "files.txt", "".join(f"{list_entry(p)}\n" for p in self.feed.used_names()))
        self.objective = build_objective(cfg, self.share.count).to(self.device)
        self.objective.attach(info, self.share)
        network = self.objective.network
        if cfg.channels_last:
            network.to(memory_format=torch.channels_last)
        self.train_network: torch.nn.Module = network
        if info.is_distributed:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_network = DistributedDataParallel(network, device_ids=device_ids)
        self.optimizer = self._optimizer()
        self.global_batch = self._global_batch()
        self.steps_per_epoch = cfg.optim.steps_per_epoch or max(1, self.usable // self.global_batch)
        o = cfg.optim
        self.schedule = torch.from_numpy(
            learning_rates(o.schedule, o.lr, o.final_lr, o.warmup_epochs, o.epochs, self.steps_per_epoch)
        )
        self.augment: torch.nn.Module | None = None
        self.started, self.steps_here = time.perf_counter(), 0
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
            checkpoint = load_checkpoint(self.checkpoint_path)
            if checkpoint["format_version"] < FORMAT_VERSION:
                raise PretrainError(
                    f"{self.checkpoint_path} was written by an older decar (format {checkpoint['format_version']}); "
                    "its encoder still loads for embedding, but the run cannot be resumed: start a new --out"
                )
            return checkpoint
        if resume and self.info.is_main:
            log.warning("--resume given but %s has no checkpoint yet: starting a new run", self.out_dir)
        return None

    def _discover(self, data: Path) -> tuple[FileFeed | ShardFeed, SampleShare, np.ndarray]:
        """The feed of the data path (a shard folder, or files), the samples whose state this process keeps and
        their durations; unusable files are counted and named."""
        cfg, info = self.cfg, self.info
        workers, pin = cfg.data.num_workers, self.device.type == "cuda"
        if is_shard_folder(data):
            if cfg.data.max_files_per_folder is not None:
                raise PretrainError(
                    f"{data} is a shard folder: data.max_files_per_folder balances a corpus of files; "
                    "choose the clips when sharding (`decar data shard`) instead"
                )
            feed: FileFeed | ShardFeed = ShardFeed(data, self.dataset, info, workers, pin, cfg.data.min_seconds)
            self.state.bad_files = dict(feed.too_short)
            share = SampleShare(feed.count, feed.owned)
            durations = feed.durations[feed.owned.numpy()]
            self.usable = feed.usable_count
        else:
            paths = list_audio_files(data)
            if cfg.data.max_files_per_folder is not None:
                paths = cap_per_folder(paths, cfg.data.max_files_per_folder, cfg.seed)
            if cfg.data.max_files is not None:
                paths = paths[: cfg.data.max_files]
            good, self.state.bad_files, durations = scan_files(paths, cfg.data.min_seconds)
            self.dataset.files = good
            feed = FileFeed(good, self.dataset, info, workers, pin)
            share = SampleShare(len(good))
            self.usable = len(good)
        self.skipped_at_start = set(self.state.bad_files)
        if info.is_main:
            for path, reason in self.state.bad_files.items():
                log.warning("skipping %s: %s", path, reason)
        clusters, half_batch = _largest_k(cfg.objective), cfg.optim.batch_size // 2
        needed = max(2, clusters, half_batch)
        if self.usable < needed:
            reason = f"objective K={clusters}" if clusters >= half_batch else f"half of optim.batch_size={half_batch}"
            raise PretrainError(
                f"{data} has {self.usable} usable audio files ({len(self.state.bad_files)} skipped), fewer than "
                f"{needed} ({reason}); add audio or lower it"
            )
        return feed, share, np.asarray(durations, dtype=np.float64)

    def _global_batch(self) -> int:
        world = self.info.world_size
        global_batch = min(self.cfg.optim.batch_size, self.usable) // world * world
        if global_batch == 0:
            raise PretrainError(f"{self.usable} usable files cannot be split across {world} processes")
        return global_batch

    def _optimizer(self) -> torch.optim.Optimizer:
        o = self.cfg.optim
        groups = self.objective.param_groups()
        sgd = torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
        return Lars(sgd, o.lars_trust) if o.lars else sgd

    def _restore(self, checkpoint: dict[str, Any]) -> None:
        if checkpoint["files"] != self.feed.identity():
            raise PretrainError(
                f"the audio files under the data path differ from those of the checkpoint in {self.out_dir}: "
                "cluster assignments would no longer match; resume with the same data"
            )
        if self.share.sharded:
            checkpoint = {**checkpoint, **self._rank_state(checkpoint)}
        self.objective.load_state_dict(checkpoint["objective"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self._build_augment(checkpoint["frontend_stats"]["std"])
        assert self.augment is not None
        self.augment.load_state_dict(checkpoint["augment"])
        self.levels = checkpoint["levels"].clone()
        saved = checkpoint["schedule"]
        overlap = min(len(saved), len(self.schedule))
        if not torch.equal(saved[:overlap], self.schedule[:overlap]) and self.info.is_main:
            log.warning(
                "the learning-rate schedule changed with the resumed settings; steps from now follow the new one"
            )
        s = checkpoint["run_state"]
        self.state = RunState(
            epoch=s["epoch"],
            step=s["step"],
            epoch_complete=s["epoch_complete"],
            previous_assignments=checkpoint.get("previous_assignments"),
            norm_stats=tuple(checkpoint["frontend_stats"].values()),
            bad_files=dict(s["bad_files"]),
            history=list(s["history"]),
            epoch_totals=dict(s["epoch_totals"]),
            seconds_before=float(s["seconds"]),
        )
        torch.set_rng_state(checkpoint["rng"]["torch"])
        if self.state.epoch_complete:
            self.state.epoch, self.state.step, self.state.epoch_complete = self.state.epoch + 1, 0, False
            self.state.epoch_totals = {}
        if self.info.is_main:
            log.info("resumed %s at epoch %d, step %d", self.out_dir, self.state.epoch, self.state.step)

    def _build_augment(self, std: float) -> None:
        """The augmentations, on the device; one dB of gain moves the log-mel normalised by `std` this much."""
        per_db = self.cfg.frontend.power * math.log(10) / 20 / std
        self.augment = build_augmentation(self.cfg.augment, per_db).to(self.device).train()

    # ------------------------------------------------------------------------------------------------ loop
    def _seconds_spent(self) -> float:
        """Wall time of this run so far, over every process that resumed it."""
        return self.state.seconds_before + time.perf_counter() - self.started

    def _out_of_time(self) -> bool:
        """True once the time budget is spent (a fresh run takes at least one step first)."""
        budget = self.cfg.time_budget_minutes
        started = self.steps_here > 0 or self.state.seconds_before > 0
        return budget is not None and started and self._seconds_spent() > budget * 60

    def run(self) -> dict[str, Any]:
        self.started = time.perf_counter()
        if self.state.norm_stats is None:
            self.state.norm_stats = self._normalisation_stats()
        self.norm_mean, self.norm_std = self.state.norm_stats
        if self.info.is_main and self.state.history:  # a run killed between checkpoint and log gets its log back
            self._write_log()
        if self.augment is None:
            self._build_augment(self.norm_std)
        with self._progress() as progress:
            self.progress = progress
            while self.state.epoch < self.cfg.optim.epochs and not self._out_of_time():
                self._run_epoch()
        summary = self._summary()
        if self.info.is_main:
            export_encoder(self.out_dir / ENCODER_EXPORT_NAME, self._checkpoint_state())
            last = self.state.history[-1] if self.state.history else {}
            if "ami_gain" in last and self.state.step == 0:  # the last epoch was checked and nothing trained since
                summary.update(ami_gain=last["ami_gain"], ami_cut=last["ami_cut"])
            else:
                summary.update(self._shortcut_checks())
            atomic_write_text(self.out_dir / "summary.json", _json(summary))
        return summary

    def _shortcut_checks(self) -> dict[str, float | None]:
        """Loudness and duration shortcuts measured by intervention on the exported encoder (`decar.shortcuts`):
        the logged ami_level and ami_duration cannot tell them from content, since a clip's level and length go
        with what it is. The clips are drawn as `decar shortcuts` and `decar ablate` draw them (seeded by the
        run's seed), and the cut clips are brought back to this run's crop with its pad policy, so the three
        report the same numbers for one model. None when the corpus is tar shards or has too few long files."""
        from decar.embed import load

        clips = self._shortcut_clips
        if clips is None:
            return {"ami_gain": None, "ami_cut": None}
        encoder = load(self.out_dir / ENCODER_EXPORT_NAME, device=self.device)
        data, seed = self.cfg.data, self.cfg.seed
        result = check_shortcuts(
            lambda waves: encoder.embed(waves, batch_size=64), clips, data.crop_seconds, data.pad_mode, seed
        )
        return {"ami_gain": result["ami_gain"], "ami_cut": result["ami_cut"]}

    @functools.cached_property
    def _shortcut_clips(self) -> ProbeClips | None:
        """The corpus clips every shortcut check of this run measures, drawn once; None (said once) when the
        corpus is tar shards or has too few files long enough."""
        if is_shard_folder(self.data):
            log.info("no shortcut checks on shards; run `decar shortcuts` on the source files")
            return None
        seconds = clip_seconds(self.cfg.data.crop_seconds)
        try:
            return corpus_clips(self.data, SHORTCUT_CHECK_CLIPS, seconds, self.cfg.frontend.sample_rate, self.cfg.seed)
        except ValueError as err:
            log.warning("no shortcut checks: %s", err)
            return None

    def _run_epoch(self) -> None:
        state = self.state
        totals = state.epoch_totals
        if state.step == 0:
            totals.clear()
            totals["seconds_extra_pass"] = 0.0
            t0 = time.perf_counter()
            context = EpochContext(
                state.epoch, self.cfg.seed, self.info, self._feature_pass, self.optimizer, self._track
            )
            totals.update(self.objective.start_epoch(context))
            totals["seconds_cluster"] = time.perf_counter() - t0 - totals["seconds_extra_pass"]
        self._train()
        if self.state.step < self.steps_per_epoch:  # stopped by the time budget inside the epoch
            self._save()
            return
        record = self._epoch_record()
        every = self.cfg.shortcut_check_epochs
        if self.info.is_main and every and (state.epoch + 1) % every == 0:
            export_encoder(self.out_dir / ENCODER_EXPORT_NAME, self._checkpoint_state())
            record.update(self._shortcut_checks())
        state.history.append(record)
        assignments = self.objective.assignments()
        state.previous_assignments = None if assignments is None else assignments.detach().cpu().clone()
        state.epoch_complete = True
        self._save()
        if self.info.is_main:
            self._write_log()
            log.info(_format_record(record))
            hint = _speed_hint(record, self.cfg)
            if hint and state.epoch == 0:
                log.info(hint)
        state.epoch, state.step, state.epoch_complete = state.epoch + 1, 0, False
        state.epoch_totals = {}

    def _write_log(self) -> None:
        """log.jsonl and curves.png from the run's history (which the checkpoint carries)."""
        history = self.state.history
        atomic_write_text(self.out_dir / "log.jsonl", "".join(_json(record) + "\n" for record in history))
        plot_training_curves(history, self.out_dir / "curves.png")

    def _to_input(self, batch: Batch) -> Tensor:
        x = (batch.logmel.to(self.device, non_blocking=True) - self.norm_mean) / self.norm_std
        return x.contiguous(memory_format=torch.channels_last) if self.cfg.channels_last else x

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.precision == "bf16")

    def _record_failures(self, failures: list[tuple[int, str]]) -> None:
        for index, reason in failures:
            path = self.feed.name(index)
            if path not in self.state.bad_files:
                self.state.bad_files[path] = reason
                log.warning("skipping %s: %s", path, reason)

    def _record_levels(self, batch: Batch) -> None:
        """Remember each clip's loudness (gathered from every process) for the shortcut NMI."""
        if batch.levels is None:
            return
        if self.share.sharded:  # a rank keeps the levels of its own samples, as it keeps their labels
            rows, kept = self.share.rows(batch.indices)
            self.levels[rows[kept]] = batch.levels.double()[kept]
            return
        rows = torch.stack([batch.indices.double(), batch.levels.double()], dim=1).to(self.device)
        gathered = dist.all_gather_rows(rows, self.info).cpu()
        self.levels[gathered[:, 0].long()] = gathered[:, 1]

    def _normalisation_stats(self) -> tuple[float, float]:
        """Mean/std of log-mel over (up to STATS_MAX_FILES of) the data, computed once and kept in the model."""
        moments = RunningMoments()
        for batch in self.feed.stats_batches(STATS_MAX_FILES):
            self._record_failures(batch.failures)
            moments.update(batch.logmel)
        mine_moments = moments.as_tensor() if float(moments.count) else torch.zeros(3, dtype=torch.float64)
        gathered = dist.all_gather_rows(mine_moments[None].to(self.device), self.info).cpu()
        total = RunningMoments()
        for row in gathered:
            if float(row[0]):
                total.merge(RunningMoments.from_tensor(row))
        return float(total.mean), float(total.std(floor=1e-6))

    def _recalibrate_batchnorm(self, batch_count: int, batch_size: int, views: bool) -> None:
        """Rank 0 re-estimates BatchNorm statistics on random training crops and broadcasts them.

        One process does it, on the same batches whatever the world size, so N processes start the feature
        pass from exactly the statistics a single process would have.
        """
        network = self.objective.network
        if self.info.is_main:
            seed, epoch = self.cfg.seed, self.state.epoch
            loader = self.feed.recalibration_batches(seed, epoch, batch_count, batch_size, views)
            # a batch of one clip (the last, or one mostly of unreadable clips) has no batch statistics
            recalibrate_batchnorm(network, (self._to_input(b) for b in loader if b.indices.numel() > 1))
        for norm in network.modules():
            if isinstance(norm, torch.nn.modules.batchnorm._BatchNorm):
                dist.broadcast(norm.running_mean, self.info)
                dist.broadcast(norm.running_var, self.info)

    @torch.no_grad()
    def _feature_pass(
        self, project: Callable[[Tensor], Tensor], recalibrate_batches: int, views: bool
    ) -> tuple[Tensor, Tensor]:
        """`project` over every sample, in id order on CPU: gathered on every rank when reading files, the rank's own
        samples when reading shards (see `FeaturePass`)."""
        t0 = time.perf_counter()
        info = self.info
        eval_batch = max(1, self.cfg.optim.batch_size)
        if recalibrate_batches > 0:
            self._recalibrate_batchnorm(recalibrate_batches, eval_batch, views)
        network = self.objective.network
        network.eval()
        total = self.feed.feature_batch_count(eval_batch)
        task = self.progress.add_task(f"epoch {self.state.epoch}: features", total=total, visible=info.is_main)
        indices, features = [], []
        for number, batch in enumerate(self.feed.feature_batches(self.state.epoch, eval_batch, views)):
            self._record_failures(batch.failures)
            if batch.indices.numel():
                self._record_levels(batch)
                x = self._to_input(batch)
                if views:
                    seed = step_seed(self.cfg.seed, self.state.epoch, number, info.rank, 9)
                    x = self.augment(x, generator=torch.Generator().manual_seed(seed))
                with self._autocast():
                    features.append(project(x).float())
                indices.append(batch.indices.to(self.device))
            self.progress.advance(task)
        self.progress.remove_task(task)
        network.train()
        local_idx = torch.cat(indices) if indices else torch.empty(0, dtype=torch.long, device=self.device)
        width = features[0].shape[1] if features else 0
        local_feat = torch.cat(features) if features else torch.empty(0, width, device=self.device)
        if self.share.sharded:
            order = torch.argsort(local_idx)
            self.state.epoch_totals["seconds_extra_pass"] += time.perf_counter() - t0
            return local_idx[order].cpu(), local_feat[order].cpu()
        all_idx = dist.all_gather_rows(local_idx, info).cpu()
        all_feat = dist.all_gather_rows(local_feat, info).cpu()
        order = torch.argsort(all_idx)
        # Files that failed on another rank were logged there; count them here too.
        missing = torch.ones(self.feed.count, dtype=torch.bool)
        missing[all_idx] = False
        elsewhere = torch.nonzero(missing).flatten().tolist()
        self._record_failures([(i, "could not be decoded (reported by another process)") for i in elsewhere])
        self.state.epoch_totals["seconds_extra_pass"] += time.perf_counter() - t0
        return all_idx[order], all_feat[order]

    def _set_learning_rate(self) -> float:
        step = self.state.epoch * self.steps_per_epoch + self.state.step
        if step >= len(self.schedule):
            raise PretrainError(f"global step {step} lies beyond the {len(self.schedule)}-step schedule")
        lr = float(self.schedule[step])
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr

    def _train(self) -> None:
        cfg, state, totals = self.cfg, self.state, self.state.epoch_totals
        self.train_network.train()
        steps = self.steps_per_epoch
        batches = self.feed.train_batches(
            cfg.seed, state.epoch, state.step, steps, self.global_batch, self.objective.sample_order
        )
        task = self.progress.add_task(f"epoch {state.epoch}: train", total=steps, visible=self.info.is_main)
        self.progress.advance(task, state.step)
        last_save = time.perf_counter()
        tick = time.perf_counter()
        for batch in batches:
            self._record_failures(batch.failures)
            self._record_levels(batch)
            if self._too_few_clips(batch):  # (nearly) all unreadable: no batch statistics, no step
                state.step += 1
                self.steps_here += 1
                self.progress.advance(task)
                continue
            torch.manual_seed(step_seed(cfg.seed, state.epoch, state.step, 5))
            x = self._views(self._to_input(batch))
            with self._autocast():
                outputs = self.objective(self.train_network, x, batch.indices.to(self.device))
            loss = outputs["loss"]
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {loss.item()} at epoch {state.epoch} step {state.step}; stopping")
            lr = self._set_learning_rate()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.optim.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.objective.network.parameters(), cfg.optim.grad_clip)
            self.optimizer.step()
            state.step += 1
            self.steps_here += 1
            now = time.perf_counter()
            global_clips = len(batch.indices) * self.info.world_size
            totals["loss_sum"] = totals.get("loss_sum", 0.0) + loss.item() * global_clips
            totals["clips"] = totals.get("clips", 0) + global_clips
            totals["seconds_train"] = totals.get("seconds_train", 0.0) + now - tick
            totals["lr"] = lr
            tick = now
            self.progress.update(task, advance=1, description=f"epoch {state.epoch}: train loss {loss.item():.3f}")
            out_of_time, save_due = self._agreed(self._out_of_time(), now - last_save > cfg.checkpoint_minutes * 60)
            if out_of_time:
                break
            if save_due and state.step < steps:
                self._save()
                last_save = time.perf_counter()
                tick = last_save
        self.progress.remove_task(task)

    def _too_few_clips(self, batch: Batch) -> bool:
        """True when this step's batch holds fewer than two readable clips on any rank (then every rank skips)."""
        short = torch.tensor([float(batch.indices.numel() < 2)], device=self.device)
        if self.info.is_distributed:
            short = dist.all_reduce_sum(short, self.info)
        if bool(short.item()) and self.info.is_main:
            log.warning(
                "epoch %d step %d skipped: its batch holds fewer than two readable clips",
                self.state.epoch,
                self.state.step,
            )
        return bool(short.item())

    def _agreed(self, *flags: bool) -> tuple[bool, ...]:
        """Rank 0's decisions (stop, checkpoint now), on every rank: clocks differ, and a rank that stops or
        saves alone would leave the others waiting in a collective."""
        decisions = torch.tensor([float(flag) for flag in flags], device=self.device)
        return tuple(bool(value) for value in dist.broadcast(decisions, self.info).tolist())

    # ------------------------------------------------------------------------------------- state and logs
    @contextlib.contextmanager
    def _track(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        """A progress bar (main process only) for a phase of an objective, removed when the phase ends."""
        task = self.progress.add_task(description, total=total, visible=self.info.is_main)
        try:
            yield lambda n: self.progress.advance(task, n)
        finally:
            self.progress.remove_task(task)

    def _views(self, crops: Tensor) -> Tensor:
        """The objective's augmented views of this step's crops, stacked view after view."""
        state = self.state
        views = []
        for view in range(self.objective.views):
            salt = (1,) if view == 0 else (1, view)
            generator = torch.Generator().manual_seed(
                step_seed(self.cfg.seed, state.epoch, state.step, self.info.rank, *salt)
            )
            views.append(self.augment(crops, generator=generator))
        return torch.cat(views)

    def _checkpoint_state(self) -> dict[str, Any]:
        s = self.state
        mean, std = s.norm_stats or (0.0, 1.0)
        return {
            "config": self.cfg.to_dict(),
            "encoder": self.objective.encoder_to_export.state_dict(),
            "objective": self.objective.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "augment": self.augment.state_dict() if self.augment is not None else {},
            "schedule": self.schedule,
            "frontend_stats": {"mean": mean, "std": std},
            "epoch": s.epoch,
            "previous_assignments": s.previous_assignments,
            "levels": self.levels,
            "files": self.feed.identity(),
            "world_size": self.info.world_size,
            "rng": {"torch": torch.get_rng_state()},
            "run_state": {
                "epoch": s.epoch,
                "step": s.step,
                "epoch_complete": s.epoch_complete,
                "bad_files": s.bad_files,
                "history": s.history,
                "epoch_totals": s.epoch_totals,
                "seconds": self._seconds_spent(),
            },
        }

    def _save(self) -> None:
        if not self.share.sharded:
            if self.info.is_main:
                save_checkpoint(self.checkpoint_path, self._checkpoint_state())
            return
        # Reading shards, each rank's objective state (its samples' bank rows and labels) is its own: each rank
        # saves it under this save's step, then rank 0 the checkpoint naming that step, then the ranks remove
        # their older files. A run killed anywhere in between resumes from a consistent set.
        state = self._checkpoint_state()
        key = _rank_state_key(state["run_state"])
        own = {name: state[name] for name in ("objective", "levels", "previous_assignments")}
        save_checkpoint(self._rank_state_path(key), own)
        dist.barrier(self.info)
        if self.info.is_main:
            save_checkpoint(self.checkpoint_path, {**state, "rank_state": key})
        dist.barrier(self.info)
        for older in self.out_dir.glob(f"rank{self.info.rank:03d}-*.pt"):
            if older != self._rank_state_path(key):
                older.unlink(missing_ok=True)

    def _rank_state_path(self, key: str) -> Path:
        return self.out_dir / f"rank{self.info.rank:03d}-{key}.pt"

    def _rank_state(self, checkpoint: dict[str, Any]) -> dict[str, Any]:
        """This rank's own objective state, saved with the checkpoint that names it."""
        if checkpoint.get("world_size") != self.info.world_size:
            raise PretrainError(
                f"{self.checkpoint_path} was written by {checkpoint.get('world_size')} processes reading shards, each "
                f"keeping the state of its own samples; resume it with the same number, not {self.info.world_size}"
            )
        path = self._rank_state_path(checkpoint["rank_state"])
        if not path.is_file():
            raise PretrainError(f"{path} is missing: rank {self.info.rank}'s state for {self.checkpoint_path}")
        return load_checkpoint(path)

    def _epoch_record(self) -> dict[str, Any]:
        s, totals = self.state, self.state.epoch_totals
        health = self.objective.health()
        seconds_train = totals.get("seconds_train", 0.0)
        in_steps = float(health.pop("seconds_cluster_in_steps", 0.0) or 0.0)
        seconds_cluster = totals.get("seconds_cluster", 0.0) + in_steps
        seconds_pass = totals.get("seconds_extra_pass", 0.0)
        wall = seconds_train + totals.get("seconds_cluster", 0.0) + seconds_pass
        clips = totals.get("clips", 0)
        record: dict[str, Any] = {
            "epoch": s.epoch,
            "loss": totals.get("loss_sum", 0.0) / max(clips, 1),
            "loss_chance": self.objective.chance_loss(),
            "lr": totals.get("lr"),
            "kmeans_inertia": totals.get("kmeans_inertia"),
            "clips_per_s": clips / wall if wall else None,
            "seconds_cluster": seconds_cluster,
            "seconds_extra_pass": seconds_pass,
            "seconds_train": seconds_train - in_steps,
            "share_clustering": (seconds_cluster + seconds_pass) / wall if wall else None,
            "files_used": self.usable - len(s.bad_files.keys() - self.skipped_at_start),
            "files_skipped": len(s.bad_files),
            **assignment_health(
                self.objective.assignments(),
                s.previous_assignments,
                self.objective.num_clusters(),
                self.durations,
                self.levels,
                self.info if self.share.sharded and self.info.is_distributed else None,
            ),
            **health,
        }
        return record

    def _summary(self) -> dict[str, Any]:
        last = self.state.history[-1] if self.state.history else {}
        return {
            "run_dir": str(self.out_dir),
            "method": self.cfg.method,
            "epochs": len(self.state.history),
            "final_loss": last.get("loss"),
            "first_loss": self.state.history[0]["loss"] if self.state.history else None,
            "loss_chance": last.get("loss_chance"),
            "nmi_prev": last.get("nmi_prev"),
            "ami_duration": last.get("ami_duration"),
            "ami_level": last.get("ami_level"),
            "ami_gain": None,
            "ami_cut": None,
            "files_used": last.get("files_used"),
            "files_skipped": len(self.state.bad_files),
            "skipped": dict(sorted(self.state.bad_files.items())),
            "clips_per_s": last.get("clips_per_s"),
            "share_clustering": last.get("share_clustering"),
            "seconds": self._seconds_spent(),
            "checkpoint": str(self.checkpoint_path),
            "encoder": str(self.out_dir / ENCODER_EXPORT_NAME),
            "world_size": self.info.world_size,
            "device": str(self.device),
            "stopped_by_time_budget": self.state.epoch < self.cfg.optim.epochs,
            "global_step": self.state.epoch * self.steps_per_epoch + self.state.step,
        }

    def _progress(self) -> Progress:
        return progress_bar(disable=not self.info.is_main)


def assignment_health(
    assignments: Tensor | None,
    previous: Tensor | None,
    num_clusters: int,
    durations: Tensor,
    levels: Tensor,
    info: dist.DistInfo | None = None,
) -> dict[str, float | int | None]:
    """Cluster statistics of one epoch's pseudo-labels, and how much they encode things they should not.

    ``ami_duration`` and ``ami_level`` are the mutual information, adjusted for chance, between the assignments
    and the clip's duration and loudness, each cut into SHORTCUT_BINS quantile bins: near 0 when the clusters
    ignore them, high when a method has found the shortcut of clustering on padding or level instead of
    content. (Unadjusted NMI would not be near 0: with K = 1024 its chance level is 0.01 on 98k clips, 0.23 on
    4k.)

    Every score is computed from counts (cluster sizes, contingency tables), so with ``info`` (pretraining that
    reads shards, each process passing its own samples' values) only counts cross processes, and the scores
    are those of the whole corpus; the quantile edges then come from an evenly spaced sample of every process.
    """
    empty: dict[str, float | int | None] = dict.fromkeys(
        ("clusters_min", "clusters_median", "clusters_max", "clusters_empty", "assignment_entropy", "nmi_prev"),
    )
    if assignments is None:
        return {**empty, "ami_duration": None, "ami_level": None}
    labels = assignments.detach().cpu()
    known = labels >= 0
    counts = _summed(torch.bincount(labels[known], minlength=num_clusters), info)
    if not int(counts.sum()):
        return {**empty, "ami_duration": None, "ami_level": None}
    sizes = size_stats_of_counts(counts)
    shares = counts.double() / int(counts.sum())
    entropy = float(-(shares[shares > 0] * shares[shares > 0].log()).sum() / math.log(num_clusters))
    nmi_prev = None
    if previous is not None and previous.shape == labels.shape:
        both = known & (previous >= 0)
        table = _summed(contingency(labels[both], previous[both], num_clusters, num_clusters), info)
        nmi_prev = nmi(*labels_from_contingency(table)) if int(table.sum()) else None
    return {
        "clusters_min": sizes["min"],
        "clusters_median": sizes["median"],
        "clusters_max": sizes["max"],
        "clusters_empty": sizes["empty"],
        "assignment_entropy": entropy,
        "nmi_prev": nmi_prev,
        "ami_duration": _binned_ami(labels, known, durations, num_clusters, info),
        "ami_level": _binned_ami(labels, known, levels, num_clusters, info),
    }


SLOW_PASS_SHARE = 0.3
"""Above this share of an epoch spent on the extra pass and clustering, the log points to the remedies."""


def _speed_hint(record: dict[str, Any], cfg: DecarConfig) -> str | None:
    """What would cut an epoch's clustering stall, when it is large: a log-mel cache, or a method without it."""
    share = record.get("share_clustering") or 0.0
    if share < SLOW_PASS_SHARE:
        return None
    remedies = []
    if cfg.data.cache_dir is None and record.get("seconds_extra_pass", 0.0) > 0:
        remedies.append("data.cache_dir=DIR caches each clip's log-mel, so the pass stops decoding audio")
    if cfg.method == "deepcluster_v1":
        remedies.append("method dcv2 or online (configs/decar_v2.yaml, decar_online.yaml) need no pass per epoch")
    if not remedies:
        return None
    return f"the extra pass and clustering took {share:.0%} of this epoch; " + "; ".join(remedies)


def _binned_ami(
    labels: Tensor, known: Tensor, values: Tensor, num_clusters: int, info: dist.DistInfo | None
) -> float | None:
    """AMI between labels and ``values`` cut into SHORTCUT_BINS quantile bins (rows with both known)."""
    usable = known & torch.isfinite(values)
    data = values[usable]
    if info is not None:  # edges from an evenly spaced sample of every process's values
        share = SHORTCUT_EDGE_SAMPLE // info.world_size
        spaced = data[torch.linspace(0, len(data) - 1, min(share, len(data))).long()] if len(data) else data
        data_for_edges = dist.all_gather_rows(spaced.to(info.device), info).cpu()
    else:
        data_for_edges = data
    if len(data_for_edges) < 2:
        return None
    edges = np.unique(np.quantile(data_for_edges.numpy(), np.linspace(0, 1, SHORTCUT_BINS + 1)[1:-1]))
    bins = torch.from_numpy(np.searchsorted(edges, data.numpy(), side="right"))
    table = _summed(contingency(labels[usable], bins, num_clusters, len(edges) + 1), info)
    return ami(*labels_from_contingency(table)) if int(table.sum()) >= 2 else None


def _summed(counts: Tensor, info: dist.DistInfo | None) -> Tensor:
    """``counts`` summed over the processes (on their device: NCCL sums no CPU tensor); as is without ``info``."""
    if info is None:
        return counts
    return dist.all_reduce_sum(counts.to(info.device), info).cpu()


def _record_command(out_dir: Path, world_size: int) -> None:
    """Append this start of the run (time, processes, command line) to OUT/commands.txt: how it was made."""
    path = out_dir / "commands.txt"
    previous = path.read_text(encoding="utf-8") if path.is_file() else ""
    line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} processes={world_size}: {shlex.join(sys.argv)}\n"
    atomic_write_text(path, previous + line)


def _rank_state_key(run_state: dict[str, Any]) -> str:
    """Names the objective state a rank saved with one checkpoint: its epoch, step and whether the epoch ended."""
    return f"e{run_state['epoch']}-s{run_state['step']}-{int(run_state['epoch_complete'])}"


def _largest_k(objective: Any) -> int:
    """The largest number of clusters an objective config asks for (0 when it names none)."""
    ks = [getattr(objective, "num_clusters", 0), *getattr(objective, "num_prototypes", [])]
    return max(ks)


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
    def number(key: str) -> str:
        value = record.get(key)
        return "–" if value is None else f"{value:.3f}"

    checks = ""
    if record.get("ami_gain") is not None or record.get("ami_cut") is not None:
        checks = f"(by intervention: gain {number('ami_gain')} cut {number('ami_cut')})  "
    return (
        f"epoch {record['epoch']}: loss {record['loss']:.4f} (chance {record['loss_chance']:.3f})  "
        f"NMI prev {number('nmi_prev')}  AMI duration {number('ami_duration')} level {number('ami_level')}  "
        f"{checks}"
        f"clusters min/med/max {record['clusters_min']}/{record['clusters_median']}/{record['clusters_max']} "
        f"empty {record['clusters_empty']}  {record['clips_per_s'] or 0:.1f} clips/s  "
        f"cluster {record['seconds_cluster']:.1f}s pass {record['seconds_extra_pass']:.1f}s "
        f"train {record['seconds_train']:.1f}s"
    )
