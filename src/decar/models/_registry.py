"""Model registry: encoders are built by name so configs and checkpoints only need to store a string.

Every registered factory returns an audio encoder that takes a log-mel batch ``(B, 1, T, F)`` (time frames
before mel bins) and provides ``forward(x) -> (B, embed_dim)``, ``forward_frames(x) -> (B, T', embed_dim)``
and the integer attributes ``embed_dim`` and ``frame_stride`` (input frames per output frame).
"""

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

import torch
from torch import nn

__all__ = ["clean_state_dict", "create_model", "list_models", "register_model"]

_ModelFactory = TypeVar("_ModelFactory", bound=Callable[..., nn.Module])

_MODELS: dict[str, Callable[..., nn.Module]] = {}

WRAPPER_PREFIXES: tuple[str, ...] = ("module.", "_orig_mod.", "encoder.", "model_efficient.")
"""Key prefixes added by wrappers: DataParallel/DDP (``module.``), ``torch.compile`` (``_orig_mod.``),
an encoder held as an attribute (``encoder.``), and the official DECAR v1 code (``model_efficient.``)."""


def register_model(factory: _ModelFactory) -> _ModelFactory:
    """Register a model factory under its function name, so ``create_model(name)`` can build it.

    Args:
        factory: Function returning an encoder ``nn.Module``; its ``__name__`` becomes the model name.

    Returns:
        The same function, unchanged.

    Raises:
        ValueError: If a model of that name is already registered.
    """
    name = factory.__name__
    if name in _MODELS:
        raise ValueError(f"model {name!r} is already registered")
    _MODELS[name] = factory
    return factory


def list_models() -> list[str]:
    """Return the names of all registered models, sorted."""
    return sorted(_MODELS)


def create_model(name: str, **kwargs: object) -> nn.Module:
    """Build a registered encoder by name.

    Keyword arguments whose value is ``None`` are dropped, so optional config fields fall back to the
    factory's defaults instead of overriding them with ``None``.

    Args:
        name: A name from ``list_models()``, e.g. ``"efficientnet_b0"`` or ``"audiontt2020"``.
        **kwargs: Passed to the factory (e.g. ``d=512`` for ``audiontt2020``).

    Returns:
        The encoder, freshly initialised, in training mode.

    Raises:
        ValueError: If ``name`` is not registered, or a keyword is not the factory's; the message lists the
            available names or arguments.

    Example:
        >>> model = create_model("audiontt2020", d=512)
        >>> model(torch.zeros(2, 1, 96, 64)).shape
        torch.Size([2, 512])
    """
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; available models: {', '.join(list_models())}")
    factory = _MODELS[name]
    accepted = inspect.signature(factory).parameters
    unknown = sorted(key for key in kwargs if key not in accepted)
    if unknown and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        raise ValueError(
            f"model {name!r} takes no argument(s) {', '.join(map(repr, unknown))}; it takes: {', '.join(accepted)}"
            " (in YAML flow style write `{d: 512}` with a space: `{d:512}` is one key named 'd:512')"
        )
    return factory(**{key: value for key, value in kwargs.items() if value is not None})


def clean_state_dict(
    state_dict: Mapping[str, torch.Tensor], prefixes: Iterable[str] = WRAPPER_PREFIXES
) -> dict[str, torch.Tensor]:
    """Strip wrapper prefixes from state-dict keys so the weights load strictly into a bare encoder.

    Any leading run of the given prefixes is removed from each key, e.g.
    ``module._orig_mod._conv_stem.weight`` becomes ``_conv_stem.weight``. Keys without a prefix are kept
    as they are; other entries (a training head, say) are not dropped, so a strict load still reports them.

    Args:
        state_dict: Mapping from parameter/buffer name to tensor.
        prefixes: Prefixes to strip, tried repeatedly in any order.

    Returns:
        A new dict with the cleaned keys, in the original order.

    Raises:
        ValueError: If two keys become identical after stripping.
    """
    prefixes = tuple(p for p in prefixes if p)
    cleaned: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        new_key = key
        while stripped := next((p for p in prefixes if new_key.startswith(p)), None):
            new_key = new_key[len(stripped) :]
        if new_key in cleaned:
            raise ValueError(f"state-dict keys collide after stripping prefixes: {key!r} -> {new_key!r}")
        cleaned[new_key] = value
    return cleaned
