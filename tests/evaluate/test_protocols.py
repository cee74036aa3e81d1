"""Probes and fine-tuning: they learn what is learnable, not what is not, and never select on test labels."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import inspect
import json

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn

import decar
from decar.evaluate.metrics import score
from decar.evaluate.protocols import (
    PROTOCOLS,
    FinetunedModel,
    KnnConfig,
    LogisticConfig,
    Probe,
    ProbeConfig,
    finetune,
    fit_logistic_regression,
    fit_paper_protocol,
    fit_probe,
    run_seeds,
    score_probe,
)
from decar.testing import synthetic_clip, write_random_checkpoint

C, D = 5, 64
FAST = ProbeConfig(epochs=60, patience=10, batch_size=64)
"""Enough for the tiny sets below; keeps the file fast on a shared CPU."""
FAST_MLP = ProbeConfig(epochs=40, patience=10, batch_size=64, dropout=0.1)
FAST_CONFIGS: dict[str, ProbeConfig | None] = {"linear": None, "evar-linear": FAST, "hear-mlp": FAST_MLP, "knn": None}
"""Every probe protocol, gradient-trained ones with short schedules."""


pytestmark = pytest.mark.usefixtures("one_thread")


def gaussian_classes(
    n_per_class: int, spread: float, seed: int, means_seed: int = 0, dim: int = D
) -> tuple[np.ndarray, np.ndarray]:
    """C Gaussian classes in `dim` dimensions around fixed random means (`spread` = noise std per dimension)."""
    means = np.random.default_rng(means_seed).normal(0, 1, (C, dim))
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(C), n_per_class)
    return (means[y] + rng.normal(0, spread, (len(y), dim))).astype(np.float32), y


@pytest.fixture(scope="module")
def separable() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Means ~11 noise stds apart: linearly separable with margin."""
    return {
        "train": gaussian_classes(40, 1.0, 1),
        "valid": gaussian_classes(20, 1.0, 2),
        "test": gaussian_classes(40, 1.0, 3),
    }


