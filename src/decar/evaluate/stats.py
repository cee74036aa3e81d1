"""Uncertainty of downstream scores: bootstrap intervals over test clips and paired comparisons of two models.

A task score is the primary metric (top-1 accuracy or mAP) averaged over probe seeds and, for k-fold tasks,
over folds. A bootstrap resample redraws each fold's test clips with replacement (within the fold, so fold
sizes and the fold average keep their meaning) and recomputes that score the same way: metric per seed and
fold, mean over seeds, mean over folds. A resample is a count per clip, so every metric is computed with
sample weights instead of copied rows, and the metrics agree with `decar.evaluate.metrics` at unit weights.

Resamples depend only on the seed and the fold sizes: two models scored on the same (matched) clips with the
same seed see identical resamples, which is what a paired bootstrap needs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES = 1000
"""Bootstrap resamples per interval or comparison (Monte-Carlo error of a 95 % bound: about 0.1 score std)."""
SEED = 0
LEVEL = 0.95
CHUNK = 100
"""Resamples drawn and scored together: bounds memory at CHUNK × clips counts per fold."""


@dataclass(frozen=True)
class FoldPredictions:
    """One fold's test clips: labels and the scores of every probe seed.

    Attributes:
        labels: class indices (N,) for multiclass tasks, a 0/1 matrix (N, C) for multilabel ones.
        scores: (S, N, C) scores of S probe seeds (any monotone score: probabilities or logits).
    """

    labels: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        scores = np.asarray(self.scores)
        labels = np.asarray(self.labels)
        if scores.ndim != 3 or scores.shape[1] != len(labels) or len(labels) == 0:
            raise ValueError(f"scores must be (seeds, {len(labels)} clips, classes) and non-empty, got {scores.shape}")
        if labels.ndim == 2 and labels.shape != scores.shape[1:]:
            raise ValueError(f"multilabel labels {labels.shape} do not match scores {scores.shape[1:]}")


@dataclass(frozen=True)
class PairedComparison:
    """Model A minus model B on the same test clips.

    Attributes:
        difference: score(A) − score(B) on all matched clips.
        interval: percentile interval of the difference over paired resamples.
        significant: the interval excludes 0, i.e. the models differ at the interval's level.
    """

    difference: float
    interval: tuple[float, float]
    significant: bool


def bootstrap_counts(sizes: Sequence[int], resamples: int, seed: int) -> Iterator[list[np.ndarray]]:
    """Resamples in chunks of at most `CHUNK`: per chunk, one (r, n_fold) matrix of clip counts per fold.

    Each row of a fold's matrix is a multinomial draw of n_fold clips from that fold (sums to n_fold).
    """
    if resamples < 1 or any(n < 1 for n in sizes):
        raise ValueError(f"need at least one resample and one clip per fold, got {resamples} and sizes {list(sizes)}")
    rng = np.random.default_rng(seed)
    for start in range(0, resamples, CHUNK):
        count = min(CHUNK, resamples - start)
        yield [rng.multinomial(n, np.full(n, 1.0 / n), size=count) for n in sizes]


def weighted_score(fold: FoldPredictions, weights: np.ndarray, multilabel: bool) -> np.ndarray:
    """The primary metric of each row of clip weights (R, N), averaged over seeds: (R,).

    Multiclass: weighted top-1 accuracy. Multilabel: weighted mAP over the classes with positive weight on a
    positive clip (as `metrics.mean_average_precision` skips classes without positives).
    """
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    scores = np.asarray(fold.scores)
    labels = np.asarray(fold.labels)
    if weights.shape[1] != len(labels):
        raise ValueError(f"weights have {weights.shape[1]} columns for {len(labels)} clips")
    if not multilabel:
        correct = (scores.argmax(axis=2) == labels[None, :]).astype(np.float64)  # (S, N)
        return (weights @ correct.T).mean(axis=1) / weights.sum(axis=1)
    per_seed = [
        np.nanmean(_weighted_average_precisions(labels, seed_scores, weights), axis=1) for seed_scores in scores
    ]
    return np.mean(per_seed, axis=0)


def bootstrap_distribution(
    folds: Sequence[FoldPredictions], multilabel: bool, resamples: int = RESAMPLES, seed: int = SEED
) -> np.ndarray:
    """The task score (mean over folds of the seed-averaged metric) of each bootstrap resample: (resamples,)."""
    values = []
    for counts in bootstrap_counts([len(fold.labels) for fold in folds], resamples, seed):
        values.append(np.mean([weighted_score(f, c, multilabel) for f, c in zip(folds, counts, strict=True)], axis=0))
    return np.concatenate(values)


def bootstrap_interval(
    folds: Sequence[FoldPredictions],
    multilabel: bool,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the task score over test clips (see the module docstring)."""
    return percentile_interval(bootstrap_distribution(folds, multilabel, resamples, seed), level)


