"""Shared fixtures: small synthetic corpora written once per session, the paper's settings, test isolation."""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from decar.testing import write_synthetic_corpus


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64 one-second clips of 8 synthetic sound families."""
    folder = tmp_path_factory.mktemp("corpus")
    write_synthetic_corpus(folder, files_per_kind=8, seconds=1.0)
    return folder


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread for a module of tiny inputs: on a shared 2-core machine two spinning OpenMP threads
    made such modules up to ~30x slower (test_models: 75 s instead of 2.5 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _restore_global_state() -> Iterator[None]:
    """Give every test the process-wide state the previous one started with, whatever order they run in.

    Tests (and code under test: `decar.pretrain.fit` sets the thread count, the global seed and deterministic
    algorithms; `decar pretrain` reconfigures the root logger) change global state; without this, what a
    test sees depends on which tests ran before it. Restored: torch's thread count, default dtype,
    deterministic-algorithms flags and global RNG, numpy's and Python's global RNGs, the root logger's level
    and handlers, environment variables and the working directory.
    """
    threads = torch.get_num_threads()
    dtype = torch.get_default_dtype()
    deterministic = torch.are_deterministic_algorithms_enabled()
    deterministic_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn_benchmark = torch.backends.cudnn.benchmark
    torch_rng = torch.get_rng_state()
    numpy_rng = np.random.get_state()
    python_rng = random.getstate()
    root = logging.getLogger()
    root_level, root_handlers = root.level, list(root.handlers)
    environ = dict(os.environ)
    cwd = os.getcwd()
    try:
        yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        torch.set_default_dtype(dtype)
        torch.use_deterministic_algorithms(deterministic, warn_only=deterministic_warn_only)
        torch.backends.cudnn.benchmark = cudnn_benchmark
        torch.set_rng_state(torch_rng)
        np.random.set_state(numpy_rng)
        random.setstate(python_rng)
        root.setLevel(root_level)
        _restore_handlers(root, root_handlers)
        _restore_environ(environ)
        os.chdir(cwd)


def _is_pytest_handler(handler: logging.Handler) -> bool:
    """pytest adds and removes its own capture handlers around each test phase: leave those to it."""
    return type(handler).__module__.startswith("_pytest")


def _restore_handlers(logger: logging.Logger, before: list[logging.Handler]) -> None:
    for handler in list(logger.handlers):
        if handler not in before and not _is_pytest_handler(handler):
            logger.removeHandler(handler)
    for handler in before:
        if handler not in logger.handlers and not _is_pytest_handler(handler):
            logger.addHandler(handler)


def _restore_environ(before: dict[str, str]) -> None:
    ignored = {"PYTEST_CURRENT_TEST"}  # pytest's own, updated per test phase
    for key in set(os.environ) - set(before) - ignored:
        del os.environ[key]
    for key, value in before.items():
        if key not in ignored and os.environ.get(key) != value:
            os.environ[key] = value


@pytest.fixture()
def paper_settings() -> dict[str, Any]:
    """Every field of the paper's DECAR v1 config, written out by hand (not computed from decar's code).

    Values marked §1a are the paper's settings as /work/shared/REFERENCE.md §1a records them; §3 marks BYOL-A
    augmentation parameters (off in v1); the rest are decar's own choices that v1 does not specify. A field
    added, removed or changed in `DecarConfig()` or configs/decar.yaml must be changed here too, on purpose.
    """
    return {
        "config_version": 1,
        "method": "deepcluster_v1",
        "frontend": {
            "sample_rate": 16000,  # §1a: 16 kHz mono
            "n_fft": 1024,  # §1a
            "win_length": 400,  # §1a: 25 ms
            "hop_length": 160,  # §1a: 10 ms
            "n_mels": 64,  # §1a
            "f_min": 60.0,  # §1a: 60-7800 Hz
            "f_max": 7800.0,
            "power": 1.0,  # §1a: magnitude spectrum
            "mel_scale": "htk",  # §1a
            "filterbank": "tf",  # §1a: TensorFlow-style filterbank
            "log_floor": 1e-05,  # §1a: clip at 1e-5, natural log
            "log_mode": "clip",
            "center": False,  # TensorFlow-style framing, no padding
            "window": "hann",
            "l2_normalize_waveform": True,  # §1a: the waveform was L2-normalised before feature extraction
            "rms_normalize_waveform": False,
        },
        "augment": {
            "specaugment": {  # §1a: time warp W=5, 2 frequency masks F=30, 2 time masks T=40, mean fill
                "enabled": True,
                "time_warp": 5,
                "freq_masks": 2,
                "freq_mask_width": 30,
                "time_masks": 2,
                "time_mask_width": 40,
                "fill": "mean",
            },
            "running_norm": {"enabled": False, "frozen_after": 1000},  # BYOL-A's (§3), not in v1
            "mixup": {"enabled": False, "ratio": 0.4, "memory_size": 2048},  # §3, not in v1
            "random_resize_crop": {  # §3, not in v1
                "enabled": False,
                "virtual_crop_scale": [1.0, 1.5],
                "freq_scale": [0.6, 1.5],
                "time_scale": [0.6, 1.5],
            },
            "random_gain": {"enabled": False, "max_db": 6.0},  # ours, not in v1
            "order": ["running_norm", "random_gain", "mixup", "random_resize_crop", "specaugment"],
        },
        "data": {
            "crop_seconds": 10.0,  # §1a: whole 10 s clips
            "random_crop": True,
            "pad_to_crop": True,
            "pad_mode": "silence",  # §1a: zero-padded
            "min_seconds": 0.05,
            "cache_dir": None,
            "num_workers": 4,
            "max_files": None,
            "max_files_per_folder": None,  # ours: the paper balanced AudioSet beforehand
        },
        "model": {"name": "efficientnet_b0", "kwargs": {}},  # §1a: EfficientNet-B0, 1 channel, 1280-d
        "objective": {
            "hidden_dim": 512,  # §1a: Linear(1280,512) -> ReLU -> Linear(512,512)
            "dropout": 0.5,  # §1a
            "num_clusters": 512,  # §1a: K = 512
            "pca_dim": 128,  # §1a: PCA-whiten to 128-d
            "kmeans_iters": 20,  # §1a
            "kmeans_backend": "auto",
            "top_layer_std": 0.01,  # §1a: N(0, 0.01)
            "top_layer_momentum": 0.0,  # DeepCluster's top-layer optimiser: plain SGD, recreated each epoch
            "bn_recalibration": "first",
            "bn_recalibration_batches": 20,
        },
        "optim": {
            "lr": 0.05,  # §1a: SGD lr 0.05, momentum 0.9, weight decay 1e-5, no schedule, batch 64, 200 epochs
            "momentum": 0.9,
            "weight_decay": 1e-05,
            "batch_size": 64,
            "epochs": 200,
            "steps_per_epoch": None,  # one pass over the data per epoch
            "grad_clip": None,
            "schedule": "constant",  # §1a: no schedule
            "warmup_epochs": 0.0,
            "final_lr": 0.0,
            "lars": False,
            "lars_trust": 0.001,
        },
        "seed": 0,
        "deterministic": False,
        "device": "auto",
        "precision": "fp32",
        "channels_last": True,
        "checkpoint_minutes": 5.0,
        "time_budget_minutes": None,
        "num_threads": None,
        "shortcut_check_epochs": 0,
    }


MALFORMED_OUTCOMES: list[tuple[str, str, str]] = []
"""(input, command, outcome) rows that tests/test_malformed.py records, printed at the end of the run."""


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The malformed-input table: what each command did with each deliberately broken or unusual input."""
    if not MALFORMED_OUTCOMES:
        return
    terminalreporter.section("malformed inputs: input | command | outcome")
    for name, command, outcome in sorted(MALFORMED_OUTCOMES):
        terminalreporter.write_line(f"{name!r} | {command} | {outcome}")