@pytest.fixture(scope="module")
def overlapping() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Overlapping classes (test accuracy about 0.75): selection choices show in the test score."""
    return {
        "train": gaussian_classes(30, 3.0, 4),
        "valid": gaussian_classes(20, 3.0, 5),
        "test": gaussian_classes(60, 3.0, 6),
    }


def fit(
    data: dict[str, tuple[np.ndarray, np.ndarray]],
    seed: int = 0,
    config: ProbeConfig | None = FAST,
    protocol: str = "evar-linear",
) -> Probe:
    """A probe on a dataset dict, the test labels left out."""
    return fit_probe(protocol, data["train"], data["valid"], data["test"][0], C, False, seed, config)


# ------------------------------------------------------------------------------------------- learning at all
@pytest.mark.parametrize("protocol", FAST_CONFIGS)
def test_probes_separate_gaussian_classes(separable: dict, protocol: str) -> None:
    result = score_probe(fit(separable, config=FAST_CONFIGS[protocol], protocol=protocol), separable["test"][1])
    assert result.test_metrics["top1_acc"] >= 0.95
    assert result.selection == "valid"
    assert result.test_scores.shape == (len(separable["test"][1]), C)
    assert result.test_scores.dtype == np.float32
    np.testing.assert_allclose(result.test_scores.sum(axis=1), 1.0, rtol=1e-5)  # class probabilities
    assert result.hyperparameters["protocol"] == protocol


@pytest.mark.parametrize("protocol", FAST_CONFIGS)
def test_shuffled_labels_stay_near_chance(protocol: str) -> None:
    # Labels independent of the embeddings: the test labels are a random permutation of a balanced vector,
    # independent of the probe, so accuracy has mean exactly 1/C and std <= sqrt(0.2 * 0.8 / 1000) = 0.013;
    # 0.05 is about four standard deviations.
    rng = np.random.default_rng(7)
    parts = [gaussian_classes(n, 1.0, seed) for n, seed in ((40, 1), (20, 2), (200, 3))]
    train, valid, test = [(x, rng.permutation(y)) for x, y in parts]
    result = score_probe(fit_probe(protocol, train, valid, test[0], C, False, 0, FAST_CONFIGS[protocol]), test[1])
    assert result.test_metrics["top1_acc"] <= 1 / C + 0.05


@pytest.mark.parametrize("protocol", ["linear", "evar-linear", "knn"])
def test_multilabel_probe_beats_the_label_prior(protocol: str) -> None:
    rng = np.random.default_rng(8)
    directions = rng.normal(size=(D, 4))

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.normal(size=(n, D)).astype(np.float32)
        return x, (x @ directions > 4.0).astype(np.float32)  # about 20 % positives per label

    train, valid, test = make(300), make(100), make(200)
    probe = fit_probe(protocol, train, valid, test[0], 4, True, 0, FAST_CONFIGS[protocol])
    result = score_probe(probe, test[1])
    prior = float(test[1].mean())  # the mAP of uninformative scores
    assert prior < 0.35
    # k-NN in 64 dimensions from 300 clips is much weaker than a linear rule, but far above the prior
    assert result.test_metrics["mAP"] > (0.8 if protocol != "knn" else 0.45)
    assert result.test_metrics["roc_auc"] > (0.9 if protocol != "knn" else 0.75)
    assert set(result.valid_metrics) == {"mAP", "d_prime", "roc_auc"}
    assert ((result.test_scores >= 0) & (result.test_scores <= 1)).all()  # sigmoids or neighbour label means


# --------------------------------------------------------------------------------- regularised linear probe
def test_logistic_regression_matches_scikit_learn() -> None:
    # The same objective (mean CE + l2/2 ||W||^2, bias free) is scikit-learn's with C = 1 / (l2 N).
    rng = np.random.default_rng(12)
    x = rng.normal(size=(150, 12))
    y = rng.integers(0, 3, 150)
    x[:, 0] += y
    l2 = 0.05
    fit_ = fit_logistic_regression(torch.from_numpy(x), torch.from_numpy(y), 3, False, l2, 1000, 1e-9)
    reference = LogisticRegression(C=1 / (l2 * len(x)), tol=1e-10, max_iter=10_000).fit(x, y)
    ours = torch.softmax(torch.from_numpy(x) @ fit_.weight + fit_.bias, dim=1).numpy()
    np.testing.assert_allclose(ours, reference.predict_proba(x), atol=1e-4)
    assert fit_.converged and 0 < fit_.iterations < 1000
    assert fit_.weight.dtype == torch.float64  # the dtype (and device) of the inputs


def test_multilabel_logistic_regression_is_one_binary_problem_per_label() -> None:
    rng = np.random.default_rng(13)
    x = rng.normal(size=(200, 8))
    y = (x[:, :3] + rng.normal(0, 1, (200, 3)) > 0.5).astype(np.float64)
    l2 = 0.02
    fit_ = fit_logistic_regression(torch.from_numpy(x), torch.from_numpy(y), 3, True, l2, 1000, 1e-9)
    for label in range(3):
        reference = LogisticRegression(C=1 / (l2 * len(x)), tol=1e-10, max_iter=10_000).fit(x, y[:, label])
        ours = torch.sigmoid(torch.from_numpy(x) @ fit_.weight[:, label] + fit_.bias[label]).numpy()
        np.testing.assert_allclose(ours, reference.predict_proba(x)[:, 1], atol=1e-4)


def test_warm_start_reaches_the_cold_solution() -> None:
    rng = np.random.default_rng(14)
    x = torch.from_numpy(rng.normal(size=(100, 20)))
    y = torch.from_numpy(rng.integers(0, 4, 100))
    strong = fit_logistic_regression(x, y, 4, False, 1.0, tolerance=1e-9)
    warm = fit_logistic_regression(x, y, 4, False, 0.01, tolerance=1e-9, init=(strong.weight, strong.bias))
    cold = fit_logistic_regression(x, y, 4, False, 0.01, tolerance=1e-9)
    torch.testing.assert_close(warm.weight, cold.weight, atol=1e-5, rtol=0)
    assert warm.objective == pytest.approx(cold.objective, rel=1e-9)
    assert strong.weight.norm() < cold.weight.norm()  # the penalty shrinks the weights


def test_linear_strength_is_chosen_on_validation_and_fitted_on_train(overlapping: dict) -> None:
    probe = fit(overlapping, config=None, protocol="linear")
    grid = probe.hyperparameters["grid"]
    default = LogisticConfig()
    assert [point["l2"] for point in grid] == sorted(default.l2_grid, reverse=True)  # strong to weak
    best = max(grid, key=lambda point: point["valid_top1_acc"])
    assert best["valid_top1_acc"] == probe.valid_metrics["top1_acc"]
    ties = [point["l2"] for point in grid if point["valid_top1_acc"] == best["valid_top1_acc"]]
    assert probe.hyperparameters["l2"] in ties
    assert probe.hyperparameters["refit"] == "train" and probe.hyperparameters["converged"]
    assert probe.selected_epoch is None
    # the optional refit on train + valid changes the probe; it keeps the strength chosen on train-only fits
    refitted = fit(overlapping, config=dataclasses.replace(default, refit="train+valid"), protocol="linear")
    assert refitted.hyperparameters["l2"] == probe.hyperparameters["l2"]
    assert not np.allclose(refitted.test_scores, probe.test_scores, atol=1e-4)


def test_regularised_linear_probe_matches_or_beats_evar_linear_with_few_clips() -> None:
    # 256 dimensions, 6 training clips per class: an unregularised layer fits the noise, an L2 penalty chosen on
    # validation does not. The default (train-only) fit isolates the penalty's effect (same training clips as
    # evar-linear); the optional refit adds the validation clips. Averaged over three independent draws.
    accuracies: dict[str, list[float]] = {"default": [], "train+valid": [], "evar-linear": []}
    for draw in range(3):
        data = {
            part: gaussian_classes(n, 6.0, 100 * draw + i, means_seed=draw, dim=256)
            for i, (part, n) in enumerate((("train", 6), ("valid", 20), ("test", 100)))
        }
        probes = {
            "default": fit(data, config=None, protocol="linear"),
            "train+valid": fit(data, config=LogisticConfig(refit="train+valid"), protocol="linear"),
            "evar-linear": fit(data, config=None, protocol="evar-linear"),
        }
        for name, probe in probes.items():
            accuracies[name].append(score_probe(probe, data["test"][1]).test_metrics["top1_acc"])
    mean = {name: float(np.mean(values)) for name, values in accuracies.items()}
    assert mean["default"] >= mean["evar-linear"]
    assert mean["train+valid"] >= mean["evar-linear"]
    assert mean["default"] > 1 / C + 0.1  # and it learns something


def test_logistic_config_validates() -> None:
    with pytest.raises(ValueError, match="l2_grid"):
        LogisticConfig(l2_grid=(1.0, 0.0))
    with pytest.raises(ValueError, match="dtype"):
        LogisticConfig(dtype="float16")
    with pytest.raises(ValueError, match="refit"):
        LogisticConfig(refit="test")
    assert LogisticConfig(l2_grid=[1, 0.1]).l2_grid == (1.0, 0.1)


# ------------------------------------------------------------------------------------------------------ k-NN
def test_knn_one_neighbour_returns_the_nearest_training_label(separable: dict) -> None:
    x_train, y_train = separable["train"]
    probe = fit_probe("knn", separable["train"], separable["valid"], x_train, C, False, 0, KnnConfig(k_grid=(1,)))
    np.testing.assert_array_equal(probe.test_scores.argmax(axis=1), y_train)  # each clip is its own neighbour
    assert probe.hyperparameters["k"] == 1


def test_knn_scores_are_the_mean_of_neighbour_labels() -> None:
    # One dimension, so cosine similarity of standardised values is +1 or -1: the 3 nearest of a positive query
    # are positive training clips, and a huge temperature makes the vote a plain mean of their label rows.
    x_train = np.array([[1.0], [2.0], [3.0], [-1.0], [-2.0]], dtype=np.float32)
    y_train = np.array([[1, 0], [1, 1], [0, 1], [0, 0], [0, 1]], dtype=np.float32)
    x_train -= x_train.mean()
    config = KnnConfig(k_grid=(3,), temperature=1e6)
    probe = fit_probe("knn", (x_train, y_train), (x_train, y_train), np.array([[5.0]]), 2, True, 0, config)
    np.testing.assert_allclose(probe.test_scores[0], y_train[:3].mean(axis=0), atol=1e-4)


def test_knn_k_is_chosen_on_validation(overlapping: dict) -> None:
    probe = fit(overlapping, config=KnnConfig(k_grid=(1, 5, 500)), protocol="knn")
    grid = probe.hyperparameters["grid"]
    assert [point["k"] for point in grid] == [1, 5, len(overlapping["train"][0])]  # k capped at the train size
    best = max(grid, key=lambda point: point["valid_top1_acc"])
    assert probe.hyperparameters["k"] == best["k"]
    assert probe.valid_metrics["top1_acc"] == pytest.approx(best["valid_top1_acc"])


# ---------------------------------------------------------------------------------------------- selection
def test_early_stopping_keeps_the_best_valid_epoch() -> None:
    # No signal: validation does not improve for long, so training stops `patience` epochs after its best.
    rng = np.random.default_rng(9)
    train, valid, test = [(x, rng.permutation(y)) for x, y in (gaussian_classes(20, 1.0, s) for s in (1, 2, 3))]
    config = ProbeConfig(epochs=200, patience=5, batch_size=32)
    probe = fit_probe("evar-linear", train, valid, test[0], C, False, 0, config)
    assert probe.selected_epoch is not None and probe.selected_epoch < config.epochs
    assert len(probe.history) == probe.selected_epoch + config.patience
    ranks = [(h["valid_top1_acc"], -h["valid_loss"]) for h in probe.history]
    assert probe.selected_epoch == 1 + max(range(len(ranks)), key=ranks.__getitem__)
    assert probe.valid_metrics["top1_acc"] == pytest.approx(probe.history[probe.selected_epoch - 1]["valid_top1_acc"])


def test_fit_probe_cannot_see_test_labels() -> None:
    parameters = inspect.signature(fit_probe).parameters
    assert "test_labels" not in parameters
    assert set(parameters) == {
        "protocol", "train", "valid", "test_embeddings", "num_classes", "multilabel", "seed", "config",
    }  # fmt: skip
    assert list(inspect.signature(score_probe).parameters) == ["probe", "test_labels"]  # the one reader


@pytest.mark.parametrize("protocol", ["linear", "evar-linear", "knn"])  # hear-mlp: evar-linear's code path
def test_permuting_test_embeddings_only_permutes_the_outputs(overlapping: dict, protocol: str) -> None:
    probe = fit(overlapping, config=FAST_CONFIGS[protocol], protocol=protocol)
    permutation = np.random.default_rng(10).permutation(len(overlapping["test"][0]))
    shuffled = {**overlapping, "test": (overlapping["test"][0][permutation], overlapping["test"][1])}
    other = fit(shuffled, config=FAST_CONFIGS[protocol], protocol=protocol)
    np.testing.assert_allclose(other.test_scores, probe.test_scores[permutation], rtol=0, atol=1e-6)
    assert other.selected_epoch == probe.selected_epoch
    assert other.valid_metrics == probe.valid_metrics
    assert other.hyperparameters == probe.hyperparameters


@pytest.mark.parametrize("protocol", ["linear", "evar-linear", "knn"])
def test_standardisation_is_fitted_on_train_only(overlapping: dict, protocol: str) -> None:
    config = FAST_CONFIGS[protocol]
    probe = fit(overlapping, config=config, protocol=protocol)
    x_train = overlapping["train"][0]
    np.testing.assert_allclose(probe.mean, x_train.mean(axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(probe.scale, x_train.std(axis=0), rtol=1e-5)
    # A shift of the test embeddings is not absorbed by any test statistics: it moves the predictions exactly as
    # the train-fitted transform says, and changes nothing else.
    shifted_test = overlapping["test"][0] + 3.0
    shifted = fit({**overlapping, "test": (shifted_test, overlapping["test"][1])}, config=config, protocol=protocol)
    np.testing.assert_allclose(shifted.test_scores, probe.predict(shifted_test), atol=1e-6)
    assert not np.allclose(shifted.test_scores, probe.test_scores, atol=1e-3)
    assert shifted.hyperparameters == probe.hyperparameters


def test_raw_embeddings_when_standardisation_is_off(overlapping: dict) -> None:
    assert fit(overlapping, config=PROTOCOLS["paper"].base).mean is None


def test_same_seed_same_scores_other_seed_other_scores(overlapping: dict) -> None:
    state = torch.get_rng_state()
    first, again, other = fit(overlapping, seed=0), fit(overlapping, seed=0), fit(overlapping, seed=1)
    np.testing.assert_array_equal(first.test_scores, again.test_scores)
    assert first.history == again.history
    assert not np.array_equal(first.test_scores, other.test_scores)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random state is untouched


@pytest.mark.parametrize("protocol", ["linear", "knn"])
def test_deterministic_probes_ignore_the_seed(overlapping: dict, protocol: str) -> None:
    assert not PROTOCOLS[protocol].seeded
    first, other = fit(overlapping, 0, None, protocol), fit(overlapping, 1, None, protocol)
    np.testing.assert_array_equal(first.test_scores, other.test_scores)
    results = run_seeds(protocol, overlapping["train"], overlapping["valid"], *overlapping["test"], C, False, [0, 1])
    assert len(results) == 2 and results[0].test_metrics == results[1].test_metrics


@pytest.mark.parametrize("protocol", ["linear", "evar-linear", "paper"])
def test_probe_fits_are_reported_one_per_seed(overlapping: dict, protocol: str) -> None:
    fitted: list[int] = []
    run_seeds(
        protocol,
        overlapping["train"],
        overlapping["valid"],
        *overlapping["test"],
        C,
        False,
        [0, 1, 2],
        None,
        fitted.append,
    )
    assert sum(fitted) == 3  # a deterministic probe is fitted once and counts for every seed
    assert len(fitted) == (1 if protocol == "linear" else 3)


def test_hear_mlp_grid_is_chosen_on_validation() -> None:
    # XOR of the first two dimensions (plus noise dimensions): no linear probe beats chance, an MLP does.
    rng = np.random.default_rng(11)

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.uniform(-1, 1, (n, 8)).astype(np.float32)
        return x, ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(np.int64)

    train, valid, test = make(400), make(200), make(200)
    probe = fit_probe("hear-mlp", train, valid, test[0], 2, False, 0, FAST_MLP)
    grid = probe.hyperparameters["grid"]
    spec = PROTOCOLS["hear-mlp"].grid
    assert [(g["hidden"], g["lr"]) for g in grid] == [
        (list(hidden), lr) for hidden in spec["hidden"] for lr in spec["lr"]
    ]
    assert {len(hidden) for hidden in spec["hidden"]} == {1, 2} and len(grid) <= 8
    best = max(grid, key=lambda g: g["valid_top1_acc"])
    assert (probe.hyperparameters["hidden"], probe.hyperparameters["lr"]) == (best["hidden"], best["lr"])
    assert probe.hyperparameters["dropout"] == 0.1
    assert probe.selected_epoch == best["epoch"]
    assert probe.valid_metrics["top1_acc"] == pytest.approx(best["valid_top1_acc"])
    assert score_probe(probe, test[1]).test_metrics["top1_acc"] > 0.85


# ------------------------------------------------------------------------------------------- settings hashes
def test_settings_hash_is_a_short_stable_digest_of_the_settings() -> None:
    hashes = {name: protocol.settings_hash for name, protocol in PROTOCOLS.items()}
    assert len(set(hashes.values())) == len(PROTOCOLS)
    linear = PROTOCOLS["linear"]
    expected = hashlib.sha256(json.dumps(linear.settings(), sort_keys=True, separators=(",", ":")).encode())
    assert hashes["linear"] == expected.hexdigest()[:12]
    assert linear.settings()["base"]["l2_grid"] == list(LogisticConfig().l2_grid)
    changed = dataclasses.replace(linear, base=LogisticConfig(tolerance=1e-6))
    assert changed.settings_hash != hashes["linear"]
    reworded = dataclasses.replace(linear, description="another description")
    assert reworded.settings_hash == hashes["linear"]


# -------------------------------------------------------------------------------------------- paper protocol
def test_paper_protocol_is_labelled_test_selected_and_optimistic(overlapping: dict) -> None:
    train, test = overlapping["train"], overlapping["test"]
    paper = fit_paper_protocol(train, test, C, False, seed=0)
    assert paper.selection == "test"
    assert paper.valid_metrics == {}
    accuracies = [h["test_top1_acc"] for h in paper.history]
    assert len(accuracies) == PROTOCOLS["paper"].base.epochs  # no early stopping
    assert paper.test_metrics["top1_acc"] == pytest.approx(max(accuracies))
    # The same training run (same seed and recipe) selected on validation instead: test-selection can only win.
    honest = score_probe(fit(overlapping, config=PROTOCOLS["paper"].base), test[1])
    shared = len(honest.history)
    assert [h["train_loss"] for h in honest.history] == [h["train_loss"] for h in paper.history[:shared]]
    assert paper.test_metrics["top1_acc"] >= honest.test_metrics["top1_acc"]
    assert all(r.selection == "test" for r in run_seeds("paper", train, overlapping["valid"], *test, C, False, [0, 1]))


def test_run_seeds_gives_one_scored_result_per_seed(overlapping: dict) -> None:
    results = run_seeds(
        "evar-linear", overlapping["train"], overlapping["valid"], *overlapping["test"], C, False, [0, 1], FAST
    )
    assert len(results) == 2
    assert not np.array_equal(results[0].test_scores, results[1].test_scores)
    for result in results:
        assert result.test_metrics == score(overlapping["test"][1], result.test_scores, False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"protocol": "paper"}, "fit_paper_protocol"),
        ({"protocol": "finetune"}, "finetune"),
        ({"protocol": "svm"}, "unknown protocol"),
        ({"config": FAST}, "takes a LogisticConfig, got a ProbeConfig"),
        ({"num_classes": 3}, r"\[0, 3\)"),
        ({"test_embeddings": np.zeros((4, D + 1))}, "dimensions"),
        ({"multilabel": True}, "0/1 matrix"),
    ],
)
def test_fit_probe_rejects_bad_inputs(separable: dict, kwargs: dict, message: str) -> None:
    arguments = {
        "protocol": "linear", "train": separable["train"], "valid": separable["valid"],
        "test_embeddings": separable["test"][0], "num_classes": C, "multilabel": False, "seed": 0, **kwargs,
    }  # fmt: skip
    with pytest.raises(ValueError, match=message):
        fit_probe(**arguments)


def test_probe_config_validates() -> None:
    with pytest.raises(ValueError, match="optimizer"):
        ProbeConfig(optimizer="lbfgs")
    with pytest.raises(ValueError, match="dropout"):
        ProbeConfig(dropout=1.0)
    assert ProbeConfig(hidden=[64]).hidden == (64,)  # lists from JSON/YAML
    with pytest.raises(ValueError, match="k_grid"):
        KnnConfig(k_grid=(0, 1))


# ----------------------------------------------------------------------------------------------- finetuning
@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> decar.AudioEncoder:
    return decar.load(write_random_checkpoint(tmp_path_factory.mktemp("ft") / "checkpoint.pt"))


def clips(count: int, seconds: float, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """An easy two-class task: pure tones against high-band noise."""
    rng = np.random.default_rng(seed)
    waves = [synthetic_clip(kind, seconds, 16000, rng) for _ in range(count) for kind in ("tone", "noise_high")]
    return waves, np.tile([0, 1], count)


def test_finetune_learns_and_leaves_the_model_alone(encoder: decar.AudioEncoder) -> None:
    before = {name: value.clone() for name, value in encoder.state_dict().items()}
    config = ProbeConfig(epochs=8, patience=8, lr=1e-2, batch_size=8)
    reported: list[tuple[int, float]] = []
    tuned = finetune(
        encoder,
        clips(8, 0.5, 0),
        clips(4, 0.5, 1),
        2,
        False,
        0,
        config,
        encoder_lr=1e-3,
        on_epoch=lambda *r: reported.append(r),
    )
    assert reported == [(h["epoch"], h["valid_top1_acc"]) for h in tuned.history]  # what a progress bar shows

    losses = [h["train_loss"] for h in tuned.history]
    assert losses[-1] < losses[0]
    test_waves, test_labels = clips(8, 0.5, 2)
    scores = tuned.predict(test_waves)
    assert scores.shape == (16, 2)
    assert score(test_labels, scores, False)["top1_acc"] >= 0.75  # chance: 0.5 (P(>= 12 of 16) = 4 %)
    assert tuned.selection == "valid"
    assert tuned.hyperparameters["encoder_lr"] == 1e-3

    after = encoder.state_dict()
    assert all(torch.equal(value, after[name]) for name, value in before.items())
    assert not encoder.training
    assert any(not torch.equal(value, tuned.encoder.state_dict()[name]) for name, value in before.items())


def test_finetune_reestimates_stale_batchnorm_statistics(encoder: decar.AudioEncoder) -> None:
    """An untrained encoder's running statistics are (0, 1): eval-mode predictions collapse unless re-estimated."""
    stale = copy.deepcopy(encoder)
    for module in stale.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
    config = ProbeConfig(epochs=8, patience=8, lr=1e-2, batch_size=8)
    tuned = finetune(stale, clips(8, 0.5, 0), clips(4, 0.5, 1), 2, False, 0, config, encoder_lr=1e-3)
    test_waves, test_labels = clips(8, 0.5, 2)
    assert score(test_labels, tuned.predict(test_waves), False)["top1_acc"] >= 0.75  # chance: 0.5


