"""Tests of decar.cluster: k-means against planted truth and scikit-learn, PCA whitening, the sampler."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from threadpoolctl import threadpool_limits

from decar.cluster import (
    balanced_cluster_indices,
    cluster_size_stats,
    kmeans,
    nmi,
    pca_whiten,
    spherical_kmeans,
)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Run these small problems on one thread: on a busy machine, thread barriers dominate their runtime."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(previous)


def gaussian_mixture(
    num_points: int, num_centres: int, dim: int, centre_scale: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, D) points around N(0, centre_scale²) centres with unit noise, and their (N,) true centre ids."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_centres, dim, generator=generator) * centre_scale
    truth = torch.randint(num_centres, (num_points,), generator=generator)
    return centres[truth] + torch.randn(num_points, dim, generator=generator), truth


def brute_force_nearest(x: torch.Tensor, centroids: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Nearest centroid by explicit float64 distances, and the resulting inertia."""
    sq_dists = torch.cdist(x.double(), centroids.double()).square()
    best, labels = sq_dists.min(dim=1)
    return labels, float(best.sum())


def assert_nearest(scores: torch.Tensor, assignments: torch.Tensor, largest: bool = False) -> None:
    """Each row is assigned to a best-scoring centroid: the smallest distance (or `largest` similarity).

    Computed by another path than decar's (float64, unchunked), the scores may rank near-ties the other way
    round: a choice within float32 rounding (1e-5 relative) of the best counts as right.
    """
    scores = scores.double()
    chosen = scores.gather(1, assignments[:, None]).squeeze(1)
    best = scores.max(dim=1).values if largest else scores.min(dim=1).values
    gap = (best - chosen) if largest else (chosen - best)
    assert bool((gap <= 1e-5 * (1.0 + best.abs())).all()), f"{int((gap > 0).sum())} rows off their best centroid"


# --- kmeans ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_kmeans_reports_every_round_for_a_progress_bar(backend: str) -> None:
    if backend == "faiss":
        pytest.importorskip("faiss")
    x, _truth = gaussian_mixture(500, 4, 8, centre_scale=5.0, seed=0)
    rounds: list[int] = []
    kmeans(x, 4, num_iters=30, seed=0, backend=backend, on_round=rounds.append)
    assert sum(rounds) == 30  # a fixed point before round 30 reports the rounds it skips
    rounds.clear()
    spherical_kmeans(x, 4, num_iters=7, seed=0, on_round=rounds.append)
    assert rounds == [1] * 7


def test_kmeans_recovers_planted_clusters() -> None:
    """Every one of 20 k-means++ starts recovers the planted blobs.

    Random rows often put two centroids in one blob and none in another here, and plain (non-greedy)
    k-means++ fails for some of these seeds.
    """
    x, truth = gaussian_mixture(2000, 10, 16, centre_scale=5.0, seed=0)
    results = [kmeans(x, 10, seed=seed, init="k-means++") for seed in range(20)]
    assert results[0].centroids.shape == (10, 16) and results[0].centroids.dtype == torch.float32
    assert results[0].assignments.shape == (2000,) and results[0].assignments.dtype == torch.int64
    assert all(result.num_empty == 0 for result in results)
    assert min(nmi(result.assignments, truth) for result in results) >= 0.95


def test_lloyd_matches_sklearn_started_from_the_same_centroids() -> None:
    x, _ = gaussian_mixture(3000, 32, 8, centre_scale=1.0, seed=1)
    initial = kmeans(x, 32, num_iters=0, seed=3).centroids
    ours = kmeans(x, 32, num_iters=30, seed=3)
    reference = KMeans(32, init=initial.double().numpy(), n_init=1, max_iter=30, tol=0.0, algorithm="lloyd")
    reference.fit(x.double().numpy())
    assert ours.inertia == pytest.approx(reference.inertia_, rel=1e-4)
    assert nmi(ours.assignments, reference.labels_) > 0.99


