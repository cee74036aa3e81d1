"""Evaluation reports people can read and paste: results.json, a Markdown table, confusion matrices, comparisons.

`results.json` is the record (model fingerprint, protocol and its settings hash, every seed, bootstrap
intervals, versions); predictions/<task>.npz hold the per-clip test scores; the Markdown and PNG files are
views of them, so `compare` works from the results folders alone and can compare runs made on different days or
machines. Results whose model was selected on the test set (the papers' protocol) carry a dagger wherever they
are shown.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from rich.table import Table

from decar._io import atomic_write, atomic_write_text
from decar.evaluate.stats import LEVEL, RESAMPLES, FoldPredictions, paired_bootstrap
from decar.plots import save_png

TEST_SELECTED_NOTE = "test-selected (paper protocol)"
DAGGER = "†"
SIGNIFICANT = "*"
"""Marks a compared score that differs from the reference row's at 95 % (paired bootstrap)."""
_MAX_TICK_LABELS = 40
"""Above this many classes the confusion matrix is drawn without per-class tick labels (unreadable anyway)."""


def file_stem(task_name: str) -> str:
    """A file-name-safe form of a task name, for confusion_<task>.png/.csv."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", task_name)


def predictions_file(task_name: str) -> str:
    """Where a task's per-clip test predictions live, relative to the results folder."""
    return f"predictions/{file_stem(task_name)}.npz"


def format_score(mean: float, std: float, seeds: int) -> str:
    """Mean ± std over seeds; the mean alone for one seed, whose std says nothing."""
    return f"{mean:.4f}" if seeds < 2 else f"{mean:.4f} ± {std:.4f}"


def format_interval(task: dict[str, Any]) -> str:
    """A task's bootstrap interval as "[lo, hi]", or "—" for results written before intervals existed."""
    if "ci95" not in task:
        return "—"
    low, high = task["ci95"]
    return f"[{low:.4f}, {high:.4f}]"


def write_results(
    results: dict[str, Any],
    out_dir: Path,
    confusions: dict[str, np.ndarray] | None = None,
    predictions: dict[str, dict[str, np.ndarray]] | None = None,
) -> None:
    """Write OUT/results.json, OUT/results.md, per multiclass task confusion_<task>.csv and .png, and predictions.

    Args:
        results: the dict `decar.evaluate.runner.evaluate` returns (JSON-serialisable).
        out_dir: output folder, created if needed. Every file is written atomically.
        confusions: task name -> (C, C) confusion counts (rows true class, columns predicted); the matrices live
            in CSV files next to results.json rather than inside it, which would grow to millions of lines for
            speaker-ID tasks.
        predictions: task name -> arrays (clip_id, fold, labels, scores, seeds) for `predictions_file(task)`,
            a compressed .npz.
    """
    out_dir = Path(out_dir)
    for name, arrays in (predictions or {}).items():
        atomic_write(
            out_dir / predictions_file(name), lambda handle, arrays=arrays: np.savez_compressed(handle, **arrays)
        )
    for name, matrix in (confusions or {}).items():
        task = results["tasks"][name]
        stem = file_stem(name)
        _write_confusion_csv(matrix, task["vocabulary"], out_dir / f"confusion_{stem}.csv")
        seed, folds = results["seeds"][0], len(task.get("per_fold") or [None])
        where = f"seed {seed}" + (f", {folds} folds summed" if folds > 1 else "")
        title = f"{name}: test confusion ({where}); {task['primary_metric']} {task['mean']:.3f} over all seeds"
        plot_confusion(matrix, task["vocabulary"], out_dir / f"confusion_{stem}.png", title=title)
    atomic_write_text(out_dir / "results.json", json.dumps(results, indent=2) + "\n")
    atomic_write_text(out_dir / "results.md", results_markdown(results))


