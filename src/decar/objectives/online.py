"""Online deep clustering, the paper's future work: pseudo-labels from centroids that move every step.

No per-epoch clustering and no extra pass. Centroids are a streaming memory on the unit sphere; each batch is
scored against them, Sinkhorn-Knopp turns the scores into soft assignments with equal cluster marginals over the
global batch (the guard against collapse: no cluster can take every sample, so a constant encoder cannot lower
the loss), the loss is the cross-entropy between those codes and the softmax of the scores / temperature, and
each centroid then moves towards the mean of the projections assigned to it (EMA), as in Online Deep
Clustering and DinoSR. The clustering work per step is timed and logged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist
import torch.nn.functional as F
from torch import Tensor, nn

from decar import dist
from decar.cluster import ema_centroids, sinkhorn
from decar.data import step_seed
from decar.objectives.base import EpochContext, Objective, register_objective
from decar.objectives.projection import ProjectedEncoder, ProjectionHead


@dataclass
class OnlineConfig:
    """Online clustering settings.

    Attributes:
        hidden_dim: projection MLP width.
        projection_dim: size of the L2-normalised projection.
        num_clusters: K centroids.
        temperature: softmax temperature of the centroid scores.
        sinkhorn_epsilon: entropic regularisation of the equipartitioned codes (sharper than the softmax).
        sinkhorn_iters: Sinkhorn-Knopp rounds per step.
        centroid_decay: EMA decay of a centroid each time it gets members.
    """

    hidden_dim: int = 2048
    projection_dim: int = 128
    num_clusters: int = 1024
    temperature: float = 0.1
    sinkhorn_epsilon: float = 0.05
    sinkhorn_iters: int = 3
    centroid_decay: float = 0.99

    def validate(self) -> list[str]:
        checks = [
            (self.num_clusters >= 2, "objective.num_clusters must be >= 2"),
            (self.temperature > 0, "objective.temperature must be > 0"),
            (self.sinkhorn_epsilon > 0, "objective.sinkhorn_epsilon must be > 0"),
            (self.sinkhorn_iters >= 1, "objective.sinkhorn_iters must be >= 1"),
            (0 <= self.centroid_decay < 1, "objective.centroid_decay must be in [0, 1)"),
        ]
        return [message for ok, message in checks if not ok]


@register_objective("online", OnlineConfig)
class OnlineClustering(Objective):
    """See the module docstring."""

    def __init__(self, config: OnlineConfig, encoder: nn.Module, num_samples: int) -> None:
        head = ProjectionHead(encoder.embed_dim, config.hidden_dim, config.projection_dim)
        super().__init__(ProjectedEncoder(encoder, head), num_samples)
        self.config = config
        self.register_buffer("centroids", torch.zeros(config.num_clusters, config.projection_dim))
        self.register_buffer("labels", torch.full((num_samples,), -1, dtype=torch.long))
        self.seconds_clustering = 0.0

    def start_epoch(self, ctx: EpochContext) -> dict[str, float]:
        if not bool(self.centroids.any()):
            generator = torch.Generator().manual_seed(step_seed(ctx.seed, 0, 8))
            random = torch.randn(self.centroids.shape, generator=generator)
            self.centroids.copy_(F.normalize(random, dim=1).to(self.centroids))
        self.seconds_clustering = 0.0
        return {}

    def forward(self, network: nn.Module, x: Tensor, indices: Tensor) -> dict[str, Tensor]:
        projections = network(x).float()
        scores = projections @ self.centroids.T
        start = time.perf_counter()
        group = torch_dist.group.WORLD if self.info.is_distributed else None
        codes = sinkhorn(scores, self.config.sinkhorn_epsilon, self.config.sinkhorn_iters, group)
        hard = codes.argmax(dim=1)
        self.seconds_clustering += time.perf_counter() - start
        loss = -(codes * F.log_softmax(scores / self.config.temperature, dim=1)).sum(dim=1).mean()
        start = time.perf_counter()
        centroids, _counts = ema_centroids(self.centroids, projections, hard, self.config.centroid_decay, group)
        self.centroids.copy_(centroids)
        gathered = dist.all_gather_rows(torch.stack([indices.to(hard.device), hard], dim=1), self.info)
        self.labels[gathered[:, 0].to(self.labels.device)] = gathered[:, 1].to(self.labels)
        self.seconds_clustering += time.perf_counter() - start
        return {"loss": loss}

    def assignments(self) -> Tensor:
        return self.labels

    def num_clusters(self) -> int:
        return self.config.num_clusters

    def health(self) -> dict[str, float | int | None]:
        return {"seconds_cluster_in_steps": self.seconds_clustering}
