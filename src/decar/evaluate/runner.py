"""`decar evaluate`: one model, several tasks, one protocol, several seeds, one results folder.

Per task and split (one split for train/valid/test tasks, one per fold for k-fold tasks): models that fit input
statistics (BYOL-A normalisation, a random network's BatchNorm) fit them on that split's TRAIN audio only; clips
are embedded (clips that fail to decode are reported and left out); then the probe is fitted once per seed and
selected on the validation set. The paper protocol, selected on test, is labelled so everywhere it appears.
Models without fitted statistics embed each clip of a task once, however many folds use it.

Aggregation: a seed's score on a k-fold task is the mean over its folds; the reported value is the mean ± sample
std over seeds of those per-seed scores, so the spread measures probe randomness, not fold difficulty (per-fold
means over seeds are kept in `per_fold`). Deterministic probes ("linear", "knn") give the same score for every
seed (std 0). `ci95` is a bootstrap interval over test clips (`decar.evaluate.stats`): it measures how much the
score depends on which clips happen to be in the test set. Per-clip test scores of every seed go to
predictions/<task>.npz for paired comparisons (`decar compare`). The confusion matrix is the first seed's,
summed over folds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import torch
from rich.progress import Progress, TaskID

import decar
from decar._console import print_table, progress_bar
from decar._io import atomic_write, atomic_write_text
from decar._lock import output_lock
from decar.checkpoint import git_sha
from decar.evaluate.cache import embed_clips, load_waveforms
from decar.evaluate.metrics import PRIMARY_METRIC, confusion, score
from decar.evaluate.models import EvalModel, PrecomputedEmbeddings, load_eval_model
from decar.evaluate.protocols import FINETUNE_CONFIG, PROTOCOLS, finetune, run_seeds
from decar.evaluate.report import file_stem, predictions_file, summary_table, write_results
from decar.evaluate.stats import LEVEL, RESAMPLES, SEED, FoldPredictions, bootstrap_interval
from decar.evaluate.tasks import Clip, Split, Task, load_task

log = logging.getLogger(__name__)

PROTOCOL_CHOICES = tuple(PROTOCOLS)
"""linear, evar-linear, hear-mlp, knn: probes on frozen embeddings selected on validation; finetune: the whole
encoder, selected on validation; paper: the DECAR/LAPE code's protocol (best test epoch), test-selected."""
PROBE_PROTOCOLS = tuple(name for name in PROTOCOLS if name not in ("finetune", "paper"))

PARTS = ("train", "valid", "test")


@dataclass
class _Part:
    """One part (train, valid or test) of a split, ready for a probe."""

    clips: list[Clip]
    """The clips that loaded, in the order of `inputs`."""
    inputs: np.ndarray | list[np.ndarray]
    """Embeddings (N, D), or waveforms to fine-tune on."""
    targets: np.ndarray
    """Class indices (N,) or multi-hot rows (N, C)."""


@dataclass
class _SeedRun:
    """What one seed's probe produced on one split."""

    seed: int
    test_scores: np.ndarray
    test_metrics: dict[str, float]
    details: dict[str, Any]


