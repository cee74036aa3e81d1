"""DeepCluster-v2 (DECAR's later variant, REFERENCE §1b-1c): prototypes set to k-means centroids of a memory bank.

Before epoch 0 one no-grad pass fills a memory bank with every sample's projection (of an augmented view, as
training steps will write); afterwards each training batch overwrites its own rows, so the clustering at the
start of every later epoch costs no extra pass. Each head runs spherical k-means on the bank, its prototypes
become the centroids (no gradient), and the loss is the mean over heads of cross-entropy between the batch's
prototype scores / temperature and its cluster ids. Reading shards, each rank keeps the bank rows and labels of
its own samples only, and k-means exchanges only (K, D) sums and (K,) counts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.distributed as torch_dist
import torch.nn.functional as F
from torch import Tensor, nn

from decar import dist
from decar.cluster import KMeansResult, sharded_kmeans, spherical_kmeans, spherical_kmeans_plus_plus
from decar.data import step_seed
from decar.objectives.base import EpochContext, Objective, register_objective
from decar.objectives.projection import MemoryBank, ProjectedEncoder, ProjectionHead


@dataclass
class DCv2Config:
    """DeepCluster-v2 settings; the defaults are the paper's (one head, K = 1024, temperature 0.1).

    Attributes:
        hidden_dim: projection MLP width.
        projection_dim: size of the L2-normalised projection that is clustered.
        num_prototypes: K of each head (swav's default is three heads of 3000).
        temperature: softmax temperature of the prototype scores.
        kmeans_iters: spherical k-means rounds per head and epoch.
        kmeans_init: "random" rows (DeepCluster-v2) or "k-means++" (costs about K / 3 more rounds; on
            well-separated data it merges fewer true clusters).
        bn_recalibration_batches: batches that re-estimate BatchNorm statistics before the pass that fills the
            memory bank (at random init eval-mode features vanish).
    """

    hidden_dim: int = 2048
    projection_dim: int = 128
    num_prototypes: list[int] = field(default_factory=lambda: [1024])
    temperature: float = 0.1
    kmeans_iters: int = 10
    kmeans_init: str = "random"
    bn_recalibration_batches: int = 20

    def validate(self) -> list[str]:
        checks = [
            (bool(self.num_prototypes), "objective.num_prototypes needs at least one head"),
            (all(k >= 2 for k in self.num_prototypes), "objective.num_prototypes: every K must be >= 2"),
            (self.temperature > 0, "objective.temperature must be > 0"),
            (self.kmeans_iters >= 1, "objective.kmeans_iters must be >= 1"),
            (self.kmeans_init in ("random", "k-means++"), "objective.kmeans_init: random|k-means++"),
        ]
        return [message for ok, message in checks if not ok]


@register_objective("dcv2", DCv2Config)
class DeepClusterV2(Objective):
    """See the module docstring."""

    def __init__(self, config: DCv2Config, encoder: nn.Module, num_samples: int) -> None:
        head = ProjectionHead(encoder.embed_dim, config.hidden_dim, config.projection_dim)
        super().__init__(ProjectedEncoder(encoder, head), num_samples)
        self.config = config
        self.bank = MemoryBank(num_samples, config.projection_dim)
        for h, k in enumerate(config.num_prototypes):
            self.register_buffer(f"prototypes{h}", torch.zeros(k, config.projection_dim))
            self.register_buffer(f"labels{h}", torch.full((num_samples,), -1, dtype=torch.long))
        self.seconds_bank = 0.0

    def _head(self, h: int) -> tuple[Tensor, Tensor]:
        return getattr(self, f"prototypes{h}"), getattr(self, f"labels{h}")

    def start_epoch(self, ctx: EpochContext) -> dict[str, float]:
        if not bool(self.bank.filled.any()):
            indices, features = ctx.feature_pass(self.network, self.config.bn_recalibration_batches, True)
            rows, kept = self.share.rows(indices.to(self.bank.filled.device))
            self.bank.features[rows[kept]] = features.to(self.bank.features)[kept]
            self.bank.filled[rows[kept]] = True
        filled = torch.nonzero(self.bank.filled).flatten()
        group = torch_dist.group.WORLD if ctx.info.is_distributed else None
        inertia = 0.0
        for h, k in enumerate(self.config.num_prototypes):
            prototypes, labels = self._head(h)
            seed = step_seed(ctx.seed, ctx.epoch, 7, h) % (2**31)
            with ctx.track(f"epoch {ctx.epoch}: k-means, head {h}, K = {k}", self.config.kmeans_iters) as advance:
                result = self._kmeans(self.bank.features[filled], k, seed, group, advance)
            prototypes.copy_(result.centroids.to(prototypes))
            labels.fill_(-1)
            labels[filled] = result.assignments.to(labels)
            inertia += result.inertia
        self.seconds_bank = 0.0
        return {"kmeans_inertia": inertia}

    def _kmeans(
        self, rows: Tensor, k: int, seed: int, group: torch_dist.ProcessGroup | None, advance: Callable[[int], None]
    ) -> KMeansResult:
        """Spherical k-means of the filled bank rows: split across ranks from the whole bank every rank holds
        (files), or on each rank's own rows with only (K, D) sums crossing ranks (shards)."""
        iters, init = self.config.kmeans_iters, self.config.kmeans_init
        if not self.share.sharded:
            return spherical_kmeans(rows, k, iters, seed=seed, group=group, init=init, on_round=advance)
        # The seeded draw of initial rows and the re-seeding of empty clusters address rows by global ids.
        ids, counts = dist.consecutive_ids(len(rows), self.info)
        total = int(counts.sum())
        initial = None
        if init == "k-means++" and int(counts[0]) >= k:  # k-means++ is sequential: rank 0 seeds from its rows
            initial = torch.zeros(k, rows.shape[1], device=self.info.device)
            if self.info.is_main:
                initial = spherical_kmeans_plus_plus(rows, k, seed).to(initial)
            initial = dist.broadcast(initial, self.info).to(rows.device)
        return sharded_kmeans(rows, ids.to(rows.device), total, k, iters, seed, group, advance, initial)

    def forward(self, network: nn.Module, x: Tensor, indices: Tensor) -> dict[str, Tensor]:
        projections = network(x).float()
        losses = []
        for h in range(len(self.config.num_prototypes)):
            prototypes, labels = self._head(h)
            scores = projections @ prototypes.T / self.config.temperature
            rows, _kept = self.share.rows(indices.to(labels.device))  # a rank's batches hold only samples it keeps
            losses.append(F.cross_entropy(scores, labels[rows], ignore_index=-1))
        start = time.perf_counter()
        self.bank.write(indices, projections, self.info, self.share)
        self.seconds_bank += time.perf_counter() - start
        return {"loss": torch.stack(losses).mean()}

    def assignments(self) -> Tensor:
        return self._head(0)[1]

    def num_clusters(self) -> int:
        return self.config.num_prototypes[0]

    def health(self) -> dict[str, float | int | None]:
        return {"seconds_cluster_in_steps": self.seconds_bank}
