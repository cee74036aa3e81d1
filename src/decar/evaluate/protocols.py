"""Downstream protocols: probes on frozen embeddings, fine-tuning, and the DECAR paper's recipe, kept apart.

Every protocol but one selects its model on a validation split, and the code makes that structural rather than a
convention: `fit_probe` has no parameter for test labels, so nothing it chooses (epoch, grid point, L2 strength,
k) can depend on them; it returns a `Probe` holding test scores, and `score_probe` compares them with the test
labels afterwards.

The exception is "paper": the official DECAR (and LAPE) downstream code reports the BEST TEST accuracy over its
training epochs, i.e. it selects on the test set. `fit_paper_protocol` reproduces that for comparison with the
published numbers, takes the test labels explicitly, and marks its result ``selection="test"``; such a number
is optimistic by construction and must never be presented next to valid-selected numbers unlabelled.

Presets (`PROTOCOLS`):
- "linear" (default): L2-regularised logistic regression, the probe of most representation-learning papers
  (scikit-learn's `LogisticRegression` on standardised features): full-batch L-BFGS, strength chosen on
  validation, the train-only fit at that strength kept (see `LogisticConfig`). Deterministic: the seed does not enter.
- "evar-linear": one linear layer on train-standardised embeddings, Adam lr 1e-3, no regularisation, early
  stopping on validation: EVAR's (and BYOL-A's) linear evaluation.
- "hear-mlp": HEAR's grid on validation, hidden layers {one, two} of 1024 × lr {1e-3, 3.2e-4, 1e-4}, dropout
  0.1, early stopping; the best validation score wins. HEAR also tries lr 3.2e-3, two initialisations, and uses
  BatchNorm, batch 1024 and up to 500 epochs; six points of its grid keep CPU runs affordable.
- "knn": k nearest neighbours by cosine similarity of train-standardised embeddings, k chosen on validation
  (see `KnnConfig`). Deterministic.
- "paper": Adam lr 1e-3, 50 epochs, batch 64, raw embeddings, best test epoch (test-selected, see above).
- "finetune": the whole encoder with a linear head (`finetune`), selected on validation.

Each preset's resolved settings have a short hash (`Protocol.settings_hash`) so that reports can refuse to
compare numbers obtained with different recipes. Fitting is deterministic given the seed (CPU) and leaves
torch's global random state untouched.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from decar.embed import AudioEncoder
from decar.evaluate.metrics import PRIMARY_METRIC, mean_average_precision, score, top1_accuracy
from decar.models.batchnorm import recalibrate_batchnorm

Selection = Literal["valid", "test"]
Labelled = tuple[np.ndarray, np.ndarray]
"""(inputs, labels): labels are class indices (N,) for multiclass tasks, a 0/1 matrix (N, C) for multilabel."""

PREDICT_CHUNK = 8192
"""Rows per forward pass when scoring embeddings (bounds memory for large test sets and wide MLPs)."""
BN_CALIBRATION_BATCHES = 8
"""Training batches used to re-estimate BatchNorm statistics after each fine-tuning epoch."""
KNN_CHUNK = 1024
"""Queries per similarity matrix in k-NN (1024 × N_train floats at a time)."""
HASH_LENGTH = 12
"""Hex digits of a protocol's settings hash: enough to tell recipes apart, short enough for a table."""


@dataclass(frozen=True)
class ProbeConfig:
    """Training hyperparameters of a probe trained by mini-batch gradient descent (or of a fine-tuning run).

    Attributes:
        epochs: maximum number of passes over the training set.
        patience: stop after this many epochs without a better validation score.
        lr: learning rate (of the head, when fine-tuning).
        weight_decay: L2 penalty of the optimiser.
        batch_size: clips per optimisation step.
        hidden: widths of hidden layers (ReLU); () is a linear probe.
        dropout: dropout after each hidden layer (no effect on a linear probe).
        optimizer: "adam" or "sgd" (momentum 0.9).
        standardize: scale embedding dimensions to zero mean and unit variance with TRAIN statistics.
    """

    epochs: int = 200
    patience: int = 20
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 256
    hidden: tuple[int, ...] = ()
    dropout: float = 0.0
    optimizer: str = "adam"
    standardize: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(width) for width in self.hidden))  # lists from JSON/YAML
        if self.epochs < 1 or self.patience < 1 or self.batch_size < 1:
            raise ValueError(
                f"epochs, patience and batch_size must be positive, got {self.epochs}, {self.patience}, "
                f"{self.batch_size}"
            )
        if not self.lr > 0 or self.weight_decay < 0:
            raise ValueError(f"lr must be positive and weight_decay non-negative, got {self.lr}, {self.weight_decay}")
        if any(width < 1 for width in self.hidden):
            raise ValueError(f"hidden layer widths must be positive, got {self.hidden}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")


