"""Training data: audio files → (optionally cached) log-mel crops, with bad files skipped and counted.

Every random draw (crop position, augmentation) is seeded by (run seed, epoch, position in the epoch), so a
resumed or differently sharded run sees exactly the same examples as an uninterrupted single-process one.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from decar import dist
from decar._io import atomic_write_bytes
from decar.audio import AudioError, audio_info, load_audio
from decar.frontend import FrontendConfig, LogMelSpectrogram

PAD_MODES = ("silence", "tile")
"""How a clip shorter than the crop is brought to it: zero-padded (the paper) or repeated."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Example:
    """One loaded item: unnormalised log-mel (frames, n_mels), its dataset index, or the reason it failed.

    ``level`` is the mean log-mel of the crop's own frames (before any padding): how loud the clip is, logged
    against the cluster assignments to catch a method that clusters on loudness.
    """

    index: int
    logmel: torch.Tensor | None
    error: str | None = None
    level: float = math.nan


@dataclass
class Batch:
    """Log-mels padded to a common length, (B, 1, T, F), with dataset indices, levels and the failures met."""

    logmel: torch.Tensor
    indices: torch.Tensor
    failures: list[tuple[int, str]]
    levels: torch.Tensor | None = None


def scan_files(paths: Sequence[Path], min_seconds: float) -> tuple[list[Path], dict[str, str], list[float]]:
    """Keep files whose header reads and that are long enough: them, {path: reason} for the rest, and the kept
    files' durations in seconds.

    Only headers are read, so this is fast; files that fail later on decoding are caught in `__getitem__`.
    """
    good, bad, durations = [], {}, []
    for path in paths:
        try:
            info = audio_info(path)
        except AudioError as err:
            bad[str(path)] = err.reason
            continue
        if info.duration_s < min_seconds:
            bad[str(path)] = f"too short ({info.duration_s:.3f} s < data.min_seconds={min_seconds})"
            continue
        good.append(path)
        durations.append(info.duration_s)
    return good, bad, durations


def cap_per_folder(paths: Sequence[Path], cap: int, seed: int) -> list[Path]:
    """At most ``cap`` files of each top-level folder below the folder all ``paths`` share, a seeded draw; the
    kept files stay in their given order. Files directly in that shared folder form one group of their own."""
    if len(paths) < 2:
        return list(paths)
    root = Path(os.path.commonpath([str(Path(p).absolute()) for p in paths]))
    groups: dict[str, list[int]] = {}
    for index, path in enumerate(paths):
        parts = Path(path).absolute().relative_to(root).parts
        groups.setdefault(parts[0] if len(parts) > 1 else "", []).append(index)
    rng = seeded_rng(seed)
    kept: set[int] = set()
    for name in sorted(groups):
        members = groups[name]
        kept.update(members if len(members) <= cap else rng.choice(members, size=cap, replace=False).tolist())
    return [path for index, path in enumerate(paths) if index in kept]


def seeded_rng(*keys: int) -> np.random.Generator:
    """A numpy generator that is a pure function of integer keys (run seed, epoch, position, ...)."""
    return np.random.default_rng([abs(int(k)) for k in keys])


