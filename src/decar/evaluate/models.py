"""Every model the evaluation suite can score, behind one small interface.

`load_eval_model(spec)` turns a command-line spec into an `EvalModel`:

- ``pretrained``: the model bundled with decar (`decar.load()`); what `decar evaluate` scores without --model.
- ``path/to/checkpoint.pt`` or ``.safetensors``: a decar encoder, with the frontend statistics it carries.
- ``random:<checkpoint>``: the same architecture, frontend and statistics with randomly initialised weights
  (fixed seed), the floor any pretraining must clear. Its BatchNorm statistics are re-estimated on the task's
  training audio in `prepare`, since the running statistics of a fresh network make eval-mode features vanish.
- ``random:<config.yaml>``: the architecture, frontend and window of a config (e.g. ``configs/decar.yaml``)
  with random weights, for a floor without any checkpoint; with no dataset statistics to carry, the log-mel
  mean and std are fitted on the task's training audio in `prepare`, as for BYOL-A.
- ``logmel-stats``: per-mel-bin mean and standard deviation of the DECAR paper log-mel, a no-learning baseline.
- ``byola:<weights.pth>``: a released BYOL-A encoder with BYOL-A's frontend. As in BYOL-A's own evaluation, the
  log-mel normalisation mean and std are computed from the task's training audio (`prepare`) and the clip
  embedding is the encoder (max + mean over time) applied to the whole clip. To bound memory, clips longer than
  1.5 × `BYOLA_WINDOW_SECONDS` (10 s; the clips of BYOL-A's benchmarks are shorter) are cut into windows of that
  length whose embeddings are averaged weighted by duration, as decar does for its own encoders.
- ``hear:<module>[:<model file>]``: any module implementing the HEAR API, through `get_scene_embeddings`.
- ``embeddings:<folder | table>``: embeddings computed elsewhere, one per audio file: a `decar embed` output
  folder or an ``.npz`` / ``.parquet`` table (:mod:`decar.tables`), looked up by the clip's resolved path.

Every model has a `fingerprint`: a hash of everything that determines its embeddings (weights, frontend, fitted
statistics, embedding procedure, decar version), so that cached embeddings are reused exactly when valid.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

import decar
from decar.config import DataConfig, DecarConfig, ModelConfig, load_config
from decar.embed import AudioEncoder, NoBundledModelError, bundled_model_path
from decar.evaluate import PRETRAINED
from decar.evaluate.tasks.base import Clip
from decar.fingerprint import content_digest, model_fingerprint
from decar.frontend import FrontendConfig, LogMelSpectrogram, compute_norm_stats
from decar.models import create_model, load_byola_weights
from decar.models.batchnorm import recalibrate_batchnorm
from decar.moments import RunningMoments
from decar.tables import read_embeddings

SPEC_FORMS = (
    PRETRAINED,
    "<checkpoint.pt | encoder.safetensors>",
    "random:<checkpoint.pt | encoder.safetensors | config.yaml | pretrained>",
    "logmel-stats",
    "byola:<weights.pth>",
    "hear:<python.module>[:<model file>]",
    "embeddings:<decar embed folder | table.npz | table.parquet>",
)
"""The model specs `load_eval_model` accepts, for help texts and error messages."""

RANDOM_INIT_SEED = 0
"""Seed of the random re-initialisation, so that the random baseline is the same network in every run."""

BN_CALIBRATION_CLIPS = 512
"""Training clips (evenly spaced over the training set) whose crops re-estimate a random network's BatchNorm."""

BN_CALIBRATION_BATCH = 32

BYOLA_FRONTEND = FrontendConfig(
    sample_rate=16000,
    n_fft=1024,
    win_length=1024,
    hop_length=160,
    n_mels=64,
    f_min=60.0,
    f_max=7800.0,
    power=2.0,
    mel_scale="htk",
    filterbank="librosa",
    log_floor=float(torch.finfo(torch.float32).eps),
    log_mode="offset",
    center=True,
)
"""BYOL-A's features: torchaudio MelSpectrogram defaults (HTK, Hz-linear triangles, centred), log(x + eps)."""

BYOLA_WINDOW_SECONDS = 10.0
"""Clips up to 1.5 times this are embedded whole (BYOL-A's protocol); longer ones in windows of this length."""

NORM_STATS_CHUNK_SECONDS = 60.0
"""Long training clips enter the normalisation statistics in pieces of this length, to bound memory."""

LOGMEL_CHUNK_FRAMES = 6000
"""Frames per log-mel piece in the log-mel statistics baseline (60 s at 10 ms hops): exact, memory bounded."""


