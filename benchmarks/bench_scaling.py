"""What a 2 M-clip epoch costs, simulated on this machine with data of the real sizes (docs/scaling.md).

For N clips split over W ranks (W = 1, 2, 4, 8), with dcv2's 128-d projections and K clusters:

- memory per rank of what each method keeps per clip: the dcv2 memory bank (N/W x 128 float32 when sharded,
  N x 128 when every rank holds it all), the assignments, v1's feature-pass output;
- spherical k-means seconds per round on one rank's shard (`sharded_kmeans` on N/W rows: what each
  rank computes; the all-reduce adds K x 128 floats per round, 0.5 MB at K = 1024);
- checkpoint size and write time of the per-clip state of one rank (torch.save, then fsync);
- a projected epoch time on 1 and 8 GPUs for each method: training and v1's extra pass at the clips/s measured
  on an H200 (benchmarks/results/methods_cuda_fp32.json), k-means at this CPU's time per round for one rank's
  shard (a GPU is faster: an upper bound).

    .venv/bin/python benchmarks/bench_scaling.py --clips 2000000 --json benchmarks/results/scaling_2m.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from decar.cluster import sharded_kmeans

GPU_RESULTS = Path(__file__).resolve().parent / "results" / "methods_cuda_fp32.json"
"""One H200, fp32, AudioNTT d = 512, batch 256, 4096 clips, 12 loader workers (BENCHMARKS.md, 2026-11-30)."""


def gpu_rates() -> dict[str, dict[str, float]]:
    """Per method, the measured training clips/s (the epoch's training time only) and, for v1, its extra pass's
    clips/s, from the GPU benchmark; online's training rate was measured with one view and is halved for its
    two. Clustering is not taken from there: at 4096 clips it says nothing of 2 M."""
    measured = json.loads(GPU_RESULTS.read_text())
    clips = measured["args"]["clips"]
    rates = {}
    for method, row in measured["methods"].items():
        train = clips / row["seconds_train"] / (2 if method == "online" else 1)
        extra = clips / row["seconds_extra_pass"] if row["seconds_extra_pass"] > 0 else None
        rates[method] = {"train_clips_per_s": train, "extra_pass_clips_per_s": extra}
    return rates


def kmeans_seconds_per_round(rows: int, dim: int, clusters: int, rounds: int) -> float:
    data = torch.nn.functional.normalize(torch.randn(rows, dim), dim=1)
    start = time.perf_counter()
    sharded_kmeans(data, torch.arange(rows), rows, clusters, num_iters=rounds, seed=0)
    return (time.perf_counter() - start) / rounds


def checkpoint_write(rows: int, dim: int, folder: Path) -> tuple[float, float]:
    """(MB, seconds) of saving a bank of `rows` x `dim` float32 and its int64 labels, synced to disk."""
    state = {"bank": torch.randn(rows, dim), "filled": torch.ones(rows, dtype=torch.bool)}
    state["labels"] = torch.randint(0, 1024, (rows,))
    path = folder / "state.pt"
    start = time.perf_counter()
    with path.open("wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    seconds = time.perf_counter() - start
    size = path.stat().st_size / 2**20
    path.unlink()
    return size, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=2_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--clusters", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3, help="k-means rounds timed per size")
    parser.add_argument("--kmeans-rounds", type=int, default=10, help="rounds per epoch in the projection")
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n, dim = args.clips, args.dim
    rows = []
    with tempfile.TemporaryDirectory(prefix="decar-scaling-") as work:
        for world in args.ranks:
            shard = -(-n // world)
            per_round = kmeans_seconds_per_round(shard, dim, args.clusters, args.rounds)
            size_mb, write_s = checkpoint_write(shard, dim, Path(work))
            rows.append(
                {
                    "ranks": world,
                    "rows_per_rank": shard,
                    "bank_mb_per_rank_sharded": shard * dim * 4 / 2**20,
                    "bank_mb_per_rank_replicated": n * dim * 4 / 2**20,
                    "labels_mb_per_rank_sharded": shard * 8 / 2**20,
                    "kmeans_s_per_round": per_round,
                    "checkpoint_mb_per_rank": size_mb,
                    "checkpoint_write_s": write_s,
                }
            )
            print(
                f"W={world}: {shard} rows/rank, bank {rows[-1]['bank_mb_per_rank_sharded']:.0f} MB/rank sharded "
                f"({rows[-1]['bank_mb_per_rank_replicated']:.0f} replicated), k-means {per_round:.2f} s/round, "
                f"checkpoint {size_mb:.0f} MB in {write_s:.2f} s",
                flush=True,
            )
    projection = {}
    by_ranks = {row["ranks"]: row for row in rows}
    rates = gpu_rates()
    for gpus in (1, 8):
        cluster_s = by_ranks[gpus]["kmeans_s_per_round"] * args.kmeans_rounds if gpus in by_ranks else None
        for method, rate in rates.items():
            train_s = n / (rate["train_clips_per_s"] * gpus)
            extra_rate = rate["extra_pass_clips_per_s"]
            extra_s = n / (extra_rate * gpus) if extra_rate else 0.0
            clustering = 0.0 if method == "online" else (cluster_s or 0.0)
            projection[f"{method}@{gpus}"] = {
                "train_s": train_s,
                "extra_pass_s": extra_s,
                "kmeans_s_cpu_rank": clustering,
                "epoch_s": train_s + extra_s + clustering,
            }
    for key, value in projection.items():
        print(
            f"{key:20s} epoch {value['epoch_s'] / 60:6.1f} min  (train {value['train_s'] / 60:.1f}, extra pass "
            f"{value['extra_pass_s'] / 60:.1f}, k-means on this CPU per rank {value['kmeans_s_cpu_rank'] / 60:.1f})"
        )
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "torch": torch.__version__,
        "cpu": os.cpu_count(),
        "ranks": rows,
        "projection": projection,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
