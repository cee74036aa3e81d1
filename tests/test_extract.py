import csv
import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import decar
from decar.audio import load_audio
from decar.cli import app
from decar.embed import AudioEncoder
from decar.extract import MANIFEST_COLUMNS, ModelMismatchError, extract_embeddings, model_fingerprint, plan_outputs
from decar.testing import write_bad_files, write_random_checkpoint, write_synthetic_corpus

runner = CliRunner()
WIDE = {"COLUMNS": "200"}
"""For tests that read rich-rendered output (help, the summary table), which wraps and truncates when narrow."""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_checkpoint(tmp_path_factory.mktemp("model") / "checkpoint.pt")


@pytest.fixture(scope="module")
def model(checkpoint: Path) -> AudioEncoder:
    return decar.load(checkpoint)


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tone/ and clicks/ folders of 3 clips each, 0.5-1 s long, plus an outside file listed by a list file."""
    root = tmp_path_factory.mktemp("audio")
    write_synthetic_corpus(root / "corpus", files_per_kind=3, seconds=0.7, kinds=("tone", "clicks"))
    write_synthetic_corpus(root / "single", files_per_kind=1, seconds=1.0, kinds=("chirp_up",), seed=1)
    (root / "lists").mkdir()
    (root / "lists" / "files.txt").write_text("# two tones\n../corpus/tone/tone_000.wav\n../corpus/tone/tone_001.wav\n")
    return root


def manifest_rows(out: Path) -> dict[str, dict[str, str]]:
    with (out / "manifest.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == MANIFEST_COLUMNS
        return {row["output"]: row for row in reader}


def test_plan_outputs_mirrors_folders_lists_and_single_files(audio: Path) -> None:
    single = audio / "single" / "chirp_up" / "chirp_up_000.wav"
    plan = plan_outputs([audio / "corpus", audio / "lists" / "files.txt", single])
    outputs = [str(output) for _, output in plan]
    # the listed tones are files of the folder given first: embedded once, with the folder's mapping
    assert outputs == [
        "clicks/clicks_000.wav.npy",
        "clicks/clicks_001.wav.npy",
        "clicks/clicks_002.wav.npy",
        "tone/tone_000.wav.npy",
        "tone/tone_001.wav.npy",
        "tone/tone_002.wav.npy",
        "chirp_up_000.wav.npy",
    ]
    listed = plan_outputs([audio / "lists" / "files.txt"], frames=True)
    assert [str(output) for _, output in listed] == [
        str(Path(*audio.parts[1:]) / "corpus/tone/tone_000.wav.npz"),
        str(Path(*audio.parts[1:]) / "corpus/tone/tone_001.wav.npz"),
    ]


def test_plan_outputs_refuses_two_files_with_one_output(audio: Path, tmp_path: Path) -> None:
    for folder in ("train", "test"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x.wav").write_bytes((audio / "corpus" / "tone" / "tone_000.wav").read_bytes())
    with pytest.raises(ValueError, match=r"would both be written to 'x\.wav\.npy'"):
        plan_outputs([tmp_path / "train", tmp_path / "test"])
    assert [str(output) for _, output in plan_outputs([tmp_path])] == ["test/x.wav.npy", "train/x.wav.npy"]


def test_clip_embeddings_equal_model_embed_and_manifest(model: AudioEncoder, audio: Path, tmp_path: Path) -> None:
    single = audio / "single" / "chirp_up" / "chirp_up_000.wav"
    summary = extract_embeddings([audio / "corpus", single], tmp_path, model, batch_size=4, progress=False)
    assert (summary.ok, summary.skipped_existing, summary.failed) == (7, 0, [])
    assert summary.audio_seconds == pytest.approx(6 * 0.7 + 1.0, abs=1e-3)
    for audio_file, output in [
        (audio / "corpus" / "tone" / "tone_002.wav", tmp_path / "tone" / "tone_002.wav.npy"),
        (single, tmp_path / "chirp_up_000.wav.npy"),
    ]:
        embedding = np.load(output)
        assert embedding.shape == (model.embed_dim,) and embedding.dtype == np.float32
        np.testing.assert_allclose(embedding, model.embed(load_audio(audio_file))[0], rtol=1e-4, atol=1e-5)
    rows = manifest_rows(tmp_path)
    assert len(rows) == 7
    row = rows["chirp_up_000.wav.npy"]
    assert row["status"] == "ok" and row["shape"] == str(model.embed_dim) and row["error"] == ""
    assert row["input"] == str(single.absolute()) and float(row["duration_s"]) == pytest.approx(1.0)
    assert row["model"] == model_fingerprint(model)
    assert not list(tmp_path.rglob("*.tmp"))


def test_frames_mode_writes_npz_with_timestamps(model: AudioEncoder, audio: Path, tmp_path: Path) -> None:
    source = audio / "corpus" / "clicks" / "clicks_001.wav"
    summary = extract_embeddings([source], tmp_path, model, frames=True, progress=False)
    assert summary.ok == 1
    with np.load(tmp_path / "clicks_001.wav.npz") as data:
        embedding, timestamps = data["embedding"], data["timestamps_ms"]
    expected, expected_times = model.embed_frames(load_audio(source))
    assert embedding.shape == expected[0].shape and embedding.shape[1] == model.embed_dim
    np.testing.assert_allclose(embedding, expected[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(timestamps, expected_times[0])
    assert manifest_rows(tmp_path)["clicks_001.wav.npz"]["shape"] == f"{len(timestamps)}x{model.embed_dim}"


def test_rerun_skips_and_redoes_only_deleted_outputs(model: AudioEncoder, audio: Path, tmp_path: Path) -> None:
    extract_embeddings([audio / "corpus"], tmp_path, model, progress=False)
    victim = tmp_path / "tone" / "tone_001.wav.npy"
    kept = tmp_path / "clicks" / "clicks_000.wav.npy"
    kept_mtime = kept.stat().st_mtime_ns

    again = extract_embeddings([audio / "corpus"], tmp_path, model, progress=False)
    assert (again.ok, again.skipped_existing, again.audio_seconds) == (0, 6, 0.0)
    assert {row["status"] for row in manifest_rows(tmp_path).values()} == {"skipped_existing"}

    victim.unlink()
    redo = extract_embeddings([audio / "corpus"], tmp_path, model, progress=False)
    assert (redo.ok, redo.skipped_existing) == (1, 5)
    assert victim.is_file() and kept.stat().st_mtime_ns == kept_mtime
    assert manifest_rows(tmp_path)["tone/tone_001.wav.npy"]["status"] == "ok"


def test_output_missing_from_manifest_is_recomputed(model: AudioEncoder, audio: Path, tmp_path: Path) -> None:
    source = audio / "corpus" / "tone" / "tone_000.wav"
    np.save(tmp_path / "tone_000.wav.npy", np.zeros(3, dtype=np.float32))  # e.g. written after the last manifest
    summary = extract_embeddings([source], tmp_path, model, progress=False)
    assert summary.ok == 1
    assert np.load(tmp_path / "tone_000.wav.npy").shape == (model.embed_dim,)


def test_another_model_is_refused_unless_overwrite(model: AudioEncoder, audio: Path, tmp_path: Path) -> None:
    source = audio / "corpus" / "tone"
    extract_embeddings([source], tmp_path / "out", model, progress=False)
    other = decar.load(write_random_checkpoint(tmp_path / "other.pt", seed=1))
    assert model_fingerprint(other) != model_fingerprint(model)
    before = np.load(tmp_path / "out" / "tone_000.wav.npy")
    with pytest.raises(ModelMismatchError, match="3 existing output"):
        extract_embeddings([source], tmp_path / "out", other, progress=False)
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "tone_000.wav.npy"), before)

    summary = extract_embeddings([source], tmp_path / "out", other, overwrite=True, progress=False)
    assert summary.ok == 3
    assert {row["model"] for row in manifest_rows(tmp_path / "out").values()} == {model_fingerprint(other)}


def test_fingerprint_ignores_checkpoint_format_and_device(model: AudioEncoder, checkpoint: Path) -> None:
    from decar.checkpoint import export_encoder, load_checkpoint

    exported = checkpoint.with_name("encoder.safetensors")
    export_encoder(exported, load_checkpoint(checkpoint))
    assert model_fingerprint(decar.load(exported)) == model_fingerprint(model)


def test_bad_files_are_listed_and_good_ones_embedded(model: AudioEncoder, audio: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    bad = write_bad_files(data / "bad")
    good = audio / "corpus" / "clicks" / "clicks_000.wav"
    (data / "good.wav").write_bytes(good.read_bytes())
    summary = extract_embeddings([data], tmp_path / "out", model, progress=False)
    assert summary.ok == 1
    assert {path.name for path, _ in summary.failed} == {path.name for path in bad.values()}
    assert (tmp_path / "out" / "good.wav.npy").is_file()
    rows = manifest_rows(tmp_path / "out")
    assert "file is empty" in rows["bad/empty.wav.npy"]["error"]
    assert "NaN" in rows["bad/nan.wav.npy"]["error"]
    assert all(rows[f"bad/{p.name}.npy"]["status"] == "failed" for p in bad.values())
    assert not (tmp_path / "out" / "bad").exists()


def test_a_clip_that_breaks_its_batch_fails_alone(
    model: AudioEncoder, audio: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    poison = len(load_audio(audio / "corpus" / "tone" / "tone_000.wav"))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "long.wav").write_bytes((audio / "single" / "chirp_up" / "chirp_up_000.wav").read_bytes())
    (tmp_path / "in" / "poison.wav").write_bytes((audio / "corpus" / "tone" / "tone_000.wav").read_bytes())
    embed = model.embed

    def fragile_embed(clips: list[np.ndarray], **kwargs: int) -> np.ndarray:
        if any(len(clip) == poison for clip in clips):
            raise RuntimeError("simulated encoder failure")
        return embed(clips, **kwargs)

    monkeypatch.setattr(model, "embed", fragile_embed)
    summary = extract_embeddings([tmp_path / "in"], tmp_path / "out", model, progress=False)
    assert summary.ok == 1 and (tmp_path / "out" / "long.wav.npy").is_file()
    assert summary.failed == [(tmp_path / "in" / "poison.wav", "RuntimeError: simulated encoder failure")]


def test_cli_embed_prints_summary_and_resumes(checkpoint: Path, audio: Path, tmp_path: Path) -> None:
    args = ["embed", str(audio / "corpus" / "clicks"), "-o", str(tmp_path), "--model", str(checkpoint)]
    result = runner.invoke(app, args, env=WIDE)
    assert result.exit_code == 0, result.output
    assert "files ok" in result.output and "real time" in result.output
    assert len(list(tmp_path.glob("*.wav.npy"))) == 3
    again = runner.invoke(app, [*args, "--frames", "--batch-size", "2"], env=WIDE)
    assert again.exit_code == 0, again.output
    assert len(list(tmp_path.glob("*.wav.npz"))) == 3


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "bundles no pretrained model; pass --model"),
        (["--model", "missing.pt"], "checkpoint not found"),
        (["--model", "CKPT", "--batch-size", "0"], "batch_size must be >= 1"),
    ],
)
def test_cli_embed_errors_are_one_clear_line(
    checkpoint: Path, audio: Path, tmp_path: Path, extra: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("decar.embed.BUNDLED_MODEL", tmp_path / "missing.safetensors")  # a release without one
    extra = [str(checkpoint) if arg == "CKPT" else arg for arg in extra]
    result = runner.invoke(app, ["embed", str(audio / "corpus"), "-o", str(tmp_path), *extra], env={"COLUMNS": "40"})
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()  # printed verbatim, never wrapped at the terminal width
    assert line.startswith("error: ") and message in line
    assert "Traceback" not in result.output


def test_cli_embed_refuses_another_model(checkpoint: Path, audio: Path, tmp_path: Path) -> None:
    source = str(audio / "corpus" / "clicks" / "clicks_000.wav")
    other = write_random_checkpoint(tmp_path / "other.pt", seed=1)
    assert runner.invoke(app, ["embed", source, "-o", str(tmp_path / "out"), "--model", str(checkpoint)]).exit_code == 0
    result = runner.invoke(app, ["embed", source, "-o", str(tmp_path / "out"), "--model", str(other)])
    assert result.exit_code == 2 and "--overwrite" in result.output
    result = runner.invoke(app, ["embed", source, "-o", str(tmp_path / "out"), "--model", str(other), "--overwrite"])
    assert result.exit_code == 0, result.output


def test_cli_embed_does_not_mix_precisions_in_one_folder(checkpoint: Path, audio: Path, tmp_path: Path) -> None:
    source = str(audio / "corpus" / "tone")
    embed = ["embed", source, "-o", str(tmp_path), "--model", str(checkpoint), "--no-channels-last"]
    assert runner.invoke(app, [*embed, "--precision", "fp32"]).exit_code == 0
    fp32 = {name: np.load(tmp_path / name) for name in manifest_rows(tmp_path)}

    result = runner.invoke(app, [*embed, "--precision", "bf16"])
    assert result.exit_code == 2 and "3 existing output" in result.output and "--overwrite" in result.output
    assert all(np.array_equal(np.load(tmp_path / name), array) for name, array in fp32.items())  # untouched

    assert runner.invoke(app, [*embed, "--precision", "bf16", "--overwrite"]).exit_code == 0
    bf16 = decar.load(checkpoint, precision="bf16")
    rows = manifest_rows(tmp_path)
    assert {row["model"] for row in rows.values()} == {model_fingerprint(bf16)}
    assert {row["status"] for row in rows.values()} == {"ok"}  # re-embedded, not skipped
    assert not any(np.array_equal(np.load(tmp_path / name), array) for name, array in fp32.items())


def test_fingerprint_counts_precision_but_not_layout(model: AudioEncoder, checkpoint: Path) -> None:
    fingerprint = model_fingerprint(model)
    assert model_fingerprint(decar.load(checkpoint, precision="bf16")) != fingerprint
    assert model_fingerprint(decar.load(checkpoint, channels_last=True)) == fingerprint
    assert len(fingerprint) == 16 and int(fingerprint, 16) >= 0


def test_fp32_fingerprint_is_unchanged_so_earlier_outputs_still_resume(model: AudioEncoder) -> None:
    """Manifests written before precision counted name fp32 models by config, window and weights alone."""
    config = model.config
    described = {
        "frontend": asdict(config.frontend),
        "model": asdict(config.model),
        "window_frames": model.window_frames,
    }
    digest = hashlib.sha256(json.dumps(described, sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    assert model_fingerprint(model) == digest.hexdigest()[:16]


@pytest.mark.parametrize("command", ["embed", "export-onnx"])
def test_new_commands_have_help(command: str) -> None:
    result = runner.invoke(app, [command, "--help"], env=WIDE)
    assert result.exit_code == 0
    assert "Usage" in result.output and "-o" in result.output


def test_a_folder_another_embed_is_writing_into_is_refused(model: AudioEncoder, audio: Path, tmp_path: Path) -> None:
    from decar._lock import OutputLocked, output_lock

    with output_lock(tmp_path / "out", "decar embed"), pytest.raises(OutputLocked, match="in use"):
        extract_embeddings([audio / "corpus"], tmp_path / "out", model, progress=False)
    assert not (tmp_path / "out" / "manifest.csv").exists()


def test_cli_embed_exit_status_says_whether_files_failed(checkpoint: Path, audio: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "good").mkdir(parents=True)
    (data / "good" / "a.wav").write_bytes((audio / "corpus" / "clicks" / "clicks_000.wav").read_bytes())
    clean = runner.invoke(app, ["embed", str(data / "good"), "-o", str(tmp_path / "a"), "--model", str(checkpoint)])
    assert clean.exit_code == 0, clean.output
    write_bad_files(data / "bad")
    mixed = runner.invoke(app, ["embed", str(data), "-o", str(tmp_path / "b"), "--model", str(checkpoint)])
    assert mixed.exit_code == 1, mixed.output
    assert (tmp_path / "b" / "good" / "a.wav.npy").is_file()  # the good file is still written
