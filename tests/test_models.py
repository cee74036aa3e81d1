"""Encoder registry and models: shapes, gradients, layouts, and checkpoint compatibility."""

from pathlib import Path

import pytest
import torch
from torch import nn

from decar.models import (
    AudioNTT2020,
    EfficientNetB0,
    clean_state_dict,
    create_model,
    list_models,
    load_byola_weights,
    register_model,
)
from decar.models.batchnorm import recalibrate_batchnorm

N_MELS = 64


pytestmark = pytest.mark.usefixtures("one_thread")


def _calibrate(model: nn.Module, seed: int = 0) -> nn.Module:
    """Set BatchNorm running stats from one random batch and switch to eval mode.

    Freshly initialised stats (mean 0, var 1) shrink EfficientNet's eval output to ~1e-12, which would
    make every closeness check pass trivially; after this the outputs are O(1).
    """
    generator = torch.Generator().manual_seed(seed)
    recalibrate_batchnorm(model, [torch.randn(4, 1, 96, N_MELS, generator=generator)])
    return model.eval()


def _spectrogram(batch: int, frames: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 1, frames, N_MELS, generator=torch.Generator().manual_seed(seed))


def _assert_close_to_scale(actual: torch.Tensor, expected: torch.Tensor, tolerance: float) -> None:
    """Max abs error at most ``tolerance`` times the largest magnitude (float sums reorder per layout)."""
    scale = expected.abs().max().item()
    assert scale > 1e-3, "outputs are too small for the comparison to mean anything"
    torch.testing.assert_close(actual, expected, rtol=tolerance, atol=tolerance * scale)


def test_list_models_has_both_encoders() -> None:
    assert {"efficientnet_b0", "audiontt2020"} <= set(list_models())
    assert list_models() == sorted(list_models())


def test_unknown_model_lists_available_names() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'nope'.*audiontt2020.*efficientnet_b0"):
        create_model("nope")


def test_create_model_drops_none_kwargs() -> None:
    model = create_model("audiontt2020", d=None, dropout=None)
    assert model.embed_dim == 2048


def test_register_model_rejects_duplicate_name() -> None:
    def efficientnet_b0() -> nn.Module:
        return nn.Identity()

    with pytest.raises(ValueError, match="already registered"):
        register_model(efficientnet_b0)


@pytest.mark.parametrize(
    ("name", "kwargs", "expected"),
    [
        ("efficientnet_b0", {}, 4_006_972),
        ("audiontt2020", {}, 5_321_856),
        ("audiontt2020", {"d": 512}, 600_192),
    ],
)
def test_parameter_count(name: str, kwargs: dict[str, int], expected: int) -> None:
    model = create_model(name, **kwargs)
    assert sum(p.numel() for p in model.parameters()) == expected


@pytest.mark.parametrize("frames", [3, 8, 96, 301])
@pytest.mark.parametrize("name", list_models())
def test_output_shapes_for_any_length(name: str, frames: int) -> None:
    model = create_model(name).eval()
    x = _spectrogram(2, frames)
    with torch.no_grad():
        clip, per_frame = model(x), model.forward_frames(x)
    assert clip.shape == (2, model.embed_dim)
    assert per_frame.shape[0] == 2 and per_frame.shape[2] == model.embed_dim
    assert per_frame.shape[1] >= 1 and abs(per_frame.shape[1] - frames / model.frame_stride) < 1
    assert torch.isfinite(clip).all() and torch.isfinite(per_frame).all()


@pytest.mark.parametrize(("frames", "expected"), [(3, 1), (8, 1), (96, 3), (97, 4), (301, 10)])
def test_efficientnet_frame_count_rounds_up(frames: int, expected: int) -> None:
    assert create_model("efficientnet_b0").eval().forward_frames(_spectrogram(1, frames)).shape[1] == expected


