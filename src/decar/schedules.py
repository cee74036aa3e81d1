"""Per-step schedules, precomputed: the loop looks its learning rate up by global step and saves the table."""

from __future__ import annotations

import math

import numpy as np


def warmup_cosine(base: float, final: float, warmup_steps: int, total_steps: int) -> np.ndarray:
    """Linear warmup from 0 to ``base`` over ``warmup_steps``, then cosine decay to ``final`` at the last step.

    Returns:
        (total_steps,) float64 learning rates; step 0 of a warmup is ``base / warmup_steps``, not 0, so no
        step is wasted.
    """
    if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"need 0 <= warmup_steps ({warmup_steps}) <= total_steps ({total_steps}) and >= 1 step")
    warmup = base * np.arange(1, warmup_steps + 1) / max(warmup_steps, 1)
    decay_steps = total_steps - warmup_steps
    progress = np.arange(decay_steps) / max(decay_steps - 1, 1)
    cosine = final + 0.5 * (base - final) * (1 + np.cos(math.pi * progress))
    return np.concatenate([warmup, cosine])


def constant(base: float, total_steps: int) -> np.ndarray:
    """The same learning rate at every step (DECAR v1)."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    return np.full(total_steps, base, dtype=np.float64)


def learning_rates(
    kind: str, base: float, final: float, warmup_epochs: float, epochs: int, steps_per_epoch: int
) -> np.ndarray:
    """The run's learning rate at every global step, ``epochs * steps_per_epoch`` of them."""
    total = epochs * steps_per_epoch
    if kind == "constant":
        return constant(base, total)
    if kind == "warmup_cosine":
        return warmup_cosine(base, final, min(total, round(warmup_epochs * steps_per_epoch)), total)
    raise ValueError(f"unknown schedule {kind!r}; known: constant, warmup_cosine")
