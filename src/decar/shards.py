"""Audio in tar shards (the WebDataset layout) and a deterministic, resumable stream over them.

Millions of small files cost a file-system round trip each; a shard holds ``shard_size`` clips in one
sequential read. Layout of a shard folder::

    shard-000000.tar      <id>.flac (16 kHz mono FLAC, or the rate asked; or <id>.npy, 16-bit PCM, with
                          encoding "pcm16": larger, and read without decoding) and <id>.json for each clip
    shard-000000.json     this shard's sample count, ids, durations, sources and skipped files
    index.json            every shard, in order, with its first global id and count, and the totals

Global sample ids run over the shards in order, so a sample is the same id on every machine (what memory
banks and assignments are keyed by). Shard i holds the decodable files among input files
[i * shard_size, (i + 1) * shard_size): its content never depends on other shards, so a killed `decar data
shard` resumes by skipping the shards already written (each is written to a temp file, then renamed).
Any WebDataset reader reads the shards; :class:`ShardStream` reads them with the determinism pretraining needs.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import os
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from rich.console import Console
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from decar._console import progress_bar
from decar._io import atomic_write, atomic_write_text
from decar.audio import AudioError, list_audio_files, load_audio
from decar.data import AudioCrops, Batch, BatchCollator, Example, file_version, step_seed, worker_init

INDEX_NAME = "index.json"
FORMAT = 1
ENCODINGS = ("flac", "pcm16")


class ShardError(ValueError):
    """A shard folder that cannot be written or read as asked; the message names the file."""


@dataclass(frozen=True)
class ShardInfo:
    """One shard of an index: file name, first global id, sample count."""

    name: str
    first_id: int
    samples: int


def _shard_name(number: int) -> str:
    return f"shard-{number:06d}"


def _encoded(wave: np.ndarray, sample_rate: int, encoding: str) -> tuple[str, bytes]:
    """(member extension, bytes) of a clip: FLAC, or 16-bit PCM as .npy (what FLAC holds, without compression)."""
    buffer = io.BytesIO()
    if encoding == "pcm16":
        np.save(buffer, np.round(np.clip(wave, -1.0, 32767 / 32768) * 32768).astype(np.int16))
        return "npy", buffer.getvalue()
    sf.write(buffer, np.clip(wave, -1.0, 1.0), sample_rate, format="FLAC", subtype="PCM_16")
    return "flac", buffer.getvalue()


def _write_shard(out: Path, number: int, files: Sequence[Path], sample_rate: int, encoding: str) -> dict[str, Any]:
    """Decode `files`, write the decodable ones as shard `number`; its sidecar record (also written)."""
    try:
        import webdataset as wds  # writing only: reading needs no more than tarfile
    except ImportError as err:
        raise ShardError("writing shards needs webdataset: pip install 'decar[shards]' (or webdataset)") from err

    record: dict[str, Any] = {"samples": 0, "sources": [], "durations": [], "skipped": {}}
    payload = io.BytesIO()
    with wds.TarWriter(payload, mtime=0.0) as writer:  # mtime 0: the same files give the same bytes
        for path in files:
            try:
                wave = load_audio(path, sample_rate)
            except AudioError as err:
                record["skipped"][str(path)] = err.reason
                continue
            key = f"{record['samples']:06d}"
            meta = {"source": str(path), "duration_s": len(wave) / sample_rate, "sample_rate": sample_rate}
            extension, data = _encoded(wave, sample_rate, encoding)
            writer.write({"__key__": key, extension: data, "json": json.dumps(meta).encode()})
            record["samples"] += 1
            record["sources"].append(str(path))
            record["durations"].append(meta["duration_s"])
    name = _shard_name(number)
    atomic_write(out / f"{name}.tar", lambda handle: handle.write(payload.getvalue()))
    atomic_write_text(out / f"{name}.json", json.dumps(record) + "\n")
    return record


def write_shards(
    inputs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    shard_size: int = 1000,
    sample_rate: int = 16000,
    console: Console | None = None,
    encoding: str = "flac",
) -> dict[str, Any]:
    """Write the audio of ``inputs`` (files, folders, list files) as tar shards with an index; see the module
    docstring. Bad files are skipped, counted and named in the index; a rerun keeps the shards already written.

    Returns:
        The index (also written to OUT/index.json).
    """
    if shard_size < 1:
        raise ShardError(f"shard_size must be >= 1, got {shard_size}")
    if encoding not in ENCODINGS:
        raise ShardError(f"unknown encoding {encoding!r}; choose from {', '.join(ENCODINGS)}")
    out = Path(out)
    files = [path for source in inputs for path in list_audio_files(source)]
    if not files:
        raise ShardError("no audio file to shard")
    index_path = out / INDEX_NAME
    if index_path.is_file():
        previous = json.loads(index_path.read_text())
        asked = (shard_size, sample_rate, encoding)
        if (previous.get("shard_size"), previous.get("sample_rate"), previous.get("encoding")) != asked:
            raise ShardError(f"{out} holds shards of another shard size, rate or encoding; choose another folder")
    out.mkdir(parents=True, exist_ok=True)
    groups = [files[start : start + shard_size] for start in range(0, len(files), shard_size)]
    records = []
    with progress_bar(console=console, transient=False) as bar:
        task = bar.add_task(f"writing {len(groups)} shards", total=len(groups))
        for number, group in enumerate(groups):
            sidecar = out / f"{_shard_name(number)}.json"
            if sidecar.is_file() and (out / f"{_shard_name(number)}.tar").is_file():
                records.append(json.loads(sidecar.read_text()))
            else:
                records.append(_write_shard(out, number, group, sample_rate, encoding))
            bar.advance(task)
    first = np.cumsum([0, *(r["samples"] for r in records)])
    index = {
        "format": FORMAT,
        "sample_rate": sample_rate,
        "shard_size": shard_size,
        "encoding": encoding,
        "shards": [
            {"name": f"{_shard_name(n)}.tar", "first_id": int(first[n]), "samples": r["samples"]}
            for n, r in enumerate(records)
        ],
        "total_samples": int(first[-1]),
        "total_seconds": float(sum(sum(r["durations"]) for r in records)),
        "skipped": {path: reason for r in records for path, reason in r["skipped"].items()},
    }
    atomic_write_text(index_path, json.dumps(index, indent=1) + "\n")
    return index


def read_index(folder: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(folder) / INDEX_NAME
    if not path.is_file():
        raise ShardError(f"{path} is missing: not a shard folder (write one with `decar data shard`)")
    index = json.loads(path.read_text())
    if index.get("format") != FORMAT:
        raise ShardError(f"{path}: shard format {index.get('format')!r}, this decar reads {FORMAT}")
    return index


def _sidecars(folder: str | os.PathLike[str], index: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Each shard's sidecar record (sources, durations, skipped files), in shard order: no audio is read."""
    for shard in index["shards"]:
        yield json.loads((Path(folder) / shard["name"].replace(".tar", ".json")).read_text())


