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


def export_encoder(
    path: str | Path, checkpoint: dict[str, Any], half: bool = False, extra: dict[str, str] | None = None
) -> None:
    """Write the encoder weights of a training checkpoint as safetensors with config and stats as metadata.

    ``half`` stores the weights as float16 (half the size; they load back as float32) but keeps BatchNorm's
    running statistics in float32: their values (down to 1e-11 in a trained EfficientNet) underflow in float16
    and a zeroed variance blows the activations up. ``extra`` adds metadata strings (a release's training log
    and commands).
    """
    metadata = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "decar_version": decar.__version__,
        "config": json.dumps(checkpoint["config"]),
        "frontend_stats": json.dumps(checkpoint["frontend_stats"]),
        "epoch": str(checkpoint.get("epoch", -1)),
        **(extra or {}),
    }
    tensors = {
        k: (v.half() if half and v.is_floating_point() and ".running_" not in k else v).contiguous()
        for k, v in checkpoint["encoder"].items()
    }
    atomic_write_bytes(path, save(tensors, metadata=metadata))


HALF_TOLERANCE = 0.01
"""Largest change of a release's embeddings (relative to their RMS) that float16 storage may cause."""


def export_release(checkpoint_path: str | Path, out: str | Path, half: bool = True) -> dict[str, Any]:
    """A model to ship: the encoder of a training checkpoint as safetensors whose metadata also holds the run's
    training log (one JSON record per epoch) and the commands that made it (the run folder's commands.txt).

    With ``half`` the weights are stored as float16 only if that changes the embeddings of a fixed test signal
    by at most HALF_TOLERANCE of their RMS (a badly conditioned network amplifies the rounding); otherwise the
    file keeps float32 and says why. Returns what was written: path, bytes, dtype, the float16 change, epochs,
    number of weights.
    """
    from decar.embed import load

    checkpoint_path, out = Path(checkpoint_path), Path(out)
    checkpoint = load_checkpoint(checkpoint_path)
    if "run_state" not in checkpoint:
        raise CheckpointError(f"{checkpoint_path} is not a training checkpoint (checkpoint.pt): it has no training log")
    history = checkpoint["run_state"]["history"]
    commands = checkpoint_path.parent / "commands.txt"
    extra = {
        "training_log": "".join(json.dumps(record) + "\n" for record in history),
        "commands": commands.read_text(encoding="utf-8") if commands.is_file() else "",
        "source": checkpoint_path.name,
    }
    change = None
    if half:
        export_encoder(out, checkpoint, half=True, extra=extra)
        change = _half_change(load(checkpoint_path), load(out))
        half = change <= HALF_TOLERANCE
    if not half:
        export_encoder(out, checkpoint, extra=extra)
    count = sum(int(v.numel()) for v in checkpoint["encoder"].values() if v.is_floating_point())
    return {
        "path": str(out),
        "bytes": out.stat().st_size,
        "dtype": "float16" if half else "float32",
        "half_change": change,
        "epochs": len(history),
        "weights": count,
    }


def _half_change(full: torch.nn.Module, half: torch.nn.Module) -> float:
    """How much float16 weights move the embeddings of 2 s of seeded noise and tones, relative to their RMS."""
    generator = torch.Generator().manual_seed(0)
    time = torch.arange(32000) / 16000
    tones = 0.3 * torch.sin(2 * math.pi * torch.tensor([[220.0], [1760.0]]) * time)
    wave = tones + 0.05 * torch.randn(2, 32000, generator=generator)
    with torch.no_grad():
        reference, rounded = full(wave), half(wave)
    return float((rounded - reference).square().mean().sqrt() / reference.square().mean().sqrt().clamp_min(1e-12))


def release_metadata(path: str | Path) -> dict[str, str]:
    """The metadata strings of an exported model (training_log, commands, config, ...)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except Exception as err:
        raise CheckpointError(f"cannot read safetensors file {path}: {err}") from err


def _load_safetensors(path: Path) -> dict[str, Any]:
    metadata = release_metadata(path)
    try:
        tensors = {k: v.float() if v.dtype == torch.float16 else v for k, v in load_file(str(path)).items()}
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
