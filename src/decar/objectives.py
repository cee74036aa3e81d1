"""DeepCluster (DECAR v1) network: encoder → MLP head → a top layer that is re-initialised every epoch."""

from __future__ import annotations

import torch
from torch import nn


class DeepClusterV1Head(nn.Module):
    """Dropout → Linear → ReLU → Dropout → Linear (the 512-d clustering features) → ReLU → top layer (K).

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

    def features(self, embedding: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) → (B, hidden_dim) features that get clustered."""
        return self.mlp(embedding)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
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

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(logmel))

    def features(self, logmel: torch.Tensor) -> torch.Tensor:
        return self.head.features(self.encoder(logmel))
