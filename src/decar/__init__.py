"""decar: general-purpose audio representations by deep clustering (DECAR), from a laptop CPU to many GPUs."""

__version__ = "0.1.0"

from decar.embed import AudioEncoder, load
from decar.models import create_model, list_models

__all__ = ["AudioEncoder", "__version__", "create_model", "list_models", "load"]