def results_markdown(results: dict[str, Any]) -> str:
    """The Markdown summary: a header naming model and protocol, one table row per task, then failures."""
    model = results["model"]
    test_selected = results["selection"] == "test"
    lines = [
        f"# {model['name']}: {results['protocol']} probe",
        "",
        f"- model: `{model['spec']}` (fingerprint `{model['fingerprint']}`)",
        f"- protocol: {results['protocol']}, selection on {results['selection']} data, seeds {results['seeds']}",
        f"- decar {results['versions']['decar']}, torch {results['versions']['torch']}, {results['date']}",
        "",
        "| task | metric | mean ± std | 95 % CI | n test | note |",
        "|---|---|---|---|---|---|",
    ]
    for name, task in results["tasks"].items():
        note = TEST_SELECTED_NOTE if test_selected else ""
        if task.get("per_fold"):
            note = "; ".join(filter(None, [note, f"mean of {len(task['per_fold'])} folds"]))
        lines.append(
            f"| {name} | {task['primary_metric']} | {format_score(task['mean'], task['std'], len(results['seeds']))} "
            f"| {format_interval(task)} | {task['num_clips']['test']} | {note} |"
        )
    lines += [
        "",
        "Mean ± std over probe seeds (sample std); k-fold tasks average the folds within each seed first.",
        f"95 % CI: percentile bootstrap over test clips ({RESAMPLES} resamples, drawn within each fold), the "
        "uncertainty due to the finite test set.",
    ]
    if test_selected:
        lines.append(
            f"{TEST_SELECTED_NOTE}: the probe epoch was chosen by test accuracy, as in the DECAR/LAPE code; "
            "these numbers are optimistic and not comparable with validation-selected ones."
        )
    lines += ["", "## Every metric (test, mean ± std over seeds)", ""]
    lines += ["| task | metric | mean ± std |", "|---|---|---|"]
    for name, task in results["tasks"].items():
        for metric, value in task.get("metrics", {}).items():
            lines.append(f"| {name} | {metric} | {format_score(value['mean'], value['std'], len(results['seeds']))} |")
    failed = [(name, f) for name, task in results["tasks"].items() for f in task["failures"]]
    if failed:
        lines += ["", f"## Clips that failed ({len(failed)}, left out)", ""]
        lines += [f"- {name}: `{f['path']}`: {f['reason']}" for name, f in failed]
    return "\n".join(lines) + "\n"


def summary_table(results: dict[str, Any]) -> Table:
    """The per-task summary printed at the end of `decar evaluate`."""
    mark = f" {DAGGER}" if results["selection"] == "test" else ""
    table = Table(title=f"{results['model']['name']} — {results['protocol']} probe{mark}")
    for column in ("task", "metric", "mean ± std", "95 % CI", "n test", "failed"):
        table.add_column(column, justify="left" if column in ("task", "metric") else "right", no_wrap=True)
    for name, task in results["tasks"].items():
        table.add_row(
            name,
            task["primary_metric"],
            format_score(task["mean"], task["std"], len(results["seeds"])) + mark,
            format_interval(task),
            str(task["num_clips"]["test"]),
            str(len(task["failures"])),
        )
    if mark:
        table.caption = f"{DAGGER} {TEST_SELECTED_NOTE}"
    return table


