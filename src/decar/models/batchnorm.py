"""Re-estimating BatchNorm running statistics, shared by pretraining, fine-tuning and the random-init baseline.

Running statistics trail the weights (or, in a fresh network, describe nothing at all); eval-mode features are
only meaningful once the statistics are recomputed for the weights as they now are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import update_bn


@torch.no_grad()
def recalibrate_batchnorm(
    module: nn.Module, inputs: Iterable[Any], forward: Callable[[Any], object] | None = None
) -> None:
    """Replace BatchNorm running statistics by their plain average over `inputs` (train-mode forwards).

    Running statistics are reset and accumulated with momentum None (a cumulative average); momenta and the
    module's train/eval mode are restored afterwards. `forward(x)` runs one input through `module` (default:
    `module(x)`), for modules fed other than by a tensor, e.g. a list of waveforms.
    """
    model = module if forward is None else _Forwarding(module, forward)
    # update_bn feeds the first element of a list or tuple batch to the model: one-tuples pass each input whole.
    update_bn(((x,) for x in inputs), model)


class _Forwarding(nn.Module):
    """`module` under a custom forward, so that `update_bn` finds its BatchNorms and calls `forward` on inputs."""

    def __init__(self, module: nn.Module, forward: Callable[[Any], object]) -> None:
        super().__init__()
        self.module = module
        self.call = forward
        self.training = module.training  # update_bn restores the wrapper's mode, and through it the module's

    def forward(self, x: Any) -> object:
        return self.call(x)


__all__ = ["recalibrate_batchnorm"]
