"""The unlabelled pretraining corpus: every usable recording not held out by a task, plus synthetic breadth.

Real recordings come first: whole when short, cut into consecutive windows when long. espeak-ng adds speech
in ~55 languages (Tux Paint's translated descriptions, read by many voice variants, speeds and pitches), and
the training-side SoundFonts add notes, chords, phrases and drum hits. Nothing inside a held-out unit, and no
recording whose audio equals a held-out one, is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from decar.corpora.catalog import Catalog, Entry
from decar.corpora.clips import ClipSpec, FileCut
from decar.corpora.seeding import rng_for
from decar.corpora.synth import GM_DRUM_CLASSES, Note, NoteClip, Utterance
from decar.corpora.tasks import Inputs, random_note

WINDOW_S = {"music": 4.0, "speech": 5.0}
"""Long recordings are cut into windows of this length (4 s for other kinds); short ones are kept whole."""
DEFAULT_WINDOW_S = 4.0
WHOLE_UP_TO_S = 8.0
MIN_PIECE_S = 1.0

SPOKEN_CLIPS = 55_000
NOTE_CLIPS = 18_000
PHRASE_CLIPS = 6_000
DRUM_CLIPS = 5_000
NOTE_SOUNDFONTS = {"fluid-soundfont-gm": 0.65, "csound-soundfont": 0.35}
DRUM_SOUNDFONTS = {"fluid-soundfont-gm": 0.5, "avldrums.lv2-soundfont": 0.5}
"""Training-side SoundFonts only: TimGM6mb and MuseScore General are held out by instrument_family."""


class HeldOut:
    """Membership test for held-out source units (prefix semantics) and held-out audio (content hash)."""

    def __init__(self, units: set[str], catalog: Catalog) -> None:
        self.units = set(units)
        self.digests = {entry.digest for entry in catalog.entries if self.covers(entry.recording.source_id)}

    def covers(self, source_id: str) -> bool:
        parts = source_id.split("/")
        return any("/".join(parts[:depth]) in self.units for depth in range(1, len(parts) + 1))

    def excludes(self, entry: Entry) -> bool:
        return entry.digest in self.digests or self.covers(entry.recording.source_id)


def _windows(duration_s: float, kind: str) -> list[tuple[float, float | None]]:
    """(start, length) pieces of a recording: whole when short, consecutive windows when long."""
    if duration_s <= WHOLE_UP_TO_S:
        return [(0.0, None)]
    window = WINDOW_S.get(kind, DEFAULT_WINDOW_S)
    starts = np.arange(0.0, duration_s - MIN_PIECE_S, window)
    return [(round(float(start), 3), window) for start in starts]


@dataclass
class _Numbering:
    """Sequential file names per (kind, package) folder."""

    counts: dict[tuple[str, str], int]

    def next(self, kind: str, package: str) -> str:
        index = self.counts.get((kind, package), 0)
        self.counts[(kind, package)] = index + 1
        return f"corpus/{kind}/{package}/{index:06d}.flac"


def real_clips(inputs: Inputs, held_out: HeldOut, names: _Numbering, scale: float) -> list[ClipSpec]:
    """Every recording not held out (a ``scale`` share of each package's, drawn by the seed), windowed."""
    specs = []
    used: set[str] = set()
    by_package: dict[str, list[Entry]] = {}
    for entry in inputs.catalog.entries:
        if not held_out.excludes(entry) and entry.digest not in used:
            used.add(entry.digest)
            by_package.setdefault(entry.recording.package, []).append(entry)
    for package, entries in sorted(by_package.items()):
        if scale < 1:
            keep = max(1, round(len(entries) * scale))
            order = rng_for(inputs.seed, "corpus", package).permutation(len(entries))[:keep]
            entries = [entries[i] for i in sorted(order)]
        for entry in entries:
            recording = entry.recording
            for start, length in _windows(entry.duration_s, recording.kind):
                specs.append(
                    ClipSpec(
                        names.next(recording.kind, package),
                        FileCut(recording.path, start, length),
                        package,
                        recording.source_id,
                        "corpus",
                        max_s=WHOLE_UP_TO_S,
                    )
                )
    return specs


def spoken_clips(inputs: Inputs, held_out: HeldOut) -> list[ClipSpec]:
    """espeak-ng utterances of 1-2 descriptions in one language; held-out stamps' texts and voices are left out."""
    pools = {
        voice: [text for stamp, text in pairs if not held_out.covers(f"tuxpaint-stamps-default/stamp/{stamp}")]
        for voice, pairs in inputs.texts.items()
    }
    voices = sorted(voice for voice, pool in pools.items() if pool)
    if not voices:  # no text to read (a bench without Tux Paint's descriptions)
        return []
    heard_variants = {
        voice: [variant for variant in inputs.variants if not held_out.covers(f"espeak-ng/{voice}+{variant}")]
        for voice in voices
    }
    rng = rng_for(inputs.seed, "corpus", "espeak-ng")
    specs = []
    for index in range(inputs.count(SPOKEN_CLIPS, 10)):
        language = voices[rng.integers(len(voices))]
        pool = pools[language]
        text = " ".join(pool[i] for i in rng.integers(len(pool), size=int(rng.integers(1, 3))))
        variants = heard_variants[language]
        variant = variants[rng.integers(len(variants))] if variants and rng.random() < 0.85 else ""
        voice = f"{language}+{variant}" if variant else language
        utterance = Utterance(
            text, voice, int(rng.integers(110, 241)), int(rng.integers(15, 86)), int(rng.integers(20, 91))
        )
        specs.append(
            ClipSpec(
                f"corpus/speech/espeak-ng/{index:06d}.flac",
                utterance,
                "espeak-ng",
                f"espeak-ng/{voice}",
                "corpus",
                peak=float(rng.uniform(0.3, 0.9)),
            )
        )
    return specs


_SCALES = ((0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 10), (0, 2, 4, 7, 9))


def random_phrase(rng: np.random.Generator, program: int, length_s: float) -> NoteClip:
    """A short melody in a major, minor or pentatonic scale, notes sometimes doubled an octave down."""
    steps = _SCALES[rng.integers(len(_SCALES))]
    root = int(rng.integers(48, 72))
    notes, time = [], 0.0
    while time < length_s - 0.4:
        duration = float(rng.choice([0.125, 0.25, 0.25, 0.5, 0.75]))
        pitch = root + steps[rng.integers(len(steps))] + 12 * int(rng.integers(-1, 2))
        pitches = (pitch, pitch - 12) if rng.random() < 0.2 else (pitch,)
        notes.append(Note(program, pitches, int(rng.integers(60, 121)), time, duration))
        time += duration
    return NoteClip(tuple(notes), length_s)


def random_drums(rng: np.random.Generator, length_s: float) -> NoteClip:
    """One drum hit, or a short random groove of GM percussion keys."""
    keys = sorted(GM_DRUM_CLASSES)
    if rng.random() < 0.5:
        return NoteClip((Note(0, (int(rng.choice(keys)),), int(rng.integers(50, 128)), 0.0, 0.3, drum=True),), length_s)
    step = float(rng.choice([0.125, 0.1667, 0.25]))
    pattern = [int(key) for key in rng.choice(keys, size=int(rng.integers(2, 5)))]
    notes = [
        Note(0, (key,), int(rng.integers(50, 128)), round(position * step, 4), 0.2, drum=True)
        for position in range(int(length_s / step) - 1)
        for key in pattern
        if rng.random() < 0.4
    ]
    return NoteClip(tuple(notes) or (Note(0, (keys[0],), 100, 0.0, 0.2, drum=True),), length_s)


def _split_counts(total: int, shares: dict[str, float]) -> list[str]:
    """Which SoundFont each of ``total`` clips uses, in proportion to ``shares`` (deterministic)."""
    packages = sorted(shares)
    counts = [round(total * shares[package]) for package in packages]
    return [package for package, count in zip(packages, counts, strict=True) for _ in range(count)]


def rendered_clips(
    inputs: Inputs, note_soundfonts: dict[str, float], drum_soundfonts: dict[str, float]
) -> list[ClipSpec]:
    """Notes and chords (1-3 s), phrases (4 s) and drums (1-2 s) from the training-side SoundFonts, each drawn in
    proportion to its share."""
    rng = rng_for(inputs.seed, "corpus", "soundfonts")
    specs = []
    plans = [
        ("note", _split_counts(inputs.count(NOTE_CLIPS, 10), note_soundfonts)),
        ("phrase", _split_counts(inputs.count(PHRASE_CLIPS, 5), note_soundfonts)),
        ("drums", _split_counts(inputs.count(DRUM_CLIPS, 5), drum_soundfonts)),
    ]
    for style, packages in plans:
        for index, package in enumerate(packages):
            program = int(rng.integers(128))
            if style == "note":
                clip = random_note(rng, program, round(float(rng.uniform(1.0, 3.0)), 2), chord=rng.random() < 0.3)
            elif style == "phrase":
                clip = random_phrase(rng, program, 4.0)
            else:
                clip = random_drums(rng, float(rng.choice([1.0, 2.0])))
            kind = "drums" if style == "drums" else "instrument" if style == "note" else "music"
            specs.append(
                ClipSpec(
                    f"corpus/{kind}/{package}/{style}{index:06d}.flac",
                    clip,
                    package,
                    f"{package}/{style}/{index}",
                    "corpus",
                    soundfont=str(inputs.soundfonts[package]),
                    peak=float(rng.uniform(0.3, 0.9)),
                )
            )
    return specs


def corpus_clips(
    inputs: Inputs,
    held_out: HeldOut,
    note_soundfonts: dict[str, float] = NOTE_SOUNDFONTS,
    drum_soundfonts: dict[str, float] = DRUM_SOUNDFONTS,
    real_scale: float | None = None,
) -> list[ClipSpec]:
    """Every corpus clip: real recordings (a ``real_scale`` share, default the build's scale), synthetic speech,
    rendered music."""
    names = _Numbering({})
    real = real_clips(inputs, held_out, names, inputs.scale if real_scale is None else real_scale)
    return real + spoken_clips(inputs, held_out) + rendered_clips(inputs, note_soundfonts, drum_soundfonts)
