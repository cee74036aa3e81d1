"""ONNX export of a decar encoder, for inference without PyTorch (onnxruntime, TensorRT, browsers, ...).

The default graph maps a normalised log-mel batch ``(batch, 1, frames, n_mels)`` to clip embeddings
``(batch, embed_dim)``; batch and frames are dynamic. Everything needed to compute that input (frontend config,
normalisation statistics, sample rate) travels in the model's ``metadata_props``::

    meta = onnxruntime.InferenceSession("model.onnx").get_modelmeta().custom_metadata_map
    FrontendConfig(**json.loads(meta["frontend_config"]))  # then (logmel - norm_mean) / norm_std

``include_frontend=True`` exports waveform -> embedding instead (STFT included; needs opset 18 and the slower
torch.export-based exporter, about a minute for EfficientNet-B0 on a laptop CPU). Either graph
embeds its whole input as one crop, like ``AudioEncoder.forward``; `AudioEncoder.embed` instead averages
windows of the training crop length, which differs for long audio.

The exporter records shape arithmetic (EfficientNet's TF "SAME" padding is computed from each input's size)
and can get it wrong silently, so every export is checked against PyTorch with onnxruntime at input lengths
other than the traced one before the file is written.
"""

from __future__ import annotations

import importlib
import io
import json
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

import decar
from decar._io import atomic_write_bytes
from decar.embed import AudioEncoder

if TYPE_CHECKING:
    from onnx import ModelProto

ENCODER_OPSET = 17
"""Default opset of the log-mel graph (the legacy TorchScript exporter)."""
FRONTEND_OPSET = 18
"""Lowest opset of the waveform graph: the torch.export-based exporter, which handles complex STFT, starts here."""
TRACE_FRAMES = 100
"""Log-mel frames of the example input the graph is traced with (about 1 s)."""
CHECK_FRAMES = (37, 64, 101)
"""Lengths, in log-mel frames, at which the export is checked; odd and even, none equal to TRACE_FRAMES."""
CHECK_TOLERANCE = 1e-3
"""Largest accepted |onnx - torch| relative to the output's scale; exporter bugs give errors of order one."""


class OnnxExportError(RuntimeError):
    """The exported graph does not reproduce the PyTorch model; nothing was written."""


