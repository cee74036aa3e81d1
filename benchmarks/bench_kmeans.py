"""Time k-means on one Gaussian-mixture data set with decar (torch backend), faiss-cpu and scikit-learn.

Every method sees the same float32 data and the same thread budget; every inertia is recomputed here from
the returned centroids (nearest centroid, float64 sum), so the numbers are comparable. The reference is
scikit-learn as usually run (greedy k-means++ init, ``n_init=1``). The initialisation matters as much as
the implementation on clustered data, so decar and scikit-learn each run with both random-row and
k-means++ starts; faiss runs with its defaults (random rows).

Example:
    python benchmarks/bench_kmeans.py --n 100000 --dim 128 --k 1024 --iters 20 --json runs/kmeans.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import sklearn
import torch
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

from decar.cluster import kmeans


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; the defaults are the issue's size (100k x 128 into 1024 clusters)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="number of points")
    parser.add_argument("--dim", type=int, default=128, help="feature dimension")
    parser.add_argument("--k", type=int, default=1024, help="number of clusters")
    parser.add_argument("--iters", type=int, default=20, help="Lloyd iterations for every method")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="threads per method")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and of every method")
    parser.add_argument("--noise", type=float, default=1.0, help="noise std around the k unit-variance centres")
    parser.add_argument("--batch-size", type=int, default=8192, help="rows per distance chunk in decar")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of: {', '.join(METHODS)}")
    parser.add_argument("--json", type=Path, default=None, help="write the results to this JSON file")
    return parser.parse_args(argv)


def gaussian_mixture(num_points: int, dim: int, num_centres: int, noise: float, seed: int) -> torch.Tensor:
    """(N, D) float32 points: N(0, I) centres plus isotropic noise, so the clusters overlap somewhat."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_centres, dim, generator=generator)
    members = torch.randint(num_centres, (num_points,), generator=generator)
    return centres[members] + noise * torch.randn(num_points, dim, generator=generator)


def inertia_and_empty(x: torch.Tensor, centroids: torch.Tensor, chunk: int = 8192) -> tuple[float, int]:
    """Sum of squared distances of each row to its nearest centroid, and the number of unused centroids."""
    sq_norms_c = centroids.square().sum(dim=1)
    total, used = 0.0, torch.zeros(centroids.shape[0], dtype=torch.bool)
    for rows in x.split(chunk):
        partial = torch.addmm(sq_norms_c, rows, centroids.T, alpha=-2.0)
        best, labels = partial.min(dim=1)
        total += float((best.double() + rows.double().square().sum(dim=1)).clamp_min(0.0).sum())
        used[labels] = True
    return total, int((~used).sum())


def run_decar(x: torch.Tensor, args: argparse.Namespace, init: str) -> torch.Tensor:
    """Centroids from decar's torch backend."""
    result = kmeans(
        x, args.k, num_iters=args.iters, seed=args.seed, backend="torch", batch_size=args.batch_size, init=init
    )
    return result.centroids


def run_faiss(x: torch.Tensor, args: argparse.Namespace) -> torch.Tensor:
    """Centroids from faiss.Kmeans with its defaults (random init, no subsampling below 256 points per centroid)."""
    import faiss

    model = faiss.Kmeans(x.shape[1], args.k, niter=args.iters, seed=args.seed, verbose=False)
    model.train(x.numpy())
    return torch.from_numpy(model.centroids)


def run_sklearn(x: torch.Tensor, args: argparse.Namespace, init: str) -> torch.Tensor:
    """Centroids from scikit-learn's Lloyd k-means (one run; tol 0, so it stops only at a fixed point)."""
    model = KMeans(args.k, init=init, n_init=1, max_iter=args.iters, tol=0.0, algorithm="lloyd", random_state=args.seed)
    model.fit(x.numpy())
    return torch.from_numpy(model.cluster_centers_).float()


METHODS: dict[str, Callable[[torch.Tensor, argparse.Namespace], torch.Tensor]] = {
    "decar-random": partial(run_decar, init="random"),
    "decar-kmeans++": partial(run_decar, init="k-means++"),
    "faiss": run_faiss,
    "sklearn-random": partial(run_sklearn, init="random"),
    "sklearn-kmeans++": partial(run_sklearn, init="k-means++"),
}


def machine_info(threads: int) -> dict[str, object]:
    """CPU model, core count, thread budget and library versions, for reading the timings later."""
    cpuinfo = Path("/proc/cpuinfo")
    models = [
        line.split(":", 1)[1].strip()
        for line in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else [])
        if line.startswith("model name")
    ]
    info: dict[str, object] = {
        "cpu_model": models[0] if models else platform.processor(),
        "logical_cpus": len(models) or None,
        "threads": threads,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "sklearn": sklearn.__version__,
    }
    try:
        import faiss

        info["faiss"] = faiss.__version__
    except ImportError:
        info["faiss"] = None
    return info


def set_threads(threads: int) -> None:
    """Give torch and faiss the same thread budget (scikit-learn gets it through threadpool_limits)."""
    torch.set_num_threads(threads)
    try:
        import faiss

        faiss.omp_set_num_threads(threads)
    except ImportError:
        pass


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Run the three methods on the same data, print a table and optionally write JSON."""
    args = parse_args(argv)
    set_threads(args.threads)
    x = gaussian_mixture(args.n, args.dim, args.k, args.noise, args.seed)
    results = []
    for name in args.methods.split(","):
        if name not in METHODS:
            raise SystemExit(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
        run = METHODS[name]
        try:
            with threadpool_limits(limits=args.threads):
                start = time.perf_counter()
                centroids = run(x, args)
                seconds = time.perf_counter() - start
        except ImportError as error:
            print(f"{name}: skipped ({error})")
            continue
        inertia, num_empty = inertia_and_empty(x, centroids)
        results.append({"method": name, "seconds": seconds, "inertia": inertia, "num_empty": num_empty})
        print(f"{name}: {seconds:.2f} s", flush=True)
    reference = next((r["inertia"] for r in results if r["method"] == "sklearn-kmeans++"), None)
    for result in results:
        result["inertia_vs_sklearn_kmeanspp"] = result["inertia"] / reference if reference else None
    report = {"config": vars(args) | {"json": str(args.json)}, "machine": machine_info(args.threads)}
    report["results"] = results
    print_table(report)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


def print_table(report: dict[str, object]) -> None:
    """Human-readable summary: one row per method."""
    config, machine = report["config"], report["machine"]
    print(
        f"\nk-means {config['n']} x {config['dim']} -> {config['k']} clusters, {config['iters']} iterations, "
        f"{machine['threads']} threads, {machine['cpu_model']}, torch {machine['torch']}"
    )
    print(f"{'method':<20}{'seconds':>10}{'inertia':>16}{'vs sklearn++':>14}{'empty':>8}")
    for result in report["results"]:
        ratio = result["inertia_vs_sklearn_kmeanspp"]
        ratio_text = f"{ratio:.4f}" if ratio is not None else "-"
        print(
            f"{result['method']:<20}{result['seconds']:>10.2f}{result['inertia']:>16.1f}"
            f"{ratio_text:>14}{result['num_empty']:>8}"
        )


if __name__ == "__main__":
    main()
