"""The HEAR 2021 API, so that hear-eval-kit and hear-validator can evaluate decar models as they are.

Use the module itself as the HEAR module name: ``hear-validator decar.hear -m runs/<name>/checkpoint.pt``.
The functions are thin adapters over `decar.AudioEncoder`, which already windows long audio, gives the same
result for a clip alone or in a batch, and spaces frame embeddings evenly; this module only checks inputs and
converts between the HEAR tensor contract and the encoder's numpy outputs.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from decar.embed import AudioEncoder, NoBundledModelError, load


class HearModel(nn.Module):
    """An `AudioEncoder` carrying the attributes the HEAR API reads.

    A wrapper rather than attributes set on the encoder, so that HEAR's names stay out of decar's own class.

    Attributes:
        encoder: the wrapped encoder; moving this module (``.to(device)``) moves it.
        sample_rate: input rate in Hz that callers must deliver (HEAR does no resampling).
        scene_embedding_size: size of `get_scene_embeddings` rows.
        timestamp_embedding_size: size of `get_timestamp_embeddings` frames.
        batch_size: encoder windows per forward pass; bounds memory on long clips.
    """

    def __init__(self, encoder: AudioEncoder, batch_size: int = 8) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        self.encoder = encoder
        self.sample_rate = int(encoder.sample_rate)
        self.scene_embedding_size = int(encoder.embed_dim)
        self.timestamp_embedding_size = int(encoder.embed_dim)
        self.batch_size = batch_size


def load_model(model_file_path: str | None = "", device: str | None = None, batch_size: int = 8) -> HearModel:
    """Load a decar checkpoint as a HEAR model (in eval mode).

    hear-eval-kit passes its ``--model-options`` JSON as keyword arguments, so ``{"batch_size": 64}`` works.

    Args:
        model_file_path: a `checkpoint.pt` or `encoder.safetensors` file; "" or None means the pretrained model
            bundled with decar.
        device: where the model runs (default CPU; HEAR runners move it with ``.to()`` afterwards anyway).
        batch_size: encoder windows per forward pass.

    Raises:
        NoBundledModelError: no path given and this decar release bundles no pretrained model.
    """
    path = model_file_path or None
    try:
        encoder = load(path, device=device or "cpu")
    except NoBundledModelError as error:
        raise NoBundledModelError(
            "decar.hear.load_model() without a path needs the bundled pretrained model, and this decar release "
            "bundles no pretrained model yet. Pass a checkpoint path instead: "
            "load_model('runs/<name>/checkpoint.pt'), or `hear-validator decar.hear -m runs/<name>/checkpoint.pt`."
        ) from error
    return HearModel(encoder, batch_size=batch_size).eval()


def get_timestamp_embeddings(audio: Tensor, model: HearModel) -> tuple[Tensor, Tensor]:
    """Frame embeddings every ``model.encoder.frame_hop_ms`` milliseconds, for event tasks.

    Args:
        audio: float (n, samples) at ``model.sample_rate``, in [-1, 1].
        model: from `load_model`.

    Returns:
        (embeddings, timestamps): float32 (n, T, D) and (n, T) milliseconds at frame centres, both on the
        model's device. Frames centred beyond the end of the audio are dropped. Timestamps are float64 (float32
        on MPS, which lacks it): hear-validator allows 1e-3 ms of spacing jitter, and float32 steps exceed that
        beyond about 8.4 s whenever frame times are not exactly representable.
    """
    audio = _check_audio(audio, model)
    embeddings, timestamps = model.encoder.embed_frames(audio, batch_size=model.batch_size)
    device = _device(model)
    time_dtype = torch.float32 if device.type == "mps" else torch.float64
    return (
        torch.from_numpy(np.asarray(embeddings, dtype=np.float32)).to(device),
        torch.from_numpy(np.asarray(timestamps, dtype=np.float64)).to(device, time_dtype),
    )


def get_scene_embeddings(audio: Tensor, model: HearModel) -> Tensor:
    """One float32 (n, D) embedding per clip, on the model's device: the duration-weighted mean of its windows.

    Args:
        audio: float (n, samples) at ``model.sample_rate``, in [-1, 1].
        model: from `load_model`.
    """
    audio = _check_audio(audio, model)
    embeddings = model.encoder.embed(audio, batch_size=model.batch_size)
    return torch.from_numpy(embeddings).to(_device(model))


def _check_audio(audio: Tensor | np.ndarray, model: HearModel) -> Tensor:
    """HEAR hands a rectangular batch at the model's rate (a numpy array is taken too); say clearly what else
    arrived."""
    if not isinstance(model, HearModel):
        raise TypeError(f"model must come from decar.hear.load_model, got {type(model).__name__}")
    if isinstance(audio, np.ndarray):
        audio = torch.from_numpy(audio)
    if not isinstance(audio, Tensor):
        raise TypeError(
            f"audio must be a torch.Tensor (or numpy array) of shape (n, samples), got {type(audio).__name__}"
        )
    if audio.ndim != 2:
        raise ValueError(
            f"audio must have shape (n, samples) at {model.sample_rate} Hz, got shape {tuple(audio.shape)}"
        )
    if not audio.is_floating_point():
        raise ValueError(f"audio must be a float tensor with samples in [-1, 1], got dtype {audio.dtype}")
    if audio.shape[0] == 0 or audio.shape[1] == 0:
        raise ValueError(f"audio must hold at least one clip of at least one sample, got shape {tuple(audio.shape)}")
    return audio


def _device(model: HearModel) -> torch.device:
    return next(model.encoder.parameters()).device
