r"""Embedding throughput (× real time) on 10 s clips: a naive per-file loop against the decar extract path.

All variants run in one process on the same synthetic wav files with the paper's EfficientNet-B0 and frontend
(an untrained checkpoint: speed does not depend on the weights), so their ratios are meaningful on a noisy
shared machine. Every variant runs once per round, rounds are repeated, and each variant's best round counts
(the least disturbed by other processes). The naive loop (load_audio + model(waveform) per file, fp32) is
the reference. The decar variants call `extract_embeddings` (decoding, windowing, batching
across files, atomic .npy writes and the manifest included) with fp32, channels_last, bf16 autocast and
both; channels_last and bf16 are applied from outside (`model.encoder.to(memory_format=...)`,
`torch.autocast("cpu", torch.bfloat16)`). Their embeddings are compared with the fp32 ones (cosine).
A forward-only ceiling (encoder alone on random ~10 s windows) shows what the rest of the pipeline costs.

Usage:
    python benchmarks/bench_embed.py --files 64 --seconds 10 --batch-sizes 4,16 --rounds 3 \
        --json benchmarks/results/embed_cpu.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

import decar
from bench_pretrain import machine
from decar.audio import list_audio_files, load_audio
from decar.config import load_config
from decar.embed import AudioEncoder
from decar.extract import extract_embeddings
from decar.testing import SOUND_KINDS, write_random_checkpoint, write_synthetic_corpus

REPO = Path(__file__).resolve().parents[1]
VARIANTS = [
    ("fp32", False, False),
    ("channels_last", True, False),
    ("bf16", False, True),
    ("channels_last_bf16", True, True),
]
"""(name, channels_last, bf16 autocast) of the extract-path variants."""
PAPER_OVERRIDES = ["data.crop_seconds=10.0", "frontend.l2_normalize_waveform=true"]
"""tiny.yaml (the base of write_random_checkpoint) + these = configs/decar.yaml's frontend, model and window."""


@contextlib.contextmanager
def variant(model: AudioEncoder, channels_last: bool, bf16: bool) -> Iterator[None]:
    """Run the block with the model's channels_last / bf16 options (as `decar.load` sets them), then restore."""
    model.channels_last, model.precision = channels_last, "bf16" if bf16 else "fp32"
    model.encoder.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    try:
        yield
    finally:
        model.channels_last, model.precision = False, "fp32"
        model.encoder.to(memory_format=torch.contiguous_format)


def naive(model: AudioEncoder, files: list[Path]) -> None:
    """One file at a time: decode, whole clip through frontend + encoder in one forward, fp32."""
    with torch.inference_mode():
        for path in files:
            model(torch.from_numpy(load_audio(path, model.sample_rate))[None])


def timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def forward_ceiling(model: AudioEncoder, batch_size: int, channels_last: bool, bf16: bool, reps: int = 3) -> float:
    """Windows/s of the encoder alone on random full windows (no decoding, frontend or writing)."""
    x = torch.randn(batch_size, 1, model.window_frames, model.config.frontend.n_mels)
    with variant(model, channels_last, bf16), torch.inference_mode():
        model.encoder(x)
        seconds = timed(lambda: [model.encoder(x) for _ in range(reps)])
    return reps * batch_size / seconds