def evaluate(
    model_spec: str,
    task_specs: Sequence[str],
    out_dir: Path,
    protocol: str = "linear",
    seeds: int = 3,
    cache_dir: Path | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate one model on downstream tasks and write OUT/results.json, results.md and confusion plots.

    Args:
        model_spec: a decar checkpoint path, `random:<ckpt>`, `logmel-stats`, `byola:<pth>` or
            `hear:<module>[:<file>]` (see `decar.evaluate.models.load_eval_model`).
        task_specs: `NAME:ROOT`, HEAR task folders or .csv/.jsonl manifests (see `decar.evaluate.tasks.load_task`).
        out_dir: results folder, created if needed.
        protocol: one of PROTOCOL_CHOICES.
        seeds: probe seeds per split (0, 1, ..., seeds-1); embeddings are computed once and shared by all seeds.
        cache_dir: embedding cache folder (keyed by model fingerprint and audio file), reused across runs.
        device: where the model runs.
        progress: show progress bars and print the summary table.

    Returns:
        The dict written to results.json (per task: mean ± std over seeds, `ci95` over test clips, the protocol's
        name and settings hash, and the path of its per-clip predictions file).

    Raises:
        TaskError, ValueError, FileNotFoundError: a bad task, model, protocol or output, found before any clip
            is embedded.
        OutputLocked: another decar process is writing into `out_dir`.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"-o {out_dir} exists and is not a folder: results go into a folder")
    if protocol not in PROTOCOL_CHOICES:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOL_CHOICES)}")
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {seeds}")
    if not task_specs:
        raise ValueError("no task given: pass at least one task spec")
    tasks = [load_task(spec) for spec in task_specs]
    names = [task.name for task in tasks]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"task name(s) {repeated} given twice; each task must appear once in a results folder")
    splits = {task.name: list(task.splits()) for task in tasks}  # split errors surface before any embedding
    model = load_eval_model(model_spec, device=device)
    if protocol == "finetune" and model.audio_encoder is None:
        raise ValueError(
            f"protocol finetune needs a trainable decar encoder, and model {model_spec!r} ({model.name}) has none; "
            f"use a probe protocol ({', '.join(PROBE_PROTOCOLS)}) for it"
        )
    seed_list = list(range(seeds))
    recipe = {"protocol": protocol, "preset": _jsonable(PROTOCOLS[protocol]), "seeds": seed_list}
    results: dict[str, Any] = {
        "model": {
            "spec": model_spec,
            "name": model.name,
            "fingerprint": model.fingerprint,
            "embed_dim": model.embed_dim,
            "sample_rate": model.sample_rate,
        },
        "protocol": protocol,
        "protocol_hash": PROTOCOLS[protocol].settings_hash,
        "selection": "test" if protocol == "paper" else "valid",
        "seeds": seed_list,
        "tasks": {},
        "config": {
            **recipe,
            "hash": hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16],
            "task_specs": [str(spec) for spec in task_specs],
            "cache_dir": str(cache_dir) if cache_dir else None,
            "device": device,
            "bootstrap": {"resamples": RESAMPLES, "seed": SEED, "level": LEVEL},
        },
        "versions": _versions(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    confusions: dict[str, np.ndarray] = {}
    predictions: dict[str, dict[str, np.ndarray]] = {}
    with output_lock(out_dir, f"decar evaluate {model_spec}"):
        for task in tasks:
            log.info("task %s: %d clips, %d labels, %s", task.name, len(task.clips), len(task.vocabulary), task.source)
            key = _partial_key(results, task)
            finished = _load_partial(out_dir, key, task.name)
            if finished is None:
                finished = _evaluate_task(model, task, splits[task.name], protocol, seed_list, cache_dir, progress)
                _save_partial(out_dir, key, task.name, *finished)
            else:
                log.info("task %s: finished by an earlier run that was stopped; its result is reused", task.name)
            entry, matrix, predictions[task.name] = finished
            results["tasks"][task.name] = entry
            if matrix is not None:
                confusions[task.name] = matrix
        write_results(results, out_dir, confusions, predictions)
        shutil.rmtree(out_dir / PARTIAL_FOLDER, ignore_errors=True)
    if progress:
        print_table(summary_table(results))
    return results


PARTIAL_FOLDER = ".partial"
"""Each finished task of a run that is still going (or was killed): OUT/.partial/<key>/<task>.json and .npz."""


def _partial_key(results: dict[str, Any], task: Task) -> str:
    """What a finished task's result depends on: the recipe, the model, and the task's clips."""
    identity = [results["config"]["hash"], results["model"]["fingerprint"], task.source, len(task.clips)]
    return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]


def _save_partial(
    out_dir: Path,
    key: str,
    name: str,
    entry: dict[str, Any],
    matrix: np.ndarray | None,
    predictions: dict[str, np.ndarray],
) -> None:
    folder = out_dir / PARTIAL_FOLDER / key
    arrays = {**predictions, **({"confusion": matrix} if matrix is not None else {})}
    atomic_write(folder / f"{file_stem(name)}.npz", lambda handle: np.savez_compressed(handle, **arrays))
    atomic_write_text(folder / f"{file_stem(name)}.json", json.dumps(entry))


def _load_partial(
    out_dir: Path, key: str, name: str
) -> tuple[dict[str, Any], np.ndarray | None, dict[str, np.ndarray]] | None:
    """A task result an earlier, stopped run of the same recipe, model and task wrote; None when there is none."""
    folder = out_dir / PARTIAL_FOLDER / key
    entry_file, arrays_file = folder / f"{file_stem(name)}.json", folder / f"{file_stem(name)}.npz"
    if not (entry_file.is_file() and arrays_file.is_file()):
        return None
    try:
        entry = json.loads(entry_file.read_text())
        with np.load(arrays_file, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError):
        return None  # unreadable: evaluate the task again
    matrix = arrays.pop("confusion", None)
    return entry, matrix, arrays


