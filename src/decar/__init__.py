"""decar: general-purpose audio representations by deep clustering (DECAR), from a laptop CPU to many GPUs."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from decar.embed import AudioEncoder, load
    from decar.models import create_model, list_models

_LAZY = {
    "AudioEncoder": "decar.embed",
    "load": "decar.embed",
    "create_model": "decar.models",
    "list_models": "decar.models",
}
"""Names imported on first use, so that `import decar` (and `decar --help`) does not wait for torch."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'decar' has no attribute {name!r}")


__all__ = ["AudioEncoder", "__version__", "create_model", "list_models", "load"]
