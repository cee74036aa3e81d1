"""DECAR v1 (DeepCluster, REFERENCE §1a): every epoch, cluster the whole corpus's features and learn to predict
the cluster ids with a freshly initialised top layer.

Epoch start: one no-grad feature pass (eval mode, centre crops) → PCA-whitening → k-means (rank 0, labels
broadcast) → new top layer. Steps draw samples uniformly over non-empty clusters; the loss is cross-entropy
against the sample's cluster id. Reading shards, each rank keeps its own clips' features and labels (PCA from
summed moments, k-means exchanging (K, D) sums), and since the stream sets the order, the loss weighs each
cluster by the inverse of its size instead of the sampler drawing uniformly over clusters.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as torch_dist
import torch.nn.functional as F
from torch import Tensor, nn

from decar import dist
from decar.cluster import balanced_cluster_indices, kmeans, pca_whiten, sharded_kmeans
from decar.data import step_seed
from decar.objectives.base import EpochContext, Objective, register_objective


@dataclass
class DeepClusterV1Config:
    """DeepCluster (DECAR v1) pseudo-labelling and head settings, REFERENCE §1a.

    Attributes:
        hidden_dim: width of the two-layer MLP between encoder and the per-epoch top layer.
        dropout: dropout before each MLP layer.
        num_clusters: k of k-means.
        pca_dim: PCA-whitening output dimension before k-means.
        kmeans_iters: Lloyd iterations per epoch.
        kmeans_backend: "torch", "faiss" or "auto" (faiss when it is installed and the features are on CPU;
            the official code clustered with faiss).
        top_layer_std: std of the freshly initialised top layer each epoch.
        top_layer_momentum: SGD momentum of the top layer; DeepCluster's top-layer optimiser has none (0), and
            its state is dropped each epoch with the layer it belonged to.
        bn_recalibration: when to re-estimate BatchNorm statistics from data before the feature pass:
            "first" (before epoch 0 only: at random init the running statistics are (0, 1) and eval-mode
            features of a deep network vanish, so the paper's first clustering is degenerate), "every"
            (before each epoch; for runs with few steps per epoch) or "never" (the official code).
        bn_recalibration_batches: batches used for that estimate.
    """

    hidden_dim: int = 512
    dropout: float = 0.5
    num_clusters: int = 512
    pca_dim: int = 128
    kmeans_iters: int = 20
    kmeans_backend: str = "auto"
    top_layer_std: float = 0.01
    top_layer_momentum: float = 0.0
    bn_recalibration: str = "first"
    bn_recalibration_batches: int = 20

    def validate(self) -> list[str]:
        """Problems with these settings, as messages naming the key (empty when they can run)."""
        checks = [
            (self.num_clusters >= 2, "objective.num_clusters must be >= 2"),
            (0 <= self.dropout < 1, "objective.dropout must be in [0, 1)"),
            (self.kmeans_backend in ("torch", "faiss", "auto"), "objective.kmeans_backend: torch|faiss|auto"),
            (self.bn_recalibration in ("first", "every", "never"), "objective.bn_recalibration: first|every|never"),
        ]
        return [message for ok, message in checks if not ok]


class DeepClusterV1Head(nn.Module):
    """Dropout → Linear → ReLU → Dropout → Linear (the clustering features) → ReLU → top layer (K).

    The clustering features are taken *before* the last ReLU, as in the official code (REFERENCE §1a).

    Args:
        in_dim: encoder embedding size (1280 for EfficientNet-B0).
        hidden_dim: MLP width and feature size (512 in the paper).
        num_clusters: K, the number of pseudo-classes of the top layer.
        dropout: dropout probability before each MLP layer.
    """

    def __init__(self, in_dim: int, hidden_dim: int, num_clusters: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(in_dim, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, hidden_dim),
        )
        self.top_layer = nn.Linear(hidden_dim, num_clusters)

    def features(self, embedding: Tensor) -> Tensor:
        """(B, in_dim) → (B, hidden_dim) features that get clustered."""
        return self.mlp(embedding)

    def forward(self, embedding: Tensor) -> Tensor:
        """(B, in_dim) → (B, K) logits over this epoch's pseudo-labels."""
        return self.top_layer(torch.relu(self.mlp(embedding)))

    @torch.no_grad()
    def reset_top_layer(self, std: float, generator: torch.Generator) -> None:
        """New pseudo-labels mean a new classifier: weights N(0, std²), zero bias (in place, so DDP keeps it)."""
        weight = torch.randn(self.top_layer.weight.shape, generator=generator) * std
        self.top_layer.weight.copy_(weight)
        self.top_layer.bias.zero_()


class DeepClusterNet(nn.Module):
    """Encoder plus DeepCluster head; `forward` gives logits, `features` the vectors to cluster."""

    def __init__(self, encoder: nn.Module, head: DeepClusterV1Head) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, logmel: Tensor) -> Tensor:
        return self.head(self.encoder(logmel))

    def features(self, logmel: Tensor) -> Tensor:
        return self.head.features(self.encoder(logmel))


