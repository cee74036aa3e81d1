"""Every model spec of the evaluation suite loads, embeds, fits its statistics and fingerprints what it embeds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import decar
from decar.checkpoint import CheckpointError, export_encoder, load_checkpoint
from decar.config import ConfigError
from decar.evaluate.models import (
    BYOLA_WINDOW_SECONDS,
    EncoderModel,
    LogMelStatsModel,
    load_eval_model,
)
from decar.fingerprint import model_fingerprint
from decar.frontend import FrontendConfig, LogMelSpectrogram, compute_norm_stats
from decar.models import create_model
from decar.testing import SOUND_KINDS, synthetic_clip, write_random_checkpoint

SR = 16000
NTT = ["model.name=audiontt2020", "model.kwargs={d: 32}"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ntt_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_checkpoint(tmp_path_factory.mktemp("ntt") / "checkpoint.pt", NTT)


@pytest.fixture(scope="module")
def effnet_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_checkpoint(tmp_path_factory.mktemp("effnet") / "checkpoint.pt", seed=5)


@pytest.fixture(scope="module")
def byola_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("byola") / "AudioNTT2020-BYOLA-64x96d64.pth"
    torch.save(create_model("audiontt2020", d=64).state_dict(), path)
    return path


def clips(seed: int, seconds: tuple[float, ...] = (0.3, 0.7, 1.1)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [synthetic_clip(SOUND_KINDS[i % len(SOUND_KINDS)], s, SR, rng) for i, s in enumerate(seconds)]


def check_embeddings(array: np.ndarray, count: int, dim: int) -> None:
    assert array.dtype == np.float32
    assert array.shape == (count, dim)
    assert np.isfinite(array).all()


def test_decar_checkpoint_spec_embeds_like_decar_load(ntt_checkpoint: Path) -> None:
    model = load_eval_model(str(ntt_checkpoint))
    assert model.audio_encoder is not None
    assert (model.sample_rate, model.embed_dim) == (SR, 32)
    assert "audiontt2020" in model.name and "checkpoint.pt" in model.name
    waves = clips(0)
    embeddings = model.embed(waves)
    check_embeddings(embeddings, 3, 32)
    np.testing.assert_allclose(embeddings, decar.load(ntt_checkpoint).embed(waves), rtol=1e-5, atol=1e-6)
    fingerprint = model.fingerprint
    model.prepare(clips(1))  # a decar checkpoint carries its own statistics: nothing to fit
    assert model.fingerprint == fingerprint == load_eval_model(str(ntt_checkpoint)).fingerprint


def test_fingerprint_identifies_weights_not_file(ntt_checkpoint: Path, tmp_path: Path) -> None:
    exported = tmp_path / "encoder.safetensors"
    export_encoder(exported, load_checkpoint(ntt_checkpoint))
    other = write_random_checkpoint(tmp_path / "other.pt", NTT, seed=1)
    fingerprint = load_eval_model(str(ntt_checkpoint)).fingerprint
    assert load_eval_model(str(exported)).fingerprint == fingerprint
    assert load_eval_model(str(other)).fingerprint != fingerprint


def test_encoder_fingerprint_is_the_shared_model_fingerprint_plus_kind(ntt_checkpoint: Path) -> None:
    fp32, bf16 = decar.load(ntt_checkpoint), decar.load(ntt_checkpoint, precision="bf16")
    assert model_fingerprint(fp32) != model_fingerprint(bf16)
    fingerprint = EncoderModel("a", "decar", fp32).fingerprint
    assert EncoderModel("b", "decar", decar.load(ntt_checkpoint)).fingerprint == fingerprint  # the name is not in it
    assert EncoderModel("a", "decar", bf16).fingerprint != fingerprint
    assert EncoderModel("a", "random", fp32).fingerprint != fingerprint


def test_evaluation_never_imports_pretraining() -> None:
    """Evaluation must run without the training stack: no module of decar.evaluate may pull in decar.pretrain."""
    code = (
        "import importlib, pkgutil, sys, decar.evaluate as e\n"
        "for m in pkgutil.walk_packages(e.__path__, 'decar.evaluate.'): importlib.import_module(m.name)\n"
        "print(sorted(n for n in sys.modules if n.startswith('decar.evaluate')))\n"
        "print('decar.pretrain' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    imported, pretrain = result.stdout.splitlines()
    assert "decar.evaluate.models" in imported and "decar.evaluate.protocols" in imported
    assert pretrain == "False"


def test_random_spec_reinitialises_weights_and_fits_batchnorm(effnet_checkpoint: Path) -> None:
    model = load_eval_model(f"random:{effnet_checkpoint}")
    trained = decar.load(effnet_checkpoint)
    assert model.name == "random-init (efficientnet_b0)"
    assert model.audio_encoder is not None
    encoder = model.audio_encoder
    assert float(encoder.frontend.norm_mean) == float(trained.frontend.norm_mean)
    assert float(encoder.frontend.norm_std) == float(trained.frontend.norm_std)
    trained_weights, random_weights = trained.encoder.state_dict(), encoder.encoder.state_dict()
    assert trained_weights.keys() == random_weights.keys()
    assert not torch.equal(trained_weights["_conv_stem.weight"], random_weights["_conv_stem.weight"])
    with pytest.raises(RuntimeError, match="prepare"):
        model.embed(clips(0))

    untrained = model.fingerprint
    model.prepare(clips(1, (0.4, 1.0, 2.0, 0.9)))
    embeddings = model.embed(clips(0))
    check_embeddings(embeddings, 3, model.embed_dim)
    assert embeddings.std(axis=0).mean() > 1e-3  # BatchNorm fitted to real inputs: features do not vanish
    assert model.fingerprint != untrained

    again = load_eval_model(f"random:{effnet_checkpoint}")  # fixed seed: the same network every time
    again.prepare(clips(1, (0.4, 1.0, 2.0, 0.9)))
    assert again.fingerprint == model.fingerprint
    np.testing.assert_array_equal(again.embed(clips(0)), embeddings)
    again.prepare(clips(2, (0.5, 0.8, 1.2)))
    assert again.fingerprint != model.fingerprint


def test_logmel_stats_is_per_bin_mean_and_std(monkeypatch: pytest.MonkeyPatch) -> None:
    model = load_eval_model("logmel-stats")
    assert isinstance(model, LogMelStatsModel)
    assert (model.name, model.sample_rate, model.embed_dim, model.audio_encoder) == ("log-mel stats", SR, 128, None)
    waves = clips(0, (0.01, 0.3, 0.75))  # the first is shorter than one analysis window
    frontend = LogMelSpectrogram(FrontendConfig())
    expected = []
    for wave in waves:
        logmel = frontend(torch.from_numpy(wave), normalize=False)[0, 0].double().numpy()
        expected.append(np.concatenate([logmel.mean(axis=0), logmel.std(axis=0)]))
    embeddings = model.embed(waves)
    check_embeddings(embeddings, 3, 128)
    np.testing.assert_allclose(embeddings, np.array(expected), rtol=1e-5, atol=1e-5)
    monkeypatch.setattr("decar.evaluate.models.LOGMEL_CHUNK_FRAMES", 7)  # long clips are summed piece by piece
    np.testing.assert_allclose(model.embed(waves), embeddings, rtol=1e-5, atol=1e-5)
    assert model.fingerprint == load_eval_model("logmel-stats").fingerprint


def test_byola_spec_uses_byola_frontend_and_training_statistics(byola_weights: Path) -> None:
    model = load_eval_model(f"byola:{byola_weights}")
    assert model.name == "BYOL-A d64 (AudioNTT2020-BYOLA-64x96d64.pth)"
    assert (model.sample_rate, model.embed_dim) == (SR, 64)
    assert model.audio_encoder is not None
    fe = model.audio_encoder.config.frontend
    assert (fe.n_fft, fe.win_length, fe.hop_length, fe.n_mels, fe.f_min, fe.f_max) == (1024, 1024, 160, 64, 60, 7800)
    assert (fe.power, fe.log_mode, fe.center, fe.filterbank, fe.mel_scale) == (2.0, "offset", True, "librosa", "htk")
    with pytest.raises(RuntimeError, match="prepare"):
        model.embed(clips(0))

    train = clips(1, (0.5, 1.0, 1.5))
    unfitted = model.fingerprint
    model.prepare(train)
    raw = LogMelSpectrogram(fe)
    mean, std = compute_norm_stats(raw(torch.from_numpy(w), normalize=False) for w in train)
    frontend = model.audio_encoder.frontend
    assert float(frontend.norm_mean) == pytest.approx(mean, rel=1e-6)
    assert float(frontend.norm_std) == pytest.approx(std, rel=1e-6)
    assert model.fingerprint != unfitted

    waves = clips(0, (0.3, 2.5))
    embeddings = model.embed(waves)
    check_embeddings(embeddings, 2, 64)
    # BYOL-A's protocol: the encoder (max + mean over time) on the whole clip's normalised log-mel.
    encoder = model.audio_encoder.encoder
    with torch.inference_mode():
        whole = encoder(frontend(torch.from_numpy(waves[1]))).numpy()[0]
    np.testing.assert_allclose(embeddings[1], whole, rtol=1e-4, atol=1e-5)

    again = load_eval_model(f"byola:{byola_weights}")
    again.prepare(train)
    assert again.fingerprint == model.fingerprint
    np.testing.assert_array_equal(again.embed(waves), embeddings)
    again.prepare(clips(2))
    assert again.fingerprint != model.fingerprint
    assert not np.allclose(again.embed(waves), embeddings)


def test_byola_clips_longer_than_one_and_a_half_windows_are_averaged_over_windows(byola_weights: Path) -> None:
    model = load_eval_model(f"byola:{byola_weights}")
    assert model.audio_encoder is not None
    frames_per_window = model.audio_encoder.window_frames
    assert BYOLA_WINDOW_SECONDS <= frames_per_window * 160 / SR < BYOLA_WINDOW_SECONDS + 0.1
    wave = clips(4, (1.6 * BYOLA_WINDOW_SECONDS,))
    model.prepare(wave)
    embedding = model.embed(wave)[0]
    frontend, encoder = model.audio_encoder.frontend, model.audio_encoder.encoder
    with torch.inference_mode():
        logmel = frontend(torch.from_numpy(wave[0]))
        head, tail = logmel[:, :, :frames_per_window], logmel[:, :, frames_per_window:]
        expected = (head.shape[2] * encoder(head) + tail.shape[2] * encoder(tail)) / logmel.shape[2]
    np.testing.assert_allclose(embedding, expected.numpy()[0], rtol=1e-4, atol=1e-4)


def test_hear_spec_runs_a_hear_module(ntt_checkpoint: Path) -> None:
    model = load_eval_model(f"hear:decar.hear:{ntt_checkpoint}")
    assert (model.sample_rate, model.embed_dim, model.audio_encoder) == (SR, 32, None)
    assert "decar.hear" in model.name
    waves = clips(0, (0.5, 0.3, 0.5, 0.8))  # equal lengths share a HEAR batch, the others go alone
    embeddings = model.embed(waves)
    check_embeddings(embeddings, 4, 32)
    np.testing.assert_allclose(embeddings, decar.load(ntt_checkpoint).embed(waves), rtol=1e-5, atol=1e-6)
    assert model.fingerprint == load_eval_model(f"hear:decar.hear:{ntt_checkpoint}").fingerprint
    assert model.fingerprint != load_eval_model(str(ntt_checkpoint)).fingerprint


@pytest.mark.parametrize(
    ("spec", "error", "match"),
    [
        ("wav2vec", ValueError, "unknown model spec 'wav2vec'.*logmel-stats.*byola:.*hear:"),
        ("weights.onnx", ValueError, "unknown model spec"),
        ("hear:no_such_hear_module_xyz", ValueError, "cannot import HEAR module 'no_such_hear_module_xyz'"),
        ("hear:json", ValueError, "has no load_model"),
        ("hear:", ValueError, "name the HEAR module"),
        ("byola:/nonexistent/d512.pth", ValueError, "BYOL-A weights not found: /nonexistent/d512.pth"),
        ("random:/nonexistent/checkpoint.pt", CheckpointError, "not found: /nonexistent/checkpoint.pt"),
        ("/nonexistent/checkpoint.pt", CheckpointError, "not found: /nonexistent/checkpoint.pt"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        load_eval_model(spec)


def test_fitted_models_need_training_audio(byola_weights: Path) -> None:
    model = load_eval_model(f"byola:{byola_weights}")
    with pytest.raises(ValueError, match="needs training audio"):
        model.prepare([])


@pytest.mark.parametrize("config", ["decar.yaml", "audiontt.yaml"])
def test_random_spec_from_a_config_fits_normalisation_and_batchnorm(config: str) -> None:
    path = Path(__file__).resolve().parents[2] / "configs" / config
    model = load_eval_model(f"random:{path}")
    assert model.audio_encoder is not None
    frontend = model.audio_encoder.frontend
    assert (float(frontend.norm_mean), float(frontend.norm_std)) == (0.0, 1.0)  # nothing fitted yet
    model.prepare(clips(1, (0.4, 1.0, 2.0, 0.9)))
    assert float(frontend.norm_mean) != 0.0 and float(frontend.norm_std) != 1.0
    embeddings = model.embed(clips(0))
    check_embeddings(embeddings, 3, model.embed_dim)
    assert embeddings.std(axis=0).mean() > 1e-3
    again = load_eval_model(f"random:{path}")
    again.prepare(clips(1, (0.4, 1.0, 2.0, 0.9)))
    np.testing.assert_allclose(again.embed(clips(0)), embeddings, rtol=1e-5, atol=1e-6)


def test_random_spec_with_a_missing_config_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.yaml"):
        load_eval_model(f"random:{tmp_path / 'missing.yaml'}")
