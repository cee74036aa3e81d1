"""Augmentations of batched log-mel spectrograms, laid out (B, 1, T, F): time frames before mel bins.

DECAR v1 trains on SpecAugment views (REFERENCE §1a point 6); the later variant uses BYOL-A's running
normalisation, log-mixup-exp and random resize crop (REFERENCE §1b, §3). Every module takes an optional
`generator` in `forward` so the training loop can make a view a deterministic function of
(seed, epoch, sample index). It may be:

- None: torch's global generator;
- one `torch.Generator`: every random number of the batch comes from it, so a sample's view also depends
  on its position in the batch;
- a sequence of B generators, one per sample: sample i draws only from `generator[i]`, so its view does not
  depend on what else is in the batch (MixupLogExp's partner still comes from a memory filled by past
  batches).

Random numbers are drawn on the generator's device and the sampled sizes and offsets are applied on the
input's device. Augmentations are the identity in eval mode; RunningNorm is preprocessing, not
augmentation, and normalises in both modes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from decar._dicts import dataclass_from_dict
from decar.moments import RunningMoments

__all__ = [
    "AugmentConfig",
    "Augmentation",
    "GeneratorArg",
    "MixupConfig",
    "MixupLogExp",
    "RandomGain",
    "RandomGainConfig",
    "RandomResizeCrop",
    "RandomResizeCropConfig",
    "RunningNorm",
    "RunningNormConfig",
    "SpecAugment",
    "SpecAugmentConfig",
    "build_augmentation",
]

GeneratorArg = torch.Generator | Sequence[torch.Generator] | None


def _uniform(batch: int, count: int, generator: GeneratorArg) -> Tensor:
    """Draw `count` U[0, 1) numbers per sample, honouring the per-sample generator convention.

    Returns:
        (batch, count) float64 tensor on the CPU; float64 so mapping to integer ranges is exact.
    """
    if generator is None or isinstance(generator, torch.Generator):
        device = generator.device if generator is not None else torch.device("cpu")
        draws = torch.rand(batch, count, generator=generator, dtype=torch.float64, device=device)
        return draws.cpu()
    if len(generator) != batch:
        raise ValueError(f"got {len(generator)} generators for a batch of {batch} samples")
    rows = [torch.rand(count, generator=g, dtype=torch.float64, device=g.device).cpu() for g in generator]
    return torch.stack(rows) if rows else torch.empty(0, count, dtype=torch.float64)


def _randint(u: Tensor, low: int | Tensor, high: int | Tensor) -> Tensor:
    """Map uniforms `u` to integers uniform in the inclusive range [low, high] (elementwise)."""
    span = torch.as_tensor(high, dtype=torch.float64) - torch.as_tensor(low, dtype=torch.float64) + 1
    value = torch.as_tensor(low, dtype=torch.float64) + torch.floor(u * span)
    return torch.minimum(value, torch.as_tensor(high, dtype=torch.float64)).long()


def _check_input(x: Tensor, name: str) -> None:
    if x.dim() != 4:
        raise ValueError(f"{name} expects (B, C, T, F) log-mel batches, got shape {tuple(x.shape)}")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _check_crop_scales(
    virtual_crop_scale: tuple[float, float], freq_scale: tuple[float, float], time_scale: tuple[float, float]
) -> None:
    """Shared validation of RandomResizeCrop settings; raises ValueError naming the bad one."""
    _require(
        len(virtual_crop_scale) == 2 and min(virtual_crop_scale) >= 1.0,
        f"virtual_crop_scale must be two values >= 1, got {virtual_crop_scale!r}",
    )
    for name, scale in (("freq_scale", freq_scale), ("time_scale", time_scale)):
        _require(
            len(scale) == 2 and 0 < scale[0] <= scale[1],
            f"{name} must be (low, high) with 0 < low <= high, got {scale!r}",
        )


class _DictConfig:
    """Adds `to_dict`/`from_dict` to a config dataclass (nested configs become nested dicts)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build from a plain (possibly nested) dict, e.g. read from YAML.

        Raises:
            ValueError: on unknown keys (the message names the dotted key) or invalid values.
        """
        return dataclass_from_dict(cls, dict(data), prefix=f"{cls.__name__}.")


@dataclass
class SpecAugmentConfig(_DictConfig):
    """SpecAugment as DECAR v1 uses it (Park et al. 2019; REFERENCE §1a point 6).

    Attributes:
        enabled: apply it at all.
        time_warp: W; the warp centre lies in [W, T - W) and moves by up to W frames (0: no warp).
        freq_masks: number of frequency masks.
        freq_mask_width: F; each frequency mask is uniform in [0, F] bins wide.
        time_masks: number of time masks.
        time_mask_width: T; each time mask is uniform in [0, min(T, frames)] frames wide.
        fill: "mean" fills masks with the per-sample spectrogram mean (the paper); "zero" with 0.
    """

    enabled: bool = True
    time_warp: int = 5
    freq_masks: int = 2
    freq_mask_width: int = 30
    time_masks: int = 2
    time_mask_width: int = 40
    fill: str = "mean"

    def __post_init__(self) -> None:
        for name in ("time_warp", "freq_masks", "freq_mask_width", "time_masks", "time_mask_width"):
            value = getattr(self, name)
            _require(
                isinstance(value, int) and not isinstance(value, bool) and value >= 0,
                f"SpecAugmentConfig.{name} must be an int >= 0, got {value!r}",
            )
        _require(self.fill in ("mean", "zero"), f"SpecAugmentConfig.fill must be mean or zero, got {self.fill!r}")


@dataclass
class RunningNormConfig(_DictConfig):
    """BYOL-A running normalisation (REFERENCE §3).

    Attributes:
        enabled: apply it at all.
        frozen_after: training batches whose statistics are accumulated before they freeze; BYOL-A freezes
            after ~10 epochs, i.e. 10 × batches per epoch.
    """

    enabled: bool = False
    frozen_after: int = 1000

    def __post_init__(self) -> None:
        _require(self.frozen_after >= 1, f"RunningNormConfig.frozen_after must be >= 1, not {self.frozen_after}")


@dataclass
class MixupConfig(_DictConfig):
    """BYOL-A log-mixup-exp with a FIFO memory of past inputs (REFERENCE §3).

    Attributes:
        enabled: apply it at all.
        ratio: the mixing weight of the past sample is ratio · U(0, 1).
        memory_size: number of past samples remembered.
    """

    enabled: bool = False
    ratio: float = 0.4
    memory_size: int = 2048

    def __post_init__(self) -> None:
        _require(0.0 <= self.ratio <= 1.0, f"MixupConfig.ratio must be in [0, 1], got {self.ratio!r}")
        _require(self.memory_size >= 1, f"MixupConfig.memory_size must be >= 1, got {self.memory_size!r}")


@dataclass
class RandomResizeCropConfig(_DictConfig):
    """BYOL-A random resize crop (REFERENCE §3); pairs are (frequency, time) as in BYOL-A.

    Attributes:
        enabled: apply it at all.
        virtual_crop_scale: canvas size relative to the input, (frequency, time); each >= 1.
        freq_scale: range of the crop height relative to the number of mel bins.
        time_scale: range of the crop width relative to the number of frames.
    """

    enabled: bool = False
    virtual_crop_scale: tuple[float, float] = (1.0, 1.5)
    freq_scale: tuple[float, float] = (0.6, 1.5)
    time_scale: tuple[float, float] = (0.6, 1.5)

    def __post_init__(self) -> None:
        _check_crop_scales(self.virtual_crop_scale, self.freq_scale, self.time_scale)


@dataclass
class RandomGainConfig(_DictConfig):
    """A random loudness change per sample, uniform in ±max_db (ours: keeps level out of the pseudo-labels).

    Attributes:
        enabled: apply it at all.
        max_db: largest change in decibels.
    """

    enabled: bool = False
    max_db: float = 6.0

    def __post_init__(self) -> None:
        _require(self.max_db >= 0, f"RandomGainConfig.max_db must be >= 0, got {self.max_db!r}")


AUGMENTATIONS = ("running_norm", "random_gain", "mixup", "random_resize_crop", "specaugment")
"""Every augmentation's config key, in the default order (BYOL-A's, then ours, then SpecAugment)."""


@dataclass
class AugmentConfig(_DictConfig):
    """Training-view augmentations of the normalised log-mel batch; the defaults are DECAR v1's (SpecAugment).

    Attributes:
        order: the order in which the enabled augmentations run; every enabled one must be listed.
    """

    specaugment: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)
    running_norm: RunningNormConfig = field(default_factory=RunningNormConfig)
    random_gain: RandomGainConfig = field(default_factory=RandomGainConfig)
    mixup: MixupConfig = field(default_factory=MixupConfig)
    random_resize_crop: RandomResizeCropConfig = field(default_factory=RandomResizeCropConfig)
    order: list[str] = field(default_factory=lambda: list(AUGMENTATIONS))

    def __post_init__(self) -> None:
        unknown = sorted(set(self.order) - set(AUGMENTATIONS))
        _require(not unknown, f"augment.order: unknown augmentation(s) {unknown}; known: {list(AUGMENTATIONS)}")
        _require(len(set(self.order)) == len(self.order), f"augment.order lists one twice: {self.order}")
        unlisted = [name for name in AUGMENTATIONS if getattr(self, name).enabled and name not in self.order]
        _require(not unlisted, f"augment.{unlisted} enabled but missing from augment.order: it would never run")

    def enabled(self) -> list[str]:
        """The enabled augmentations, in `order`."""
        return [name for name in self.order if getattr(self, name).enabled]


def _resample_time(segment: Tensor, length: int) -> Tensor:
    """Linearly resample (C, t, F) `segment` to (C, length, F), keeping its first and last frames."""
    if length == 0:
        return segment[:, :0]
    size = (length, segment.shape[-1])
    return F.interpolate(segment[None], size=size, mode="bilinear", align_corners=True)[0]


class SpecAugment(nn.Module):
    """Time warp, then frequency and time masks, each drawn independently per sample.

    With fill="mean", masks take the mean of each sample's (warped) spectrogram over all its elements.

    Short inputs are handled: the warp is skipped when T < 2W + 1 and mask widths are clipped to the
    input's size. Zero-padded frames of a padded batch are treated like any other frames.

    Args:
        config: settings; the default is the paper's (W=5, 2 × F=30, 2 × T=40, mean fill).

    Example:
        >>> aug = SpecAugment().train()
        >>> view = aug(torch.randn(8, 1, 96, 64), generator=torch.Generator().manual_seed(0))
    """

    def __init__(self, config: SpecAugmentConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else SpecAugmentConfig()

    def forward(self, x: Tensor, generator: GeneratorArg = None) -> Tensor:
        """Augment a batch.

        Args:
            x: (B, C, T, F) log-mel spectrograms.
            generator: see the module docstring.

        Returns:
            (B, C, T, F) augmented copy; `x` itself in eval mode or when disabled.
        """
        _check_input(x, "SpecAugment")
        cfg = self.config
        if not self.training or not cfg.enabled:
            return x
        batch, frames = x.shape[0], x.shape[2]
        mask_draws = 2 * (cfg.freq_masks + cfg.time_masks)
        draws = _uniform(batch, 2 + mask_draws, generator)
        if cfg.time_warp > 0 and frames >= 2 * cfg.time_warp + 1:
            x = self._time_warp(x, draws[:, :2])
        fill = x.mean(dim=(1, 2, 3), keepdim=True)
        if cfg.fill == "zero":
            fill = torch.zeros_like(fill)
        freq_draws, time_draws = draws[:, 2:].split([2 * cfg.freq_masks, 2 * cfg.time_masks], dim=1)
        freq_mask = self._masks(freq_draws, cfg.freq_mask_width, x.shape[3])
        time_mask = self._masks(time_draws, cfg.time_mask_width, frames)
        mask = (time_mask[:, None, :, None] | freq_mask[:, None, None, :]).to(x.device)
        return torch.where(mask, fill, x)

    def _time_warp(self, x: Tensor, draws: Tensor) -> Tensor:
        """Move frame t0 to t0 + w by linearly resampling [0, t0) and [t0, T) to the new lengths.

        Resampling with aligned corners keeps the first and last frame of each segment, so the warp is a
        monotone map of time that keeps the first and last frames.

        Args:
            x: (B, C, T, F).
            draws: (B, 2) uniforms choosing the centre t0 in [W, T - W) and the shift w in [-W, W].
        """
        width, frames = self.config.time_warp, x.shape[2]
        centres = _randint(draws[:, 0], width, frames - width - 1).tolist()
        shifts = _randint(draws[:, 1], -width, width).tolist()
        warped = []
        for sample, centre, shift in zip(x, centres, shifts, strict=True):
            if shift == 0:
                warped.append(sample)
                continue
            head = _resample_time(sample[:, :centre], centre + shift)
            tail = _resample_time(sample[:, centre:], frames - centre - shift)
            warped.append(torch.cat([head, tail], dim=1))
        return torch.stack(warped)

    @staticmethod
    def _masks(draws: Tensor, max_width: int, size: int) -> Tensor:
        """Union of bands along one axis, each with width uniform in [0, min(max_width, size)].

        Args:
            draws: (B, 2 · n_masks) CPU uniforms, (width, start) per mask.
            max_width: the configured maximal width.
            size: length of the masked axis.

        Returns:
            (B, size) boolean CPU mask.
        """
        if draws.shape[1] == 0:
            return torch.zeros(draws.shape[0], size, dtype=torch.bool)
        positions = torch.arange(size)
        widths = _randint(draws[:, 0::2], 0, min(max_width, size))
        starts = _randint(draws[:, 1::2], 0, size - widths)
        inside = (positions >= starts[..., None]) & (positions < (starts + widths)[..., None])
        return inside.any(dim=1)


class RunningNorm(nn.Module):
    """Normalise by a global mean and std accumulated over the first training batches, then frozen.

    BYOL-A's pre-normalisation without a hand-computed statistics pass: while training, the first
    `frozen_after` calls merge their batch statistics (over all elements, exactly as if the batches were
    concatenated) into the running ones; later calls only normalise. The statistics are buffers, so they are
    saved with the model. It normalises in eval mode too; before any training batch it falls back to the
    batch's own statistics.

    Args:
        frozen_after: number of training batches whose statistics are accumulated.
        eps: lower bound of the std, so constant inputs map to 0 instead of NaN.
    """

    def __init__(self, frozen_after: int, eps: float = 1e-8) -> None:
        super().__init__()
        if frozen_after < 1:
            raise ValueError(f"frozen_after must be >= 1, got {frozen_after}")
        self.frozen_after = frozen_after
        self.eps = eps
        self.register_buffer("num_batches", torch.zeros((), dtype=torch.long))
        self.register_buffer("count", torch.zeros(()))
        self.register_buffer("running_mean", torch.zeros(()))
        self.register_buffer("running_m2", torch.zeros(()))

    @property
    def frozen(self) -> bool:
        """True once `frozen_after` training batches have been accumulated."""
        return int(self.num_batches) >= self.frozen_after

    @property
    def mean(self) -> Tensor:
        """Scalar running mean."""
        return self.running_mean

    @property
    def std(self) -> Tensor:
        """Scalar running (population) std."""
        return (self.running_m2 / self.count.clamp_min(1)).sqrt()

    def forward(self, x: Tensor, generator: GeneratorArg = None) -> Tensor:
        """Normalise a batch.

        Args:
            x: (B, C, T, F) log-mel spectrograms.
            generator: unused; accepted so every augmentation module has the same call signature.

        Returns:
            (B, C, T, F) tensor with (about) zero mean and unit std.
        """
        _check_input(x, "RunningNorm")
        if self.training and not self.frozen:
            self._accumulate(x.detach().float())
        if int(self.num_batches) > 0:
            mean, std = self.mean, self.std
        else:
            mean, std = x.detach().float().mean(), x.detach().float().std(correction=0)
        return ((x - mean) / std.clamp_min(self.eps)).to(x.dtype)

    def _accumulate(self, x: Tensor) -> None:
        """Merge the batch into the buffers' count, mean and sum of squared deviations (`RunningMoments`)."""
        moments = RunningMoments()
        if int(self.num_batches) > 0:
            state = torch.stack([self.count, self.running_mean, self.running_m2]).double()
            moments = RunningMoments.from_tensor(state)
        count, mean, m2 = moments.update(x).as_tensor().to(self.count)
        self.count.copy_(count)
        self.running_mean.copy_(mean)
        self.running_m2.copy_(m2)
        self.num_batches += 1


