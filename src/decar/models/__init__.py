"""Audio encoders, built by name: ``create_model("efficientnet_b0")`` (DECAR v1) or
``create_model("audiontt2020", d=2048)`` (DECAR v2, BYOL-A's network).

All take a log-mel batch ``(B, 1, T, F)`` and give ``forward(x) -> (B, embed_dim)`` and
``forward_frames(x) -> (B, T', embed_dim)`` with ``T' ≈ T / frame_stride``.
"""

from decar.models._registry import clean_state_dict, create_model, list_models, register_model
from decar.models.audiontt import AudioNTT2020, audiontt2020, load_byola_weights
from decar.models.efficientnet import EfficientNetB0, efficientnet_b0

__all__ = [
    "AudioNTT2020",
    "EfficientNetB0",
    "audiontt2020",
    "clean_state_dict",
    "create_model",
    "efficientnet_b0",
    "list_models",
    "load_byola_weights",
    "register_model",
]
