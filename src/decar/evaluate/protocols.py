"""Downstream protocols: probes on frozen embeddings, fine-tuning, and the DECAR paper's recipe, kept apart.

Every protocol but one selects its model on a validation split, and the code makes that structural rather than a
convention: `fit_probe` has no parameter for test labels, so nothing it chooses (epoch, grid point) can depend on
them; it returns a `Probe` holding test scores, and `score_probe` compares them with the test labels afterwards.

The exception is "paper": the official DECAR (and LAPE) downstream code reports the BEST TEST accuracy over its
training epochs, i.e. it selects on the test set. `fit_paper_protocol` reproduces that for comparison with the
published numbers, takes the test labels explicitly, and marks its result ``selection="test"``; such a number
is optimistic by construction and must never be presented next to valid-selected numbers unlabelled.

Presets (`PROTOCOLS`):
- "linear" (default): one linear layer on embeddings standardised with train statistics, Adam, early stopping
  on validation (BYOL-A's linear evaluation).
- "mlp": a small HEAR-style grid, hidden layers {none, one of 1024} × learning rate {1e-3, 1e-4}, dropout 0.1
  after hidden layers; each point is trained with early stopping and the best validation score wins. HEAR
  searches more (depth, width, eight learning rates, initialisations); four points keep CPU runs cheap while
  still letting a non-linear probe win where it helps.
- "paper": Adam lr 1e-3, 50 epochs, batch 64, raw embeddings, best test epoch (test-selected, see above).
- "finetune": the whole encoder with a linear head (`finetune`), selected on validation.

Fitting is deterministic given the seed (CPU) and leaves torch's global random state untouched.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from decar.embed import AudioEncoder
from decar.evaluate.metrics import PRIMARY_METRIC, mean_average_precision, score, top1_accuracy
from decar.pretrain import recalibrate_batchnorm

Selection = Literal["valid", "test"]
Labelled = tuple[np.ndarray, np.ndarray]
"""(inputs, labels): labels are class indices (N,) for multiclass tasks, a 0/1 matrix (N, C) for multilabel."""

PREDICT_CHUNK = 8192
BN_CALIBRATION_BATCHES = 8
"""Training batches used to re-estimate BatchNorm statistics after each fine-tuning epoch."""
"""Rows per forward pass when scoring embeddings (bounds memory for large test sets and wide MLPs)."""


@dataclass(frozen=True)
class ProbeConfig:
    """Training hyperparameters of one probe (or of a fine-tuning run's head and schedule).

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
class Protocol:
    """A named evaluation recipe: a base configuration, a grid over some of its fields, and how it selects.

    Attributes:
        name: the preset's key in `PROTOCOLS`.
        description: one line for help texts and reports.
        base: the configuration every grid point starts from.
        grid: field name → values to try; the product of all is searched, best validation score wins.
        selection: "valid", or "test" for the paper protocol (its numbers are test-selected).
    """

    name: str
    description: str
    base: ProbeConfig
    grid: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    selection: Selection = "valid"

    def configs(self, config: ProbeConfig | None = None) -> list[ProbeConfig]:
        """The configurations to train: `config` (or the preset's base) at each point of the grid."""
        base = self.base if config is None else config
        names = list(self.grid)
        points = itertools.product(*self.grid.values())
        return [dataclasses.replace(base, **dict(zip(names, values, strict=True))) for values in points]


PROTOCOLS: dict[str, Protocol] = {
    "linear": Protocol(
        "linear",
        "linear layer on train-standardised embeddings, Adam, early stopping on validation (default)",
        ProbeConfig(),
    ),
    "mlp": Protocol(
        "mlp",
        "HEAR-style grid on validation: hidden {none, 1024} x lr {1e-3, 1e-4}, dropout 0.1, early stopping",
        ProbeConfig(dropout=0.1),
        grid={"hidden": ((), (1024,)), "lr": (1e-3, 1e-4)},
    ),
    "paper": Protocol(
        "paper",
        "official DECAR recipe: Adam 1e-3, 50 epochs, batch 64, raw embeddings, BEST TEST EPOCH (test-selected)",
        ProbeConfig(epochs=50, patience=50, lr=1e-3, batch_size=64, standardize=False),
        selection="test",
    ),
    "finetune": Protocol(
        "finetune",
        "encoder + linear head trained together (encoder at a smaller lr), early stopping on validation",
        ProbeConfig(epochs=30, patience=5, lr=1e-3, batch_size=16, standardize=False),
    ),
}


@dataclass(frozen=True)
class ProbeResult:
    """A probe's test scores and metrics, with everything needed to say how it was selected.

    Attributes:
        test_scores: float32 (N_test, C), class probabilities (softmax) or label probabilities (sigmoid).
        valid_metrics: `metrics.score` on the validation split at the selected epoch ({} for "paper", which
            has no validation split).
        test_metrics: `metrics.score` on the test split.
        selected_epoch: the epoch (1-based) whose weights produced `test_scores`.
        selection: "valid", or "test" when the epoch was chosen on the test labels ("paper").
        hyperparameters: the configuration used ("protocol" included); grid protocols add "grid", the
            validation score of every point tried.
        history: one dict per epoch: epoch, train_loss, and loss and primary metric on the selection split.
    """

    test_scores: np.ndarray
    valid_metrics: dict[str, float]
    test_metrics: dict[str, float]
    selected_epoch: int
    selection: Selection
    hyperparameters: dict[str, Any]
    history: list[dict[str, float]]


@dataclass(frozen=True, eq=False)
class Probe:
    """A probe fitted and selected without test labels; `score_probe` turns it into a `ProbeResult`.

    Attributes:
        test_scores: float32 (N_test, C) scores of the test embeddings given to `fit_probe`.
        network: the selected classifier, in eval mode.
        mean, scale: the train standardisation (None when the protocol uses raw embeddings).
        Others: as in `ProbeResult`.
    """

    test_scores: np.ndarray
    valid_metrics: dict[str, float]
    selected_epoch: int
    selection: Selection
    hyperparameters: dict[str, Any]
    history: list[dict[str, float]]
    multilabel: bool
    network: nn.Module
    mean: np.ndarray | None
    scale: np.ndarray | None

    def predict(self, embeddings: np.ndarray) -> np.ndarray:
        """Scores float32 (N, C) of other embeddings, with the same (train) standardisation."""
        return _predict(self.network, _standardized(embeddings, self.mean, self.scale), self.multilabel)


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
    config: ProbeConfig | None = None,
) -> Probe:
    """Train a probe on `train`, select epoch and grid point on `valid`, and score `test_embeddings`.

    Test labels are deliberately not a parameter: every choice is made before the test set can be consulted.

    Args:
        protocol: "linear" or "mlp" ("paper" → `fit_paper_protocol`, "finetune" → `finetune`).
        train, valid: (embeddings (N, D), labels).
        test_embeddings: (N_test, D); only scored, after selection.
        num_classes: C, the number of classes or labels.
        multilabel: labels are (N, C) 0/1 rows (sigmoid, BCE) instead of class indices (softmax, CE).
        seed: fixes initialisation, batch order and dropout.
        config: replaces the preset's base configuration; a grid protocol still searches its grid fields.
    """
    spec = _preset(protocol)
    if protocol in ("paper", "finetune"):
        other = "fit_paper_protocol (it needs test labels)" if protocol == "paper" else "finetune (it needs audio)"
        raise ValueError(f"protocol {protocol!r} is not a probe selected on frozen embeddings; use {other}")
    x_train, y_train = _check_labelled("train", train, num_classes, multilabel)
    x_valid, y_valid = _check_labelled("valid", valid, num_classes, multilabel, x_train.shape[1])
    x_test = _check_embeddings("test", test_embeddings, x_train.shape[1])

    train_stats = _standardizer(x_train)
    fits = []
    for grid_config in spec.configs(config):
        mean, scale = train_stats if grid_config.standardize else (None, None)
        fit = _train_probe(
            grid_config,
            _standardized(x_train, mean, scale),
            y_train,
            _standardized(x_valid, mean, scale),
            y_valid,
            num_classes,
            multilabel,
            seed,
            "valid",
        )
        fits.append((fit, grid_config, mean, scale))
    best, best_config, mean, scale = max(fits, key=lambda item: item[0].rank)  # max keeps the first of ties

    hyperparameters = _hyperparameters(protocol, best_config)
    if len(fits) > 1:
        primary = PRIMARY_METRIC[multilabel]
        hyperparameters["grid"] = [
            {**{name: _plain(getattr(c, name)) for name in spec.grid}, f"valid_{primary}": f.metric, "epoch": f.epoch}
            for f, c, _, _ in fits
        ]
    valid_scores = _predict(best.network, _standardized(x_valid, mean, scale), multilabel)
    return Probe(
        test_scores=_predict(best.network, _standardized(x_test, mean, scale), multilabel),
        valid_metrics=score(y_valid, valid_scores, multilabel),
        selected_epoch=best.epoch,
        selection="valid",
        hyperparameters=hyperparameters,
        history=best.history,
        multilabel=multilabel,
        network=best.network,
        mean=mean,
        scale=scale,
    )


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
    config = PROTOCOLS["paper"].base
    fit = _train_probe(config, x_train, y_train, x_test, y_test, num_classes, multilabel, seed, "test")
    test_scores = _predict(fit.network, x_test, multilabel)
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
    config: ProbeConfig | None = None,
) -> list[ProbeResult]:
    """One result per seed (probe randomness; report mean ± std over them).

    Probes are fitted and selected first (`fit_probe`), then scored. For "paper", `valid` is unused and each
    seed runs `fit_paper_protocol` (test-selected, labelled so).
    """
    if not seeds:
        raise ValueError("give at least one seed")
    if protocol == "paper":
        if config is not None:
            raise ValueError("the paper protocol has a fixed recipe; config cannot change it")
        return [fit_paper_protocol(train, (test_embeddings, test_labels), num_classes, multilabel, s) for s in seeds]
    return [
        score_probe(fit_probe(protocol, train, valid, test_embeddings, num_classes, multilabel, s, config), test_labels)
        for s in seeds
    ]


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
        config: head and schedule (default: `PROTOCOLS["finetune"].base`); `hidden` adds MLP layers to the head.
        encoder_lr: learning rate of the encoder's parameters.
        max_seconds: longest training crop.
    """
    config = PROTOCOLS["finetune"].base if config is None else config
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


# ---------------------------------------------------------------------------------------------- training core
@dataclass(frozen=True, eq=False)
class _Fit:
    """One configuration's training run: the selected network (eval mode) and how it was chosen."""

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
    return _Fit(network, best_epoch, best_rank[0], -best_rank[1], history)


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