def shard_durations(folder: str | os.PathLike[str]) -> list[float]:
    """Every sample's duration in global id order (from the sidecars: no audio is read)."""
    return [duration for record in _sidecars(folder, read_index(folder)) for duration in record["durations"]]


@dataclass(frozen=True)
class EncodedClip:
    """One clip as a shard stores it (FLAC or 16-bit PCM .npy bytes), with where it lies: decoded only when used
    (not at all when its log-mel is cached), and a quarter of its decoded size in a shuffle buffer."""

    shard: Path
    position: int
    extension: str
    data: bytes

    def decode(self) -> np.ndarray:
        try:
            if self.extension == "npy":
                return np.load(io.BytesIO(self.data), allow_pickle=False).astype(np.float32) / 32768
            return sf.read(io.BytesIO(self.data), dtype="float32")[0]
        except (ValueError, OSError, sf.LibsndfileError) as err:
            raise ShardError(f"{self.shard}: clip {self.position:06d} cannot be decoded ({err})") from err


def _read_tar(path: Path) -> Iterator[tuple[int, EncodedClip]]:
    """(position in the shard, encoded clip) of every clip of one tar shard, in order."""
    try:
        with tarfile.open(path) as archive:
            for member in archive:
                key, _, extension = member.name.partition(".")
                handle = archive.extractfile(member) if extension in ("flac", "npy") else None
                if handle is None:
                    continue
                yield int(key), EncodedClip(path, int(key), extension, handle.read())
    except (tarfile.TarError, OSError) as err:
        raise ShardError(f"{path}: unreadable shard ({err})") from err


