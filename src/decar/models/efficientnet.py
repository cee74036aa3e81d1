"""EfficientNet-B0 without classifier: the DECAR v1 encoder (EfficientNet paper: arXiv 1905.11946).

Our own module (timm cannot be imported next to the CPU torch wheel), written so that its state dict
has exactly the keys and shapes of ``efficientnet_pytorch`` 0.7.1
``EfficientNet.from_name("efficientnet-b0", include_top=False, in_channels=1)``, the model the official
DECAR code trained: such checkpoints load with ``strict=True`` (after ``clean_state_dict`` for wrapper
prefixes). Like the DECAR code (``image_size=None``), convolutions use TensorFlow "SAME" padding computed
from each input, so spectrograms of any length give the same results as the reference.

The spectrogram ``(B, 1, T, F)`` is treated as an image of height T and width F; five stride-2 stages
reduce both by 32 (rounding up), so 1 s of 10 ms frames (T=101) gives 4 output frames.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from decar.models._registry import register_model

__all__ = ["EfficientNetB0", "MBConvBlock", "efficientnet_b0"]

BN_MOMENTUM = 0.01
"""BatchNorm momentum in PyTorch's convention (TensorFlow's decay 0.99), as in efficientnet_pytorch."""
BN_EPS = 1e-3
SE_RATIO = 0.25
"""Squeeze-excitation width relative to the block's input channels."""
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


@dataclass(frozen=True)
class _Stage:
    """One stage of identical MBConv blocks; only the first block of a stage strides."""

    expand_ratio: int
    kernel_size: int
    stride: int
    out_channels: int
    repeats: int


_B0_STAGES = (
    _Stage(expand_ratio=1, kernel_size=3, stride=1, out_channels=16, repeats=1),
    _Stage(expand_ratio=6, kernel_size=3, stride=2, out_channels=24, repeats=2),
    _Stage(expand_ratio=6, kernel_size=5, stride=2, out_channels=40, repeats=2),
    _Stage(expand_ratio=6, kernel_size=3, stride=2, out_channels=80, repeats=3),
    _Stage(expand_ratio=6, kernel_size=5, stride=1, out_channels=112, repeats=3),
    _Stage(expand_ratio=6, kernel_size=5, stride=2, out_channels=192, repeats=4),
    _Stage(expand_ratio=6, kernel_size=3, stride=1, out_channels=320, repeats=1),
)


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, momentum=BN_MOMENTUM, eps=BN_EPS)


