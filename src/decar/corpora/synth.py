"""Synthetic audio from free engines: espeak-ng speech (any of ~100 languages) and SoundFont notes.

espeak-ng comes from the PyPI wheel `espeakng-loader` (the library and its data, no system install), driven
through its C API with ctypes. SoundFonts (.sf2) are rendered by `midirenderer` from a small MIDI file written
with `mido`; many notes go into one MIDI file, since each render parses the whole SoundFont.
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

OUTPUT_RATE = 16000

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POSITION_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE, _PARAM_PITCH, _PARAM_RANGE = 1, 3, 4
_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


def espeak_data_path() -> Path:
    import espeakng_loader

    return Path(espeakng_loader.get_data_path())


ESPEAK_PATH_LIMIT = 150
"""espeak-ng keeps its data path in a 160-byte buffer and, given a longer one, silently falls back to the path it
was built with; the data path inside a virtual environment under a long folder passes that limit."""


def _short_data_path() -> Path:
    """The espeak-ng data folder, or a short symlink to it (in /tmp) when its path is too long for espeak-ng."""
    data = espeak_data_path()
    if len(str(data)) < ESPEAK_PATH_LIMIT:
        return data
    for folder in (Path("/tmp"), Path(tempfile.gettempdir()), Path.home()):
        link = folder / f"decar-espeak-{hashlib.sha1(str(data).encode()).hexdigest()[:12]}"
        if len(str(link)) >= ESPEAK_PATH_LIMIT:
            continue
        try:
            link.symlink_to(data, target_is_directory=True)
        except FileExistsError:
            pass  # made by another process or an earlier run
        except OSError:
            continue
        if link.resolve() == data.resolve():
            return link
    raise RuntimeError(
        f"espeak-ng cannot use its data folder {data}: the path is too long and no short link could be made"
    )


def espeak_languages() -> list[str]:
    """Voice identifiers of every language espeak-ng ships (file names under espeak-ng-data/lang)."""
    return sorted(path.name for path in (espeak_data_path() / "lang").rglob("*") if path.is_file())


def espeak_variants() -> list[str]:
    """Voice variants (pitch, formants, breathiness...), combined with a language as 'fr+variant'."""
    return sorted(path.name for path in (espeak_data_path() / "voices" / "!v").iterdir() if path.is_file())


@dataclass(frozen=True)
class Utterance:
    """What espeak-ng says and how: voice 'LANG' or 'LANG+VARIANT', rate in words/min, pitch and range 0-100."""

    text: str
    voice: str
    rate: int = 175
    pitch: int = 50
    pitch_range: int = 50


class Espeak:
    """One espeak-ng engine per process (the library keeps global state)."""

    def __init__(self) -> None:
        import espeakng_loader

        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self._libc = ctypes.CDLL(None)  # the process's C library, whose rand() espeak-ng also calls
        rate = self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, str(_short_data_path()).encode(), 0)
        if rate <= 0:
            raise RuntimeError(f"espeak-ng failed to initialise (code {rate})")
        self.sample_rate = int(rate)
        self._chunks: list[np.ndarray] = []
        self._callback = _SynthCallback(self._collect)
        self._lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wave: ctypes.Array[ctypes.c_short], count: int, _events: int) -> int:
        if count > 0:
            self._chunks.append(np.ctypeslib.as_array(wave, shape=(count,)).copy())
        return 0

    def speak(self, utterance: Utterance) -> np.ndarray:
        """Float32 mono samples at OUTPUT_RATE (empty when the voice is unknown or the text unspeakable)."""
        if self._lib.espeak_SetVoiceByName(utterance.voice.encode()) != 0:
            return np.zeros(0, dtype=np.float32)
        for parameter, value in (
            (_PARAM_RATE, utterance.rate),
            (_PARAM_PITCH, utterance.pitch),
            (_PARAM_RANGE, utterance.pitch_range),
        ):
            self._lib.espeak_SetParameter(parameter, int(value), 0)
        self._chunks = []
        self._lib.espeak_ng_SetRandSeed(0)  # noisy voices (whisper, breath) draw from a seeded generator
        self._libc.srand(0)  # and some (e.g. caleb) from the C library's rand(), whose state others move too
        text = utterance.text.encode("utf-8")
        self._lib.espeak_Synth(text, len(text) + 1, 0, _POSITION_CHARACTER, 0, _CHARS_UTF8, None, None)
        self._lib.espeak_Synchronize()
        if not self._chunks:
            return np.zeros(0, dtype=np.float32)
        wave = np.concatenate(self._chunks).astype(np.float32) / 32768.0
        return soxr.resample(wave, self.sample_rate, OUTPUT_RATE, quality="HQ").astype(np.float32)


GM_FAMILIES: tuple[str, ...] = (
    "piano",
    "chromatic_percussion",
    "organ",
    "guitar",
    "bass",
    "strings",
    "ensemble",
    "brass",
    "reed",
    "pipe",
    "synth_lead",
    "synth_pad",
    "synth_effects",
    "ethnic",
    "percussive",
    "sound_effects",
)
"""General MIDI instrument families: program // 8 (as NSynth groups its instruments)."""

