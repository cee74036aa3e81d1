"""Embeddings as one table (npz, parquet) from `decar embed --format`, and `decar evaluate --embeddings`."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from decar.cli import app
from decar.evaluate.runner import evaluate
from decar.tables import EmbeddingTableError, read_embeddings, write_table
from decar.testing import write_random_checkpoint, write_synthetic_corpus

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_checkpoint(tmp_path_factory.mktemp("model") / "checkpoint.pt")


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two kinds of synthetic clips in train/valid/test, as a manifest task."""
    root = tmp_path_factory.mktemp("task")
    write_synthetic_corpus(root / "audio", files_per_kind=9, seconds=0.6, kinds=("tone", "clicks"))
    rows = []
    for kind in ("tone", "clicks"):
        for i, path in enumerate(sorted((root / "audio" / kind).glob("*.wav"))):
            rows.append({"path": str(path), "label": kind, "split": ("train", "train", "valid", "test")[i % 4]})
    manifest = root / "kinds.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "label", "split"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest


@pytest.fixture(scope="module")
def embedded(checkpoint: Path, task: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`decar embed --format parquet` of the task's audio, then the npz table of the same folder."""
    out = tmp_path_factory.mktemp("embedded")
    args = ["embed", str(task.parent / "audio"), "-o", str(out), "--model", str(checkpoint)]
    assert runner.invoke(app, [*args, "--format", "parquet"]).exit_code == 0
    assert runner.invoke(app, [*args, "--format", "npz"]).exit_code == 0  # resumes: nothing recomputed
    return out


@pytest.mark.parametrize("suffix", [".npz", ".parquet"])
def test_a_table_round_trips_and_names_files_by_absolute_path(tmp_path: Path, suffix: str) -> None:
    matrix = np.arange(6, dtype=np.float32).reshape(3, 2)
    path = write_table(tmp_path / f"t{suffix}", ["a.wav", str(tmp_path / "b.wav"), "sub/c.wav"], matrix)
    vectors, failed = read_embeddings(path)
    assert failed == {}
    assert sorted(vectors) == sorted([tmp_path / "a.wav", tmp_path / "b.wav", tmp_path / "sub" / "c.wav"])
    np.testing.assert_array_equal(vectors[tmp_path / "sub" / "c.wav"], matrix[2])


def test_embed_tables_hold_exactly_the_per_file_embeddings(embedded: Path) -> None:
    per_file, failed = read_embeddings(embedded)
    assert len(per_file) == 18 and failed == {}
    for name in ("embeddings.npz", "embeddings.parquet"):
        table, _ = read_embeddings(embedded / name)
        assert table.keys() == per_file.keys()
        for path, vector in per_file.items():
            np.testing.assert_array_equal(table[path], vector)


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (lambda p: np.savez(p / "x.npz", names=np.array(["a"])), "need 'files' and 'embeddings'"),
        (lambda p: np.savez(p / "x.npz", files=np.array(["a"]), embeddings=np.full((1, 2), np.nan)), "NaN or Inf"),
        (lambda p: np.savez(p / "x.npz", files=np.array(["a", "a"]), embeddings=np.zeros((2, 2))), "more than once"),
        (lambda p: np.savez(p / "x.npz", files=np.array(["a", "b"]), embeddings=np.zeros((3, 2))), "3, 2"),
        (lambda p: (p / "x.npz").write_bytes(b"not a zip"), "not a readable .npz"),
        (lambda p: (p / "x.parquet").write_bytes(b"not parquet"), "not a readable parquet"),
        (lambda p: (p / "x.csv").write_text("file,embedding\n"), "not an embedding table"),
    ],
)
def test_a_bad_table_is_one_clear_error_naming_it(
    tmp_path: Path, write: Callable[[Path], object], message: str
) -> None:
    write(tmp_path)
    [path] = tmp_path.iterdir()
    with pytest.raises(EmbeddingTableError, match=message) as caught:
        read_embeddings(path)
    assert str(path) in str(caught.value)


def test_frame_embeddings_make_no_table(checkpoint: Path, task: Path, tmp_path: Path) -> None:
    args = ["embed", str(task.parent / "audio" / "tone"), "-o", str(tmp_path), "--model", str(checkpoint)]
    result = runner.invoke(app, [*args, "--frames", "--format", "npz"], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "one embedding per file" in result.stderr
    result = runner.invoke(app, [*args, "--format", "csv"], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "choose npy, npz or parquet" in result.stderr


@pytest.mark.slow
def test_evaluate_on_precomputed_embeddings_scores_what_the_model_scores(
    checkpoint: Path, task: Path, embedded: Path, tmp_path: Path
) -> None:
    direct = evaluate(str(checkpoint), [str(task)], tmp_path / "direct", seeds=2, progress=False)
    for source in (embedded, embedded / "embeddings.npz", embedded / "embeddings.parquet"):
        out = tmp_path / source.name
        result = runner.invoke(
            app, ["evaluate", "--embeddings", str(source), "-t", str(task), "-o", str(out), "--seeds", "2"]
        )
        assert result.exit_code == 0, result.output
        results = json.loads((out / "results.json").read_text())
        assert results["model"]["spec"] == f"embeddings:{source}"
        assert results["tasks"]["kinds"]["mean"] == pytest.approx(direct["tasks"]["kinds"]["mean"], abs=1e-9)


def test_evaluate_refuses_embeddings_that_miss_clips_of_the_task(task: Path, tmp_path: Path) -> None:
    rows = list(csv.DictReader(task.open()))
    write_table(tmp_path / "part.npz", [rows[0]["path"]], np.zeros((1, 4), dtype=np.float32))
    result = runner.invoke(
        app, ["evaluate", "--embeddings", str(tmp_path / "part.npz"), "-t", str(task), "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 2
    assert "no embedding for" in result.stderr and "decar embed" in result.stderr


def test_evaluate_takes_a_model_or_embeddings_not_both(task: Path, tmp_path: Path) -> None:
    both = ["--model", "logmel-stats", "--embeddings", "x.npz"]
    result = runner.invoke(app, ["evaluate", "-t", str(task), "-o", str(tmp_path / "o"), *both])
    assert result.exit_code == 2 and "not both" in result.stderr
