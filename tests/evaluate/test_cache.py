"""The embedding cache: hits skip decoding, any change to model or audio misses, bad files are reported."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import decar.evaluate.cache as cache
from decar.audio import load_audio
from decar.evaluate.cache import embed_clips, load_waveforms
from decar.evaluate.models import EvalModel, load_eval_model
from decar.evaluate.tasks.base import Clip
from decar.models import create_model
from decar.testing import SOUND_KINDS, synthetic_clip, write_bad_files

SR = 16000


pytestmark = pytest.mark.usefixtures("one_thread")


class SummaryModel(EvalModel):
    """A transparent model: [mean, std, peak, seconds] of each waveform; records the batches it is given."""

    def __init__(self, fingerprint: str = "summary-v1") -> None:
        self.name = "summary"
        self.fingerprint = fingerprint
        self.sample_rate = SR
        self.embed_dim = 4
        self.batches: list[int] = []

    def embed(self, waveforms: list[np.ndarray]) -> np.ndarray:
        self.batches.append(len(waveforms))
        rows = [[w.mean(), w.std(), np.abs(w).max(), len(w) / SR] for w in waveforms]
        return np.array(rows, dtype=np.float32)


@pytest.fixture
def wavs(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i, kind in enumerate(SOUND_KINDS[:5]):
        path = tmp_path / "audio" / f"{i}_{kind}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, synthetic_clip(kind, 0.2 + 0.05 * i, SR, rng), SR, subtype="PCM_16")
        paths.append(path)
    return paths


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Paths decoded by the cache module, in order."""
    calls: list[Path] = []

    def counting_load_audio(path: Path, *args: object, **kwargs: object) -> np.ndarray:
        calls.append(Path(path))
        return load_audio(path, *args, **kwargs)

    monkeypatch.setattr(cache, "load_audio", counting_load_audio)
    return calls


def as_clips(paths: list[Path]) -> list[Clip]:
    return [Clip(path, ("x",), "train") for path in paths]


