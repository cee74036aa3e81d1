"""decar.integrations.onnx: exported graphs reproduce PyTorch at lengths other than the traced one."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import decar
from decar.checkpoint import CheckpointError
from decar.frontend import FrontendConfig, LogMelSpectrogram
from decar.integrations import onnx as decar_onnx
from decar.integrations.onnx import OnnxExportError, export_onnx
from decar.testing import write_random_checkpoint

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

MODELS = {
    "efficientnet_b0": [],  # TF "SAME" padding computed from each input's size
    "audiontt2020": ["model.name=audiontt2020", "model.kwargs={d: 64}"],
}
SHAPES = [(50, 3), (101, 1), (333, 3), (998, 1)]  # (frames, batch): odd and even, none the traced 100 frames
TOLERANCE = 1e-4  # of the output's scale: untrained encoders on random input reach |embedding| ~ 1e3


def max_relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    assert actual.shape == expected.shape
    return float(np.abs(actual - expected).max() / max(1.0, np.abs(expected).max()))


@pytest.fixture(scope="module", params=list(MODELS))
def checkpoint(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_checkpoint(tmp_path_factory.mktemp(request.param) / "checkpoint.pt", MODELS[request.param])


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """AudioNTT2020 with d=64: the fast model, for tests that need any one model."""
    return write_random_checkpoint(tmp_path_factory.mktemp("small") / "checkpoint.pt", MODELS["audiontt2020"])


@pytest.fixture(scope="module")
def model(checkpoint: Path) -> decar.AudioEncoder:
    return decar.load(checkpoint)


@pytest.fixture(scope="module")
def exported(checkpoint: Path) -> Path:
    return export_onnx(checkpoint, checkpoint.parent / "export" / "model.onnx")


@pytest.fixture(scope="module")
def session(exported: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize(("frames", "batch"), SHAPES)
def test_encoder_graph_matches_torch(
    model: decar.AudioEncoder, session: ort.InferenceSession, frames: int, batch: int
) -> None:
    logmel = torch.randn(batch, 1, frames, 64, generator=torch.Generator().manual_seed(frames + batch))
    with torch.no_grad():
        expected = model.encoder(logmel).numpy()
    (actual,) = session.run(None, {"logmel": logmel.numpy()})
    assert max_relative_error(actual, expected) <= TOLERANCE


def test_graph_axes_are_dynamic(exported: Path, model: decar.AudioEncoder) -> None:
    graph = onnx.load(exported).graph
    dims = [[d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim] for value in graph.input]
    assert dims == [["batch", 1, "frames", 64]]
    assert [value.name for value in graph.output] == ["embedding"]
    assert graph.output[0].type.tensor_type.shape.dim[1].dim_value == model.embed_dim


def test_metadata_describes_the_input(session: ort.InferenceSession, model: decar.AudioEncoder) -> None:
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["decar_version"] == decar.__version__
    assert meta["input"] == "logmel"
    assert int(meta["sample_rate"]) == model.sample_rate
    assert FrontendConfig(**json.loads(meta["frontend_config"])) == model.config.frontend
    assert float(meta["norm_mean"]) == float(model.frontend.norm_mean)
    assert float(meta["norm_std"]) == float(model.frontend.norm_std)
    assert meta["model_name"] == model.config.model.name
    assert int(meta["embed_dim"]) == model.embed_dim
    assert int(meta["min_frames"]) == getattr(model.encoder, "min_frames", 1)


def test_metadata_alone_reproduces_the_frontend(session: ort.InferenceSession, model: decar.AudioEncoder) -> None:
    """What a user without the checkpoint does: rebuild the frontend from metadata, normalise, run the graph."""
    meta = session.get_modelmeta().custom_metadata_map
    frontend = LogMelSpectrogram(FrontendConfig(**json.loads(meta["frontend_config"])))
    waveform = 0.1 * torch.randn(2, 24000, generator=torch.Generator().manual_seed(0))
    logmel = (frontend(waveform) - float(meta["norm_mean"])) / float(meta["norm_std"])
    (actual,) = session.run(None, {"logmel": logmel.numpy()})
    with torch.no_grad():
        expected = model(waveform).numpy()
    assert max_relative_error(actual, expected) <= TOLERANCE


@pytest.mark.parametrize("waveform_norm", ["rms", "l2"])
def test_waveform_graph_keeps_the_crop_normalisation(waveform_norm: str, tmp_path: Path) -> None:
    """A frontend that divides each waveform by its RMS or L2 norm exports, and its graph stays blind to gain."""
    overrides = [*MODELS["audiontt2020"], f"frontend.{waveform_norm}_normalize_waveform=true"]
    checkpoint = write_random_checkpoint(tmp_path / "checkpoint.pt", overrides)
    model = decar.load(checkpoint)
    session = ort.InferenceSession(str(export_onnx(checkpoint, tmp_path / "model.onnx", include_frontend=True)))
    waveform = 0.1 * torch.randn(2, 16000, generator=torch.Generator().manual_seed(0))
    (quiet,) = session.run(None, {"waveform": waveform.numpy()})
    (loud,) = session.run(None, {"waveform": (5 * waveform).numpy()})
    with torch.no_grad():
        expected = model(waveform).numpy()
    assert max_relative_error(quiet, expected) <= TOLERANCE and max_relative_error(loud, quiet) <= TOLERANCE


def test_waveform_graph_includes_the_frontend(small_checkpoint: Path, tmp_path: Path) -> None:
    checkpoint = small_checkpoint
    model = decar.load(checkpoint)
    path = export_onnx(checkpoint, tmp_path / "model.onnx", include_frontend=True)
    proto = onnx.load(path)
    assert [o.version for o in proto.opset_import if o.domain == ""] == [18]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["input"] == "waveform" and int(meta["min_samples"]) == 400 + 7 * 160  # 8 frames of 25 ms / 10 ms
    generator = torch.Generator().manual_seed(0)
    for samples, batch in [(1520, 1), (16000, 3), (33333, 1), (48017, 3)]:
        waveform = 0.1 * torch.randn(batch, samples, generator=generator)
        with torch.no_grad():
            expected = model(waveform).numpy()
        (actual,) = session.run(None, {"waveform": waveform.numpy()})
        assert max_relative_error(actual, expected) <= TOLERANCE, samples
    with pytest.raises(ValueError, match="opset >= 18"):
        export_onnx(checkpoint, tmp_path / "old.onnx", opset=17, include_frontend=True)


def test_graph_that_disagrees_with_torch_is_not_written(
    small_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stands in for an exporter that mis-records a step: the graph computes something else than the model."""
    export_graph = decar_onnx._export_logmel_graph

    def export_other_weights(encoder: torch.nn.Module, n_mels: int, opset: int) -> bytes:
        other = copy.deepcopy(encoder)
        with torch.no_grad():
            list(other.parameters())[-1].add_(1.0)  # the last bias
        return export_graph(other, n_mels, opset)

    monkeypatch.setattr(decar_onnx, "_export_logmel_graph", export_other_weights)
    output = tmp_path / "model.onnx"
    with pytest.raises(OnnxExportError, match="disagrees with PyTorch"):
        export_onnx(small_checkpoint, output)
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temporary one


def test_bad_checkpoint_is_named(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        export_onnx(tmp_path / "missing.pt", tmp_path / "model.onnx")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"garbage\.pt"):
        export_onnx(garbage, tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()


def test_missing_onnx_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` raise ImportError
    with pytest.raises(ImportError, match=r"pip install 'decar\[onnx\]'"):
        export_onnx(tmp_path / "checkpoint.pt", tmp_path / "model.onnx")


def test_cli_export_says_what_the_graph_takes(small_checkpoint: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from decar.cli import app

    runner = CliRunner()
    for extra, graph_input in (([], "logmel"), (["--frontend"], "waveform")):
        result = runner.invoke(app, ["export-onnx", str(small_checkpoint), "-o", str(tmp_path / "m.onnx"), *extra])
        assert result.exit_code == 0, result.output
        session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == [graph_input]
    help_text = runner.invoke(app, ["export-onnx", "--help"], env={"COLUMNS": "200"}).output
    assert "normalised log-mel" in help_text and "--frontend" in help_text
