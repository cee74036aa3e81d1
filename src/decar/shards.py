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
import json
import os
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from rich.console import Console
from torch.utils.data import IterableDataset, get_worker_info

from decar._console import progress_bar
from decar._io import atomic_write, atomic_write_text
from decar.audio import AudioError, list_audio_files, load_audio
from decar.data import step_seed

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


def shard_durations(folder: str | os.PathLike[str]) -> list[float]:
    """Every sample's duration in global id order (from the sidecars: no audio is read)."""
    index = read_index(folder)
    durations: list[float] = []
    for shard in index["shards"]:
        sidecar = Path(folder) / shard["name"].replace(".tar", ".json")
        durations += json.loads(sidecar.read_text())["durations"]
    return durations


def _read_tar(path: Path) -> Iterator[tuple[int, np.ndarray]]:
    """(position in the shard, waveform) of every clip of one tar shard, in order."""
    try:
        with tarfile.open(path) as archive:
            for member in archive:
                key, _, extension = member.name.partition(".")
                handle = archive.extractfile(member) if extension in ("flac", "npy") else None
                if handle is None:
                    continue
                data = io.BytesIO(handle.read())
                if extension == "npy":
                    yield int(key), np.load(data, allow_pickle=False).astype(np.float32) / 32768
                else:
                    yield int(key), sf.read(data, dtype="float32")[0]
    except (tarfile.TarError, OSError, sf.LibsndfileError) as err:
        raise ShardError(f"{path}: unreadable shard ({err})") from err


class ShardStream(IterableDataset):
    """The samples of a shard folder as a stream: (global id, waveform), in an order fixed by (seed, epoch).

    Shards are shuffled by (seed, epoch), dealt to ranks (rank r takes shards r, r + W, ...) and within a rank
    to loader workers; each worker passes its samples through a shuffle buffer seeded by (seed, epoch, rank,
    worker). So the stream is the same on every run with the same settings, and a resumed epoch drops the
    ``skip`` samples each worker had already yielded (they are decoded again, then dropped): exact resume
    mid-epoch, as long as the number of loader workers is the same.

    Args:
        folder: a shard folder.
        seed, epoch: fix the order.
        rank, world_size: this process's share of the shards.
        buffer_size: shuffle buffer (1: shard order only).
        skip: samples of each worker's stream to drop first (what it yielded before a resume); an int, or a list
            with one count per worker.
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

    def worker_shards(self, worker: int, workers: int) -> list[ShardInfo]:
        order = np.random.default_rng(step_seed(self.seed, self.epoch, 11)).permutation(len(self.shards))
        mine = [self.shards[i] for i in order[self.rank :: self.world_size]]
        return mine[worker::workers]

    def __iter__(self) -> Iterator[tuple[int, torch.Tensor]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        skip = self.skip if isinstance(self.skip, int) else self.skip[worker]
        rng = np.random.default_rng(step_seed(self.seed, self.epoch, 12, self.rank, worker))
        for position, item in enumerate(self._shuffled(self.worker_shards(worker, workers), rng)):
            if position >= skip:
                yield item

    def _shuffled(self, shards: list[ShardInfo], rng: np.random.Generator) -> Iterator[tuple[int, torch.Tensor]]:
        """The samples of ``shards`` through the shuffle buffer: fill it, then each new sample replaces a random
        one, which is yielded; what remains is yielded in random order."""
        buffer: list[tuple[int, torch.Tensor]] = []
        for shard in shards:
            for position, wave in _read_tar(self.folder / shard.name):
                item = (shard.first_id + position, torch.from_numpy(wave))
                if len(buffer) < self.buffer_size:
                    buffer.append(item)
                    continue
                slot = int(rng.integers(len(buffer)))
                buffer[slot], item = item, buffer[slot]
                yield item
        for slot in rng.permutation(len(buffer)):
            yield buffer[slot]
