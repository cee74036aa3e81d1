"""decar.hear against the checks of hear-validator 2021.0.2, which cannot be installed beside torch 2 itself."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from decar import hear
from decar.embed import NoBundledModelError
from decar.testing import write_random_checkpoint

LENGTHS_S = (1.07, 1.98, 4.0)  # the lengths HEAR's own checks use, both ragged and whole multiples of a hop
MODELS = {
    "efficientnet_b0": [],  # the paper's encoder, 320 ms frame hop
    "audiontt2020": ["model.name=audiontt2020", "model.kwargs={d: 64}"],  # 80 ms frame hop
}


@pytest.fixture(scope="module", params=list(MODELS))
def checkpoint(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp(request.param)
    return write_random_checkpoint(folder / "checkpoint.pt", MODELS[request.param])


@pytest.fixture(scope="module")
def model(checkpoint: Path) -> hear.HearModel:
    return hear.load_model(str(checkpoint))


def noise(n: int, seconds: float, seed: int = 0) -> torch.Tensor:
    """White noise in [-1, 1], as the validator feeds."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, round(seconds * 16000), generator=generator) * 2 - 1


def test_model_is_a_module_with_the_hear_attributes(model: hear.HearModel) -> None:
    assert isinstance(model, nn.Module)
    assert not model.training
    assert model.sample_rate == 16000
    for size in (model.scene_embedding_size, model.timestamp_embedding_size):
        assert isinstance(size, int)
        assert size == model.encoder.embed_dim


@pytest.mark.parametrize("path", ["", None])
def test_load_model_without_a_path_says_so_when_no_model_is_bundled(
    path: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("decar.embed.BUNDLED_MODEL", tmp_path / "missing.safetensors")
    with pytest.raises(NoBundledModelError, match="bundles no pretrained model") as error:
        hear.load_model(path)
    assert "checkpoint" in str(error.value)
    assert isinstance(error.value, FileNotFoundError)


@pytest.mark.parametrize("seconds", LENGTHS_S)
def test_timestamp_embeddings_pass_the_validator_checks(model: hear.HearModel, seconds: float) -> None:
    embeddings, timestamps = hear.get_timestamp_embeddings(noise(3, seconds), model)
    assert embeddings.dtype == torch.float32  # checked on the device, before any .cpu()
    assert embeddings.device == timestamps.device == next(model.parameters()).device
    n, frames, dim = embeddings.shape
    assert (n, dim) == (3, model.timestamp_embedding_size)
    assert frames >= 1
    assert timestamps.shape == (n, frames)
    assert torch.isfinite(embeddings).all()
    diff = torch.diff(timestamps)
    # hear-validator's test: every spacing within 1e-3 ms (its message says 1 ms) of the mean spacing
    assert torch.all((diff - diff.mean()).abs() < 1e-3)
    if frames > 1:
        assert diff.mean().item() == pytest.approx(model.encoder.frame_hop_ms)
    assert timestamps.min() >= 0
    assert timestamps.max() <= 1000 * seconds


@pytest.mark.parametrize("seconds", LENGTHS_S)
def test_scene_embeddings_pass_the_validator_checks(model: hear.HearModel, seconds: float) -> None:
    embeddings = hear.get_scene_embeddings(noise(3, seconds), model)
    assert embeddings.dtype == torch.float32
    assert embeddings.shape == (3, model.scene_embedding_size)
    assert torch.isfinite(embeddings).all()


def test_a_clip_gets_the_same_embeddings_alone_and_in_a_batch(model: hear.HearModel) -> None:
    audio = noise(3, 4.0, seed=1)
    batch_frames, batch_times = hear.get_timestamp_embeddings(audio, model)
    batch_scene = hear.get_scene_embeddings(audio, model)
    for i in range(len(audio)):
        frames, times = hear.get_timestamp_embeddings(audio[i : i + 1], model)
        torch.testing.assert_close(frames[0], batch_frames[i], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(times[0], batch_times[i])
        scene = hear.get_scene_embeddings(audio[i : i + 1], model)
        torch.testing.assert_close(scene[0], batch_scene[i], atol=1e-4, rtol=1e-4)


def test_embeddings_are_deterministic(model: hear.HearModel) -> None:
    audio = noise(2, 1.98, seed=2)
    first, second = (hear.get_timestamp_embeddings(audio, model) for _ in range(2))
    assert torch.equal(first[0], second[0])
    assert torch.equal(first[1], second[1])
    assert torch.equal(hear.get_scene_embeddings(audio, model), hear.get_scene_embeddings(audio, model))


def test_batch_size_option_bounds_memory_without_changing_results(checkpoint: Path, model: hear.HearModel) -> None:
    audio = noise(2, 4.0, seed=3)  # several encoder windows per clip
    one_at_a_time = hear.load_model(str(checkpoint), batch_size=1)
    torch.testing.assert_close(
        hear.get_scene_embeddings(audio, one_at_a_time), hear.get_scene_embeddings(audio, model), atol=1e-5, rtol=0
    )
    with pytest.raises(ValueError, match="batch_size"):
        hear.load_model(str(checkpoint), batch_size=0)


@pytest.mark.parametrize(
    ("audio", "error", "message"),
    [
        (torch.zeros(16000), ValueError, "shape"),
        (torch.zeros(1, 1, 16000), ValueError, "shape"),
        (torch.zeros(1, 16000, dtype=torch.int16), ValueError, "float"),
        (torch.zeros(0, 16000), ValueError, "at least one"),
        ([[0.0] * 16000], TypeError, "torch.Tensor"),
    ],
    ids=["1d", "3d", "int16", "empty", "list"],
)
def test_bad_audio_is_refused_clearly(
    model: hear.HearModel, audio: object, error: type[Exception], message: str
) -> None:
    for embed in (hear.get_timestamp_embeddings, hear.get_scene_embeddings):
        with pytest.raises(error, match=message):
            embed(audio, model)


def test_numpy_audio_gives_what_a_tensor_gives(model: hear.HearModel) -> None:
    audio = 0.1 * torch.randn(2, 16000, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(hear.get_scene_embeddings(audio.numpy(), model), hear.get_scene_embeddings(audio, model))
    frames, _times = hear.get_timestamp_embeddings(audio.numpy(), model)
    torch.testing.assert_close(frames, hear.get_timestamp_embeddings(audio, model)[0])
