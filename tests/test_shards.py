"""Tar shards: written with an index, bad files named; read back as a deterministic, resumable stream."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from typer.testing import CliRunner

from decar.audio import load_audio
from decar.cli import app
from decar.shards import ShardError, ShardStream, read_index, shard_durations, write_shards
from decar.testing import write_bad_files, write_synthetic_corpus

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """24 clips of 0.3 s and one corrupt file, in shards of 5 input files."""
    root = tmp_path_factory.mktemp("shards")
    write_synthetic_corpus(root / "audio", files_per_kind=3, seconds=0.3)
    write_bad_files(root / "audio" / "zz_bad")  # sorted last: the last shard holds only bad files
    return root / "audio", root / "shards"


@pytest.fixture(scope="module")
def index(sharded: tuple[Path, Path]) -> dict:
    audio, out = sharded
    return write_shards([audio], out, shard_size=5)


def test_every_good_file_is_in_a_shard_with_its_source_and_bad_ones_are_named(
    sharded: tuple[Path, Path], index: dict
) -> None:
    _audio, out = sharded
    assert index["total_samples"] == 24 and len(index["shards"]) == 6  # 28 files / 5
    assert {Path(p).name for p in index["skipped"]} == {"empty.wav", "corrupt.wav", "nan.wav", "zero_frames.wav"}
    assert [s["first_id"] for s in index["shards"]] == [0, 5, 10, 15, 20, 24]
    assert len(shard_durations(out)) == 24 and all(d == pytest.approx(0.3) for d in shard_durations(out))


def test_the_stream_returns_the_audio_of_every_id_once(sharded: tuple[Path, Path], index: dict) -> None:
    _audio, out = sharded
    sources = [s for n in range(6) for s in json.loads((out / f"shard-{n:06d}.json").read_text())["sources"]]
    items = list(ShardStream(out, seed=3, buffer_size=4))
    assert sorted(i for i, _ in items) == list(range(24))
    for sample_id, wave in items:
        original = load_audio(sources[sample_id], 16000)
        np.testing.assert_allclose(wave.numpy(), original, atol=1.5 / 32768)  # 16-bit FLAC


def test_the_order_is_fixed_by_seed_and_epoch(sharded: tuple[Path, Path], index: dict) -> None:
    _audio, out = sharded
    ids = [
        [i for i, _ in ShardStream(out, seed=s, epoch=e, buffer_size=8)] for s, e in ((0, 0), (0, 0), (0, 1), (1, 0))
    ]
    assert ids[0] == ids[1] and ids[0] != ids[2] and ids[0] != ids[3]


def test_ranks_and_workers_share_the_samples_without_overlap(sharded: tuple[Path, Path], index: dict) -> None:
    _audio, out = sharded
    seen = []
    for rank in range(2):
        stream = ShardStream(out, seed=0, rank=rank, world_size=2, buffer_size=3)
        loader = DataLoader(stream, batch_size=None, num_workers=2)
        seen += [int(i) for i, _ in loader]
    assert sorted(seen) == list(range(24))


def test_a_resumed_stream_continues_exactly_where_it_stopped(sharded: tuple[Path, Path], index: dict) -> None:
    _audio, out = sharded
    full = list(ShardStream(out, seed=5, epoch=2, buffer_size=6))
    resumed = list(ShardStream(out, seed=5, epoch=2, buffer_size=6, skip=9))
    assert [i for i, _ in resumed] == [i for i, _ in full[9:]]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(resumed, full[9:], strict=True))


def test_a_rerun_keeps_finished_shards_and_other_settings_are_refused(sharded: tuple[Path, Path], index: dict) -> None:
    audio, out = sharded
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")}
    (out / "shard-000002.tar").unlink()  # as if killed while writing it
    again = write_shards([audio], out, shard_size=5)
    assert again["shards"] == index["shards"]
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")}
    assert {n for n in after if after[n] != before.get(n)} == {"shard-000002.tar"}
    with pytest.raises(ShardError, match="another shard size"):
        write_shards([audio], out, shard_size=7)
    with pytest.raises(ShardError, match=r"index\.json is missing"):
        read_index(audio)


def test_cli_shard(sharded: tuple[Path, Path], tmp_path: Path) -> None:
    audio, _out = sharded
    result = CliRunner().invoke(app, ["data", "shard", str(audio), "-o", str(tmp_path / "s"), "--shard-size", "10"])
    assert result.exit_code == 0, result.output
    assert "24 clips" in result.output and "4 files skipped" in result.output


def test_pcm16_shards_hold_the_same_audio_as_flac_ones(sharded: tuple[Path, Path], tmp_path: Path) -> None:
    audio, _out = sharded
    write_shards([audio], tmp_path / "flac", shard_size=5)
    write_shards([audio], tmp_path / "pcm", shard_size=5, encoding="pcm16")
    flac = dict(ShardStream(tmp_path / "flac", buffer_size=1))
    pcm = dict(ShardStream(tmp_path / "pcm", buffer_size=1))
    assert flac.keys() == pcm.keys() and len(pcm) == 24
    assert all(torch.equal(flac[i], pcm[i]) for i in pcm)  # both are the same 16-bit samples
    with pytest.raises(ShardError, match="unknown encoding"):
        write_shards([audio], tmp_path / "x", encoding="mp3")