class ShardStream(IterableDataset):
    """The samples of a shard folder as a stream: (global id, waveform), in an order fixed by (seed, epoch).

    Rank r owns shards r, r + W, ... for the whole run (so the per-sample state of its samples, such as memory
    bank rows, can stay on it); each pass over them shuffles their order by (seed, epoch, pass, rank) and deals
    them to loader workers, and each worker passes its samples through a shuffle buffer seeded by (seed, epoch,
    rank, worker). So the stream is the same on every run with the same settings, and a resumed epoch drops the
    ``skip`` samples each worker had already yielded (they are decoded again, then dropped): exact resume
    mid-epoch, as long as the number of loader workers is the same.

    Args:
        folder: a shard folder.
        seed, epoch: fix the order.
        rank, world_size: this process's share of the shards.
        buffer_size: shuffle buffer (1: shard order only).
        skip: samples of each worker's stream to drop first (what it yielded before a resume); an int, or a list
            with one count per worker.
        passes: passes over the rank's shards (None: endless, for a training loop that counts its own steps).
        usable: (N,) bool, the samples to yield (None: all); others are read past, e.g. clips too short to train on.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        seed: int = 0,
        epoch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        buffer_size: int = 1000,
        skip: int | Sequence[int] = 0,
        passes: int | None = 1,
        usable: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        self.folder = Path(folder)
        self.index = read_index(folder)
        self.shards = [ShardInfo(s["name"], s["first_id"], s["samples"]) for s in self.index["shards"]]
        if len(self.shards) < world_size:
            raise ShardError(f"{folder}: {len(self.shards)} shards for {world_size} ranks; write smaller shards")
        self.seed, self.epoch, self.rank, self.world_size = seed, epoch, rank, world_size
        self.buffer_size = max(1, buffer_size)
        self.skip = skip
        self.passes = passes
        self.usable = usable
        self._broken: set[str] = set()

    def rank_shards(self) -> list[ShardInfo]:
        """The shards this rank owns, for the whole run."""
        return self.shards[self.rank :: self.world_size]

    def worker_shards(self, worker: int, workers: int, pass_number: int = 0) -> list[ShardInfo]:
        mine = self.rank_shards()
        rng = np.random.default_rng(step_seed(self.seed, self.epoch, 11, pass_number, self.rank))
        order = rng.permutation(len(mine))
        return [mine[i] for i in order][worker::workers]

    def _shard_sequence(self, worker: int, workers: int) -> Iterator[ShardInfo]:
        """The worker's shards, pass after pass; a shard found unreadable is not read again."""
        pass_number = 0
        while self.passes is None or pass_number < self.passes:
            shards = [s for s in self.worker_shards(worker, workers, pass_number) if s.name not in self._broken]
            if not shards:
                return
            yield from shards
            pass_number += 1

    def numbered(self) -> Iterator[tuple[int, int, EncodedClip | str]]:
        """(position in this worker's stream, global id, encoded clip), skipped samples dropped; an unreadable
        shard gives (position, its first id, the reason) in place of its samples."""
        worker, workers = self._worker()
        skip = self.skip if isinstance(self.skip, int) else self.skip[worker]
        rng = np.random.default_rng(step_seed(self.seed, self.epoch, 12, self.rank, worker))
        for position, item in enumerate(self._shuffled(self._shard_sequence(worker, workers), rng)):
            if position >= skip:
                yield position, *item

    def _worker(self) -> tuple[int, int]:
        """(worker, workers) of the loader process running this stream; (0, 1) outside a DataLoader worker."""
        info = get_worker_info()
        return (info.id, info.num_workers) if info is not None else (0, 1)

    def __iter__(self) -> Iterator[tuple[int, torch.Tensor]]:
        for _position, sample_id, clip in self.numbered():
            if isinstance(clip, str):
                raise ShardError(clip)
            yield sample_id, torch.from_numpy(clip.decode())

    def _shuffled(
        self, shards: Iterator[ShardInfo], rng: np.random.Generator
    ) -> Iterator[tuple[int, EncodedClip | str]]:
        """The samples of ``shards`` through the shuffle buffer: fill it, then each new sample replaces a random
        one, which is yielded; what remains is yielded in random order. An unreadable shard yields (its first
        id, the reason) and the stream goes on."""
        buffer: list[tuple[int, EncodedClip]] = []
        for shard in shards:
            try:
                for position, clip in _read_tar(self.folder / shard.name):
                    sample_id = shard.first_id + position
                    if self.usable is not None and not self.usable[sample_id]:
                        continue
                    item = (sample_id, clip)
                    if len(buffer) < self.buffer_size:
                        buffer.append(item)
                        continue
                    slot = int(rng.integers(len(buffer)))
                    buffer[slot], item = item, buffer[slot]
                    yield item
            except ShardError as err:
                self._broken.add(shard.name)
                yield shard.first_id, str(err)
        for slot in rng.permutation(len(buffer)):
            yield buffer[slot]