class AudioCrops(Dataset):
    """Log-mel crops of audio files for pretraining.

    Items are requested as (dataset index, position in epoch) pairs; the position seeds the crop. `mode` is
    "train" (random crop), "features" (centre crop) or "stats" (centre crop, no padding: for normalisation
    statistics). Augmentations run later, on the normalised batch (see `decar.augment`).

    Args:
        files: audio paths (already scanned).
        frontend: log-mel settings.
        crop_seconds: crop length; shorter files are brought to it when `pad_to_crop`.
        pad_mode: "silence" (zero-pad the waveform) or "tile" (repeat the clip's frames).
        cache_dir: where whole-file log-mels are cached as .npy (None: decode every time).
    """

    def __init__(
        self,
        files: Sequence[Path],
        frontend: FrontendConfig,
        crop_seconds: float,
        random_crop: bool = True,
        pad_to_crop: bool = True,
        cache_dir: str | Path | None = None,
        seed: int = 0,
        pad_mode: str = "silence",
    ) -> None:
        self.files = [Path(f) for f in files]
        self.frontend_config = frontend
        self.logmel = LogMelSpectrogram(frontend)
        self.crop_frames = frontend.frames(round(crop_seconds * frontend.sample_rate))
        self.crop_seconds = crop_seconds
        self.random_crop = random_crop
        self.pad_to_crop = pad_to_crop
        self.cache_dir = Path(cache_dir) if cache_dir else None
        if pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode must be silence or tile, got {pad_mode!r}")
        self.pad_mode = pad_mode
        self.seed = seed
        self.epoch = 0
        self.mode = "train"
        self._cache_key = hashlib.sha1(json.dumps(asdict(frontend), sort_keys=True).encode()).hexdigest()[:12]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, item: tuple[int, int] | int) -> Example:
        index, position = item if isinstance(item, tuple) else (item, item)
        path = self.files[index]
        try:
            logmel = self._load_crop(path, index, position)
        except AudioError as err:
            return Example(index=index, logmel=None, error=err.reason)
        return self._example(logmel, index)

    def example_from_wave(self, wave: np.ndarray, index: int, position: int) -> Example:
        """The Example of a whole decoded clip (what a shard holds), cropped as `__getitem__` crops a file."""
        config = self.frontend_config
        start = self._crop_start(config.frames(len(wave)), index, position)
        crop_samples = (self.crop_frames - 1) * config.hop_length + config.win_length
        first = start * config.hop_length
        return self._example(self._compute(wave[first : first + crop_samples])[: self.crop_frames], index)

    def _example(self, logmel: torch.Tensor, index: int) -> Example:
        """The crop with its level, brought to the crop length when asked (silence or tiling)."""
        level = float(logmel.mean()) if logmel.numel() else math.nan
        if self.pad_to_crop and self.mode != "stats" and logmel.shape[0] < self.crop_frames:
            if self.pad_mode == "tile" and logmel.shape[0] > 0:
                logmel = logmel.repeat(math.ceil(self.crop_frames / logmel.shape[0]), 1)[: self.crop_frames]
            else:
                logmel = pad_frames(logmel, self.crop_frames, self.frontend_config)
        return Example(index=index, logmel=logmel, level=level)

    def _crop_start(self, total_frames: int, index: int, position: int) -> int:
        spare = total_frames - self.crop_frames
        if spare <= 0:
            return 0
        if self.mode == "train" and self.random_crop:
            return int(seeded_rng(self.seed, self.epoch, position, 0).integers(0, spare + 1))
        return spare // 2

    def _load_crop(self, path: Path, index: int, position: int) -> torch.Tensor:
        if self.cache_dir is not None:
            logmel = self._crop_of(self._cached_logmel(path), index, position)
        else:
            hop = self.frontend_config.hop_length
            info = audio_info(path)
            total_frames = self.frontend_config.frames(round(info.duration_s * self.frontend_config.sample_rate))
            start = self._crop_start(total_frames, index, position)
            crop_samples = (self.crop_frames - 1) * hop + self.frontend_config.win_length
            wave = load_audio(
                path,
                self.frontend_config.sample_rate,
                offset_s=start * hop / self.frontend_config.sample_rate,
                duration_s=crop_samples / self.frontend_config.sample_rate,
            )
            logmel = self._compute(wave)[: self.crop_frames]
        return logmel

    def _compute(self, wave: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            return self.logmel(torch.from_numpy(wave), normalize=False)[0, 0]

    def _cached_logmel(self, path: Path) -> np.ndarray:
        return self.cached_logmel(file_version(path), lambda: load_audio(path, self.frontend_config.sample_rate))

    def cached_logmel(self, source: str, decode: Callable[[], np.ndarray]) -> np.ndarray:
        """The whole clip's log-mel from the cache (``source`` names the clip and its version), computed from
        ``decode()`` and stored on a miss."""
        assert self.cache_dir is not None
        key = hashlib.sha1(source.encode()).hexdigest()
        cached = self.cache_dir / self._cache_key / f"{key}.npy"
        if cached.is_file():
            try:
                return np.load(cached, mmap_mode="r")
            except (OSError, ValueError):
                log.warning("rebuilding unreadable cache entry %s for %s", cached, source)
        logmel = self._compute(decode()).numpy()
        atomic_write_bytes(cached, _npy_bytes(logmel))
        return logmel

    def example_from_logmel(self, full: np.ndarray, index: int, position: int) -> Example:
        """The Example of a whole clip's cached log-mel, cropped as `__getitem__` crops a cached file."""
        return self._example(self._crop_of(full, index, position), index)

    def _crop_of(self, full: np.ndarray, index: int, position: int) -> torch.Tensor:
        start = self._crop_start(full.shape[0], index, position)
        return torch.from_numpy(np.array(full[start : start + self.crop_frames]))


def file_version(path: Path) -> str:
    """Names a file as it is now (path, size, modification time): a cache key that a changed file misses."""
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def pad_frames(logmel: torch.Tensor, frames: int, frontend: FrontendConfig) -> torch.Tensor:
    """Pad (T, F) to `frames` with the log of silence, i.e. what zero-padding the waveform would give."""
    fill = math.log(frontend.log_floor)
    padded = torch.full((frames, logmel.shape[1]), fill, dtype=logmel.dtype)
    padded[: logmel.shape[0]] = logmel
    return padded


class BatchCollator:
    """Stack Examples into a Batch, padding to the longest crop and setting failures aside."""

    def __init__(self, frontend: FrontendConfig) -> None:
        self.frontend = frontend

    def __call__(self, examples: list[Example]) -> Batch:
        good = [e for e in examples if e.logmel is not None]
        failures = [(e.index, e.error or "unknown error") for e in examples if e.logmel is None]
        if not good:
            empty = torch.empty(0, dtype=torch.long)
            return Batch(torch.empty(0, 1, 0, self.frontend.n_mels), empty, failures, torch.empty(0))
        longest = max(e.logmel.shape[0] for e in good)
        stacked = torch.stack([pad_frames(e.logmel, longest, self.frontend) for e in good])
        indices = torch.tensor([e.index for e in good], dtype=torch.long)
        levels = torch.tensor([e.level for e in good], dtype=torch.float32)
        return Batch(stacked[:, None], indices, failures, levels)


def step_seed(*keys: int) -> int:
    """Hash integer keys (seed, epoch, step, ...) into one 63-bit seed: torch.Generator takes a single integer."""
    return int(seeded_rng(*keys).integers(0, 2**63 - 1))


def worker_init(_: int) -> None:
    """DataLoader workers each use one thread: the parallelism is across workers."""
    torch.set_num_threads(1)


SampleOrder = Callable[[int, int, torch.Generator], torch.Tensor]
"""(epoch, count, generator) → ``count`` sample ids: the order an objective wants its samples in."""


class FileFeed:
    """Pretraining batches from a list of audio files, read by random access: any sample, in any order.

    Every process may see any sample, so per-sample state (memory banks, labels) is kept whole on every process
    (``sharded`` False) and feature passes are gathered. The batches of a shard folder come from
    :class:`decar.shards.ShardFeed`, which has the same methods.
    """

    sharded = False

    def __init__(
        self, files: Sequence[Path], dataset: AudioCrops, info: dist.DistInfo, workers: int, pin: bool
    ) -> None:
        self.files, self.dataset, self.info = files, dataset, info
        self.workers, self.pin = workers, pin

    @property
    def count(self) -> int:
        return len(self.files)

    def name(self, index: int) -> str:
        return str(self.files[index])

    def used_names(self) -> list[str]:
        return [str(path) for path in self.files]

    def identity(self) -> list[str]:
        """What a resumed run must find again: the same files in the same order (assignments are by index)."""
        return self.used_names()

    def _loader(self, batches: list[list[tuple[int, int]]]) -> DataLoader:
        return DataLoader(
            self.dataset,
            batch_sampler=batches,
            collate_fn=BatchCollator(self.dataset.frontend_config),
            num_workers=self.workers,
            worker_init_fn=worker_init if self.workers else None,
            pin_memory=self.pin,
        )

    def stats_batches(self, max_clips: int) -> Iterable[Batch]:
        """This process's share of up to ``max_clips`` clips spread evenly over the list, uncropped and unpadded."""
        self.dataset.mode = "stats"
        count = self.count
        chosen = sorted({round(i * count / min(count, max_clips)) for i in range(min(count, max_clips))})
        return self._loader([[(i, i)] for i in chosen[self.info.rank :: self.info.world_size]])

    def recalibration_batches(
        self, seed: int, epoch: int, batch_count: int, batch_size: int, views: bool
    ) -> Iterable[Batch]:
        """Random crops (training crops when ``views``) for BatchNorm statistics, the same on any number of
        processes."""
        self.dataset.mode, self.dataset.epoch = ("train" if views else "features"), epoch
        generator = torch.Generator().manual_seed(step_seed(seed, epoch, 6))
        count = min(self.count, batch_size * batch_count)
        subset = torch.randperm(self.count, generator=generator)[:count].tolist()
        return self._loader([[(i, i) for i in subset[k : k + batch_size]] for k in range(0, count, batch_size)])

    def feature_batches(self, epoch: int, batch_size: int, views: bool) -> Iterable[Batch]:
        """This process's share of every sample, once: centre crops, or training crops when ``views``."""
        self.dataset.mode, self.dataset.epoch = ("train" if views else "features"), epoch
        mine = list(range(self.info.rank, self.count, self.info.world_size))
        return self._loader([[(i, i) for i in mine[k : k + batch_size]] for k in range(0, len(mine), batch_size)])

    def feature_batch_count(self, batch_size: int) -> int:
        return math.ceil(len(range(self.info.rank, self.count, self.info.world_size)) / batch_size)

    def train_batches(
        self, seed: int, epoch: int, first_step: int, steps: int, global_batch: int, order: SampleOrder
    ) -> Iterable[Batch]:
        """This process's share of the global batches of steps [first_step, steps) of an epoch, in ``order``."""
        self.dataset.mode, self.dataset.epoch = "train", epoch
        generator = torch.Generator().manual_seed(step_seed(seed, epoch, 4))
        ids = order(epoch, steps * global_batch, generator)
        local = global_batch // self.info.world_size
        batches = []
        for step in range(first_step, steps):
            first = step * global_batch + self.info.rank * local
            batches.append([(int(ids[p]), p) for p in range(first, first + local)])
        return self._loader(batches)
