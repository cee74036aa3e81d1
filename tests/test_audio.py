"""Decoding, windowing, resampling and file listing, on fixtures written with soundfile into tmp_path."""

from __future__ import annotations

import pickle
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from decar.audio import AudioError, audio_info, list_audio_files, list_entry, load_audio


def tone(seconds: float, rate: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """(frames, channels) float32: a 440 Hz sine plus a little noise, different per channel."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    columns = [
        0.4 * np.sin(2 * np.pi * 440.0 * (c + 1) * t) + 0.01 * rng.standard_normal(t.size) for c in range(channels)
    ]
    return np.stack(columns, axis=1).astype(np.float32)


@pytest.fixture()
def mono_wav(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """2 s int16 wav at 16 kHz, with the int16-quantised samples it holds."""
    path = tmp_path / "mono.wav"
    sf.write(path, tone(2.0, 16000), 16000, subtype="PCM_16")
    return path, sf.read(path, dtype="float32")[0]


def test_int16_wav_round_trips(mono_wav: tuple[Path, np.ndarray]) -> None:
    path, stored = mono_wav
    audio = load_audio(path)
    assert audio.dtype == np.float32
    assert audio.ndim == 1
    np.testing.assert_array_equal(audio, stored)


@pytest.mark.parametrize(
    ("name", "fmt", "subtype", "max_rms_error"),
    [("a.flac", "FLAC", "PCM_16", 1e-4), ("a.ogg", "OGG", "VORBIS", 0.03), ("a.opus", "OGG", "OPUS", 0.05)],
)
def test_compressed_formats_decode(tmp_path: Path, name: str, fmt: str, subtype: str, max_rms_error: float) -> None:
    original = tone(1.0, 16000)[:, 0]  # RMS about 0.28, so the lossy bounds still demand the same waveform
    path = tmp_path / name
    sf.write(path, original, 16000, format=fmt, subtype=subtype)
    audio = load_audio(path)
    assert audio.shape == original.shape
    assert np.sqrt(np.mean((audio - original) ** 2)) < max_rms_error


def test_mp3_decodes(tmp_path: Path) -> None:
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile cannot write mp3")
    path = tmp_path / "a.mp3"
    sf.write(path, tone(1.0, 16000)[:, 0], 16000, format="MP3")
    audio = load_audio(path)
    assert abs(audio.size - 16000) < 0.05 * 16000
    assert 0.1 < np.abs(audio).max() < 1.0


def test_stereo_is_downmixed_by_mean(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    sf.write(path, tone(0.5, 16000, channels=2), 16000, subtype="FLOAT")
    stored = sf.read(path, dtype="float32")[0]
    np.testing.assert_allclose(load_audio(path), stored.mean(axis=1), rtol=0, atol=1e-7)
    assert audio_info(path).channels == 2


def test_44k1_is_resampled_to_target_rate(tmp_path: Path) -> None:
    path = tmp_path / "cd.wav"
    sf.write(path, tone(1.5, 44100), 44100, subtype="PCM_16")
    audio = load_audio(path, sample_rate=16000)
    assert abs(audio.size - 1.5 * 16000) <= 1
    spectrum = np.abs(np.fft.rfft(audio))
    peak_hz = np.argmax(spectrum) * 16000 / audio.size
    assert abs(peak_hz - 440.0) < 2.0


def test_window_equals_slice_of_full_read(tmp_path: Path) -> None:
    path = tmp_path / "long.flac"
    sf.write(path, tone(3.0, 22050, channels=2), 22050, subtype="PCM_24")
    full = load_audio(path, sample_rate=22050)
    window = load_audio(path, sample_rate=22050, offset_s=1.0, duration_s=0.5)
    np.testing.assert_array_equal(window, full[22050 : 22050 + 11025])

    resampled_full = load_audio(path)
    resampled_window = load_audio(path, offset_s=1.0, duration_s=0.5)
    assert resampled_window.size == 8000
    # Away from the window edges, resampling the window agrees with resampling the whole file.
    np.testing.assert_allclose(resampled_window[500:-500], resampled_full[16500:23500], atol=2e-3)


def test_window_past_the_end_is_truncated_and_offset_beyond_end_raises(
    mono_wav: tuple[Path, np.ndarray],
) -> None:
    path, stored = mono_wav
    tail = load_audio(path, offset_s=1.5, duration_s=10.0)
    np.testing.assert_array_equal(tail, stored[24000:])
    with pytest.raises(AudioError, match="beyond the end") as caught:
        load_audio(path, offset_s=2.0)
    assert caught.value.path == path


def test_window_reads_only_what_it_needs(monkeypatch: pytest.MonkeyPatch, mono_wav: tuple[Path, np.ndarray]) -> None:
    path, _ = mono_wav
    requested: list[int] = []
    original_read = sf.SoundFile.read

    def spy(self: sf.SoundFile, frames: int = -1, *args: object, **kwargs: object) -> np.ndarray:
        requested.append(frames)
        return original_read(self, frames, *args, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", spy)
    load_audio(path, offset_s=0.5, duration_s=0.25)
    assert requested == [4000]


def test_audio_info_reads_header(tmp_path: Path) -> None:
    path = tmp_path / "info.flac"
    sf.write(path, tone(1.25, 32000, channels=2), 32000)
    info = audio_info(path)
    assert (info.path, info.sample_rate, info.num_frames, info.channels) == (path, 32000, 40000, 2)
    assert info.duration_s == pytest.approx(1.25)


def write_bad_file(tmp_path: Path, kind: str) -> Path:
    """Write one kind of unusable file and return its path."""
    path = tmp_path / f"{kind}.wav"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not audio\n" * 20)
    elif kind == "nan":
        samples = tone(0.2, 16000)
        samples[100] = np.nan
        sf.write(path, samples, 16000, subtype="FLOAT")
    elif kind == "inf":
        samples = tone(0.2, 16000)
        samples[5] = np.inf
        sf.write(path, samples, 16000, subtype="FLOAT")
    elif kind == "loud":
        sf.write(path, tone(0.2, 16000) * 1e5, 16000, subtype="FLOAT")
    elif kind == "no_frames":
        sf.write(path, np.zeros((0, 1), dtype=np.float32), 16000, subtype="PCM_16")
    elif kind == "low_rate":
        with wave.open(str(path), "wb") as writer:
            writer.setnchannels(1)
            writer.setsampwidth(2)
            writer.setframerate(100)
            writer.writeframes(np.zeros(50, dtype=np.int16).tobytes())
    elif kind == "truncated":
        sf.write(path, tone(0.5, 16000), 16000, format="FLAC")
        path.write_bytes(path.read_bytes()[:30])
    return path


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("empty", r"file is empty \(0 bytes\)"),
        ("text", "cannot decode"),
        ("nan", "non-finite"),
        ("inf", "non-finite"),
        ("loud", "peak amplitude"),
        ("no_frames", "no audio frames"),
        ("low_rate", "sample rate 100 Hz"),
        ("truncated", "cannot decode|no audio frames"),
    ],
)
def test_bad_files_raise_audio_error_naming_the_file(tmp_path: Path, kind: str, reason: str) -> None:
    path = write_bad_file(tmp_path, kind)
    with pytest.raises(AudioError, match=reason) as caught:
        load_audio(path)
    assert caught.value.path == path
    assert str(path) in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("kind", ["empty", "text", "no_frames", "low_rate"])
def test_audio_info_rejects_bad_headers(tmp_path: Path, kind: str) -> None:
    path = write_bad_file(tmp_path, kind)
    with pytest.raises(AudioError) as caught:
        audio_info(path)
    assert caught.value.path == path


def test_undecodable_file_keeps_the_library_error_chained(tmp_path: Path) -> None:
    with pytest.raises(AudioError) as caught:
        load_audio(write_bad_file(tmp_path, "text"))
    assert isinstance(caught.value.__cause__, sf.LibsndfileError)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    missing = tmp_path / "missing.wav"
    with pytest.raises(AudioError, match="does not exist"):
        load_audio(missing)
    with pytest.raises(AudioError, match="a folder, not an audio file"):
        audio_info(tmp_path)
    (tmp_path / "link.wav").symlink_to(missing)
    with pytest.raises(AudioError, match=r"broken symbolic link: its target .*missing\.wav"):
        load_audio(tmp_path / "link.wav")
    (tmp_path / "folder.wav").mkdir()
    assert list_audio_files(tmp_path) == [tmp_path / "folder.wav", tmp_path / "link.wav"]  # reported, not hidden


def test_audio_error_message_and_pickling() -> None:
    error = AudioError("x.wav", "file is empty (0 bytes)")
    assert str(error) == "cannot use audio file 'x.wav': file is empty (0 bytes)"
    clone = pickle.loads(pickle.dumps(error))
    assert (clone.path, clone.reason, str(clone)) == (error.path, error.reason, str(error))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sample_rate": 0}, "sample_rate"),
        ({"offset_s": -1.0}, "offset_s"),
        ({"duration_s": 0.0}, "duration_s"),
    ],
)
def test_invalid_arguments_raise_value_error(
    mono_wav: tuple[Path, np.ndarray], kwargs: dict[str, float], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        load_audio(mono_wav[0], **kwargs)


def make_tree(root: Path) -> list[Path]:
    """A small corpus with decoys; returns the audio files a listing must find, sorted."""
    wanted = [
        root / "a.wav",
        root / "b" / "c.FLAC",
        root / "b" / "d" / "e.mp3",
        root / "f.Opus",
        root / "g.oga",
    ]
    decoys = [root / "notes.txt", root / ".hidden.wav", root / ".cache" / "x.wav", root / "b" / "img.png"]
    for path in wanted + decoys:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    return sorted(wanted)


def test_list_folder_recursive_sorted_skipping_hidden(tmp_path: Path) -> None:
    expected = make_tree(tmp_path)
    assert list_audio_files(tmp_path) == expected
    assert list_audio_files(str(tmp_path)) == expected


def test_list_file_resolves_relative_paths_and_skips_comments(tmp_path: Path) -> None:
    make_tree(tmp_path / "corpus")
    absolute = tmp_path / "corpus" / "a.wav"
    list_file = tmp_path / "lists" / "train.txt"
    list_file.parent.mkdir()
    list_file.write_text(f"# training clips\n\n../corpus/b/c.FLAC\n  {absolute}  \n# end\n")
    assert list_audio_files(list_file) == [list_file.parent / "../corpus/b/c.FLAC", absolute]


def test_list_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_audio_files(tmp_path / "nowhere")
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "empty_dir" / "readme.md").write_text("no audio here")
    with pytest.raises(ValueError, match="contains no audio files"):
        list_audio_files(tmp_path / "empty_dir")
    comments_only = tmp_path / "comments.txt"
    comments_only.write_text("# nothing\n\n")
    with pytest.raises(ValueError, match="lists no audio files"):
        list_audio_files(comments_only)
    binary = tmp_path / "binary.lst"
    binary.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(ValueError, match="not a UTF-8 text file"):
        list_audio_files(binary)


def test_single_audio_file_lists_itself(mono_wav: tuple[Path, np.ndarray]) -> None:
    assert list_audio_files(mono_wav[0]) == [mono_wav[0]]


@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])
def test_a_wav_cut_off_midway_is_reported_as_truncated(tmp_path: Path, subtype: str) -> None:
    whole = tmp_path / "whole.wav"
    sf.write(whole, np.zeros(16000, dtype=np.float32), 16000, subtype=subtype)
    cut = tmp_path / "cut.wav"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    assert audio_info(whole).duration_s == pytest.approx(1.0)
    with pytest.raises(AudioError, match=r"cut\.wav.*truncated: its header declares 1\.000 s, the file holds 0\.4"):
        load_audio(cut, 16000)


def test_a_missing_list_entry_is_kept_for_the_command_to_report(
    tmp_path: Path, mono_wav: tuple[Path, np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    listed = tmp_path / "files.txt"
    listed.write_text(f"# header\nmissing.wav\n{mono_wav[0]}\n")
    assert list_audio_files(listed) == [tmp_path / "missing.wav", mono_wav[0]]  # one bad line stops nothing
    assert "line 2: " in caplog.text and "missing.wav' does not exist" in caplog.text
    with pytest.raises(AudioError, match=r"missing\.wav.*does not exist"):
        audio_info(tmp_path / "missing.wav")


def test_list_files_round_trip_any_file_name(tmp_path: Path) -> None:
    names = ["plain.wav", "new\nline.wav", "para\u2028sep.wav", '"quoted".wav', "tab\there.wav", "ünï 名.wav"]
    for name in names:
        sf.write(tmp_path / name, np.zeros(1600, dtype=np.float32), 16000)
    listing = tmp_path / "files.txt"
    listing.write_text("# a run's files.txt\n" + "".join(f"{list_entry(tmp_path / n)}\n" for n in names))
    assert list_audio_files(listing) == [tmp_path / n for n in names]
