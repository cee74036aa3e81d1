"""Streaming mean and standard deviation, for normalisation statistics computed over more data than fits at once.

One implementation for every such statistic (the frontend's dataset normalisation, per-bin log-mel statistics):
pieces of any size give the moments of their concatenation, and pieces from several processes merge the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


class RunningMoments:
    """Count, mean and sum of squared deviations (M2) in float64, merged piece by piece (Chan et al.).

    Keeping M2 rather than a raw sum of squares keeps the std exact to float64 precision even when the mean is
    large against the spread (log-mel values far from zero, millions of bins). The moments are over the
    dimensions `dims` of each piece; the others are kept, e.g. ``dims=0`` on (frames, n_mels) pieces gives
    per-bin statistics.

    Across processes: gather every process's `as_tensor()` and `merge` the `from_tensor` of each; the three
    numbers are not plain sums, so an all-reduce sum of them would be wrong.

    Args:
        dims: dimensions each `update` reduces over; None reduces over all, giving scalar moments.

    Example:
        >>> moments = RunningMoments()
        >>> for piece in (torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0, 5.0])):
        ...     moments = moments.update(piece)
        >>> float(moments.mean), float(moments.std())
        (3.0, 1.4142135623730951)
    """

    def __init__(self, dims: int | Sequence[int] | None = None) -> None:
        if isinstance(dims, int):
            dims = (dims,)
        self.dims = None if dims is None else tuple(dims)
        self._count: Tensor | None = None
        self._mean: Tensor | None = None
        self._m2: Tensor | None = None

    def update(self, values: Tensor | np.ndarray) -> RunningMoments:
        """Add a piece of data of any dtype and device (the moments stay where the first piece was); returns self.

        An empty piece changes nothing.
        """
        data = (
            values.detach().to(torch.float64)
            if isinstance(values, Tensor)
            else torch.tensor(values, dtype=torch.float64)
        )
        if data.numel() == 0:
            return self
        dims = tuple(range(data.ndim)) if self.dims is None else self.dims
        count = float(np.prod([data.shape[d] for d in dims]))
        mean = data.mean(dim=dims, keepdim=True)
        m2 = (data - mean).square().sum(dim=dims)
        return self._combine(torch.full_like(m2, count), mean.reshape(m2.shape), m2)

    def merge(self, other: RunningMoments) -> RunningMoments:
        """Add the data `other` has seen, exactly as if its pieces had been given to `update`; returns self."""
        if other._count is None or other._mean is None or other._m2 is None:
            return self
        return self._combine(other._count, other._mean, other._m2)

    @property
    def count(self) -> Tensor:
        """Number of values behind each moment (float64; 0 before any data)."""
        return torch.zeros((), dtype=torch.float64) if self._count is None else self._count

    @property
    def mean(self) -> Tensor:
        """Mean over everything seen (float64, the shape of a piece without `dims`)."""
        if self._mean is None:
            raise ValueError("no values yet: the mean of nothing is undefined")
        return self._mean

    def std(self, floor: float = 0.0) -> Tensor:
        """Population standard deviation, at least `floor` (so that dividing by it is safe for constant data)."""
        if self._m2 is None or self._count is None:
            raise ValueError("no values yet: the std of nothing is undefined")
        return (self._m2 / self._count).sqrt().clamp_min(floor)

    def as_tensor(self) -> Tensor:
        """(3, *shape) float64 [count, mean, M2], to send between processes (see the class docstring)."""
        return torch.stack([self.count.expand_as(self.mean), self.mean, self._m2])

    @classmethod
    def from_tensor(cls, tensor: Tensor, dims: int | Sequence[int] | None = None) -> RunningMoments:
        """The moments `as_tensor` described; `dims` as the sender's, for further updates."""
        moments = cls(dims)
        count, mean, m2 = tensor.to(torch.float64)
        return moments._combine(count, mean, m2)

    def _combine(self, count: Tensor, mean: Tensor, m2: Tensor) -> RunningMoments:
        if self._count is None or self._mean is None or self._m2 is None:
            self._count, self._mean, self._m2 = count.clone(), mean.clone(), m2.clone()
            return self
        if mean.shape != self._mean.shape:
            raise ValueError(f"moments of shape {tuple(mean.shape)} cannot join moments of {tuple(self._mean.shape)}")
        count, mean, m2 = (t.to(self._mean.device) for t in (count, mean, m2))
        total = self._count + count
        delta = mean - self._mean
        self._mean = self._mean + delta * (count / total)
        self._m2 = self._m2 + m2 + delta.square() * (self._count * count / total)
        self._count = total
        return self


__all__ = ["RunningMoments"]
