"""The user-facing embedding API: decar.load, AudioEncoder.embed / embed_frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soxr
import torch

import decar
from decar.embed import NoBundledModelError
from decar.testing import write_random_checkpoint


@pytest.fixture(scope="module", params=["efficientnet_b0", "audiontt2020"])
def model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> decar.AudioEncoder:
    overrides = [] if request.param == "efficientnet_b0" else ["model.name=audiontt2020", "model.kwargs={d: 64}"]
    return decar.load(write_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt", overrides))


def _noise(seconds: float, seed: int = 0, rate: int = 16000) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(round(seconds * rate)) * 0.1).astype(np.float32)


def test_load_without_path_says_so_when_no_model_is_bundled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("decar.embed.BUNDLED_MODEL", tmp_path / "missing.safetensors")
    with pytest.raises(NoBundledModelError, match="bundles no pretrained model"):
        decar.load()


def test_load_without_path_returns_the_bundled_model_once_one_ships(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundled = write_random_checkpoint(tmp_path / "decar.pt")
    monkeypatch.setattr("decar.embed.BUNDLED_MODEL", bundled)
    assert decar.load().embed(_noise(1.0)).shape == decar.load(bundled).embed(_noise(1.0)).shape


def test_loaded_model_is_in_eval_mode_and_matches_checkpoint(model: decar.AudioEncoder) -> None:
    assert not model.training and not model.encoder.training
    assert model.sample_rate == 16000 and model.embed_dim == model.encoder.embed_dim


def test_input_shapes_and_types(model: decar.AudioEncoder) -> None:
    one = _noise(1.0)
    assert model.embed(one).shape == (1, model.embed_dim)
    assert model.embed(np.stack([one, one])).shape == (2, model.embed_dim)
    assert model.embed(torch.from_numpy(one)).dtype == np.float32
    assert model.embed([one, _noise(2.5, 1), torch.from_numpy(_noise(0.3, 2))]).shape == (3, model.embed_dim)


def test_batched_equals_one_by_one_and_calls_repeat_exactly(model: decar.AudioEncoder) -> None:
    clips = [_noise(s, i) for i, s in enumerate((1.0, 1.7, 0.2, 3.1))]
    batched = model.embed(clips)
    single = np.concatenate([model.embed(c) for c in clips])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    np.testing.assert_array_equal(model.embed(clips), batched)
    assert np.isfinite(batched).all()


def test_clip_embedding_is_duration_weighted_mean_of_windows(model: decar.AudioEncoder) -> None:
    hop = model.config.frontend.hop_length
    window_samples = model.window_frames * hop
    clip = _noise(3 * window_samples / 16000 * 0.999, seed=5)
    windows = [w for w in model.windows([clip])]
    assert len(windows) == 3
    parts = [model.embed(clip[w.start : w.stop])[0] for w in windows]
    expected = sum(w.frames * p for w, p in zip(windows, parts, strict=True)) / sum(w.frames for w in windows)
    np.testing.assert_allclose(model.embed(clip)[0], expected, atol=1e-5)


def test_other_sample_rates_are_resampled(model: decar.AudioEncoder) -> None:
    t = np.arange(32000) / 32000
    tone_32k = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    tone_16k = tone_32k[::2].copy()
    a, b = model.embed(tone_32k, sample_rate=32000)[0], model.embed(tone_16k)[0]
    resampled = soxr.resample(tone_32k, 32000, 16000, quality="HQ")
    np.testing.assert_allclose(a, model.embed(resampled)[0], rtol=1e-6, atol=1e-6)
    assert np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b) > 0.95  # filter edges differ from plain decimation


def test_frames_are_evenly_spaced_and_inside_the_audio(model: decar.AudioEncoder) -> None:
    for seconds in (1.07, 1.98, 4.0):
        embeddings, timestamps = model.embed_frames(np.stack([_noise(seconds), _noise(seconds, 1)]))
        assert embeddings.shape[:2] == timestamps.shape and embeddings.shape[2] == model.embed_dim
        spacing = np.diff(timestamps, axis=1)
        np.testing.assert_allclose(spacing, model.frame_hop_ms, atol=1e-6)
        assert timestamps[:, -1].max() <= seconds * 1000
        assert timestamps[0, 0] >= 0


def test_frames_do_not_depend_on_window_borders_or_batching(model: decar.AudioEncoder) -> None:
    window_samples = model.window_frames * model.config.frontend.hop_length
    clip = _noise(2.5 * window_samples / 16000, seed=3)
    frames, _ = model.embed_frames(clip)
    first_window_samples = window_samples - model.config.frontend.hop_length + model.config.frontend.win_length
    first_window, _ = model.embed_frames(clip[:first_window_samples])
    n = first_window.shape[1]
    np.testing.assert_allclose(frames[0, :n], first_window[0], atol=1e-5)
    varied, times = model.embed_frames([clip, _noise(0.15, 9)])
    assert isinstance(varied, list) and len(times[1]) == len(varied[1])
    np.testing.assert_allclose(varied[0], frames[0], atol=1e-5)


def test_long_audio_is_processed_in_bounded_windows(model: decar.AudioEncoder, monkeypatch) -> None:
    seen: list[int] = []
    original = model.frontend.forward

    def recording(waveform: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        seen.append(waveform.shape[-1])
        return original(waveform, normalize)

    monkeypatch.setattr(model.frontend, "forward", recording)
    clip = _noise(30.0)
    model.embed(clip, batch_size=4)
    longest_window = model.window_frames * 3 // 2
    window_samples = (longest_window - 1) * model.config.frontend.hop_length + model.config.frontend.win_length
    assert max(seen) <= window_samples and sum(seen) >= clip.size * 0.95


@pytest.mark.parametrize(
    ("audio", "message"),
    [
        (np.zeros(0, dtype=np.float32), "non-empty"),
        (np.full(1000, np.nan, dtype=np.float32), "NaN"),
        (np.zeros(1000, dtype=np.int16), "float"),
        (np.zeros((1, 1, 1000), dtype=np.float32), "shape"),
        ([], "no audio"),
        (torch.zeros(1000, dtype=torch.int16), r"dtype int16; .*divide by 32768"),
        (np.full(1000, 1e30, dtype=np.float32), r"peaks at 1e\+30"),
        (np.float32(0.5), "shape"),
    ],
)
def test_bad_audio_is_a_clear_error(model: decar.AudioEncoder, audio, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        model.embed(audio)


@pytest.mark.parametrize(
    ("sample_rate", "message"),
    [(1, r"in \[1000, 768000\]"), (1e9, r"in \[1000, 768000\]"), (16000.7, "whole number"), ("16k", "number")],
)
def test_sample_rates_are_bounded(model: decar.AudioEncoder, sample_rate: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        model.embed(np.zeros(16000, dtype=np.float32), sample_rate=sample_rate)


@pytest.mark.parametrize("batch_size", [0, -1])
def test_batch_size_must_be_positive(model: decar.AudioEncoder, batch_size: int) -> None:
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        model.embed(np.zeros(16000, dtype=np.float32), batch_size=batch_size)


def test_paths_are_read_as_audio_files(model: decar.AudioEncoder, tmp_path: Path) -> None:
    import soundfile as sf

    wave = (0.1 * np.sin(np.arange(8000) / 8000 * 2 * np.pi * 440)).astype(np.float32)
    sf.write(tmp_path / "a.wav", wave, 8000, subtype="FLOAT")
    from_file = model.embed(tmp_path / "a.wav")
    from_wave = model.embed(wave, sample_rate=8000)
    np.testing.assert_allclose(from_file, from_wave, rtol=1e-4, atol=1e-5)
    assert model.embed([str(tmp_path / "a.wav")] * 2).shape == (2, model.embed_dim)


def test_checkpoint_errors_name_the_file(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(b"nope")
    with pytest.raises(ValueError, match="bogus"):
        decar.load(bogus)


def test_a_clip_of_training_length_is_one_window(model: decar.AudioEncoder) -> None:
    fe = model.config.frontend
    crop = _noise(model.config.data.crop_seconds, seed=4)
    (window,) = model.windows([crop])
    assert window.frames == fe.frames(crop.size)
    logmel = model.frontend(torch.from_numpy(crop))
    np.testing.assert_allclose(model.embed(crop)[0], model.encoder(logmel)[0].detach().numpy(), atol=1e-5)


@pytest.mark.parametrize(("precision", "channels_last"), [("fp32", True), ("bf16", False), ("bf16", True)])
def test_fast_paths_agree_with_fp32(tmp_path: Path, precision: str, channels_last: bool) -> None:
    checkpoint = write_random_checkpoint(tmp_path / "model.pt")
    clips = [_noise(1.3, 0), _noise(0.7, 1)]
    reference = decar.load(checkpoint).embed(clips)
    fast = decar.load(checkpoint, precision=precision, channels_last=channels_last).embed(clips)
    assert fast.dtype == np.float32
    cosine = (fast * reference).sum(1) / np.linalg.norm(fast, axis=1) / np.linalg.norm(reference, axis=1)
    assert cosine.min() > (0.99999 if precision == "fp32" else 0.99)
    with pytest.raises(ValueError, match="precision"):
        decar.load(checkpoint, precision="fp16")


def test_window_batches_group_equal_windows_and_give_what_embed_averages(model: decar.AudioEncoder) -> None:
    fe = model.config.frontend
    window_seconds = model.window_frames * fe.hop_length / fe.sample_rate
    clips = [_noise(s * window_seconds, i) for i, s in enumerate((3.1, 0.4, 2.0, 1.0, 0.4))]
    windows = model.windows(clips)

    batches = list(model.window_batches(clips, batch_size=2))
    assert sorted((w.clip, w.first_frame) for group, _ in batches for w in group) == sorted(
        (w.clip, w.first_frame) for w in windows
    )
    for group, logmel in batches:
        assert 1 <= len(group) <= 2 and len({w.frames for w in group}) == 1
        assert tuple(logmel.shape) == (len(group), 1, group[0].frames, fe.n_mels)
    whole = list(model.window_batches(clips))
    assert len(whole) == len({w.frames for w in windows}) < len(batches)  # None: one batch per window length

    sums = np.zeros((len(clips), model.embed_dim))
    weights = np.zeros(len(clips))
    with torch.no_grad():
        for group, logmel in whole:
            for window, embedding in zip(group, model.encoder(logmel).numpy(), strict=True):
                sums[window.clip] += window.frames * embedding
                weights[window.clip] += window.frames
    np.testing.assert_allclose(sums / weights[:, None], model.embed(clips), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="batch_size"):
        next(model.window_batches(clips, batch_size=0))


def test_a_clip_too_short_for_pretraining_is_too_short_to_embed(model: decar.AudioEncoder) -> None:
    from decar.config import DecarConfig

    assert DecarConfig().data.min_seconds == pytest.approx(0.05)
    with pytest.raises(ValueError, match=r"too short \(0\.0006 s < 0\.05 s\)"):
        model.embed(np.zeros(10, dtype=np.float32))
    assert model.embed(np.zeros(800, dtype=np.float32)).shape == (1, model.embed_dim)  # exactly 0.05 s
