import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from decar.data import AudioCrops, BatchCollator, cap_per_folder, scan_files
from decar.frontend import FrontendConfig
from decar.testing import write_bad_files, write_synthetic_corpus


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("data")
    return [p for p, _ in write_synthetic_corpus(folder, files_per_kind=1, seconds=2.0)]


def _crops(files: list[Path], **kwargs) -> AudioCrops:
    return AudioCrops(files, FrontendConfig(), crop_seconds=0.5, **kwargs)


def test_cached_crops_equal_decoded_crops(files: list[Path], tmp_path: Path) -> None:
    plain, cached = _crops(files), _crops(files, cache_dir=tmp_path / "cache")
    for mode in ("train", "features"):
        plain.mode = cached.mode = mode
        for position, index in enumerate(range(len(files))):
            a, b = plain[(index, position)], cached[(index, position)]
            assert a.logmel.shape == b.logmel.shape == (plain.crop_frames, 64)
            torch.testing.assert_close(a.logmel, b.logmel, atol=1e-4, rtol=1e-4)
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == len(files)
    again = _crops(files, cache_dir=tmp_path / "cache")  # reads the cache instead of decoding
    again.mode = "features"
    torch.testing.assert_close(again[(0, 0)].logmel, cached[(0, 0)].logmel)


def test_random_crops_depend_only_on_seed_epoch_and_position(files: list[Path]) -> None:
    crops = _crops(files, seed=3)
    first = crops[(0, 5)].logmel
    assert torch.equal(first, _crops(files, seed=3)[(0, 5)].logmel)
    others = [crops[(0, p)].logmel for p in range(6, 12)]
    assert any(not torch.equal(first, other) for other in others)
    crops.mode = "features"
    assert torch.equal(crops[(0, 1)].logmel, crops[(0, 2)].logmel)  # centre crop, no randomness


def test_short_files_are_padded_with_silence(tmp_path: Path) -> None:
    short = [p for p, _ in write_synthetic_corpus(tmp_path, files_per_kind=1, seconds=0.2, kinds=("tone",))]
    crops = AudioCrops(short, FrontendConfig(), crop_seconds=1.0)
    logmel = crops[(0, 0)].logmel
    assert logmel.shape[0] == crops.crop_frames
    # log(1e-5) of silence, up to the rounding of a vectorised log against a scalar one.
    torch.testing.assert_close(logmel[-10:], torch.full_like(logmel[-10:], math.log(1e-5)), rtol=0, atol=1e-5)


def test_short_files_can_be_tiled_instead_and_keep_their_own_level(tmp_path: Path) -> None:
    short = [p for p, _ in write_synthetic_corpus(tmp_path, files_per_kind=1, seconds=0.2, kinds=("tone",))]
    padded = AudioCrops(short, FrontendConfig(), crop_seconds=1.0)[(0, 0)]
    tiled = AudioCrops(short, FrontendConfig(), crop_seconds=1.0, pad_mode="tile")[(0, 0)]
    assert tiled.logmel.shape == padded.logmel.shape
    own = AudioCrops(short, FrontendConfig(), crop_seconds=1.0, pad_to_crop=False)[(0, 0)].logmel
    period = own.shape[0]
    torch.testing.assert_close(tiled.logmel[period : 2 * period], own)  # the clip again, not silence
    assert tiled.logmel.min() > math.log(1e-5) + 1
    assert tiled.level == pytest.approx(padded.level) == pytest.approx(float(own.mean()), abs=1e-5)
    batch = BatchCollator(FrontendConfig())([tiled, padded])
    assert batch.levels.tolist() == pytest.approx([tiled.level, padded.level])


@pytest.mark.parametrize(
    ("frontend", "louder"), [({"rms_normalize_waveform": True}, False), ({"l2_normalize_waveform": True}, True)]
)
def test_rms_normalised_crops_have_one_level_at_every_length(tmp_path: Path, frontend: dict, louder: bool) -> None:
    """Dividing a crop by its L2 norm makes a short clip, tiled to the crop length, louder than a long one of the
    same sound: a duration shortcut. Dividing by the RMS does not."""
    tone = (0.1 * np.sin(2 * np.pi * 440 * np.arange(32000) / 16000)).astype(np.float32)
    sf.write(tmp_path / "short.wav", tone[:4000], 16000)
    sf.write(tmp_path / "long.wav", tone, 16000)
    crops = AudioCrops(
        [tmp_path / "short.wav", tmp_path / "long.wav"], FrontendConfig(**frontend), 0.96, pad_mode="tile"
    )
    short, long = crops[(0, 0)], crops[(1, 0)]
    assert short.logmel.shape == long.logmel.shape
    gap = float(short.logmel.mean() - long.logmel.mean())
    # L2: the 0.25 s clip is divided by a norm sqrt(15600 / 4000) times smaller, log(1.97) = 0.68 louder.
    assert gap > 0.5 if louder else abs(gap) < 0.05


def test_bad_files_are_reported_not_raised(tmp_path: Path, files: list[Path]) -> None:
    bad = write_bad_files(tmp_path)
    good, rejected, durations = scan_files([*files, *bad.values()], min_seconds=0.05)
    assert good == [*files, bad["nan"]]  # headers cannot reveal NaN samples; decoding does
    assert set(rejected) == {str(bad["empty"]), str(bad["corrupt"]), str(bad["zero_frames"])}
    assert durations[: len(files)] == pytest.approx([2.0] * len(files), abs=1e-3)  # the kept files', from headers
    crops = _crops([bad["nan"]])
    example = crops[(0, 0)]
    assert example.logmel is None and "non-finite" in example.error
    batch = BatchCollator(FrontendConfig())([example, _crops(files)[(1, 0)]])
    assert batch.logmel.shape[0] == 1 and batch.indices.tolist() == [1]
    assert batch.failures == [(0, example.error)]


def test_cap_per_folder_draws_at_most_cap_files_of_each_top_level_folder() -> None:
    root = Path("/corpus")
    paths = [root / "speech" / f"v{i % 3}" / f"s{i}.wav" for i in range(10)]
    paths += [root / "music" / f"m{i}.wav" for i in range(2)] + [root / "loose.wav"]
    kept = cap_per_folder(paths, 3, seed=0)
    assert sum(p.parts[2] == "speech" for p in kept) == 3  # a folder's sub-folders are one group
    assert [p for p in kept if p.parts[2] != "speech"] == paths[10:]  # small groups are kept whole
    assert kept == [p for p in paths if p in kept]  # in the given order
    assert kept == cap_per_folder(paths, 3, seed=0)
    assert any(cap_per_folder(paths, 3, seed=s) != kept for s in range(1, 5))  # the draw follows the seed
    assert cap_per_folder(paths, 100, seed=0) == paths