def is_shard_folder(path: str | os.PathLike[str]) -> bool:
    """True for a folder that `decar data shard` wrote (it holds index.json)."""
    return (Path(path) / INDEX_NAME).is_file()


class ShardCrops(ShardStream):
    """A :class:`ShardStream` whose samples come out as log-mel crops (:class:`decar.data.Example`), cut by
    ``crops`` (its mode and seed) exactly as pretraining cuts files; an unreadable shard comes out as a failed
    Example naming it. ``worker_offset`` rotates the loader workers' roles, so that a resumed loader, whose
    first batch comes from worker 0, continues the stream of the worker whose turn it was."""

    def __init__(
        self, folder: str | os.PathLike[str], crops: AudioCrops, worker_offset: int = 0, **stream: Any
    ) -> None:
        super().__init__(folder, **stream)
        self.crops = crops
        self.worker_offset = worker_offset

    def _worker(self) -> tuple[int, int]:
        worker, workers = super()._worker()
        return (worker + self.worker_offset) % workers, workers

    def __iter__(self) -> Iterator[Example]:  # type: ignore[override]
        worker, _ = self._worker()
        stamps: dict[Path, str] = {}
        for position, sample_id, clip in self.numbered():
            if isinstance(clip, str):
                yield Example(index=sample_id, logmel=None, error=clip)
                continue
            key = step_seed(self.rank, worker, position)
            try:
                if self.crops.cache_dir is None:
                    yield self.crops.example_from_wave(clip.decode(), sample_id, key)
                    continue
                if clip.shard not in stamps:  # the cache entry is of this version of the shard
                    stamps[clip.shard] = file_version(clip.shard)
                full = self.crops.cached_logmel(f"{stamps[clip.shard]}|{clip.position}", clip.decode)
                yield self.crops.example_from_logmel(full, sample_id, key)
            except ShardError as err:
                yield Example(index=sample_id, logmel=None, error=str(err))


