"""`evaluate` end to end on tiny generated manifest tasks: results structure, aggregation, failures, CLI."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from decar.cli import app
from decar.evaluate import runner
from decar.evaluate.cache import load_waveforms
from decar.evaluate.metrics import PRIMARY_METRIC, score
from decar.evaluate.models import EvalModel, LogMelStatsModel
from decar.evaluate.protocols import PROTOCOLS
from decar.evaluate.report import SIGNIFICANT, TEST_SELECTED_NOTE
from decar.evaluate.runner import clip_id, evaluate
from decar.evaluate.stats import FoldPredictions, bootstrap_interval
from decar.evaluate.tasks import Clip, TaskError, load_task
from decar.testing import synthetic_clip, write_bad_files, write_random_checkpoint

KINDS = ("tone", "noise_high", "clicks")
SECONDS = 0.5
SR = 16000


pytestmark = pytest.mark.usefixtures("one_thread")


def write_manifest(folder: Path, rows: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{folder.name}.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_clips(folder: Path, labels: list[tuple[str, ...]], seed: int) -> list[Path]:
    """One 0.5 s wav per entry; a multi-kind entry is the sum of its kinds."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, kinds in enumerate(labels):
        wave = sum(synthetic_clip(kind, SECONDS, SR, rng) for kind in kinds) / len(kinds)
        path = folder / f"{'+'.join(kinds)}_{i:03d}.wav"
        sf.write(path, wave, SR, subtype="PCM_16")
        paths.append(path)
    return paths


def split_task(folder: Path, per_split: dict[str, int] | None = None, seed: int = 0) -> Path:
    """KINDS × (8 train, 4 valid, 6 test) clips; the task is named after the folder."""
    per_split = per_split or {"train": 8, "valid": 4, "test": 6}
    entries = [(kind, split) for kind in KINDS for split, n in per_split.items() for _ in range(n)]
    paths = write_clips(folder / "audio", [(kind,) for kind, _ in entries], seed)
    rows = [{"path": str(p), "label": k, "split": s} for p, (k, s) in zip(paths, entries, strict=True)]
    return write_manifest(folder, rows)


def kfold_task(folder: Path, folds: int = 3, per_fold: int = 4) -> Path:
    entries = [(kind, fold) for fold in range(folds) for kind in KINDS for _ in range(per_fold)]
    paths = write_clips(folder / "audio", [(kind,) for kind, _ in entries], seed=1)
    rows = [{"path": str(p), "label": k, "fold": f} for p, (k, f) in zip(paths, entries, strict=True)]
    return write_manifest(folder, rows)


def multilabel_task(folder: Path) -> Path:
    mixes = [
        ("tone",),
        ("noise_high",),
        ("clicks",),
        ("tone", "noise_high"),
        ("tone", "clicks"),
        ("noise_high", "clicks"),
    ]
    entries = [
        (mix, split) for split, n in (("train", 6), ("valid", 2), ("test", 3)) for mix in mixes for _ in range(n)
    ]
    paths = write_clips(folder / "audio", [mix for mix, _ in entries], seed=2)
    rows = [{"path": str(p), "labels": ";".join(m), "split": s} for p, (m, s) in zip(paths, entries, strict=True)]
    return write_manifest(folder, rows)


@pytest.fixture(scope="module")
def tasks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tasks")
    return {
        "split": split_task(root / "kinds"),
        "kfold": kfold_task(root / "kinds_kfold"),
        "multilabel": multilabel_task(root / "mixes"),
    }


