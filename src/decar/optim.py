"""LARS around SGD, for DeepCluster-v2's large-batch recipe (written here: torch ships no LARS/LARC)."""

from __future__ import annotations

from typing import Any

import torch


class Lars:
    """Layer-wise adaptive rate scaling in LARC's clip mode (the variant swav trains DeepCluster-v2 with).

    Each parameter's gradient (plus its weight decay) is scaled by ``min(trust · ‖w‖ / (‖g‖ + wd · ‖w‖) / lr, 1)``
    before the wrapped optimiser steps with its own weight decay switched off, so no layer moves by more than
    a ``trust`` fraction of its norm per unit of learning rate.

    Args:
        optimizer: the optimiser to wrap (SGD).
        trust: the trust coefficient (swav: 0.001).
        eps: keeps the ratio finite for zero gradients.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, trust: float = 0.001, eps: float = 1e-8) -> None:
        self.optimizer = optimizer
        self.trust = trust
        self.eps = eps

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups

    @property
    def state(self) -> Any:
        return self.optimizer.state

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state)

    @torch.no_grad()
    def step(self) -> None:
        decays = []
        for group in self.optimizer.param_groups:
            decay = group.get("weight_decay", 0.0)
            decays.append(decay)
            for param in group["params"]:
                if param.grad is None:
                    continue
                param_norm, grad_norm = param.norm(), param.grad.norm()
                if param_norm > 0 and grad_norm > 0:
                    ratio = self.trust * param_norm / (grad_norm + decay * param_norm + self.eps)
                    scale = torch.clamp(ratio / group["lr"], max=1.0)
                    param.grad.add_(param, alpha=decay).mul_(scale)
            group["weight_decay"] = 0.0
        self.optimizer.step()
        for group, decay in zip(self.optimizer.param_groups, decays, strict=True):
            group["weight_decay"] = decay
