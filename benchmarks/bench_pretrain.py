"""Full-pipeline DECAR pretraining throughput against a bare forward+backward loop of the same network.

Both are measured in one run on the same machine, so their ratio is meaningful even where absolute speeds are
noisy. The pipeline number is the training phase's clips/s from the run log (data loading, augmentation,
normalisation and optimiser included); the clustering share is the feature pass + PCA + k-means time over the
epoch time.

Usage:
    python benchmarks/bench_pretrain.py --clips 128 --crop-seconds 10 --json BENCH.json
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from decar.config import load_config
from decar.pretrain import build_network, fit
from decar.testing import SOUND_KINDS, write_synthetic_corpus

REPO = Path(__file__).resolve().parents[1]


def bare_loop(cfg, steps: int, frames: int, warmup: int = 2) -> float:
    """Clips/s of forward + backward + SGD step on random log-mels of the training shape."""
    torch.manual_seed(0)
    device = torch.device(cfg.device)
    net = build_network(cfg).train()
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    net = net.to(device, memory_format=memory_format)
    optimizer = torch.optim.SGD(
        net.parameters(), lr=cfg.optim.lr, momentum=cfg.optim.momentum, weight_decay=cfg.optim.weight_decay
    )
    batch = cfg.optim.batch_size
    x = torch.randn(batch, 1, frames, cfg.frontend.n_mels, device=device).contiguous(memory_format=memory_format)
    y = torch.randint(0, cfg.objective.num_clusters, (batch,), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")
    for step in range(warmup + steps):
        if step == warmup:
            _synchronize(device)
            start = time.perf_counter()
        with autocast:
            loss = F.cross_entropy(net(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    _synchronize(device)
    return steps * batch / (time.perf_counter() - start)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def machine() -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "decar.yaml"))
    parser.add_argument("--clips", type=int, default=128, help="clips in the synthetic corpus")
    parser.add_argument("--crop-seconds", type=float, default=10.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--clusters", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2, help="the last epoch is measured (the first fills the cache)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--device", default="cpu", help="cpu, or cuda to measure a GPU")
    parser.add_argument("--num-workers", type=int, default=0, help="data loader workers of the pipeline")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="decar-bench-"))
    try:
        per_kind = max(1, args.clips // len(SOUND_KINDS))
        write_synthetic_corpus(work / "audio", files_per_kind=per_kind, seconds=args.crop_seconds)
        overrides = [
            f"optim.batch_size={args.batch_size}",
            f"objective.num_clusters={args.clusters}",
            f"optim.epochs={args.epochs}",
            f"data.crop_seconds={args.crop_seconds}",
            f"data.cache_dir={work / 'cache'}",
            f"data.num_workers={args.num_workers}",
            f"precision={args.precision}",
            f"device={args.device}",
        ]
        cfg = load_config(args.config, overrides)
        frames = cfg.frontend.frames(round(args.crop_seconds * cfg.frontend.sample_rate))
        steps = len(list((work / "audio").rglob("*.wav"))) // args.batch_size
        # The bare loop runs before and after the pipeline so that a slow spell of this shared machine
        # cannot favour either side; their mean is the reference.
        bare_before = bare_loop(cfg, steps, frames)
        fit(cfg, work / "audio", work / "run")
        bare_after = bare_loop(cfg, steps, frames)
        record = json.loads((work / "run" / "log.jsonl").read_text().splitlines()[-1])
    finally:
        shutil.rmtree(work, ignore_errors=True)

    pipeline = record["clips_per_s"]
    bare = (bare_before + bare_after) / 2
    epoch_seconds = record["seconds_cluster"] + record["seconds_train"]
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "args": vars(args) | {"json": str(args.json) if args.json else None},
        "frames_per_clip": frames,
        "pipeline_clips_per_s": pipeline,
        "bare_clips_per_s": bare,
        "bare_clips_per_s_before_after": [bare_before, bare_after],
        "pipeline_over_bare": pipeline / bare,
        "clustering_seconds": record["seconds_cluster"],
        "training_seconds": record["seconds_train"],
        "clustering_share": record["seconds_cluster"] / epoch_seconds,
    }
    print(f"pipeline {pipeline:.1f} clips/s | bare fwd+bwd {bare:.1f} clips/s | ratio {pipeline / bare:.3f}")
    share, cluster_s = result["clustering_share"], record["seconds_cluster"]
    print(f"clustering share of the epoch: {share:.1%} ({cluster_s:.1f} s of {epoch_seconds:.1f} s)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