def _evaluate_task(
    model: EvalModel,
    task: Task,
    splits: list[Split],
    protocol: str,
    seeds: list[int],
    cache_dir: Path | None,
    progress: bool,
) -> tuple[dict[str, Any], np.ndarray | None, dict[str, np.ndarray]]:
    """All splits and seeds of one task: its results.json entry, confusion matrix (multiclass) and predictions."""
    num_classes = len(task.vocabulary)
    matrix = None if task.multilabel else np.zeros((num_classes, num_classes), dtype=np.int64)
    failures: dict[Clip, str] = {}
    counts = dict.fromkeys(PARTS, 0)
    fold_metrics: dict[str, list[dict[str, float]]] = {}
    probe_details: list[dict[str, Any]] = []
    tested: dict[str, tuple[list[Clip], FoldPredictions]] = {}
    seconds = {"embed": 0.0, "probe": 0.0}
    fitted = _fits_statistics(model)
    shared: dict[Clip, np.ndarray] = {}
    if not fitted:
        start = time.perf_counter()
        shared = _inputs(model, task.clips, None, protocol, cache_dir, progress, failures)
        seconds["embed"] += time.perf_counter() - start
    for split in splits:
        start = time.perf_counter()
        clips = [*split.train, *split.valid, *split.test]
        inputs = _inputs(model, clips, split.train, protocol, cache_dir, progress, failures) if fitted else shared
        parts = {name: _part(task, split, name, inputs, stack=protocol != "finetune") for name in PARTS}
        seconds["embed"] += time.perf_counter() - start
        for name, part in parts.items():
            counts[name] += len(part.targets)
        start = time.perf_counter()
        where = f"{task.name}" + (f" {split.name}" if len(splits) > 1 else "")
        with _fitting_progress(progress) as bar:
            runs = _run_protocol(model, protocol, parts, num_classes, task.multilabel, seeds, ProbeProgress(bar, where))
        seconds["probe"] += time.perf_counter() - start
        fold_metrics[split.name] = [run.test_metrics for run in runs]
        probe_details += [{"seed": run.seed, "split": split.name, **run.details} for run in runs]
        test = parts["test"]
        tested[split.name] = (test.clips, FoldPredictions(test.targets, np.stack([run.test_scores for run in runs])))
        if matrix is not None:
            matrix += confusion(test.targets, runs[0].test_scores.argmax(axis=1), num_classes)
    entry = _aggregate(task, seeds, fold_metrics, counts, failures, probe_details, seconds)
    low, high = bootstrap_interval([fold for _, fold in tested.values()], task.multilabel)
    entry = {
        "protocol": protocol,
        "protocol_hash": PROTOCOLS[protocol].settings_hash,
        **entry,
        "ci95": [low, high],
        "predictions": predictions_file(task.name),
    }
    return entry, matrix, _predictions(task, seeds, tested)


def _predictions(
    task: Task, seeds: list[int], tested: dict[str, tuple[list[Clip], FoldPredictions]]
) -> dict[str, np.ndarray]:
    """The arrays of predictions/<task>.npz: one row per tested clip, folds one after another.

    clip_id (`clip_id`), fold (split name), labels (class indices or multi-hot rows), scores (seeds, clips,
    classes) float32, seeds.
    """
    root = os.path.commonpath([str(clip.path.parent) for clip in task.clips])
    return {
        "clip_id": np.array([clip_id(clip, root) for clips, _ in tested.values() for clip in clips], dtype=str),
        "fold": np.array([name for name, (clips, _) in tested.items() for _ in clips], dtype=str),
        "labels": np.concatenate([fold.labels for _, fold in tested.values()]),
        "scores": np.concatenate([fold.scores for _, fold in tested.values()], axis=1).astype(np.float32),
        "seeds": np.array(seeds, dtype=np.int64),
    }


def clip_id(clip: Clip, root: str) -> str:
    """A clip's identity across machines and runs: its path relative to the task's folder, plus the segment.

    "audio/dog_01.wav" for a whole file; "audio/long.wav@12.000+1.000" for the 1 s segment starting at 12 s
    ("+end" when the segment runs to the end of the file).
    """
    path = Path(os.path.relpath(clip.path, root)).as_posix()
    if clip.start_s == 0 and clip.duration_s is None:
        return path
    length = "end" if clip.duration_s is None else f"{clip.duration_s:.3f}"
    return f"{path}@{clip.start_s:.3f}+{length}"


