"""Shortcut checks by intervention: change a nuisance of the audio at random, independently of its content, and
measure how strongly the clusters of the embeddings follow it.

Pretraining logs the AMI between its assignments and each clip's own level, but a clip's level goes with its
content (a drum hit is louder than a page turn), so that number cannot tell a shortcut from content: a dcv2 run
whose frontend divides every crop by its L2 norm, and so never sees the gain, still logs a level AMI of 0.12 on
the bench corpus. Here each clip gets a random gain drawn independently of what it is; any mutual information
between the embeddings' clusters and that gain is the model reacting to loudness itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from decar.audio import AudioError, audio_info, list_audio_files, load_audio
from decar.cluster import ami, kmeans

log = logging.getLogger(__name__)

SILENT_PEAK = 1e-4
"""Clips whose peak stays below this are skipped: a gain applied to silence tests nothing."""


@dataclass(frozen=True)
class ProbeClips:
    """Equal-length windows of corpus files, each with the folder it came from (a coarse content label)."""

    waveforms: list[np.ndarray]
    sources: list[str]
    sample_rate: int
    skipped: int


@dataclass(frozen=True)
class GainShortcut:
    """How much the embeddings' clusters follow a random gain, with their content AMI for scale.

    Attributes:
        ami_gain: AMI between k-means clusters of the embeddings of the gain-shifted clips and the gain's bin;
            0 for a model blind to loudness, whatever the clips' content.
        ami_source: AMI between the same clusters and each clip's source folder: how much content they carry.
        clips: clips measured.
        max_db: gains were uniform in ±max_db.
        clusters: k of the k-means.
    """

    ami_gain: float
    ami_source: float
    clips: int
    max_db: float
    clusters: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def corpus_clips(
    source: str | Path, count: int = 1500, seconds: float = 1.0, sample_rate: int = 16000, seed: int = 0
) -> ProbeClips:
    """Up to ``count`` centre windows of ``seconds`` from files of a corpus (folder or list file), a seeded draw.

    Files shorter than the window, silent or unreadable are skipped and counted, so the windows hold no padding
    whose length could stand in for the gain.
    """
    files = list_audio_files(source)
    if not files:
        raise ValueError(f"{source}: no audio files to measure shortcuts on")
    root = Path(source) if Path(source).is_dir() else Path(source).parent
    order = np.random.default_rng(seed).permutation(len(files))
    length = round(seconds * sample_rate)
    waveforms: list[np.ndarray] = []
    sources: list[str] = []
    skipped = 0
    for index in order:
        path = files[int(index)]
        try:  # only the centre window is decoded: an hour-long file costs one window
            duration = audio_info(path).duration_s
            if duration < seconds:
                skipped += 1
                continue
            wave = load_audio(path, sample_rate, offset_s=(duration - seconds) / 2, duration_s=seconds)
        except AudioError as err:
            log.debug("shortcut clips: skipped %s", err)
            skipped += 1
            continue
        if np.abs(wave).max() < SILENT_PEAK:
            skipped += 1
            continue
        wave = np.pad(wave[:length], (0, max(0, length - len(wave))))  # resampling may round off a sample
        waveforms.append(np.ascontiguousarray(wave, dtype=np.float32))
        sources.append(str(path.parent.relative_to(root)) if path.is_relative_to(root) else str(path.parent))
        if len(waveforms) == count:
            break
    if len(waveforms) < 2:
        raise ValueError(f"{source}: fewer than 2 files of at least {seconds:g} s with sound to measure shortcuts on")
    return ProbeClips(waveforms, sources, sample_rate, skipped)


def random_gains(count: int, max_db: float, seed: int) -> np.ndarray:
    """Gains in dB, uniform in ±max_db and drawn from their own seed: independent of the clips' content."""
    if not max_db > 0:
        raise ValueError(f"max_db must be positive, got {max_db}")
    return np.random.default_rng(seed).uniform(-max_db, max_db, count)


def gain_bins(gains_db: np.ndarray, max_db: float, bins: int) -> np.ndarray:
    """Equal-width bins of the gain range, the labels the clusters are compared with."""
    edges = np.linspace(-max_db, max_db, bins + 1)[1:-1]
    return np.digitize(gains_db, edges)


def cluster_embeddings(embeddings: np.ndarray, clusters: int, seed: int) -> np.ndarray:
    """Spherical k-means of centred embeddings: the coarse structure a downstream user would find first."""
    centred = torch.from_numpy(np.asarray(embeddings, dtype=np.float32))
    centred = centred - centred.mean(dim=0)
    result = kmeans(centred, min(clusters, len(centred)), num_iters=30, seed=seed, spherical=True, init="k-means++")
    return result.assignments.numpy()


def gain_shortcut(
    embed: Callable[[list[np.ndarray]], np.ndarray],
    clips: ProbeClips,
    max_db: float = 12.0,
    bins: int = 10,
    clusters: int = 32,
    seed: int = 0,
) -> GainShortcut:
    """Embed every clip at a random gain and measure how much the embeddings' clusters follow that gain.

    Args:
        embed: waveforms at ``clips.sample_rate`` → (N, D) embeddings, e.g. ``decar.load(...).embed`` or an
            evaluation model's ``embed`` (fit its statistics on ``clips.waveforms`` first).
        clips: from :func:`corpus_clips`.
    """
    gains = random_gains(len(clips.waveforms), max_db, seed)
    shifted = [wave * np.float32(10 ** (gain / 20)) for wave, gain in zip(clips.waveforms, gains, strict=True)]
    assignments = cluster_embeddings(embed(shifted), clusters, seed)
    return GainShortcut(
        ami_gain=ami(assignments, gain_bins(gains, max_db, bins)),
        ami_source=ami(assignments, np.unique(clips.sources, return_inverse=True)[1]),
        clips=len(shifted),
        max_db=max_db,
        clusters=clusters,
    )
