"""Bootstrap intervals and paired tests: agreement with the metrics, coverage, power, and no false alarms."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from decar.evaluate.metrics import mean_average_precision, top1_accuracy
from decar.evaluate.stats import (
    FoldPredictions,
    bootstrap_counts,
    bootstrap_distribution,
    bootstrap_interval,
    paired_bootstrap,
    task_score,
    weighted_score,
)


def classifier_scores(labels: np.ndarray, correct: np.ndarray, num_classes: int) -> np.ndarray:
    """One-seed scores (1, N, C) whose argmax is the label where `correct`, the next class elsewhere."""
    predicted = np.where(correct, labels, (labels + 1) % num_classes)
    return np.eye(num_classes)[predicted][None]


def multilabel_fold(rng: np.random.Generator, n: int, seeds: int = 2, classes: int = 4) -> FoldPredictions:
    labels = (rng.random((n, classes)) < 0.3).astype(np.float32)
    scores = labels[None] + rng.normal(0, 0.8, (seeds, n, classes))
    return FoldPredictions(labels, scores)


def test_counts_resample_within_each_fold() -> None:
    chunks = list(bootstrap_counts([5, 8], resamples=250, seed=3))
    assert [chunk[0].shape for chunk in chunks] == [(100, 5), (100, 5), (50, 5)]
    for fold, size in ((0, 5), (1, 8)):
        counts = np.concatenate([chunk[fold] for chunk in chunks])
        assert (counts.sum(axis=1) == size).all()
        assert counts.std(axis=0).min() > 0  # clips really are redrawn
    again = list(bootstrap_counts([5, 8], resamples=250, seed=3))
    assert all(np.array_equal(a, b) for x, y in zip(chunks, again, strict=True) for a, b in zip(x, y, strict=True))


def test_unit_weights_give_the_metrics() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 40)
    scores = rng.normal(size=(2, 40, 3))
    fold = FoldPredictions(labels, scores)
    expected = np.mean([top1_accuracy(labels, s) for s in scores])
    assert weighted_score(fold, np.ones(40), False)[0] == pytest.approx(expected)

    multi = multilabel_fold(rng, 60)
    expected = np.mean([mean_average_precision(multi.labels, s) for s in multi.scores])
    assert weighted_score(multi, np.ones(60), True)[0] == pytest.approx(expected)
    # the task score averages the folds (each already averaged over seeds), however unequal their sizes
    small = FoldPredictions(labels[:10], scores[:, :10])
    fold_means = [np.mean([top1_accuracy(f.labels, s) for s in f.scores]) for f in (fold, small)]
    assert task_score([fold, small], False) == pytest.approx(np.mean(fold_means))


def test_weighted_average_precision_matches_scikit_learn_with_sample_weights() -> None:
    rng = np.random.default_rng(1)
    fold = multilabel_fold(rng, 50, seeds=1, classes=3)
    fold = FoldPredictions(fold.labels, np.round(fold.scores, 1))  # ties between scores, as sklearn groups them
    weights = rng.integers(0, 4, (5, 50)).astype(float)
    ours = weighted_score(fold, weights, True)
    for row, w in enumerate(weights):
        keep = [c for c in range(3) if (w * fold.labels[:, c]).sum() > 0]
        aps = [average_precision_score(fold.labels[:, c], fold.scores[0, :, c], sample_weight=w) for c in keep]
        assert ours[row] == pytest.approx(np.mean(aps))


def test_interval_covers_the_true_accuracy_about_95_percent_of_the_time() -> None:
    # 300 test sets of 200 clips from a classifier that is right with probability 0.7: the percentile interval
    # should contain 0.7 for about 95 % of them (binomial std of the coverage estimate: 0.013).
    rng = np.random.default_rng(2)
    covered = 0
    for trial in range(300):
        labels = rng.integers(0, 4, 200)
        fold = FoldPredictions(labels, classifier_scores(labels, rng.random(200) < 0.7, 4))
        low, high = bootstrap_interval([fold], False, resamples=500, seed=trial)
        assert low <= task_score([fold], False) <= high
        covered += low <= 0.7 <= high
    assert 0.90 <= covered / 300 <= 0.985


def test_kfold_resamples_average_over_folds() -> None:
    # One perfect fold and one useless fold: every resample scores 0.5 exactly (each fold keeps its size).
    labels = np.arange(10) % 2
    perfect = FoldPredictions(labels, classifier_scores(labels, np.ones(10, bool), 2))
    useless = FoldPredictions(labels, classifier_scores(labels, np.zeros(10, bool), 2))
    np.testing.assert_allclose(bootstrap_distribution([perfect, useless], False, resamples=50), 0.5)


def test_paired_test_detects_a_real_difference() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 5, 300)
    better = rng.random(300) < 0.8
    worse = better & (rng.random(300) > 0.15)  # the same model, wrong on 15 % of its hits
    a = [FoldPredictions(labels, classifier_scores(labels, better, 5))]
    b = [FoldPredictions(labels, classifier_scores(labels, worse, 5))]
    comparison = paired_bootstrap(a, b, False)
    assert comparison.significant
    assert comparison.difference == pytest.approx(better.mean() - worse.mean())
    assert 0 < comparison.interval[0] <= comparison.difference <= comparison.interval[1]
    assert paired_bootstrap(b, a, False).interval[1] < 0


def test_paired_test_rarely_flags_equally_good_models() -> None:
    # Two independent classifiers with the same 75 % accuracy: a 95 % test should flag about 5 % of pairs.
    rng = np.random.default_rng(4)
    flagged = 0
    for trial in range(200):
        labels = rng.integers(0, 3, 150)
        a, b = ([FoldPredictions(labels, classifier_scores(labels, rng.random(150) < 0.75, 3))] for _ in range(2))
        flagged += paired_bootstrap(a, b, False, resamples=300, seed=trial).significant
    assert flagged / 200 <= 0.10


def test_multilabel_paired_test_and_interval() -> None:
    rng = np.random.default_rng(5)
    good = multilabel_fold(rng, 200)
    noisy = FoldPredictions(good.labels, good.scores + rng.normal(0, 2.0, good.scores.shape))
    low, high = bootstrap_interval([good], True, resamples=200)
    assert low < task_score([good], True) < high
    assert paired_bootstrap([good], [noisy], True, resamples=200).significant


def test_paired_test_needs_matched_clips() -> None:
    labels = np.array([0, 1, 0, 1])
    fold = FoldPredictions(labels, classifier_scores(labels, np.ones(4, bool), 2))
    other = FoldPredictions(labels[::-1], fold.scores)
    with pytest.raises(ValueError, match="match them by clip id"):
        paired_bootstrap([fold], [other], False)
    with pytest.raises(ValueError, match="scores must be"):
        FoldPredictions(labels, fold.scores[:, :3])
