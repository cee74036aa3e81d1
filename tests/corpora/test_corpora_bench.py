"""build-bench on stand-in packages: HEAR tasks load, rebuilds are byte-identical, held-out sources stay out."""

from __future__ import annotations

import csv
import faulthandler
import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from corpora_standins import fake_render_note_clips, write_standin_cache
from rich.console import Console

from decar.corpora import clips
from decar.corpora.bench import DEMO_PLAN, BenchError, build_bench
from decar.corpora.debian import DebianCache, is_reserved
from decar.corpora.sources import is_under
from decar.corpora.synth import Utterance
from decar.corpora.tasks import SPLITS
from decar.evaluate.tasks.hear import load_hear_task

SCALE = 0.001


def _build(out: Path, cache: Path, seed: int = 0) -> dict:
    return build_bench(
        out, cache, seed=seed, scale=SCALE, workers=1, console=Console(quiet=True), cache=DebianCache(cache)
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Two builds of the same stand-in packages with the same seed, and the cache they read."""
    patch = pytest.MonkeyPatch()
    patch.setattr(clips, "render_note_clips", fake_render_note_clips)
    cache = write_standin_cache(tmp_path_factory.mktemp("cache"))
    first, second = tmp_path_factory.mktemp("bench_a"), tmp_path_factory.mktemp("bench_b")
    _build(first, cache)
    _build(second, cache)
    yield first, second, cache
    patch.undo()


def _manifest(bench: Path) -> list[dict[str, str]]:
    with (bench / "manifest.csv").open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _files(bench: Path) -> dict[str, bytes]:
    return {
        path.relative_to(bench).as_posix(): path.read_bytes() for path in sorted(bench.rglob("*")) if path.is_file()
    }


def test_every_task_loads_as_a_hear_task_with_three_splits(built: tuple[Path, Path, Path]) -> None:
    bench = built[0]
    names = sorted(path.name for path in (bench / "tasks").iterdir())
    assert len(names) >= 6
    for name in names:
        task = load_hear_task(bench / "tasks" / name)
        split = next(task.splits())  # raises on an empty split or a test class never trained
        assert split.train and split.valid and split.test, name
        assert len(task.vocabulary) >= 2, name
        for clip in task.clips[:5]:
            info = sf.info(clip.path)
            assert (info.samplerate, info.channels) == (16000, 1)
            assert info.duration >= 1.0


def test_rebuilding_with_the_same_seed_is_byte_identical(built: tuple[Path, Path, Path]) -> None:
    first, second = _files(built[0]), _files(built[1])
    assert sorted(first) == sorted(second)
    assert [name for name in first if first[name] != second[name]] == []


def test_corpus_holds_no_held_out_source_and_no_reserved_package(built: tuple[Path, Path, Path]) -> None:
    bench = built[0]
    rows = _manifest(bench)
    held_out = json.loads((bench / "held_out.json").read_text())
    corpus = [row for row in rows if row["role"] == "corpus"]
    held_rows = [row for row in rows if row["role"] == "task" and row["split"] in ("valid", "test")]
    assert corpus and held_rows and held_out
    leaked = [row["source_id"] for row in corpus if any(is_under(row["source_id"], unit) for unit in held_out)]
    assert leaked == []
    assert all(any(is_under(row["source_id"], unit) for unit in held_out) for row in held_rows)
    assert {row["source_id"] for row in corpus}.isdisjoint({row["source_id"] for row in held_rows})
    assert not any(is_reserved(row["package"]) for row in rows if row["package"])


def test_language_id_is_scored_on_voices_the_probe_never_heard(built: tuple[Path, Path, Path]) -> None:
    rows = [row for row in _manifest(built[0]) if row["task"] == "language_id"]
    voices = {split: {row["source_id"] for row in rows if row["split"] == split} for split in SPLITS}
    variants = {split: {source.partition("+")[2] for source in ids if "+" in source} for split, ids in voices.items()}
    assert variants["valid"] and variants["test"] and variants["train"].isdisjoint(variants["valid"] | variants["test"])
    assert variants["valid"].isdisjoint(variants["test"])
    assert {row["package"] for row in rows if row["split"] == "train"} >= {"espeak-ng", "tuxpaint-stamps-default"}
    assert {row["package"] for row in rows if row["split"] != "train"} == {"espeak-ng"}


def test_corpus_files_list_and_manifest_agree(built: tuple[Path, Path, Path]) -> None:
    bench = built[0]
    listed = (bench / "corpus/files.txt").read_text().split()
    corpus_rows = {row["path"] for row in _manifest(bench) if row["role"] == "corpus"}
    assert {f"corpus/{name}" for name in listed} == corpus_rows
    for row in _manifest(bench):
        if row["role"] != "metadata":
            assert float(row["duration_s"]) >= 1.0
    assert "| tuxpaint-stamps-default | 1.0-1 | GPL-2+ |" in (bench / "SOURCES.md").read_text()


def test_an_undecodable_source_file_is_skipped_and_counted(built: tuple[Path, Path, Path]) -> None:
    summary = json.loads((built[0] / "summary.json").read_text())
    assert any(key.startswith("tuxpaint-stamps-default") for key in summary["skipped_files"])


def test_a_rerun_resumes_and_other_settings_are_refused(built: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _first, _second, cache = built
    out = tmp_path / "bench"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(clips, "render_note_clips", fake_render_note_clips)
        _build(out, cache)
        clip = next((out / "corpus").rglob("*.flac"))
        clip.unlink()
        before = {name: data for name, data in _files(out).items()}
        _build(out, cache)
    assert clip.is_file()
    assert _files(out).keys() == before.keys() | {clip.relative_to(out).as_posix()}
    with pytest.raises(BenchError, match="seed"):
        _build(out, cache, seed=1)


def test_a_crashing_utterance_costs_only_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    def speak(_engine: object, utterance: Utterance) -> np.ndarray:
        if utterance.text == "crash":
            faulthandler.disable()  # the crash is the point: no traceback dump
            os.abort()
        return np.full(16000, 0.1, dtype=np.float32)

    monkeypatch.setattr(clips.Espeak, "speak", speak)
    waves = clips.speak_isolated([Utterance("a", "en"), Utterance("crash", "en"), Utterance("b", "en")])
    assert waves[1] is None
    assert waves[0] is not None and waves[2] is not None


def test_one_audio_under_two_names_stays_in_its_first_split(tmp_path: Path) -> None:
    from decar.corpora.clips import ClipSpec, FileCut, Written
    from decar.corpora.report import write_task_folder
    from decar.corpora.tasks import TaskDesign

    def spec(name: str, split: str, label: str) -> ClipSpec:
        cut = FileCut(Path("x.ogg"), 0.0, 1.0)
        return ClipSpec(f"tasks/t/16000/{split}/{name}", cut, "p", f"p/{name}", "task", "t", split, label)

    design = TaskDesign("t", "", "", 1.0, [spec("a.flac", "train", "x"), spec("b.flac", "valid", "x")])
    design.specs += [spec("c.flac", "test", "x"), spec("d.flac", "test", "x")]
    sha = {"a.flac": "same", "b.flac": "same", "c.flac": "other", "d.flac": "same"}  # b and d copy a
    results = {s.relpath: Written(s.relpath, 1.0, sha[Path(s.relpath).name]) for s in design.specs}
    counts = write_task_folder(tmp_path, design, results, [])
    assert counts == {"classes": 1, "train": 1, "valid": 0, "test": 1}
    assert json.loads((tmp_path / "tasks/t/test.json").read_text()) == {"c.flac": ["x"]}


def test_the_demo_plan_builds_two_tasks_from_seven_packages(
    built: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _first, _second, cache = built
    monkeypatch.setattr(clips, "render_note_clips", fake_render_note_clips)
    summary = build_bench(
        tmp_path, cache, scale=0.01, workers=1, console=Console(quiet=True), cache=DebianCache(cache), plan=DEMO_PLAN
    )
    assert set(summary["tasks"]) == {"instrument_family", "voiced_digits"}
    assert set(summary["corpus"]) <= {*DEMO_PLAN.packages, "espeak-ng"}
    for name in summary["tasks"]:
        split = next(load_hear_task(tmp_path / "tasks" / name).splits())  # raises on an empty split
        assert split.train and split.valid and split.test, name
    rows = _manifest(tmp_path)
    corpus_sources = {row["source_id"] for row in rows if row["role"] == "corpus"}
    assert not any(source.startswith("timgm6mb-soundfont") for source in corpus_sources)  # the held-out SoundFont
    test_voices = {
        row["source_id"].split("/")[1] for row in rows if row["task"] == "voiced_digits" and row["split"] == "test"
    }
    train_voices = {
        row["source_id"].split("/")[1] for row in rows if row["task"] == "voiced_digits" and row["split"] == "train"
    }
    assert test_voices and not test_voices & train_voices
    assert json.loads((tmp_path / "build.json").read_text())["plan"] == "demo"