@pytest.mark.parametrize(("frames", "expected"), [(3, 1), (8, 1), (96, 12), (101, 12), (301, 37)])
def test_audiontt_frame_count_rounds_down_with_minimum_one(frames: int, expected: int) -> None:
    assert create_model("audiontt2020", d=64).eval().forward_frames(_spectrogram(1, frames)).shape[1] == expected


@pytest.mark.parametrize("name", list_models())
def test_backward_reaches_every_parameter(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name).train()
    model(_spectrogram(2, 96)).square().mean().backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, f"no gradient for {param_name}"
        assert torch.isfinite(param.grad).all(), f"non-finite gradient for {param_name}"


@pytest.mark.parametrize("name", list_models())
def test_eval_mode_is_deterministic(name: str) -> None:
    model = _calibrate(create_model(name))
    x = _spectrogram(2, 96)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", list_models())
def test_channels_last_matches_default_layout(name: str) -> None:
    model = _calibrate(create_model(name))
    x = _spectrogram(2, 101)
    with torch.no_grad():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last)
        actual = model(x.contiguous(memory_format=torch.channels_last))
    _assert_close_to_scale(actual, expected, 1e-5)


@pytest.mark.parametrize("name", list_models())
def test_wrong_input_shape_is_a_clear_error(name: str) -> None:
    with pytest.raises(ValueError, match=r"expected a log-mel batch of shape \(B, 1, T, "):
        create_model(name)(torch.zeros(2, 96, N_MELS))


def test_audiontt_rejects_other_mel_count() -> None:
    with pytest.raises(ValueError, match=r"\(B, 1, T, 64\), got \(2, 1, 96, 80\)"):
        create_model("audiontt2020", d=64)(torch.zeros(2, 1, 96, 80))


@pytest.mark.parametrize("name", list_models())
def test_state_dict_round_trip_through_wrapper_prefix(name: str) -> None:
    source = _calibrate(create_model(name), seed=1)
    wrapped = {f"module._orig_mod.{key}": value for key, value in source.state_dict().items()}
    target = create_model(name)
    target.load_state_dict(clean_state_dict(wrapped), strict=True)
    x = _spectrogram(2, 64)
    with torch.no_grad():
        # Same weights, same code, same layout: bit-identical.
        torch.testing.assert_close(target.eval()(x), source(x), rtol=0, atol=0)


def test_clean_state_dict_strips_known_prefixes_only() -> None:
    weight = torch.zeros(1)
    cleaned = clean_state_dict({"encoder._bn0.weight": weight, "head.weight": weight})
    assert list(cleaned) == ["_bn0.weight", "head.weight"]


def test_clean_state_dict_rejects_colliding_keys() -> None:
    with pytest.raises(ValueError, match="collide"):
        clean_state_dict({"module.fc.weight": torch.zeros(1), "fc.weight": torch.zeros(1)})


def test_drop_connect_only_in_training() -> None:
    torch.manual_seed(0)
    x = _spectrogram(4, 32)
    without = create_model("efficientnet_b0", drop_connect_rate=0.0).train()
    with torch.no_grad():
        torch.testing.assert_close(without(x), without(x), rtol=0, atol=0)
    model = create_model("efficientnet_b0", drop_connect_rate=0.5).train()
    with torch.no_grad():
        assert not torch.equal(model(x), model(x))
        model.eval()
        torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)