def test_finetune_crops_long_clips_and_trains_batchnorm(encoder: decar.AudioEncoder) -> None:
    seen: list[tuple[bool, int, int]] = []  # (train mode, windows, log-mel frames per window) of each encoder call
    handle = encoder.encoder.register_forward_pre_hook(
        lambda module, args: seen.append((module.training, args[0].shape[0], args[0].shape[-2]))
    )
    try:  # the hook travels into finetune's deep copy
        tuned = finetune(
            encoder,
            clips(2, 2.0, 3),
            clips(1, 2.0, 4),
            2,
            False,
            0,
            ProbeConfig(epochs=1, batch_size=4),
            max_seconds=0.3,
        )
    finally:
        handle.remove()
    fe = encoder.config.frontend
    training = [frames for train_mode, _, frames in seen if train_mode]
    assert training and max(training) <= fe.frames(round(0.3 * fe.sample_rate))  # random 0.3 s crops
    evaluation = sum(windows * frames for train_mode, windows, frames in seen if not train_mode)
    assert evaluation == 2 * 2 * fe.frames(2 * fe.sample_rate)  # 2 validations of two whole 2 s clips
    assert not tuned.encoder.training


def test_finetune_is_deterministic_given_the_seed(encoder: decar.AudioEncoder) -> None:
    config = ProbeConfig(epochs=2, batch_size=4)
    train, valid = clips(2, 0.5, 5), clips(1, 0.5, 6)
    first, again = (finetune(encoder, train, valid, 2, False, 7, config).predict(valid[0]) for _ in range(2))
    np.testing.assert_array_equal(first, again)


