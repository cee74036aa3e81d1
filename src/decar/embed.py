"""Pretrained encoders for users: a checkpoint file becomes a waveform → embedding module."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from decar.checkpoint import load_checkpoint
from decar.config import DecarConfig
from decar.frontend import LogMelSpectrogram
from decar.models import clean_state_dict, create_model


class AudioEncoder(nn.Module):
    """Frontend (with its dataset normalisation statistics) plus encoder, in eval mode.

    Attributes:
        sample_rate: the rate, in Hz, that waveforms given to `forward` must have.
        embed_dim: size of the clip embedding.
        config: the resolved training config the checkpoint carried.
    """

    def __init__(self, frontend: LogMelSpectrogram, encoder: nn.Module, config: DecarConfig) -> None:
        super().__init__()
        self.frontend = frontend
        self.encoder = encoder
        self.config = config
        self.sample_rate = config.frontend.sample_rate
        self.embed_dim = int(encoder.embed_dim)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """(B, samples) float waveforms at `sample_rate` → (B, embed_dim) clip embeddings."""
        return self.encoder(self.frontend(waveform))


def load(path: str | Path, device: str | torch.device = "cpu") -> AudioEncoder:
    """Rebuild encoder and frontend from a checkpoint (`checkpoint.pt` or `encoder.safetensors`) alone.

    Nothing is executed from the file (weights-only / safetensors) and nothing is downloaded.

    Example:
        >>> model = decar.load("runs/tiny/checkpoint.pt")
        >>> model(torch.zeros(1, 16000)).shape
        torch.Size([1, 1280])
    """
    checkpoint = load_checkpoint(path)
    config = DecarConfig.from_dict(checkpoint["config"])
    frontend = LogMelSpectrogram(config.frontend)
    stats = checkpoint["frontend_stats"]
    frontend.set_norm_stats(stats["mean"], stats["std"])
    encoder = create_model(config.model.name, **config.model.kwargs)
    encoder.load_state_dict(clean_state_dict(checkpoint["encoder"]))
    return AudioEncoder(frontend, encoder, config).to(device).eval()
