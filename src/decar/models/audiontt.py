"""AudioNTT2020: BYOL-A's convolutional encoder, the DECAR v2 backbone.

Reference: Niizumi et al., "BYOL for Audio" (arXiv 2103.06695), network from Koizumi et al., DCASE2020
task 6 (arXiv 2007.00225). Parameter names match the ``.pth`` state dicts released with BYOL-A
(``features.{0,1,4,5,8,9}.*``, ``fc.{0,3}.*``), so those weights load with ``strict=True``.

BYOL-A feeds ``(B, 1, F, T)``; decar's convention is ``(B, 1, T, F)``, so the input is transposed
internally and the flattening order of (mel, channel) per frame is BYOL-A's.
"""

from os import PathLike
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from decar.models._registry import clean_state_dict, register_model

__all__ = ["AudioNTT2020", "audiontt2020", "load_byola_weights"]

CONV_CHANNELS = 64
NUM_POOLS = 3
"""Three 2×2 max-pools: time and frequency are both reduced by 8."""


def _conv_block(in_channels: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, CONV_CHANNELS, 3, stride=1, padding=1),
        nn.BatchNorm2d(CONV_CHANNELS),
        nn.ReLU(),
        nn.MaxPool2d(2, stride=2),
    ]


class AudioNTT2020(nn.Module):
    """BYOL-A encoder: three conv blocks, a per-frame MLP, and max + mean pooling over time.

    Inputs shorter than 8 frames are zero-padded at the end to 8 (zero is the mean of a normalised
    log-mel, i.e. "nothing"); otherwise the last ``T mod 8`` frames are dropped by the pooling, as in
    BYOL-A. Output frames: ``T' = max(T, 8) // 8``. The mel axis must have exactly ``n_mels`` bins because
    the first linear layer sees all of them.

    Args:
        n_mels: Mel bins F of the input (64 in BYOL-A and DECAR).
        d: Embedding size (BYOL-A released 512, 1024 and 2048; DECAR v2 uses 2048).
        dropout: Dropout between the two linear layers (training mode only).

    Attributes:
        embed_dim: Embedding size ``d``.
        frame_stride: Input frames per output frame, 8.
        min_frames: Shortest input length before padding, 8.
    """

    frame_stride: int = 2**NUM_POOLS
    min_frames: int = 2**NUM_POOLS

    def __init__(self, n_mels: int = 64, d: int = 2048, dropout: float = 0.3) -> None:
        super().__init__()
        if n_mels < self.frame_stride:
            raise ValueError(f"n_mels must be at least {self.frame_stride}, got {n_mels}")
        self.n_mels = n_mels
        self.embed_dim = d
        self.features = nn.Sequential(*_conv_block(1), *_conv_block(CONV_CHANNELS), *_conv_block(CONV_CHANNELS))
        self.fc = nn.Sequential(
            nn.Linear(CONV_CHANNELS * (n_mels // self.frame_stride), d),
            nn.ReLU(),
            nn.Dropout(p=dropout),
            nn.Linear(d, d),
            nn.ReLU(),
        )

    def forward_frames(self, x: torch.Tensor) -> torch.Tensor:
        """Frame-level embeddings.

        Args:
            x: Log-mel batch ``(B, 1, T, n_mels)``, any ``T ≥ 1``.

        Returns:
            ``(B, max(T, 8) // 8, d)``.
        """
        if x.ndim != 4 or x.shape[1] != 1 or x.shape[3] != self.n_mels:
            raise ValueError(f"expected a log-mel batch of shape (B, 1, T, {self.n_mels}), got {tuple(x.shape)}")
        if x.shape[2] < self.min_frames:
            x = F.pad(x, (0, 0, 0, self.min_frames - x.shape[2]))
        x = self.features(x.transpose(2, 3))  # BYOL-A layout (B, 1, F, T) -> (B, C, F', T')
        x = x.permute(0, 3, 2, 1)  # (B, T', F', C)
        return self.fc(x.reshape(x.shape[0], x.shape[1], -1))  # per-frame features ordered (F', C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Clip embedding ``max_t + mean_t`` of the frame embeddings: ``(B, 1, T, n_mels) -> (B, d)``."""
        frames = self.forward_frames(x)
        return frames.amax(dim=1) + frames.mean(dim=1)


@register_model
def audiontt2020(d: int = 2048, n_mels: int = 64, dropout: float = 0.3) -> AudioNTT2020:
    """BYOL-A's AudioNTT2020 encoder (d=2048: 5,321,856 parameters; d=512: 600,192).

    Args:
        d: Embedding size.
        n_mels: Mel bins of the input.
        dropout: Dropout between the two linear layers.

    Returns:
        A randomly initialised ``AudioNTT2020`` (PyTorch default init, like BYOL-A).
    """
    return AudioNTT2020(n_mels=n_mels, d=d, dropout=dropout)


def load_byola_weights(path: str | PathLike[str], d: int | None = None) -> AudioNTT2020:
    """Build an ``AudioNTT2020`` from a BYOL-A weight file, e.g. ``AudioNTT2020-BYOLA-64x96d2048.pth``.

    ``d`` and ``n_mels`` are read from the shape of ``fc.0.weight`` (BYOL-A files carry no config).
    The file is read with ``torch.load(weights_only=True)``, so it cannot run code. Wrapper prefixes
    (``module.``, ``encoder.``, ...) and a ``{"state_dict": ...}`` wrapper are accepted.

    Args:
        path: The ``.pth`` file.
        d: Expected embedding size; checked against the file when given.

    Returns:
        The encoder with the loaded weights, in eval mode (for feature extraction; call ``.train()``
        to fine-tune).

    Raises:
        ValueError: If the file holds no AudioNTT2020 state dict, its keys or shapes don't match, or its
            embedding size differs from ``d``; the message names the file.
    """
    path = Path(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError or EOFError for what it cannot read
        raise ValueError(f"{path}: cannot read it as a weights-only torch file: {type(err).__name__}") from err
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(checkpoint).__name__}")
    state_dict = clean_state_dict(checkpoint)
    fc_weight = state_dict.get("fc.0.weight")
    if not isinstance(fc_weight, torch.Tensor) or fc_weight.ndim != 2:
        raise ValueError(f"{path}: not an AudioNTT2020 state dict (no 2-D 'fc.0.weight')")
    file_d, fc_in = fc_weight.shape
    if d is not None and d != file_d:
        raise ValueError(f"{path}: holds an encoder with d={file_d}, but d={d} was requested")
    model = AudioNTT2020(n_mels=fc_in // CONV_CHANNELS * AudioNTT2020.frame_stride, d=file_d)

    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state_dict)), sorted(set(state_dict) - expected)
    if missing or unexpected:
        raise ValueError(
            f"{path}: keys do not match AudioNTT2020(d={file_d}); missing: {missing}; unexpected: {unexpected}"
        )
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        raise ValueError(f"{path}: tensor shapes do not match AudioNTT2020(d={file_d}): {error}") from error
    return model.eval()
