"""Reports from results dicts: results.json/.md, confusion plots, `compare` tables and charts, their errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from decar.cli import app
from decar.evaluate.protocols import PROTOCOLS
from decar.evaluate.report import (
    DAGGER,
    SIGNIFICANT,
    TEST_SELECTED_NOTE,
    compare,
    plot_confusion,
    predictions_file,
    write_results,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fake_results(
    name: str, scores: dict[str, tuple[float, float]], selection: str = "valid", protocol: str | None = None
) -> dict[str, Any]:
    """A results dict shaped like `evaluate`'s, with the given (mean, std) per task."""
    vocabulary = ["a", "b", "c"]
    protocol = protocol or ("paper" if selection == "test" else "linear")
    return {
        "model": {"spec": f"{name}.pt", "name": name, "fingerprint": "0123abcd"},
        "protocol": protocol,
        "protocol_hash": PROTOCOLS[protocol].settings_hash,
        "selection": selection,
        "seeds": [0, 1, 2],
        "tasks": {
            task: {
                "protocol": protocol,
                "protocol_hash": PROTOCOLS[protocol].settings_hash,
                "primary_metric": "top1_acc",
                "mean": mean,
                "std": std,
                "ci95": [mean - 0.05, mean + 0.05],
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
    assert "| task | metric | mean ± std | 95 % CI | n test | note |" in md
    assert "| esc | top1_acc | 0.9000 ± 0.0100 | [0.8500, 0.9500] | 12 |  |" in md
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
    assert f"| esc | top1_acc | 0.9000 ± 0.0100 | [0.8500, 0.9500] | 12 | {TEST_SELECTED_NOTE} |" in md


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

    text = compare([a, b, c], tmp_path / "cmp", allow_mixed_protocols=True)

    lines = text.splitlines()
    linear, paper = (f"{name} ({PROTOCOLS[name].settings_hash})" for name in ("linear", "paper"))
    assert lines[0] == "| model | protocol | esc | speech | nsynth | Average |"
    assert lines[2] == f"| decar-b0 | {linear} | 0.8000 ± 0.0200 | 0.6000 ± 0.0400 | — | 0.7000 |"
    # byola's nsynth is left out of its average: not every model has it
    assert lines[3] == f"| byola | {linear} | 0.7000 ± 0.0100 | 0.5000 ± 0.0000 | 0.3000 ± 0.1000 | 0.6000 |"
    assert lines[4] == (
        f"| paper-b0 | {paper} | 0.9000 ± 0.0000{DAGGER} | 0.7000 ± 0.0000{DAGGER} | — | 0.8000{DAGGER} |"
    )
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


# ------------------------------------------------------------------------------------------ mixed protocols
@pytest.mark.parametrize(
    ("second", "shown"),
    [
        ({"protocol": "evar-linear"}, "evar-linear ("),
        ({"protocol_hash": "0123456789ab"}, "linear (0123456789ab)"),
        ({"protocol_hash": None}, "linear (no settings hash)"),  # results.json from before settings hashes
    ],
)
def test_compare_refuses_mixed_or_unknown_protocols(tmp_path: Path, second: dict[str, Any], shown: str) -> None:
    a = write_run(tmp_path / "a", fake_results("decar-b0", {"esc": (0.8, 0.02)}))
    other = {**fake_results("byola", {"esc": (0.7, 0.01)}), **second}
    if other["protocol_hash"] is None:
        del other["protocol_hash"]
    b = write_run(tmp_path / "b", other)
    with pytest.raises(ValueError, match="--allow-mixed-protocols") as error:
        compare([a, b])
    assert str(a) in str(error.value) and str(b) in str(error.value) and shown in str(error.value)
    text = compare([a, b], allow_mixed_protocols=True)
    assert "| byola | " + shown in text


def test_cli_compare_mixed_protocols_is_one_line_unless_allowed(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", fake_results("decar-b0", {"esc": (0.8, 0.02)}))
    b = write_run(tmp_path / "b", fake_results("byola", {"esc": (0.7, 0.01)}, protocol="knn"))
    refused = CliRunner().invoke(app, ["compare", str(a), str(b)], env={"COLUMNS": "2000"})
    assert refused.exit_code == 2
    assert refused.output.startswith("error:") and len(refused.output.strip().splitlines()) == 1
    assert "linear" in refused.output and "knn" in refused.output
    allowed = CliRunner().invoke(app, ["compare", str(a), str(b), "--allow-mixed-protocols"])
    assert allowed.exit_code == 0, allowed.output
    assert "byola" in allowed.output


# ------------------------------------------------------------------------------------------- paired tests
def predictions(correct: np.ndarray, order: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Arrays of a predictions file for 3-class clips, right where `correct` (two seeds, the same scores)."""
    n = len(correct)
    labels = np.arange(n) % 3
    predicted = np.where(correct, labels, (labels + 1) % 3)
    arrays = {
        "clip_id": np.array([f"audio/clip{i:03d}.wav" for i in range(n)]),
        "fold": np.array(["fold0" if i < n // 2 else "fold1" for i in range(n)]),
        "labels": labels,
        "scores": np.stack([np.eye(3, dtype=np.float32)[predicted]] * 2),
        "seeds": np.array([0, 1]),
    }
    if order is not None:
        for name in ("clip_id", "fold", "labels"):
            arrays[name] = arrays[name][order]
        arrays["scores"] = arrays["scores"][:, order]
    return arrays


def write_scored_run(folder: Path, name: str, correct: np.ndarray, order: np.ndarray | None = None) -> Path:
    results = fake_results(name, {"esc": (float(correct.mean()), 0.0)})
    results["tasks"]["esc"]["predictions"] = predictions_file("esc")
    write_results(results, folder, predictions={"esc": predictions(correct, order)})
    return folder


def test_compare_marks_significant_differences_from_the_first_folder(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    reference = rng.random(300) < 0.85
    much_worse = reference & (rng.random(300) > 0.3)  # loses 30 % of the reference's hits
    one_clip_worse = reference.copy()
    one_clip_worse[np.flatnonzero(reference)[0]] = False
    # the second run stores its clips in another order: clips are matched by id, not position
    a = write_scored_run(tmp_path / "a", "ref", reference)
    b = write_scored_run(tmp_path / "b", "worse", much_worse, order=rng.permutation(300))
    c = write_scored_run(tmp_path / "c", "same", one_clip_worse)
    assert np.load(b / "predictions" / "esc.npz")["clip_id"][0] != "audio/clip000.wav"

    rows = {line.split(" | ")[0].strip("| "): line for line in compare([a, b, c]).splitlines() if line.startswith("|")}
    assert f"{much_worse.mean():.4f} ± 0.0000{SIGNIFICANT} |" in rows["worse"]
    assert SIGNIFICANT not in rows["same"] and SIGNIFICANT not in rows["ref"]


def test_compare_without_predictions_says_which_pairs_are_untested(tmp_path: Path) -> None:
    a = write_scored_run(tmp_path / "a", "ref", np.ones(30, bool))
    b = write_run(tmp_path / "b", fake_results("old", {"esc": (0.5, 0.0)}))  # written before predictions files
    text = compare([a, b])
    assert "No paired test for: old on esc (no predictions file)." in text
    assert SIGNIFICANT + " |" not in text


def test_summary_table_is_never_cut_in_a_narrow_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from decar._console import print_table
    from decar.evaluate.report import summary_table

    monkeypatch.setenv("COLUMNS", "40")
    name = "a_rather_long_task_name_for_a_narrow_terminal"
    task = {"primary_metric": "top1_acc", "mean": 0.8125, "std": 0.0, "ci95": [0.75, 0.875]}
    results = {
        "model": {"name": "some model"},
        "selection": "valid",
        "protocol": "linear",
        "seeds": [0],
        "tasks": {name: {**task, "num_clips": {"test": 16}, "failures": []}},
    }
    print_table(summary_table(results))
    printed = capsys.readouterr().out
    for text in (name, "0.8125", "[0.7500, 0.8750]"):
        assert text in printed
