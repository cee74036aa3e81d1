"""Downstream scores: the metrics HEAR reports, computed the same way, as pure functions of labels and scores.

Multiclass tasks: labels are class indices (N,) and scores (N, C) (any monotone score: logits or probabilities).
Multilabel tasks: labels are a 0/1 matrix (N, C). Macro averages skip the classes a test set cannot score (no
positive for AP, a single label value for ROC AUC) instead of failing or counting them as zero, so a small fold
is still scored on the classes it has.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

PRIMARY_METRIC: dict[bool, str] = {False: "top1_acc", True: "mAP"}
"""The metric that selects probes and ranks models, by `multilabel` (HEAR's choice for scene tasks)."""


def top1_accuracy(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Fraction of clips whose highest-scoring class is the true one."""
    y_true, scores = _multiclass_inputs(y_true, scores)
    return float(np.mean(scores.argmax(axis=1) == y_true))


def macro_f1(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Unweighted mean F1 over classes that occur in the labels or the predictions (scikit-learn's convention).

    Classes absent from both would score 0/0; they are left out rather than counted as 0 or 1.
    """
    y_true, scores = _multiclass_inputs(y_true, scores)
    y_pred = scores.argmax(axis=1)
    return float(f1_score(y_true, y_pred, average="macro", zero_division=0))


def mean_average_precision(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Mean over classes with at least one positive of the average precision (area under precision-recall)."""
    y_true, scores = _multilabel_inputs(y_true, scores)
    keep = y_true.sum(axis=0) > 0
    if not keep.any():
        raise ValueError("mean average precision needs at least one positive label; y_true is all zeros")
    return float(np.mean([average_precision_score(y_true[:, c], scores[:, c]) for c in np.flatnonzero(keep)]))


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Macro ROC AUC over the classes that have both positive and negative clips."""
    return float(np.mean(_per_class_auc(*_multilabel_inputs(y_true, scores))[0]))


def d_prime(auc: float) -> float:
    """HEAR's d′ = √2·Φ⁻¹(AUC): the separation, in standard deviations, of two equal-variance Gaussians with that AUC.

    It is 0 at chance (AUC 0.5) and grows without bound as AUC → 1 (infinite at exactly 1).
    """
    if not 0.0 <= auc <= 1.0:
        raise ValueError(f"AUC must lie in [0, 1], got {auc}")
    return float(np.sqrt(2.0) * norm.ppf(auc))


def confusion(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts (C, C) int64: row = true class, column = predicted class."""
    y_true = _class_indices(y_true, "y_true")
    y_pred = _class_indices(y_pred, "y_pred")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} must have the same shape")
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    for name, values in (("y_true", y_true), ("y_pred", y_pred)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} has class indices outside [0, {num_classes})")
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def score(y_true: np.ndarray, scores: np.ndarray, multilabel: bool) -> dict[str, float]:
    """All metrics of a task type: {"top1_acc", "macro_f1"} (multiclass) or {"mAP", "d_prime", "roc_auc"}.

    d_prime is HEAR's: the mean over classes of each class's d′ (not the d′ of the mean AUC). A class ranked
    perfectly would give d′ = ∞ and make the mean, and any mean ± std over seeds, infinite; its AUC is therefore
    moved half a positive-negative pair inside [0, 1] (1 − 1/(2·P·N)), so the value stays finite and still
    rewards larger sets. Otherwise the value equals HEAR's.
    """
    if not multilabel:
        return {"top1_acc": top1_accuracy(y_true, scores), "macro_f1": macro_f1(y_true, scores)}
    y_true, scores = _multilabel_inputs(y_true, scores)
    aucs, pairs = _per_class_auc(y_true, scores)
    margin = 0.5 / pairs
    dprimes = [d_prime(float(a)) for a in np.clip(aucs, margin, 1.0 - margin)]
    return {
        "mAP": mean_average_precision(y_true, scores),
        "d_prime": float(np.mean(dprimes)),
        "roc_auc": float(np.mean(aucs)),
    }


# --------------------------------------------------------------------------------------------------- helpers
def _per_class_auc(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC AUC of each class with both label values, and its number of positive-negative pairs."""
    positives = y_true.sum(axis=0)
    negatives = len(y_true) - positives
    keep = np.flatnonzero((positives > 0) & (negatives > 0))
    if keep.size == 0:
        raise ValueError("ROC AUC needs a class with both positive and negative clips; none has both")
    aucs = np.array([roc_auc_score(y_true[:, c], scores[:, c]) for c in keep])
    return aucs, (positives[keep] * negatives[keep]).astype(np.float64)


def _class_indices(values: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be class indices of shape (N,), got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer) and not np.all(np.mod(array, 1) == 0):
        raise ValueError(f"{name} must hold integer class indices, got dtype {array.dtype}")
    return array.astype(np.int64)


def _scores_matrix(scores: np.ndarray, n: int) -> np.ndarray:
    array = np.asarray(scores, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] != n:
        raise ValueError(f"scores must have shape (N={n}, C), got {array.shape}")
    if array.shape[1] == 0:
        raise ValueError("scores must have at least one class column")
    if not np.isfinite(array).all():
        raise ValueError("scores contain NaN or infinite values")
    return array


def _multiclass_inputs(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = _class_indices(y_true, "y_true")
    if y.size == 0:
        raise ValueError("no clips to score")
    s = _scores_matrix(scores, len(y))
    if y.min() < 0 or y.max() >= s.shape[1]:
        raise ValueError(f"y_true has class indices outside [0, {s.shape[1]}) (the number of score columns)")
    return y, s


def _multilabel_inputs(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    if y.ndim != 2:
        raise ValueError(f"multilabel y_true must be a 0/1 matrix (N, C), got shape {y.shape}")
    if y.shape[0] == 0:
        raise ValueError("no clips to score")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("multilabel y_true must contain only 0 and 1")
    s = _scores_matrix(scores, len(y))
    if s.shape != y.shape:
        raise ValueError(f"y_true {y.shape} and scores {s.shape} must have the same shape")
    return y.astype(np.int64), s