def _targets(labels: np.ndarray, multilabel: bool) -> torch.Tensor:
    return torch.from_numpy(np.asarray(labels, dtype=np.float32 if multilabel else np.int64))


def _primary_metric(labels: np.ndarray, scores: np.ndarray, multilabel: bool) -> float:
    """Only the selection metric, cheaper than `metrics.score` inside the epoch loop."""
    return mean_average_precision(labels, scores) if multilabel else top1_accuracy(labels, scores)


def _predict(network: nn.Module, embeddings: np.ndarray, multilabel: bool) -> np.ndarray:
    network.eval()
    inputs = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32))
    with torch.no_grad():
        chunks = [
            _activate(network(inputs[i : i + PREDICT_CHUNK]), multilabel) for i in range(0, len(inputs), PREDICT_CHUNK)
        ]
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
    windows = model._windows(clips)
    device = next(model.encoder.parameters()).device
    sums = torch.zeros(len(clips), model.embed_dim, device=device)
    weights = torch.zeros(len(clips), device=device)
    for group, logmel in model._batches(clips, windows, batch_size=len(windows)):
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


def _hyperparameters(protocol: str, config: ProbeConfig) -> dict[str, Any]:
    return {"protocol": protocol, **{k: _plain(v) for k, v in dataclasses.asdict(config).items()}}


def _plain(value: Any) -> Any:
    """Tuples → lists, so that hyperparameters serialise to JSON unchanged."""
    return list(value) if isinstance(value, tuple) else value


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
