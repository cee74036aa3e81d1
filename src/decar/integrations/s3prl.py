"""A decar checkpoint as an s3prl upstream, so SUPERB and ESPnet recipes can use it (s3prl itself not needed).

s3prl finds upstreams through ``hubconf.py`` files whose public functions become model names. To register
decar in an s3prl checkout, create ``s3prl/upstream/decar/hubconf.py`` holding

.. code-block:: python

    from decar.integrations.s3prl import decar, decar_local  # noqa: F401

and add ``from .upstream.decar.hubconf import *`` to ``s3prl/hub.py``. Then s3prl's ``*_local`` convention
takes the checkpoint path from ``-k``::

    python run_downstream.py -m train -u decar_local -k runs/<name>/checkpoint.pt -d <task> -n <exp>

The upstream is a frozen feature extractor: `AudioEncoder.embed_frames` windows long audio (bounded memory, the
same frames alone or in a batch) and runs without gradients, so s3prl's upstream fine-tuning (``-f``) does not
train it. It returns a single hidden state, so s3prl's weighted sum over layers reduces to that layer.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from decar.embed import load

SAMPLE_RATE = 16000
"""s3prl feeds every upstream 16 kHz audio; models trained at another rate get it resampled."""


class UpstreamExpert(nn.Module):
    """s3prl's upstream contract over `decar.AudioEncoder` frame embeddings.

    Args:
        ckpt: a decar ``checkpoint.pt`` or ``encoder.safetensors``; None means the model bundled with decar.
        model_config: must be None: decar checkpoints carry their own config.
        **kwargs: other options s3prl passes to every upstream (e.g. ``refresh``); unused, as nothing is
            downloaded.

    Attributes:
        model: the wrapped encoder; moving this module (``.to(device)``) moves it.
    """

    def __init__(self, ckpt: str | None = None, model_config: str | None = None, **kwargs: object) -> None:
        super().__init__()
        if model_config is not None:
            raise ValueError(
                f"decar checkpoints carry their own config; drop model_config={model_config!r} "
                "(s3prl's -g / --upstream_model_config)"
            )
        self.model = load(ckpt)

    def train(self, mode: bool = True) -> UpstreamExpert:
        """Set this module's flag but keep the encoder in eval mode: it is frozen, and BatchNorm must not drift."""
        super().train(mode)
        self.model.eval()
        return self

    def get_downsample_rates(self, key: str) -> int:
        """Input samples (at 16 kHz) per output frame, for every key; s3prl derives frame counts from it."""
        fe = self.model.config.frontend
        return round(fe.hop_length * self.model.frame_stride * SAMPLE_RATE / fe.sample_rate)

    def forward(self, wavs: list[Tensor]) -> dict[str, list[Tensor] | Tensor]:
        """Frame embeddings every `get_downsample_rates` samples for each unpadded 16 kHz waveform.

        Args:
            wavs: 1-D float tensors of different lengths, as s3prl passes them.

        Returns:
            ``{"hidden_states": [h], "last_hidden_state": h}`` with ``h`` float32 (B, T_max, D) on the device of
            ``wavs``. Wav i fills rows ``[0, T_i)``, with ``T_i`` about ``len_i / rate``: frames centred past its
            end are dropped (one frame at least), as in `AudioEncoder.embed_frames`. Later rows are zeros.
        """
        _check_wavs(wavs)
        frames, _ = self.model.embed_frames(wavs, sample_rate=SAMPLE_RATE)
        sequences = [torch.from_numpy(sequence) for sequence in frames]
        hidden = torch.zeros(len(sequences), max(len(s) for s in sequences), self.model.embed_dim)
        for row, sequence in zip(hidden, sequences, strict=True):
            row[: len(sequence)] = sequence
        hidden = hidden.to(wavs[0].device)
        return {"hidden_states": [hidden], "last_hidden_state": hidden}


def _check_wavs(wavs: list[Tensor]) -> None:
    """s3prl hands a list of 1-D float tensors; say clearly what else arrived."""
    if not isinstance(wavs, list | tuple):
        raise TypeError(f"wavs must be a list of 1-D torch.Tensors, got {type(wavs).__name__}")
    if not wavs:
        raise ValueError("wavs is empty: pass at least one waveform")
    for i, wav in enumerate(wavs):
        if not isinstance(wav, Tensor):
            raise TypeError(f"wavs[{i}] must be a torch.Tensor, got {type(wav).__name__}")
        if wav.ndim != 1 or wav.numel() == 0:
            raise ValueError(f"wavs[{i}] must be a non-empty 1-D waveform at 16 kHz, got shape {tuple(wav.shape)}")
        if not wav.is_floating_point():
            raise ValueError(f"wavs[{i}] must be a float tensor with samples in [-1, 1], got dtype {wav.dtype}")


def decar_local(ckpt: str, *args: object, **kwargs: object) -> UpstreamExpert:
    """s3prl model ``decar_local``: a decar checkpoint from a local path (s3prl's ``-k``)."""
    return UpstreamExpert(ckpt, *args, **kwargs)


def decar(**kwargs: object) -> UpstreamExpert:
    """s3prl model ``decar``: the pretrained model bundled with decar.

    Like s3prl's own hubconf entries it replaces any ``ckpt`` it is given; ``decar_local`` takes a checkpoint path.
    """
    return UpstreamExpert(**{**kwargs, "ckpt": None})
