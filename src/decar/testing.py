"""Synthetic audio for tests, the demo and smoke runs: small, deterministic, with known classes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

SOUND_KINDS = ("tone", "chord", "noise_low", "noise_high", "chirp_up", "chirp_down", "clicks", "am_tone")


def synthetic_clip(kind: str, seconds: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """One clip of a sound family; random pitch, level and timing inside the family. Float32 in [-1, 1]."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    f0 = rng.uniform(200, 1200)
    if kind == "tone":
        wave = np.sin(2 * np.pi * f0 * t)
    elif kind == "chord":
        wave = sum(np.sin(2 * np.pi * f0 * r * t) for r in (1.0, 1.25, 1.5)) / 3
    elif kind in ("noise_low", "noise_high"):
        spectrum = np.fft.rfft(rng.standard_normal(t.size))
        freqs = np.fft.rfftfreq(t.size, 1 / sample_rate)
        band = (freqs < 800) if kind == "noise_low" else (freqs > 3000)
        wave = np.fft.irfft(spectrum * band, n=t.size)
    elif kind in ("chirp_up", "chirp_down"):
        f_start, f_end = (300, 4000) if kind == "chirp_up" else (4000, 300)
        sweep = f_start + (f_end - f_start) * t / max(seconds, 1e-6)
        wave = np.sin(2 * np.pi * np.cumsum(sweep) / sample_rate)
    elif kind == "clicks":
        wave = np.zeros(t.size)
        period = int(sample_rate / rng.uniform(4, 12))
        wave[:: max(period, 1)] = 1.0
        wave = np.convolve(wave, np.hanning(64), mode="same")
    elif kind == "am_tone":
        wave = np.sin(2 * np.pi * f0 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 8) * t))
    else:
        raise ValueError(f"unknown synthetic sound kind {kind!r}; choose from {SOUND_KINDS}")
    wave = wave / (np.abs(wave).max() + 1e-9) * rng.uniform(0.2, 0.9)
    wave = wave + rng.normal(0, 0.003, t.size)
    return wave.astype(np.float32)


def write_synthetic_corpus(
    folder: str | Path,
    files_per_kind: int = 4,
    seconds: float = 1.0,
    sample_rate: int = 16000,
    seed: int = 0,
    kinds: tuple[str, ...] = SOUND_KINDS,
) -> list[tuple[Path, str]]:
    """Write `files_per_kind` wav files of each kind under `folder/<kind>/`; returns (path, kind) pairs."""
    rng = np.random.default_rng(seed)
    written = []
    for kind in kinds:
        (Path(folder) / kind).mkdir(parents=True, exist_ok=True)
        for i in range(files_per_kind):
            path = Path(folder) / kind / f"{kind}_{i:03d}.wav"
            sf.write(path, synthetic_clip(kind, seconds, sample_rate, rng), sample_rate, subtype="PCM_16")
            written.append((path, kind))
    return written