class EvalModel(ABC):
    """What the evaluation runner needs from a model: embeddings of waveforms and a cache identity.

    Attributes:
        name: human-readable name for reports.
        fingerprint: hex digest of everything that determines the embeddings; changes when `prepare` fits new
            statistics, so cache entries of different statistics never mix.
        sample_rate: rate in Hz of the waveforms `prepare` and `embed` receive.
        embed_dim: size of an embedding.
        audio_encoder: the underlying `AudioEncoder` when the model is one (decar checkpoints, their random
            re-initialisation and BYOL-A), so that it can be fine-tuned; None otherwise.
    """

    name: str
    fingerprint: str
    sample_rate: int
    embed_dim: int
    audio_encoder: AudioEncoder | None = None

    def prepare(self, train_waveforms: Iterable[np.ndarray]) -> None:  # noqa: B027  (deliberately a no-op)
        """Fit dataset statistics on a task's training audio; models that carry their own do nothing."""

    @abstractmethod
    def embed(self, waveforms: list[np.ndarray]) -> np.ndarray:
        """Embed 1-D float waveforms of any lengths at `sample_rate`: float32 (len(waveforms), embed_dim)."""


class EncoderModel(EvalModel):
    """An `AudioEncoder` (frontend with statistics, encoder, windowing) used as is: decar checkpoints.

    Args:
        name: report name.
        kind: what produced the encoder ("decar", "random", "byola"); part of the fingerprint.
        audio_encoder: the encoder, on its device, in eval mode.
        batch_size: encoder windows per forward pass (bounds memory).
    """

    audio_encoder: AudioEncoder

    def __init__(self, name: str, kind: str, audio_encoder: AudioEncoder, batch_size: int = 8) -> None:
        self.name = name
        self.kind = kind
        self.audio_encoder = audio_encoder
        self.sample_rate = int(audio_encoder.sample_rate)
        self.embed_dim = int(audio_encoder.embed_dim)
        self.batch_size = batch_size
        self.fingerprint = self._fingerprint()

    def embed(self, waveforms: list[np.ndarray]) -> np.ndarray:
        return self.audio_encoder.embed(list(waveforms), batch_size=self.batch_size)

    def _fingerprint(self) -> str:
        """The encoder's `model_fingerprint` (weights, fitted statistics, frontend, window, precision) and kind."""
        meta = {"kind": self.kind, "decar_version": decar.__version__, "model": model_fingerprint(self.audio_encoder)}
        return _digest(meta)


class _FittedEncoderModel(EncoderModel):
    """An encoder whose statistics must be fitted on the task's training audio before it embeds."""

    def __init__(self, name: str, kind: str, audio_encoder: AudioEncoder, batch_size: int = 8) -> None:
        super().__init__(name, kind, audio_encoder, batch_size)
        self.prepared = False

    def prepare(self, train_waveforms: Iterable[np.ndarray]) -> None:
        waveforms = list(train_waveforms)
        if not waveforms:
            raise ValueError(f"{self.name}: prepare() needs training audio to fit its statistics, got none")
        self._fit(waveforms)
        self.prepared = True
        self.fingerprint = self._fingerprint()

    def embed(self, waveforms: list[np.ndarray]) -> np.ndarray:
        if not self.prepared:
            raise RuntimeError(
                f"{self.name}: call prepare(training waveforms) before embed(); its statistics come from the "
                "task's training audio"
            )
        return super().embed(waveforms)

    @abstractmethod
    def _fit(self, waveforms: list[np.ndarray]) -> None:
        """Fit the statistics on a non-empty list of training waveforms."""