def load_outputs(folder: Path) -> np.ndarray:
    return np.stack([np.load(path) for path in sorted(folder.rglob("*.npy"))])


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(cos.min())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=64, help="synthetic wav files (a multiple of 8)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each file")
    parser.add_argument(
        "--batch-sizes", default="4,16", help="comma-separated windows per forward pass of the extract path"
    )
    parser.add_argument("--rounds", type=int, default=3, help="every variant runs once per round; the best counts")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]

    work = Path(tempfile.mkdtemp(prefix="decar-bench-embed-"))
    load_before = os.getloadavg()
    try:
        per_kind = max(1, args.files // len(SOUND_KINDS))
        write_synthetic_corpus(work / "audio", files_per_kind=per_kind, seconds=args.seconds)
        # as many warm-up files as the largest batch: oneDNN builds kernels per input shape, batch size included
        warm_per_kind = -(-max(batch_sizes) // len(SOUND_KINDS))
        write_synthetic_corpus(work / "warmup", files_per_kind=warm_per_kind, seconds=args.seconds, seed=1)
        files = list_audio_files(work / "audio")
        audio_seconds = len(files) * args.seconds
        model = decar.load(write_random_checkpoint(work / "model.pt", PAPER_OVERRIDES))
        paper = load_config(REPO / "configs" / "decar.yaml")
        assert model.config.frontend == paper.frontend and model.config.model == paper.model, "not the paper setup"
        assert model.config.data.crop_seconds == paper.data.crop_seconds
        fe = model.config.frontend
        window_seconds = ((model.window_frames - 1) * fe.hop_length + fe.win_length) / fe.sample_rate

        naive(model, list_audio_files(work / "warmup"))
        walls: dict[str, list[float]] = {"naive": []}
        cosines: dict[str, float] = {}
        reference = f"decar_fp32_b{batch_sizes[0]}"
        for round_index in range(args.rounds):
            walls["naive"].append(timed(lambda: naive(model, files)))
            for batch_size in batch_sizes:
                for kind, channels_last, bf16 in VARIANTS:
                    name = f"decar_{kind}_b{batch_size}"
                    out = work / f"round{round_index}" / name
                    with variant(model, channels_last, bf16):
                        # the warm-up creates this variant's oneDNN kernels before the timed run
                        for source, target in [("warmup", out.with_name(f"warm_{name}")), ("audio", out)]:
                            summary = extract_embeddings(
                                [work / source], target, model, batch_size=batch_size, progress=False
                            )
                    assert summary.ok == len(files) and not summary.failed
                    walls.setdefault(name, []).append(summary.wall_seconds)
                    cosines[name] = min_cosine(load_outputs(out), load_outputs(out.with_name(reference)))
        ceilings = {
            f"{kind}_b{batch_size}": max(
                forward_ceiling(model, batch_size, channels_last, bf16) for _ in range(args.rounds)
            )
            for batch_size in batch_sizes
            for kind, channels_last, bf16 in (VARIANTS[0], VARIANTS[-1])
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)

    naive_wall = min(walls["naive"])
    results = {}
    for name, rounds in walls.items():
        wall = min(rounds)
        results[name] = {
            "wall_s": wall,
            "wall_s_per_round": rounds,
            "clips_per_s": len(files) / wall,
            "x_realtime": audio_seconds / wall,
            "speedup_vs_naive": naive_wall / wall,
        }
        if name in cosines:
            results[name][f"min_cosine_vs_{reference}"] = cosines[name]
        cos = f"  min cos vs fp32 {cosines[name]:.5f}" if name in cosines else ""
        print(
            f"{name:29s} {results[name]['clips_per_s']:6.1f} clips/s  {results[name]['x_realtime']:6.0f}× real time"
            f"  {results[name]['speedup_vs_naive']:5.2f}× naive{cos}"
        )
    for name, clips_per_s in ceilings.items():
        realtime = clips_per_s * window_seconds
        print(f"forward-only ceiling {name:21s} {clips_per_s:6.1f} windows/s  {realtime:6.0f}× real time")
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine() | {"loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "args": vars(args) | {"json": str(args.json) if args.json else None},
        "checkpoint_overrides": PAPER_OVERRIDES,
        "audio_seconds": audio_seconds,
        "window_frames": model.window_frames,
        "timing": "best (minimum wall time) of --rounds interleaved rounds",
        "results": results,
        "forward_only_ceiling_windows_per_s": ceilings,
        "forward_only_ceiling_x_realtime": {name: c * window_seconds for name, c in ceilings.items()},
        "goal_x_realtime": 500,
        "goal_reached_by": [name for name, r in results.items() if r["x_realtime"] >= 500],
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