def entries(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.npy"))


def test_second_call_reads_the_cache_without_decoding(wavs: list[Path], decodes: list[Path], tmp_path: Path) -> None:
    model, clips = SummaryModel(), as_clips(wavs)
    first = embed_clips(model, clips, cache_dir=tmp_path / "cache", batch_size=2, progress=False)
    assert len(decodes) == 5 and model.batches == [2, 2, 1]
    assert first.embeddings.dtype == np.float32 and first.embeddings.shape == (5, 4)
    assert first.clips == clips and first.failures == []
    assert first.embeddings[:, 3] == pytest.approx([0.2, 0.25, 0.3, 0.35, 0.4], abs=1e-4)
    assert len(entries(tmp_path / "cache" / "summary-v1")) == 5
    info = json.loads((tmp_path / "cache" / "summary-v1" / "model.json").read_text())
    assert info["name"] == "summary" and info["embed_dim"] == 4
    assert not list((tmp_path / "cache").rglob("*.tmp"))  # atomic writes leave no temp files

    decodes.clear()
    second = embed_clips(model, clips, cache_dir=tmp_path / "cache", batch_size=2, progress=True)
    assert decodes == [] and model.batches == [2, 2, 1]
    np.testing.assert_array_equal(second.embeddings, first.embeddings)
    assert second.clips == clips


def test_other_fingerprint_gets_its_own_entries(wavs: list[Path], decodes: list[Path], tmp_path: Path) -> None:
    clips = as_clips(wavs)
    embed_clips(SummaryModel("model-a"), clips, cache_dir=tmp_path, progress=False)
    decodes.clear()
    embed_clips(SummaryModel("model-b"), clips, cache_dir=tmp_path, progress=False)
    assert len(decodes) == 5
    assert len(entries(tmp_path / "model-a")) == len(entries(tmp_path / "model-b")) == 5


def test_prepare_changes_the_cache_folder(wavs: list[Path], tmp_path: Path) -> None:
    byola = tmp_path / "d16.pth"
    torch.save(create_model("audiontt2020", d=16).state_dict(), byola)
    model = load_eval_model(f"byola:{byola}")
    clips = as_clips(wavs)
    train = load_waveforms(clips, SR)
    model.prepare(train.waveforms[:2])
    embed_clips(model, clips, cache_dir=tmp_path / "cache", progress=False)
    model.prepare(train.waveforms[2:])
    embed_clips(model, clips, cache_dir=tmp_path / "cache", progress=False)
    folders = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(folders) == 2 and model.fingerprint in folders


def test_changed_file_is_recomputed(wavs: list[Path], decodes: list[Path], tmp_path: Path) -> None:
    model, clips = SummaryModel(), as_clips(wavs)
    embed_clips(model, clips, cache_dir=tmp_path / "cache", progress=False)
    stat = wavs[1].stat()
    os.utime(wavs[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    decodes.clear()
    embed_clips(model, clips, cache_dir=tmp_path / "cache", progress=False)
    assert decodes == [wavs[1]]
    assert len(entries(tmp_path / "cache")) == 6


def test_segments_of_one_file_are_separate_entries(wavs: list[Path], tmp_path: Path) -> None:
    clips = [Clip(wavs[4], ("x",), "train", start_s=start, duration_s=0.1) for start in (0.0, 0.1, 0.2)]
    clips.append(Clip(wavs[4], ("x",), "train"))
    result = embed_clips(SummaryModel(), clips, cache_dir=tmp_path, progress=False)
    assert result.embeddings[:, 3] == pytest.approx([0.1, 0.1, 0.1, 0.4], abs=1e-4)
    assert len(entries(tmp_path)) == 4


def test_bad_files_are_reported_and_the_rest_embedded(wavs: list[Path], decodes: list[Path], tmp_path: Path) -> None:
    bad = write_bad_files(tmp_path / "bad")
    paths = [wavs[0], bad["corrupt"], wavs[1], tmp_path / "missing.wav", bad["nan"], wavs[2]]
    clips = as_clips(paths)
    result = embed_clips(SummaryModel(), clips, cache_dir=tmp_path / "cache", batch_size=2, progress=False)
    assert result.clips == [clips[0], clips[2], clips[5]]
    assert result.embeddings.shape == (3, 4)
    assert [clip.path for clip, _ in result.failures] == [bad["corrupt"], tmp_path / "missing.wav", bad["nan"]]
    reasons = [reason for _, reason in result.failures]
    assert "decode" in reasons[0] and "does not exist" in reasons[1] and "non-finite" in reasons[2]
    assert len(entries(tmp_path / "cache")) == 3  # failures are not cached: a fixed file is tried again

    decodes.clear()
    again = embed_clips(SummaryModel(), clips, cache_dir=tmp_path / "cache", progress=False)
    assert sorted(decodes) == sorted([bad["corrupt"], tmp_path / "missing.wav", bad["nan"]])
    np.testing.assert_array_equal(again.embeddings, result.embeddings)


def test_all_clips_failing_gives_an_empty_matrix(tmp_path: Path) -> None:
    bad = write_bad_files(tmp_path)
    result = embed_clips(SummaryModel(), as_clips([bad["empty"], bad["zero_frames"]]), progress=False)
    assert result.embeddings.shape == (0, 4) and result.embeddings.dtype == np.float32
    assert result.clips == [] and len(result.failures) == 2


def test_unreadable_cache_entry_is_recomputed(wavs: list[Path], decodes: list[Path], tmp_path: Path) -> None:
    model, clips = SummaryModel(), as_clips(wavs[:2])
    first = embed_clips(model, clips, cache_dir=tmp_path, progress=False)
    entry = entries(tmp_path)[0]
    entry.write_bytes(entry.read_bytes()[:20])  # a truncated file, e.g. from a copy that was cut short
    decodes.clear()
    second = embed_clips(model, clips, cache_dir=tmp_path, progress=False)
    assert len(decodes) == 1
    np.testing.assert_array_equal(second.embeddings, first.embeddings)
    assert np.load(entry).shape == (4,)


def test_without_cache_dir_nothing_is_written(
    wavs: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = embed_clips(SummaryModel(), as_clips(wavs), progress=False)
    assert result.embeddings.shape == (5, 4)
    assert entries(tmp_path) == []


def test_wrong_embedding_shape_is_an_error(wavs: list[Path]) -> None:
    class Broken(SummaryModel):
        def embed(self, waveforms: list[np.ndarray]) -> np.ndarray:
            return super().embed(waveforms)[:, :3]

    with pytest.raises(ValueError, match=r"'summary' returned embeddings of shape \(2, 3\) for 2 clips"):
        embed_clips(Broken(), as_clips(wavs[:2]), progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        embed_clips(SummaryModel(), as_clips(wavs), batch_size=0)


def test_load_waveforms_splits_successes_and_failures(wavs: list[Path], tmp_path: Path) -> None:
    bad = write_bad_files(tmp_path / "bad")
    clips = as_clips([wavs[0], bad["empty"], wavs[3]])
    loaded = load_waveforms(clips, 8000)
    assert loaded.clips == [clips[0], clips[2]]
    assert [len(w) for w in loaded.waveforms] == [1600, 2800]  # 0.2 s and 0.35 s resampled to 8 kHz
    assert all(w.dtype == np.float32 for w in loaded.waveforms)
    assert loaded.failures == [(clips[1], "file is empty (0 bytes)")]
