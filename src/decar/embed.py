"""Pretrained encoders for users: a checkpoint file becomes a module that embeds audio of any length.

Audio is cut into windows of whole encoder strides (about the training crop length). Each window's log-mel
frames are exactly the frames of the whole file at those positions, so frame embeddings are evenly spaced
across window borders, memory stays bounded for hour-long audio, and a clip gives the same result alone or
in a batch. A clip embedding is the duration-weighted mean of its window embeddings.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr
import torch
from torch import nn

from decar.audio import AudioError, load_audio
from decar.checkpoint import CheckpointError, load_checkpoint, validate_model_fields
from decar.config import DecarConfig
from decar.frontend import LogMelSpectrogram
from decar.models import clean_state_dict, create_model

AudioInput = (
    np.ndarray | torch.Tensor | Sequence[np.ndarray] | Sequence[torch.Tensor] | str | Path | Sequence[str | Path]
)


class NoBundledModelError(FileNotFoundError):
    """`decar.load()` without a path, before a pretrained model ships inside the package."""


BUNDLED_MODEL = Path(__file__).resolve().parent / "pretrained" / "decar.safetensors"
"""Where the pretrained model decar ships lives inside the package (fp16 safetensors with its config)."""


def long_enough(path: str | Path, wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """``wave`` (decoded from ``path``) when an encoder can embed it; AudioError naming the file when it is
    shorter than MIN_SECONDS, so that every command skips such a file with the same reason."""
    if len(wave) < MIN_SECONDS * sample_rate:
        raise AudioError(path, f"too short ({len(wave) / sample_rate:.3f} s < {MIN_SECONDS} s)")
    return wave


def bundled_model_path() -> Path | None:
    """The bundled model's file, or None while this release ships none."""
    return BUNDLED_MODEL if BUNDLED_MODEL.is_file() else None


@dataclass(frozen=True)
class Window:
    """A slice of one clip: samples [start, stop) give log-mel frames [first_frame, first_frame + frames)."""

    clip: int
    start: int
    stop: int
    first_frame: int
    frames: int


MIN_SECONDS = 0.05
"""Shortest clip embedded: what pretraining accepts by default (`data.min_seconds`), so a file usable by one is
usable by the other."""
MAX_PEAK = 1e4
"""Largest sample magnitude accepted: float audio lives in [-1, 1]; far beyond it is unscaled integer audio."""
RATE_RANGE = (1000, 768_000)
"""Sample rates accepted, in Hz."""


