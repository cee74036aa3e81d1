"""What every pretraining method provides to the training loop, and the registry that builds one by name.

An objective owns everything method-specific: its head or prototypes, memory bank, centroids and pseudo-labels,
the order in which it wants the samples, and its loss. The loop (:mod:`decar.pretrain`) only calls these hooks:

1. ``start_epoch(ctx)`` before an epoch's first step (cluster, reset heads, fill a memory bank);
2. ``sample_order(epoch, count, generator)`` for the epoch's sample indices (all ranks, same order; reading
   shards, the stream sets the order instead);
3. ``forward(network, x, indices)`` each step, with ``network`` the (possibly DDP-wrapped) ``self.network``
   and ``x`` the batch's ``views`` augmented views of every crop, stacked view after view;
4. ``assignments()`` and ``health()`` after each epoch, for the log.

``self.network`` (encoder + trainable head) is what backpropagation and DDP see; everything else the objective
holds (banks, centroids, labels) lives outside it and is saved by ``state_dict``. Per-sample state has one row
per sample of ``self.share`` (:class:`SampleShare`): all samples, identical on every rank, when pretraining
reads files; only the rank's own samples when it reads shards.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from decar import dist

FeaturePass = Callable[[Callable[[Tensor], Tensor], int, bool], tuple[Tensor, Tensor]]
"""(project, batches, views) → (sorted sample ids, features) on CPU: of every sample, gathered on every rank, when
pretraining reads files; of the rank's own samples (``share.owned``) when it reads shards.

``project`` maps a normalised log-mel batch to features, without gradient, in eval mode (so a clip's features do
not depend on the batch it falls in). With ``views`` False: centre crops, the clean features DeepCluster
clusters; with ``views`` True: random crops and the run's augmentations, the kind of inputs training steps later
write into a memory bank. When ``batches`` is positive, BatchNorm statistics are first re-estimated on that many
random training batches.
"""


@dataclass
class EpochContext:
    """What an objective may use at the start of an epoch.

    Attributes:
        epoch: the epoch about to start.
        seed: the run's seed (combine with the epoch for this epoch's draws).
        info: process group information (rank, world size, device).
        feature_pass: one no-grad pass over the whole corpus through ``project`` (see :data:`FeaturePass`).
        optimizer: the run's optimiser, for objectives that reset part of its state (a re-initialised head).
        track: ``with ctx.track("k-means", rounds) as advance:`` shows a progress bar for a long phase (advance
            it by n steps); the default shows nothing.
    """

    epoch: int
    seed: int
    info: dist.DistInfo
    feature_pass: FeaturePass
    optimizer: torch.optim.Optimizer
    track: Callable[[str, int], AbstractContextManager[Callable[[int], None]]] = lambda _d, _t: nullcontext(
        lambda _n: None
    )


@dataclass(frozen=True)
class SampleShare:
    """The samples whose per-sample state (memory-bank rows, labels) this process keeps.

    ``owned`` None: every sample, identical on every process (a file list: any process may meet any sample, and
    per-sample updates are gathered). ``owned`` sorted global ids: only those, the samples of this rank's
    shards (a shard folder: each rank only ever meets its own samples, so nothing of size N is gathered).
    """

    num_samples: int
    owned: Tensor | None = None

    @property
    def sharded(self) -> bool:
        return self.owned is not None

    @property
    def count(self) -> int:
        """Rows of per-sample state this process keeps."""
        return self.num_samples if self.owned is None else len(self.owned)

    def rows(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        """(row, kept) of global sample ``ids``: where this process keeps each one's state, and whether it does."""
        if self.owned is None:
            return ids, torch.ones_like(ids, dtype=torch.bool)
        owned = self.owned.to(ids.device)
        if not len(owned):
            return torch.zeros_like(ids), torch.zeros_like(ids, dtype=torch.bool)
        rows = torch.searchsorted(owned, ids).clamp_max(len(owned) - 1)
        return rows, owned[rows] == ids


