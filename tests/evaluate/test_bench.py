"""`decar bench` on two tiny generated HEAR task folders: table, marks, averages, reuse of finished runs, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from decar.cli import app
from decar.evaluate import bench
from decar.evaluate.bench import BETTER, WORSE, distinct_names, find_bench_tasks, model_slug, run_bench
from decar.evaluate.models import load_eval_model
from decar.testing import write_hear_task, write_random_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bench")
    write_hear_task(root / "tasks" / "sounds", "sounds", ("tone", "noise_high", "clicks"), seed=0)
    write_hear_task(root / "tasks" / "pitch", "pitch", ("chirp_up", "chirp_down"), seed=1)
    (root / "tasks" / "notes").mkdir()  # a folder without task_metadata.json is not a task
    return root


@pytest.fixture(scope="module")
def finished(bench_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("out")
    config = Path(__file__).resolve().parents[2] / "configs" / "audiontt.yaml"
    text = run_bench(bench_dir, ["logmel-stats", f"random:{config}"], out, ("linear", "knn"), seeds=1)
    return out, text


def test_tasks_are_the_folders_with_metadata(bench_dir: Path) -> None:
    assert [path.name for path in find_bench_tasks(bench_dir)] == ["pitch", "sounds"]
    assert [path.name for path in find_bench_tasks(bench_dir / "tasks")] == ["pitch", "sounds"]


def test_a_folder_without_tasks_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no task folders"):
        find_bench_tasks(tmp_path)
    with pytest.raises(FileNotFoundError, match="build-bench"):
        find_bench_tasks(tmp_path / "missing")


def test_model_slugs_are_folder_names() -> None:
    assert model_slug("random:configs/decar.yaml") == "random-configs-decar.yaml"
    assert model_slug("byola:/x/AudioNTT2020-BYOLA-64x96d512.pth") == "byola-x-AudioNTT2020-BYOLA-64x96d512.pth"
    assert "/" not in model_slug("../../etc")


def test_models_sharing_a_name_show_the_path_parts_that_tell_them_apart() -> None:
    name = "decar audiontt2020 (seed0/checkpoint.pt)"
    specs = ["runs/dcv2/seed0/checkpoint.pt", "runs/k512/seed0/checkpoint.pt", "logmel-stats"]
    assert distinct_names([name, name, "log-mel stats"], specs) == [
        "decar audiontt2020 (dcv2/seed0/checkpoint.pt)",
        "decar audiontt2020 (k512/seed0/checkpoint.pt)",
        "log-mel stats",
    ]
    assert distinct_names(["a (x)", "b (x)"], ["p/x", "q/x"]) == ["a (x)", "b (x)"]  # distinct names stay


def test_bench_writes_a_table_per_task_with_intervals_and_averages(finished: tuple[Path, str]) -> None:
    out, text = finished
    summary = json.loads((out / "bench.json").read_text())
    assert (out / "bench.png").stat().st_size > 0
    assert (out / "bench.md").read_text() == text
    models = summary["protocols"]["linear"]
    assert [m["spec"].split(":")[0] for m in models] == ["logmel-stats", "random"]
    for model in models:
        for name in ("pitch", "sounds"):
            cell = model["tasks"][name]
            low, high = cell["ci95"]
            assert 0.0 <= low <= cell["mean"] <= high <= 1.0
            results = json.loads((out / "linear" / model_slug(model["spec"]) / "results.json").read_text())
            assert cell["mean"] == pytest.approx(results["tasks"][name]["mean"])
        means = [model["tasks"][name]["mean"] for name in ("pitch", "sounds")]
        assert model["average"]["mean"] == pytest.approx(np.mean(means))
        assert model["average"]["ci95"][0] <= model["average"]["mean"] <= model["average"]["ci95"][1]
    assert models[0]["tasks"]["pitch"]["mark"] == ""  # the reference is never marked against itself
    for row in ("| pitch |", "| sounds |", "| **Average** |", "Probes on the same embeddings: linear vs knn"):
        assert row in text


def test_a_rerun_reuses_finished_runs(
    bench_dir: Path, finished: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out, text = finished
    config = Path(__file__).resolve().parents[2] / "configs" / "audiontt.yaml"

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a finished run was evaluated again")

    monkeypatch.setattr(bench, "evaluate", refuse)
    again = run_bench(bench_dir, ["logmel-stats", f"random:{config}"], out, ("linear", "knn"), seeds=1)
    assert again == text
    with pytest.raises(AssertionError, match="evaluated again"):  # another seed count is another run
        run_bench(bench_dir, ["logmel-stats"], out, ("linear",), seeds=2)


def test_a_checkpoint_trained_further_at_the_same_path_is_evaluated_again(bench_dir: Path, tmp_path: Path) -> None:
    checkpoint = write_random_checkpoint(tmp_path / "run" / "checkpoint.pt", seed=0)
    run_bench(bench_dir, [str(checkpoint)], tmp_path / "out", ("linear",), seeds=1, task_names=["pitch"])
    write_random_checkpoint(checkpoint, seed=1)  # the same path, other weights
    run_bench(bench_dir, [str(checkpoint)], tmp_path / "out", ("linear",), seeds=1, task_names=["pitch"])
    results = json.loads((tmp_path / "out" / "linear" / model_slug(str(checkpoint)) / "results.json").read_text())
    assert results["model"]["fingerprint"] == load_eval_model(str(checkpoint)).fingerprint


def test_marks_come_from_paired_resamples() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(0.6, 0.02, 1000)
    assert bench._mark(reference + 0.1, reference) == BETTER
    assert bench._mark(reference - 0.1, reference) == WORSE
    assert bench._mark(reference + rng.normal(0, 0.02, 1000), reference) == ""
    # paired: a shift far smaller than either interval is still detected when the resamples are shared
    assert bench._mark(reference + 0.005, reference) == BETTER


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--protocol", "paper"], "bench protocols must be probes"),
        (["--task", "nope"], "no task folder named nope"),
        (["--model", "logmel-stats"], "a model is named twice"),
    ],
)
def test_cli_errors_are_one_line(bench_dir: Path, tmp_path: Path, args: list[str], message: str) -> None:
    base = ["bench", "--bench", str(bench_dir), "--model", "logmel-stats", "-o", str(tmp_path / "o")]
    result = CliRunner().invoke(app, base + args, env={"COLUMNS": "40"})
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
