"""Synthesis and labelling helpers: espeak-ng clips independent of each other, MIDI timing, label rules."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import mido
import numpy as np

from decar.corpora.clips import speak_isolated
from decar.corpora.sources import drum_class, sound_category, voice_phrase
from decar.corpora.synth import Note, NoteClip, Utterance, _midi_bytes
from decar.corpora.texts import espeak_voice_for


def test_an_utterance_sounds_the_same_whatever_was_synthesised_before_it() -> None:
    target = Utterance("sept", "fr+m3", 150, 40, 50)
    alone = speak_isolated([target])[0]
    after_others = speak_isolated([Utterance("Hello there", "en+whisper", 220, 80, 90), target])[-1]
    assert alone is not None and alone.size > 4000
    assert np.array_equal(alone, after_others)


def test_an_utterance_does_not_depend_on_the_c_librarys_random_state() -> None:
    """Some voices (caleb) draw noise from libc's rand(), which any library in the process may have moved: a
    bench rebuilt in one process once differed from the first build in one clip."""
    import ctypes

    from decar.corpora.synth import Espeak

    engine, libc = Espeak(), ctypes.CDLL(None)
    utterance = Utterance("Bonjour tout le monde", "fr+caleb", 150, 50, 50)
    first = engine.speak(utterance)
    libc.srand(12345)
    libc.rand()
    assert first.size > 4000 and np.array_equal(first, engine.speak(utterance))


def test_midi_places_each_clip_after_the_previous_one_and_silences_between() -> None:
    clips = [
        NoteClip((Note(40, (60, 64, 67), 100, 0.0, 1.0),), 1.5),
        NoteClip((Note(0, (36,), 90, 0.25, 0.2, drum=True),), 1.0),
    ]
    midi, starts = _midi_bytes(clips)
    assert starts == [0.0, 2.5]  # 1.5 s clip + 1 s gap
    messages = list(mido.MidiFile(file=io.BytesIO(midi)))
    ons = [(round(sum(m.time for m in messages[: i + 1]), 3), m) for i, m in enumerate(messages) if m.type == "note_on"]
    assert [(time, m.note, m.channel) for time, m in ons] == [(0.0, 60, 0), (0.0, 64, 0), (0.0, 67, 0), (2.75, 36, 9)]
    assert sum(m.type == "control_change" and m.control == 120 for m in messages) == 4


def test_label_rules() -> None:
    assert [drum_class(n) for n in ('Kick (Tama 22")', "Hi-Hat Open", "Snare Rimshot", "Ride Bell", "Tom Low")] == [
        "kick",
        "hihat",
        "snare",
        "cymbal",
        "tom",
    ]
    assert drum_class("Hand Clap") == "percussion" and drum_class("Stick") == ""
    assert sound_category("sound/animals/wolf_00.ogg") == "animal"
    assert sound_category("core/sounds/human-die-2.ogg") == "vocal"
    assert sound_category("Sounds/grenadeimpact.ogg") == "explosion"
    assert voice_phrase("Ow3") == "ow" and voice_phrase("Firepunch1") == "firepunch"
    voices = {"fr", "pt-BR", "pt", "cmn", "en"}
    assert espeak_voice_for("pt_BR", voices) == "pt-BR"
    assert espeak_voice_for("fr_CA", voices) == "fr"
    assert espeak_voice_for("zh_TW", voices) == "cmn"
    assert espeak_voice_for("xx", voices) is None


def test_espeak_works_from_a_data_path_longer_than_its_buffer(tmp_path: Path) -> None:
    """espeak-ng silently ignores a data path of 160 bytes or more (a venv under a long folder has one): decar
    hands it a short link instead. Run in a child process, as espeak-ng keeps global state."""
    from decar.corpora.synth import ESPEAK_PATH_LIMIT, espeak_data_path

    deep = tmp_path / ("a_rather_long_folder_name_" * 8)
    deep.mkdir()
    (deep / "espeak-ng-data").symlink_to(espeak_data_path(), target_is_directory=True)
    assert len(str(deep / "espeak-ng-data")) > ESPEAK_PATH_LIMIT
    program = (
        "import decar.corpora.synth as s, pathlib; "
        f"s.espeak_data_path = lambda: pathlib.Path({str(deep / 'espeak-ng-data')!r}); "
        "from decar.corpora.clips import speak_isolated; "
        "[wave] = speak_isolated([s.Utterance('hello', 'en')]); print(len(wave))"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) > 1000 and "Error processing file" not in done.stderr
