"""decar.integrations.s3prl against s3prl's upstream contract, checked without s3prl installed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from decar.embed import NoBundledModelError
from decar.embed import load as decar_load
from decar.integrations.s3prl import UpstreamExpert, decar, decar_local
from decar.testing import write_random_checkpoint

MODELS = {
    "efficientnet_b0": ([], 5120),  # 160-sample hop x 32 log-mel frames per output frame
    "audiontt2020": (["model.name=audiontt2020", "model.kwargs={d: 64}"], 1280),  # x 8
}
LENGTHS = (3000, 17123, 40000)  # shorter than one output frame, ragged, several encoder windows


@pytest.fixture(scope="module", params=list(MODELS))
def model_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def checkpoint(model_name: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_checkpoint(tmp_path_factory.mktemp(model_name) / "checkpoint.pt", MODELS[model_name][0])


@pytest.fixture(scope="module")
def expert(checkpoint: Path) -> UpstreamExpert:
    return decar_local(str(checkpoint))


@pytest.fixture(scope="module")
def wavs() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.rand(n, generator=generator) * 2 - 1 for n in LENGTHS]


@pytest.fixture(scope="module")
def hidden(expert: UpstreamExpert, wavs: list[torch.Tensor]) -> torch.Tensor:
    return expert(wavs)["last_hidden_state"]


def alone(expert: UpstreamExpert, wav: torch.Tensor) -> torch.Tensor:
    """Frames of one wav passed on its own, without the padding row axis."""
    return expert([wav])["last_hidden_state"][0]


def test_output_follows_the_upstream_contract(expert: UpstreamExpert, wavs: list[torch.Tensor]) -> None:
    output = expert(wavs)
    assert set(output) == {"hidden_states", "last_hidden_state"}
    assert isinstance(output["hidden_states"], list) and len(output["hidden_states"]) == 1
    assert output["hidden_states"][0] is output["last_hidden_state"]
    hidden = output["last_hidden_state"]
    assert hidden.dtype == torch.float32 and hidden.device == wavs[0].device
    assert hidden.shape[0] == len(wavs) and hidden.shape[2] == expert.model.embed_dim


def test_downsample_rate_is_samples_per_frame(expert: UpstreamExpert, model_name: str) -> None:
    expected = MODELS[model_name][1]
    assert expert.get_downsample_rates("hidden_states") == expected
    assert expert.get_downsample_rates("last_hidden_state") == expected
    assert expected == round(expert.model.frame_hop_ms * 16)  # 16 samples per ms at 16 kHz


def test_frame_counts_follow_downsample_rate(
    expert: UpstreamExpert, wavs: list[torch.Tensor], hidden: torch.Tensor
) -> None:
    rate = expert.get_downsample_rates("hidden_states")
    counts = [len(alone(expert, wav)) for wav in wavs]
    _, timestamps = expert.model.embed_frames(wavs)
    assert counts == [len(t) for t in timestamps]  # embed_frames' rule: frames centred past the end are dropped
    for count, wav in zip(counts, wavs, strict=True):
        assert abs(count - len(wav) / rate) <= 1, (count, len(wav), rate)
    assert hidden.shape[1] == max(counts)


def test_shorter_wavs_are_zero_padded(expert: UpstreamExpert, wavs: list[torch.Tensor], hidden: torch.Tensor) -> None:
    for row, wav in zip(hidden, wavs, strict=True):
        count = len(alone(expert, wav))
        assert row[:count].abs().sum(dim=1).gt(0).all()
        assert torch.equal(row[count:], torch.zeros_like(row[count:]))
    assert len(alone(expert, wavs[0])) < hidden.shape[1]  # the test above did see padding


def test_batched_frames_equal_frames_alone(
    expert: UpstreamExpert, wavs: list[torch.Tensor], hidden: torch.Tensor
) -> None:
    for row, wav in zip(hidden, wavs, strict=True):
        single = alone(expert, wav)
        torch.testing.assert_close(row[: len(single)], single, atol=1e-4, rtol=1e-4)


def test_frozen_even_when_s3prl_asks_for_training(
    expert: UpstreamExpert, wavs: list[torch.Tensor], hidden: torch.Tensor
) -> None:
    assert not hidden.requires_grad
    try:
        expert.train()
        assert expert.training and not expert.model.training
        with torch.no_grad():
            torch.testing.assert_close(expert(wavs)["last_hidden_state"], hidden)
    finally:
        expert.eval()


@pytest.mark.parametrize(
    ("wavs", "error", "match"),
    [
        (torch.zeros(2, 16000), TypeError, "list of 1-D"),
        ([], ValueError, "empty"),
        ([torch.zeros(2, 16000)], ValueError, r"wavs\[0\] must be a non-empty 1-D"),
        ([torch.zeros(16000), torch.zeros(0)], ValueError, r"wavs\[1\] must be a non-empty 1-D"),
        ([[0.0] * 16000], TypeError, "must be a torch.Tensor"),
        ([torch.zeros(16000, dtype=torch.int16)], ValueError, "float tensor"),
    ],
)
def test_bad_input_is_named(expert: UpstreamExpert, wavs: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        expert(wavs)


def test_hubconf_factories_take_s3prl_arguments(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expert = decar_local(ckpt=str(checkpoint), model_config=None, refresh=False)  # how s3prl's runner calls it
    assert isinstance(expert, UpstreamExpert) and isinstance(expert, torch.nn.Module)
    with pytest.raises(ValueError, match="carry their own config"):
        UpstreamExpert(str(checkpoint), model_config="config.yaml")
    shipped = decar(ckpt=str(checkpoint), model_config=None, refresh=False)  # the bundled model, whatever ckpt says
    assert shipped.model.config == decar_load().config
    monkeypatch.setattr("decar.embed.BUNDLED_MODEL", tmp_path / "missing.safetensors")
    with pytest.raises(NoBundledModelError, match="bundles no pretrained model"):
        decar(ckpt=None, model_config=None, refresh=False)
