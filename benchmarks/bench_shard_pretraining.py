"""Pretraining from tar shards against pretraining from the same files: training and feature-pass speed.

The same clips, written as 16 kHz FLAC shards, are pretrained on with the ablations' common dcv2 setting
(configs/ablations/dcv2.yaml: AudioNTT d512, batch 64, two loader workers) for one epoch of ``--steps`` steps,
once from the file list and once from the shards, twice each, alternating (the machine's load drifts; the
ratio within a round is what to read). Reported per run: training clips/s (steps only) and the seconds of
the pass that fills the memory bank (every clip once).

    .venv/bin/python benchmarks/bench_shard_pretraining.py --files /work/bench/corpus/files.txt --count 4000 \
        --steps 60 --json benchmarks/results/shard_pretraining_cpu.json
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import tempfile
import time
from pathlib import Path

import torch

from decar.audio import list_audio_files
from decar.config import load_config
from decar.pretrain import fit
from decar.shards import write_shards

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "ablations" / "dcv2.yaml"


def pretrain_once(data: Path, out: Path, steps: int) -> dict[str, float]:
    overrides = ["optim.epochs=1", f"optim.steps_per_epoch={steps}", "data.num_workers=2", "device=cpu"]
    cfg = load_config(CONFIG, overrides)
    fit(cfg, data, out)
    record = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    return {
        "train_clips_per_s": steps * cfg.optim.batch_size / record["seconds_train"],
        "seconds_bank_pass": record["seconds_extra_pass"],
        "seconds_train": record["seconds_train"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=Path, required=True, help="audio files, folder or list")
    parser.add_argument("--count", type=int, default=4000)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    files = list_audio_files(args.files)[: args.count]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        listing = root / "files.txt"
        listing.write_text("".join(f"{path}\n" for path in files))
        write_shards([listing], root / "shards", shard_size=250)
        runs = []
        for round_number in (1, 2):
            for source, data in (("files", listing), ("shards", root / "shards")):
                result = pretrain_once(data, root / f"{source}{round_number}", args.steps)
                runs.append({"round": round_number, "source": source, **result})
                print(json.dumps(runs[-1]))
    for round_number in (1, 2):
        by = {r["source"]: r for r in runs if r["round"] == round_number}
        ratio = by["shards"]["train_clips_per_s"] / by["files"]["train_clips_per_s"]
        pass_ratio = by["files"]["seconds_bank_pass"] / by["shards"]["seconds_bank_pass"]
        print(f"round {round_number}: training shards/files {ratio:.2f}x, bank pass files/shards {pass_ratio:.2f}x")
    if args.json:
        meta = {"date": time.strftime("%Y-%m-%d"), "machine": platform.platform(), "threads": torch.get_num_threads()}
        args.json.write_text(json.dumps({**meta, "count": len(files), "steps": args.steps, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