def test_inertia_lands_within_one_percent_of_sklearn() -> None:
    """Equal effort on both sides: best of 3 random-init runs against sklearn's best of 3 k-means++ runs."""
    x, _ = gaussian_mixture(4000, 32, 16, centre_scale=0.5, seed=2)
    ours = min(kmeans(x, 32, num_iters=20, seed=seed).inertia for seed in range(3))
    reference = KMeans(32, n_init=3, max_iter=20, algorithm="lloyd", random_state=0)
    reference.fit(x.double().numpy())
    assert ours <= 1.01 * reference.inertia_


@pytest.mark.parametrize("spherical", [False, True])
def test_assignments_and_inertia_are_consistent_with_returned_centroids(spherical: bool) -> None:
    x, _ = gaussian_mixture(500, 6, 5, centre_scale=3.0, seed=3)
    result = kmeans(x, 6, spherical=spherical, batch_size=37)
    data = torch.nn.functional.normalize(x, dim=1) if spherical else x
    _, inertia = brute_force_nearest(data, result.centroids)
    assert_nearest(torch.cdist(data.double(), result.centroids.double()), result.assignments)
    assert result.inertia == pytest.approx(inertia, rel=1e-5)


def test_chunk_size_does_not_change_the_result() -> None:
    x, _ = gaussian_mixture(700, 8, 4, centre_scale=2.0, seed=4)
    whole = kmeans(x, 8, seed=1)
    chunked = kmeans(x, 8, seed=1, batch_size=64)
    # Other chunk shapes may round distances differently; a near-tie could go the other way, nothing more.
    assert int((whole.assignments != chunked.assignments).sum()) <= 2
    assert torch.allclose(whole.centroids, chunked.centroids, atol=1e-5)


@pytest.mark.parametrize("init", ["random", "k-means++"])
def test_kmeans_is_deterministic_given_the_seed(init: str) -> None:
    x, _ = gaussian_mixture(800, 12, 6, centre_scale=1.0, seed=5)
    first = kmeans(x, 12, seed=7, init=init)
    again = kmeans(x, 12, seed=7, init=init)
    assert torch.equal(first.centroids, again.centroids)
    assert torch.equal(first.assignments, again.assignments)
    assert first.inertia == again.inertia
    start = kmeans(x, 12, num_iters=0, seed=7, init=init).centroids
    other_start = kmeans(x, 12, num_iters=0, seed=8, init=init).centroids
    assert not torch.equal(start, other_start)


def test_initial_centroids_are_distinct_data_rows() -> None:
    x, _ = gaussian_mixture(300, 4, 3, centre_scale=1.0, seed=6)
    start = kmeans(x, 50, num_iters=0, seed=0).centroids
    matches = (start[:, None, :] == x[None, :, :]).all(dim=2)
    assert bool(matches.any(dim=1).all())
    assert torch.unique(start, dim=0).shape[0] == 50


@pytest.mark.parametrize("spherical", [False, True])
def test_empty_clusters_are_reseeded(spherical: bool) -> None:
    distinct = torch.randn(12, 4, generator=torch.Generator().manual_seed(0)) * 5.0
    truth = torch.arange(12).repeat_interleave(10)
    x = distinct[truth]
    seed = next(s for s in range(100) if kmeans(x, 12, num_iters=0, seed=s).num_empty > 0)
    result = kmeans(x, 12, seed=seed, spherical=spherical)
    assert result.num_empty == 0
    assert bool(torch.isfinite(result.centroids).all())
    assert nmi(result.assignments, truth) == pytest.approx(1.0)
    assert result.inertia == pytest.approx(0.0, abs=1e-6)


def test_more_clusters_than_distinct_points_reports_the_empty_ones() -> None:
    distinct = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    x = distinct.repeat(10, 1)
    result = kmeans(x, 8, seed=0)
    assert result.num_empty == 8 - 5
    assert cluster_size_stats(result.assignments, 8)["empty"] == result.num_empty
    assert bool(torch.isfinite(result.centroids).all())
    assert result.inertia == pytest.approx(0.0, abs=1e-6)


