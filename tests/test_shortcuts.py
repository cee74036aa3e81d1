"""The gain-shortcut check: clips from a corpus, gains independent of content, clusters that follow them or not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from decar.evaluate.models import EvalModel, load_eval_model
from decar.shortcuts import (
    ProbeClips,
    corpus_clips,
    cut_to_crop,
    duration_shortcut,
    equal_bins,
    gain_shortcut,
    random_gains,
    random_lengths,
)
from decar.testing import SOUND_KINDS, synthetic_clip, write_random_checkpoint, write_synthetic_corpus

SR = 16000
pytestmark = pytest.mark.usefixtures("one_thread")


class _LoudnessMeter(EvalModel):
    """A model that embeds nothing but loudness: a one-hot of the clip's RMS level in 3 dB steps."""

    name = "loudness meter"
    fingerprint = "loudness"
    sample_rate = SR
    embed_dim = 32

    def embed(self, waveforms: list[np.ndarray]) -> np.ndarray:
        levels = np.array([20 * np.log10(np.sqrt(np.mean(w.astype(np.float64) ** 2)) + 1e-12) for w in waveforms])
        steps = np.clip(((levels + 60) // 3).astype(int), 0, self.embed_dim - 1)
        return np.eye(self.embed_dim, dtype=np.float32)[steps]


@pytest.fixture(scope="module")
def clips() -> ProbeClips:
    rng = np.random.default_rng(0)
    waves, sources = [], []
    for index in range(240):
        kind = SOUND_KINDS[index % len(SOUND_KINDS)]
        waves.append(synthetic_clip(kind, 1.0, SR, rng))
        sources.append(kind)
    return ProbeClips(waves, sources, SR, skipped=0)


def test_gains_are_uniform_in_the_range_and_binned_evenly() -> None:
    gains = random_gains(20_000, 12.0, seed=3)
    assert gains.min() >= -12 and gains.max() <= 12
    np.testing.assert_array_equal(gains, random_gains(20_000, 12.0, seed=3))
    counts = np.bincount(equal_bins(gains, -12.0, 12.0, 10), minlength=10)
    assert len(counts) == 10 and counts.min() > 0.9 * counts.mean()
    with pytest.raises(ValueError, match="max_db must be positive"):
        random_gains(3, 0.0, seed=0)


def test_a_model_that_measures_loudness_is_caught() -> None:
    """Tones of one level: the random gain is their only loudness difference, and the meter's clusters follow it."""
    result = gain_shortcut(_LoudnessMeter().embed, _tones(300), max_db=12.0)
    assert result.ami_gain > 0.5 and result.clips == 300


def _tones(count: int) -> ProbeClips:
    """Tones of one level and random pitch: loudness and length are the only things a meter could follow."""
    rng = np.random.default_rng(0)
    t = np.arange(SR) / SR
    waves = [(0.1 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t)).astype(np.float32) for _ in range(count)]
    return ProbeClips(waves, ["tone"] * count, SR, skipped=0)


def test_cut_clips_are_tiled_or_padded_with_silence_to_the_crop() -> None:
    wave = np.arange(1, 11, dtype=np.float32)
    np.testing.assert_array_equal(cut_to_crop(wave, 3, 8, "tile"), [1, 2, 3, 1, 2, 3, 1, 2])
    np.testing.assert_array_equal(cut_to_crop(wave, 3, 8, "silence"), [1, 2, 3, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(cut_to_crop(wave, 9, 8, "silence"), wave[:8])
    with pytest.raises(ValueError, match="tile or silence"):
        cut_to_crop(wave, 3, 8, "reflect")


def test_cut_lengths_are_uniform_and_drawn_apart_from_the_gains() -> None:
    lengths = random_lengths(20_000, 0.1, 0.96, seed=3)
    assert lengths.min() >= 0.1 and lengths.max() <= 0.96
    counts = np.bincount(equal_bins(lengths, 0.1, 0.96, 10), minlength=10)
    assert len(counts) == 10 and counts.min() > 0.9 * counts.mean()
    assert abs(np.corrcoef(lengths, random_gains(20_000, 12.0, seed=3))[0, 1]) < 0.03
    with pytest.raises(ValueError, match="min_seconds < max_seconds"):
        random_lengths(3, 0.5, 0.5, seed=0)


def test_padding_with_silence_shows_the_cut_length_and_tiling_hides_it() -> None:
    """Silence after a cut lowers the crop's RMS in proportion to the cut; tiling a tone keeps its RMS."""
    tones = _tones(300)
    silence = duration_shortcut(_LoudnessMeter().embed, tones, crop_seconds=0.96, pad_mode="silence")
    tiled = duration_shortcut(_LoudnessMeter().embed, tones, crop_seconds=0.96, pad_mode="tile")
    assert silence.ami_cut > 0.5 and abs(tiled.ami_cut) < 0.05
    assert (silence.pad_mode, silence.clips, silence.crop_seconds) == ("silence", 300, 0.96)
    with pytest.raises(ValueError, match="longer than the clips"):
        duration_shortcut(_LoudnessMeter().embed, tones, crop_seconds=2.0)


def test_a_frontend_that_normalises_each_crop_is_blind_to_gain(clips: ProbeClips, tmp_path: Path) -> None:
    """The paper's v1 frontend divides each crop by its L2 norm; the same random encoder without it follows the gain."""
    blind = write_random_checkpoint(tmp_path / "blind.pt", ["frontend.l2_normalize_waveform=true"])
    seeing = write_random_checkpoint(tmp_path / "seeing.pt", ["frontend.l2_normalize_waveform=false"])
    blind_result = gain_shortcut(load_eval_model(str(blind)).embed, clips, max_db=20.0)
    seeing_result = gain_shortcut(load_eval_model(str(seeing)).embed, clips, max_db=20.0)
    assert abs(blind_result.ami_gain) < 0.03
    assert seeing_result.ami_gain > blind_result.ami_gain + 0.05
    assert blind_result.ami_source > 0.2  # the blind model's clusters still carry the content


def test_corpus_clips_are_centre_windows_of_files_with_sound(tmp_path: Path) -> None:
    write_synthetic_corpus(tmp_path / "corpus", files_per_kind=3, seconds=1.5, kinds=("tone", "noise_high"))
    sf.write(tmp_path / "corpus" / "tone" / "short.wav", np.full(SR // 2, 0.1, dtype=np.float32), SR)
    sf.write(tmp_path / "corpus" / "tone" / "silent.wav", np.zeros(2 * SR, dtype=np.float32), SR)
    (tmp_path / "corpus" / "tone" / "broken.wav").write_bytes(b"not audio")
    clips = corpus_clips(tmp_path / "corpus", count=100, seconds=1.0, sample_rate=SR, seed=0)
    assert len(clips.waveforms) == 6 and clips.skipped == 3
    assert sorted(clips.sources) == ["noise_high"] * 3 + ["tone"] * 3
    assert {len(w) for w in clips.waveforms} == {SR}
    again = corpus_clips(tmp_path / "corpus", count=2, seconds=1.0, sample_rate=SR, seed=0)
    np.testing.assert_array_equal(again.waveforms[0], clips.waveforms[0])  # a seeded draw
    with pytest.raises(ValueError, match="fewer than 2 files"):
        corpus_clips(tmp_path / "corpus", seconds=5.0, sample_rate=SR)


def test_cli_prints_a_row_per_model_and_bad_input_in_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from decar.cli import app

    write_synthetic_corpus(tmp_path / "corpus", files_per_kind=4, seconds=1.0)
    checkpoint = write_random_checkpoint(tmp_path / "model.pt")
    args = ["shortcuts", "--data", str(tmp_path / "corpus"), "-m", str(checkpoint), "-m", "logmel-stats"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "gain AMI" in result.output and "cut AMI" in result.output
    assert "logmel-stats" in result.output and str(checkpoint) in result.output
    result = CliRunner().invoke(app, [*args, "--pad-mode", "reflect"])
    assert result.exit_code == 2 and "tile or silence" in result.stderr
    result = CliRunner().invoke(app, ["shortcuts", "--data", str(tmp_path / "missing"), "-m", "logmel-stats"])
    assert result.exit_code == 2 and "missing" in result.stderr and "Traceback" not in result.output
