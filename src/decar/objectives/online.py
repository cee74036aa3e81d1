"""Online deep clustering, the paper's future work: pseudo-labels from centroids that move every step.

No per-epoch clustering and no extra pass. Centroids are a streaming memory on the unit sphere. Each step, a
sample's target is the cluster it was given at its previous visit (another crop, other augmentations: the
invariance the encoder must learn), and a linear classifier on the projection learns to predict it with
cross-entropy, as in Online Deep Clustering (Zhan et al. 2020); cluster ids never permute, so the classifier is
never reset. Then the batch is re-assigned: Sinkhorn-
Knopp over the batch and a queue of recent projections turns the scores into assignments with equal cluster
marginals (the guard against collapse: no cluster can take every sample), each sample keeps its new cluster for
its next visit, and each centroid moves towards the mean of its new members (EMA), as in DinoSR. A sample's
first visit is its own target. The clustering work per step is timed and logged.
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
        sinkhorn_epsilon: entropic regularisation of the equipartitioned codes (sharper than the softmax).
        sinkhorn_iters: Sinkhorn-Knopp rounds per step.
        centroid_decay: EMA decay of a centroid each time it gets members.
        queue_size: recent projections (from every process) that join each batch in Sinkhorn-Knopp, so equal
            marginals are imposed over many more samples than clusters (SwAV's queue; 0: the batch alone). With
            a batch smaller than K, equipartition within the batch alone would split same-class samples.
    """

    hidden_dim: int = 2048
    projection_dim: int = 128
    num_clusters: int = 1024
    sinkhorn_epsilon: float = 0.05
    sinkhorn_iters: int = 3
    centroid_decay: float = 0.99
    queue_size: int = 4096

    def validate(self) -> list[str]:
        checks = [
            (self.num_clusters >= 2, "objective.num_clusters must be >= 2"),
            (self.sinkhorn_epsilon > 0, "objective.sinkhorn_epsilon must be > 0"),
            (self.sinkhorn_iters >= 1, "objective.sinkhorn_iters must be >= 1"),
            (0 <= self.centroid_decay < 1, "objective.centroid_decay must be in [0, 1)"),
            (self.queue_size >= 0, "objective.queue_size must be >= 0"),
        ]
        return [message for ok, message in checks if not ok]


class ClassifiedProjection(nn.Module):
    """Encoder → projection (clustered) → linear classifier over the K clusters (trained)."""

    def __init__(self, encoder: nn.Module, head: ProjectionHead, num_clusters: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.projection = ProjectedEncoder(encoder, head)
        self.classifier = nn.Linear(head.mlp[-1].out_features, num_clusters)

    def forward(self, logmel: Tensor) -> tuple[Tensor, Tensor]:
        projections = self.projection(logmel)
        return projections, self.classifier(projections)


@register_objective("online", OnlineConfig)
class OnlineClustering(Objective):
    """See the module docstring."""

    def __init__(self, config: OnlineConfig, encoder: nn.Module, num_samples: int) -> None:
        head = ProjectionHead(encoder.embed_dim, config.hidden_dim, config.projection_dim)
        super().__init__(ClassifiedProjection(encoder, head, config.num_clusters), num_samples)
        self.config = config
        self.register_buffer("centroids", torch.zeros(config.num_clusters, config.projection_dim))
        self.register_buffer("labels", torch.full((num_samples,), -1, dtype=torch.long))
        self.register_buffer("queue", torch.zeros(config.queue_size, config.projection_dim))
        self.register_buffer("queue_filled", torch.zeros((), dtype=torch.long))
        self.seconds_clustering = 0.0
        self.seed = 0

    def start_epoch(self, ctx: EpochContext) -> dict[str, float]:
        self.seed = ctx.seed
        self.seconds_clustering = 0.0
        return {}

    @torch.no_grad()
    def _seed_centroids(self, projections: Tensor) -> None:
        """Before the first step: centroids at randomly chosen projections of the first global batch, jittered
        so that repeated picks differ (random directions would lie far from where the data lives)."""
        rows = dist.all_gather_rows(projections.detach(), self.info).to(self.centroids)
        generator = torch.Generator().manual_seed(step_seed(self.seed, 0, 8))
        picks = torch.randint(len(rows), (len(self.centroids),), generator=generator).to(rows.device)
        jitter = 0.1 * torch.randn(self.centroids.shape, generator=generator).to(rows)
        self.centroids.copy_(F.normalize(rows[picks] + jitter, dim=1))

    def forward(self, network: nn.Module, x: Tensor, indices: Tensor) -> dict[str, Tensor]:
        projections, logits = network(x)
        projections = projections.float()
        if not bool(self.centroids.any()):
            self._seed_centroids(projections)
        scores = projections.detach() @ self.centroids.T
        start = time.perf_counter()
        group = torch_dist.group.WORLD if self.info.is_distributed else None
        remembered = self.queue[: int(self.queue_filled)][self.info.rank :: self.info.world_size]
        joined = torch.cat([scores, remembered @ self.centroids.T])
        codes = sinkhorn(joined, self.config.sinkhorn_epsilon, self.config.sinkhorn_iters, group)[: len(scores)]
        hard = codes.argmax(dim=1)
        self.seconds_clustering += time.perf_counter() - start
        previous = self.labels[indices.to(self.labels.device)].to(hard.device)
        targets = torch.where(previous >= 0, previous, hard)
        loss = F.cross_entropy(logits.float(), targets)
        start = time.perf_counter()
        centroids, _counts = ema_centroids(self.centroids, projections, hard, self.config.centroid_decay, group)
        self.centroids = centroids  # a new tensor: the loss graph still holds the old one
        gathered = dist.all_gather_rows(torch.stack([indices.to(hard.device), hard], dim=1), self.info)
        self.labels[gathered[:, 0].to(self.labels.device)] = gathered[:, 1].to(self.labels)
        self._remember(projections)
        self.seconds_clustering += time.perf_counter() - start
        return {"loss": loss}

    @torch.no_grad()
    def _remember(self, projections: Tensor) -> None:
        """Put the global batch's projections at the front of the queue, dropping the oldest."""
        if self.config.queue_size == 0:
            return
        rows = dist.all_gather_rows(projections.detach(), self.info).to(self.queue)
        self.queue.copy_(torch.cat([rows, self.queue])[: self.config.queue_size])
        self.queue_filled.fill_(min(int(self.queue_filled) + len(rows), self.config.queue_size))

    def assignments(self) -> Tensor:
        return self.labels

    def num_clusters(self) -> int:
        return self.config.num_clusters

    def health(self) -> dict[str, float | int | None]:
        return {"seconds_cluster_in_steps": self.seconds_clustering}
