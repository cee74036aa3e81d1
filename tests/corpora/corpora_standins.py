"""Stand-ins for the unpacked Debian packages: the real folder layouts, filled with tiny generated audio.

Every package the bench reads gets a tree under CACHE/extracted/PKG plus its PKG.json marker, so the builder
finds it "already fetched" and never calls apt. SoundFont files are placeholders: tests replace the renderer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

from decar.corpora.sources import PACKAGES
from decar.corpora.tasks import DRUM_SPLITS, LID_LANGUAGES

RATE = 22050


def _tone(path: Path, seconds: float, frequency: float, fmt: str = "OGG") -> None:
    t = np.arange(round(seconds * RATE)) / RATE
    wave = 0.3 * np.sin(2 * np.pi * frequency * t) * (1 + 0.2 * np.sin(2 * np.pi * 3 * t))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave.astype(np.float32), RATE, format=fmt, subtype="VORBIS" if fmt == "OGG" else "PCM_16")


def _tones(folder: Path, names: list[str], seconds: float = 1.2, fmt: str = "OGG", base: float = 200) -> None:
    """Distinct tones (their own audio, so no two stand-in files are duplicates of each other)."""
    for index, name in enumerate(names):
        _tone(folder / name, seconds, base + 37 * index + 0.01 * sum(map(ord, str(folder))), fmt)


STAMPS = [f"animals/mammals/beast{index}" for index in range(10)]
DIGIT_LOCALES = ("de", "en_GB", "fr", "ja", "sv", "nb")


def _tuxpaint(root: Path) -> None:
    stamps = root / "usr/share/tuxpaint/stamps"
    for number, stamp in enumerate(STAMPS):
        text = f"A beast {number}.\nfr.utf8=Une bête {number}.\nru.utf8=Зверь {number}.\nde.utf8=Ein Tier {number}.\n"
        (stamps / f"{stamp}.txt").parent.mkdir(parents=True, exist_ok=True)
        (stamps / f"{stamp}.txt").write_text(text, encoding="utf-8")
        _tones(stamps / Path(stamp).parent, [f"{Path(stamp).name}_desc_{lang}.ogg" for lang in LID_LANGUAGES], 1.5)
    _tones(stamps / "symbols/math", [f"{d}_{loc}.ogg" for loc in DIGIT_LOCALES for d in range(10)], 0.8)
    _tones(stamps / "animals/birds", ["crow.ogg", "owl.ogg", "duck.ogg", "hen.ogg"])
    _tones(stamps / "household/tools", ["hammer.ogg", "saw.ogg"])
    _tones(stamps / "symbols/alphabets/english", ["A.ogg"])
    (stamps / "animals/birds/broken.ogg").write_bytes(b"OggS not really a vorbis stream" * 4)


def _hedgewars(root: Path) -> None:
    data = root / "usr/share/games/hedgewars/Data"
    for pack in ("Default", "Pirate", "Robot", "Default_es"):
        _tones(data / "Sounds/voices" / pack, [f"{p}.ogg" for p in ("Hello", "Boom", "Ouch1", "Ouch2", "Yes", "No")])
    _tones(data / "Music", ["theme.ogg", "battle.ogg"], 9.0)
    _tones(data / "Sounds", ["explosion.ogg", "beep.ogg", "shotgunfire.ogg", "splash.ogg"])


def _ktuberling(root: Path) -> None:
    sounds = root / "usr/share/ktuberling/sounds"
    words = ("ball", "hat", "eye")
    for language in ("fr", "ru"):
        _tones(sounds / language, [f"{word}.wav" for word in words], 1.1, "WAV")
        theme = "".join(f'<sound name="{word}" file="{language}/{word}.wav" />' for word in words)
        (sounds / f"{language}.soundtheme").write_text(f'<language code="{language}">{theme}</language>')


def _hydrogen(root: Path) -> None:
    kits = root / "usr/share/hydrogen/data/drumkits"
    names = ("Kick", "Snare", "Closed HH", "Tom Hi", "Crash", "Hand Clap", "Stick")
    for kit in ("TrainKit", "OtherTrainKit", *DRUM_SPLITS["valid"], *DRUM_SPLITS["test"]):
        files = [f"{name.replace(' ', '_')}.wav" for name in names]
        _tones(kits / kit, files, 0.5, "WAV")
        instruments = "".join(
            f"<instrument><name>{name}</name><layer><filename>{file}</filename></layer></instrument>"
            for name, file in zip(names, files, strict=True)
        )
        xml = f'<drumkit_info xmlns="http://www.hydrogen2.org/drumkit"><instrumentList>{instruments}</instrumentList></drumkit_info>'
        (kits / kit / "drumkit.xml").write_text(xml)


def _effects(names: list[str]) -> list[str]:
    return [f"{name}.ogg" for name in names]


_SOUNDS = ["wolf-growl", "bird1", "frog", "boar", "coyote", "stag", "moose", "click", "message", "menu", "denied"]


def _generic(name: str, root: Path) -> None:
    """Packages that are folders of audio: music where the real one has music, effects where it has effects."""
    layouts: dict[str, list[tuple[str, list[str], float]]] = {
        "festvox-ru": [("usr/share/festival/voices/russian/msu_ru_nsh_clunits/wav", ["ru_001.wav", "ru_002.wav"], 9.5)],
        "pocketsphinx-testdata": [("usr/share/pocketsphinx/test/data/librivox", ["a.wav", "b.wav"], 2.5)],
        "wesnoth-1.16-music": [("usr/share/games/wesnoth/1.16/data/core/music", ["march.ogg", "elegy.ogg"], 9.0)],
        "wesnoth-1.16-data": [("usr/share/games/wesnoth/1.16/data/core/sounds", _effects(_SOUNDS), 1.2)],
        "widelands-data": [
            ("usr/share/games/widelands/data/music", ["intro.ogg"], 9.0),
            ("usr/share/games/widelands/data/sound/animals", _effects([f"{s}_00" for s in _SOUNDS]), 1.3),
        ],
        "supertux-data": [
            ("usr/share/games/supertux2/music", ["forest.ogg"], 6.0),
            ("usr/share/games/supertux2/sounds", _effects(["coin", "splash", "explosion", "hop"]), 1.2),
        ],
        "colobot-common-sounds": [("usr/share/games/colobot/music", ["m1.ogg"], 5.0)],
        "hyperrogue-music": [
            ("usr/share/hyperrogue/music", ["cave.ogg"], 6.0),
            ("usr/share/hyperrogue/sounds", _effects(["explosion", "hit-sword1", "pickup-gold"]), 1.2),
        ],
        "drascula-music": [("usr/share/scummvm/drascula/audio", ["track1.ogg"], 5.0)],
        "fretsonfire-songs-muldjord": [("usr/share/games/fretsonfire/data/songs/muldjord/rock", ["song.ogg"], 7.0)],
        "fretsonfire-songs-sectoid": [("usr/share/games/fretsonfire/data/songs/sectoid/metal", ["song.ogg"], 7.0)],
        "frozen-bubble-data": [("usr/share/games/frozen-bubble/snd", ["introzik.ogg", "applause.ogg"], 5.0)],
        "boswars-data": [("usr/share/games/boswars/units/tank", ["tank_attack.wav"], 1.5)],
        "bucklespring-data": [("usr/share/buckle/wav", ["1e-0.wav", "1e-1.wav"], 1.0)],
        "oxygen-sounds": [("usr/share/sounds", _effects(["Oxygen-Sys-Message", "Oxygen-Im-Message-In"]), 1.2)],
        "lomiri-sounds": [("usr/share/sounds/lomiri/notifications", _effects(["Blip", "Slick"]), 1.2)],
        "hydrogen-drumkits-effects": [("usr/share/hydrogen/data/drumkits/strums", ["g1.wav"], 1.0)],
        "sonic-pi-samples": [("usr/share/sonic-pi/samples", ["bd_haus.flac", "ambi_drone.flac"], 1.5)],
    }
    for folder, names, seconds in layouts.get(name, []):
        fmt = {".wav": "WAV", ".flac": "FLAC"}.get(Path(names[0]).suffix, "OGG")
        _tones(root / folder, names, seconds, fmt)


def write_standin_cache(cache: Path) -> Path:
    """A package cache holding a stand-in for every package of :data:`decar.corpora.sources.PACKAGES`."""
    builders = {"tuxpaint-stamps-default": _tuxpaint, "hedgewars-data": _hedgewars, "ktuberling-data": _ktuberling}
    builders["hydrogen-drumkits"] = _hydrogen
    for source in PACKAGES:
        root = cache / "extracted" / source.name
        builder = builders.get(source.name)
        if builder:
            builder(root)
        else:
            _generic(source.name, root)
        if source.soundfont:
            (root / source.soundfont).parent.mkdir(parents=True, exist_ok=True)
            (root / source.soundfont).write_bytes(b"sfbk stand-in")
        doc = root / "usr/share/doc" / source.name
        doc.mkdir(parents=True, exist_ok=True)
        (doc / "copyright").write_text("Files: *\nCopyright: someone\nLicense: GPL-2+\n")
        (cache / "extracted" / f"{source.name}.json").write_text(
            json.dumps({"package": source.name, "version": "1.0-1"})
        )
    return cache


def fake_render_note_clips(soundfont: Path, clips: list) -> list[np.ndarray]:
    """Stand-in renderer: a sine per note at its pitch, quieter for the TimGM6mb stand-in; deterministic."""
    waves = []
    for clip in clips:
        t = np.arange(round(clip.length_s * 16000)) / 16000
        wave = np.zeros_like(t)
        for note in clip.notes:
            for pitch in note.pitches:
                frequency = 440.0 * 2 ** ((pitch - 69) / 12)
                inside = (t >= note.start_s) & (t < note.start_s + note.duration_s)
                wave += inside * np.sin(2 * np.pi * frequency * t) * (0.1 + (note.program % 8) / 10)
        waves.append(wave.astype(np.float32))
    return waves
