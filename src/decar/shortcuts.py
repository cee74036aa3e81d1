"""Shortcut checks by intervention: change a nuisance of the audio at random, independently of its content, and
measure how strongly the clusters of the embeddings follow it.

Pretraining logs the AMI between its assignments and each clip's own level, but a clip's level goes with its
content (a drum hit is louder than a page turn), so that number cannot tell a shortcut from content: a dcv2 run
whose frontend divides every crop by its L2 norm, and so never sees the gain, still logs a level AMI of 0.12 on
the bench corpus. Here each clip gets a random gain drawn independently of what it is; any mutual information
between the embeddings' clusters and that gain is the model reacting to loudness itself.

Duration is checked the same way: each clip is cut to a random length and brought back to the crop length as
pretraining brings a short clip to it (tiled or followed by silence), and the clusters are compared with the cut
length. The logged duration AMI has the same confound as the level: on the bench corpus no clip is shorter
than a crop, so nothing is ever padded, and a clip's duration says which package it came from.
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
from decar.data import PAD_MODES

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


@dataclass(frozen=True)
class DurationShortcut:
    """How much the embeddings' clusters follow a random cut length, with their content AMI for scale.

    Attributes:
        ami_cut: AMI between k-means clusters of the embeddings of the cut clips and the cut length's bin; 0 for
            a model that does not see how much of a crop is tiled or silent.
        ami_source: AMI between the same clusters and each clip's source folder.
        clips: clips measured.
        pad_mode: how a cut clip was brought back to the crop: "tile" or "silence".
        min_seconds: cut lengths were uniform in [min_seconds, crop_seconds].
        crop_seconds: the crop length.
        clusters: k of the k-means.
    """

    ami_cut: float
    ami_source: float
    clips: int
    pad_mode: str
    min_seconds: float
    crop_seconds: float
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


def random_lengths(count: int, min_seconds: float, max_seconds: float, seed: int) -> np.ndarray:
    """Cut lengths in seconds, uniform in [min_seconds, max_seconds], from a stream of their own: independent of
    the clips' content and of the gains drawn with the same seed."""
    if not 0 < min_seconds < max_seconds:
        raise ValueError(f"cut lengths need 0 < min_seconds < max_seconds, got {min_seconds} and {max_seconds}")
    return np.random.default_rng([seed, 1]).uniform(min_seconds, max_seconds, count)


def equal_bins(values: np.ndarray, low: float, high: float, bins: int) -> np.ndarray:
    """Equal-width bins of [low, high], the labels the clusters are compared with."""
    return np.digitize(values, np.linspace(low, high, bins + 1)[1:-1])


def cut_to_crop(wave: np.ndarray, keep: int, crop: int, pad_mode: str) -> np.ndarray:
    """The first ``keep`` samples of ``wave`` brought to ``crop`` samples as pretraining brings a short clip to
    its crop: repeated ("tile"; pretraining repeats log-mel frames, here samples, the same but at the seams) or
    followed by silence ("silence")."""
    if pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode must be tile or silence, got {pad_mode!r}")
    cut = wave[: max(1, keep)]
    if pad_mode == "tile":
        return np.resize(cut, crop)
    return np.pad(cut, (0, max(0, crop - len(cut))))[:crop]


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
    ami_gain, ami_source = _cluster_amis(
        embed, shifted, equal_bins(gains, -max_db, max_db, bins), clips, clusters, seed
    )
    return GainShortcut(ami_gain, ami_source, len(shifted), max_db, clusters)


def duration_shortcut(
    embed: Callable[[list[np.ndarray]], np.ndarray],
    clips: ProbeClips,
    crop_seconds: float = 0.96,
    pad_mode: str = "tile",
    min_seconds: float = 0.1,
    bins: int = 10,
    clusters: int = 32,
    seed: int = 0,
) -> DurationShortcut:
    """Cut every clip to a random length, bring it back to the crop length with ``pad_mode``, and measure how
    much the embeddings' clusters follow the cut length.

    Cutting also takes content away, so even a model blind to the padding scores a little above 0; compare with
    the same architecture at random init.

    Args:
        embed: as for :func:`gain_shortcut`.
        clips: from :func:`corpus_clips`, at least ``crop_seconds`` long.
        crop_seconds: the pretraining crop length (``data.crop_seconds``).
        pad_mode: the pretraining pad policy (``data.pad_mode``): "tile" or "silence".
    """
    crop = round(crop_seconds * clips.sample_rate)
    shortest = min(len(wave) for wave in clips.waveforms)
    if crop > shortest:
        raise ValueError(f"crop of {crop_seconds:g} s is longer than the clips ({shortest / clips.sample_rate:g} s)")
    lengths = random_lengths(len(clips.waveforms), min_seconds, crop_seconds, seed)
    cut = [
        cut_to_crop(wave, round(length * clips.sample_rate), crop, pad_mode)
        for wave, length in zip(clips.waveforms, lengths, strict=True)
    ]
    labels = equal_bins(lengths, min_seconds, crop_seconds, bins)
    ami_cut, ami_source = _cluster_amis(embed, cut, labels, clips, clusters, seed)
    return DurationShortcut(ami_cut, ami_source, len(cut), pad_mode, min_seconds, crop_seconds, clusters)


def check_shortcuts(
    embed: Callable[[list[np.ndarray]], np.ndarray],
    clips: ProbeClips,
    crop_seconds: float = 0.96,
    pad_mode: str = "tile",
    seed: int = 0,
    max_db: float = 12.0,
) -> dict[str, Any]:
    """Both checks with their defaults, flat, as `decar shortcuts`, `decar ablate` and pretraining report them:
    ``ami_gain``, ``ami_cut``, ``ami_source`` (of the gain check) and the settings."""
    gain = gain_shortcut(embed, clips, max_db=max_db, seed=seed)
    cut = duration_shortcut(embed, clips, crop_seconds, pad_mode, seed=seed)
    return {**gain.to_dict(), "ami_cut": cut.ami_cut, "pad_mode": pad_mode, "crop_seconds": crop_seconds}


def clip_seconds(crop_seconds: float) -> float:
    """Length of the corpus windows the checks draw: 1 s, or the crop when it is longer."""
    return max(1.0, crop_seconds)


def _cluster_amis(
    embed: Callable[[list[np.ndarray]], np.ndarray],
    waveforms: list[np.ndarray],
    nuisance: np.ndarray,
    clips: ProbeClips,
    clusters: int,
    seed: int,
) -> tuple[float, float]:
    """AMI of the embeddings' clusters with the nuisance labels and with the clips' source folders."""
    assignments = cluster_embeddings(embed(waveforms), clusters, seed)
    return ami(assignments, nuisance), ami(assignments, np.unique(clips.sources, return_inverse=True)[1])