@pytest.fixture(scope="module")
def logmel_run(tasks: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """logmel-stats, linear probe, 3 seeds, on all three tasks (shared by the structure tests)."""
    out = tmp_path_factory.mktemp("logmel_run")
    results = evaluate("logmel-stats", [str(p) for p in tasks.values()], out, seeds=3, progress=False)
    return out, results


def test_results_json_structure(logmel_run: tuple[Path, dict[str, Any]]) -> None:
    out, results = logmel_run
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == results
    assert results["model"]["spec"] == "logmel-stats" and results["model"]["name"] and results["model"]["fingerprint"]
    assert results["protocol"] == "linear" and results["selection"] == "valid" and results["seeds"] == [0, 1, 2]
    assert set(results["versions"]) >= {"decar", "torch", "numpy", "sklearn", "python"}
    assert results["date"] and results["config"]["protocol"] == "linear"
    assert set(results["tasks"]) == {"kinds", "kinds_kfold", "mixes"}
    for task in results["tasks"].values():
        assert len(task["per_seed"]) == 3
        assert 0.0 <= task["mean"] <= 1.0 and task["std"] >= 0.0
        assert task["mean"] == pytest.approx(np.mean([s["value"] for s in task["per_seed"]]))
        assert task["metrics"][task["primary_metric"]]["mean"] == pytest.approx(task["mean"])
        assert task["failures"] == []
        for name, metric in task["metrics"].items():
            if name != "d_prime":
                assert 0.0 <= metric["mean"] <= 1.0, name


def test_every_task_row_carries_the_protocol_and_its_settings_hash(logmel_run: tuple[Path, dict[str, Any]]) -> None:
    results = logmel_run[1]
    expected = PROTOCOLS["linear"].settings_hash
    assert results["protocol_hash"] == expected
    for task in results["tasks"].values():
        assert (task["protocol"], task["protocol_hash"]) == ("linear", expected)
        assert all(p["hyperparameters"]["protocol"] == "linear" for p in task["probe"])
        assert task["std"] == 0.0  # the default probe is deterministic: every seed gives the same score


def test_predictions_file_reproduces_the_scores(logmel_run: tuple[Path, dict[str, Any]]) -> None:
    out, results = logmel_run
    for task in results["tasks"].values():
        with np.load(out / task["predictions"]) as data:
            arrays = {key: data[key] for key in data.files}
        assert set(arrays) == {"clip_id", "fold", "labels", "scores", "seeds"}
        n, classes = task["num_clips"]["test"], len(task["vocabulary"])
        assert arrays["scores"].shape == (3, n, classes) and arrays["scores"].dtype == np.float32
        assert len(set(zip(arrays["fold"], arrays["clip_id"], strict=True))) == n  # one row per tested clip
        assert not any(clip.startswith("/") for clip in arrays["clip_id"])  # relative to the task folder
        assert arrays["seeds"].tolist() == [0, 1, 2]
        folds = list(dict.fromkeys(arrays["fold"]))
        assert folds == (list(task["per_fold"]) if task["per_fold"] else ["all"])
        # each seed's score, recomputed from the file, is the one in results.json (mean over folds)
        primary = PRIMARY_METRIC[task["multilabel"]]
        for seed, entry in enumerate(task["per_seed"]):
            in_fold = [arrays["fold"] == fold for fold in folds]
            per_fold = [
                score(arrays["labels"][i], arrays["scores"][seed][i], task["multilabel"])[primary] for i in in_fold
            ]
            assert entry["value"] == pytest.approx(np.mean(per_fold))
        # and the interval is the bootstrap of exactly these predictions
        fold_predictions = [
            FoldPredictions(arrays["labels"][arrays["fold"] == f], arrays["scores"][:, arrays["fold"] == f])
            for f in folds
        ]
        assert task["ci95"] == pytest.approx(list(bootstrap_interval(fold_predictions, task["multilabel"])))
        assert task["ci95"][0] <= task["mean"] <= task["ci95"][1]


def test_clip_ids_are_relative_and_name_segments(tmp_path: Path) -> None:
    root = str(tmp_path)
    assert clip_id(Clip(tmp_path / "a" / "dog.wav", ("dog",)), root) == "a/dog.wav"
    segment = Clip(tmp_path / "long.wav", ("dog",), start_s=12.0, duration_s=1.0)
    assert clip_id(segment, root) == "long.wav@12.000+1.000"
    assert clip_id(Clip(tmp_path / "long.wav", ("dog",), start_s=3.5), root) == "long.wav@3.500+end"


def test_separable_task_is_solved(logmel_run: tuple[Path, dict[str, Any]]) -> None:
    kinds = logmel_run[1]["tasks"]["kinds"]
    assert kinds["primary_metric"] == "top1_acc"
    assert kinds["mean"] >= 0.9
    assert kinds["num_clips"] == {"train": 24, "valid": 12, "test": 18}
    assert kinds["vocabulary"] == sorted(KINDS)
    assert kinds["per_fold"] is None


def test_multilabel_task_scored_by_map(logmel_run: tuple[Path, dict[str, Any]]) -> None:
    mixes = logmel_run[1]["tasks"]["mixes"]
    assert mixes["primary_metric"] == "mAP"
    assert {"mAP", "d_prime", "roc_auc"} <= set(mixes["metrics"])
    assert mixes["mean"] > 0.7  # chance mAP is about 0.5 here (each kind is in half of the mixes)


def test_kfold_aggregation(logmel_run: tuple[Path, dict[str, Any]]) -> None:
    task = logmel_run[1]["tasks"]["kinds_kfold"]
    assert set(task["per_fold"]) == {"fold0", "fold1", "fold2"}
    for i, seed in enumerate(task["per_seed"]):
        fold_mean = np.mean([fold["per_seed"][i] for fold in task["per_fold"].values()])
        assert seed["value"] == pytest.approx(fold_mean)
    assert task["num_clips"]["test"] == 36  # every clip is tested once over the folds
    assert task["num_clips"]["train"] == 36  # each fold trains on 1 of 3 folds


def test_markdown_and_confusion(logmel_run: tuple[Path, dict[str, Any]]) -> None:
    out, results = logmel_run
    md = (out / "results.md").read_text()
    kinds = results["tasks"]["kinds"]
    low, high = kinds["ci95"]
    assert f"| kinds | top1_acc | {kinds['mean']:.4f} ± {kinds['std']:.4f} | [{low:.4f}, {high:.4f}] | 18 |" in md
    assert "| mixes | mAP |" in md and TEST_SELECTED_NOTE not in md
    macro_f1 = kinds["metrics"]["macro_f1"]
    assert f"| kinds | macro_f1 | {macro_f1['mean']:.4f} ± {macro_f1['std']:.4f} |" in md  # not only top-1
    assert "| mixes | d_prime |" in md
    assert (out / "confusion_kinds.png").stat().st_size > 1000
    assert (out / "confusion_kinds_kfold.png").is_file()
    assert not (out / "confusion_mixes.png").exists()
    rows = list(csv.reader((out / "confusion_kinds_kfold.csv").read_text().splitlines()))
    assert sum(int(v) for row in rows[1:] for v in row[1:]) == 36  # first seed, summed over the 3 folds


def test_paper_protocol_is_labelled_test_selected(tasks: dict[str, Path], tmp_path: Path) -> None:
    results = evaluate("logmel-stats", [str(tasks["split"])], tmp_path, protocol="paper", seeds=2, progress=False)
    assert results["selection"] == "test"
    assert json.loads((tmp_path / "results.json").read_text())["selection"] == "test"
    assert all(p["selection"] == "test" for p in results["tasks"]["kinds"]["probe"])
    assert TEST_SELECTED_NOTE in (tmp_path / "results.md").read_text()


@pytest.mark.parametrize("protocol", ["evar-linear", "hear-mlp", "knn"])
def test_other_probe_protocols_run_end_to_end(tasks: dict[str, Path], tmp_path: Path, protocol: str) -> None:
    results = evaluate("logmel-stats", [str(tasks["split"])], tmp_path, protocol=protocol, seeds=1, progress=False)
    task = results["tasks"]["kinds"]
    assert results["protocol"] == protocol and task["protocol_hash"] == PROTOCOLS[protocol].settings_hash
    assert task["mean"] >= 0.9  # three easy sound kinds
    assert [p["hyperparameters"]["protocol"] for p in task["probe"]] == [protocol]
    assert (tmp_path / task["predictions"]).is_file()


def test_bad_file_is_reported_and_the_run_completes(tmp_path: Path) -> None:
    manifest = split_task(tmp_path / "withbad", per_split={"train": 4, "valid": 2, "test": 2})
    bad = write_bad_files(tmp_path / "bad")["corrupt"]
    with manifest.open("a", newline="") as f:
        csv.writer(f).writerow([str(bad), "tone", "train"])
    results = evaluate("logmel-stats", [str(manifest)], tmp_path / "out", seeds=1, progress=False)
    task = results["tasks"]["withbad"]
    assert [f["path"] for f in task["failures"]] == [str(bad)]
    assert task["failures"][0]["reason"]
    assert task["num_clips"]["train"] == 12  # the bad clip is left out
    assert str(bad) in (tmp_path / "out" / "results.md").read_text()


def test_decar_checkpoint_model(tasks: dict[str, Path], tmp_path: Path) -> None:
    checkpoint = write_random_checkpoint(tmp_path / "random.pt")
    results = evaluate(str(checkpoint), [str(tasks["split"])], tmp_path / "out", seeds=2, progress=False)
    task = results["tasks"]["kinds"]
    assert results["model"]["spec"] == str(checkpoint)
    assert 0.0 <= task["mean"] <= 1.0 and len(task["per_seed"]) == 2
    assert (tmp_path / "out" / "confusion_kinds.png").is_file()


def test_unknown_protocol_and_seed_count(tasks: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown protocol 'svm'"):
        evaluate("logmel-stats", [str(tasks["split"])], tmp_path, protocol="svm")
    with pytest.raises(ValueError, match="seeds must be at least 1"):
        evaluate("logmel-stats", [str(tasks["split"])], tmp_path, seeds=0)


def test_finetune_protocol_runs_on_a_decar_checkpoint(tmp_path: Path) -> None:
    manifest = split_task(tmp_path / "small", per_split={"train": 3, "valid": 2, "test": 2})
    checkpoint = write_random_checkpoint(tmp_path / "random.pt")
    results = evaluate(str(checkpoint), [str(manifest)], tmp_path / "out", protocol="finetune", seeds=1, progress=False)
    task = results["tasks"]["small"]
    assert results["selection"] == "valid"
    assert 0.0 <= task["mean"] <= 1.0 and task["num_clips"] == {"train": 9, "valid": 6, "test": 6}
    (probe,) = task["probe"]
    assert probe["selection"] == "valid" and probe["selected_epoch"] >= 1
    assert probe["hyperparameters"]["protocol"] == "finetune"


def test_finetune_needs_an_encoder(tasks: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="finetune needs a trainable decar encoder"):
        evaluate("logmel-stats", [str(tasks["split"])], tmp_path, protocol="finetune", progress=False)
    assert not (tmp_path / "results.json").exists()


def test_cli_evaluate_then_compare(tasks: dict[str, Path], tmp_path: Path) -> None:
    cli = CliRunner()
    checkpoint = write_random_checkpoint(tmp_path / "random.pt")
    runs = (("logmel-stats", "a", "linear"), (str(checkpoint), "b", "linear"), ("logmel-stats", "c", "knn"))
    for model, out, protocol in runs:
        args = ["evaluate", "--model", model, "--task", str(tasks["split"]), "--seeds", "1", "-o", str(tmp_path / out)]
        result = cli.invoke(app, [*args, "--protocol", protocol], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        assert "kinds" in result.output and "top1_acc" in result.output and "95 % CI" in result.output
    names = [json.loads((tmp_path / d / "results.json").read_text())["model"]["name"] for d in "ab"]
    result = cli.invoke(app, ["compare", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "cmp")])
    assert result.exit_code == 0, result.output
    assert all(name in result.output for name in names) and "Average" in result.output
    assert f"{SIGNIFICANT} differs from" in result.output and "No paired test" not in result.output
    assert (tmp_path / "cmp" / "compare.png").is_file()

    mixed = [str(tmp_path / "a"), str(tmp_path / "c")]
    refused = cli.invoke(app, ["compare", *mixed], env={"COLUMNS": "2000"})
    assert refused.exit_code == 2 and len(refused.output.strip().splitlines()) == 1
    assert "knn" in refused.output and str(tmp_path / "c") in refused.output
    assert cli.invoke(app, ["compare", *mixed, "--allow-mixed-protocols"]).exit_code == 0


@pytest.mark.parametrize(
    ("model", "task", "message"),
    [
        ("logmel-stats", "nosuchtask.csv", "cannot read task"),
        ("logmel-stats", "speech_commands_v2_12:/no/such/folder", "is not a folder"),
        ("nosuchmodel", None, "unknown model spec 'nosuchmodel'"),
        ("missing.pt", None, "checkpoint not found"),
    ],
)
def test_cli_evaluate_bad_spec_is_one_line(
    model: str, task: str | None, message: str, tasks: dict[str, Path], tmp_path: Path
) -> None:
    args = ["evaluate", "--model", model, "--task", task or str(tasks["split"]), "-o", str(tmp_path / "out")]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "2000"})
    assert result.exit_code == 2
    assert message in result.output and result.output.startswith("error:")
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_cli_help_lists_spec_forms() -> None:
    output = CliRunner().invoke(app, ["evaluate", "--help"], terminal_width=200, env={"COLUMNS": "200"}).output
    for text in ("logmel-stats", "byola:", "hear:", "random:", "NAME:ROOT", "task_metadata.json", "manifest", "esc50"):
        assert text in output, text
    for name in PROTOCOLS:
        assert name in output, name


