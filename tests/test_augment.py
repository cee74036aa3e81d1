"""Tests of decar.augment: SpecAugment, the BYOL-A augmentations and the augmentation config."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from decar.augment import (
    Augmentation,
    AugmentConfig,
    MixupLogExp,
    RandomResizeCrop,
    RunningNorm,
    SpecAugment,
    SpecAugmentConfig,
    build_augmentation,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _batch(batch: int = 6, frames: int = 96, bins: int = 64, seed: int = 0) -> torch.Tensor:
    """Random log-mel-like batch in which no row or column is constant."""
    return torch.randn(batch, 1, frames, bins, generator=_gen(seed)) * 2.0 - 5.0


def _masked_columns(view: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """(B, T) True where a whole time frame equals the per-sample fill value."""
    return (view[:, 0] == fill.view(-1, 1, 1)).all(dim=2)


def _masked_rows(view: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """(B, F) True where a whole mel bin equals the per-sample fill value."""
    return (view[:, 0] == fill.view(-1, 1, 1)).all(dim=1)


def test_specaugment_preserves_shape_and_is_finite() -> None:
    x = _batch()
    out = SpecAugment().train()(x, generator=_gen(1))
    assert out.shape == x.shape
    assert out.dtype == x.dtype
    assert torch.isfinite(out).all()
    assert not torch.equal(out, x)


def test_specaugment_masks_use_per_sample_mean() -> None:
    x = _batch(batch=8)
    x = x + torch.arange(8.0).view(-1, 1, 1, 1)  # distinct per-sample means
    aug = SpecAugment(SpecAugmentConfig(time_warp=0, freq_masks=1, time_masks=1)).train()
    out = aug(x, generator=_gen(2))
    mean = x.mean(dim=(1, 2, 3))
    changed = out != x
    assert torch.equal(out[changed], mean.view(-1, 1, 1, 1).expand_as(x)[changed])
    columns, rows = _masked_columns(out, mean), _masked_rows(out, mean)
    assert columns.any() and rows.any()
    # Every changed element lies in a fully masked time column or a fully masked mel bin.
    in_band = columns[:, None, :, None] | rows[:, None, None, :]
    assert not (changed & ~in_band).any()


def test_specaugment_zero_fill() -> None:
    x = _batch()
    aug = SpecAugment(SpecAugmentConfig(time_warp=0, fill="zero")).train()
    out = aug(x, generator=_gen(3))
    changed = out != x
    assert changed.any()
    assert (out[changed] == 0).all()


def test_specaugment_time_mask_budget_and_per_sample_masks() -> None:
    cfg = SpecAugmentConfig(time_warp=0, freq_masks=0, time_masks=2, time_mask_width=40)
    aug = SpecAugment(cfg).train()
    x = _batch(batch=32, frames=200)
    out = aug(x, generator=_gen(4))
    columns = _masked_columns(out, x.mean(dim=(1, 2, 3)))
    assert (columns.sum(dim=1) <= cfg.time_masks * cfg.time_mask_width).all()
    assert columns.any(dim=1).sum() > 16  # most samples got a non-empty mask
    assert len({tuple(row.tolist()) for row in columns}) > 16  # and they differ between samples


def test_specaugment_identical_inputs_get_different_masks() -> None:
    x = _batch(batch=1).expand(16, -1, -1, -1).contiguous()
    out = SpecAugment().train()(x, generator=_gen(5))
    assert len({out[i].sum().item() for i in range(16)}) > 8


def test_specaugment_seeded_determinism() -> None:
    x = _batch()
    aug = SpecAugment().train()
    first = aug(x, generator=_gen(7))
    assert torch.equal(first, aug(x, generator=_gen(7)))
    assert not torch.equal(first, aug(x, generator=_gen(8)))


def test_per_sample_generators_make_views_independent_of_the_batch() -> None:
    x = _batch(batch=4)
    aug = SpecAugment().train()
    full = aug(x, generator=[_gen(100 + i) for i in range(4)])
    alone = aug(x[2:3], generator=[_gen(102)])
    # Same masks and warp; the fill (a mean) is reduced over another batch shape, so allow its rounding.
    torch.testing.assert_close(full[2:3], alone, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="generators"):
        aug(x, generator=[_gen(0)])


def test_specaugment_eval_and_disabled_are_identity() -> None:
    x = _batch()
    assert SpecAugment().eval()(x) is x
    assert SpecAugment(SpecAugmentConfig(enabled=False)).train()(x) is x


def test_time_warp_is_monotone_on_a_ramp() -> None:
    frames, bins = 50, 4
    ramp = torch.arange(frames, dtype=torch.float32).view(1, 1, frames, 1).expand(64, 1, frames, bins)
    cfg = SpecAugmentConfig(time_warp=10, freq_masks=0, time_masks=0)
    out = SpecAugment(cfg).train()(ramp.contiguous(), generator=_gen(9))
    assert out.shape == ramp.shape
    assert (out.diff(dim=2) >= -1e-5).all()
    assert torch.allclose(out[:, :, 0], ramp[:, :, 0])
    assert torch.allclose(out[:, :, -1], ramp[:, :, -1])
    assert not torch.allclose(out, ramp)  # some samples were actually warped


@pytest.mark.parametrize("frames", [1, 5, 11])
def test_specaugment_short_inputs(frames: int) -> None:
    x = _batch(batch=4, frames=frames, bins=8)
    out = SpecAugment().train()(x, generator=_gen(10))
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


def test_mixup_ratio_zero_is_identity_after_memory_fills() -> None:
    # Mixup follows RunningNorm as in BYOL-A, so inputs are normalised; eps is then negligible.
    mixup = MixupLogExp(ratio=0.0, memory_size=8).train()
    first = torch.randn(4, 1, 16, 8, generator=_gen(1))
    assert mixup(first) is first  # empty memory: unchanged, but remembered
    assert mixup.num_stored == 4
    second = torch.randn(4, 1, 16, 8, generator=_gen(2))
    out = mixup(second, generator=_gen(0))
    assert torch.allclose(out, second, atol=1e-5)


def test_mixup_mixes_with_past_samples_only() -> None:
    mixup = MixupLogExp(ratio=1.0, memory_size=3).train()
    past = torch.full((5, 1, 4, 3), 2.0)
    mixup(past)
    assert mixup.num_stored == 3
    x = torch.zeros(16, 1, 4, 3)
    out = mixup(x, generator=_gen(11))
    assert torch.isfinite(out).all()
    # log((1 − a)·e^0 + a·e^2) lies between 0 and 2 and grows with a; α differs per sample.
    assert (out >= 0).all() and (out <= 2 + 1e-5).all()
    assert len({round(out[i].mean().item(), 5) for i in range(16)}) > 8
    stored = mixup.num_stored
    assert mixup.eval()(x) is x
    assert mixup.num_stored == stored


def test_mixup_rejects_a_new_shape() -> None:
    mixup = MixupLogExp(memory_size=4).train()
    mixup(torch.zeros(2, 1, 8, 4))
    with pytest.raises(ValueError, match="fixed-size crops"):
        mixup(torch.zeros(2, 1, 9, 4))


def test_running_norm_accumulates_then_freezes() -> None:
    norm = RunningNorm(frozen_after=3).train()
    batches = [_batch(batch=4, frames=16, bins=8, seed=s) * (s + 1) for s in range(5)]
    means = []
    for batch in batches[:3]:
        norm(batch)
        means.append(norm.mean.item())
    assert len(set(means)) == 3 and norm.frozen
    seen = torch.cat(batches[:3])
    assert norm.mean.item() == pytest.approx(seen.mean().item(), rel=1e-5)
    assert norm.std.item() == pytest.approx(seen.std(correction=0).item(), rel=1e-5)
    state = {k: v.clone() for k, v in norm.state_dict().items()}
    out = norm(batches[4])
    for key, value in norm.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert torch.allclose(out, (batches[4] - seen.mean()) / seen.std(correction=0), atol=1e-4)


def test_running_norm_eval_does_not_update_and_is_finite_on_constants() -> None:
    norm = RunningNorm(frozen_after=5).eval()
    out = norm(torch.full((2, 1, 4, 4), 3.0))
    assert int(norm.num_batches) == 0
    assert torch.isfinite(out).all() and (out == 0).all()


def test_random_resize_crop_shape_finite_and_seeded() -> None:
    x = _batch(batch=5, frames=96, bins=64)
    crop = RandomResizeCrop().train()
    out = crop(x, generator=_gen(12))
    assert out.shape == x.shape
    assert torch.isfinite(out).all()
    assert torch.equal(out, crop(x, generator=_gen(12)))
    assert not torch.equal(out, crop(x, generator=_gen(13)))
    assert crop.eval()(x) is x


def test_random_resize_crop_short_input() -> None:
    out = RandomResizeCrop().train()(_batch(batch=3, frames=2, bins=3), generator=_gen(14))
    assert out.shape == (3, 1, 2, 3)
    assert torch.isfinite(out).all()


def test_build_augmentation_default_is_specaugment_only() -> None:
    aug = build_augmentation(AugmentConfig())
    assert [type(m) for m in aug] == [SpecAugment]
    x = _batch()
    assert torch.equal(aug.train()(x, generator=_gen(15)), SpecAugment().train()(x, generator=_gen(15)))


def test_build_augmentation_all_disabled_is_identity_and_all_enabled_runs() -> None:
    off = AugmentConfig.from_dict({"specaugment": {"enabled": False}})
    identity = build_augmentation(off).train()
    assert isinstance(identity, Augmentation) and len(identity) == 0
    x = _batch()
    assert identity(x) is x

    on = AugmentConfig.from_dict(
        {
            "running_norm": {"enabled": True, "frozen_after": 2},
            "mixup": {"enabled": True, "memory_size": 16},
            "random_resize_crop": {"enabled": True},
        }
    )
    aug = build_augmentation(on).train()
    assert [type(m) for m in aug] == [RunningNorm, MixupLogExp, RandomResizeCrop, SpecAugment]
    for step in range(3):
        out = aug(_batch(seed=step), generator=_gen(step))
        assert out.shape == x.shape and torch.isfinite(out).all()


def test_config_round_trip_through_plain_dicts() -> None:
    cfg = AugmentConfig.from_dict(
        {
            "specaugment": {"time_warp": 0, "fill": "zero"},
            "mixup": {"enabled": True, "ratio": 0},
            "random_resize_crop": {"freq_scale": [0.8, 1.2]},
        }
    )
    assert cfg.random_resize_crop.freq_scale == (0.8, 1.2)
    assert isinstance(cfg.mixup.ratio, float)
    data = dataclasses.asdict(cfg)
    assert data == cfg.to_dict()
    assert AugmentConfig.from_dict(data) == cfg
    assert SpecAugmentConfig.from_dict(data["specaugment"]) == cfg.specaugment


def test_config_rejects_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValueError, match=r"AugmentConfig\.specaugment\.time_wrap"):
        AugmentConfig.from_dict({"specaugment": {"time_wrap": 3}})
    with pytest.raises(ValueError, match=r"AugmentConfig\.colour"):
        AugmentConfig.from_dict({"colour": True})
    with pytest.raises(ValueError, match="fill"):
        SpecAugmentConfig(fill="median")
    with pytest.raises(ValueError, match="ratio"):
        AugmentConfig.from_dict({"mixup": {"ratio": 1.5}})


def test_chain_keeps_the_input_dtype() -> None:
    enabled = {"enabled": True}
    cfg = AugmentConfig.from_dict({"running_norm": enabled, "mixup": enabled, "random_resize_crop": enabled})
    aug = build_augmentation(cfg).train()
    aug(torch.randn(4, 1, 32, 16, generator=_gen(0)))  # float32 batch fills the mixup memory
    x = torch.randn(4, 1, 32, 16, generator=_gen(1)).to(torch.bfloat16)
    out = aug(x, generator=_gen(2))
    assert out.dtype == torch.bfloat16
    assert torch.isfinite(out).all()
