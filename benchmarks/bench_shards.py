"""Reading audio from tar shards against reading the same files one by one.

The files are 16 kHz FLAC. Shards hold the same clips as FLAC (the same decoding: the difference is what a
file per clip costs, open, stat and seek, against one sequential read per shard) or as 16-bit PCM (no
decoding). Each reader runs twice, alternating, and both passes are kept:
the first after the shards were written (the page cache holds some of each), the second warm.

    .venv/bin/python benchmarks/bench_shards.py --files /work/bench/corpus/files.txt --count 3000 \
        --json benchmarks/results/shards_cpu.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from decar.audio import list_audio_files, load_audio
from decar.shards import ShardStream, write_shards


def read_files(paths: list[Path]) -> tuple[float, float]:
    """(seconds, seconds of audio) reading every file one by one."""
    start, audio = time.perf_counter(), 0.0
    for path in paths:
        audio += len(load_audio(path, 16000)) / 16000
    return time.perf_counter() - start, audio


def read_shards(folder: Path, buffer_size: int) -> tuple[float, float]:
    start, audio = time.perf_counter(), 0.0
    for _sample_id, wave in ShardStream(folder, buffer_size=buffer_size):
        audio += len(wave) / 16000
    return time.perf_counter() - start, audio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=Path, required=True, help="a folder or list file of audio")
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--shard-size", type=int, default=500)
    parser.add_argument("--buffer-size", type=int, default=1000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    paths = list_audio_files(args.files)[:: max(1, len(list_audio_files(args.files)) // args.count)][: args.count]
    with tempfile.TemporaryDirectory(prefix="decar-shards-") as work:
        write_s, sizes = {}, {}
        for encoding in ("flac", "pcm16"):
            start = time.perf_counter()
            write_shards(paths, Path(work) / encoding, shard_size=args.shard_size, encoding=encoding)
            write_s[encoding] = time.perf_counter() - start
            sizes[encoding] = sum(p.stat().st_size for p in (Path(work) / encoding).glob("*.tar")) / 2**20
        runs = []
        for attempt in range(2):
            files_s, audio = read_files(paths)
            row = {"pass": attempt, "files_s": files_s}
            for encoding in ("flac", "pcm16"):
                row[f"{encoding}_s"], shard_audio = read_shards(Path(work) / encoding, args.buffer_size)
                row[f"{encoding}_speed_over_files"] = files_s / row[f"{encoding}_s"]
            runs.append(row)
            print(
                f"pass {attempt}: files {files_s:.1f} s ({len(paths) / files_s:.0f} clips/s); shards flac "
                f"{row['flac_s']:.1f} s ({row['flac_speed_over_files']:.2f}x), pcm16 {row['pcm16_s']:.1f} s "
                f"({row['pcm16_speed_over_files']:.2f}x the speed of files)",
                flush=True,
            )
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "clips": len(paths),
        "audio_hours": audio / 3600,
        "shard_audio_hours": shard_audio / 3600,
        "write_s": write_s,
        "shard_mb": sizes,
        "runs": runs,
    }
    print(f"{len(paths)} clips, {audio / 3600:.2f} h; shards written in {write_s}, sizes (MB) {sizes}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