def test_task_errors_stop_the_run_before_any_embedding(
    tasks: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(LogMelStatsModel, "embed", embed_forbidden)
    no_valid = split_task(tmp_path / "novalid", per_split={"train": 2, "test": 1})
    with pytest.raises(TaskError, match="the valid set is empty"):
        evaluate("logmel-stats", [str(tasks["split"]), str(no_valid)], tmp_path / "out", progress=False)
    with pytest.raises(TaskError, match="cannot read task"):
        evaluate("logmel-stats", [str(tasks["split"]), str(tmp_path / "missing.csv")], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def embed_forbidden(self: EvalModel, waveforms: list[np.ndarray]) -> np.ndarray:
    raise AssertionError(f"{len(waveforms)} clips embedded where none should be")


class RecordingModel(EvalModel):
    """Embeds two cheap waveform statistics and records what `prepare` and `embed` receive."""

    name = "recording"
    fingerprint = "recording"
    sample_rate = SR
    embed_dim = 2

    def __init__(self) -> None:
        self.prepared: list[set[bytes]] = []
        self.embedded = 0

    def embed(self, waveforms: list[np.ndarray]) -> np.ndarray:
        self.embedded += len(waveforms)
        return np.array([[w.std(), np.abs(np.diff(w)).mean()] for w in waveforms], dtype=np.float32)


class FittingModel(RecordingModel):
    def prepare(self, train_waveforms: Iterable[np.ndarray]) -> None:
        self.prepared.append({w.tobytes() for w in train_waveforms})


@pytest.mark.parametrize("model_class", [RecordingModel, FittingModel])
def test_statistics_see_train_audio_only_and_clips_are_embedded_once(
    model_class: type[RecordingModel], tasks: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = model_class()
    monkeypatch.setattr(runner, "load_eval_model", lambda spec, device: model)
    evaluate("recording", [str(tasks["kfold"])], tmp_path, seeds=1, progress=False)
    splits = list(load_task(tasks["kfold"]).splits())
    if model_class is RecordingModel:  # nothing depends on the split: each of the 36 clips is embedded once
        assert model.embedded == 36 and model.prepared == []
        return
    assert len(model.prepared) == len(splits) == 3
    for seen, split in zip(model.prepared, splits, strict=True):
        assert seen == {w.tobytes() for w in load_waveforms(split.train, SR).waveforms}
    assert model.embedded == 3 * 36  # statistics change per fold, so every fold re-embeds its clips


def test_cache_dir_is_filled_and_reused(
    tasks: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    first = evaluate("logmel-stats", [str(tasks["split"])], tmp_path / "a", seeds=1, cache_dir=cache, progress=False)
    assert len(list(cache.rglob("*.npy"))) == 54
    monkeypatch.setattr(LogMelStatsModel, "embed", embed_forbidden)  # all clips are cached
    second = evaluate("logmel-stats", [str(tasks["split"])], tmp_path / "b", seeds=1, cache_dir=cache, progress=False)
    assert second["tasks"]["kinds"]["per_seed"] == first["tasks"]["kinds"]["per_seed"]


def test_an_output_that_is_a_file_is_refused_before_any_work(tasks: dict[str, Path], tmp_path: Path) -> None:
    taken = tmp_path / "results.json"
    taken.write_text("{}")
    with pytest.raises(ValueError, match=r"results\.json exists and is not a folder"):
        evaluate("logmel-stats", [str(tasks["split"])], taken, progress=False)


def test_a_results_folder_in_use_is_refused(tasks: dict[str, Path], tmp_path: Path) -> None:
    from decar._lock import OutputLocked, output_lock

    with output_lock(tmp_path / "out", "decar evaluate"), pytest.raises(OutputLocked, match="in use"):
        evaluate("logmel-stats", [str(tasks["split"])], tmp_path / "out", progress=False)


def test_one_seed_shows_no_spread(tasks: dict[str, Path], tmp_path: Path) -> None:
    from decar.evaluate.report import summary_table

    results = evaluate("logmel-stats", [str(tasks["split"])], tmp_path / "out", seeds=1, progress=False)
    text = (tmp_path / "out" / "results.md").read_text()
    assert "±" not in text.split("| task |")[1].split("\n\n")[0].replace("mean ± std", "")
    assert "±" not in "".join(str(cell) for column in summary_table(results).columns for cell in column._cells)


def test_a_stopped_evaluation_resumes_with_its_finished_tasks(
    tasks: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from decar.evaluate import runner

    specs = [str(tasks["split"]), str(tasks["kfold"])]
    reference = evaluate("logmel-stats", specs, tmp_path / "reference", seeds=2, progress=False)
    calls: list[str] = []
    original = runner._evaluate_task

    def stopped_at_second(model: object, task: runner.Task, *args: object) -> tuple:
        calls.append(task.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(model, task, *args)

    monkeypatch.setattr(runner, "_evaluate_task", stopped_at_second)
    with pytest.raises(KeyboardInterrupt):
        evaluate("logmel-stats", specs, tmp_path / "out", seeds=2, progress=False)
    calls.clear()
    monkeypatch.setattr(runner, "_evaluate_task", lambda *args: calls.append(args[1].name) or original(*args))
    resumed = evaluate("logmel-stats", specs, tmp_path / "out", seeds=2, progress=False)
    assert calls == [list(reference["tasks"])[1]]  # only the task the stopped run had not finished
    for name, entry in reference["tasks"].items():
        assert resumed["tasks"][name]["mean"] == entry["mean"] and resumed["tasks"][name]["ci95"] == entry["ci95"]
    assert not (tmp_path / "out" / ".partial").exists()


def test_confusion_plots_say_which_seed_and_the_score(
    tasks: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from decar.evaluate import report

    titles: list[str] = []
    monkeypatch.setattr(report, "plot_confusion", lambda matrix, vocabulary, path, title: titles.append(title))
    results = evaluate("logmel-stats", [str(tasks["split"])], tmp_path / "out", seeds=2, progress=False)
    [(name, entry)] = results["tasks"].items()
    assert titles == [f"{name}: test confusion (seed 0); top1_acc {entry['mean']:.3f} over all seeds"]