def write_bad_files(folder: str | Path) -> dict[str, Path]:
    """Files a real corpus contains by accident: empty, not audio, NaN samples, zero frames."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    bad = {
        "empty": folder / "empty.wav",
        "corrupt": folder / "corrupt.wav",
        "nan": folder / "nan.wav",
        "zero_frames": folder / "zero_frames.wav",
    }
    bad["empty"].write_bytes(b"")
    bad["corrupt"].write_bytes(b"RIFF this is not really a wave file" * 10)
    samples = np.zeros(16000, dtype=np.float32)
    samples[::50] = np.nan  # scattered, so that any window of the file contains some
    sf.write(bad["nan"], samples, 16000, subtype="FLOAT")
    sf.write(bad["zero_frames"], np.zeros(0, dtype=np.float32), 16000, subtype="PCM_16")
    return bad


MALFORMED_GOOD = (
    "8_bit",
    "96_khz",
    "6_channels",
    "one_hour",
    "flac_named_wav",
    "name with spaces",
    "ünïcödé_名前",
    "new\nline",
)
"""Inputs of :func:`write_malformed_corpus` that are valid audio, however unusual: every command must use them."""


def write_malformed_corpus(folder: str | Path, long_seconds: float = 3600.0) -> dict[str, Path]:
    """Every kind of input a real corpus contains by accident, good and bad, named by what it is.

    Bad (every command must skip each one, saying why): empty, truncated header, truncated data, NaN, Inf, zero
    frames, 10 samples, random bytes named .flac, a folder named x.wav, a broken symlink. Good (every command
    must use them): :data:`MALFORMED_GOOD`, among them a one-hour file (memory must stay bounded) and names with
    spaces, non-ASCII letters and a newline.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    pitches = iter(range(300, 3000, 150))  # each good file its own audio: no two may look like one clip

    def tone(rate: int = 16000) -> np.ndarray:
        return (0.3 * np.sin(2 * np.pi * next(pitches) * np.arange(rate) / rate)).astype(np.float32)

    made = {**write_bad_files(folder)}
    wav = io.BytesIO()
    sf.write(wav, tone(), 16000, format="WAV", subtype="PCM_16")
    made["truncated_header"] = folder / "truncated_header.wav"
    made["truncated_header"].write_bytes(wav.getvalue()[:30])
    made["truncated_data"] = folder / "truncated_data.wav"
    made["truncated_data"].write_bytes(wav.getvalue()[: len(wav.getvalue()) // 2])
    made["inf"] = folder / "inf.wav"
    sf.write(made["inf"], np.where(np.arange(16000) % 40 == 0, np.inf, tone()), 16000, subtype="FLOAT")
    made["ten_samples"] = folder / "ten_samples.wav"
    sf.write(made["ten_samples"], tone()[:10], 16000, subtype="PCM_16")
    made["random_bytes"] = folder / "random_bytes.flac"
    made["random_bytes"].write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    made["folder_named_wav"] = folder / "folder.wav"
    made["folder_named_wav"].mkdir(exist_ok=True)
    made["broken_symlink"] = folder / "broken_symlink.wav"
    if not made["broken_symlink"].is_symlink():
        made["broken_symlink"].symlink_to(folder / "no_such_target.wav")
    made["8_bit"] = folder / "8_bit.wav"
    sf.write(made["8_bit"], tone(), 16000, subtype="PCM_U8")
    made["96_khz"] = folder / "96_khz.wav"
    sf.write(made["96_khz"], tone(96000), 96000, subtype="PCM_24")
    made["6_channels"] = folder / "6_channels.wav"
    sf.write(made["6_channels"], np.stack([tone() for _ in range(6)], axis=1), 16000, subtype="PCM_16")
    made["one_hour"] = folder / "one_hour.flac"
    beep = tone()
    with sf.SoundFile(made["one_hour"], "w", 16000, 1, subtype="PCM_16") as handle:
        for minute in range(max(1, round(long_seconds / 60))):  # written a minute at a time: bounded memory
            handle.write(0.1 * rng.standard_normal(16000 * 60).astype(np.float32) + np.tile(beep, 60) * (minute % 2))
    made["flac_named_wav"] = folder / "flac_named_wav.wav"
    sf.write(made["flac_named_wav"], tone(), 16000, format="FLAC")
    for name in ("name with spaces", "ünïcödé_名前", "new\nline"):
        made[name] = folder / f"{name}.wav"
        sf.write(made[name], tone(), 16000, subtype="PCM_16")
    return made


def write_random_checkpoint(path: str | Path, overrides: list[str] | None = None, seed: int = 0) -> Path:
    """An untrained but complete decar checkpoint (tiny config + overrides), for tests of the model's users.

    BatchNorm statistics are set from one batch of synthetic log-mels so that outputs are of order one.
    """
    from decar.checkpoint import save_checkpoint
    from decar.config import load_config
    from decar.frontend import LogMelSpectrogram
    from decar.models.batchnorm import recalibrate_batchnorm
    from decar.pretrain import build_objective

    tiny = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"
    config = load_config(tiny if tiny.is_file() else None, overrides or [])
    torch.manual_seed(seed)
    network = build_objective(config, num_samples=1)
    rng = np.random.default_rng(seed)
    waves = np.stack([synthetic_clip(kind, 1.0, config.frontend.sample_rate, rng) for kind in SOUND_KINDS])
    logmel = LogMelSpectrogram(config.frontend)(torch.from_numpy(waves), normalize=False)
    mean, std = float(logmel.mean()), float(logmel.std())
    recalibrate_batchnorm(network.encoder, [(logmel - mean) / std])
    save_checkpoint(
        path,
        {
            "config": config.to_dict(),
            "encoder": network.encoder.state_dict(),
            "frontend_stats": {"mean": mean, "std": std},
            "epoch": -1,
        },
    )
    return Path(path)


def write_hear_task(
    folder: Path,
    name: str,
    kinds: tuple[str, ...],
    seed: int,
    per_split: dict[str, int] | None = None,
    noise_ratio: float = 0.0,
) -> Path:
    """A HEAR scene task of synthetic clips: `kinds` as labels, `per_split` clips of each (default train 6,
    valid 3, test 5), 0.5 s each at 16 kHz; `noise_ratio` adds white noise of that RMS relative to the clip's
    (1.0: 0 dB signal-to-noise), which makes the task harder."""
    per_split = per_split or {"train": 6, "valid": 3, "test": 5}
    rng = np.random.default_rng(seed)
    for split, count in per_split.items():
        labels = {}
        (folder / "16000" / split).mkdir(parents=True)
        for kind in kinds:
            for i in range(count):
                file = f"{kind}_{i}.wav"
                wave = synthetic_clip(kind, 0.5, 16000, rng)
                wave = wave + noise_ratio * np.sqrt(np.mean(wave**2)) * rng.standard_normal(wave.size)
                peak = max(1.0, float(np.abs(wave).max()) / 0.99)
                sf.write(folder / "16000" / split / file, (wave / peak).astype(np.float32), 16000)
                labels[file] = [kind]
        (folder / f"{split}.json").write_text(json.dumps(labels))
    (folder / "labelvocabulary.csv").write_text("idx,label\n" + "".join(f"{i},{k}\n" for i, k in enumerate(kinds)))
    metadata = {
        "task_name": name,
        "embedding_type": "scene",
        "prediction_type": "multiclass",
        "split_mode": "trainvaltest",
        "sample_duration": 0.5,
    }
    (folder / "task_metadata.json").write_text(json.dumps(metadata))
    return folder


def pretrain_killed_after_first_checkpoint(args: list[str], out: Path, linger_s: float = 0.0) -> dict:
    """Run ``decar pretrain`` (``args``, writing to ``out``) in a subprocess, SIGKILL it ``linger_s`` after its first
    checkpoint appears, and return that checkpoint's run state: the killed half of a resume test."""
    import os
    import signal
    import subprocess
    import time

    from decar.checkpoint import load_checkpoint

    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoint = Path(out) / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(linger_s)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if not checkpoint.exists():
        raise AssertionError(f"no checkpoint before the kill: {proc.stderr.read().decode()}")
    return load_checkpoint(checkpoint)["run_state"]


def torchrun_decar(processes: int, *args: str) -> list[str]:
    """The command line of ``decar ARGS...`` under torchrun with ``processes`` local processes (gloo on CPU)."""
    import sys

    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    return [*torchrun, "-m", "decar.cli", *args]