class MixupLogExp(nn.Module):
    """BYOL-A log-mixup-exp: mix each sample, in the linear power domain, with a random past input.

    x' = log((1 − α)·exp(x) + α·exp(z) + eps) with α = ratio·U(0, 1) per sample and z drawn uniformly
    from a FIFO memory of the last `memory_size` inputs (detached, unmixed). A batch mixes only with earlier
    batches and is then stored; with an empty memory the batch passes unchanged. The memory follows
    `.to(device)` and is saved in the module's state dict (as extra state), and all inputs must share one
    (C, T, F) shape (fixed-size crops). Like BYOL-A, it expects normalised inputs (after RunningNorm): on
    raw log-mels near their floor (e.g. log 1e-5) the eps term lifts values slightly even when α = 0.

    Args:
        ratio: upper bound of the mixing weight α.
        memory_size: number of past samples remembered.
        eps: added inside the log, as in BYOL-A.
    """

    memory: Tensor | None

    def __init__(
        self, ratio: float = 0.4, memory_size: int = 2048, eps: float = torch.finfo(torch.float32).eps
    ) -> None:
        super().__init__()
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"ratio must be in [0, 1], got {ratio}")
        if memory_size < 1:
            raise ValueError(f"memory_size must be >= 1, got {memory_size}")
        self.ratio = ratio
        self.memory_size = memory_size
        self.eps = eps
        self.register_buffer("memory", None, persistent=False)
        self.num_stored = 0
        self._next_slot = 0

    def forward(self, x: Tensor, generator: GeneratorArg = None) -> Tensor:
        """Mix a batch with remembered samples, then remember it.

        Args:
            x: (B, C, T, F) log-mel spectrograms.
            generator: see the module docstring; draws α and the partner index per sample.

        Returns:
            (B, C, T, F) mixed batch; `x` itself in eval mode or while the memory is empty.
        """
        _check_input(x, "MixupLogExp")
        if not self.training:
            return x
        if self.memory is not None and self.memory.shape[1:] != x.shape[1:]:
            raise ValueError(
                f"MixupLogExp remembers inputs of shape {tuple(self.memory.shape[1:])}, "
                f"got {tuple(x.shape[1:])}; use fixed-size crops"
            )
        draws = _uniform(x.shape[0], 2, generator)
        mixed = x if self.num_stored == 0 else self._mix(x, draws)
        self._remember(x.detach())
        return mixed

    def get_extra_state(self) -> dict[str, Any]:
        """The memory and its fill level, so a resumed run mixes with the same past samples."""
        memory = self.memory if self.memory is not None else torch.zeros(0)
        return {"memory": memory, "num_stored": self.num_stored, "next_slot": self._next_slot}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.memory = state["memory"] if state["memory"].numel() else None
        self.num_stored, self._next_slot = int(state["num_stored"]), int(state["next_slot"])

    def _mix(self, x: Tensor, draws: Tensor) -> Tensor:
        """Log-domain mix of (B, C, T, F) `x` with remembered partners; logsumexp keeps large x finite."""
        assert self.memory is not None
        alpha = (self.ratio * draws[:, 0]).to(x.dtype).to(x.device).view(-1, 1, 1, 1)
        partner = self.memory[_randint(draws[:, 1], 0, self.num_stored - 1).to(x.device)].to(x.dtype)
        terms = torch.stack(
            [torch.log1p(-alpha) + x, torch.log(alpha) + partner, torch.full_like(x, math.log(self.eps))]
        )
        return torch.logsumexp(terms, dim=0)

    def _remember(self, x: Tensor) -> None:
        """Write the batch into the ring buffer, overwriting the oldest samples."""
        if self.memory is None:
            self.memory = x.new_zeros((self.memory_size, *x.shape[1:]))
        x = x[-self.memory_size :]
        slots = (self._next_slot + torch.arange(x.shape[0], device=x.device)) % self.memory_size
        self.memory[slots] = x.to(self.memory.dtype)
        self._next_slot = (self._next_slot + x.shape[0]) % self.memory_size
        self.num_stored = min(self.num_stored + x.shape[0], self.memory_size)


