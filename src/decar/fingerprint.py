"""Content hashes that say whether stored embeddings were made by the model at hand.

`model_fingerprint` is the one identity of an `AudioEncoder`'s embeddings, shared by the embedding manifest
(`decar embed`) and the evaluation cache, so that the two never disagree about which models are the same.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from decar.embed import AudioEncoder

MODEL_FINGERPRINT_LENGTH = 16
"""Hex digits of `model_fingerprint`: 64 bits, ample to tell apart the models that write to one folder."""


def content_digest(meta: Mapping[str, Any], tensors: Mapping[str, torch.Tensor] | None = None) -> str:
    """SHA-256 (hex) of JSON metadata and, in name order, each tensor's name, dtype, shape and raw bytes."""
    digest = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for name, tensor in sorted((tensors or {}).items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
        digest.update(value.view(-1).view(torch.uint8).numpy().tobytes())  # raw bytes of any dtype, bf16 too
    return digest.hexdigest()


def model_fingerprint(model: AudioEncoder) -> str:
    """Hex digits identifying what determines the embeddings: frontend, encoder, window, precision and weights.

    Computed from the loaded model, so `checkpoint.pt` and its `encoder.safetensors` export agree, and
    training-only settings (epochs, learning rate) do not count. The device and channels-last layout do not
    count either: they change float rounding, not what is computed; bfloat16 inference does.
    """
    config = model.config
    described: dict[str, Any] = {
        "frontend": asdict(config.frontend),
        "model": asdict(config.model),
        "window_frames": model.window_frames,
    }
    if model.precision != "fp32":  # fp32 fingerprints stay those of outputs written before precision counted
        described["precision"] = model.precision
    return content_digest(described, model.state_dict())[:MODEL_FINGERPRINT_LENGTH]


__all__ = ["MODEL_FINGERPRINT_LENGTH", "content_digest", "model_fingerprint"]