def _checked_rate(sample_rate: float) -> int:
    """A whole number of Hz in RATE_RANGE, or a ValueError that says what is wrong."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | float | np.integer | np.floating):
        raise ValueError(f"sample_rate must be a number of Hz, got {sample_rate!r}")
    if float(sample_rate) != int(sample_rate):
        raise ValueError(f"sample_rate must be a whole number of Hz, got {sample_rate}")
    if not RATE_RANGE[0] <= int(sample_rate) <= RATE_RANGE[1]:
        raise ValueError(f"sample_rate must lie in [{RATE_RANGE[0]}, {RATE_RANGE[1]}] Hz, got {sample_rate}")
    return int(sample_rate)


class AudioEncoder(nn.Module):
    """Frontend (with its dataset normalisation statistics) plus encoder, in eval mode.

    Attributes:
        sample_rate: the rate, in Hz, the model works at (inputs at other rates are resampled).
        embed_dim: size of clip and frame embeddings.
        frame_hop_ms: milliseconds between consecutive frame embeddings.
        window_frames: log-mel frames per window (a multiple of the encoder's frame stride).
        config: the resolved training config the checkpoint carried.
        precision: "fp32", or "bf16" for bfloat16 autocast of the encoder (faster on CPUs with bf16 units
            and on GPUs; embeddings are still returned as float32).
        channels_last: run the encoder in channels-last memory format (faster for convolutions on CPU).
    """

    def __init__(
        self,
        frontend: LogMelSpectrogram,
        encoder: nn.Module,
        config: DecarConfig,
        precision: str = "fp32",
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        self.precision = precision
        self.channels_last = channels_last
        if channels_last:
            encoder = encoder.to(memory_format=torch.channels_last)
        self.frontend = frontend
        self.encoder = encoder
        self.config = config
        fe = config.frontend
        self.sample_rate = fe.sample_rate
        self.embed_dim = int(encoder.embed_dim)
        self.frame_stride = int(encoder.frame_stride)
        self.frame_hop_ms = 1000.0 * fe.hop_length * self.frame_stride / fe.sample_rate
        crop_frames = fe.frames(round(config.data.crop_seconds * fe.sample_rate))
        self.window_frames = -(-crop_frames // self.frame_stride) * self.frame_stride  # crop rounded up to strides

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """(B, samples) float waveforms at `sample_rate` → (B, embed_dim); no windowing (one crop each)."""
        return self.encoder(self.frontend(waveform))

    # ------------------------------------------------------------------------------------------ public API
    @torch.inference_mode()
    def embed(self, audio: AudioInput, sample_rate: int | None = None, batch_size: int = 8) -> np.ndarray:
        """Clip embeddings, float32 (B, embed_dim), for audio of any length and sample rate.

        Args:
            audio: (T,), (B, T) or a list of 1-D clips of different lengths; numpy or torch, float in [-1, 1].
                Or an audio file's path, or a list of them (read and resampled to the model's rate).
            sample_rate: rate of `audio` in Hz, a whole number in RATE_RANGE (default: the model's); other
                rates are resampled with soxr.
            batch_size: windows per forward pass (bounds memory).
        """
        clips = self._prepare(audio, sample_rate)
        sums = np.zeros((len(clips), self.embed_dim), dtype=np.float64)
        weights = np.zeros(len(clips), dtype=np.float64)
        for group, logmel in self.window_batches(clips, batch_size):
            with self._autocast(logmel.device):
                embeddings = self.encoder(logmel).float().cpu().numpy()
            for window, embedding in zip(group, embeddings, strict=True):
                sums[window.clip] += window.frames * embedding
                weights[window.clip] += window.frames
        return (sums / weights[:, None]).astype(np.float32)

    @torch.inference_mode()
    def embed_frames(
        self, audio: AudioInput, sample_rate: int | None = None, batch_size: int = 8
    ) -> tuple[np.ndarray | list[np.ndarray], np.ndarray | list[np.ndarray]]:
        """Frame embeddings every `frame_hop_ms` and their timestamps (ms at frame centres).

        Returns:
            (embeddings, timestamps): float32 (B, T', D) and float64 (B, T') when all clips have the same
            length, else lists of (T'_i, D) and (T'_i,) arrays. Frames centred beyond the end are dropped.
        """
        clips = self._prepare(audio, sample_rate)
        per_clip: list[list[tuple[int, np.ndarray]]] = [[] for _ in clips]
        for group, logmel in self.window_batches(clips, batch_size):
            with self._autocast(logmel.device):
                frames = self.encoder.forward_frames(logmel).float().cpu().numpy()
            for window, sequence in zip(group, frames, strict=True):
                count = -(-window.frames // self.frame_stride)
                per_clip[window.clip].append((window.first_frame, sequence[:count]))
        embeddings, timestamps = [], []
        for clip, pieces in zip(clips, per_clip, strict=True):
            sequence = np.concatenate([seq for _, seq in sorted(pieces, key=lambda p: p[0])])
            times = self._frame_times_ms(len(sequence))
            duration_ms = 1000.0 * len(clip) / self.sample_rate
            keep = max(1, int(np.searchsorted(times, duration_ms, side="right")))
            times = times[:keep]
            if times[0] > duration_ms:  # a clip shorter than one frame: its only frame sits at its middle
                times = np.array([duration_ms / 2])
            embeddings.append(sequence[:keep].astype(np.float32))
            timestamps.append(times)
        if len({len(t) for t in timestamps}) == 1:
            return np.stack(embeddings), np.stack(timestamps)
        return embeddings, timestamps

    def windows(self, clips: list[np.ndarray]) -> list[Window]:
        """Cut each clip into windows of `window_frames` log-mel frames.

        The last window takes what remains: between half and one and a half windows (or the whole clip), so a
        clip as long as the training crops is embedded in one piece, as the encoder was trained.

        Args:
            clips: float32 1-D waveforms at `sample_rate`.
        """
        fe = self.config.frontend
        windows = []
        for index, clip in enumerate(clips):
            total = fe.frames(len(clip))
            starts = list(range(0, total, self.window_frames))
            if len(starts) > 1 and total - starts[-1] < self.window_frames // 2:
                starts.pop()  # a short tail joins the window before it rather than being embedded alone
            for k, first in enumerate(starts):
                frames = (starts[k + 1] if k + 1 < len(starts) else total) - first
                start = first * fe.hop_length
                if fe.center:  # frame i is centred on sample i * hop: the window needs half a window each side
                    stop = start + (frames - 1) * fe.hop_length + 1
                else:
                    stop = start + (frames - 1) * fe.hop_length + fe.win_length
                windows.append(Window(index, start, min(stop, len(clip)), first, frames))
        return windows

    def window_batches(
        self, clips: list[np.ndarray], batch_size: int | None = None
    ) -> Iterator[tuple[list[Window], torch.Tensor]]:
        """The clips' `windows` as encoder inputs: (windows, normalised log-mel (b, 1, frames, n_mels)) batches.

        What `embed` and `embed_frames` run the encoder on, for callers that run it themselves (fine-tuning):
        a clip embedding is the mean of its windows' embeddings weighted by `Window.frames`. Only windows of
        one length share a batch; the log-mel is on the encoder's device.

        Args:
            clips: float32 1-D waveforms at `sample_rate`.
            batch_size: most windows per batch; None puts all windows of one length in one batch.
        """
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or None, got {batch_size}")
        by_length: dict[int, list[Window]] = {}
        for window in self.windows(clips):
            by_length.setdefault(window.frames, []).append(window)
        device = next(self.encoder.parameters()).device
        for frames, group in by_length.items():
            step = len(group) if batch_size is None else batch_size
            for k in range(0, len(group), step):
                chunk = group[k : k + step]
                logmels = [self._window_logmel(clips[w.clip], w)[:, :, :frames] for w in chunk]
                logmel = torch.cat(logmels).to(device)
                if self.channels_last:
                    logmel = logmel.contiguous(memory_format=torch.channels_last)
                yield chunk, logmel

    # ----------------------------------------------------------------------------------------------- helpers
    def _autocast(self, device: torch.device) -> torch.autocast:
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def _frame_times_ms(self, count: int) -> np.ndarray:
        """Centre of output frame j: the middle of log-mel frames [j*stride, (j+1)*stride)."""
        fe = self.config.frontend
        centre_frame = np.arange(count) * self.frame_stride + (self.frame_stride - 1) / 2
        offset = 0 if fe.center else fe.win_length / 2
        return 1000.0 * (centre_frame * fe.hop_length + offset) / fe.sample_rate

    def _prepare(self, audio: AudioInput, sample_rate: int | None) -> list[np.ndarray]:
        """Any accepted input → list of float32 mono 1-D numpy clips at the model's rate; clear errors otherwise."""
        rate = self.sample_rate if sample_rate is None else _checked_rate(sample_rate)
        if isinstance(audio, np.generic | int | float):
            raise ValueError("audio must have shape (T,) or (B, T), got a scalar")
        if isinstance(audio, str | Path) or (
            isinstance(audio, list | tuple) and audio and isinstance(audio[0], str | Path)
        ):
            if sample_rate is not None:
                raise ValueError("sample_rate applies to waveforms; audio files are read at their own rate")
            paths = [audio] if isinstance(audio, str | Path) else list(audio)
            clips = [long_enough(path, load_audio(path, self.sample_rate), self.sample_rate) for path in paths]
            return self._prepare(clips, None)
        if isinstance(audio, torch.Tensor | np.ndarray):
            array = audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
            if array.ndim not in (1, 2):
                raise ValueError(f"audio must have shape (T,) or (B, T), got {tuple(array.shape)}")
            items = [array] if array.ndim == 1 else list(array)
        else:
            items = [a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a) for a in audio]
        if not items:
            raise ValueError("no audio given")
        clips = []
        for i, item in enumerate(items):
            if item.ndim != 1 or item.size == 0:
                raise ValueError(f"clip {i} must be a non-empty 1-D array, got shape {tuple(item.shape)}")
            if not np.issubdtype(item.dtype, np.floating):
                raise ValueError(
                    f"clip {i} has dtype {item.dtype}; pass float audio in [-1, 1] (int16: divide by 32768)"
                )
            if not np.isfinite(item).all():
                raise ValueError(f"clip {i} contains NaN or infinite samples")
            peak = float(np.abs(item).max())
            if peak > MAX_PEAK:
                raise ValueError(
                    f"clip {i} peaks at {peak:.3g}; audio must be float in [-1, 1] (int16: divide by 32768)"
                )
            if item.size < MIN_SECONDS * rate:
                raise ValueError(f"clip {i} is too short ({item.size / rate:.4f} s < {MIN_SECONDS} s)")
            clip = item.astype(np.float32, copy=False)
            if rate != self.sample_rate:
                clip = soxr.resample(clip, rate, self.sample_rate, quality="HQ").astype(np.float32)
            clips.append(clip)
        return clips

    def _window_logmel(self, clip: np.ndarray, window: Window) -> torch.Tensor:
        fe = self.config.frontend
        if fe.center:
            # Centred frames need context before and after the window: compute on the padded span, then slice.
            context = -(-(fe.n_fft // 2) // fe.hop_length) * fe.hop_length  # whole hops, so frames stay aligned
            lo = max(0, window.start - context)
            hi = min(len(clip), window.stop + context)
            logmel = self.frontend(torch.from_numpy(clip[lo:hi]).to(self.frontend.norm_mean.device))
            skip = (window.start - lo) // fe.hop_length
            return logmel[:, :, skip : skip + window.frames]
        segment = torch.from_numpy(clip[window.start : window.stop]).to(self.frontend.norm_mean.device)
        return self.frontend(segment)


def load(
    path: str | Path | None = None,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    channels_last: bool = False,
) -> AudioEncoder:
    """Rebuild encoder and frontend from a checkpoint (`checkpoint.pt` or `encoder.safetensors`) alone.

    Nothing is executed from the file (weights-only / safetensors) and nothing is downloaded.

    Args:
        path: checkpoint file; None means the pretrained model bundled with decar.
        device: where the model runs.
        precision: "fp32" or "bf16" (bfloat16 autocast of the encoder).
        channels_last: channels-last memory format for the encoder (faster convolutions on CPU).

    Example:
        >>> model = decar.load("runs/tiny/checkpoint.pt")
        >>> model.embed(np.zeros(16000, dtype=np.float32)).shape
        (1, 1280)
    """
    if path is None:
        path = bundled_model_path()
    if path is None:
        raise NoBundledModelError(
            "this decar release bundles no pretrained model yet; pass the path of a checkpoint "
            "(e.g. runs/<name>/checkpoint.pt from `decar pretrain`)"
        )
    checkpoint = validate_model_fields(Path(path), load_checkpoint(path))
    try:
        config = DecarConfig.from_dict(checkpoint["config"])
        encoder = create_model(config.model.name, **config.model.kwargs)
        encoder.load_state_dict(clean_state_dict(checkpoint["encoder"]))
    except (ValueError, TypeError, RuntimeError) as err:  # a bad config, model argument, key or shape
        detail = " ".join(str(err).split())  # torch's multi-line state-dict report, on one line
        raise CheckpointError(f"{path}: cannot rebuild the model it describes: {detail}") from err
    frontend = LogMelSpectrogram(config.frontend)
    frontend.set_norm_stats(checkpoint["frontend_stats"]["mean"], checkpoint["frontend_stats"]["std"])
    return AudioEncoder(frontend, encoder, config, precision, channels_last).to(device).eval()
