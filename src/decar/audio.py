"""Audio decoding for decar: any common file in, float32 mono at the model's sample rate out.

Every problem with a file surfaces as one :class:`AudioError` that names the file and the reason, so a bad
clip among thousands is found from the message alone instead of from a libsndfile traceback.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

AUDIO_EXTENSIONS: frozenset[str] = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3"})
"""Lower-case file suffixes that :func:`list_audio_files` treats as audio."""

MIN_SAMPLE_RATE_HZ = 1000
MAX_SAMPLE_RATE_HZ = 384_000
MAX_PLAUSIBLE_AMPLITUDE = 1e3
"""Peak |sample| above which a float file is taken as corrupt or mis-scaled (full scale is 1.0)."""

log = logging.getLogger(__name__)
_DECODE_ERRORS = (sf.SoundFileError, RuntimeError, OSError)


class AudioError(ValueError):
    """A file that cannot be used as audio: missing, empty, undecodable or implausible.

    Args:
        path: The offending file.
        reason: What is wrong with it, in words.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot use audio file '{self.path}': {reason}")

    def __reduce__(self) -> tuple[type[AudioError], tuple[Path, str]]:
        # Keeps the two-argument constructor working across pickling (DataLoader workers, multiprocessing).
        return (type(self), (self.path, self.reason))


@dataclass(frozen=True)
class AudioInfo:
    """Header facts of an audio file.

    Attributes:
        path: The file.
        sample_rate: Native sample rate in Hz.
        num_frames: Length in samples per channel.
        channels: Number of channels.
        duration_s: Length in seconds.
    """

    path: Path
    sample_rate: int
    num_frames: int
    channels: int
    duration_s: float


def _check_readable_file(path: Path) -> None:
    """Raise AudioError for the problems visible without decoding: missing, not a file, zero bytes."""
    if not path.exists():
        if path.is_symlink():
            raise AudioError(path, f"broken symbolic link: its target '{os.readlink(path)}' does not exist")
        raise AudioError(path, "file does not exist")
    if path.is_dir():
        raise AudioError(path, "a folder, not an audio file")
    if not path.is_file():
        raise AudioError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise AudioError(path, "file is empty (0 bytes)")


def _decode_reason(err: BaseException) -> str:
    detail = getattr(err, "error_string", None) or str(err)
    return f"cannot decode it ({detail.strip().rstrip('.')})"


def _open(path: Path) -> sf.SoundFile:
    """Open ``path`` with libsndfile and check that its header describes plausible audio."""
    _check_readable_file(path)
    try:
        handle = sf.SoundFile(path)
    except _DECODE_ERRORS as err:
        raise AudioError(path, _decode_reason(err)) from err
    if not MIN_SAMPLE_RATE_HZ <= handle.samplerate <= MAX_SAMPLE_RATE_HZ:
        handle.close()
        raise AudioError(
            path,
            f"implausible sample rate {handle.samplerate} Hz (expected {MIN_SAMPLE_RATE_HZ}..{MAX_SAMPLE_RATE_HZ} Hz)",
        )
    if handle.frames <= 0:
        handle.close()
        raise AudioError(path, "contains no audio frames")
    declared = _declared_wav_frames(path) if handle.format in ("WAV", "WAVEX") else None
    if declared is not None and declared > handle.frames:
        frames, rate = handle.frames, handle.samplerate
        handle.close()
        raise AudioError(
            path, f"truncated: its header declares {declared / rate:.3f} s, the file holds {frames / rate:.3f} s"
        )
    return handle


