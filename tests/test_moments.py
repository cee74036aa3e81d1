"""RunningMoments: streamed, merged and gathered moments equal those of the concatenated data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from decar.moments import RunningMoments


def _pieces(seed: int, offset: float = 0.0) -> list[np.ndarray]:
    """Variable-length (frames, 6) pieces with per-column scales, one of them empty."""
    rng = np.random.default_rng(seed)
    scales = np.arange(1.0, 7.0)
    return [offset + scales * rng.standard_normal((n, 6)) for n in (37, 0, 120, 5, 1)]


@pytest.mark.parametrize(("dims", "axis"), [(None, None), (0, 0), ((0,), 0), ((-2, -1), None)])
def test_streamed_moments_are_those_of_the_concatenation(dims: int | tuple[int, ...] | None, axis: int | None) -> None:
    pieces = _pieces(0, offset=1e4)  # a mean far above the spread: raw sums of squares would lose ~8 digits
    moments = RunningMoments(dims)
    for piece in pieces:
        moments.update(piece)
    everything = np.concatenate(pieces)
    np.testing.assert_allclose(moments.mean.numpy(), everything.mean(axis=axis), rtol=1e-13)
    np.testing.assert_allclose(moments.std().numpy(), everything.std(axis=axis), rtol=1e-10)
    assert moments.mean.dtype == torch.float64 and moments.mean.shape == np.shape(everything.mean(axis=axis))
    np.testing.assert_array_equal(
        moments.count.numpy(), np.full(moments.mean.shape, everything.size / (6 if axis == 0 else 1))
    )


def test_float32_tensors_are_accumulated_in_float64() -> None:
    values = torch.full((1_000_000,), 0.1, dtype=torch.float32) + torch.arange(1_000_000) % 7
    moments = RunningMoments().update(values)
    exact = values.double().numpy()
    assert float(moments.mean) == pytest.approx(exact.mean(), rel=1e-14)
    assert float(moments.std()) == pytest.approx(exact.std(), rel=1e-12)


def test_merge_equals_updating_with_the_other_pieces() -> None:
    pieces = _pieces(1)
    whole = RunningMoments(0)
    for piece in pieces:
        whole.update(piece)
    first, second = RunningMoments(0), RunningMoments(0)
    for piece in pieces[:2]:
        first.update(piece)
    for piece in pieces[2:]:
        second.update(piece)
    merged = first.merge(second).merge(RunningMoments(0))  # merging nothing changes nothing
    torch.testing.assert_close(merged.mean, whole.mean, rtol=1e-14, atol=0)
    torch.testing.assert_close(merged.std(), whole.std(), rtol=1e-13, atol=0)
    torch.testing.assert_close(RunningMoments(0).merge(whole).mean, whole.mean, rtol=0, atol=0)


def test_gathered_tensors_from_several_processes_merge_to_the_whole() -> None:
    """What a caller does across ranks: gather every rank's `as_tensor()`, rebuild each and merge."""
    pieces = _pieces(2)
    ranks = [RunningMoments(0) for _ in range(3)]
    for index, piece in enumerate(pieces):
        ranks[index % 3].update(piece)
    gathered = torch.stack([rank.as_tensor() for rank in ranks])
    assert gathered.shape == (3, 3, 6) and gathered.dtype == torch.float64
    total = RunningMoments(0)
    for row in gathered:
        total.merge(RunningMoments.from_tensor(row, dims=0))
    everything = np.concatenate(pieces)
    np.testing.assert_allclose(total.mean.numpy(), everything.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(total.std().numpy(), everything.std(axis=0), rtol=1e-12)


def test_std_floor_and_empty_moments() -> None:
    constant = RunningMoments().update(torch.full((4, 5), 3.0))
    assert float(constant.std()) == 0.0
    assert float(constant.std(floor=1e-6)) == 1e-6
    empty = RunningMoments().update(np.zeros((0, 3)))
    assert float(empty.count) == 0.0
    with pytest.raises(ValueError, match="no values"):
        _ = empty.mean
    with pytest.raises(ValueError, match="no values"):
        empty.std()


def test_pieces_must_keep_the_same_shape() -> None:
    moments = RunningMoments(0).update(np.zeros((4, 6)))
    with pytest.raises(ValueError, match="shape"):
        moments.update(np.zeros((4, 5)))