def test_finetuned_predictions_window_clips_as_embed_does(encoder: decar.AudioEncoder) -> None:
    """Fine-tuning runs the encoder itself; its clip embeddings must be `AudioEncoder.embed`'s, windows and all."""
    identity = FinetunedModel(  # multilabel with an identity head: predict gives sigmoid(clip embedding)
        encoder=encoder,
        head=nn.Identity(),
        multilabel=True,
        valid_metrics={},
        selected_epoch=0,
        selection="valid",
        hyperparameters={},
        history=[],
    )
    fe = encoder.config.frontend
    window_seconds = encoder.window_frames * fe.hop_length / fe.sample_rate
    rng = np.random.default_rng(9)
    long_clip = np.concatenate(
        [synthetic_clip(kind, window_seconds, fe.sample_rate, rng) for kind in ("tone", "noise_high")]
    )
    waves = [
        synthetic_clip("chirp_up", 0.3 * window_seconds, fe.sample_rate, rng),
        long_clip[: round(1.7 * len(long_clip) / 2)],
    ]
    assert len(encoder.windows(waves)) == 3  # the long clip spans two windows of different lengths
    expected = torch.sigmoid(torch.from_numpy(encoder.embed(waves))).numpy()
    np.testing.assert_allclose(identity.predict(waves), expected, rtol=1e-4, atol=1e-5)