def _declared_wav_frames(path: Path) -> int | None:
    """Frames the RIFF header's data chunk declares (None when unknown: a streamed size of 0 or 0xFFFFFFFF).

    libsndfile quietly reads what a truncated WAV still holds; comparing with the header catches a copy or a
    download that stopped midway. Written here because no reader reports it.
    """
    with path.open("rb") as handle:
        header = handle.read(1 << 16)
    if header[:4] not in (b"RIFF", b"RF64") or header[8:12] != b"WAVE":
        return None
    block_align, position = 0, 12
    while position + 8 <= len(header):
        chunk, size = header[position : position + 4], int.from_bytes(header[position + 4 : position + 8], "little")
        if chunk == b"fmt " and position + 22 <= len(header):
            block_align = int.from_bytes(header[position + 20 : position + 22], "little")
        if chunk == b"data":
            unknown = size in (0, 0xFFFFFFFF) or block_align == 0 or header[:4] == b"RF64"
            return None if unknown else size // block_align
        position += 8 + size + (size & 1)
    return None


def audio_info(path: str | os.PathLike[str]) -> AudioInfo:
    """Read only the header of an audio file: cheap enough to scan a whole corpus for durations.

    Args:
        path: Audio file in any format libsndfile reads (wav, flac, ogg/vorbis, opus, mp3, ...).

    Returns:
        The file's :class:`AudioInfo`.

    Raises:
        AudioError: The file is missing, empty, undecodable, or has no frames or an absurd sample rate.
    """
    file_path = Path(path)
    with _open(file_path) as handle:
        return AudioInfo(
            path=file_path,
            sample_rate=int(handle.samplerate),
            num_frames=int(handle.frames),
            channels=int(handle.channels),
            duration_s=handle.frames / handle.samplerate,
        )


def _check_window_args(sample_rate: int, offset_s: float, duration_s: float | None) -> None:
    if not MIN_SAMPLE_RATE_HZ <= sample_rate <= MAX_SAMPLE_RATE_HZ:
        raise ValueError(f"sample_rate must lie in {MIN_SAMPLE_RATE_HZ}..{MAX_SAMPLE_RATE_HZ} Hz, got {sample_rate}")
    if not (math.isfinite(offset_s) and offset_s >= 0):
        raise ValueError(f"offset_s must be a finite number >= 0, got {offset_s}")
    if duration_s is not None and not (math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"duration_s must be a finite number > 0 or None, got {duration_s}")


