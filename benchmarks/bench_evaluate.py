r"""Wall time of a full `decar evaluate` (a probe protocol, 3 seeds) of one model on one ~5000-clip task, on this CPU.

The task is a manifest of short synthetic clips (decar.testing sound kinds, 60/20/20 train/valid/test split);
writing its audio is setup and is not timed. Each model's `evaluate(...)` call is timed as a whole and split into
embedding time (decoding, the model's train-audio statistics, embedding train+valid+test, no cache) and probe
time (3 seeds), as the runner records them per task. Models: logmel-stats (the cheap baseline) and the paper's
EfficientNet-B0 + frontend (an untrained checkpoint: speed does not depend on the weights). When --b0-clips is
below --clips, B0 runs on a task of that many clips and its times are scaled linearly to --clips, and labelled so.

Usage:
    python benchmarks/bench_evaluate.py --clips 5000 --seconds 1.0 --json benchmarks/results/evaluate_cpu.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from bench_embed import PAPER_OVERRIDES
from bench_pretrain import machine
from decar.evaluate.runner import evaluate
from decar.testing import SOUND_KINDS, write_random_checkpoint, write_synthetic_corpus


def write_task(folder: Path, clips: int, seconds: float) -> Path:
    """A manifest of `clips` synthetic clips over all SOUND_KINDS, every kind split 60/20/20."""
    per_kind = -(-clips // len(SOUND_KINDS))
    written = write_synthetic_corpus(folder / "audio", files_per_kind=per_kind, seconds=seconds)
    by_kind: dict[str, list[Path]] = {}
    for path, kind in written:
        by_kind.setdefault(kind, []).append(path)
    manifest = folder / f"synthetic{clips}.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "split"])
        for kind, paths in by_kind.items():
            for i, path in enumerate(paths):
                share = i / len(paths)
                writer.writerow([path, kind, "train" if share < 0.6 else "valid" if share < 0.8 else "test"])
    return manifest


def timed_evaluate(model: str, manifest: Path, out: Path, seeds: int, protocol: str) -> dict:
    start = time.perf_counter()
    results = evaluate(model, [str(manifest)], out, protocol=protocol, seeds=seeds, progress=False)
    wall = time.perf_counter() - start
    (task,) = results["tasks"].values()
    clips = sum(task["num_clips"].values())
    return {
        "clips": clips,
        "wall_s": wall,
        "embed_s": task["seconds"]["embed"],
        "probe_s": task["seconds"]["probe"],
        "other_s": wall - task["seconds"]["embed"] - task["seconds"]["probe"],
        "embed_clips_per_s": clips / task["seconds"]["embed"],
        "top1_acc": f"{task['mean']:.4f} ± {task['std']:.4f}",
        "embed_dim": results["model"]["embed_dim"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=5000)
    parser.add_argument("--b0-clips", type=int, default=5000, help="B0's task size; below --clips, scaled up")
    parser.add_argument("--seconds", type=float, default=1.0, help="length of each clip")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--protocol", default="linear", help="probe protocol (decar evaluate --protocol)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="decar-bench-evaluate-"))
    load_before = os.getloadavg()
    try:
        start = time.perf_counter()
        full = write_task(work / "full", args.clips, args.seconds)
        b0_task = full if args.b0_clips >= args.clips else write_task(work / "b0", args.b0_clips, args.seconds)
        setup_s = time.perf_counter() - start
        checkpoint = write_random_checkpoint(work / "b0.pt", PAPER_OVERRIDES)
        rows = {
            "logmel-stats": timed_evaluate("logmel-stats", full, work / "out_logmel", args.seeds, args.protocol),
            "efficientnet_b0": timed_evaluate(str(checkpoint), b0_task, work / "out_b0", args.seeds, args.protocol),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)

    b0 = rows["efficientnet_b0"]
    if b0["clips"] < args.clips:
        scale = args.clips / b0["clips"]
        rows[f"efficientnet_b0 (extrapolated ×{scale:.2f})"] = {
            "clips": args.clips,
            "measured_on_clips": b0["clips"],
            **{key: b0[key] * scale for key in ("wall_s", "embed_s", "probe_s", "other_s")},
        }
    print(f"{'model':40s} {'clips':>6s} {'wall s':>8s} {'embed s':>8s} {'probe s':>8s} {'other s':>8s}  top1_acc")
    for name, row in rows.items():
        print(
            f"{name:40s} {row['clips']:6d} {row['wall_s']:8.1f} {row['embed_s']:8.1f} {row['probe_s']:8.1f} "
            f"{row['other_s']:8.1f}  {row.get('top1_acc', '(scaled)')}"
        )
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine() | {"loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "args": vars(args) | {"json": str(args.json) if args.json else None},
        "task": f"{len(SOUND_KINDS)} synthetic sound kinds, {args.seconds} s clips, 60/20/20 split, manifest CSV",
        "setup_s_untimed": setup_s,
        "protocol": f"{args.protocol}, {args.seeds} seeds, no embedding cache",
        "b0_checkpoint_overrides": PAPER_OVERRIDES,
        "results": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
