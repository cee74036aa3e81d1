"""The model decar ships: inside the package, small, float16, trained, loaded offline by `decar.load()`, and
the default of `decar embed`, `decar evaluate`, the HEAR module and the ``pretrained`` model spec."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from typer.testing import CliRunner

import decar
from decar import hear
from decar.audio import load_audio
from decar.checkpoint import release_metadata
from decar.cli import app
from decar.embed import bundled_model_path
from decar.evaluate.models import load_eval_model
from decar.testing import write_hear_task, write_synthetic_corpus

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()
BUNDLED = bundled_model_path()


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("decar tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _noise(seconds: float) -> np.ndarray:
    return (np.random.default_rng(0).standard_normal(round(seconds * 16000)) * 0.1).astype(np.float32)


def test_the_package_ships_a_model_small_enough_for_a_wheel() -> None:
    assert BUNDLED is not None, "src/decar/pretrained/decar.safetensors is missing"
    assert BUNDLED.stat().st_size <= 25 * 2**20


def test_its_file_carries_the_run_that_made_it() -> None:
    metadata = release_metadata(BUNDLED)
    records = [json.loads(line) for line in metadata["training_log"].splitlines()]
    assert records, "no training log"
    assert records[-1]["loss"] < records[-1]["loss_chance"]  # it learned to predict its own clusters
    assert "decar " in metadata["commands"]  # the command line that trained it
    config = json.loads(metadata["config"])
    assert config["model"]["name"] and json.loads(metadata["frontend_stats"])["std"] > 0


def test_weights_are_float16_and_batchnorm_statistics_float32() -> None:
    with safe_open(str(BUNDLED), framework="pt") as handle:
        dtypes = {key: handle.get_slice(key).get_dtype() for key in handle.keys()}  # noqa: SIM118
    statistics = {key for key in dtypes if key.endswith(("running_mean", "running_var"))}
    assert statistics and all(dtypes[key] == "F32" for key in statistics)
    assert {dtypes[key] for key in dtypes.keys() - statistics if not key.endswith("num_batches_tracked")} == {"F16"}


@pytest.mark.usefixtures("offline")
def test_load_without_arguments_embeds_offline() -> None:
    model = decar.load()
    embedding = model.embed(_noise(1.5))
    assert embedding.shape == (1, model.embed_dim) and embedding.dtype == np.float32
    assert np.isfinite(embedding).all() and np.abs(embedding).max() > 0
    assert np.array_equal(embedding, decar.load(BUNDLED).embed(_noise(1.5)))


@pytest.mark.usefixtures("offline")
def test_decar_embed_without_a_model_uses_it(tmp_path: Path) -> None:
    write_synthetic_corpus(tmp_path / "audio", files_per_kind=1, seconds=1.0, kinds=("tone",))
    [wav] = sorted((tmp_path / "audio").rglob("*.wav"))
    result = runner.invoke(app, ["embed", str(wav), "-o", str(tmp_path / "out")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    [written] = sorted((tmp_path / "out").rglob("*.npy"))
    np.testing.assert_allclose(np.load(written), decar.load().embed(load_audio(wav))[0], rtol=1e-5, atol=1e-6)


def test_hear_load_model_without_a_path_is_it() -> None:
    model = hear.load_model("")
    embeddings = hear.get_scene_embeddings(torch.from_numpy(np.stack([_noise(1.0), _noise(1.0) * 0.5])), model)
    assert embeddings.shape == (2, decar.load().embed_dim)


def test_decar_evaluate_without_a_model_scores_it(tmp_path: Path) -> None:
    task = write_hear_task(tmp_path / "task", "sounds", ("tone", "noise_high"), seed=0)
    out = tmp_path / "out"
    result = runner.invoke(app, ["evaluate", "-t", str(task), "-o", str(out), "--seeds", "1"])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["model"]["spec"] == "pretrained"
    assert results["model"]["name"] == f"decar pretrained ({decar.load().config.model.name})"


def test_random_init_of_the_pretrained_architecture() -> None:
    model = load_eval_model("random:pretrained")
    assert model.name == f"random-init ({decar.load().config.model.name})"
