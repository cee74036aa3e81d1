"""Log-mel frontend: waveform (B, T) -> log-mel spectrogram (B, 1, frames, n_mels).

The defaults reproduce DECAR v1: magnitude STFT of 25 ms windows every 10 ms, 64 HTK mel bands 60-7800 Hz
built like ``tf.signal.linear_to_mel_weight_matrix``, ``log(max(x, 1e-5))``. ``power=2``,
``win_length=1024``, ``center=True``, ``log_mode="offset"`` and ``filterbank="librosa"`` give the BYOL-A /
torchaudio features.
Only torch.stft is needed, so the frontend has no torchaudio/librosa dependency and exports with the encoder.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from decar.moments import RunningMoments

MEL_SCALES = ("htk", "slaney")
FILTERBANKS = ("tf", "librosa")
LOG_MODES = ("clip", "offset")
WINDOWS = {"hann": torch.hann_window, "hamming": torch.hamming_window}
WAVEFORM_RMS_FLOOR = 1e-4
"""`rms_normalize_waveform` divides by at least this (-80 dBFS), so digital near-silence is not amplified to
full level."""


@dataclass
class FrontendConfig:
    """Settings of the log-mel frontend.

    Attributes:
        sample_rate: Expected waveform rate in Hz.
        n_fft: FFT size in samples; each windowed frame is zero-padded to it.
        win_length: Analysis window length in samples (400 = 25 ms at 16 kHz).
        hop_length: Frame step in samples (160 = 10 ms at 16 kHz).
        n_mels: Number of mel bands.
        f_min: Lowest mel band edge in Hz.
        f_max: Highest mel band edge in Hz (at most sample_rate / 2).
        power: Exponent of the STFT magnitude: 1 = magnitude (DECAR paper), 2 = power (BYOL-A).
        mel_scale: "htk" (2595 log10(1 + f/700)) or "slaney" (linear below 1 kHz, log above).
        filterbank: "tf": triangles linear in mel, DC bin ignored, like tf.signal (official DECAR code);
            "librosa": triangles linear in Hz, unnormalised, like librosa/torchaudio.
        log_floor: Smallest value before the log, keeps silence finite.
        log_mode: "clip": log(max(x, floor)) (paper); "offset": log(x + floor) (BYOL-A).
        center: False: TF-style frames ``1 + (T - win_length) // hop_length``; True: reflect-pad n_fft // 2 on
            both sides like torch.stft, giving ``1 + T // hop_length`` frames.
        window: Periodic window function, "hann" or "hamming".
        l2_normalize_waveform: Divide each waveform by its L2 norm first (DECAR paper v1). The level this leaves
            depends on the length: a crop cut short and tiled, or an embedding window longer than the training
            crops, comes out louder or quieter than the crops the encoder learned from.
        rms_normalize_waveform: Divide each waveform by its RMS first (at least WAVEFORM_RMS_FLOOR): gain-blind
            like ``l2_normalize_waveform``, and the same level at every length. decar's own choice.
    """

    sample_rate: int = 16000
    n_fft: int = 1024
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 64
    f_min: float = 60.0
    f_max: float = 7800.0
    power: float = 1.0
    mel_scale: str = "htk"
    filterbank: str = "tf"
    log_floor: float = 1e-5
    log_mode: str = "clip"
    center: bool = False
    window: str = "hann"
    l2_normalize_waveform: bool = False
    rms_normalize_waveform: bool = False

    def validate(self) -> None:
        """Raise ValueError naming the first impossible setting, empty mel bands included."""
        for name in ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"FrontendConfig.{name} must be a positive integer, got {value!r}")
        if self.win_length > self.n_fft:
            raise ValueError(f"FrontendConfig.win_length ({self.win_length}) must not exceed n_fft ({self.n_fft})")
        nyquist = self.sample_rate / 2
        if not 0 <= self.f_min < self.f_max:
            raise ValueError(f"FrontendConfig needs 0 <= f_min < f_max, got f_min={self.f_min}, f_max={self.f_max}")
        if self.f_max > nyquist:
            raise ValueError(
                f"FrontendConfig.f_max ({self.f_max} Hz) exceeds the Nyquist frequency sample_rate / 2 = {nyquist} Hz"
            )
        if not (math.isfinite(self.power) and self.power > 0):
            raise ValueError(f"FrontendConfig.power must be > 0 (1 magnitude, 2 power), got {self.power}")
        if not (math.isfinite(self.log_floor) and self.log_floor > 0):
            raise ValueError(f"FrontendConfig.log_floor must be > 0, got {self.log_floor}")
        if self.l2_normalize_waveform and self.rms_normalize_waveform:
            raise ValueError("FrontendConfig: choose one of l2_normalize_waveform and rms_normalize_waveform")
        choices = {
            "mel_scale": MEL_SCALES,
            "filterbank": FILTERBANKS,
            "log_mode": LOG_MODES,
            "window": tuple(WINDOWS),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"FrontendConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        empty_bands = np.flatnonzero(_triangles(self).max(axis=0) <= 0)
        if empty_bands.size:
            raise ValueError(
                f"FrontendConfig: mel bands {empty_bands.tolist()} contain no FFT bin; increase n_fft "
                f"({self.n_fft}) or reduce n_mels ({self.n_mels})"
            )

    def frames(self, num_samples: int) -> int:
        """Number of output frames for a waveform of ``num_samples`` samples (always >= 1 for T >= 1)."""
        if num_samples < 1:
            raise ValueError(f"a waveform needs at least one sample, got {num_samples}")
        if self.center:
            return 1 + num_samples // self.hop_length
        return 1 + (max(num_samples, self.win_length) - self.win_length) // self.hop_length


def hz_to_mel(hz: np.ndarray, scale: str) -> np.ndarray:
    """Convert frequencies in Hz to mels on the "htk" or "slaney" scale."""
    hz = np.asarray(hz, dtype=np.float64)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + hz / 700.0)
    linear_mels = hz / (200.0 / 3.0)
    log_step = math.log(6.4) / 27.0
    log_mels = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / log_step
    return np.where(hz >= 1000.0, log_mels, linear_mels)


def mel_to_hz(mels: np.ndarray, scale: str) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    mels = np.asarray(mels, dtype=np.float64)
    if scale == "htk":
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    log_step = math.log(6.4) / 27.0
    return np.where(mels >= 15.0, 1000.0 * np.exp(log_step * (mels - 15.0)), mels * (200.0 / 3.0))


def _triangles(cfg: FrontendConfig) -> np.ndarray:
    """Unchecked filterbank of an otherwise valid config, shape (n_fft // 2 + 1, n_mels)."""
    num_bins = cfg.n_fft // 2 + 1
    bin_hz = np.linspace(0.0, cfg.sample_rate / 2, num_bins)
    edges_mel = np.linspace(hz_to_mel(cfg.f_min, cfg.mel_scale), hz_to_mel(cfg.f_max, cfg.mel_scale), cfg.n_mels + 2)
    if cfg.filterbank == "tf":
        bin_pos, edges = hz_to_mel(bin_hz, cfg.mel_scale), edges_mel
    else:
        bin_pos, edges = bin_hz, mel_to_hz(edges_mel, cfg.mel_scale)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_pos[:, None] - lower) / (centre - lower)
    falling = (upper - bin_pos[:, None]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    if cfg.filterbank == "tf":
        weights[0] = 0.0
    return weights


def mel_filterbank(cfg: FrontendConfig) -> np.ndarray:
    """Triangular mel filters mapping an rfft spectrum to mel bands.

    Band edges are equally spaced on the mel scale between f_min and f_max; each filter rises from its lower
    edge to 1 at its centre and falls to 0 at its upper edge, either linearly in mel ("tf") or in Hz
    ("librosa"). Filters are not area-normalised.

    Args:
        cfg: Frontend settings (validated here).

    Returns:
        Weights, shape (n_fft // 2 + 1, n_mels), float64.

    Raises:
        ValueError: The settings are invalid, or some mel band contains no FFT bin (too many mels for n_fft).
    """
    cfg.validate()
    return _triangles(cfg)


def compute_norm_stats(logmels: Iterable[Tensor | np.ndarray]) -> tuple[float, float]:
    """Global mean and standard deviation over every time-frequency bin of a dataset.

    Streams over the items (any shapes, e.g. variable-length (1, frames, n_mels) spectrograms), merging
    per-item float64 moments so that millions of bins neither overflow float32 nor lose precision.

    Args:
        logmels: Un-normalised log-mel spectrograms (``LogMelSpectrogram(..., normalize=False)``).

    Returns:
        (mean, std), std being the population standard deviation.

    Raises:
        ValueError: No values at all, or an item holds NaN/Inf.
    """
    moments = RunningMoments()
    for index, item in enumerate(logmels):
        values = item.detach() if isinstance(item, Tensor) else torch.tensor(np.asarray(item), dtype=torch.float64)
        if not torch.isfinite(values).all():
            raise ValueError(f"log-mel item {index} contains NaN or Inf")
        moments.update(values)
    if not moments.count:
        raise ValueError("cannot compute normalisation statistics: no log-mel values were given")
    return float(moments.mean), float(moments.std())


class LogMelSpectrogram(nn.Module):
    """Waveform to (optionally normalised) log-mel spectrogram, in float32.

    The window and filterbank are non-persistent buffers (rebuilt from the config, follow ``.to(device)``);
    the dataset statistics ``norm_mean`` / ``norm_std`` are persistent buffers, saved with the model.

    Args:
        cfg: Frontend settings; defaults to DECAR v1's.

    Example:
        >>> frontend = LogMelSpectrogram(FrontendConfig())
        >>> frontend(torch.zeros(2, 16000)).shape
        torch.Size([2, 1, 98, 64])
    """

    window: Tensor
    mel_basis: Tensor
    norm_mean: Tensor
    norm_std: Tensor

    def __init__(self, cfg: FrontendConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg if cfg is not None else FrontendConfig()
        basis = torch.from_numpy(mel_filterbank(self.cfg)).float()
        window = WINDOWS[self.cfg.window](self.cfg.win_length, periodic=True, dtype=torch.float32)
        self.register_buffer("window", window, persistent=False)
        self.register_buffer("mel_basis", basis, persistent=False)
        self.register_buffer("norm_mean", torch.tensor(0.0))
        self.register_buffer("norm_std", torch.tensor(1.0))

    def set_norm_stats(self, mean: float, std: float) -> None:
        """Store the dataset mean and std used by :meth:`normalize` (see :func:`compute_norm_stats`)."""
        if not math.isfinite(mean):
            raise ValueError(f"normalisation mean must be finite, got {mean}")
        if not (math.isfinite(std) and std > 0):
            raise ValueError(f"normalisation std must be finite and > 0, got {std}")
        self.norm_mean.fill_(float(mean))
        self.norm_std.fill_(float(std))

    def normalize(self, logmel: Tensor) -> Tensor:
        """Standardise a log-mel spectrogram with the stored dataset statistics."""
        return (logmel - self.norm_mean) / self.norm_std

    def _frame_ready(self, waveform: Tensor) -> Tensor:
        """Pad (B, T) so that torch.stft with center=False yields exactly ``cfg.frames(T)`` frames.

        torch.stft centres a short window inside n_fft samples, so for TF-style framing (frames start at
        i * hop and span win_length samples) the signal is shifted right by that centring offset.
        """
        cfg = self.cfg
        num_samples = waveform.shape[-1]
        if cfg.center:
            half = cfg.n_fft // 2
            mode = "reflect" if num_samples > half else "constant"
            return F.pad(waveform.unsqueeze(1), (half, half), mode=mode).squeeze(1)
        short_by = max(cfg.win_length - num_samples, 0)
        left = (cfg.n_fft - cfg.win_length) // 2
        right = cfg.n_fft - cfg.win_length - left + short_by
        return F.pad(waveform, (left, right))

    def forward(self, waveform: Tensor, normalize: bool = True) -> Tensor:
        """Compute log-mel spectrograms.

        Args:
            waveform: Audio at ``cfg.sample_rate``, shape (B, T) or (T,), floating point. Shorter than one
                window is zero-padded to one frame.
            normalize: Apply :meth:`normalize` (identity until statistics are set).

        Returns:
            Log-mel spectrogram, shape (B, 1, cfg.frames(T), n_mels), float32.
        """
        if waveform.dim() not in (1, 2):
            raise ValueError(f"waveform must have shape (B, T) or (T,), got {tuple(waveform.shape)}")
        if not waveform.is_floating_point():
            raise ValueError(f"waveform must be a floating-point tensor, got {waveform.dtype}")
        if waveform.shape[-1] == 0:
            raise ValueError("waveform has no samples")
        cfg = self.cfg
        batch = waveform.reshape(-1, waveform.shape[-1]).float()
        with torch.autocast(device_type=batch.device.type, enabled=False):
            if cfg.l2_normalize_waveform:
                batch = batch / batch.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(batch.dtype).tiny)
            elif cfg.rms_normalize_waveform:
                batch = batch / batch.square().mean(dim=-1, keepdim=True).sqrt().clamp_min(WAVEFORM_RMS_FLOOR)
            spectrum = torch.stft(
                self._frame_ready(batch),
                n_fft=cfg.n_fft,
                hop_length=cfg.hop_length,
                win_length=cfg.win_length,
                window=self.window.float(),
                center=False,
                return_complex=True,
            )
            magnitude = spectrum.abs().pow(cfg.power) if cfg.power != 1 else spectrum.abs()
            mel = torch.matmul(magnitude.transpose(1, 2), self.mel_basis.float())
            if cfg.log_mode == "clip":
                logmel = torch.log(mel.clamp_min(cfg.log_floor))
            else:
                logmel = torch.log(mel + cfg.log_floor)
            logmel = logmel.unsqueeze(1)
            if normalize:
                logmel = self.normalize(logmel).float()
        return logmel

    def extra_repr(self) -> str:
        cfg = self.cfg
        return (
            f"sample_rate={cfg.sample_rate}, n_fft={cfg.n_fft}, win_length={cfg.win_length}, "
            f"hop_length={cfg.hop_length}, n_mels={cfg.n_mels}, power={cfg.power}, "
            f"filterbank={cfg.filterbank}/{cfg.mel_scale}, log={cfg.log_mode}"
        )
