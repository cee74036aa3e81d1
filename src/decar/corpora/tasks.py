"""The labelled tasks of the bench: which clips, which labels, and a split rule that keeps test sources unseen.

Every design returns its clips and the source units it holds out (valid and test: speakers, voice packs,
phrases, kits, SoundFonts, packages, locales). The corpus builder removes everything inside those units, and
every recording with the same audio, so no model pretrained on the corpus has heard a held-out source.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from decar.corpora.catalog import Catalog, Entry
from decar.corpora.clips import ClipSpec, FileCut
from decar.corpora.seeding import assign_splits, rng_for
from decar.corpora.synth import GM_FAMILIES, Note, NoteClip, Utterance

SPLITS = ("train", "valid", "test")
TUXPAINT = "tuxpaint-stamps-default"
HEDGEWARS = "hedgewars-data"
HYDROGEN = "hydrogen-drumkits"


@dataclass
class TaskDesign:
    """One task: its clips (split and label set) and the source units its valid and test splits hold out."""

    name: str
    description: str
    split_rule: str
    clip_s: float
    specs: list[ClipSpec] = field(default_factory=list)
    held_out: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Inputs:
    """What the designs draw from: the catalogue, SoundFont files, texts by espeak voice, voice variants."""

    catalog: Catalog
    soundfonts: dict[str, Path]
    texts: dict[str, list[tuple[str, str]]]
    variants: list[str]
    seed: int = 0
    scale: float = 1.0

    @property
    def voices(self) -> list[str]:
        """espeak-ng languages that have text to read."""
        return sorted(voice for voice, pairs in self.texts.items() if pairs)

    def count(self, full: int, minimum: int = 1) -> int:
        return max(minimum, round(full * self.scale))


def _subsample(items: list, count: int, rng: np.random.Generator) -> list:
    """``count`` items in their original order (all when there are fewer)."""
    if len(items) <= count:
        return list(items)
    return [items[i] for i in sorted(rng.choice(len(items), count, replace=False))]


def _file_clips(design: TaskDesign, chosen: list[tuple[Entry, str, str, float]]) -> None:
    """Add clips cut from recordings, (entry, split, label, start) each; the same audio window is kept once."""
    seen: set[str] = set()
    counters = dict.fromkeys(SPLITS, 0)
    for entry, split, label, start_s in chosen:
        key = f"{entry.digest}@{start_s:.3f}"
        if key in seen:
            continue
        seen.add(key)
        recording = entry.recording
        design.specs.append(
            ClipSpec(
                f"tasks/{design.name}/16000/{split}/{counters[split]:05d}.flac",
                FileCut(recording.path, start_s, design.clip_s),
                recording.package,
                recording.source_id,
                "task",
                design.name,
                split,
                label,
                max_s=design.clip_s,
            )
        )
        counters[split] += 1


LID_LANGUAGES = ("ca", "da", "el", "en", "es", "fr", "nl", "ro", "ru")
"""Languages with recorded speech (Tux Paint, KTuberling) and with Tux Paint texts for espeak-ng to read."""
LID_SYNTHETIC = {"train": 300, "valid": 60, "test": 120}
"""espeak-ng clips per language and split."""
LID_RECORDED_PER_LANGUAGE = 150
LID_HELD_OUT_FRACTIONS = (0.2, 0.2)
"""Shares of voice variants, and of stamp texts, whose speech only valid and test hear."""
KTUBERLING = "ktuberling-data"


def language_id(inputs: Inputs) -> TaskDesign:
    """Spoken language, scored on voices and sentences the probe never heard.

    The packages record one speaker per language each, so a test on recorded speech measures whether two
    speakers sound alike, not the language (every encoder scored at chance on such a design). Valid and test
    are therefore espeak-ng voices: every language read by voice variants (timbre, breathiness, formants) and
    texts kept out of train and out of the corpus, at random speed and pitch. Train adds the recorded speakers.
    """
    design = TaskDesign(
        "language_id",
        f"spoken language ({len(LID_LANGUAGES)} classes): espeak-ng voices reading Tux Paint's descriptions, valid "
        "and test with voice variants and sentences never heard in train; train adds the recorded speakers of "
        "Tux Paint and KTuberling",
        "by voice and text: valid and test voice variants and the stamps whose descriptions they read occur in no "
        "other split, nor in the corpus",
        3.0,
    )
    variant_rng = rng_for(inputs.seed, design.name, "variants")
    variant_split = assign_splits(inputs.variants, variant_rng, LID_HELD_OUT_FRACTIONS)
    stamps = sorted({stamp for language in LID_LANGUAGES for stamp, _text in inputs.texts.get(language, [])})
    stamp_split = assign_splits(stamps, rng_for(inputs.seed, design.name, "stamps"), LID_HELD_OUT_FRACTIONS)
    recorded = inputs.catalog.select(
        lambda e: (
            e.recording.labels.get("language") in LID_LANGUAGES
            and (
                e.recording.package == KTUBERLING
                or (e.recording.package == TUXPAINT and stamp_split.get(e.recording.labels.get("stamp")) == "train")
            )
        )
    )
    rng = rng_for(inputs.seed, design.name, "recorded")
    chosen = [
        (entry, "train", language, 0.0)
        for language in LID_LANGUAGES
        for entry in _subsample(
            [e for e in recorded if e.recording.labels["language"] == language],
            inputs.count(LID_RECORDED_PER_LANGUAGE, 5),
            rng,
        )
    ]
    _file_clips(design, chosen)
    rng = rng_for(inputs.seed, design.name, "speech")
    for language in LID_LANGUAGES:
        texts = inputs.texts.get(language, [])
        for split, count in LID_SYNTHETIC.items():
            pool = [text for stamp, text in texts if stamp_split[stamp] == split]
            variants = [variant for variant in inputs.variants if variant_split[variant] == split]
            for index in range(inputs.count(count, 3) if pool and variants else 0):
                variant = variants[rng.integers(len(variants))]
                voice = f"{language}+{variant}"
                utterance = _spoken(rng, pool[rng.integers(len(pool))], voice)
                _add_synthetic_clip(design, split, f"{language}_espeak{index:04d}", utterance, voice, language, rng)
    design.held_out = {
        f"espeak-ng/{language}+{variant}"
        for language in LID_LANGUAGES
        for variant, split in variant_split.items()
        if split != "train"
    } | {f"{TUXPAINT}/stamp/{stamp}" for stamp, split in stamp_split.items() if split != "train"}
    return design


def voice_id(inputs: Inputs) -> TaskDesign:
    design = TaskDesign(
        "voice_id",
        "which of Hedgewars' 15 voice packs speaks a phrase",
        "by phrase: every take of a phrase, in every pack, lies in one split only",
        4.0,
    )
    entries = inputs.catalog.select(lambda e: e.recording.package == HEDGEWARS and "voice" in e.recording.labels)
    phrases = sorted({entry.recording.labels["phrase"] for entry in entries})
    splits = assign_splits(phrases, rng_for(inputs.seed, design.name, "split"), (0.2, 0.2))
    chosen = [(e, splits[e.recording.labels["phrase"]], e.recording.labels["voice"], 0.0) for e in entries]
    chosen = _subsample(chosen, inputs.count(len(chosen), 150), rng_for(inputs.seed, design.name, "scale"))
    _file_clips(design, chosen)
    design.held_out = {e.recording.source_id for e in entries if splits[e.recording.labels["phrase"]] != "train"}
    return design


DIGITS_PER_CLASS = 300


def spoken_digits(inputs: Inputs) -> TaskDesign:
    design = TaskDesign(
        "spoken_digits",
        "digits 0-9 across ~22 locales: real Tux Paint recordings plus espeak-ng in ~55 languages for training",
        "by locale: train, valid and test hold disjoint sets of recorded locales (speakers); synthetic speech trains",
        2.0,
    )
    real = inputs.catalog.select(lambda e: e.recording.package == TUXPAINT and "digit" in e.recording.labels)
    locales = sorted({entry.recording.labels["locale"].lower() for entry in real})
    split_of = assign_splits(locales, rng_for(inputs.seed, design.name, "split"), (0.25, 0.45))
    _file_clips(
        design, [(e, split_of[e.recording.labels["locale"].lower()], e.recording.labels["digit"], 0.0) for e in real]
    )
    design.held_out = {f"{TUXPAINT}/digits/{locale}" for locale, split in split_of.items() if split != "train"}
    rng = rng_for(inputs.seed, design.name, "speech")
    for index in range(inputs.count(DIGITS_PER_CLASS * 10, 20)):
        digit = str(index % 10)
        voice, utterance = _random_voice(inputs, rng, digit)
        _add_synthetic_clip(design, "train", f"espeak{index:05d}", utterance, f"{voice}/digit{digit}", digit, rng)
    return design


def _add_synthetic_clip(
    design: TaskDesign, split: str, stem: str, utterance: Utterance, source: str, label: str, rng: np.random.Generator
) -> None:
    """An espeak-ng utterance as a clip of `design` from voice `source`, at a random peak level drawn from `rng`."""
    design.specs.append(
        ClipSpec(
            f"tasks/{design.name}/16000/{split}/{stem}.flac",
            utterance,
            "espeak-ng",
            f"espeak-ng/{source}",
            "task",
            design.name,
            split,
            label,
            max_s=design.clip_s,
            peak=float(rng.uniform(0.3, 0.9)),
        )
    )


def _random_voice(inputs: Inputs, rng: np.random.Generator, text: str) -> tuple[str, Utterance]:
    """A random language, mostly with a random variant, saying ``text``."""
    language = inputs.voices[rng.integers(len(inputs.voices))]
    variant = inputs.variants[rng.integers(len(inputs.variants))] if rng.random() < 0.85 else ""
    voice = f"{language}+{variant}" if variant else language
    return voice, _spoken(rng, text, voice)


def _spoken(rng: np.random.Generator, text: str, voice: str) -> Utterance:
    """``voice`` saying ``text`` at a random speed, pitch and pitch range."""
    return Utterance(text, voice, int(rng.integers(120, 230)), int(rng.integers(15, 86)), int(rng.integers(20, 91)))


PITCH_RANGES: dict[str, tuple[int, int]] = {
    "piano": (33, 96),
    "chromatic_percussion": (55, 96),
    "bass": (28, 55),
    "guitar": (40, 79),
    "pipe": (60, 96),
    "reed": (45, 84),
    "brass": (45, 79),
    "percussive": (45, 80),
}
"""MIDI pitch ranges the families sound natural in; other families use DEFAULT_PITCH_RANGE."""
DEFAULT_PITCH_RANGE = (40, 84)


def random_note(rng: np.random.Generator, program: int, length_s: float, chord: bool = False) -> NoteClip:
    """One note (or a triad) of a GM program in its family's range, released before the clip ends."""
    low, high = PITCH_RANGES.get(GM_FAMILIES[program // 8], DEFAULT_PITCH_RANGE)
    root = int(rng.integers(low, high + 1))
    pitches = (root, root + 4 - int(rng.integers(2)), root + 7) if chord else (root,)
    duration = float(rng.uniform(0.5, 0.8)) * length_s
    return NoteClip((Note(program, pitches, int(rng.integers(60, 121)), 0.0, duration),), length_s)


INSTRUMENT_SOUNDFONTS = {
    "train": ("fluid-soundfont-gm", 12),
    "valid": ("timgm6mb-soundfont", 4),
    "test": ("musescore-general-soundfont-lossless", 6),
}
"""SoundFont and notes per GM program of each split of instrument_family."""


def instrument_family(inputs: Inputs, soundfonts: dict[str, tuple[str, int]] = INSTRUMENT_SOUNDFONTS) -> TaskDesign:
    """Single notes of every GM program, the SoundFont (and notes per program) of each split from ``soundfonts``."""
    design = TaskDesign(
        "instrument_family",
        "General MIDI instrument family (program // 8, 16 classes) of single rendered notes",
        "by SoundFont: " + ", ".join(f"{split} {package}" for split, (package, _n) in soundfonts.items()),
        2.0,
    )
    for split, (package, per_program) in soundfonts.items():
        rng = rng_for(inputs.seed, design.name, split)
        for index in range(128 * inputs.count(per_program)):
            program = index % 128
            design.specs.append(
                ClipSpec(
                    f"tasks/{design.name}/16000/{split}/{index:05d}.flac",
                    random_note(rng, program, design.clip_s),
                    package,
                    f"{package}/program{program:03d}/{index}",
                    "task",
                    design.name,
                    split,
                    GM_FAMILIES[program // 8],
                    soundfont=str(inputs.soundfonts[package]),
                    max_s=design.clip_s,
                    peak=0.5,
                )
            )
    design.held_out = {soundfonts["valid"][0], soundfonts["test"][0]} - {soundfonts["train"][0]}
    return design


VOICED_DIGIT_LANGUAGES = ("de", "en", "es", "fr", "it", "nl", "pt", "sv")
VOICED_DIGITS = {"train": 400, "valid": 200, "test": 200}
"""Clips per digit of each split of voiced_digits, at scale 1 (the demo builds it at 0.05)."""


def voiced_digits(inputs: Inputs) -> TaskDesign:
    """Digits said by espeak-ng in a few languages, split by voice variant: a task that needs no recording."""
    design = TaskDesign(
        "voiced_digits",
        f"digits 0-9 said by espeak-ng in {len(VOICED_DIGIT_LANGUAGES)} languages by many voice variants",
        "by voice variant (formants, pitch, breathiness): train, valid and test voices are disjoint",
        2.0,
    )
    split_of = assign_splits(sorted(inputs.variants), rng_for(inputs.seed, design.name, "split"), (0.2, 0.3))
    for split, per_digit in VOICED_DIGITS.items():
        variants = sorted(variant for variant, where in split_of.items() if where == split)
        rng = rng_for(inputs.seed, design.name, split)
        for index in range(inputs.count(per_digit * 10, 10)):
            digit = str(index % 10)
            language = VOICED_DIGIT_LANGUAGES[rng.integers(len(VOICED_DIGIT_LANGUAGES))]
            voice = f"{language}+{variants[rng.integers(len(variants))]}"
            utterance = _spoken(rng, digit, voice)
            _add_synthetic_clip(design, split, f"espeak{index:05d}", utterance, f"{voice}/digit{digit}", digit, rng)
    design.held_out = {
        f"espeak-ng/{language}+{variant}"
        for language in VOICED_DIGIT_LANGUAGES
        for variant, split in split_of.items()
        if split != "train"
    }
    return design


DRUM_SPLITS = {
    "valid": ("ColomboAcousticDrumkit", "Millo-Drums_v.1", "Millo_MultiLayered2", "Millo_MultiLayered3"),
    "test": ("The Black Pearl 1.0", "HardElectro1", "Gimme A Hand 1.0"),
}
"""Hydrogen kits held out; the other kits train. The Millo kits share an author and stay together."""


def drum_type(inputs: Inputs) -> TaskDesign:
    design = TaskDesign(
        "drum_type",
        "drum class (kick, snare, hi-hat, tom, cymbal, hand percussion) of real drum-kit samples",
        "by kit: valid and test kits never appear in training",
        1.0,
    )
    split_of_kit = {kit: split for split, kits in DRUM_SPLITS.items() for kit in kits}
    entries = inputs.catalog.select(lambda e: e.recording.package == HYDROGEN and e.recording.labels.get("drum"))
    chosen = [
        (e, split_of_kit.get(e.recording.labels["kit"], "train"), e.recording.labels["drum"], 0.0) for e in entries
    ]
    _file_clips(design, _subsample(chosen, inputs.count(len(chosen), 120), rng_for(inputs.seed, design.name)))
    design.held_out = {f"{HYDROGEN}/kit/{kit}" for kit in split_of_kit}
    return design


SOUND_EVENT_PACKAGES = (
    TUXPAINT,
    HEDGEWARS,
    "wesnoth-1.16-data",
    "widelands-data",
    "supertux-data",
    "hyperrogue-music",
    "frozen-bubble-data",
    "oxygen-sounds",
    "lomiri-sounds",
)
MIN_GROUPS_PER_CLASS = 6


def _take_group(source_id: str) -> str:
    """A recording's take group: the id without take numbers ('.../human-hit-3.ogg' -> '.../human-hit')."""
    stem = source_id.rsplit(".", 1)[0]
    return re.sub(r"[-_ ]*\d+$", "", stem) or stem


def sound_event(inputs: Inputs) -> TaskDesign:
    design = TaskDesign(
        "sound_event",
        "sound-event class of real game, desktop and Tux Paint effects (animal, explosion, weapon, water, ...)",
        "by take group (numbered takes of one sound stay together), stratified by class",
        3.0,
    )
    entries = inputs.catalog.select(
        lambda e: (
            e.recording.package in SOUND_EVENT_PACKAGES
            and e.recording.kind in ("sfx", "ui")
            and bool(e.recording.labels.get("category"))
        )
    )
    groups: dict[str, dict[str, list[Entry]]] = {}
    for entry in entries:
        category = entry.recording.labels["category"]
        groups.setdefault(category, {}).setdefault(_take_group(entry.recording.source_id), []).append(entry)
    chosen = []
    for category in sorted(groups):
        if len(groups[category]) < MIN_GROUPS_PER_CLASS:
            continue
        names = sorted(groups[category])
        splits = assign_splits(names, rng_for(inputs.seed, design.name, category), (0.2, 0.2))
        for name in names:
            chosen += [(entry, splits[name], category, 0.0) for entry in groups[category][name]]
            if splits[name] != "train":
                design.held_out |= {entry.recording.source_id for entry in groups[category][name]}
    _file_clips(design, _subsample(chosen, inputs.count(len(chosen), 120), rng_for(inputs.seed, design.name)))
    return design


MSN_UNITS: dict[str, dict[str, tuple[str, ...]]] = {
    "music": {
        "train": ("wesnoth-1.16-music", "widelands-data/music", "fretsonfire-songs-muldjord", "supertux-data/music"),
        "valid": ("hyperrogue-music/music",),
        "test": ("frozen-bubble-data/music", "fretsonfire-songs-sectoid"),
    },
    "speech": {
        "train": (f"{TUXPAINT}/stamp", "festvox-ru"),
        "valid": (f"{HEDGEWARS}/voice", "pocketsphinx-testdata"),
        "test": ("ktuberling-data",),
    },
    "noise": {
        "train": ("wesnoth-1.16-data", "widelands-data/sfx", f"{TUXPAINT}/sfx", "bucklespring-data"),
        "valid": ("supertux-data/sfx", "oxygen-sounds"),
        "test": (f"{HEDGEWARS}/sfx", "hyperrogue-music/sfx", "boswars-data"),
    },
}
"""music_speech_noise: the source units of each class and split; no package part is in two splits."""
MSN_CLIPS = {"train": 300, "valid": 100, "test": 150}
MSN_KINDS = {"music": ("music",), "speech": ("speech",), "noise": ("sfx", "ui")}


def _crops(entries: list[Entry], count: int, clip_s: float, rng: np.random.Generator) -> list[tuple[Entry, float]]:
    """``count`` windows spread over the recordings: long recordings give several evenly spaced ones."""
    per_recording = max(1, math.ceil(count / max(1, len(entries))))
    windows = []
    for entry in entries:
        room = max(0.0, entry.duration_s - clip_s)
        pieces = min(per_recording, max(1, int(entry.duration_s // clip_s)))
        windows += [(entry, round(float(offset), 3)) for offset in np.linspace(0.0, room, pieces)]
    return _subsample(windows, count, rng)


def music_speech_noise(inputs: Inputs) -> TaskDesign:
    design = TaskDesign(
        "music_speech_noise",
        "music, speech or noise (MUSAN-like) from game soundtracks, recorded speech and effects",
        "by package part: each split's sources (soundtracks, speakers' packages, effect sets) are its own",
        2.0,
    )
    chosen: list[tuple[Entry, str, str, float]] = []
    for label, by_split in MSN_UNITS.items():
        for split, units in by_split.items():
            entries = inputs.catalog.select(
                lambda e, units=units, label=label: (
                    e.recording.kind in MSN_KINDS[label]
                    and e.duration_s >= 1.0
                    and any(e.recording.source_id.startswith(unit + "/") for unit in units)
                )
            )
            rng = rng_for(inputs.seed, design.name, label, split)
            crops = _crops(entries, inputs.count(MSN_CLIPS[split], 10), design.clip_s, rng)
            chosen += [(entry, split, label, offset) for entry, offset in crops]
            if split != "train":
                design.held_out |= set(units)
    _file_clips(design, chosen)
    return design


TASK_DESIGNS: tuple[Callable[[Inputs], TaskDesign], ...] = (
    language_id,
    voice_id,
    spoken_digits,
    instrument_family,
    drum_type,
    sound_event,
    music_speech_noise,
)