def test_spherical_centroids_have_unit_norm() -> None:
    x, _ = gaussian_mixture(600, 8, 10, centre_scale=2.0, seed=7)
    result = kmeans(x * 3.0 + 1.0, 8, spherical=True)
    assert torch.allclose(result.centroids.norm(dim=1), torch.ones(8), atol=1e-5)
    cosine = torch.nn.functional.normalize((x * 3.0 + 1.0).double(), dim=1) @ result.centroids.double().T
    assert_nearest(cosine, result.assignments, largest=True)


def test_faiss_backend_lands_close_to_torch() -> None:
    pytest.importorskip("faiss")
    x, _ = gaussian_mixture(3000, 16, 8, centre_scale=1.0, seed=8)
    with_torch = kmeans(x, 16, seed=0, backend="torch")
    with_faiss = kmeans(x, 16, seed=0, backend="faiss")
    assert with_faiss.inertia == pytest.approx(with_torch.inertia, rel=0.01)
    assert with_faiss.num_empty == 0
    _, inertia = brute_force_nearest(x, with_faiss.centroids)
    assert_nearest(torch.cdist(x.double(), with_faiss.centroids.double()), with_faiss.assignments)
    assert with_faiss.inertia == pytest.approx(inertia, rel=1e-5)
    with_auto = kmeans(x, 16, seed=0, backend="auto")
    assert torch.equal(with_auto.centroids, with_faiss.centroids)  # the same faiss call: bit-identical


def test_missing_faiss_raises_an_actionable_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)
    x, _ = gaussian_mixture(100, 3, 2, centre_scale=1.0, seed=9)
    with pytest.raises(ImportError, match=r"pip install decar\[faiss\]"):
        kmeans(x, 3, backend="faiss")
    # "auto" without faiss is the same torch computation: bit-identical.
    assert torch.equal(kmeans(x, 3, backend="auto").centroids, kmeans(x, 3, backend="torch").centroids)