def test_audiontt_flattens_mel_then_channel_per_frame_like_byola() -> None:
    """BYOL-A flattens (B, C, F', T') by permute(0, 3, 2, 1): frame t is [x[:, :, f, t] for f in F']."""
    model = _calibrate(create_model("audiontt2020", d=32))
    x = _spectrogram(2, 40)
    with torch.no_grad():
        features = model.features(x.transpose(2, 3))  # BYOL-A input layout (B, 1, F, T)
        per_frame = torch.cat([features[:, :, f, :] for f in range(features.shape[2])], dim=1)
        expected = model.fc(per_frame.transpose(1, 2))
        # Channel-major per frame, the layout BYOL-A does not use: it must fail the comparison below.
        wrong = model.fc(features.permute(0, 3, 1, 2).flatten(2))
        actual = model.forward_frames(x)
        # fc sees the same numbers in another memory layout, so its sums may round differently (1e-7 seen):
        # compare with a tolerance far below the gap that a wrong flatten order makes.
        _assert_close_to_scale(actual, expected, 1e-5)
        _assert_close_to_scale(model(x), expected.amax(dim=1) + expected.mean(dim=1), 1e-5)
        assert (wrong - expected).abs().max() > 100 * 1e-5 * expected.abs().max()


def test_audiontt_state_dict_keys_match_byola_release() -> None:
    keys = set(create_model("audiontt2020", d=512).state_dict())
    convs_and_norms = {f"features.{i}.{p}" for i in (0, 4, 8) for p in ("weight", "bias")} | {
        f"features.{i}.{p}"
        for i in (1, 5, 9)
        for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    }
    assert keys == convs_and_norms | {f"fc.{i}.{p}" for i in (0, 3) for p in ("weight", "bias")}


def test_load_byola_weights_infers_size_and_strips_prefix(tmp_path: Path) -> None:
    source = _calibrate(create_model("audiontt2020", d=96))
    path = tmp_path / "AudioNTT2020-BYOLA-64x96d96.pth"
    torch.save({f"module.{key}": value for key, value in source.state_dict().items()}, path)
    loaded = load_byola_weights(path)
    assert isinstance(loaded, AudioNTT2020) and loaded.embed_dim == 96 and not loaded.training
    x = _spectrogram(2, 96)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), source(x), rtol=0, atol=0)  # same weights and code: bit-identical