def plot_confusion(matrix: np.ndarray, vocabulary: list[str], path: Path, title: str) -> None:
    """Row-normalised confusion matrix (recall per true class) with the counts written in small matrices."""
    matrix = np.asarray(matrix)
    rows = matrix.sum(axis=1, keepdims=True)
    recall = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    n = len(vocabulary)
    size = min(4 + 0.35 * n, 20)
    fig, ax = plt.subplots(figsize=(size + 1.5, size), constrained_layout=True)
    image = ax.imshow(recall, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of the true class")
    ax.set(title=title, xlabel="predicted", ylabel="true")
    if n <= _MAX_TICK_LABELS:
        ax.set_xticks(range(n), vocabulary, rotation=90)
        ax.set_yticks(range(n), vocabulary)
    if n <= 15:
        for i, j in np.ndindex(matrix.shape):
            if matrix[i, j]:
                ax.text(
                    j,
                    i,
                    str(int(matrix[i, j])),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if recall[i, j] > 0.5 else "black",
                )
    save_png(fig, path)


def load_results(result_dir: Path) -> dict[str, Any]:
    """Read one run's results.json; a folder without one raises FileNotFoundError naming the folder."""
    path = Path(result_dir) / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{result_dir} has no results.json (is it the -o folder of `decar evaluate`?)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err


def compare(result_dirs: list[Path], out: Path | None = None, allow_mixed_protocols: bool = False) -> str:
    """Side-by-side Markdown table, models × tasks, of the primary metric (mean ± std over seeds).

    Runs made with different protocols (another name or settings hash; results without a hash count as unknown)
    are refused unless `allow_mixed_protocols`: their numbers measure different things. The first folder is the
    reference: another row's score carries a `SIGNIFICANT` mark where a paired bootstrap over the test clips both
    runs scored (matched by clip id, identical resamples for both) says it differs from the reference's at 95 %.
    The Average column is the unweighted mean over the tasks every model was evaluated on (metrics of different
    tasks are averaged as they are, as in HEAR and EVAR summaries), so rows stay comparable. Test-selected
    results carry a dagger and a footnote. With `out`, writes out/compare.md and a grouped bar chart
    out/compare.png (error bars: std over seeds).

    Returns:
        The Markdown text.
    """
    if not result_dirs:
        raise ValueError("compare needs at least one results folder")
    runs = [load_results(folder) for folder in result_dirs]
    if not allow_mixed_protocols:
        _check_protocols(runs, result_dirs)
    labels = _row_labels(runs, result_dirs)
    tasks = list(dict.fromkeys(name for run in runs for name in run["tasks"]))
    shared = [name for name in tasks if all(name in run["tasks"] for run in runs)]
    significant, untested = _paired_tests(runs, result_dirs, labels, tasks)
    header = ["model", "protocol", *tasks, "Average"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row, (label, run) in enumerate(zip(labels, runs, strict=True)):
        mark = DAGGER if run["selection"] == "test" else ""
        cells = [
            format_score(run["tasks"][name]["mean"], run["tasks"][name]["std"], len(run["seeds"]))
            + (SIGNIFICANT if significant.get((row, name)) else "")
            + mark
            if name in run["tasks"]
            else "—"
            for name in tasks
        ]
        average = f"{np.mean([run['tasks'][name]['mean'] for name in shared]):.4f}{mark}" if shared else "—"
        lines.append("| " + " | ".join([label, _protocol_label(run), *cells, average]) + " |")
    metrics = {
        name: next(run["tasks"][name]["primary_metric"] for run in runs if name in run["tasks"]) for name in tasks
    }
    lines += ["", "Metric per task: " + ", ".join(f"{name} {metric}" for name, metric in metrics.items()) + "."]
    lines.append(
        f"Mean ± std over seeds. Average: unweighted mean over the {len(shared)} task(s) every model has"
        + (f" ({', '.join(shared)})." if shared else "; none here.")
    )
    if len(runs) > 1:
        lines.append(
            f"{SIGNIFICANT} differs from {labels[0]} (the first folder, the reference) at {LEVEL:.0%}: paired "
            f"bootstrap over the test clips both runs scored, matched by clip id ({RESAMPLES} resamples)."
        )
    if untested:
        lines.append("No paired test for: " + "; ".join(untested) + ".")
    if any(run["selection"] == "test" for run in runs):
        lines.append(
            f"{DAGGER} {TEST_SELECTED_NOTE}: the probe was selected on the test set; optimistic, and not comparable "
            "with validation-selected results."
        )
    text = "\n".join(lines) + "\n"
    if out is not None:
        out = Path(out)
        atomic_write_text(out / "compare.md", text)
        _plot_compare(runs, labels, tasks, out / "compare.png")
    return text


def _protocol_label(run: dict[str, Any]) -> str:
    return f"{run['protocol']} ({run.get('protocol_hash') or 'no settings hash'})"


def _check_protocols(runs: list[dict[str, Any]], folders: list[Path]) -> None:
    """Refuse runs of different protocols (name or settings hash), or of unknown settings (no hash)."""
    identities = {(run["protocol"], run.get("protocol_hash")) for run in runs}
    if len(runs) < 2 or (len(identities) == 1 and None not in {hash_ for _, hash_ in identities}):
        return
    described = ", ".join(f"{folder}: {_protocol_label(run)}" for folder, run in zip(folders, runs, strict=True))
    raise ValueError(
        f"refusing to compare results of different or unknown protocols ({described}); rerun them with one "
        "--protocol, or pass --allow-mixed-protocols"
    )


def _paired_tests(
    runs: list[dict[str, Any]], folders: list[Path], labels: list[str], tasks: list[str]
) -> tuple[dict[tuple[int, str], bool], list[str]]:
    """Paired bootstrap of every row against the first on each shared task: (row, task) → significant.

    Also returns "<row> on <task> (<why>)" for pairs that could not be tested.
    """
    significant: dict[tuple[int, str], bool] = {}
    untested: list[str] = []
    for row in range(1, len(runs)):
        for name in tasks:
            if name not in runs[0]["tasks"] or name not in runs[row]["tasks"]:
                continue
            reference = load_predictions(folders[0], runs[0]["tasks"][name])
            other = load_predictions(folders[row], runs[row]["tasks"][name])
            if reference is None or other is None:
                untested.append(f"{labels[row]} on {name} (no predictions file)")
                continue
            if runs[0]["tasks"][name]["vocabulary"] != runs[row]["tasks"][name]["vocabulary"]:
                untested.append(f"{labels[row]} on {name} (other label vocabulary)")
                continue
            matched = _matched_folds(other, reference)
            if matched is None:
                untested.append(f"{labels[row]} on {name} (no shared test clips with the same labels)")
                continue
            multilabel = np.asarray(reference["labels"]).ndim == 2
            significant[(row, name)] = paired_bootstrap(*matched, multilabel).significant
    return significant, untested


def load_predictions(folder: Path, task: dict[str, Any]) -> dict[str, np.ndarray] | None:
    """A task's predictions arrays, or None for results written without them."""
    path = Path(folder) / task["predictions"] if "predictions" in task else None
    if path is None or not path.is_file():
        return None
    with np.load(path) as data:
        return {name: data[name] for name in data.files}


def _matched_folds(
    a: dict[str, np.ndarray], b: dict[str, np.ndarray]
) -> tuple[list[FoldPredictions], list[FoldPredictions]] | None:
    """Both runs' predictions on the clips they share, fold by fold in the same clip order; None if none agree."""
    rows_b = {(str(fold), str(clip)): i for i, (fold, clip) in enumerate(zip(b["fold"], b["clip_id"], strict=True))}
    folds_a: list[FoldPredictions] = []
    folds_b: list[FoldPredictions] = []
    for fold in dict.fromkeys(str(name) for name in a["fold"]):
        pairs = [
            (i, rows_b[(fold, str(clip))])
            for i, clip in enumerate(a["clip_id"])
            if str(a["fold"][i]) == fold and (fold, str(clip)) in rows_b
        ]
        if not pairs:
            continue
        index_a, index_b = (np.array(index) for index in zip(*pairs, strict=True))
        if not np.array_equal(a["labels"][index_a], b["labels"][index_b]):
            return None
        folds_a.append(FoldPredictions(a["labels"][index_a], a["scores"][:, index_a]))
        folds_b.append(FoldPredictions(b["labels"][index_b], b["scores"][:, index_b]))
    return (folds_a, folds_b) if folds_a else None


def _row_labels(runs: list[dict[str, Any]], folders: list[Path]) -> list[str]:
    """Model names, made unique with the results folder's name where two runs share one."""
    names = [run["model"]["name"] for run in runs]
    return [
        f"{name} [{Path(folder).name}]" if names.count(name) > 1 else name
        for name, folder in zip(names, folders, strict=True)
    ]


def _plot_compare(runs: list[dict[str, Any]], labels: list[str], tasks: list[str], path: Path) -> None:
    """Grouped bars: one group per task, one bar per model, std over seeds as error bars."""
    width = 0.8 / len(runs)
    x = np.arange(len(tasks))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(tasks) * max(1, len(runs) / 2)), 4.5), constrained_layout=True)
    for i, (label, run) in enumerate(zip(labels, runs, strict=True)):
        means = [run["tasks"][t]["mean"] if t in run["tasks"] else np.nan for t in tasks]
        stds = [run["tasks"][t]["std"] if t in run["tasks"] else 0.0 for t in tasks]
        mark = f" {DAGGER}" if run["selection"] == "test" else ""
        ax.bar(x + (i - (len(runs) - 1) / 2) * width, means, width, yerr=stds, capsize=3, label=label + mark)
    ax.set_xticks(x, tasks, rotation=30 if len(tasks) > 4 else 0, ha="right" if len(tasks) > 4 else "center")
    metrics = sorted({run["tasks"][t]["primary_metric"] for run in runs for t in tasks if t in run["tasks"]})
    ax.set(ylabel=f"{' / '.join(metrics)} (mean ± std over seeds)", ylim=(0, 1.05))
    ax.legend(fontsize=8)
    if any(run["selection"] == "test" for run in runs):
        ax.set_title(f"{DAGGER} {TEST_SELECTED_NOTE}", fontsize=8, loc="right")
    save_png(fig, path)


def _write_confusion_csv(matrix: np.ndarray, vocabulary: list[str], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["true \\ predicted", *vocabulary])
    for label, row in zip(vocabulary, np.asarray(matrix), strict=True):
        writer.writerow([label, *(int(v) for v in row)])
    atomic_write_text(path, buffer.getvalue())