@dataclass(frozen=True)
class LogisticConfig:
    """L2-regularised logistic regression on train-standardised embeddings, fitted by full-batch L-BFGS.

    The objective is the mean loss over clips (softmax cross-entropy; for multilabel tasks the sum over labels
    of sigmoid cross-entropies) plus ``l2 / 2 · ‖W‖²``; the bias is not penalised. On this mean-loss scale
    scikit-learn's ``C`` is ``1 / (l2 · N)``. The default grid runs from 1e1, where unit-variance features are
    shrunk almost to the class prior, down to 1e-6, which is effectively unregularised for any corpus below a
    million clips, in half-decade steps: validation scores rarely separate neighbours closer than a factor of
    three. The path runs from strong to weak, each fit warm-started from the previous solution (the strongly
    regularised problems are well conditioned and the weak ones start near their optimum), which makes the
    whole grid cost a few cold fits.

    The probe kept is the train-only fit at the selected strength (``refit="train"``), as in every other
    preset: valid serves selection only. Refitting on train + valid (``refit="train+valid"``, as scikit-learn's
    grid search does) lets the probe learn the validation sources, and in tasks whose valid and test splits share
    sources that are absent from train (an early design of the bench's language_id: the same speakers, other
    words) that teaches it the test speakers: BYOL-A scored 0.775 there with it and 0.114 (chance) without.
    Standardisation keeps train statistics.

    Attributes:
        l2_grid: penalties to try, on the mean-loss scale.
        max_iterations: L-BFGS iterations per fit (each may evaluate the loss several times in its line search).
        tolerance: stop when no gradient entry exceeds this (first-order optimality on the mean-loss scale).
        dtype: "float32" (fast; enough for this tolerance) or "float64".
        refit: "train+valid" or "train" (keep the train-only fit at the selected strength).
    """

    # 10, 3.16, 1, 0.316, ..., 1e-6, rounded to three digits so that neither the values nor the settings hash
    # depend on the platform's last-bit rounding of powers
    l2_grid: tuple[float, ...] = tuple(float(f"{10 ** (half / 2):.3g}") for half in range(2, -13, -1))
    max_iterations: int = 500
    tolerance: float = 1e-5
    dtype: str = "float32"
    refit: str = "train"

    def __post_init__(self) -> None:
        object.__setattr__(self, "l2_grid", tuple(float(value) for value in self.l2_grid))
        if not self.l2_grid or any(not value > 0 for value in self.l2_grid):
            raise ValueError(f"l2_grid must be non-empty and positive, got {self.l2_grid}")
        if self.max_iterations < 1 or not self.tolerance > 0:
            raise ValueError(
                f"max_iterations and tolerance must be positive, got {self.max_iterations}, {self.tolerance}"
            )
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if self.refit not in ("train+valid", "train"):
            raise ValueError(f"refit must be 'train+valid' or 'train', got {self.refit!r}")


@dataclass(frozen=True)
class KnnConfig:
    """k nearest neighbours by cosine similarity of train-standardised embeddings.

    Neighbours vote with weights exp(similarity / temperature), the weighted k-NN of self-supervised vision
    (Wu et al. 2018, DINO), so that ties between classes are broken by closeness; class scores are the weighted
    mean of the neighbours' label vectors (one-hot for multiclass, multi-hot for multilabel tasks), so they sum
    to one and rank clips for mAP.

    Attributes:
        k_grid: numbers of neighbours to try on validation (values above the number of training clips are
            dropped; the smallest k wins ties).
        temperature: vote sharpness; large values make a plain majority vote.
    """

    k_grid: tuple[int, ...] = (1, 3, 5, 10, 20, 50)
    temperature: float = 0.07

    def __post_init__(self) -> None:
        object.__setattr__(self, "k_grid", tuple(int(k) for k in self.k_grid))
        if not self.k_grid or any(k < 1 for k in self.k_grid):
            raise ValueError(f"k_grid must be non-empty and positive, got {self.k_grid}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")


Config = ProbeConfig | LogisticConfig | KnnConfig