@register_objective("deepcluster_v1", DeepClusterV1Config)
class DeepClusterV1(Objective):
    """The paper's first method; see the module docstring."""

    def __init__(self, config: DeepClusterV1Config, encoder: nn.Module, num_samples: int) -> None:
        head = DeepClusterV1Head(encoder.embed_dim, config.hidden_dim, config.num_clusters, config.dropout)
        super().__init__(DeepClusterNet(encoder, head), num_samples)
        self.config = config
        self.register_buffer("labels", torch.full((num_samples,), -1, dtype=torch.long))
        self.inertia = 0.0
        self._class_weights: Tensor | None = None

    def param_groups(self) -> list[dict]:
        top = list(self.network.head.top_layer.parameters())
        rest = [p for n, p in self.network.named_parameters() if not n.startswith("head.top_layer.")]
        return [{"params": rest}, {"params": top, "momentum": self.config.top_layer_momentum}]

    def start_epoch(self, ctx: EpochContext) -> dict[str, float]:
        cfg = self.config
        recalibrate = cfg.bn_recalibration == "every" or (cfg.bn_recalibration == "first" and ctx.epoch == 0)
        indices, features = ctx.feature_pass(self.network.features, cfg.bn_recalibration_batches * recalibrate, False)
        if self.share.sharded:
            self._cluster_own_rows(ctx, indices, features)
        else:
            self._cluster_on_first_rank(ctx, indices, features)
        self.network.head.reset_top_layer(
            cfg.top_layer_std, torch.Generator().manual_seed(step_seed(ctx.seed, ctx.epoch, 2))
        )
        for parameter in self.network.head.top_layer.parameters():
            ctx.optimizer.state.pop(parameter, None)
        return {"kmeans_inertia": self.inertia}

    def _cluster_on_first_rank(self, ctx: EpochContext, indices: Tensor, features: Tensor) -> None:
        """Every feature (gathered), clustered on rank 0; the labels broadcast."""
        cfg = self.config
        labels = torch.full((self.num_samples,), -1, dtype=torch.long)
        inertia = torch.zeros(1, dtype=torch.float64)
        if ctx.info.is_main and len(indices) >= cfg.num_clusters:
            with ctx.track(f"epoch {ctx.epoch}: k-means, K = {cfg.num_clusters}", cfg.kmeans_iters) as advance:
                result = kmeans(
                    pca_whiten(features, out_dim=cfg.pca_dim),
                    cfg.num_clusters,
                    num_iters=cfg.kmeans_iters,
                    seed=step_seed(ctx.seed, ctx.epoch, 3) % (2**31),
                    backend=cfg.kmeans_backend,
                    on_round=advance,
                )
            labels[indices] = result.assignments.cpu()
            inertia[0] = result.inertia
        device = ctx.info.device
        self.labels.copy_(dist.broadcast(labels.to(device), ctx.info))
        self.inertia = float(dist.broadcast(inertia.to(device), ctx.info).cpu()[0])

    def _cluster_own_rows(self, ctx: EpochContext, indices: Tensor, features: Tensor) -> None:
        """Each rank's own features (shards): PCA from summed moments, k-means exchanging only (K, D) sums."""
        cfg = self.config
        group = torch_dist.group.WORLD if ctx.info.is_distributed else None
        ids, counts = dist.consecutive_ids(len(features), ctx.info)
        total = int(counts.sum())
        self.labels.fill_(-1)
        self.inertia = 0.0
        self._class_weights = None
        if total < cfg.num_clusters:
            return
        whitened = pca_whiten(features.to(ctx.info.device), out_dim=cfg.pca_dim, group=group)
        with ctx.track(f"epoch {ctx.epoch}: k-means, K = {cfg.num_clusters}", cfg.kmeans_iters) as advance:
            result = sharded_kmeans(
                whitened,
                ids.to(whitened.device),
                total,
                cfg.num_clusters,
                cfg.kmeans_iters,
                step_seed(ctx.seed, ctx.epoch, 3) % (2**31),
                group,
                advance,
                spherical=False,
            )
        rows, kept = self.share.rows(indices.to(self.labels.device))
        self.labels[rows[kept]] = result.assignments.to(self.labels)[kept]
        self.inertia = result.inertia

    def _balancing_weights(self) -> Tensor:
        """Reading shards the stream decides the order, so the loss weighs each cluster by 1 / its size (over
        every rank) instead: in expectation DeepCluster's uniform draw over non-empty clusters."""
        if self._class_weights is None:
            known = self.labels[self.labels >= 0]
            counts = torch.bincount(known, minlength=self.config.num_clusters).double().to(self.info.device)
            counts = dist.all_reduce_sum(counts, self.info).to(self.labels.device)
            filled = counts > 0
            weights = torch.zeros_like(counts)
            weights[filled] = counts.sum() / (filled.sum() * counts[filled])
            self._class_weights = weights.float()
        return self._class_weights

    def sample_order(self, epoch: int, count: int, generator: torch.Generator) -> Tensor:
        """Uniform over non-empty clusters (DeepCluster's sampler), so giant clusters do not dominate."""
        labels = self.labels.cpu()
        valid = torch.nonzero(labels >= 0).flatten()
        if valid.numel() == 0:
            raise RuntimeError("no sample has a cluster: every file failed to decode")
        return valid[balanced_cluster_indices(labels[valid], count, generator=generator)]

    def forward(self, network: nn.Module, x: Tensor, indices: Tensor) -> dict[str, Tensor]:
        logits = network(x).float()
        if not self.share.sharded:
            return {"loss": F.cross_entropy(logits, self.labels[indices.to(self.labels.device)])}
        rows, _kept = self.share.rows(indices.to(self.labels.device))
        weights = self._balancing_weights().to(logits.device)
        return {"loss": F.cross_entropy(logits, self.labels[rows].to(logits.device), weight=weights, ignore_index=-1)}

    def assignments(self) -> Tensor:
        return self.labels

    def num_clusters(self) -> int:
        return self.config.num_clusters