def task_score(folds: Sequence[FoldPredictions], multilabel: bool) -> float:
    """The task score on all clips: mean over folds of the seed-averaged primary metric."""
    return float(np.mean([weighted_score(f, np.ones(len(f.labels)), multilabel)[0] for f in folds]))


def paired_bootstrap(
    folds_a: Sequence[FoldPredictions],
    folds_b: Sequence[FoldPredictions],
    multilabel: bool,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> PairedComparison:
    """Compare two models on the same clips: both scored on identical resamples, the difference's interval.

    Fold k of `folds_a` and of `folds_b` must hold the same clips in the same order (same labels).
    """
    if len(folds_a) != len(folds_b):
        raise ValueError(f"{len(folds_a)} folds against {len(folds_b)}: the models must share their test clips")
    for a, b in zip(folds_a, folds_b, strict=True):
        if not np.array_equal(a.labels, b.labels):
            raise ValueError("the two models' folds hold different clips or labels; match them by clip id first")
    differences = bootstrap_distribution(folds_a, multilabel, resamples, seed) - bootstrap_distribution(
        folds_b, multilabel, resamples, seed
    )
    low, high = percentile_interval(differences, level)
    return PairedComparison(
        difference=task_score(folds_a, multilabel) - task_score(folds_b, multilabel),
        interval=(low, high),
        significant=bool(low > 0 or high < 0),
    )


def percentile_interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The central `level` interval of resampled values (percentile bootstrap)."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def _weighted_average_precisions(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Average precision (R, C) of each class under each row of clip weights; NaN where no weighted positive.

    scikit-learn's definition with `sample_weight`: AP = Σ_k (R_k − R_{k−1}) P_k over distinct score
    thresholds, highest first, so tied scores form one threshold.
    """
    result = np.full((len(weights), labels.shape[1]), np.nan)
    weights = weights.astype(np.float32)  # clip counts: exact in float32, and half the memory traffic
    for c in range(labels.shape[1]):
        order = np.argsort(-scores[:, c], kind="stable")
        sorted_scores = scores[order, c]
        positive = labels[order, c] > 0
        if not positive.any():
            continue
        ends = np.flatnonzero(np.r_[sorted_scores[1:] != sorted_scores[:-1], True])  # last clip of each threshold
        positives_so_far = np.cumsum(positive)[ends]
        ends_with_positives = np.flatnonzero(np.diff(positives_so_far, prepend=0) > 0)  # other thresholds add 0
        ordered = weights[:, order]
        selected = np.cumsum(ordered, axis=1, dtype=np.float64)[:, ends[ends_with_positives]]
        true_positives = np.cumsum(ordered[:, positive], axis=1, dtype=np.float64)
        true_positives = true_positives[:, positives_so_far[ends_with_positives] - 1]
        total = true_positives[:, -1]
        precision = np.divide(true_positives, selected, out=np.zeros_like(selected), where=selected > 0)
        recall_steps = np.diff(true_positives, axis=1, prepend=0.0)
        has_positive = total > 0
        result[has_positive, c] = (recall_steps * precision)[has_positive].sum(axis=1) / total[has_positive]
    return result