class RandomInitModel(_FittedEncoderModel):
    """A decar architecture with random weights; `prepare` re-estimates BatchNorm statistics on training crops.

    Crops are the encoder's window (its training crop), centred in each clip, zero-padded around short clips as
    BYOL-A pads its inputs. Dropout and stochastic depth are active during the train-mode passes, so they run
    under a fixed seed: the same training audio always gives the same statistics. Built from a config rather
    than a checkpoint (`fit_norm_stats`), it first fits the log-mel normalisation on the training audio.
    """

    def __init__(self, name: str, kind: str, audio_encoder: AudioEncoder, fit_norm_stats: bool = False) -> None:
        super().__init__(name, kind, audio_encoder)
        self.fit_norm_stats = fit_norm_stats

    def _fit(self, waveforms: list[np.ndarray]) -> None:
        encoder = self.audio_encoder
        if self.fit_norm_stats:
            _fit_norm_stats(encoder.frontend, waveforms, self.sample_rate)
        fe = encoder.config.frontend
        length = _samples_for_frames(fe, encoder.window_frames)
        chosen = np.unique(np.linspace(0, len(waveforms) - 1, min(len(waveforms), BN_CALIBRATION_CLIPS)).round())
        device = encoder.frontend.norm_mean.device
        batches = (  # built one batch at a time: 512 ten-second crops would hold 330 MB at once
            encoder.frontend(
                torch.from_numpy(np.stack([_centre_crop(waveforms[int(i)], length) for i in group])).to(device)
            )
            for group in np.array_split(chosen, -(-len(chosen) // BN_CALIBRATION_BATCH))
        )
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(RANDOM_INIT_SEED)
            recalibrate_batchnorm(encoder.encoder, batches)


class ByolaModel(_FittedEncoderModel):
    """BYOL-A; `prepare` computes the log-mel mean and std over the training audio, as BYOL-A's evaluation does."""

    def _fit(self, waveforms: list[np.ndarray]) -> None:
        _fit_norm_stats(self.audio_encoder.frontend, waveforms, self.sample_rate)


def _fit_norm_stats(frontend: LogMelSpectrogram, waveforms: list[np.ndarray], sample_rate: int) -> None:
    """Set the frontend's normalisation to the log-mel mean and std of `waveforms`, in bounded pieces."""
    chunk = round(NORM_STATS_CHUNK_SECONDS * sample_rate)
    device = frontend.norm_mean.device

    def logmels() -> Iterator[torch.Tensor]:
        for wave in waveforms:
            for start in range(0, len(wave), chunk):
                piece = torch.from_numpy(np.ascontiguousarray(wave[start : start + chunk], dtype=np.float32))
                yield frontend(piece.to(device), normalize=False)

    mean, std = compute_norm_stats(logmels())
    frontend.set_norm_stats(mean, std)


class LogMelStatsModel(EvalModel):
    """Per-mel-bin mean and population std over time of the paper's log-mel: [means (64), stds (64)]."""

    def __init__(self) -> None:
        self.config = FrontendConfig()
        self.frontend = LogMelSpectrogram(self.config)
        self.name = "log-mel stats"
        self.sample_rate = self.config.sample_rate
        self.embed_dim = 2 * self.config.n_mels
        meta = {"kind": "logmel-stats", "decar_version": decar.__version__, "frontend": dataclasses.asdict(self.config)}
        self.fingerprint = _digest(meta)

    @torch.inference_mode()
    def embed(self, waveforms: list[np.ndarray]) -> np.ndarray:
        return np.stack([self._stats(np.asarray(w, dtype=np.float32)) for w in waveforms]).astype(np.float32)

    def _stats(self, wave: np.ndarray) -> np.ndarray:
        """Moments accumulated over pieces of whole frames: exactly the statistics of the whole clip's log-mel."""
        cfg = self.config
        total = cfg.frames(len(wave))
        per_bin = RunningMoments(dims=0)
        for first in range(0, total, LOGMEL_CHUNK_FRAMES):
            last = min(first + LOGMEL_CHUNK_FRAMES, total)
            stop = len(wave) if last == total else (last - 1) * cfg.hop_length + cfg.win_length
            piece = wave[first * cfg.hop_length : stop]
            per_bin.update(self.frontend(torch.from_numpy(np.ascontiguousarray(piece)), normalize=False)[0, 0])
        return torch.cat([per_bin.mean, per_bin.std()]).numpy()


class PrecomputedEmbeddings(EvalModel):
    """Embeddings read from a folder or table instead of computed: one per audio file, found by resolved path."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.vectors, self.failed = read_embeddings(source)
        if not self.vectors:
            raise ValueError(f"{source}: holds no embedding")
        dims = {len(vector) for vector in self.vectors.values()}
        if len(dims) > 1:
            raise ValueError(f"{source}: embeddings of different sizes {sorted(dims)}")
        self.name = f"embeddings ({_short(source)})"
        self.embed_dim = dims.pop()
        self.sample_rate = 16000  # unused: nothing is decoded
        rows = sorted(self.vectors)
        self.fingerprint = _digest(
            {"kind": "embeddings", "files": [str(p) for p in rows]}
            | {"sha256": hashlib.sha256(np.stack([self.vectors[p] for p in rows]).tobytes()).hexdigest()}
        )

    def lookup(self, clips: list[Clip]) -> tuple[dict[Clip, np.ndarray], list[tuple[Clip, str]]]:
        """Each whole-file clip's vector, and the clips whose file `decar embed` failed on, with its reason.

        Raises:
            ValueError: a clip is a segment of its file (start or duration set), which a per-file vector cannot
                stand for; or clips whose file the source does not list at all (embeddings of other files).
        """
        found: dict[Clip, np.ndarray] = {}
        failed: list[tuple[Clip, str]] = []
        absent: list[Clip] = []
        for clip in clips:
            if clip.start_s or clip.duration_s is not None:
                raise ValueError(
                    f"{clip.path}: the task scores a segment ({clip.start_s} s, {clip.duration_s} s) of this file, "
                    "and precomputed embeddings hold one vector per whole file"
                )
            path = clip.path.resolve()
            if path in self.vectors:
                found[clip] = self.vectors[path]
            elif path in self.failed:
                failed.append((clip, self.failed[path]))
            else:
                absent.append(clip)
        if absent:
            raise ValueError(
                f"{self.source}: no embedding for {len(absent)} of {len(clips)} clips, e.g. {absent[0].path}; "
                "embed every file of the task (decar embed TASK_FOLDER -o OUT) and pass OUT"
            )
        return found, failed

    def embed(self, waveforms: list[np.ndarray]) -> np.ndarray:
        raise TypeError("precomputed embeddings are looked up by file (lookup), not computed from waveforms")


class HearEvalModel(EvalModel):
    """A HEAR 2021 module: `load_model(file)` once, then `get_scene_embeddings` on equal-length batches.

    Args:
        module_name: importable module implementing the HEAR API.
        model_file: passed to `load_model` ("" for the module's default model).
        device: where the model and the audio tensors go.
    """

    def __init__(self, module_name: str, model_file: str = "", device: str = "cpu") -> None:
        where = f"hear:{module_name}"
        try:
            self.module = importlib.import_module(module_name)
        except ImportError as err:
            raise ValueError(f"{where}: cannot import HEAR module {module_name!r}: {err}") from err
        for function in ("load_model", "get_scene_embeddings"):
            if not callable(getattr(self.module, function, None)):
                raise ValueError(f"{where}: module {module_name!r} has no {function}() (not a HEAR API module)")
        self.model = self.module.load_model(model_file)
        for attribute in ("sample_rate", "scene_embedding_size"):
            if not hasattr(self.model, attribute):
                raise ValueError(f"{where}: load_model() returned a model without the HEAR attribute {attribute!r}")
        if isinstance(self.model, torch.nn.Module):
            self.model = self.model.to(device).eval()
        self.device = torch.device(device)
        self.name = f"HEAR {module_name}" + (f" ({Path(model_file).name})" if model_file else "")
        self.sample_rate = int(self.model.sample_rate)
        self.embed_dim = int(self.model.scene_embedding_size)
        source = getattr(self.module, "__file__", None)
        has_file = bool(model_file) and Path(model_file).is_file()
        meta = {
            "kind": "hear",
            "decar_version": decar.__version__,
            "module": module_name,
            "module_version": str(getattr(self.module, "__version__", "")),
            "module_source_sha256": _file_sha256(Path(source)) if source else "",
            "model": _file_sha256(Path(model_file)) if has_file else model_file,  # content, not location
            "sample_rate": self.sample_rate,
        }
        self.fingerprint = _digest(meta)

    @torch.inference_mode()
    def embed(self, waveforms: list[np.ndarray]) -> np.ndarray:
        """HEAR takes rectangular batches, so clips of equal length are embedded together, others apart."""
        out = np.zeros((len(waveforms), self.embed_dim), dtype=np.float32)
        by_length: dict[int, list[int]] = {}
        for index, wave in enumerate(waveforms):
            by_length.setdefault(len(wave), []).append(index)
        for indices in by_length.values():
            audio = torch.from_numpy(np.stack([np.asarray(waveforms[i], dtype=np.float32) for i in indices]))
            embeddings = self.module.get_scene_embeddings(audio.to(self.device), self.model)
            array = embeddings.detach().float().cpu().numpy()
            if array.shape != (len(indices), self.embed_dim):
                raise ValueError(
                    f"{self.name}: get_scene_embeddings returned shape {array.shape} for {len(indices)} clips; "
                    f"expected ({len(indices)}, {self.embed_dim})"
                )
            out[indices] = array
        return out


def load_eval_model(spec: str, device: str = "cpu") -> EvalModel:
    """Build the model a spec names (see the module docstring and `SPEC_FORMS`).

    Args:
        spec: model spec, e.g. "runs/base/checkpoint.pt", "random:runs/base/checkpoint.pt", "logmel-stats",
            "byola:AudioNTT2020-BYOLA-64x96d2048.pth" or "hear:decar.hear:runs/base/checkpoint.pt".
        device: where the model runs.

    Raises:
        ValueError: the spec matches none of the forms, or names a module that is not a HEAR module.
        decar.checkpoint.CheckpointError: a decar checkpoint is missing or unreadable.
    """
    kind, sep, rest = spec.partition(":")
    if spec == "logmel-stats":
        return LogMelStatsModel()
    if spec == PRETRAINED:
        encoder = decar.load(device=device)
        return EncoderModel(f"decar pretrained ({encoder.config.model.name})", "decar", encoder)
    if sep and kind == "random":
        return _random_init(_bundled_or(rest), device)
    if sep and kind == "byola":
        return _byola(Path(rest).expanduser(), device)
    if sep and kind == "hear":
        module_name, _, model_file = rest.partition(":")
        if not module_name:
            raise ValueError(f"model spec {spec!r}: name the HEAR module, e.g. hear:decar.hear:<checkpoint.pt>")
        return HearEvalModel(module_name, model_file, device)
    if sep and kind == "embeddings":
        return PrecomputedEmbeddings(Path(rest).expanduser())
    path = Path(spec).expanduser()
    if path.suffix in (".pt", ".safetensors"):
        encoder = decar.load(path, device=device)
        return EncoderModel(f"decar {encoder.config.model.name} ({_short(path)})", "decar", encoder)
    raise ValueError(f"unknown model spec {spec!r}; expected one of: {', '.join(SPEC_FORMS)}")


def _bundled_or(spec_path: str) -> Path:
    """The path a spec names, where ``pretrained`` names the bundled model's file."""
    if spec_path != PRETRAINED:
        return Path(spec_path).expanduser()
    bundled = bundled_model_path()
    if bundled is None:
        raise NoBundledModelError(f"model spec {PRETRAINED!r}: this decar release bundles no pretrained model")
    return bundled


def _random_init(path: Path, device: str) -> RandomInitModel:
    """A checkpoint's (or a YAML config's) architecture and frontend around freshly initialised weights."""
    from_config = path.suffix in (".yaml", ".yml")
    if from_config:
        config = load_config(path)
        frontend = LogMelSpectrogram(config.frontend)
    else:
        trained = decar.load(path, device="cpu")
        config, frontend = trained.config, trained.frontend
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        encoder = create_model(config.model.name, **config.model.kwargs)
    audio_encoder = AudioEncoder(frontend, encoder, config).to(device).eval()
    return RandomInitModel(f"random-init ({config.model.name})", "random", audio_encoder, fit_norm_stats=from_config)


def _byola(path: Path, device: str) -> ByolaModel:
    if not path.is_file():
        raise ValueError(f"BYOL-A weights not found: {path}")
    encoder = load_byola_weights(path)
    config = DecarConfig(
        frontend=dataclasses.replace(BYOLA_FRONTEND, n_mels=encoder.n_mels),
        model=ModelConfig(name="audiontt2020", kwargs={"d": encoder.embed_dim, "n_mels": encoder.n_mels}),
        data=DataConfig(crop_seconds=BYOLA_WINDOW_SECONDS),
    )
    audio_encoder = AudioEncoder(LogMelSpectrogram(config.frontend), encoder, config).to(device).eval()
    return ByolaModel(f"BYOL-A d{encoder.embed_dim} ({path.name})", "byola", audio_encoder)


def _samples_for_frames(fe: FrontendConfig, frames: int) -> int:
    """Shortest waveform that the frontend turns into exactly `frames` frames."""
    return (frames - 1) * fe.hop_length + (1 if fe.center else fe.win_length)


def _centre_crop(wave: np.ndarray, length: int) -> np.ndarray:
    """The middle `length` samples of a clip, or the clip centred in zeros when it is shorter."""
    wave = np.asarray(wave, dtype=np.float32)
    if len(wave) >= length:
        start = (len(wave) - length) // 2
        return wave[start : start + length]
    before = (length - len(wave)) // 2
    return np.pad(wave, (before, length - len(wave) - before))


def _digest(meta: dict[str, Any]) -> str:
    """Cache identity of a model described by JSON metadata (32 hex digits)."""
    return content_digest(meta)[:32]


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _short(path: Path) -> str:
    """The file with its folder (runs/<name>/checkpoint.pt → <name>/checkpoint.pt), enough to tell runs apart."""
    return str(Path(path.parent.name) / path.name) if path.parent.name else path.name


__all__ = [
    "BYOLA_FRONTEND",
    "SPEC_FORMS",
    "ByolaModel",
    "EncoderModel",
    "EvalModel",
    "HearEvalModel",
    "LogMelStatsModel",
    "RandomInitModel",
    "load_eval_model",
]