class ShardFeed:
    """Pretraining batches from a shard folder, streamed (the counterpart of :class:`decar.data.FileFeed`).

    Rank r reads only the shards it owns (r, r + W, ...), so it keeps the per-sample state of their samples
    and nothing else (``sharded`` True, ``owned`` their ids): feature passes and memory banks never leave the
    rank. Training batches come from an endless shuffled stream over the rank's shards; an epoch is a number of
    steps, and a resumed epoch continues each worker's stream exactly. The order is the stream's: an objective's
    ``sample_order`` is not used (DeepCluster v1 weighs its loss instead).
    """

    sharded = True

    def __init__(
        self,
        folder: Path,
        dataset: AudioCrops,
        info: Any,
        workers: int,
        pin: bool,
        min_seconds: float,
        buffer_size: int = 1000,
    ) -> None:
        self.folder, self.dataset, self.info, self.pin = Path(folder), dataset, info, pin
        self.index = read_index(folder)
        records = list(_sidecars(folder, self.index))
        self.sources = [source for record in records for source in record["sources"]]
        self.durations = np.asarray([d for record in records for d in record["durations"]], dtype=np.float64)
        self.usable = self.durations >= min_seconds
        self.too_short = {
            f"{self.name(i)}": f"too short ({self.durations[i]:.3f} s < data.min_seconds={min_seconds})"
            for i in np.flatnonzero(~self.usable)
        }
        self.stream = ShardStream(folder, rank=info.rank, world_size=info.world_size)
        mine = self.stream.rank_shards()
        ids = [np.arange(s.first_id, s.first_id + s.samples) for s in mine]
        owned = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
        self.owned = torch.from_numpy(owned[self.usable[owned]]).long()
        self.workers = min(workers, len(mine))
        # A buffer as large as the rank's share would span passes and repeat clips within a few batches.
        self.buffer_size = max(1, min(buffer_size, len(self.owned) // 4))

    @property
    def count(self) -> int:
        return int(self.index["total_samples"])

    @property
    def usable_count(self) -> int:
        return int(self.usable.sum())

    def name(self, index: int) -> str:
        return f"{self.sources[index]} (sample {index} of {self.folder})"

    def used_names(self) -> list[str]:
        return [source for source, usable in zip(self.sources, self.usable, strict=True) if usable]

    def identity(self) -> dict[str, Any]:
        """What a resumed run must find again: the same shards with the same sample counts."""
        return {"shards": self.index["shards"], "total_samples": self.count}

    def _crops(self, mode: str, epoch: int, seed: int, **stream: Any) -> ShardCrops:
        self.dataset.mode, self.dataset.epoch = mode, epoch
        options = {"rank": self.info.rank, "world_size": self.info.world_size, "usable": self.usable, **stream}
        return ShardCrops(self.folder, self.dataset, seed=seed, epoch=epoch, **options)

    def _loader(self, stream: ShardCrops, batch_size: int, workers: int | None = None) -> DataLoader:
        workers = self.workers if workers is None else workers
        return DataLoader(
            stream,
            batch_size=batch_size,
            collate_fn=BatchCollator(self.dataset.frontend_config),
            num_workers=workers,
            worker_init_fn=worker_init if workers else None,
            pin_memory=self.pin,
        )

    def stats_batches(self, max_clips: int) -> Iterable[Batch]:
        """This rank's first clips in shard order (its share of ``max_clips``), uncropped and unpadded."""
        stream = self._crops("stats", 0, 0, buffer_size=1, passes=1)
        share = math.ceil(max_clips / self.info.world_size)
        return itertools.islice(self._loader(stream, 1, workers=0), share)

    def recalibration_batches(
        self, seed: int, epoch: int, batch_count: int, batch_size: int, views: bool
    ) -> Iterable[Batch]:
        """Shuffled crops of this rank's shards (training crops when ``views``), for BatchNorm statistics."""
        mode = "train" if views else "features"
        stream = self._crops(mode, epoch, step_seed(seed, epoch, 6), buffer_size=self.buffer_size)
        return itertools.islice(self._loader(stream, batch_size), batch_count)

    def feature_batches(self, epoch: int, batch_size: int, views: bool) -> Iterable[Batch]:
        """Every sample of this rank's shards once: centre crops, or training crops when ``views``."""
        stream = self._crops("train" if views else "features", epoch, 0, buffer_size=1)
        stream.epoch = 0  # one shard order for every pass (the crops still follow the epoch): batches counted below
        return self._loader(stream, batch_size)

    def feature_batch_count(self, batch_size: int) -> int:
        """Batches of :meth:`feature_batches`: each loader worker ends its share with a partial batch."""
        workers = max(self.workers, 1)
        return sum(
            math.ceil(sum(int(self.usable[s.first_id : s.first_id + s.samples].sum()) for s in shards) / batch_size)
            for shards in (self.stream.worker_shards(w, workers) for w in range(workers))
        )

    def train_batches(
        self, seed: int, epoch: int, first_step: int, steps: int, global_batch: int, order: Any = None
    ) -> Iterable[Batch]:
        """Steps [first_step, steps) of an epoch from this rank's endless shuffled stream (``order`` is not
        used: the stream decides). Loader workers take turns batch by batch, so worker w made the batches of
        steps w, w + n, ...; a resumed loader starts with the worker whose turn it is, each past its batches."""
        local = global_batch // self.info.world_size
        workers = max(self.workers, 1)
        stream = self._crops("train", epoch, seed, buffer_size=self.buffer_size, passes=None)
        stream.worker_offset = first_step % workers
        stream.skip = [len(range(w, first_step, workers)) * local for w in range(workers)]
        return itertools.islice(self._loader(stream, local), steps - first_step)
