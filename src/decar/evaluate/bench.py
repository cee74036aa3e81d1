"""`decar bench`: several models on every task of a built bench, one table and one chart to read them by.

Each (protocol, model) pair is one `decar evaluate` run in OUT/<protocol>/<model>/ sharing one embedding cache,
so a second protocol never embeds again and a killed bench continues where it stopped (finished runs with the
same model, tasks, protocol settings and seeds are reused). The quality table has a row per task and a column per
model: the task score with its 95 % bootstrap interval over test clips, ▲/▼ where a paired bootstrap says the
model is better/worse than the first (the reference), and an Average row whose interval and marks come from
the same resamples averaged over tasks (tasks are resampled independently, each with the same draws for every
model, so the comparison stays paired). With two or more protocols, a probe table puts them side by side on the
same embeddings.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from decar._io import atomic_write_text
from decar.evaluate.models import load_eval_model
from decar.evaluate.protocols import PROTOCOLS
from decar.evaluate.report import load_predictions, load_results
from decar.evaluate.runner import PROBE_PROTOCOLS, evaluate
from decar.evaluate.stats import LEVEL, RESAMPLES, SEED, FoldPredictions, bootstrap_distribution, percentile_interval
from decar.plots import save_png

log = logging.getLogger(__name__)

BETTER, WORSE = "▲", "▼"
SIGNIFICANT_DIFFERENCE = "*"


@dataclass(frozen=True)
class _Scores:
    """One run on one task: its score, and the score of each bootstrap resample (same draws for every model).

    `clips` (fold and clip id of every test clip, in order) tells whether two runs' resamples are paired.
    """

    mean: float
    resampled: np.ndarray | None = None
    clips: tuple[str, ...] = ()


def find_bench_tasks(bench_dir: Path) -> list[Path]:
    """The HEAR task folders of a bench: BENCH/tasks/*/ (as `decar data build-bench` writes), or BENCH/*/."""
    bench_dir = Path(bench_dir)
    if not bench_dir.is_dir():
        raise FileNotFoundError(f"bench folder not found: {bench_dir} (build one with `decar data build-bench`)")
    root = bench_dir / "tasks" if (bench_dir / "tasks").is_dir() else bench_dir
    tasks = sorted(folder for folder in root.iterdir() if (folder / "task_metadata.json").is_file())
    if not tasks:
        raise FileNotFoundError(f"{root}: no task folders (sub-folders with task_metadata.json)")
    return tasks


def model_slug(spec: str) -> str:
    """A folder name for a model spec: `random:configs/decar.yaml` → `random-configs-decar.yaml`."""
    return re.sub(r"[^A-Za-z0-9._]+", "-", spec).strip("-.") or "model"


def run_bench(
    bench_dir: Path,
    model_specs: list[str],
    out_dir: Path,
    protocols: tuple[str, ...] = ("linear",),
    seeds: int = 3,
    task_names: list[str] | None = None,
    cache_dir: Path | None = None,
    device: str = "cpu",
) -> str:
    """Evaluate every model with every protocol on the bench's tasks; write OUT/bench.md, bench.json, bench.png.

    Args:
        bench_dir: a built bench (its tasks/ folder) or a folder of HEAR task folders.
        model_specs: model specs as for `decar evaluate`; the first is the reference of the paired marks.
        out_dir: results folder.
        protocols: probe protocols; the first gives the quality table and chart.
        seeds: probe seeds per run.
        task_names: only the task folders with these names (default: all).
        cache_dir: embedding cache (default OUT/embeddings), shared by all protocols.
        device: where the models run.

    Returns:
        The Markdown report.
    """
    if not model_specs:
        raise ValueError("name at least one model (--model)")
    if len(set(model_specs)) != len(model_specs):
        raise ValueError(f"a model is named twice: {model_specs}")
    unknown = [name for name in protocols if name not in PROBE_PROTOCOLS]
    if unknown or not protocols:
        raise ValueError(
            f"bench protocols must be probes on frozen embeddings ({', '.join(PROBE_PROTOCOLS)}), got {unknown}"
        )
    tasks = find_bench_tasks(bench_dir)
    if task_names:
        missing = sorted(set(task_names) - {task.name for task in tasks})
        if missing:
            raise FileNotFoundError(f"{bench_dir}: no task folder named {', '.join(missing)}")
        tasks = [task for task in tasks if task.name in task_names]
    out_dir = Path(out_dir)
    cache_dir = Path(cache_dir) if cache_dir is not None else out_dir / "embeddings"
    folders: dict[str, list[Path]] = {}
    # Each model loaded once for its identity (a bad spec fails before anything runs); `evaluate` loads its own,
    # since a model whose statistics are fitted per task changes as it is evaluated.
    fingerprints = {spec: load_eval_model(spec, device=device).fingerprint for spec in model_specs}
    for protocol in protocols:
        folders[protocol] = []
        for spec, fingerprint in fingerprints.items():
            folder = out_dir / protocol / model_slug(spec)
            if _finished(folder, spec, fingerprint, protocol, seeds, tasks):
                log.info("reusing %s (same model, tasks, protocol and seeds)", folder)
            else:
                log.info("bench: %s with protocol %s", spec, protocol)
                evaluate(spec, [str(task) for task in tasks], folder, protocol, seeds, cache_dir, device)
            folders[protocol].append(folder)
    runs = {protocol: [load_results(folder) for folder in paths] for protocol, paths in folders.items()}
    scores = {
        protocol: [_run_scores(folder, run) for folder, run in zip(folders[protocol], runs[protocol], strict=True)]
        for protocol in protocols
    }
    task_list = list(runs[protocols[0]][0]["tasks"])
    summary = _summary(runs, scores, task_list, protocols)
    text = _markdown(summary, task_list, protocols)
    atomic_write_text(out_dir / "bench.md", text)
    atomic_write_text(out_dir / "bench.json", json.dumps(summary, indent=2) + "\n")
    _plot(summary, task_list, protocols[0], out_dir / "bench.png")
    return text


def _finished(folder: Path, spec: str, fingerprint: str, protocol: str, seeds: int, tasks: list[Path]) -> bool:
    """A results folder of exactly this run: same spec, protocol settings hash, seeds and task folders, and the
    same model behind the spec (a checkpoint trained further, or another bundled model, is evaluated again)."""
    path = folder / "results.json"
    if not path.is_file():
        return False
    try:
        run = json.loads(path.read_text())
        return (
            run["model"]["spec"] == spec
            and run.get("protocol_hash") == PROTOCOLS[protocol].settings_hash
            and run["seeds"] == list(range(seeds))
            and run["config"]["task_specs"] == [str(task) for task in tasks]
            and run["model"]["fingerprint"] == fingerprint
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _run_scores(folder: Path, run: dict[str, Any]) -> dict[str, _Scores]:
    """Per task: the score and its bootstrap resamples (from the predictions file, when there is one)."""
    scores = {}
    for name, task in run["tasks"].items():
        data = load_predictions(folder, task)
        if data is None:
            scores[name] = _Scores(task["mean"])
            continue
        order = list(dict.fromkeys(data["fold"].tolist()))
        folds = [
            FoldPredictions(data["labels"][data["fold"] == fold], data["scores"][:, data["fold"] == fold])
            for fold in order
        ]
        clips = tuple(f"{fold}/{clip}" for fold in order for clip in data["clip_id"][data["fold"] == fold])
        scores[name] = _Scores(task["mean"], bootstrap_distribution(folds, task["multilabel"], RESAMPLES, SEED), clips)
    return scores


def _paired(model: _Scores, reference: _Scores | None) -> bool:
    """Both runs were resampled, with the same draws over the same test clips in the same order."""
    return (
        reference is not None
        and model.resampled is not None
        and reference.resampled is not None
        and model.clips == reference.clips
    )


def _mark(model: np.ndarray, reference: np.ndarray | None) -> str:
    """▲/▼ when the paired resampled difference excludes 0 at LEVEL; "" otherwise or without a reference."""
    if reference is None:
        return ""
    low, high = percentile_interval(model - reference)
    return BETTER if low > 0 else WORSE if high < 0 else ""


def _summary(
    runs: dict[str, list[dict[str, Any]]],
    scores: dict[str, list[dict[str, _Scores]]],
    tasks: list[str],
    protocols: tuple[str, ...],
) -> dict[str, Any]:
    """Everything the report shows, as JSON: per protocol, model and task the score, interval and mark."""
    summary: dict[str, Any] = {"level": LEVEL, "resamples": RESAMPLES, "tasks": {}, "protocols": {}}
    first = runs[protocols[0]][0]["tasks"]
    for name in tasks:
        task = first[name]
        summary["tasks"][name] = {
            "metric": task["primary_metric"],
            "classes": len(task["vocabulary"]),
            "clips": task["num_clips"],
        }
    for protocol in protocols:
        reference = scores[protocol][0]
        names = distinct_names(
            [run["model"]["name"] for run in runs[protocol]], [run["model"]["spec"] for run in runs[protocol]]
        )
        models = []
        for index, (run, model_scores) in enumerate(zip(runs[protocol], scores[protocol], strict=True)):
            same_model = scores[protocols[0]][index]  # this model under the first protocol
            cells = {}
            for name in tasks:
                if name not in model_scores:
                    continue
                entry = model_scores[name]
                base, first = reference.get(name), same_model.get(name)
                cells[name] = {
                    "mean": entry.mean,
                    "std": run["tasks"][name]["std"],
                    "ci95": list(percentile_interval(entry.resampled)) if entry.resampled is not None else None,
                    "mark": _mark(entry.resampled, base.resampled) if _paired(entry, base) else "",
                    "mark_vs_first_protocol": _mark(entry.resampled, first.resampled) if _paired(entry, first) else "",
                }
            average = _average(model_scores, reference, tasks)
            average["mark_vs_first_protocol"] = _average(model_scores, same_model, tasks)["mark"]
            models.append(
                {
                    "spec": run["model"]["spec"],
                    "name": names[index],
                    "protocol_hash": run.get("protocol_hash"),
                    "tasks": cells,
                    "average": average,
                }
            )
        summary["protocols"][protocol] = models
    return summary


def distinct_names(names: list[str], specs: list[str]) -> list[str]:
    """Model names as given, except where two share one (runs/a/seed0/checkpoint.pt and runs/b/seed0/checkpoint.pt
    are both "decar ... (seed0/checkpoint.pt)"): those show as many trailing parts of their spec as tell them apart."""
    clashing = [i for i, name in enumerate(names) if names.count(name) > 1]
    if not clashing:
        return list(names)
    parts = {i: Path(specs[i]).parts for i in clashing}
    for depth in range(1, max(len(p) for p in parts.values()) + 1):
        suffixes = {i: "/".join(parts[i][-depth:]) for i in clashing}
        if len(set(suffixes.values())) == len(clashing):
            break
    return [f"{name.split(' (')[0]} ({suffixes[i]})" if i in suffixes else name for i, name in enumerate(names)]


def _average(model: dict[str, _Scores], reference: dict[str, _Scores], tasks: list[str]) -> dict[str, Any]:
    """Unweighted mean over tasks, with an interval and a paired mark from the task-wise resamples."""
    mean = float(np.mean([model[name].mean for name in tasks])) if all(name in model for name in tasks) else None
    complete = mean is not None and all(model[name].resampled is not None for name in tasks)
    if not complete:
        return {"mean": mean, "ci95": None, "mark": ""}
    resampled = np.mean([model[name].resampled for name in tasks], axis=0)
    paired = all(_paired(model[name], reference.get(name)) for name in tasks)
    base = np.mean([reference[name].resampled for name in tasks], axis=0) if paired else None
    return {"mean": mean, "ci95": list(percentile_interval(resampled)), "mark": _mark(resampled, base)}


def _cell(entry: dict[str, Any] | None) -> str:
    if entry is None or entry["mean"] is None:
        return "—"
    text = f"{entry['mean']:.3f}"
    if entry.get("std", 0.0) >= 5e-4:  # deterministic probes have std 0 up to rounding
        text += f" ± {entry['std']:.3f}"
    if entry["ci95"] is not None:
        text += f" [{entry['ci95'][0]:.3f}, {entry['ci95'][1]:.3f}]"
    return text + (f" {entry['mark']}" if entry["mark"] else "")


def _markdown(summary: dict[str, Any], tasks: list[str], protocols: tuple[str, ...]) -> str:
    main = summary["protocols"][protocols[0]]
    names = [model["name"] for model in main]
    lines = [
        f"Protocol `{protocols[0]}` (settings {main[0]['protocol_hash']}); score [95 % interval over test clips].",
        "",
        "| task | metric | classes | " + " | ".join(names) + " |",
        "|---|---|---|" + "---|" * len(names),
    ]
    for name in tasks:
        info = summary["tasks"][name]
        cells = [_cell(model["tasks"].get(name)) for model in main]
        lines.append(f"| {name} | {info['metric']} | {info['classes']} | " + " | ".join(cells) + " |")
    lines.append("| **Average** | | | " + " | ".join(_cell(model["average"]) for model in main) + " |")
    lines += [
        "",
        f"{BETTER}/{WORSE}: better/worse than {names[0]} (the first model) at {summary['level']:.0%} in a paired "
        f"bootstrap over the same test clips ({summary['resamples']} resamples; the Average row resamples every "
        "task). ± std over probe seeds is shown only where the protocol is not deterministic.",
    ]
    if len(protocols) > 1:
        lines += ["", _probe_table(summary, tasks, protocols)]
    return "\n".join(lines) + "\n"


def _probe_table(summary: dict[str, Any], tasks: list[str], protocols: tuple[str, ...]) -> str:
    """Each model's score under every protocol, on the same embeddings: protocol A − B per task and on average."""
    first, *others = protocols
    lines = [
        f"Probes on the same embeddings: {first} vs " + ", ".join(others) + " (difference, first − other; "
        f"{SIGNIFICANT_DIFFERENCE} where a paired bootstrap over the test clips finds it at {summary['level']:.0%}).",
        "",
        "| model | protocol | " + " | ".join(tasks) + " | Average |",
        "|---|---|" + "---|" * (len(tasks) + 1),
    ]
    for index, model in enumerate(summary["protocols"][first]):
        lines.append(
            f"| {model['name']} | {first} | "
            + " | ".join(f"{model['tasks'][t]['mean']:.3f}" if t in model["tasks"] else "—" for t in tasks)
            + f" | {model['average']['mean']:.3f} |"
        )
        for other in others:
            alt = summary["protocols"][other][index]
            diffs = [
                _difference(alt["tasks"][t], model["tasks"][t]) if t in alt["tasks"] and t in model["tasks"] else "—"
                for t in tasks
            ]
            average = _difference(alt["average"], model["average"])
            lines.append(f"| | {other} | " + " | ".join(diffs) + f" | {average} |")
    return "\n".join(lines)