def export_onnx(
    checkpoint: str | Path, output: str | Path, opset: int | None = None, include_frontend: bool = False
) -> Path:
    """Export a checkpoint's encoder (and optionally its frontend) to an ONNX file, written atomically.

    Args:
        checkpoint: a decar ``checkpoint.pt`` or ``encoder.safetensors``.
        output: the ``.onnx`` file to write (parent folders are created).
        opset: ONNX opset; default 17 for the log-mel graph and 18 (the minimum) with the frontend.
        include_frontend: input raw waveforms (batch, samples) at the model's rate instead of log-mels.

    Returns:
        The path written.

    Raises:
        ImportError: onnx, onnxruntime or (with the frontend) onnxscript is not installed.
        CheckpointError: the checkpoint is missing or unreadable.
        ValueError: an opset below 18 with ``include_frontend``.
        OnnxExportError: the exported graph disagrees with PyTorch (nothing is written).
    """
    _require("onnx", "onnxruntime", *(["onnxscript"] if include_frontend else []))
    import onnx

    if opset is None:
        opset = FRONTEND_OPSET if include_frontend else ENCODER_OPSET
    if include_frontend and opset < FRONTEND_OPSET:
        raise ValueError(f"include_frontend needs opset >= {FRONTEND_OPSET} (complex STFT export), got {opset}")
    model = decar.load(checkpoint)
    fe = model.config.frontend
    min_frames = int(getattr(model.encoder, "min_frames", 1))
    metadata = _metadata(model, min_frames, include_frontend)
    if include_frontend:
        network: nn.Module = model
        min_samples = int(metadata["min_samples"])
        # A third of a hop more than whole frames: the last hop is ragged, as in real files.
        lengths = [max(min_samples, frames * fe.hop_length + fe.hop_length // 3) for frames in CHECK_FRAMES]
        proto = _export_waveform_graph(model, opset, min_samples)
    else:
        network = model.encoder
        lengths = [max(min_frames, frames) for frames in CHECK_FRAMES]
        proto = onnx.load_from_string(_export_logmel_graph(model.encoder, fe.n_mels, opset))
    onnx.helper.set_model_props(proto, metadata)
    proto.doc_string = metadata["usage"]
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    _check_against_torch(data, network, lengths, fe.n_mels)
    output = Path(output)
    atomic_write_bytes(output, data)
    return output


def _require(*modules: str) -> None:
    """Import the optional dependencies up front, so a missing one fails with the install command."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise ImportError(f"ONNX export needs {name}: pip install 'decar[onnx]'") from error


def _metadata(model: AudioEncoder, min_frames: int, include_frontend: bool) -> dict[str, str]:
    """Everything a user needs to feed the graph and read its output, as strings (ONNX metadata_props)."""
    fe = model.config.frontend
    metadata = {
        "decar_version": decar.__version__,
        "input": "waveform" if include_frontend else "logmel",
        "sample_rate": str(fe.sample_rate),
        "frontend_config": json.dumps(asdict(fe)),
        "norm_mean": repr(float(model.frontend.norm_mean)),
        "norm_std": repr(float(model.frontend.norm_std)),
        "model_name": model.config.model.name,
        "model_kwargs": json.dumps(model.config.model.kwargs),
        "embed_dim": str(model.embed_dim),
        "frame_stride": str(model.frame_stride),
        "min_frames": str(min_frames),
    }
    if include_frontend:
        metadata["min_samples"] = str(_min_samples(model, min_frames))
        metadata["usage"] = (
            f"waveform float32 (batch, samples >= {metadata['min_samples']}) at {fe.sample_rate} Hz "
            f"-> embedding (batch, {model.embed_dim})"
        )
    else:
        metadata["usage"] = (
            f"logmel float32 (batch, 1, frames >= {min_frames}, {fe.n_mels}): the decar frontend "
            f"(frontend_config) normalised as (logmel - norm_mean) / norm_std; zero-pad shorter inputs to "
            f"min_frames -> embedding (batch, {model.embed_dim})"
        )
    return metadata


def _min_samples(model: AudioEncoder, min_frames: int) -> int:
    """Shortest waveform the waveform graph handles.

    The frontend's padding branches and the encoder's padding of short inputs are fixed when the graph is traced.
    """
    fe = model.config.frontend
    if fe.center:
        return max(fe.n_fft // 2 + 1, (min_frames - 1) * fe.hop_length)
    return fe.win_length + (min_frames - 1) * fe.hop_length


def _export_logmel_graph(encoder: nn.Module, n_mels: int, opset: int) -> bytes:
    """Legacy TorchScript exporter: fast, and its dynamic axes keep the size-dependent padding symbolic."""
    example = torch.randn(2, 1, TRACE_FRAMES, n_mels, generator=torch.Generator().manual_seed(0))
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # Shape checks turn into constants (TracerWarning) and the exporter announces its deprecation; the
        # numerical check afterwards is what guards the graph.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        torch.onnx.export(
            encoder,
            (example,),
            buffer,
            opset_version=opset,
            dynamo=False,
            input_names=["logmel"],
            output_names=["embedding"],
            dynamic_axes={"logmel": {0: "batch", 2: "frames"}, "embedding": {0: "batch"}},
        )
    return buffer.getvalue()


def _export_waveform_graph(model: AudioEncoder, opset: int, min_samples: int) -> ModelProto:
    """torch.export-based exporter: the only one that exports torch.stft with complex output."""
    samples = model.config.frontend.win_length + (TRACE_FRAMES - 1) * model.config.frontend.hop_length
    example = 0.1 * torch.randn(2, samples, generator=torch.Generator().manual_seed(0))
    dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("samples", min=min_samples)}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", FutureWarning)
        program = torch.onnx.export(
            model,
            (example,),
            None,
            opset_version=opset,
            dynamo=True,
            input_names=["waveform"],
            output_names=["embedding"],
            dynamic_shapes=(dims,),
            verbose=False,
        )
    return program.model_proto


def _check_against_torch(data: bytes, network: nn.Module, lengths: list[int], n_mels: int) -> None:
    """Run the graph and the module on random inputs of several lengths and batch sizes; raise if they differ."""
    import onnxruntime

    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    (graph_input,) = session.get_inputs()
    generator = torch.Generator().manual_seed(1)
    for index, length in enumerate(lengths):
        batch = 1 + index % 2
        if graph_input.name == "waveform":
            inputs = 0.1 * torch.randn(batch, length, generator=generator)
        else:
            inputs = torch.randn(batch, 1, length, n_mels, generator=generator)
        with torch.no_grad():
            expected = network(inputs).numpy()
        where = f"{graph_input.name} of shape {tuple(inputs.shape)}"
        try:
            (actual,) = session.run(None, {graph_input.name: inputs.numpy()})
        except Exception as error:  # onnxruntime's own exception types
            raise OnnxExportError(f"the exported ONNX graph fails on {where}: {error}; no file was written") from error
        scale = max(1.0, float(np.abs(expected).max()))  # `not <=` below also rejects NaN
        if actual.shape != expected.shape or not np.abs(actual - expected).max() <= CHECK_TOLERANCE * scale:
            diff = np.abs(actual - expected).max() if actual.shape == expected.shape else "n/a"
            raise OnnxExportError(
                f"the exported ONNX graph disagrees with PyTorch on {where}: output {actual.shape} vs "
                f"{expected.shape}, max |diff| {diff} at output scale {scale:.3g}. The exporter mis-recorded a "
                "size-dependent step of this model; no file was written"
            )