def _fits_statistics(model: EvalModel) -> bool:
    """Whether the model fits statistics on training audio (it overrides `prepare`): then inputs depend on the split."""
    return type(model).prepare is not EvalModel.prepare


def _inputs(
    model: EvalModel,
    clips: list[Clip],
    train: list[Clip] | None,
    protocol: str,
    cache_dir: Path | None,
    progress: bool,
    failures: dict[Clip, str],
) -> dict[Clip, np.ndarray]:
    """Each clip's embedding (or waveform, to fine-tune); with `train`, `model.prepare` first sees that audio only.

    Clips that fail to decode are added to `failures` and left out.
    """
    if isinstance(model, PrecomputedEmbeddings):
        found, missing = model.lookup(clips)
        failures.update(missing)
        return found
    if train is not None:
        loaded = load_waveforms(train, model.sample_rate)
        failures.update(loaded.failures)
        model.prepare(loaded.waveforms)
    if protocol == "finetune":
        loaded = load_waveforms(clips, model.sample_rate)
        failures.update(loaded.failures)
        return dict(zip(loaded.clips, loaded.waveforms, strict=True))
    embedded = embed_clips(model, clips, cache_dir=cache_dir, progress=progress)
    failures.update(embedded.failures)
    return dict(zip(embedded.clips, embedded.embeddings, strict=True))


def _part(task: Task, split: Split, name: str, inputs: dict[Clip, np.ndarray], stack: bool) -> _Part:
    """The clips of one part that loaded: their inputs (stacked into (N, D) embeddings) and targets."""
    ok = [clip for clip in getattr(split, name) if clip in inputs]
    if not ok:
        raise ValueError(f"task {task.name!r} split {split.name!r}: every {name} clip failed to load")
    rows = [inputs[clip] for clip in ok]
    return _Part(ok, np.stack(rows) if stack else rows, _targets(ok, task.vocabulary, task.multilabel))


def _targets(clips: list[Clip], vocabulary: list[str], multilabel: bool) -> np.ndarray:
    """Class indices for multiclass tasks, multi-hot rows for multilabel ones (vocabulary order)."""
    index = {label: i for i, label in enumerate(vocabulary)}
    if not multilabel:
        return np.array([index[clip.labels[0]] for clip in clips], dtype=np.int64)
    targets = np.zeros((len(clips), len(vocabulary)), dtype=np.float32)
    for row, clip in enumerate(clips):
        targets[row, [index[label] for label in clip.labels]] = 1.0
    return targets


def _fitting_progress(enabled: bool) -> Progress:
    """A bar for probe fitting and fine-tuning (after the embedding bar has gone: rich shows one at a time)."""
    return progress_bar(disable=not enabled)


class ProbeProgress:
    """Reports a task's probe fits (one per seed) and fine-tuning epochs on a progress bar."""

    def __init__(self, bar: Progress, where: str) -> None:
        self.bar, self.where = bar, where
        self.task: TaskID | None = None

    def seeds(self, protocol: str, count: int) -> Callable[[int], None]:
        """Start a bar of `count` seed fits; returns the callback that advances it by n fits."""
        self.task = self.bar.add_task(f"{self.where}: fitting {protocol} probes, one per seed", total=count)
        return lambda n: self.bar.advance(self.task, n)

    def epochs(self, seed: int, total: int) -> Callable[[int, float], None]:
        """Start a bar of `total` fine-tuning epochs for `seed`; the callback takes (epoch, validation score)."""
        if self.task is not None:
            self.bar.remove_task(self.task)
        self.task = self.bar.add_task(f"{self.where}: fine-tuning, seed {seed}", total=total)

        def report(epoch: int, metric: float) -> None:
            description = f"{self.where}: fine-tuning, seed {seed}, valid {metric:.3f}"
            self.bar.update(self.task, completed=epoch, description=description)

        return report