def _difference(other: dict[str, Any], first: dict[str, Any]) -> str:
    """ "other (first − other)", starred when the paired bootstrap finds the difference."""
    if other["mean"] is None or first["mean"] is None:
        return "—"
    star = SIGNIFICANT_DIFFERENCE if other.get("mark_vs_first_protocol") else ""
    return f"{other['mean']:.3f} ({first['mean'] - other['mean']:+.3f}{star})"


def _plot(summary: dict[str, Any], tasks: list[str], protocol: str, path: Path) -> None:
    """Grouped bars per task (and the average), one bar per model, 95 % intervals as error bars."""
    models = summary["protocols"][protocol]
    groups = [*tasks, "Average"]
    width = 0.8 / len(models)
    x = np.arange(len(groups))
    fig, ax = plt.subplots(figsize=(max(7.0, 1.1 * len(groups) * max(1.0, len(models) / 2)), 4.8))
    for i, model in enumerate(models):
        entries = [model["tasks"].get(name) for name in tasks] + [model["average"]]
        means = np.array([e["mean"] if e and e["mean"] is not None else np.nan for e in entries])
        low = np.array([e["ci95"][0] if e and e["ci95"] else m for e, m in zip(entries, means, strict=True)])
        high = np.array([e["ci95"][1] if e and e["ci95"] else m for e, m in zip(entries, means, strict=True)])
        errors = np.vstack([np.clip(means - low, 0, None), np.clip(high - means, 0, None)])
        ax.bar(x + (i - (len(models) - 1) / 2) * width, means, width, yerr=errors, capsize=2, label=model["name"])
    ax.set_xticks(x, groups, rotation=30, ha="right")
    ax.set(ylabel="score (95 % bootstrap interval)", ylim=(0, 1.05), title=f"decar bench, protocol {protocol}")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    save_png(fig, path)


__all__ = ["find_bench_tasks", "model_slug", "run_bench"]
