"""Checkpoints: one file that rebuilds the model and resumes the run, written atomically, loaded without code.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts saved with `torch.save`, so it loads
with `torch.load(weights_only=True)` (no pickle code execution). Exported encoders are safetensors files whose
metadata header carries the config and normalisation statistics as JSON.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, safe_open, save

import decar
from decar._io import atomic_write, atomic_write_bytes, atomic_write_text  # noqa: F401  (re-exported)

FORMAT_NAME = "decar-checkpoint"
FORMAT_VERSION = 2


class CheckpointError(ValueError):
    """A file that is not a usable decar checkpoint; the message names the file and the reason."""


def git_sha() -> str | None:
    """The commit decar runs from, when it runs from a git checkout (recorded for provenance)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically save a training state dict (adds format name, version, decar version and git SHA)."""
    payload = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "decar_version": decar.__version__,
        "git_sha": git_sha(),
        **state,
    }
    atomic_write(path, lambda handle: torch.save(payload, handle))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint on CPU with `weights_only=True`; raises CheckpointError naming the file on failure."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        return _load_safetensors(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err.__class__.__name__}: {err}") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path} is not a decar checkpoint (no '{FORMAT_NAME}' format marker)")
    if not isinstance(state.get("format_version"), int):
        raise CheckpointError(f"{path}: no integer format_version")
    if state["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format version {state['format_version']}; "
            f"this decar reads up to {FORMAT_VERSION}: upgrade decar"
        )
    return state


def validate_model_fields(path: Path, state: dict[str, Any]) -> dict[str, Any]:
    """Check what rebuilding the model needs: a config dict, finite normalisation statistics, finite weights.

    Raises:
        CheckpointError: naming the file and the missing or bad field.
    """
    if not isinstance(state.get("config"), dict):
        raise CheckpointError(f"{path}: no 'config' mapping (the settings that rebuild the model)")
    stats = state.get("frontend_stats")
    if not isinstance(stats, dict) or not {"mean", "std"} <= set(stats):
        raise CheckpointError(f"{path}: no 'frontend_stats' with 'mean' and 'std'")
    values = (stats["mean"], stats["std"])
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        raise CheckpointError(f"{path}: frontend_stats must be finite numbers, got {stats}")
    if stats["std"] <= 0:
        raise CheckpointError(f"{path}: frontend_stats std must be > 0, got {stats['std']}")
    weights = state.get("encoder")
    if not isinstance(weights, dict) or not weights:
        raise CheckpointError(f"{path}: no 'encoder' weights")
    for key, tensor in weights.items():
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"{path}: encoder entry {key!r} is not a tensor")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: encoder weight {key!r} holds NaN or infinite values")
    return state


def export_encoder(path: str | Path, checkpoint: dict[str, Any]) -> None:
    """Write the encoder weights of a training checkpoint as safetensors with config and stats as metadata."""
    metadata = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "decar_version": decar.__version__,
        "config": json.dumps(checkpoint["config"]),
        "frontend_stats": json.dumps(checkpoint["frontend_stats"]),
        "epoch": str(checkpoint.get("epoch", -1)),
    }
    tensors = {k: v.contiguous() for k, v in checkpoint["encoder"].items()}
    atomic_write_bytes(path, save(tensors, metadata=metadata))


def _load_safetensors(path: Path) -> dict[str, Any]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path))
    except Exception as err:
        raise CheckpointError(f"cannot read safetensors file {path}: {err}") from err
    if metadata.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path} is a safetensors file but not a decar encoder export (metadata lacks format)")
    try:
        state = {
            "format": FORMAT_NAME,
            "format_version": int(metadata["format_version"]),
            "config": json.loads(metadata["config"]),
            "frontend_stats": json.loads(metadata["frontend_stats"]),
            "encoder": tensors,
            "epoch": int(metadata.get("epoch", -1)),
        }
    except (KeyError, ValueError) as err:
        raise CheckpointError(f"{path}: its metadata lacks or garbles {err}") from err
    return validate_model_fields(path, state)