def _same_padding(size: int, kernel_size: int, stride: int) -> tuple[int, int]:
    """Zero padding (before, after) that makes a strided conv output ceil(size / stride) positions.

    TensorFlow "SAME" convention: when the total is odd the extra row goes after (bottom/right).
    """
    out_size = (size + stride - 1) // stride  # not -(-size // stride): ONNX integer Div truncates to zero
    total = max((out_size - 1) * stride + kernel_size - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding for inputs of any size.

    Stride-1 convolutions (odd kernels) need the same symmetric padding for every input size, so they use
    ``nn.Conv2d``'s own padding; strided ones compute it per call from the input's height and width.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        bias: bool = False,
    ) -> None:
        if kernel_size % 2 == 0:
            raise ValueError(f"Conv2dSame needs an odd kernel size, got {kernel_size}")
        padding = kernel_size // 2 if stride == 1 else 0
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, groups=groups, bias=bias
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pad (strided case only), then convolve ``(B, C_in, H, W) -> (B, C_out, ceil(H/s), ceil(W/s))``."""
        if self.stride != (1, 1):
            pad_h = _same_padding(x.shape[-2], self.kernel_size[0], self.stride[0])
            pad_w = _same_padding(x.shape[-1], self.kernel_size[1], self.stride[1])
            x = F.pad(x, (*pad_w, *pad_h))
        return super().forward(x)


def _drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero a block's residual branch for whole samples with probability ``rate``.

    Survivors are scaled by ``1 / (1 - rate)`` so the expected output is unchanged; identity in eval mode.
    """
    if not training or rate == 0.0:
        return x
    keep_prob = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep_prob)
    return x * mask / keep_prob


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck: 1×1 expand → depthwise k×k → squeeze-excitation → 1×1 project.

    Attribute names follow efficientnet_pytorch (``_expand_conv``, ``_bn0``, ...) for checkpoint
    compatibility. The residual connection (with stochastic depth) exists only when the block keeps the
    shape (stride 1 and equal channels).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        expand_ratio: Hidden width as a multiple of ``in_channels``; 1 skips the expansion conv.
        kernel_size: Depthwise kernel size (3 or 5).
        stride: Depthwise stride (1 or 2) on both axes.
        drop_path_rate: Probability of dropping the residual branch per sample in training.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        expand_ratio: int,
        kernel_size: int,
        stride: int,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        squeezed = max(1, int(in_channels * SE_RATIO))
        self.drop_path_rate = drop_path_rate
        self.has_residual = stride == 1 and in_channels == out_channels

        self._expand_conv: nn.Module | None = None
        self._bn0: nn.Module | None = None
        if expand_ratio != 1:
            self._expand_conv = Conv2dSame(in_channels, hidden, 1)
            self._bn0 = _batch_norm(hidden)
        self._depthwise_conv = Conv2dSame(hidden, hidden, kernel_size, stride=stride, groups=hidden)
        self._bn1 = _batch_norm(hidden)
        self._se_reduce = Conv2dSame(hidden, squeezed, 1, bias=True)
        self._se_expand = Conv2dSame(squeezed, hidden, 1, bias=True)
        self._project_conv = Conv2dSame(hidden, out_channels, 1)
        self._bn2 = _batch_norm(out_channels)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Map ``(B, C_in, H, W)`` to ``(B, C_out, ceil(H/stride), ceil(W/stride))``."""
        x = inputs
        if self._expand_conv is not None and self._bn0 is not None:
            x = F.silu(self._bn0(self._expand_conv(x)))
        x = F.silu(self._bn1(self._depthwise_conv(x)))
        scale = self._se_expand(F.silu(self._se_reduce(x.mean(dim=(2, 3), keepdim=True))))
        x = x * torch.sigmoid(scale)
        x = self._bn2(self._project_conv(x))
        if self.has_residual:
            x = _drop_path(x, self.drop_path_rate, self.training) + inputs
        return x


class EfficientNetB0(nn.Module):
    """EfficientNet-B0 feature extractor for log-mel spectrograms, 1280-d embeddings.

    Any input length T ≥ 1 works (no minimum, no padding beyond TF "SAME"); the frequency axis F may
    have any size too (64 in DECAR). Output frames: ``T' = ceil(T / 32)``.

    Args:
        in_channels: Input channels (1 for a log-mel spectrogram).
        drop_connect_rate: Stochastic-depth rate of the last block; block i of 16 uses
            ``drop_connect_rate * i / 16`` (training mode only), as in efficientnet_pytorch.

    Attributes:
        embed_dim: Embedding size, 1280.
        frame_stride: Input frames per output frame, 32.
    """

    embed_dim: int = HEAD_CHANNELS
    frame_stride: int = 32

    def __init__(self, in_channels: int = 1, drop_connect_rate: float = 0.2) -> None:
        super().__init__()
        if not 0.0 <= drop_connect_rate < 1.0:
            raise ValueError(f"drop_connect_rate must be in [0, 1), got {drop_connect_rate}")
        self.in_channels = in_channels
        self._conv_stem = Conv2dSame(in_channels, STEM_CHANNELS, 3, stride=2)
        self._bn0 = _batch_norm(STEM_CHANNELS)

        num_blocks = sum(stage.repeats for stage in _B0_STAGES)
        blocks: list[MBConvBlock] = []
        channels = STEM_CHANNELS
        for stage in _B0_STAGES:
            for repeat in range(stage.repeats):
                blocks.append(
                    MBConvBlock(
                        channels,
                        stage.out_channels,
                        expand_ratio=stage.expand_ratio,
                        kernel_size=stage.kernel_size,
                        stride=stage.stride if repeat == 0 else 1,
                        drop_path_rate=drop_connect_rate * len(blocks) / num_blocks,
                    )
                )
                channels = stage.out_channels
        self._blocks = nn.ModuleList(blocks)

        self._conv_head = Conv2dSame(channels, HEAD_CHANNELS, 1)
        self._bn1 = _batch_norm(HEAD_CHANNELS)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map before pooling.

        Args:
            x: Log-mel batch ``(B, in_channels, T, F)``.

        Returns:
            ``(B, 1280, ceil(T/32), ceil(F/32))``.
        """
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected a log-mel batch of shape (B, {self.in_channels}, T, F), got {tuple(x.shape)}")
        x = F.silu(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.silu(self._bn1(self._conv_head(x)))

    def forward_frames(self, x: torch.Tensor) -> torch.Tensor:
        """Frame-level embeddings, averaged over frequency: ``(B, 1, T, F) -> (B, ceil(T/32), 1280)``."""
        return self.forward_features(x).mean(dim=3).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Clip embedding by global average pooling, as in DECAR: ``(B, 1, T, F) -> (B, 1280)``."""
        return self.forward_features(x).mean(dim=(2, 3))


@register_model
def efficientnet_b0(in_channels: int = 1, drop_connect_rate: float = 0.2) -> EfficientNetB0:
    """EfficientNet-B0 encoder without classifier (4,006,972 parameters for one input channel).

    Args:
        in_channels: Input channels (1 for a log-mel spectrogram).
        drop_connect_rate: Maximum stochastic-depth rate (training mode only).

    Returns:
        A randomly initialised ``EfficientNetB0`` (PyTorch default init, like efficientnet_pytorch).
    """
    return EfficientNetB0(in_channels=in_channels, drop_connect_rate=drop_connect_rate)
