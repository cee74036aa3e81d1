"""Metrics against hand-computed cases, scikit-learn, and HEAR's definitions."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import confusion_matrix, f1_score, roc_auc_score

from decar.evaluate.metrics import (
    PRIMARY_METRIC,
    confusion,
    d_prime,
    macro_f1,
    mean_average_precision,
    roc_auc,
    score,
    top1_accuracy,
)

# Four clips, three classes; predictions (argmax) are [0, 2, 2, 1] for truths [0, 1, 2, 1].
Y = np.array([0, 1, 2, 1])
SCORES = np.array([[0.8, 0.1, 0.1], [0.1, 0.3, 0.6], [0.2, 0.2, 0.6], [0.1, 0.7, 0.2]])

# Three labels: label 0 has positives ranked 1st and 3rd, label 1 one positive ranked 1st, label 2 none.
Y_MULTI = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0]])
SCORES_MULTI = np.array([[0.9, 0.1, 0.5], [0.8, 0.9, 0.5], [0.7, 0.2, 0.5], [0.1, 0.3, 0.5]])


def test_top1_accuracy_by_hand() -> None:
    assert top1_accuracy(Y, SCORES) == pytest.approx(0.75)


def test_macro_f1_by_hand_and_against_sklearn() -> None:
    # class 0: P=R=1 → 1; class 1: P=1, R=1/2 → 2/3; class 2: P=1/2, R=1 → 2/3
    assert macro_f1(Y, SCORES) == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    rng = np.random.default_rng(0)
    y, s = rng.integers(0, 6, 200), rng.normal(size=(200, 6))
    assert macro_f1(y, s) == pytest.approx(f1_score(y, s.argmax(1), average="macro"))


def test_mean_average_precision_by_hand_skips_classes_without_positives() -> None:
    # label 0: precision 1 at rank 1 and 2/3 at rank 3 → AP 5/6; label 1: AP 1; label 2: no positive, skipped
    assert mean_average_precision(Y_MULTI, SCORES_MULTI) == pytest.approx((5 / 6 + 1) / 2)


def test_roc_auc_by_hand_and_against_sklearn() -> None:
    # label 0: positives {0.9, 0.7} vs negatives {0.8, 0.1}: 3 of 4 pairs ordered → 0.75; label 1: 1; label 2 skipped
    assert roc_auc(Y_MULTI, SCORES_MULTI) == pytest.approx((0.75 + 1.0) / 2)
    rng = np.random.default_rng(1)
    y, s = (rng.random((100, 5)) < 0.3).astype(int), rng.normal(size=(100, 5))
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s, average="macro"))


def test_d_prime_is_zero_at_chance_and_monotone() -> None:
    assert d_prime(0.5) == pytest.approx(0.0, abs=1e-12)
    values = [d_prime(a) for a in np.linspace(0.01, 0.99, 50)]
    assert np.all(np.diff(values) > 0)
    # Two unit Gaussians one std apart: AUC = Φ(1/√2), d′ = 1
    assert d_prime(float(norm.cdf(1 / np.sqrt(2)))) == pytest.approx(1.0)
    assert d_prime(1.0) == np.inf
    with pytest.raises(ValueError, match="AUC"):
        d_prime(1.5)


def test_confusion_by_hand_and_against_sklearn() -> None:
    matrix = confusion(Y, SCORES.argmax(1), num_classes=4)
    expected = np.zeros((4, 4), dtype=np.int64)
    expected[0, 0] = expected[1, 2] = expected[2, 2] = expected[1, 1] = 1
    np.testing.assert_array_equal(matrix, expected)
    rng = np.random.default_rng(2)
    y, p = rng.integers(0, 5, 300), rng.integers(0, 5, 300)
    np.testing.assert_array_equal(confusion(y, p, 5), confusion_matrix(y, p, labels=range(5)))
    with pytest.raises(ValueError, match="outside"):
        confusion(np.array([0, 5]), np.array([0, 1]), 5)


def test_score_multiclass_keys_and_primary_metric() -> None:
    result = score(Y, SCORES, multilabel=False)
    assert set(result) == {"top1_acc", "macro_f1"}
    assert result[PRIMARY_METRIC[False]] == pytest.approx(0.75)


def test_score_multilabel_d_prime_is_hears_mean_over_classes() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random((200, 4)) < 0.4).astype(int)
    s = y + rng.normal(0, 1.0, y.shape)  # overlapping: no class ranked perfectly
    result = score(y, s, multilabel=True)
    assert set(result) == {"mAP", "d_prime", "roc_auc"}
    aucs = roc_auc_score(y, s, average=None)
    assert result["d_prime"] == pytest.approx(np.mean(np.sqrt(2) * norm.ppf(aucs)))  # HEAR's DPrime
    assert result["roc_auc"] == pytest.approx(np.mean(aucs))
    assert result[PRIMARY_METRIC[True]] == pytest.approx(mean_average_precision(y, s))


def test_score_multilabel_d_prime_stays_finite_for_a_perfect_class() -> None:
    result = score(Y_MULTI, SCORES_MULTI, multilabel=True)
    assert np.isfinite(result["d_prime"])
    # label 1: 1 positive x 3 negatives, AUC moved to 1 - 1/6; label 0: AUC 0.75
    assert result["d_prime"] == pytest.approx((d_prime(1 - 1 / 6) + d_prime(0.75)) / 2)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: top1_accuracy(Y, SCORES[:3]), "shape"),
        (lambda: top1_accuracy(np.array([0, 1, 3, 1]), SCORES), "outside"),
        (lambda: top1_accuracy(Y, np.full((4, 3), np.nan)), "NaN"),
        (lambda: mean_average_precision(np.zeros((4, 3)), SCORES_MULTI), "positive"),
        (lambda: roc_auc(np.ones((4, 3)), SCORES_MULTI), "both"),
        (lambda: roc_auc(Y_MULTI * 2, SCORES_MULTI), "0 and 1"),
        (lambda: score(Y, SCORES, multilabel=True), r"\(N, C\)"),
    ],
)
def test_bad_inputs_raise_clear_errors(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