def load_audio(
    path: str | os.PathLike[str],
    sample_rate: int = 16000,
    offset_s: float = 0.0,
    duration_s: float | None = None,
) -> np.ndarray:
    """Decode a window of an audio file to float32 mono at ``sample_rate``.

    Only the requested window is read (seek + read): cropping a long recording costs the crop, not the file.
    Channels are averaged; the window is resampled with soxr (quality "HQ") when the file's rate differs.

    Args:
        path: Audio file in any format libsndfile reads (wav, flac, ogg/vorbis, opus, mp3, ...).
        sample_rate: Output sample rate in Hz.
        offset_s: Start of the window in seconds from the beginning of the file.
        duration_s: Length of the window in seconds; None reads to the end. The result is shorter when the
            file ends first.

    Returns:
        Samples, shape (num_samples,), float32, nominally in [-1, 1].

    Raises:
        AudioError: The file is missing, empty, undecodable, has no frames, an absurd sample rate, NaN/Inf or
            absurdly large samples, or ``offset_s`` lies at or beyond its end.
        ValueError: ``sample_rate``, ``offset_s`` or ``duration_s`` are themselves invalid.
    """
    _check_window_args(sample_rate, offset_s, duration_s)
    file_path = Path(path)
    with _open(file_path) as handle:
        native_rate = int(handle.samplerate)
        start = round(offset_s * native_rate)
        if start >= handle.frames:
            raise AudioError(
                file_path,
                f"offset {offset_s:.3f} s is beyond the end of the file ({handle.frames / native_rate:.3f} s)",
            )
        available = handle.frames - start
        count = available if duration_s is None else min(max(round(duration_s * native_rate), 1), available)
        try:
            if start:
                handle.seek(start)
            frames = handle.read(count, dtype="float32", always_2d=True)
        except _DECODE_ERRORS as err:
            raise AudioError(file_path, _decode_reason(err)) from err
    if frames.shape[0] == 0:
        raise AudioError(file_path, "decoding returned no audio frames")
    if not np.isfinite(frames).all():
        raise AudioError(file_path, "contains non-finite samples (NaN or Inf)")
    peak = float(np.abs(frames).max())
    if peak > MAX_PLAUSIBLE_AMPLITUDE:
        raise AudioError(
            file_path,
            f"peak amplitude {peak:.3g} is implausible (> {MAX_PLAUSIBLE_AMPLITUDE:g}; full scale is 1.0)",
        )
    mono = frames.mean(axis=1, dtype=np.float32) if frames.shape[1] > 1 else frames[:, 0]
    if native_rate != sample_rate:
        mono = soxr.resample(mono, native_rate, sample_rate, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _scan_folder(folder: Path) -> list[Path]:
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [name for name in dirs if not _is_hidden(name)]
        # A folder named like audio (x.wav) is listed too, so that every command reports it rather than
        # silently skipping it; its contents are searched like any folder's.
        found.extend(
            Path(root) / name
            for name in (*files, *dirs)
            if not _is_hidden(name) and Path(name).suffix.lower() in AUDIO_EXTENSIONS
        )
    return sorted(found)


def _read_list_file(list_file: Path) -> list[Path]:
    try:
        text = list_file.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"audio list '{list_file}' is not a UTF-8 text file (expected one audio path per line)"
        ) from err
    base = list_file.parent
    paths: list[Path] = []
    for line_number, raw_line in enumerate(text.split("\n"), start=1):
        entry = raw_line.strip()
        if not entry or entry.startswith("#"):
            continue
        if len(entry) > 1 and entry.startswith('"') and entry.endswith('"'):
            try:
                entry = json.loads(entry)  # a name with a line break, written by list_entry
            except json.JSONDecodeError as err:
                raise ValueError(f"audio list '{list_file}' line {line_number}: bad quoted path ({err.msg})") from err
        path = Path(entry).expanduser()
        if not path.is_absolute():
            path = base / path
        if not path.is_file():  # kept: the command reports it with the other bad files instead of stopping
            problem = "is not a file" if path.exists() else "does not exist"
            log.warning("audio list '%s' line %d: '%s' %s", list_file, line_number, path, problem)
        paths.append(path)
    return paths


def list_entry(path: str | os.PathLike[str]) -> str:
    """One line of an audio list file for ``path``: as is, or JSON-quoted when the name holds a line break or
    starts with a quote (the list reader decodes both), so that no file name can break the one-per-line format."""
    text = str(path)
    needs_quotes = any(c in text for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029") or text.startswith('"')
    return json.dumps(text, ensure_ascii=False) if needs_quotes else text


def list_audio_files(source: str | os.PathLike[str]) -> list[Path]:
    """Resolve a corpus description to the audio files it names.

    Args:
        source: One of
            - a folder: searched recursively for .wav .flac .ogg .oga .opus .mp3 (any case), skipping hidden
              files and folders; returned sorted;
            - a text file listing one audio path per line (blank lines and lines starting with ``#`` are
              ignored; relative paths are relative to the list file's folder); returned in listed order;
            - a single audio file (by extension), returned alone.

    Returns:
        Paths of the audio files.

    Raises:
        FileNotFoundError: ``source``, or a path listed in it, does not exist.
        ValueError: ``source`` yields no audio file, or a list file is not text.
    """
    source_path = Path(source).expanduser()
    if not source_path.exists():
        raise FileNotFoundError(f"audio source '{source_path}' does not exist")
    if source_path.is_dir():
        paths = _scan_folder(source_path)
        if not paths:
            extensions = " ".join(sorted(AUDIO_EXTENSIONS))
            raise ValueError(f"audio folder '{source_path}' contains no audio files ({extensions})")
        return paths
    if source_path.suffix.lower() in AUDIO_EXTENSIONS:
        return [source_path]
    paths = _read_list_file(source_path)
    if not paths:
        raise ValueError(f"audio list '{source_path}' lists no audio files")
    return paths
