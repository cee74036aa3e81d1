"""LogMelSpectrogram against an independent numpy/scipy computation, plus framing, batching and statistics."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy.signal import get_window

from decar.frontend import FrontendConfig, LogMelSpectrogram, compute_norm_stats, mel_filterbank

BYOLA = FrontendConfig(win_length=1024, power=2.0, log_mode="offset", center=True, filterbank="librosa")


def reference_mel(hz: float, scale: str) -> float:
    """HTK: 1127 ln(1 + f/700) (TF's constant); Slaney: 3 mel / 200 Hz up to 1 kHz, then 27 mel per ln 6.4."""
    if scale == "htk":
        return 1127.0 * math.log(1.0 + hz / 700.0)
    if hz < 1000.0:
        return 3.0 * hz / 200.0
    return 15.0 + 27.0 * math.log(hz / 1000.0) / math.log(6.4)


def reference_hz(mel: float, scale: str) -> float:
    if scale == "htk":
        return 700.0 * (math.exp(mel / 1127.0) - 1.0)
    if mel < 15.0:
        return 200.0 * mel / 3.0
    return 1000.0 * 6.4 ** ((mel - 15.0) / 27.0)


def reference_filterbank(cfg: FrontendConfig) -> np.ndarray:
    """Triangle by triangle, bin by bin: in the mel domain for "tf" (DC skipped), in Hz for "librosa"."""
    num_bins = cfg.n_fft // 2 + 1
    low_mel, high_mel = reference_mel(cfg.f_min, cfg.mel_scale), reference_mel(cfg.f_max, cfg.mel_scale)
    step = (high_mel - low_mel) / (cfg.n_mels + 1)
    weights = np.zeros((num_bins, cfg.n_mels))
    first_bin = 1 if cfg.filterbank == "tf" else 0
    for band in range(cfg.n_mels):
        edges_mel = [low_mel + (band + i) * step for i in range(3)]
        if cfg.filterbank == "tf":
            lo, mid, hi = edges_mel
        else:
            lo, mid, hi = (reference_hz(m, cfg.mel_scale) for m in edges_mel)
        for k in range(first_bin, num_bins):
            hz = k * cfg.sample_rate / cfg.n_fft
            x = reference_mel(hz, cfg.mel_scale) if cfg.filterbank == "tf" else hz
            if lo < x <= mid:
                weights[k, band] = (x - lo) / (mid - lo)
            elif mid < x < hi:
                weights[k, band] = (hi - x) / (hi - mid)
    return weights


def reference_logmel(signal: np.ndarray, cfg: FrontendConfig) -> np.ndarray:
    """(frames, n_mels) log-mel of a 1-D float64 signal, by explicit framing and numpy rfft."""
    window = get_window(cfg.window, cfg.win_length, fftbins=True)
    if cfg.center:
        padded = np.pad(signal, cfg.n_fft // 2, mode="reflect")
        full_window = np.zeros(cfg.n_fft)
        start = (cfg.n_fft - cfg.win_length) // 2
        full_window[start : start + cfg.win_length] = window
        frames = [
            padded[i : i + cfg.n_fft] * full_window for i in range(0, len(padded) - cfg.n_fft + 1, cfg.hop_length)
        ]
    else:
        frames = [
            signal[i : i + cfg.win_length] * window for i in range(0, len(signal) - cfg.win_length + 1, cfg.hop_length)
        ]
    spectrum = np.abs(np.fft.rfft(np.stack(frames), n=cfg.n_fft, axis=-1)) ** cfg.power
    mel = spectrum @ reference_filterbank(cfg)
    if cfg.log_mode == "clip":
        return np.log(np.maximum(mel, cfg.log_floor))
    return np.log(mel + cfg.log_floor)


@pytest.fixture(scope="module")
def signal() -> np.ndarray:
    """1.3 s of noise with a tone, at 16 kHz."""
    rng = np.random.default_rng(0)
    t = np.arange(int(1.3 * 16000)) / 16000
    return 0.1 * rng.standard_normal(t.size) + 0.3 * np.sin(2 * np.pi * 440.0 * t)


@pytest.mark.parametrize(
    "cfg",
    [
        FrontendConfig(),
        BYOLA,
        FrontendConfig(power=2.0, log_mode="offset", center=True),
        FrontendConfig(mel_scale="slaney"),
        FrontendConfig(mel_scale="slaney", filterbank="librosa"),
        FrontendConfig(window="hamming", f_min=0.0, f_max=8000.0),
    ],
    ids=["decar-v1", "byol-a", "tf-power-center", "tf-slaney", "librosa-slaney", "hamming-full-band"],
)
def test_matches_numpy_reference(signal: np.ndarray, cfg: FrontendConfig) -> None:
    expected = reference_logmel(signal, cfg)
    actual = LogMelSpectrogram(cfg)(torch.from_numpy(signal).float(), normalize=False)
    assert actual.dtype == torch.float32
    assert actual.shape == (1, 1, cfg.frames(signal.size), cfg.n_mels)
    assert expected.shape == actual.shape[2:]
    # Differences of logs are relative differences of the mel energies.
    np.testing.assert_allclose(actual[0, 0].double().numpy(), expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("cfg", [FrontendConfig(), BYOLA, FrontendConfig(mel_scale="slaney", n_fft=512)])
def test_filterbank_matches_reference(cfg: FrontendConfig) -> None:
    weights = mel_filterbank(cfg)
    assert weights.shape == (cfg.n_fft // 2 + 1, cfg.n_mels)
    np.testing.assert_allclose(weights, reference_filterbank(cfg), atol=1e-9)


def test_tf_filterbank_ignores_dc() -> None:
    weights = mel_filterbank(FrontendConfig(f_min=0.0))
    assert weights[0].max() == 0.0
    assert weights[1].max() > 0.0


def test_ten_seconds_give_998_frames() -> None:
    cfg = FrontendConfig()
    assert cfg.frames(160000) == 998
    output = LogMelSpectrogram(cfg)(torch.zeros(160000))
    assert output.shape == (1, 1, 998, 64)


@pytest.mark.parametrize("cfg", [FrontendConfig(), BYOLA])
@pytest.mark.parametrize("num_samples", [1, 150, 399, 400, 513])
def test_short_input_gives_at_least_one_frame(cfg: FrontendConfig, num_samples: int) -> None:
    waveform = torch.randn(num_samples, generator=torch.Generator().manual_seed(num_samples))
    output = LogMelSpectrogram(cfg)(waveform)
    assert output.shape == (1, 1, cfg.frames(num_samples), cfg.n_mels)
    assert output.shape[2] >= 1
    assert torch.isfinite(output).all()


def test_short_input_equals_zero_padded_input() -> None:
    frontend = LogMelSpectrogram()
    short = torch.randn(250, generator=torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(short, (0, 150))
    torch.testing.assert_close(frontend(short), frontend(padded))


@pytest.mark.parametrize(
    "cfg",
    [FrontendConfig(), BYOLA, FrontendConfig(l2_normalize_waveform=True), FrontendConfig(rms_normalize_waveform=True)],
)
def test_batch_equals_per_item_and_is_deterministic(cfg: FrontendConfig) -> None:
    frontend = LogMelSpectrogram(cfg)
    batch = torch.randn(3, 8000, generator=torch.Generator().manual_seed(2))
    batched = frontend(batch)
    singles = torch.cat([frontend(item) for item in batch])
    torch.testing.assert_close(batched, singles, rtol=1e-5, atol=1e-5)
    assert torch.equal(batched, frontend(batch))


def test_l2_normalisation_makes_output_gain_invariant() -> None:
    frontend = LogMelSpectrogram(FrontendConfig(l2_normalize_waveform=True))
    waveform = torch.randn(1, 4000, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(frontend(waveform), frontend(7.5 * waveform), rtol=1e-4, atol=1e-4)
    assert not torch.allclose(LogMelSpectrogram()(waveform), LogMelSpectrogram()(7.5 * waveform))


def test_rms_normalisation_is_blind_to_gain_and_to_length() -> None:
    """A signal repeated 4 times has the frames of the signal once, at any gain; L2 normalisation makes it quieter."""
    once = torch.randn(1, 4000, generator=torch.Generator().manual_seed(3))  # 25 hops: repeats stay frame-aligned
    four = once.repeat(1, 4)
    rms = LogMelSpectrogram(FrontendConfig(rms_normalize_waveform=True))
    frames = rms(once).shape[2]
    torch.testing.assert_close(rms(0.05 * four)[:, :, :frames], rms(once), rtol=1e-4, atol=1e-4)
    l2 = LogMelSpectrogram(FrontendConfig(l2_normalize_waveform=True))
    gap = (l2(once) - l2(four)[:, :, :frames]).mean()
    assert float(gap) == pytest.approx(math.log(2.0), abs=1e-3)  # magnitude divided by a norm 2x larger


def test_rms_normalisation_does_not_amplify_near_silence() -> None:
    quiet = 1e-7 * torch.randn(1, 4000, generator=torch.Generator().manual_seed(4))
    rms = LogMelSpectrogram(FrontendConfig(rms_normalize_waveform=True))
    assert float(rms(quiet).mean()) < float(rms(1e4 * quiet).mean()) - 5


def test_one_waveform_normalisation_at_a_time() -> None:
    with pytest.raises(ValueError, match="choose one of"):
        FrontendConfig(l2_normalize_waveform=True, rms_normalize_waveform=True).validate()


def test_norm_stats_of_known_data() -> None:
    items = [np.array([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([5.0, 6.0, 7.0, 8.0, 9.0]), np.zeros((0, 64))]
    mean, std = compute_norm_stats(items)
    everything = np.arange(1.0, 10.0)
    assert mean == pytest.approx(everything.mean())
    assert std == pytest.approx(everything.std())


def test_norm_stats_are_stable_for_large_offsets() -> None:
    rng = np.random.default_rng(4)
    items = [1e4 + rng.standard_normal((1, n, 64)) for n in (37, 120, 5)]
    mean, std = compute_norm_stats(iter(items))
    everything = np.concatenate([item.ravel() for item in items])
    assert mean == pytest.approx(everything.mean(), rel=1e-12)
    assert std == pytest.approx(everything.std(), rel=1e-9)


def test_norm_stats_do_not_depend_on_how_the_data_is_split() -> None:
    frontend = LogMelSpectrogram()
    waveform = torch.randn(48000, generator=torch.Generator().manual_seed(5))
    logmel = frontend(waveform, normalize=False)  # float32 (1, 1, frames, 64), as the callers pass it
    whole = compute_norm_stats([logmel])
    pieces = compute_norm_stats(logmel[:, :, k : k + 7] for k in range(0, logmel.shape[2], 7))
    everything = logmel.double().numpy()
    assert whole == pytest.approx((everything.mean(), everything.std()), rel=1e-12)
    assert pieces == pytest.approx(whole, rel=1e-12)


@pytest.mark.parametrize(
    ("items", "match"), [([], "no log-mel values"), ([np.array([1.0, np.nan])], "item 0 contains NaN")]
)
def test_norm_stats_reject_bad_input(items: list[np.ndarray], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        compute_norm_stats(items)


def test_normalisation_standardises_and_round_trips_through_state_dict() -> None:
    frontend = LogMelSpectrogram()
    waveforms = [torch.randn(n, generator=torch.Generator().manual_seed(n)) for n in (4000, 9000)]
    raw = [frontend(w, normalize=False) for w in waveforms]
    frontend.set_norm_stats(*compute_norm_stats(raw))
    normalised = torch.cat([frontend(w).flatten() for w in waveforms]).double()
    assert normalised.mean().item() == pytest.approx(0.0, abs=1e-4)
    assert normalised.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-4)

    restored = LogMelSpectrogram()
    restored.load_state_dict(frontend.state_dict())
    torch.testing.assert_close(restored(waveforms[0]), frontend(waveforms[0]))
    assert set(frontend.state_dict()) == {"norm_mean", "norm_std"}


@pytest.mark.parametrize(("mean", "std"), [(0.0, 0.0), (0.0, -1.0), (math.nan, 1.0), (0.0, math.inf)])
def test_set_norm_stats_rejects_invalid_values(mean: float, std: float) -> None:
    with pytest.raises(ValueError, match="normalisation"):
        LogMelSpectrogram().set_norm_stats(mean, std)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"f_max": 9000.0}, "Nyquist"),
        ({"win_length": 2048}, "win_length"),
        ({"n_mels": 0}, "n_mels"),
        ({"hop_length": 0}, "hop_length"),
        ({"f_min": 8000.0, "f_max": 7000.0}, "f_min < f_max"),
        ({"power": 0.0}, "power"),
        ({"log_floor": 0.0}, "log_floor"),
        ({"mel_scale": "mel"}, "mel_scale"),
        ({"filterbank": "torchaudio"}, "filterbank"),
        ({"log_mode": "log1p"}, "log_mode"),
        ({"window": "blackman"}, "window"),
        ({"n_fft": 64, "win_length": 64, "n_mels": 64}, "contain no FFT bin"),
    ],
)
def test_invalid_config_is_rejected(changes: dict[str, object], match: str) -> None:
    cfg = replace(FrontendConfig(), **changes)
    with pytest.raises(ValueError, match=match):
        cfg.validate()
    with pytest.raises(ValueError, match=match):
        LogMelSpectrogram(cfg)


@pytest.mark.parametrize(
    ("waveform", "match"),
    [
        (torch.zeros(1, 2, 100), "shape"),
        (torch.zeros(100, dtype=torch.int16), "floating"),
        (torch.zeros(0), "no samples"),
    ],
)
def test_invalid_waveform_is_rejected(waveform: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LogMelSpectrogram()(waveform)