GM_DRUM_CLASSES: dict[int, str] = {
    **dict.fromkeys((35, 36), "kick"),
    **dict.fromkeys((38, 40), "snare"),
    **dict.fromkeys((42, 44, 46), "hihat"),
    **dict.fromkeys((41, 43, 45, 47, 48, 50), "tom"),
    **dict.fromkeys((49, 51, 52, 53, 55, 57, 59), "cymbal"),
    **dict.fromkeys((39, 54, 56, 58, 60, 61, 62, 63, 64, 65, 66, 69, 70, 73, 74, 75, 76, 77), "percussion"),
}
"""GM percussion keys (channel 10) by drum class."""


@dataclass(frozen=True)
class Note:
    """One event of a rendered clip: a GM program (or the drum kit when ``drum``) playing ``pitches`` together."""

    program: int
    pitches: tuple[int, ...]
    velocity: int
    start_s: float
    duration_s: float
    drum: bool = False


@dataclass(frozen=True)
class NoteClip:
    """A clip of ``length_s`` seconds made of notes (one note, a chord, or a short phrase)."""

    notes: tuple[Note, ...]
    length_s: float


_TICKS_PER_SECOND = 960  # 480 ticks per beat at 120 bpm
_GAP_S = 1.0  # silence between clips in one render, so that reverb tails do not reach the next clip


def _midi_bytes(clips: list[NoteClip]) -> tuple[bytes, list[float]]:
    """One MIDI file playing the clips one after another; returns it and each clip's start time."""
    import mido

    events: list[tuple[int, int, mido.Message]] = []  # (tick, order, message); note-offs sort before note-ons
    starts: list[float] = []
    cursor = 0.0
    for clip in clips:
        starts.append(cursor)
        for note in clip.notes:
            channel = 9 if note.drum else 0
            on = round((cursor + note.start_s) * _TICKS_PER_SECOND)
            off = round((cursor + note.start_s + note.duration_s) * _TICKS_PER_SECOND)
            if not note.drum:
                events.append((on, 1, mido.Message("program_change", program=note.program, channel=channel)))
            for pitch in note.pitches:
                events.append((on, 2, mido.Message("note_on", note=pitch, velocity=note.velocity, channel=channel)))
                events.append((off, 0, mido.Message("note_off", note=pitch, velocity=0, channel=channel)))
        cursor += clip.length_s + _GAP_S
        silence = round((cursor - 0.05) * _TICKS_PER_SECOND)
        for channel in (0, 9):  # all sound off: nothing of this clip rings into the next
            events.append((silence, 0, mido.Message("control_change", channel=channel, control=120, value=0)))
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500_000, time=0)])
    previous = 0
    for tick, _order, message in sorted(events, key=lambda event: (event[0], event[1])):
        track.append(message.copy(time=tick - previous))
        previous = tick
    midi = mido.MidiFile(ticks_per_beat=480, tracks=[track])
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue(), starts


def render_note_clips(soundfont: Path, clips: list[NoteClip]) -> list[np.ndarray]:
    """Render clips with a SoundFont: float32 mono at OUTPUT_RATE, one array per clip of its exact length."""
    import midirenderer

    midi, starts = _midi_bytes(clips)
    wav = midirenderer.render_wave_from(Path(soundfont).read_bytes(), midi)
    stereo, rate = sf.read(io.BytesIO(wav), dtype="float32", always_2d=True)
    mono = stereo.mean(axis=1)
    rendered = []
    for clip, start in zip(clips, starts, strict=True):
        first = round(start * rate)
        piece = mono[first : first + round(clip.length_s * rate)]
        piece = np.pad(piece, (0, max(0, round(clip.length_s * rate) - piece.size)))
        rendered.append(soxr.resample(piece, rate, OUTPUT_RATE, quality="HQ").astype(np.float32))
    return rendered