def _run_protocol(
    model: EvalModel,
    protocol: str,
    parts: dict[str, _Part],
    num_classes: int,
    multilabel: bool,
    seeds: list[int],
    progress: ProbeProgress,
) -> list[_SeedRun]:
    """Fit the probe once per seed; test labels only score the selected probe (except in the paper protocol)."""
    train, valid, test = (parts[name] for name in PARTS)
    if protocol == "finetune":
        return [_finetune_seed(model, parts, num_classes, multilabel, seed, progress) for seed in seeds]
    probes = run_seeds(
        protocol,
        train=(train.inputs, train.targets),
        valid=(valid.inputs, valid.targets),
        test_embeddings=test.inputs,
        test_labels=test.targets,
        num_classes=num_classes,
        multilabel=multilabel,
        seeds=seeds,
        on_fitted=progress.seeds(protocol, len(seeds)),
    )
    return [
        _SeedRun(seed, probe.test_scores, _floats(probe.test_metrics), _details(probe))
        for seed, probe in zip(seeds, probes, strict=True)
    ]


def _finetune_seed(
    model: EvalModel, parts: dict[str, _Part], num_classes: int, multilabel: bool, seed: int, progress: ProbeProgress
) -> _SeedRun:
    train, valid, test = (parts[name] for name in PARTS)
    tuned = finetune(
        model.audio_encoder,
        train=(train.inputs, train.targets),
        valid=(valid.inputs, valid.targets),
        num_classes=num_classes,
        multilabel=multilabel,
        seed=seed,
        on_epoch=progress.epochs(seed, FINETUNE_CONFIG.epochs),
    )
    scores = tuned.predict(test.inputs)
    return _SeedRun(seed, scores, _floats(score(test.targets, scores, multilabel)), _details(tuned))


def _details(fit: Any) -> dict[str, Any]:
    """How a probe or fine-tuned model was selected (ProbeResult and FinetunedModel share these fields)."""
    return {
        "selection": fit.selection,
        "selected_epoch": fit.selected_epoch,
        "valid_metrics": _floats(fit.valid_metrics),
        "hyperparameters": _jsonable(fit.hyperparameters),
    }


def _aggregate(
    task: Task,
    seeds: list[int],
    fold_metrics: dict[str, list[dict[str, float]]],
    counts: dict[str, int],
    failures: dict[Clip, str],
    probe_details: list[dict[str, Any]],
    seconds: dict[str, float],
) -> dict[str, Any]:
    """Average folds within each seed, then mean ± sample std over seeds (see the module docstring)."""
    primary = PRIMARY_METRIC[task.multilabel]
    metric_names = list(next(iter(fold_metrics.values()))[0])
    per_seed = [
        {name: float(np.mean([runs[i][name] for runs in fold_metrics.values()])) for name in metric_names}
        for i in range(len(seeds))
    ]
    values = [metrics[primary] for metrics in per_seed]
    per_fold = None
    if task.split_mode == "kfold":
        per_fold = {}
        for split, runs in fold_metrics.items():
            fold_values = [run[primary] for run in runs]
            per_fold[split] = {"mean": float(np.mean(fold_values)), "std": _std(fold_values), "per_seed": fold_values}
    return {
        "primary_metric": primary,
        "mean": float(np.mean(values)),
        "std": _std(values),
        "per_seed": [
            {"seed": seed, "value": value, "metrics": metrics}
            for seed, value, metrics in zip(seeds, values, per_seed, strict=True)
        ],
        "per_fold": per_fold,
        "metrics": {
            name: {"mean": float(np.mean(column)), "std": _std(column)}
            for name in metric_names
            for column in [[metrics[name] for metrics in per_seed]]
        },
        "num_clips": counts,
        "failures": [
            {"path": str(clip.path), "start_s": clip.start_s, "reason": reason} for clip, reason in failures.items()
        ],
        "vocabulary": list(task.vocabulary),
        "multilabel": task.multilabel,
        "split_mode": task.split_mode,
        "source": task.source,
        "probe": probe_details,
        "seconds": seconds,
    }


def _std(values: Sequence[float]) -> float:
    """Sample standard deviation (ddof=1); 0 for a single value."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _floats(metrics: dict[str, Any]) -> dict[str, float]:
    return {name: float(value) for name, value in metrics.items()}


def _jsonable(value: Any) -> Any:
    """Dataclasses, tuples and numpy values as plain JSON values (protocol presets, probe hyperparameters)."""
    if is_dataclass(value) and not isinstance(value, type):
        return _jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    return value


def _versions() -> dict[str, str | None]:
    return {
        "decar": decar.__version__,
        "git_sha": git_sha(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "sklearn": sklearn.__version__,
        "python": platform.python_version(),
    }
