"""Shared parts of the prototype methods (dcv2, online): projection head and per-sample memory."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from decar import dist
from decar.objectives.base import SampleShare


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
    """The latest projection of each sample of the process's share (:class:`SampleShare`).

    With a whole share (files) each step's rows are gathered from all processes and written everywhere, so
    clustering the bank at the start of an epoch sees the whole corpus as of its last visit, at the cost of one
    small all-gather per step. With a sharded share (shards) a process only meets its own samples: it writes
    its own rows and gathers nothing.
    """

    def __init__(self, num_rows: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("features", torch.zeros(num_rows, dim))
        self.register_buffer("filled", torch.zeros(num_rows, dtype=torch.bool))

    @torch.no_grad()
    def write(self, indices: Tensor, rows: Tensor, info: dist.DistInfo, share: SampleShare) -> None:
        """Overwrite the rows of sample ``indices`` (this process's batch) with ``rows``."""
        rows = rows.detach().float()
        if not share.sharded:
            indices = dist.all_gather_rows(indices.to(info.device), info)
            rows = dist.all_gather_rows(rows.to(info.device), info)
        local, kept = share.rows(indices.to(self.features.device))
        self.features[local[kept]] = rows.to(self.features.device)[kept]
        self.filled[local[kept]] = True
