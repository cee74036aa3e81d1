"""Random generators that are pure functions of the build seed and a name, so no design step shifts another."""

from __future__ import annotations

import hashlib

import numpy as np


def rng_for(seed: int, *names: object) -> np.random.Generator:
    """A generator keyed by (seed, names): 'language_id', 'split' ... give independent, reproducible streams."""
    key = hashlib.sha256("/".join(map(str, (seed, *names))).encode()).digest()
    return np.random.default_rng(list(np.frombuffer(key[:16], dtype=np.uint32)))


def assign_splits(groups: list[str], rng: np.random.Generator, fractions: tuple[float, float]) -> dict[str, str]:
    """Shuffle groups and cut them into train/valid/test; valid and test get at least one group each.

    Args:
        groups: group ids (sorted by the caller, for determinism).
        fractions: the valid and test shares; train gets the rest.
    """
    order = [groups[i] for i in rng.permutation(len(groups))]
    valid = max(1, round(fractions[0] * len(order)))
    test = max(1, round(fractions[1] * len(order)))
    return {
        group: "valid" if position < valid else "test" if position < valid + test else "train"
        for position, group in enumerate(order)
    }