@pytest.mark.parametrize(
    ("x", "kwargs", "message"),
    [
        (torch.zeros(10), {"num_clusters": 2}, "shape"),
        (torch.zeros(10, 2, dtype=torch.int64), {"num_clusters": 2}, "floating"),
        (torch.zeros(0, 2), {"num_clusters": 1}, "at least one row"),
        (torch.randn(10, 2), {"num_clusters": 11}, "num_clusters"),
        (torch.randn(10, 2), {"num_clusters": 0}, "num_clusters"),
        (torch.tensor([[0.0, 1.0], [float("nan"), 0.0]]), {"num_clusters": 1}, "NaN"),
        (torch.tensor([[0.0, 1.0], [float("inf"), 0.0]]), {"num_clusters": 1}, "infinite"),
        (torch.randn(10, 2), {"num_clusters": 2, "num_iters": -1}, "num_iters"),
        (torch.randn(10, 2), {"num_clusters": 2, "batch_size": 0}, "batch_size"),
        (torch.randn(10, 2), {"num_clusters": 2, "backend": "cuml"}, "backend"),
        (torch.randn(10, 2), {"num_clusters": 2, "init": "forgy"}, "init"),
    ],
)
def test_kmeans_rejects_bad_input(x: torch.Tensor, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        kmeans(x, **kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_give_the_cpu_results_on_the_device() -> None:
    x, _ = gaussian_mixture(1500, 12, 8, centre_scale=2.0, seed=10)
    on_cpu = kmeans(x, 12, seed=0, init="k-means++")
    on_gpu = kmeans(x.cuda(), 12, seed=0, init="k-means++")
    assert on_gpu.centroids.is_cuda and on_gpu.assignments.is_cuda
    assert nmi(on_gpu.assignments, on_cpu.assignments) > 0.99
    assert on_gpu.inertia == pytest.approx(on_cpu.inertia, rel=1e-3)
    whitened = pca_whiten(x.cuda(), out_dim=4)
    assert whitened.is_cuda
    assert torch.allclose(whitened.cpu(), pca_whiten(x, out_dim=4), atol=1e-4)
    indices = balanced_cluster_indices(on_gpu.assignments, generator=torch.Generator().manual_seed(0))
    assert indices.is_cuda and indices.shape == (1500,)


# --- pca_whiten -----------------------------------------------------------------------------------------


def correlated_features(num_points: int, dim: int, seed: int) -> torch.Tensor:
    """(N, D) features with very unequal variances along random directions, off-centre."""
    generator = torch.Generator().manual_seed(seed)
    scales = torch.logspace(1, -1, dim)
    mixing = torch.linalg.qr(torch.randn(dim, dim, generator=generator)).Q
    return (torch.randn(num_points, dim, generator=generator) * scales) @ mixing + 3.0


def test_pca_whiten_returns_unit_rows_of_out_dim() -> None:
    out = pca_whiten(correlated_features(400, 32, seed=0), out_dim=16)
    assert out.shape == (400, 16) and out.dtype == torch.float32
    assert torch.allclose(out.norm(dim=1), torch.ones(400), atol=1e-5)


def test_pca_whiten_makes_the_covariance_identity() -> None:
    out = pca_whiten(correlated_features(1000, 24, seed=1), out_dim=12, l2_normalize=False).double()
    assert torch.allclose(out.mean(dim=0), torch.zeros(12, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(torch.cov(out.T), torch.eye(12, dtype=torch.float64), atol=1e-3)


def test_pca_whiten_matches_sklearn_up_to_axis_sign() -> None:
    x = correlated_features(500, 10, seed=2)
    ours = pca_whiten(x, out_dim=6, eps=0.0, l2_normalize=False)
    reference = PCA(n_components=6, whiten=True).fit_transform(x.double().numpy())
    assert np.allclose(np.abs(ours.numpy()), np.abs(reference), atol=1e-4)


def test_pca_whiten_power_zero_keeps_axes_in_decreasing_variance() -> None:
    out = pca_whiten(correlated_features(800, 16, seed=3), out_dim=8, power=0.0, l2_normalize=False)
    variances = out.var(dim=0)
    assert bool((variances[:-1] >= variances[1:]).all())


def test_pca_whiten_axis_signs_do_not_depend_on_row_order() -> None:
    x = correlated_features(300, 12, seed=4)
    order = torch.randperm(300, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(pca_whiten(x[order], out_dim=8), pca_whiten(x, out_dim=8)[order], atol=1e-5)


def test_pca_whiten_axes_have_a_positive_largest_loading() -> None:
    x = correlated_features(200, 6, seed=5)
    out = pca_whiten(x, out_dim=6, eps=0.0, power=0.0, l2_normalize=False).double()
    centred = x.double() - x.double().mean(dim=0)
    axes = torch.linalg.lstsq(centred, out).solution
    largest = axes.abs().argmax(dim=0)
    assert bool((axes[largest, torch.arange(6)] > 0).all())


@pytest.mark.parametrize(("num_points", "dim", "out_dim", "expected"), [(50, 8, 128, 8), (5, 8, 128, 4)])
def test_pca_whiten_clamps_out_dim(num_points: int, dim: int, out_dim: int, expected: int) -> None:
    out = pca_whiten(torch.randn(num_points, dim), out_dim=out_dim)
    assert out.shape == (num_points, expected)


@pytest.mark.parametrize(
    ("x", "kwargs"),
    [
        (torch.randn(10), {}),
        (torch.randn(1, 4), {}),
        (torch.randn(10, 4), {"out_dim": 0}),
        (torch.randn(10, 4), {"eps": -1.0}),
        (torch.full((10, 4), float("nan")), {}),
    ],
)
def test_pca_whiten_rejects_bad_input(x: torch.Tensor, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        pca_whiten(x, **kwargs)


# --- nmi and cluster sizes -----------------------------------------------------------------------------


def test_nmi_is_one_for_a_relabelled_partition_and_accepts_tensors_and_arrays() -> None:
    labels = torch.randint(5, (200,), generator=torch.Generator().manual_seed(0))
    renamed = (labels + 3) % 5
    assert nmi(labels, renamed) == pytest.approx(1.0)
    assert nmi(labels.numpy(), renamed.tolist()) == pytest.approx(1.0)


def test_nmi_is_near_zero_for_independent_labelings() -> None:
    generator = torch.Generator().manual_seed(1)
    assert nmi(torch.randint(4, (5000,), generator=generator), torch.randint(4, (5000,), generator=generator)) < 0.01


def test_nmi_rejects_labelings_of_different_lengths() -> None:
    with pytest.raises(ValueError, match="equal length"):
        nmi([0, 1, 1], [0, 1])


def test_cluster_size_stats_counts_every_cluster() -> None:
    assignments = torch.tensor([0, 0, 0, 1, 3, 0, 1])
    sizes = torch.bincount(assignments, minlength=6)
    stats = cluster_size_stats(assignments, 6)
    assert stats == {
        "min": 0,
        "median": float(np.median(sizes.numpy())),
        "max": int(sizes.max()),
        "empty": 6 - len(set(assignments.tolist())),
    }


@pytest.mark.parametrize(
    ("assignments", "num_clusters"),
    [
        (torch.tensor([0, 3]), 3),
        (torch.tensor([0, -1]), 3),
        (torch.tensor([0.0, 1.0]), 3),
        (torch.tensor([]), 3),
    ],
)
def test_cluster_size_stats_rejects_bad_ids(assignments: torch.Tensor, num_clusters: int) -> None:
    with pytest.raises(ValueError):
        cluster_size_stats(assignments, num_clusters)


# --- balanced sampler ------------------------------------------------------------------------------------


def skewed_assignments() -> torch.Tensor:
    """600 items over clusters of sizes 500, 50, 5, 0 (id 3 is empty) and 45, in shuffled order."""
    sizes = torch.tensor([500, 50, 5, 0, 45])
    labels = torch.arange(5).repeat_interleave(sizes)
    return labels[torch.randperm(labels.numel(), generator=torch.Generator().manual_seed(0))]


def test_balanced_indices_give_each_non_empty_cluster_an_equal_share() -> None:
    assignments = skewed_assignments()
    indices = balanced_cluster_indices(assignments, generator=torch.Generator().manual_seed(0))
    assert indices.shape == (600,) and indices.dtype == torch.int64
    per_cluster = 600 // 4 + 1
    pooled = 4 * per_cluster
    counts = torch.bincount(assignments[indices], minlength=5)
    assert counts[3] == 0
    for cluster in (0, 1, 2, 4):
        assert per_cluster - (pooled - 600) <= counts[cluster] <= per_cluster


def test_balanced_indices_draw_large_clusters_without_replacement() -> None:
    assignments = skewed_assignments()
    indices = balanced_cluster_indices(assignments, generator=torch.Generator().manual_seed(1))
    from_largest = indices[assignments[indices] == 0]
    assert torch.unique(from_largest).numel() == from_largest.numel()
    from_smallest = indices[assignments[indices] == 2]
    assert set(from_smallest.tolist()) <= set(torch.nonzero(assignments == 2).squeeze(1).tolist())


@pytest.mark.parametrize("num_samples", [1, 250, 2000])
def test_balanced_indices_have_the_requested_length(num_samples: int) -> None:
    indices = balanced_cluster_indices(skewed_assignments(), num_samples, torch.Generator().manual_seed(2))
    assert indices.shape == (num_samples,)


def test_balanced_indices_are_deterministic_given_the_generator() -> None:
    assignments = skewed_assignments()
    first = balanced_cluster_indices(assignments, generator=torch.Generator().manual_seed(3))
    again = balanced_cluster_indices(assignments, generator=torch.Generator().manual_seed(3))
    other = balanced_cluster_indices(assignments, generator=torch.Generator().manual_seed(4))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_balanced_indices_reject_bad_input() -> None:
    with pytest.raises(ValueError):
        balanced_cluster_indices(torch.tensor([0, -1, 2]))
    with pytest.raises(ValueError):
        balanced_cluster_indices(torch.tensor([0, 1, 2]), num_samples=-1)