def test_load_byola_weights_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "weights.pth"
    state = create_model("audiontt2020", d=96).state_dict()
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"weights\.pth: holds an encoder with d=96, but d=512"):
        load_byola_weights(path, d=512)
    torch.save({**state, "projector.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match=r"weights\.pth: keys do not match.*projector\.weight"):
        load_byola_weights(path)
    torch.save(create_model("efficientnet_b0").state_dict(), path)
    with pytest.raises(ValueError, match=r"weights\.pth: not an AudioNTT2020 state dict"):
        load_byola_weights(path)


def _norm_net(momentum: float) -> nn.Sequential:
    """Conv → BatchNorm → conv → BatchNorm, with stale running statistics that recalibration must replace."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3),
        nn.BatchNorm2d(3, momentum=momentum),
        nn.Conv2d(3, 2, 1),
        nn.BatchNorm2d(2, momentum=momentum),
    )
    for norm in (net[1], net[3]):
        norm.running_mean.fill_(100.0)
        norm.running_var.fill_(100.0)
    return net


def _batch_moments(net: nn.Sequential, batches: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain average over batches of the first BatchNorm's batch mean and unbiased variance, per channel."""
    with torch.no_grad():
        features = [net[0](x) for x in batches]
    means = torch.stack([f.mean(dim=(0, 2, 3)) for f in features])
    variances = torch.stack([f.var(dim=(0, 2, 3), unbiased=True) for f in features])
    return means.mean(0), variances.mean(0)


@pytest.mark.parametrize("was_training", [False, True])
def test_recalibrate_batchnorm_averages_batches_and_restores_mode_and_momentum(was_training: bool) -> None:
    net = _norm_net(momentum=0.01).train(was_training)
    weights = {name: value.clone() for name, value in net.named_parameters()}
    batches = [_spectrogram(4, 12, seed) for seed in range(3)]
    recalibrate_batchnorm(net, batches)

    mean, variance = _batch_moments(net, batches)
    torch.testing.assert_close(net[1].running_mean, mean)  # a cumulative average, not a 0.01-momentum trail
    torch.testing.assert_close(net[1].running_var, variance)
    assert int(net[1].num_batches_tracked) == 3
    assert net[1].momentum == net[3].momentum == 0.01
    assert net.training == was_training and all(m.training == was_training for m in net.modules())
    assert all(torch.equal(value, weights[name]) for name, value in net.named_parameters())


def test_recalibrate_batchnorm_feeds_inputs_that_are_not_tensors_through_forward() -> None:
    net = _norm_net(momentum=0.1).eval()
    pieces = [[_spectrogram(2, 12, 2 * k), _spectrogram(3, 12, 2 * k + 1)] for k in range(2)]  # lists, not batches
    seen: list[list[int]] = []

    def forward(parts: list[torch.Tensor]) -> torch.Tensor:
        seen.append([len(part) for part in parts])
        return net(torch.cat(parts))

    recalibrate_batchnorm(net, pieces, forward=forward)
    assert seen == [[2, 3], [2, 3]]  # each whole list reached forward
    mean, variance = _batch_moments(net, [torch.cat(parts) for parts in pieces])
    torch.testing.assert_close(net[1].running_mean, mean)
    torch.testing.assert_close(net[1].running_var, variance)
    assert not net.training and net[1].momentum == 0.1


class TestAgainstEfficientNetPytorch:
    """Our EfficientNet-B0 against efficientnet_pytorch 0.7.1, the library the DECAR code used."""

    @staticmethod
    def _reference(**overrides: object) -> nn.Module:
        efficientnet_pytorch = pytest.importorskip("efficientnet_pytorch")
        # image_size=None selects dynamic "SAME" padding, as in DECAR's DeepCluster_ICASSP model.
        return efficientnet_pytorch.EfficientNet.from_name(
            "efficientnet-b0", include_top=False, in_channels=1, image_size=None, **overrides
        )

    def test_state_dict_layout_is_identical(self) -> None:
        efficientnet_pytorch = pytest.importorskip("efficientnet_pytorch")
        reference = efficientnet_pytorch.EfficientNet.from_name("efficientnet-b0", include_top=False, in_channels=1)
        ours = create_model("efficientnet_b0")
        expected = {key: value.shape for key, value in reference.state_dict().items()}
        assert {key: value.shape for key, value in ours.state_dict().items()} == expected
        assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in reference.parameters())

    @pytest.mark.parametrize("frames", [101, 64])
    def test_eval_outputs_match(self, frames: int) -> None:
        torch.manual_seed(0)
        reference = _calibrate(self._reference())
        ours = create_model("efficientnet_b0")
        ours.load_state_dict(reference.state_dict(), strict=True)
        ours.eval()
        x = _spectrogram(2, frames)
        with torch.no_grad():
            reference_map = reference.extract_features(x)
            _assert_close_to_scale(ours(x), reference_map.mean(dim=(2, 3)), 1e-4)
            _assert_close_to_scale(ours.forward_frames(x), reference_map.mean(dim=3).transpose(1, 2), 1e-4)

    def test_training_outputs_match_without_drop_connect(self) -> None:
        torch.manual_seed(0)
        reference = self._reference(drop_connect_rate=0.0).train()
        ours = EfficientNetB0(drop_connect_rate=0.0).train()
        ours.load_state_dict(reference.state_dict(), strict=True)
        x = _spectrogram(3, 77)
        with torch.no_grad():
            _assert_close_to_scale(ours(x), reference(x).flatten(1), 1e-4)


def test_an_unknown_model_argument_is_refused_not_dropped() -> None:
    from decar.models import create_model

    with pytest.raises(ValueError, match=r"takes no argument\(s\) 'd:128'.*takes: d, n_mels, dropout"):
        create_model("audiontt2020", **{"d:128": None})  # what YAML makes of `kwargs: {d:128}`
    assert create_model("audiontt2020", d=64, dropout=None).embed_dim == 64  # None still means the default
