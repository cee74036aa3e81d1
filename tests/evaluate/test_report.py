"""Reports from results dicts: results.json/.md, confusion plots, `compare` tables and charts, their errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from decar.cli import app
from decar.evaluate.report import DAGGER, TEST_SELECTED_NOTE, compare, plot_confusion, write_results

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fake_results(name: str, scores: dict[str, tuple[float, float]], selection: str = "valid") -> dict[str, Any]:
    """A results dict shaped like `evaluate`'s, with the given (mean, std) per task."""
    vocabulary = ["a", "b", "c"]
    return {
        "model": {"spec": f"{name}.pt", "name": name, "fingerprint": "0123abcd"},
        "protocol": "paper" if selection == "test" else "linear",
        "selection": selection,
        "seeds": [0, 1, 2],
        "tasks": {
            task: {
                "primary_metric": "top1_acc",
                "mean": mean,
                "std": std,
                "per_seed": [],
                "per_fold": None,
                "metrics": {"top1_acc": {"mean": mean, "std": std}},
                "num_clips": {"train": 30, "valid": 9, "test": 12},
                "failures": [],
                "vocabulary": vocabulary,
            }
            for task, (mean, std) in scores.items()
        },
        "config": {},
        "versions": {"decar": "0.1.0", "torch": "2.x"},
        "date": "2026-01-01T00:00:00+00:00",
    }


def write_run(folder: Path, results: dict[str, Any]) -> Path:
    write_results(results, folder)
    return folder


def test_write_results_writes_json_markdown_and_confusion(tmp_path: Path) -> None:
    results = fake_results("decar-b0", {"esc": (0.9, 0.01), "speech": (0.5, 0.02)})
    results["tasks"]["speech"]["failures"] = [{"path": "/data/bad.wav", "reason": "not audio"}]
    matrix = np.array([[3, 1, 0], [0, 4, 0], [0, 0, 4]])
    write_results(results, tmp_path, {"esc": matrix})

    assert json.loads((tmp_path / "results.json").read_text()) == results
    md = (tmp_path / "results.md").read_text()
    assert "| task | metric | mean ± std | n test | note |" in md
    assert "| esc | top1_acc | 0.9000 ± 0.0100 | 12 |  |" in md
    assert "/data/bad.wav" in md and "not audio" in md
    assert TEST_SELECTED_NOTE not in md
    assert (tmp_path / "confusion_esc.png").read_bytes().startswith(PNG_MAGIC)
    assert (tmp_path / "confusion_esc.csv").read_text().splitlines() == [
        "true \\ predicted,a,b,c",
        "a,3,1,0",
        "b,0,4,0",
        "c,0,0,4",
    ]
    assert not (tmp_path / "confusion_speech.png").exists()
    assert not list(tmp_path.glob(".*.tmp")), "atomic writes leave no temp files"


def test_markdown_marks_test_selected_results(tmp_path: Path) -> None:
    write_results(fake_results("decar-b0", {"esc": (0.9, 0.01)}, selection="test"), tmp_path)
    md = (tmp_path / "results.md").read_text()
    assert f"| esc | top1_acc | 0.9000 ± 0.0100 | 12 | {TEST_SELECTED_NOTE} |" in md


def test_plot_confusion_many_classes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    matrix = rng.integers(0, 5, size=(60, 60))
    matrix[3] = 0  # a class absent from the test set must not divide by zero
    plot_confusion(matrix, [f"speaker{i}" for i in range(60)], tmp_path / "c.png", title="speakers")
    assert (tmp_path / "c.png").read_bytes().startswith(PNG_MAGIC)


def test_compare_table_average_and_dagger(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", fake_results("decar-b0", {"esc": (0.8, 0.02), "speech": (0.6, 0.04)}))
    b = write_run(
        tmp_path / "b", fake_results("byola", {"esc": (0.7, 0.01), "speech": (0.5, 0.0), "nsynth": (0.3, 0.1)})
    )
    c = write_run(tmp_path / "c", fake_results("paper-b0", {"esc": (0.9, 0.0), "speech": (0.7, 0.0)}, "test"))

    text = compare([a, b, c], tmp_path / "cmp")

    lines = text.splitlines()
    assert lines[0] == "| model | protocol | esc | speech | nsynth | Average |"
    assert lines[2] == "| decar-b0 | linear | 0.8000 ± 0.0200 | 0.6000 ± 0.0400 | — | 0.7000 |"
    # byola's nsynth is left out of its average: not every model has it
    assert lines[3] == "| byola | linear | 0.7000 ± 0.0100 | 0.5000 ± 0.0000 | 0.3000 ± 0.1000 | 0.6000 |"
    assert lines[4] == f"| paper-b0 | paper | 0.9000 ± 0.0000{DAGGER} | 0.7000 ± 0.0000{DAGGER} | — | 0.8000{DAGGER} |"
    assert f"{DAGGER} {TEST_SELECTED_NOTE}" in text
    assert "2 task(s) every model has (esc, speech)" in text
    assert (tmp_path / "cmp" / "compare.md").read_text() == text
    assert (tmp_path / "cmp" / "compare.png").read_bytes().startswith(PNG_MAGIC)


def test_compare_tells_apart_runs_of_one_model(tmp_path: Path) -> None:
    a = write_run(tmp_path / "epoch10", fake_results("decar-b0", {"esc": (0.8, 0.02)}))
    b = write_run(tmp_path / "epoch50", fake_results("decar-b0", {"esc": (0.85, 0.02)}))
    text = compare([a, b])
    assert "| decar-b0 [epoch10] |" in text and "| decar-b0 [epoch50] |" in text
    assert "test-selected" not in text


def test_compare_without_results_names_the_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty has no results\.json"):
        compare([tmp_path / "empty"])


def test_cli_compare_prints_table_and_writes_chart(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", fake_results("decar-b0", {"esc": (0.8, 0.02)}))
    b = write_run(tmp_path / "b", fake_results("logmel-stats", {"esc": (0.6, 0.03)}))
    result = CliRunner().invoke(app, ["compare", str(a), str(b), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "decar-b0" in result.output and "logmel-stats" in result.output and "Average" in result.output
    assert (tmp_path / "out" / "compare.png").is_file()


def test_cli_compare_folder_without_results_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "nothing").mkdir()
    result = CliRunner().invoke(app, ["compare", str(tmp_path / "nothing")], env={"COLUMNS": "2000"})
    assert result.exit_code == 2
    assert "error:" in result.output and "has no results.json" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output
