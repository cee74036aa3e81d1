"""Shared parts of the prototype methods (dcv2, online): projection head and per-sample memory."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from decar import dist


class ProjectionHead(nn.Module):
    """Linear → BatchNorm → ReLU → Linear → L2-normalise (DeepCluster-v2 / SwAV, REFERENCE §1b)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )

    def forward(self, embedding: Tensor) -> Tensor:
        return F.normalize(self.mlp(embedding), dim=1)


class ProjectedEncoder(nn.Module):
    """Encoder plus projection head: log-mel batch → (B, out_dim) unit vectors."""

    def __init__(self, encoder: nn.Module, head: ProjectionHead) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, logmel: Tensor) -> Tensor:
        return self.head(self.encoder(logmel))


class MemoryBank(nn.Module):
    """The latest projection of every sample, kept identical on every process.

    Each step's rows are gathered from all processes and written everywhere, so clustering the bank at the
    start of an epoch sees the whole corpus as of its last visit, at the cost of one small all-gather per step.
    """

    def __init__(self, num_samples: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("features", torch.zeros(num_samples, dim))
        self.register_buffer("filled", torch.zeros(num_samples, dtype=torch.bool))

    @torch.no_grad()
    def write(self, indices: Tensor, rows: Tensor, info: dist.DistInfo) -> None:
        """Overwrite the rows of ``indices`` (this process's batch) with ``rows``, on every process."""
        indices = dist.all_gather_rows(indices.to(info.device), info).to(self.features.device)
        rows = dist.all_gather_rows(rows.detach().float().to(info.device), info).to(self.features.device)
        self.features[indices] = rows
        self.filled[indices] = True