class RandomResizeCrop(nn.Module):
    """BYOL-A random resize crop: crop a random window of a padded canvas and resize it back (bicubic).

    The input sits in the centre of a zero canvas of virtual_crop_scale × (F, T); a crop of
    U(freq_scale)·F bins by U(time_scale)·T frames (clipped to the canvas) at a uniform position is resized
    to (T, F). So the view zooms, stretches and shifts in time and frequency, with zero (after
    normalisation: the mean) where the crop leaves the input.

    Args:
        virtual_crop_scale: canvas size relative to the input, (frequency, time); each >= 1.
        freq_scale: range of the crop height relative to the number of mel bins.
        time_scale: range of the crop width relative to the number of frames.
    """

    def __init__(
        self,
        virtual_crop_scale: tuple[float, float] = (1.0, 1.5),
        freq_scale: tuple[float, float] = (0.6, 1.5),
        time_scale: tuple[float, float] = (0.6, 1.5),
    ) -> None:
        super().__init__()
        _check_crop_scales(virtual_crop_scale, freq_scale, time_scale)
        self.virtual_crop_scale = virtual_crop_scale
        self.freq_scale = freq_scale
        self.time_scale = time_scale

    def forward(self, x: Tensor, generator: GeneratorArg = None) -> Tensor:
        """Crop and resize each sample independently.

        Args:
            x: (B, C, T, F) log-mel spectrograms.
            generator: see the module docstring; draws crop size and position per sample.

        Returns:
            (B, C, T, F) views; `x` itself in eval mode.
        """
        _check_input(x, "RandomResizeCrop")
        if not self.training:
            return x
        batch, channels, frames, bins = x.shape
        canvas_frames = max(frames, round(frames * self.virtual_crop_scale[1]))
        canvas_bins = max(bins, round(bins * self.virtual_crop_scale[0]))
        canvas = x.new_zeros((batch, channels, canvas_frames, canvas_bins))
        top, left = (canvas_frames - frames) // 2, (canvas_bins - bins) // 2
        canvas[:, :, top : top + frames, left : left + bins] = x

        draws = _uniform(batch, 4, generator)
        crop_frames = self._sizes(draws[:, 0], self.time_scale, frames, canvas_frames)
        crop_bins = self._sizes(draws[:, 1], self.freq_scale, bins, canvas_bins)
        starts_t = _randint(draws[:, 2], 0, canvas_frames - crop_frames).tolist()
        starts_f = _randint(draws[:, 3], 0, canvas_bins - crop_bins).tolist()
        views = []
        for sample, t, f, height, width in zip(
            canvas, starts_t, starts_f, crop_frames.tolist(), crop_bins.tolist(), strict=True
        ):
            crop = sample[None, :, t : t + height, f : f + width]
            views.append(F.interpolate(crop, size=(frames, bins), mode="bicubic", align_corners=True)[0])
        return torch.stack(views)

    @staticmethod
    def _sizes(draws: Tensor, scale: tuple[float, float], size: int, canvas: int) -> Tensor:
        """Crop lengths U(scale)·size, rounded and clipped to [1, canvas]; (B,) long."""
        lengths = torch.round(size * (scale[0] + (scale[1] - scale[0]) * draws))
        return lengths.clamp(1, canvas).long()


