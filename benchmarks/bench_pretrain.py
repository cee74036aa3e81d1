"""Pretraining throughput of every method against a bare forward+backward loop of the same encoder.

All are measured in one run on the same machine, so their ratios are meaningful even where absolute speeds are
noisy. A method's number is its last epoch's clips/s over the whole epoch's wall time (data loading,
augmentation, the objective, clustering and any extra feature pass included); its clustering share is the time
spent clustering or on the extra pass over that wall time.

Usage:
    python benchmarks/bench_pretrain.py --clips 512 --crop-seconds 0.96 --json BENCH.json
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

from decar.config import load_config
from decar.objectives import objective_class
from decar.pretrain import build_objective, fit
from decar.testing import SOUND_KINDS, write_synthetic_corpus

REPO = Path(__file__).resolve().parents[1]
METHOD_CONFIGS = {"deepcluster_v1": "audiontt.yaml", "dcv2": "decar_v2.yaml", "online": "decar_online.yaml"}
"""Each method's config; the benchmark gives them one encoder, crop, batch and K."""


def bare_loop(cfg, steps: int, frames: int, warmup: int = 2) -> float:
    """Clips/s of the encoder's forward + backward + SGD step on random log-mels of the training shape."""
    torch.manual_seed(0)
    device = torch.device(cfg.device)
    net = build_objective(cfg, 1).encoder.train()
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    net = net.to(device, memory_format=memory_format)
    optimizer = torch.optim.SGD(
        net.parameters(), lr=cfg.optim.lr, momentum=cfg.optim.momentum, weight_decay=cfg.optim.weight_decay
    )
    batch = cfg.optim.batch_size
    x = torch.randn(batch, 1, frames, cfg.frontend.n_mels, device=device).contiguous(memory_format=memory_format)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")
    for step in range(warmup + steps):
        if step == warmup:
            _synchronize(device)
            start = time.perf_counter()
        with autocast:
            loss = net(x).float().square().mean()
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
    parser.add_argument("--methods", nargs="+", default=list(METHOD_CONFIGS), choices=list(METHOD_CONFIGS))
    parser.add_argument("--d", type=int, default=512, help="AudioNTT2020 width, the same for every method")
    parser.add_argument("--clips", type=int, default=512, help="clips in the synthetic corpus")
    parser.add_argument("--crop-seconds", type=float, default=0.96)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--clusters", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2, help="the last epoch is measured (the first fills the cache)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--device", default="cpu", help="cpu, or cuda to measure a GPU")
    parser.add_argument("--num-workers", type=int, default=0, help="data loader workers of the pipeline")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="decar-bench-"))
    methods, bare = {}, []
    try:
        per_kind = max(1, args.clips // len(SOUND_KINDS))
        write_synthetic_corpus(work / "audio", files_per_kind=per_kind, seconds=args.crop_seconds + 0.1)
        common = [
            "model.name=audiontt2020",
            f"model.kwargs={{d: {args.d}, n_mels: 64}}",
            f"optim.batch_size={args.batch_size}",
            f"optim.epochs={args.epochs}",
            f"data.crop_seconds={args.crop_seconds}",
            f"data.cache_dir={work / 'cache'}",
            f"data.num_workers={args.num_workers}",
            f"precision={args.precision}",
            f"device={args.device}",
        ]
        for method in args.methods:
            clusters = {
                "deepcluster_v1": [f"objective.num_clusters={args.clusters}", "objective.kmeans_backend=torch"],
                "dcv2": [f"objective.num_prototypes=[{args.clusters}]", "optim.warmup_epochs=0"],
                "online": [f"objective.num_clusters={args.clusters}", "optim.warmup_epochs=0"],
            }[method]
            cfg = load_config(REPO / "configs" / METHOD_CONFIGS[method], [*common, *clusters])
            frames = cfg.frontend.frames(round(args.crop_seconds * cfg.frontend.sample_rate))
            steps = args.clips // args.batch_size
            # A bare loop runs before every method and once at the end, so a slow spell of this shared machine
            # shows up as a spread in the bare numbers instead of favouring one side.
            bare.append(bare_loop(cfg, steps, frames))
            fit(cfg, work / "audio", work / method)
            methods[method] = json.loads((work / method / "log.jsonl").read_text().splitlines()[-1])
        bare.append(bare_loop(cfg, steps, frames))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    reference = sum(bare) / len(bare)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "args": vars(args) | {"json": str(args.json) if args.json else None},
        "bare_clips_per_s": reference,
        "bare_clips_per_s_runs": bare,
        "methods": {
            method: {
                "clips_per_s": record["clips_per_s"],
                "over_bare": record["clips_per_s"] / reference,
                # online trains on two augmented views of each clip: two forward + backward passes per clip
                "views": objective_class(method).views,
                "passes_over_bare": record["clips_per_s"] * objective_class(method).views / reference,
                "share_clustering": record["share_clustering"],
                "seconds_cluster": record["seconds_cluster"],
                "seconds_extra_pass": record["seconds_extra_pass"],
                "seconds_train": record["seconds_train"],
            }
            for method, record in methods.items()
        },
    }
    runs = ", ".join(f"{b:.1f}" for b in bare)
    print(f"bare forward+backward of the encoder: {reference:.1f} clips/s (runs: {runs})")
    for method, row in result["methods"].items():
        print(
            f"{method:15s} {row['clips_per_s']:7.1f} clips/s  {row['over_bare']:.3f} of bare  "
            f"({row['views']} view(s): {row['passes_over_bare']:.3f} of bare in encoder passes)  "
            f"clustering + extra pass {row['share_clustering']:.1%}"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
