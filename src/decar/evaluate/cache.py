"""Embedding clips with a content-addressed cache, so that a task is decoded and encoded once per model.

Layout: ``<cache_dir>/<model fingerprint>/<clip key>.npy``, one float32 vector per clip. The model fingerprint
covers weights, frontend, fitted statistics and decar version (`decar.evaluate.models`); the clip key covers the
resolved file path, its size and modification time (ns) and the segment (start, duration). Any change to the
model or the audio file therefore misses the cache instead of returning stale vectors. Entries are written
atomically (temp file + rename), so an interrupted run leaves only whole entries and simply resumes. Each model
folder also holds ``model.json`` (name, dimension, rate) so that a cache folder can be inspected by eye.

Clips whose audio cannot be decoded are reported with their reason and left out; they never stop a run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.markup import escape

import decar
from decar._console import progress_bar
from decar._io import atomic_write, atomic_write_text
from decar.audio import AudioError, load_audio
from decar.embed import long_enough
from decar.evaluate.models import EvalModel
from decar.evaluate.tasks.base import Clip

MODEL_INFO_NAME = "model.json"


@dataclass
class EmbeddedClips:
    """Embeddings of the clips that could be decoded.

    Attributes:
        embeddings: float32 (len(clips), embed_dim), row i belonging to clips[i].
        clips: the clips that succeeded, in input order.
        failures: (clip, reason) for each clip whose audio could not be used, in input order.
    """

    embeddings: np.ndarray
    clips: list[Clip]
    failures: list[tuple[Clip, str]]


@dataclass
class LoadedWaveforms:
    """Decoded clips: the waveforms of those that succeeded and the reasons of those that failed.

    Attributes:
        clips: the clips that decoded, in input order.
        waveforms: float32 mono waveforms, waveforms[i] belonging to clips[i].
        failures: (clip, reason) for each clip that could not be decoded, in input order.
    """

    clips: list[Clip]
    waveforms: list[np.ndarray]
    failures: list[tuple[Clip, str]]


def iter_waveforms(clips: list[Clip], sample_rate: int) -> Iterator[tuple[Clip, np.ndarray | AudioError]]:
    """Decode clips one at a time (memory stays bounded), yielding each waveform or the AudioError it raised.

    A clip shorter than the encoders' minimum (`decar.embed.MIN_SECONDS`) is an error for every model, as in
    `decar embed` and pretraining, so that no command calls "ok" what another skips.
    """
    for clip in clips:
        try:
            wave = long_enough(
                clip.path, load_audio(clip.path, sample_rate, clip.start_s, clip.duration_s), sample_rate
            )
            yield clip, wave
        except AudioError as error:
            yield clip, error


def load_waveforms(clips: list[Clip], sample_rate: int) -> LoadedWaveforms:
    """Decode every clip at `sample_rate` (for `EvalModel.prepare` and fine-tuning); bad files become failures."""
    loaded = LoadedWaveforms([], [], [])
    for clip, result in iter_waveforms(clips, sample_rate):
        if isinstance(result, AudioError):
            loaded.failures.append((clip, result.reason))
        else:
            loaded.clips.append(clip)
            loaded.waveforms.append(result)
    return loaded


def clip_key(clip: Clip) -> str | None:
    """Cache key of a clip: hash of resolved path, size, mtime (ns) and segment; None when the file is missing."""
    try:
        path = Path(clip.path).resolve()
        stat = path.stat()
    except OSError:
        return None
    identity = [str(path), stat.st_size, stat.st_mtime_ns, float(clip.start_s), clip.duration_s]
    return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:32]


def embed_clips(
    model: EvalModel,
    clips: list[Clip],
    cache_dir: Path | None = None,
    batch_size: int = 16,
    progress: bool = True,
) -> EmbeddedClips:
    """Embed clips with `model`, reading and filling the cache; a file that fails to decode is reported, not raised.

    Args:
        model: a prepared model (its fingerprint names the cache folder).
        clips: the clips to embed; a clip's audio is `load_audio(path, model.sample_rate, start_s, duration_s)`.
        cache_dir: cache root; None disables caching.
        batch_size: clips decoded and passed to `model.embed` together (bounds memory).
        progress: show a progress bar on stderr.

    Raises:
        ValueError: `batch_size` < 1, or the model returned embeddings of the wrong shape.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    folder = Path(cache_dir) / model.fingerprint if cache_dir is not None else None
    results: list[np.ndarray | str | None] = [None] * len(clips)
    keys = [clip_key(clip) for clip in clips] if folder is not None else [None] * len(clips)
    bar = progress_bar(f"[bold]embedding[/] {escape(model.name)}", "note", disable=not progress)
    with bar:
        task = bar.add_task("embed", total=len(clips), note="")
        todo = []
        for index, key in enumerate(keys):
            cached = _read_entry(folder / f"{key}.npy", model.embed_dim) if folder and key else None
            if cached is None:
                todo.append(index)
            else:
                results[index] = cached
        bar.update(task, advance=len(clips) - len(todo), note=f"{len(clips) - len(todo)} cached")
        for start in range(0, len(todo), batch_size):
            group = todo[start : start + batch_size]
            decoded = []
            loaded = iter_waveforms([clips[i] for i in group], model.sample_rate)
            for index, (_, result) in zip(group, loaded, strict=True):
                if isinstance(result, AudioError):
                    results[index] = result.reason
                else:
                    decoded.append((index, result))
            if decoded:
                _embed_group(model, decoded, results, folder, keys)
            bar.update(task, advance=len(group))
    ok = [i for i, result in enumerate(results) if isinstance(result, np.ndarray)]
    rows = [results[i] for i in ok]
    return EmbeddedClips(
        embeddings=np.stack(rows).astype(np.float32) if rows else np.zeros((0, model.embed_dim), np.float32),
        clips=[clips[i] for i in ok],
        failures=[(clip, result) for clip, result in zip(clips, results, strict=True) if isinstance(result, str)],
    )


def _embed_group(
    model: EvalModel,
    decoded: list[tuple[int, np.ndarray]],
    results: list[np.ndarray | str | None],
    folder: Path | None,
    keys: list[str | None],
) -> None:
    """Embed decoded clips in one call, store their rows in `results` and write them to the cache."""
    embeddings = np.asarray(model.embed([wave for _, wave in decoded]), dtype=np.float32)
    if embeddings.shape != (len(decoded), model.embed_dim):
        raise ValueError(
            f"model {model.name!r} returned embeddings of shape {embeddings.shape} for {len(decoded)} clips; "
            f"expected ({len(decoded)}, {model.embed_dim})"
        )
    if folder is not None and not (folder / MODEL_INFO_NAME).is_file():
        info = {
            "name": model.name,
            "fingerprint": model.fingerprint,
            "embed_dim": model.embed_dim,
            "sample_rate": model.sample_rate,
            "decar_version": decar.__version__,
        }
        atomic_write_text(folder / MODEL_INFO_NAME, json.dumps(info, indent=2) + "\n")
    for (index, _), row in zip(decoded, embeddings, strict=True):
        results[index] = row
        key = keys[index]
        if folder is not None and key is not None:
            atomic_write(folder / f"{key}.npy", lambda handle, row=row: np.save(handle, row))


def _read_entry(path: Path, embed_dim: int) -> np.ndarray | None:
    """A cached vector, or None when absent or unusable (then it is recomputed and rewritten)."""
    try:
        row = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if row.shape != (embed_dim,) or row.dtype != np.float32:
        return None
    return row