class RandomGain(nn.Module):
    """Add a per-sample offset to the log-mel: a gain of g dB is ``g · log_units_per_db`` in its units.

    Args:
        max_db: the gain is uniform in [−max_db, max_db].
        log_units_per_db: how much one dB moves the (normalised) log-mel, e.g. ln(10) / 20 / std for a
            natural-log magnitude spectrogram divided by `std`.
    """

    def __init__(self, max_db: float, log_units_per_db: float) -> None:
        super().__init__()
        self.max_db = max_db
        self.log_units_per_db = log_units_per_db

    def forward(self, x: Tensor, generator: GeneratorArg = None) -> Tensor:
        _check_input(x, "RandomGain")
        if not self.training:
            return x
        gain_db = (2 * _uniform(x.shape[0], 1, generator)[:, 0] - 1) * self.max_db
        offset = (gain_db * self.log_units_per_db).to(device=x.device, dtype=x.dtype)
        return x + offset.view(-1, *([1] * (x.dim() - 1)))


class Augmentation(nn.Sequential):
    """A chain of augmentations that hands the same `generator` to each (identity when empty)."""

    def forward(self, x: Tensor, generator: GeneratorArg = None) -> Tensor:
        """Apply every module in order to (B, C, T, F) `x`."""
        for module in self:
            x = module(x, generator=generator)
        return x


def build_augmentation(config: AugmentConfig | None = None, log_units_per_db: float = 0.1151) -> Augmentation:
    """Build every enabled augmentation, in `config.order`.

    Args:
        config: what to build (default: DECAR v1's SpecAugment).
        log_units_per_db: the size of one dB in the input's units, for RandomGain (default: natural-log
            magnitude, un-normalised: ln(10) / 20).

    Example:
        >>> aug = build_augmentation(AugmentConfig())  # DECAR v1: SpecAugment only
    """
    cfg = config if config is not None else AugmentConfig()
    rrc = cfg.random_resize_crop
    builders = {
        "running_norm": lambda: RunningNorm(cfg.running_norm.frozen_after),
        "random_gain": lambda: RandomGain(cfg.random_gain.max_db, log_units_per_db),
        "mixup": lambda: MixupLogExp(cfg.mixup.ratio, cfg.mixup.memory_size),
        "random_resize_crop": lambda: RandomResizeCrop(rrc.virtual_crop_scale, rrc.freq_scale, rrc.time_scale),
        "specaugment": lambda: SpecAugment(cfg.specaugment),
    }
    return Augmentation(*(builders[name]() for name in cfg.enabled()))