@dataclass(frozen=True)
class Protocol:
    """A named evaluation recipe: a base configuration, a grid over some of its fields, and how it selects.

    Attributes:
        name: the preset's key in `PROTOCOLS`.
        description: one line for help texts and reports.
        base: the configuration every grid point starts from; its type says how the probe is fitted.
        grid: field name → values to try (gradient-trained probes); the product is searched, best validation
            score wins. Logistic regression and k-NN carry their grids in their configuration.
        selection: "valid", or "test" for the paper protocol (its numbers are test-selected).
        seeded: whether the seed changes the result; deterministic probes are fitted once for all seeds.
    """

    name: str
    description: str
    base: Config
    grid: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    selection: Selection = "valid"
    seeded: bool = True

    def configs(self, config: ProbeConfig | None = None) -> list[ProbeConfig]:
        """The configurations to train: `config` (or the preset's base) at each point of the grid."""
        base = self.base if config is None else config
        names = list(self.grid)
        points = itertools.product(*self.grid.values())
        return [dataclasses.replace(base, **dict(zip(names, values, strict=True))) for values in points]

    def settings(self) -> dict[str, Any]:
        """Everything that determines the recipe's numbers, as plain JSON (the description is left out)."""
        return {
            "name": self.name,
            "kind": type(self.base).__name__,
            "base": _jsonable(dataclasses.asdict(self.base)),
            "grid": _jsonable(self.grid),
            "selection": self.selection,
        }

    @property
    def settings_hash(self) -> str:
        """Short stable hash of `settings()`: sha256 of its sorted JSON, first `HASH_LENGTH` hex digits."""
        text = json.dumps(self.settings(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:HASH_LENGTH]


PAPER_CONFIG = ProbeConfig(epochs=50, patience=50, lr=1e-3, batch_size=64, standardize=False)
FINETUNE_CONFIG = ProbeConfig(epochs=30, patience=5, lr=1e-3, batch_size=16, standardize=False)

PROTOCOLS: dict[str, Protocol] = {
    "linear": Protocol(
        "linear",
        "L2 logistic regression (L-BFGS) on train-standardised embeddings, strength chosen on validation (default)",
        LogisticConfig(),
        seeded=False,
    ),
    "evar-linear": Protocol(
        "evar-linear",
        "EVAR's linear eval: linear layer on train-standardised embeddings, Adam, early stopping on validation",
        ProbeConfig(),
    ),
    "hear-mlp": Protocol(
        "hear-mlp",
        "HEAR's grid on validation: 1 or 2 hidden layers of 1024 x lr {1e-3, 3.2e-4, 1e-4}, dropout 0.1",
        ProbeConfig(dropout=0.1),
        grid={"hidden": ((1024,), (1024, 1024)), "lr": (1e-3, 3.2e-4, 1e-4)},
    ),
    "knn": Protocol(
        "knn",
        "k nearest neighbours (cosine, train-standardised), k in {1, 3, 5, 10, 20, 50} chosen on validation",
        KnnConfig(),
        seeded=False,
    ),
    "paper": Protocol(
        "paper",
        "official DECAR recipe: Adam 1e-3, 50 epochs, batch 64, raw embeddings, BEST TEST EPOCH (test-selected)",
        PAPER_CONFIG,
        selection="test",
    ),
    "finetune": Protocol(
        "finetune",
        "encoder + linear head trained together (encoder at a smaller lr), early stopping on validation",
        FINETUNE_CONFIG,
    ),
}


@dataclass(frozen=True)
class ProbeResult:
    """A probe's test scores and metrics, with everything needed to say how it was selected.

    Attributes:
        test_scores: float32 (N_test, C), class probabilities (softmax) or label probabilities (sigmoid).
        valid_metrics: `metrics.score` on the validation split for the selected epoch or grid point, fitted on
            train only ({} for "paper", which has no validation split).
        test_metrics: `metrics.score` on the test split.
        selected_epoch: the epoch (1-based) whose weights produced `test_scores`; None for probes not trained
            in epochs (logistic regression, k-NN).
        selection: "valid", or "test" when the epoch was chosen on the test labels ("paper").
        hyperparameters: the configuration used ("protocol" included); grid protocols add "grid", the
            validation score of every point tried; logistic regression adds "l2", "iterations", "converged".
        history: one dict per epoch (epoch, train_loss, loss and primary metric on the selection split), or
            per L2 strength along the regularisation path.
    """

    test_scores: np.ndarray
    valid_metrics: dict[str, float]
    test_metrics: dict[str, float]
    selected_epoch: int | None
    selection: Selection
    hyperparameters: dict[str, Any]
    history: list[dict[str, float]]


@dataclass(frozen=True, eq=False)
class Probe:
    """A probe fitted and selected without test labels; `score_probe` turns it into a `ProbeResult`.

    Attributes:
        test_scores: float32 (N_test, C) scores of the test embeddings given to `fit_probe`.
        network: the selected classifier, in eval mode, mapping standardised embeddings to scores
            (probabilities).
        mean, scale: the train standardisation (None when the protocol uses raw embeddings).
        Others: as in `ProbeResult`.
    """

    test_scores: np.ndarray
    valid_metrics: dict[str, float]
    selected_epoch: int | None
    selection: Selection
    hyperparameters: dict[str, Any]
    history: list[dict[str, float]]
    multilabel: bool
    network: nn.Module
    mean: np.ndarray | None
    scale: np.ndarray | None

    def predict(self, embeddings: np.ndarray) -> np.ndarray:
        """Scores float32 (N, C) of other embeddings, with the same (train) standardisation."""
        return _predict(self.network, _standardized(embeddings, self.mean, self.scale))


@dataclass(frozen=True, eq=False)
class FinetunedModel:
    """A fine-tuned copy of an encoder with its head; `predict` scores waveforms.

    Attributes:
        encoder: the fine-tuned copy (the model passed to `finetune` is left as it was), in eval mode.
        head: classifier on the clip embedding.
        valid_metrics, selected_epoch, selection, hyperparameters, history: as in `ProbeResult`.
    """

    encoder: AudioEncoder
    head: nn.Module
    multilabel: bool
    valid_metrics: dict[str, float]
    selected_epoch: int
    selection: Selection
    hyperparameters: dict[str, Any]
    history: list[dict[str, float]]

    def predict(self, waveforms: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """Scores float32 (N, C) of whole clips at `encoder.sample_rate`, in eval mode (BatchNorm frozen).

        Args:
            waveforms: 1-D float clips of any length.
            batch_size: clips per forward pass.
        """
        clips = _as_clips(waveforms)
        if not clips:
            raise ValueError("no waveforms to score")
        logits = _clip_logits(self.encoder, self.head, clips, batch_size)
        return _activate(logits, self.multilabel).cpu().numpy().astype(np.float32)


# ------------------------------------------------------------------------------------------------ public API
def fit_probe(
    protocol: str,
    train: Labelled,
    valid: Labelled,
    test_embeddings: np.ndarray,
    num_classes: int,
    multilabel: bool,
    seed: int,
    config: Config | None = None,
) -> Probe:
    """Fit a probe on `train`, select its epoch or grid point on `valid`, and score `test_embeddings`.

    Test labels are deliberately not a parameter: every choice is made before the test set can be consulted.

    Args:
        protocol: "linear", "evar-linear", "hear-mlp" or "knn" ("paper" → `fit_paper_protocol`, "finetune" →
            `finetune`).
        train, valid: (embeddings (N, D), labels).
        test_embeddings: (N_test, D); only scored, after selection.
        num_classes: C, the number of classes or labels.
        multilabel: labels are (N, C) 0/1 rows (sigmoid, BCE) instead of class indices (softmax, CE).
        seed: fixes initialisation, batch order and dropout (unused by the deterministic "linear" and "knn").
        config: replaces the preset's base configuration (same type); a grid protocol still searches its grid.
    """
    spec = _preset(protocol)
    if protocol in ("paper", "finetune"):
        other = "fit_paper_protocol (it needs test labels)" if protocol == "paper" else "finetune (it needs audio)"
        raise ValueError(f"protocol {protocol!r} is not a probe selected on frozen embeddings; use {other}")
    config = spec.base if config is None else config
    if type(config) is not type(spec.base):
        raise ValueError(f"protocol {protocol!r} takes a {type(spec.base).__name__}, got a {type(config).__name__}")
    x_train, y_train = _check_labelled("train", train, num_classes, multilabel)
    x_valid, y_valid = _check_labelled("valid", valid, num_classes, multilabel, x_train.shape[1])
    x_test = _check_embeddings("test", test_embeddings, x_train.shape[1])
    data = _ProbeData(x_train, y_train, x_valid, y_valid, x_test, num_classes, multilabel)
    if isinstance(config, LogisticConfig):
        return _fit_logistic_probe(protocol, config, data)
    if isinstance(config, KnnConfig):
        return _fit_knn_probe(protocol, config, data)
    return _fit_gradient_probe(spec, config, data, seed)


def score_probe(probe: Probe, test_labels: np.ndarray) -> ProbeResult:
    """Compare a selected probe's test scores with the test labels: the only place they are read."""
    labels = np.asarray(test_labels)
    if len(labels) != len(probe.test_scores):
        raise ValueError(f"{len(labels)} test labels for {len(probe.test_scores)} scored test clips")
    return ProbeResult(
        test_scores=probe.test_scores,
        valid_metrics=probe.valid_metrics,
        test_metrics=score(labels, probe.test_scores, probe.multilabel),
        selected_epoch=probe.selected_epoch,
        selection=probe.selection,
        hyperparameters=probe.hyperparameters,
        history=probe.history,
    )


def fit_paper_protocol(train: Labelled, test: Labelled, num_classes: int, multilabel: bool, seed: int) -> ProbeResult:
    """The official DECAR downstream recipe, INCLUDING its flaw: the reported epoch is the best on TEST.

    A linear layer on raw embeddings, Adam lr 1e-3, batch 64, 50 epochs; after every epoch the test set is
    scored and the best epoch is kept. This is model selection on the test set, so the number is optimistic;
    it exists only to compare with published DECAR/LAPE numbers. The result says ``selection="test"`` and its
    history holds the per-epoch test scores; `valid_metrics` is empty (the recipe has no validation split).
    """
    x_train, y_train = _check_labelled("train", train, num_classes, multilabel)
    x_test, y_test = _check_labelled("test", test, num_classes, multilabel, x_train.shape[1])
    config = PAPER_CONFIG
    fit = _train_probe(config, x_train, y_train, x_test, y_test, num_classes, multilabel, seed, "test")
    test_scores = _predict(fit.network, x_test)
    return ProbeResult(
        test_scores=test_scores,
        valid_metrics={},
        test_metrics=score(y_test, test_scores, multilabel),
        selected_epoch=fit.epoch,
        selection="test",
        hyperparameters=_hyperparameters("paper", config),
        history=fit.history,
    )


def run_seeds(
    protocol: str,
    train: Labelled,
    valid: Labelled,
    test_embeddings: np.ndarray,
    test_labels: np.ndarray,
    num_classes: int,
    multilabel: bool,
    seeds: list[int],
    config: Config | None = None,
    on_fitted: Callable[[int], None] | None = None,
) -> list[ProbeResult]:
    """One result per seed (probe randomness; report mean ± std over them).

    ``on_fitted(n)`` is called as the fits progress, n seeds at a time (all of them at once for a deterministic
    protocol), e.g. to advance a progress bar.

    Probes are fitted and selected first (`fit_probe`), then scored. A deterministic protocol ("linear",
    "knn") is fitted once and its result repeated for every seed. For "paper", `valid` is unused and each seed
    runs `fit_paper_protocol` (test-selected, labelled so).
    """
    if not seeds:
        raise ValueError("give at least one seed")
    if protocol == "paper" and config is not None:
        raise ValueError("the paper protocol has a fixed recipe; config cannot change it")
    report = on_fitted or (lambda _n: None)

    def fitted(seed: int, count: int) -> ProbeResult:
        if protocol == "paper":
            result = fit_paper_protocol(train, (test_embeddings, test_labels), num_classes, multilabel, seed)
        else:
            probe = fit_probe(protocol, train, valid, test_embeddings, num_classes, multilabel, seed, config)
            result = score_probe(probe, test_labels)
        report(count)
        return result

    if protocol != "paper" and not _preset(protocol).seeded:
        return [fitted(seeds[0], len(seeds))] * len(seeds)
    return [fitted(seed, 1) for seed in seeds]


def fit_logistic_regression(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    num_classes: int,
    multilabel: bool,
    l2: float,
    max_iterations: int = 500,
    tolerance: float = 1e-5,
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> LogisticFit:
    """Minimise mean loss + l2/2·‖W‖² over (W, b) by full-batch L-BFGS with a strong Wolfe line search.

    Runs on the device and in the dtype of `inputs`; deterministic (no randomness: zero or `init` start).

    Args:
        inputs: (N, D) features (standardised by the caller).
        targets: class indices (N,) int64, or a 0/1 float matrix (N, C) when `multilabel`.
        num_classes: C.
        multilabel: independent sigmoids, loss summed over labels and averaged over clips; else softmax CE.
        l2: penalty on the weights (not the bias), on the mean-loss scale.
        max_iterations: L-BFGS iterations at most.
        tolerance: stop when the largest gradient entry is at most this.
        init: (W (D, C), b (C,)) to start from (a warm start along a regularisation path).
    """
    if not l2 >= 0:
        raise ValueError(f"l2 must be non-negative, got {l2}")
    weight = torch.zeros(inputs.shape[1], num_classes, dtype=inputs.dtype, device=inputs.device)
    bias = torch.zeros(num_classes, dtype=inputs.dtype, device=inputs.device)
    if init is not None:
        weight.copy_(init[0])
        bias.copy_(init[1])
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=max_iterations,
        tolerance_grad=tolerance,
        tolerance_change=1e-12,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        objective = _logistic_loss(inputs @ weight + bias, targets, multilabel) + 0.5 * l2 * weight.square().sum()
        objective.backward()
        return objective

    optimizer.step(closure)
    iterations = int(optimizer.state[weight].get("n_iter", 0))
    with torch.no_grad():
        objective = _logistic_loss(inputs @ weight + bias, targets, multilabel) + 0.5 * l2 * weight.square().sum()
    return LogisticFit(
        weight=weight.detach(),
        bias=bias.detach(),
        iterations=iterations,
        converged=iterations < max_iterations,
        objective=float(objective),
    )


def finetune(
    model: AudioEncoder,
    train: tuple[Sequence[np.ndarray], np.ndarray],
    valid: tuple[Sequence[np.ndarray], np.ndarray],
    num_classes: int,
    multilabel: bool,
    seed: int,
    config: ProbeConfig | None = None,
    encoder_lr: float = 1e-4,
    max_seconds: float = 10.0,
    on_epoch: Callable[[int, float], None] | None = None,
) -> FinetunedModel:
    """Fine-tune a copy of `model` with a linear head; epoch selected on validation (early stopping).

    The encoder learns at `encoder_lr`, smaller than the head's `config.lr`, so that the randomly initialised
    head does not wreck pretrained features in the first steps. BatchNorm runs in train mode during training and
    in eval mode for validation and prediction. Training clips longer than `max_seconds` are randomly cropped
    each epoch; validation and prediction embed whole clips. Clip embeddings are computed as
    `AudioEncoder.embed` does (windows of the encoder's crop length, duration-weighted mean), so training and
    prediction see the same function. `config.standardize` does not apply (the encoder is trained).

    Args:
        model: a decar encoder; it is deep-copied and left unchanged.
        train, valid: (list of 1-D float waveforms at `model.sample_rate`, labels).
        num_classes: C.
        multilabel: labels (N, C) 0/1 (BCE) instead of class indices (CE).
        seed: fixes head initialisation, batch order, crops and dropout.
        config: head and schedule (default: `FINETUNE_CONFIG`); `hidden` adds MLP layers to the head.
        encoder_lr: learning rate of the encoder's parameters.
        max_seconds: longest training crop.
        on_epoch: called after each epoch with (epoch, validation score), e.g. to move a progress bar.
    """
    config = FINETUNE_CONFIG if config is None else config
    if not encoder_lr > 0 or not max_seconds > 0:
        raise ValueError(f"encoder_lr and max_seconds must be positive, got {encoder_lr}, {max_seconds}")
    train_clips, y_train = _check_waveforms("train", train, num_classes, multilabel)
    valid_clips, y_valid = _check_waveforms("valid", valid, num_classes, multilabel)
    encoder = copy.deepcopy(model)
    device = next(encoder.encoder.parameters()).device
    max_samples = max(1, round(max_seconds * encoder.sample_rate))
    steps = -(-len(train_clips) // config.batch_size)
    rng = np.random.default_rng(seed)
    primary = PRIMARY_METRIC[multilabel]
    loss_fn = _loss(multilabel)
    train_targets = _targets(y_train, multilabel).to(device)
    valid_targets = _targets(y_valid, multilabel).to(device)

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        head = _network(encoder.embed_dim, num_classes, config).to(device)
        groups = [{"params": head.parameters()}, {"params": encoder.encoder.parameters(), "lr": encoder_lr}]
        optimizer = _optimizer(config, groups)
        history: list[dict[str, float]] = []
        best_rank, best_epoch, best_state = (-np.inf, -np.inf), 0, {}
        for epoch in range(1, config.epochs + 1):
            encoder.train()
            head.train()
            total = 0.0
            # near-equal batches (array_split), so that no batch of one clip reaches BatchNorm in train mode
            for batch in np.array_split(rng.permutation(len(train_clips)), steps):
                clips = [_random_crop(train_clips[i], max_samples, rng) for i in batch]
                logits = head(_clip_embeddings(encoder, clips))
                loss = loss_fn(logits, train_targets[torch.from_numpy(batch).to(device)])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(batch)
            # BatchNorm running statistics trail fast-moving weights (EfficientNet's momentum is 0.01): re-estimate
            # them on training crops so that eval-mode validation sees the network as it now is.
            calibration = [
                [_random_crop(train_clips[i], max_samples, rng) for i in batch]
                for batch in np.array_split(rng.permutation(len(train_clips)), steps)[:BN_CALIBRATION_BATCHES]
            ]
            with torch.no_grad():
                recalibrate_batchnorm(encoder, calibration, forward=lambda clips: _clip_embeddings(encoder, clips))
            valid_logits = _clip_logits(encoder, head, valid_clips)
            valid_loss = float(loss_fn(valid_logits, valid_targets))
            metric = _primary_metric(y_valid, _activate(valid_logits, multilabel).cpu().numpy(), multilabel)
            history.append(
                {
                    "epoch": epoch,
                    "train_loss": total / len(train_clips),
                    "valid_loss": valid_loss,
                    f"valid_{primary}": metric,
                }
            )
            if on_epoch is not None:
                on_epoch(epoch, metric)
            if (metric, -valid_loss) > best_rank:
                best_rank, best_epoch = (metric, -valid_loss), epoch
                best_state = {"encoder": _state_copy(encoder.encoder), "head": _state_copy(head)}
            elif epoch - best_epoch >= config.patience:
                break
    encoder.encoder.load_state_dict(best_state["encoder"])
    head.load_state_dict(best_state["head"])
    encoder.eval()
    head.eval()
    valid_scores = _activate(_clip_logits(encoder, head, valid_clips), multilabel).cpu().numpy()
    return FinetunedModel(
        encoder=encoder,
        head=head,
        multilabel=multilabel,
        valid_metrics=score(y_valid, valid_scores, multilabel),
        selected_epoch=best_epoch,
        selection="valid",
        hyperparameters={
            **_hyperparameters("finetune", config),
            "encoder_lr": encoder_lr,
            "max_seconds": max_seconds,
        },
        history=history,
    )


# ------------------------------------------------------------------------------------------------ probe fits
@dataclass(frozen=True)
class LogisticFit:
    """One L-BFGS solution: weights (D, C), bias (C,), and how the optimiser ended.

    Attributes:
        iterations: L-BFGS iterations used.
        converged: stopped by a tolerance, not by the iteration budget.
        objective: mean loss + penalty at the solution.
    """

    weight: torch.Tensor
    bias: torch.Tensor
    iterations: int
    converged: bool
    objective: float


@dataclass(frozen=True)
class _ProbeData:
    """Checked inputs of `fit_probe` (raw embeddings; each probe standardises them as its recipe says)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    x_test: np.ndarray
    num_classes: int
    multilabel: bool


def _fit_gradient_probe(spec: Protocol, config: ProbeConfig, data: _ProbeData, seed: int) -> Probe:
    """Linear layers and MLPs trained by mini-batches, each grid point early-stopped on validation."""
    train_stats = _standardizer(data.x_train)
    fits = []
    for grid_config in spec.configs(config):
        mean, scale = train_stats if grid_config.standardize else (None, None)
        fit = _train_probe(
            grid_config,
            _standardized(data.x_train, mean, scale),
            data.y_train,
            _standardized(data.x_valid, mean, scale),
            data.y_valid,
            data.num_classes,
            data.multilabel,
            seed,
            "valid",
        )
        fits.append((fit, grid_config, mean, scale))
    best, best_config, mean, scale = max(fits, key=lambda item: item[0].rank)  # max keeps the first of ties

    hyperparameters = _hyperparameters(spec.name, best_config)
    if len(fits) > 1:
        primary = PRIMARY_METRIC[data.multilabel]
        hyperparameters["grid"] = [
            {**{name: _plain(getattr(c, name)) for name in spec.grid}, f"valid_{primary}": f.metric, "epoch": f.epoch}
            for f, c, _, _ in fits
        ]
    valid_scores = _predict(best.network, _standardized(data.x_valid, mean, scale))
    return Probe(
        test_scores=_predict(best.network, _standardized(data.x_test, mean, scale)),
        valid_metrics=score(data.y_valid, valid_scores, data.multilabel),
        selected_epoch=best.epoch,
        selection="valid",
        hyperparameters=hyperparameters,
        history=best.history,
        multilabel=data.multilabel,
        network=best.network,
        mean=mean,
        scale=scale,
    )


def _fit_logistic_probe(protocol: str, config: LogisticConfig, data: _ProbeData) -> Probe:
    """The regularisation path on train (strong → weak, warm-started), selection on valid, then the refit."""
    mean, scale = _standardizer(data.x_train)
    dtype = getattr(torch, config.dtype)
    x_train, x_valid = (torch.from_numpy(_standardized(x, mean, scale)).to(dtype) for x in (data.x_train, data.x_valid))
    y_train, y_valid = (_targets(y, data.multilabel, dtype) for y in (data.y_train, data.y_valid))
    primary = PRIMARY_METRIC[data.multilabel]
    path: list[tuple[LogisticFit, float, float]] = []  # (fit, valid metric, valid loss)
    history: list[dict[str, float]] = []
    previous: tuple[torch.Tensor, torch.Tensor] | None = None
    for l2 in sorted(config.l2_grid, reverse=True):
        fit = fit_logistic_regression(
            x_train, y_train, data.num_classes, data.multilabel, l2, config.max_iterations, config.tolerance, previous
        )
        previous = (fit.weight, fit.bias)
        with torch.no_grad():
            logits = x_valid @ fit.weight + fit.bias
            valid_loss = float(_logistic_loss(logits, y_valid, data.multilabel))
        metric = _primary_metric(data.y_valid, _activate(logits, data.multilabel).float().numpy(), data.multilabel)
        path.append((fit, metric, valid_loss))
        history.append(
            {
                "l2": l2,
                "iterations": fit.iterations,
                "train_objective": fit.objective,
                "valid_loss": valid_loss,
                f"valid_{primary}": metric,
            }
        )
    # Higher metric wins, then lower validation loss; max keeps the first (strongest penalty) of exact ties.
    chosen = max(range(len(path)), key=lambda i: (path[i][1], -path[i][2]))
    l2 = history[chosen]["l2"]
    selected = path[chosen][0]
    valid_network = _linear_network(selected, data.multilabel)
    valid_scores = _predict(valid_network, _standardized(data.x_valid, mean, scale))
    final = selected
    if config.refit == "train+valid":
        final = fit_logistic_regression(
            torch.cat([x_train, x_valid]),
            torch.cat([y_train, y_valid]),
            data.num_classes,
            data.multilabel,
            l2,
            config.max_iterations,
            config.tolerance,
            (selected.weight, selected.bias),
        )
    network = _linear_network(final, data.multilabel)
    return Probe(
        test_scores=_predict(network, _standardized(data.x_test, mean, scale)),
        valid_metrics=score(data.y_valid, valid_scores, data.multilabel),
        selected_epoch=None,
        selection="valid",
        hyperparameters={
            **_hyperparameters(protocol, config),
            "l2": l2,
            "iterations": final.iterations,
            "converged": final.converged,
            "grid": [{"l2": h["l2"], f"valid_{primary}": h[f"valid_{primary}"]} for h in history],
        },
        history=history,
        multilabel=data.multilabel,
        network=network,
        mean=mean,
        scale=scale,
    )


def _fit_knn_probe(protocol: str, config: KnnConfig, data: _ProbeData) -> Probe:
    """Every k of the grid scored on validation from one neighbour search; the best k scores the test set."""
    mean, scale = _standardizer(data.x_train)
    network = _NearestNeighbours(
        torch.from_numpy(_standardized(data.x_train, mean, scale)),
        _label_matrix(data.y_train, data.num_classes, data.multilabel),
        k=1,
        temperature=config.temperature,
    )
    k_grid = sorted({min(k, len(data.x_train)) for k in config.k_grid})
    similarity, index = network.neighbours(torch.from_numpy(_standardized(data.x_valid, mean, scale)), k_grid[-1])
    primary = PRIMARY_METRIC[data.multilabel]
    valid_scores = [network.vote(similarity[:, :k], index[:, :k]).numpy() for k in k_grid]
    grid = [
        {"k": k, f"valid_{primary}": _primary_metric(data.y_valid, scores, data.multilabel)}
        for k, scores in zip(k_grid, valid_scores, strict=True)
    ]
    best = max(range(len(grid)), key=lambda i: grid[i][f"valid_{primary}"])  # the first, smallest k, of ties
    network.k = k_grid[best]
    return Probe(
        test_scores=_predict(network, _standardized(data.x_test, mean, scale)),
        valid_metrics=score(data.y_valid, valid_scores[best], data.multilabel),
        selected_epoch=None,
        selection="valid",
        hyperparameters={**_hyperparameters(protocol, config), "k": network.k, "grid": grid},
        history=grid,
        multilabel=data.multilabel,
        network=network,
        mean=mean,
        scale=scale,
    )


class _Scores(nn.Module):
    """A network producing logits, followed by its activation: the probe maps embeddings to probabilities."""

    def __init__(self, network: nn.Module, multilabel: bool) -> None:
        super().__init__()
        self.network = network
        self.multilabel = multilabel

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return _activate(self.network(inputs), self.multilabel)


class _NearestNeighbours(nn.Module):
    """Weighted k-NN scores (see `KnnConfig`) against L2-normalised training embeddings."""

    def __init__(self, keys: torch.Tensor, labels: torch.Tensor, k: int, temperature: float) -> None:
        super().__init__()
        self.register_buffer("keys", F.normalize(keys.float(), dim=1))
        self.register_buffer("labels", labels.float())
        self.k = k
        self.temperature = temperature

    def neighbours(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Cosine similarities (N, k) to the k most similar training clips, most similar first, and their rows."""
        queries = F.normalize(queries.float(), dim=1)
        parts = [(queries[i : i + KNN_CHUNK] @ self.keys.T).topk(k, dim=1) for i in range(0, len(queries), KNN_CHUNK)]
        return torch.cat([part.values for part in parts]), torch.cat([part.indices for part in parts])

    def vote(self, similarity: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Weighted mean of the neighbours' label rows, weights exp(similarity / temperature)."""
        weights = torch.softmax(similarity / self.temperature, dim=1)
        return torch.einsum("nk,nkc->nc", weights, self.labels[index])

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.vote(*self.neighbours(inputs, self.k))


def _linear_network(fit: LogisticFit, multilabel: bool) -> nn.Module:
    """A float32 linear layer holding an L-BFGS solution, with its activation."""
    layer = nn.Linear(fit.weight.shape[0], fit.weight.shape[1])
    with torch.no_grad():
        layer.weight.copy_(fit.weight.T.float().cpu())
        layer.bias.copy_(fit.bias.float().cpu())
    return _Scores(layer, multilabel).eval()


def _logistic_loss(logits: torch.Tensor, targets: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """Mean over clips of softmax cross-entropy, or of the sum over labels of sigmoid cross-entropies."""
    if multilabel:
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / len(logits)
    return F.cross_entropy(logits, targets)


def _label_matrix(labels: np.ndarray, num_classes: int, multilabel: bool) -> torch.Tensor:
    """Labels as float rows (N, C): multi-hot as given, or one-hot class indices."""
    if multilabel:
        return torch.from_numpy(np.asarray(labels, dtype=np.float32))
    return F.one_hot(torch.from_numpy(np.asarray(labels, dtype=np.int64)), num_classes).float()


# ---------------------------------------------------------------------------------------------- training core
@dataclass(frozen=True, eq=False)
class _Fit:
    """One configuration's training run: the selected network (eval mode, ending in its activation), how chosen."""

    network: nn.Module
    epoch: int
    metric: float
    loss: float
    history: list[dict[str, float]]

    @property
    def rank(self) -> tuple[float, float]:
        """Higher primary metric wins; equal metrics go to the lower selection loss."""
        return (self.metric, -self.loss)


def _train_probe(
    config: ProbeConfig,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_select: np.ndarray,
    y_select: np.ndarray,
    num_classes: int,
    multilabel: bool,
    seed: int,
    selection: Selection,
) -> _Fit:
    """Mini-batch training; after each epoch the selection split is scored and the best epoch's weights kept.

    Stops after `config.patience` epochs without improvement. Runs inside a forked RNG so that the seed alone
    determines the result and the caller's random state is untouched.
    """
    inputs = torch.from_numpy(np.ascontiguousarray(x_train, dtype=np.float32))
    targets = _targets(y_train, multilabel)
    select_inputs = torch.from_numpy(np.ascontiguousarray(x_select, dtype=np.float32))
    select_targets = _targets(y_select, multilabel)
    loss_fn = _loss(multilabel)
    primary = PRIMARY_METRIC[multilabel]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        network = _network(inputs.shape[1], num_classes, config)
        optimizer = _optimizer(config, network.parameters())
        history: list[dict[str, float]] = []
        best_rank, best_epoch, best_state = (-np.inf, -np.inf), 0, {}
        for epoch in range(1, config.epochs + 1):
            network.train()
            order = torch.randperm(len(inputs), generator=generator)
            total = torch.zeros(())
            for start in range(0, len(inputs), config.batch_size):
                batch = order[start : start + config.batch_size]
                loss = loss_fn(network(inputs[batch]), targets[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.detach() * len(batch)
            network.eval()
            with torch.no_grad():
                logits = network(select_inputs)
                select_loss = float(loss_fn(logits, select_targets))
            metric = _primary_metric(y_select, _activate(logits, multilabel).numpy(), multilabel)
            history.append(
                {
                    "epoch": epoch,
                    "train_loss": float(total) / len(inputs),
                    f"{selection}_loss": select_loss,
                    f"{selection}_{primary}": metric,
                }
            )
            if (metric, -select_loss) > best_rank:
                best_rank, best_epoch, best_state = (metric, -select_loss), epoch, _state_copy(network)
            elif epoch - best_epoch >= config.patience:
                break
    network.load_state_dict(best_state)
    network.eval()
    return _Fit(_Scores(network, multilabel).eval(), best_epoch, best_rank[0], -best_rank[1], history)


def _network(in_dim: int, num_classes: int, config: ProbeConfig) -> nn.Module:
    """Linear layer, or an MLP with ReLU and dropout after each hidden layer."""
    layers: list[nn.Module] = []
    width = in_dim
    for hidden in config.hidden:
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        if config.dropout > 0:
            layers.append(nn.Dropout(config.dropout))
        width = hidden
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def _optimizer(config: ProbeConfig, params: Any) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


def _loss(multilabel: bool) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return nn.BCEWithLogitsLoss() if multilabel else nn.CrossEntropyLoss()


def _activate(logits: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """Logits → probabilities: independent sigmoids (multilabel) or a softmax over classes."""
    return torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=1)


def _targets(labels: np.ndarray, multilabel: bool, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Class indices as int64, or 0/1 rows as `dtype` (the dtype of the logits they meet)."""
    if multilabel:
        return torch.from_numpy(np.asarray(labels)).to(dtype)
    return torch.from_numpy(np.asarray(labels, dtype=np.int64))


def _primary_metric(labels: np.ndarray, scores: np.ndarray, multilabel: bool) -> float:
    """Only the selection metric, cheaper than `metrics.score` inside the epoch loop."""
    return mean_average_precision(labels, scores) if multilabel else top1_accuracy(labels, scores)


def _predict(network: nn.Module, embeddings: np.ndarray) -> np.ndarray:
    """Scores float32 (N, C) of a probe network (which ends in its activation), in chunks of rows."""
    network.eval()
    inputs = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32))
    with torch.no_grad():
        chunks = [network(inputs[i : i + PREDICT_CHUNK]) for i in range(0, len(inputs), PREDICT_CHUNK)]
    return torch.cat(chunks).numpy().astype(np.float32)


def _state_copy(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def _standardizer(x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std of the TRAIN embeddings (constant dimensions get scale 1, as in scikit-learn)."""
    mean = x_train.mean(axis=0, dtype=np.float64)
    scale = x_train.std(axis=0, dtype=np.float64)
    scale[scale == 0] = 1.0
    return mean, scale


def _standardized(x: np.ndarray, mean: np.ndarray | None, scale: np.ndarray | None) -> np.ndarray:
    if mean is None or scale is None:
        return np.asarray(x, dtype=np.float32)
    return ((x - mean) / scale).astype(np.float32)


# --------------------------------------------------------------------------------------------- fine-tuning io
def _clip_embeddings(model: AudioEncoder, clips: list[np.ndarray]) -> torch.Tensor:
    """Clip embeddings (B, D) exactly as `AudioEncoder.embed` computes them, but differentiable.

    All windows of one length go through the encoder together, so BatchNorm in train mode sees a real batch.
    """
    device = next(model.encoder.parameters()).device
    sums = torch.zeros(len(clips), model.embed_dim, device=device)
    weights = torch.zeros(len(clips), device=device)
    for group, logmel in model.window_batches(clips):
        index = torch.tensor([w.clip for w in group], device=device)
        frames = torch.tensor([float(w.frames) for w in group], device=device)
        sums = sums.index_add(0, index, model.encoder(logmel).float() * frames[:, None])
        weights = weights.index_add(0, index, frames)
    return sums / weights[:, None]


def _clip_logits(model: AudioEncoder, head: nn.Module, clips: list[np.ndarray], batch_size: int = 32) -> torch.Tensor:
    """Head logits (N, C) of whole clips, encoder and head in eval mode, no gradients."""
    model.eval()
    head.eval()
    with torch.no_grad():
        parts = [head(_clip_embeddings(model, clips[i : i + batch_size])) for i in range(0, len(clips), batch_size)]
    return torch.cat(parts)


def _random_crop(clip: np.ndarray, max_samples: int, rng: np.random.Generator) -> np.ndarray:
    if len(clip) <= max_samples:
        return clip
    start = int(rng.integers(0, len(clip) - max_samples + 1))
    return clip[start : start + max_samples]


def _as_clips(waveforms: Sequence[np.ndarray]) -> list[np.ndarray]:
    clips = []
    for i, wave in enumerate(waveforms):
        clip = np.asarray(wave, dtype=np.float32)
        if clip.ndim != 1 or clip.size == 0:
            raise ValueError(f"clip {i} must be a non-empty 1-D waveform, got shape {clip.shape}")
        if not np.isfinite(clip).all():
            raise ValueError(f"clip {i} contains NaN or infinite samples")
        clips.append(clip)
    return clips


# ------------------------------------------------------------------------------------------------- validation
def _preset(protocol: str) -> Protocol:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {sorted(PROTOCOLS)}")
    return PROTOCOLS[protocol]


def _hyperparameters(protocol: str, config: Config) -> dict[str, Any]:
    return {"protocol": protocol, **{k: _plain(v) for k, v in dataclasses.asdict(config).items()}}


def _plain(value: Any) -> Any:
    """Tuples → lists, so that hyperparameters serialise to JSON unchanged."""
    return list(value) if isinstance(value, tuple) else value


def _jsonable(value: Any) -> Any:
    """Nested dicts, tuples and lists as plain JSON values (tuples → lists), for settings hashes."""
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


def _check_embeddings(name: str, embeddings: np.ndarray, dim: int | None = None) -> np.ndarray:
    x = np.asarray(embeddings)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} embeddings must be a non-empty (N, D) array, got shape {x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name} embeddings have {x.shape[1]} dimensions, train embeddings {dim}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} embeddings contain NaN or infinite values")
    return x.astype(np.float32, copy=False)


def _check_labels(name: str, labels: np.ndarray, n: int, num_classes: int, multilabel: bool) -> np.ndarray:
    y = np.asarray(labels)
    if num_classes < 1 + (not multilabel):
        raise ValueError(f"num_classes must be at least {1 + (not multilabel)}, got {num_classes}")
    if multilabel:
        if y.shape != (n, num_classes) or not np.isin(y, (0, 1)).all():
            raise ValueError(f"{name} labels must be a 0/1 matrix of shape ({n}, {num_classes}), got shape {y.shape}")
        return y.astype(np.float32)
    if y.shape != (n,) or not (np.issubdtype(y.dtype, np.integer) or np.all(np.mod(y, 1) == 0)):
        raise ValueError(f"{name} labels must be {n} integer class indices, got shape {y.shape} dtype {y.dtype}")
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"{name} labels must lie in [0, {num_classes}), got [{y.min()}, {y.max()}]")
    return y.astype(np.int64)


def _check_labelled(
    name: str, part: Labelled, num_classes: int, multilabel: bool, dim: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    x = _check_embeddings(name, part[0], dim)
    return x, _check_labels(name, part[1], len(x), num_classes, multilabel)


def _check_waveforms(
    name: str, part: tuple[Sequence[np.ndarray], np.ndarray], num_classes: int, multilabel: bool
) -> tuple[list[np.ndarray], np.ndarray]:
    clips = _as_clips(part[0])
    if not clips:
        raise ValueError(f"{name} has no clips")
    return clips, _check_labels(name, part[1], len(clips), num_classes, multilabel)