class Objective(nn.Module):
    """Base class of pretraining methods; see the module docstring for the hooks."""

    name: ClassVar[str]
    views: ClassVar[int] = 1
    """Augmented views of each crop that ``forward`` receives (the augmentations run once per view)."""

    def __init__(self, network: nn.Module, num_samples: int) -> None:
        super().__init__()
        self.network = network
        self.num_samples = num_samples
        self.share = SampleShare(num_samples)
        self.info = dist.DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))

    @property
    def encoder(self) -> nn.Module:
        return self.network.encoder

    @property
    def encoder_to_export(self) -> nn.Module:
        """The encoder that embeds downstream (the checkpoint's ``encoder``, ``encoder.safetensors``): the
        trained one, unless a method keeps a better copy."""
        return self.encoder

    def attach(self, info: dist.DistInfo, share: SampleShare | None = None) -> None:
        """Tell the objective which process group it runs in and which samples' state it keeps (set once,
        before training; a sharded share must be the one the objective was built for: ``num_samples`` rows)."""
        self.info = info
        if share is not None:
            if share.count != self.num_samples:
                raise ValueError(f"built for {self.num_samples} samples, attached to a share of {share.count}")
            self.share = share

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimiser parameter groups; a group may override ``lr_scale``, ``momentum`` or ``weight_decay``."""
        return [{"params": [p for p in self.network.parameters() if p.requires_grad]}]

    def start_epoch(self, ctx: EpochContext) -> dict[str, float]:
        """Prepare an epoch; returns numbers for the epoch's log record."""
        return {}

    def sample_order(self, epoch: int, count: int, generator: torch.Generator) -> Tensor:
        """``count`` sample indices for the epoch: shuffled passes over all samples (the default)."""
        passes = math.ceil(count / self.num_samples)
        return torch.cat([torch.randperm(self.num_samples, generator=generator) for _ in range(passes)])[:count]

    def forward(self, network: nn.Module, x: Tensor, indices: Tensor) -> dict[str, Tensor]:
        """Loss (key ``loss``) and other scalar metrics of one batch; may update the objective's state."""
        raise NotImplementedError

    def assignments(self) -> Tensor | None:
        """(N,) current pseudo-label of every sample, −1 where unknown (None: the method has none)."""
        return None

    def num_clusters(self) -> int:
        """K of the pseudo-labels, for cluster statistics and the loss's chance level ln K."""
        raise NotImplementedError

    def health(self) -> dict[str, float | int | None]:
        """Method-specific health numbers for the epoch's log record."""
        return {}

    def chance_loss(self) -> float:
        """Cross-entropy of a uniform guess over the pseudo-labels: a loss at this level has learnt nothing."""
        return math.log(self.num_clusters())


_REGISTRY: dict[str, tuple[type[Objective], type]] = {}


def register_objective(name: str, config_class: type) -> Callable[[type[Objective]], type[Objective]]:
    """Class decorator: make an objective buildable by name, with its typed config dataclass."""

    def decorate(cls: type[Objective]) -> type[Objective]:
        if name in _REGISTRY:
            raise ValueError(f"objective {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = (cls, config_class)
        return cls

    return decorate


def list_objectives() -> list[str]:
    return sorted(_REGISTRY)


def objective_config_class(name: str) -> type:
    """The config dataclass of objective ``name``; KeyError naming the known ones otherwise."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(list_objectives())}")
    return _REGISTRY[name][1]


def objective_class(name: str) -> type[Objective]:
    """The class of objective ``name`` (e.g. to read its ``views``); KeyError naming the known ones otherwise."""
    objective_config_class(name)  # KeyError naming the known methods
    return _REGISTRY[name][0]


def create_objective(name: str, config: Any, encoder: nn.Module, num_samples: int) -> Objective:
    """Build objective ``name`` around ``encoder`` for a corpus of ``num_samples`` clips."""
    config_class = objective_config_class(name)  # KeyError naming the known methods
    cls = objective_class(name)
    if not isinstance(config, config_class):
        raise TypeError(f"method {name!r} takes a {config_class.__name__}, got {type(config).__name__}")
    return cls(config, encoder, num_samples)
