"""What each Debian package contributes: its audio files, each with a source id, a kind and labels.

Source ids are hierarchical, ``package/unit/.../recording`` (e.g. ``hydrogen-drumkits/kit/ForzeeStereo/kick.flac``),
so a held-out unit (a kit, a voice pack, a whole package) is a prefix of every recording inside it. Each scanner
reads only file names and the package's own metadata (drumkit.xml, ktuberling's soundthemes), never the audio.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

AUDIO_SUFFIXES = (".ogg", ".wav", ".flac")


@dataclass(frozen=True)
class Recording:
    """One audio file of a package.

    Attributes:
        package: the Debian package it comes from.
        path: the file inside the unpacked package.
        source_id: ``package/unit/.../name``; prefixes are the units tasks hold out.
        kind: speech, music, drums, instrument (one-shot notes), sfx (effects, animals, ambience) or ui.
        labels: what the package says about it: language, voice, phrase, stamp, digit, word, kit, drum, category.
    """

    package: str
    path: Path
    source_id: str
    kind: str
    labels: dict[str, str] = field(default_factory=dict, compare=False)


def is_under(source_id: str, unit: str) -> bool:
    """Whether a recording lies inside a unit (the unit itself, or a path below it)."""
    return source_id == unit or source_id.startswith(unit.rstrip("/") + "/")


def _audio_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.rglob("*") if path.suffix.lower() in AUDIO_SUFFIXES and path.is_file())


def _rel(path: Path, base: Path) -> str:
    return path.relative_to(base).as_posix()


def language_of(locale: str) -> str:
    """'en_GB' -> 'en', 'sr@latin' -> 'sr', 'zh_tw' -> 'zh'."""
    return re.split(r"[_@.-]", locale, maxsplit=1)[0].lower()


SOUND_CATEGORIES: dict[str, tuple[str, ...]] = {
    "animal": (
        "animals/",
        "/farm/",
        "bird",
        "frog",
        "wolf",
        "dog",
        "woof",
        "cow",
        "horse",
        "donkey",
        "sheep",
        "goat",
        "pig",
        "cricket",
        "coyote",
        "moose",
        "stag",
        "boar",
        "rooster",
        "duck",
        "owl",
        "crow",
        "seagull",
        "bee",
        "mosquito",
        "hornet",
        "mouse",
        "lion",
        "tiger",
        "bear",
        "elephant",
        "bull",
        "cat",
        "camel",
        "whale",
        "dolphin",
        "snore",
        "growl",
    ),
    "explosion": (
        "explosion",
        "explode",
        "bomb",
        "grenade",
        "firework",
        "firecracker",
        "thunder",
        "lightning",
        "cave-in",
        "mine",
        "blast",
        "boom",
        "molotov",
        "kamikaze",
    ),
    "weapon": (
        "gun",
        "shot",
        "sword",
        "axe",
        "mace",
        "flail",
        "crossbow",
        "bow",
        "sling",
        "dart",
        "hatchet",
        "knife",
        "spear",
        "sniper",
        "baseballbat",
        "whip",
        "cannon",
        "launch",
        "throw",
        "dagger",
        "pistol",
        "rifle",
    ),
    "water": ("splash", "water", "droplet", "rain", "bubble", "drip", "lava", "sizzle", "fizz", "steamhiss"),
    "tool": (
        "hammer",
        "saw",
        "woodcutting",
        "smiths",
        "stonecutting",
        "mill",
        "metal",
        "drill",
        "blowtorch",
        "scissors",
        "mortar",
        "stonegrind",
        "weaver",
        "cutting",
        "goldspin",
        "hatchet",
        "vacuum",
        "washing",
        "kettle",
        "typewriter",
        "toilet",
        "camera",
        "shutter",
    ),
    "interface": (
        "click",
        "beep",
        "message",
        "notification",
        "lobby",
        "denied",
        "switch",
        "menu",
        "coin",
        "tada",
        "levelup",
        "pickup",
        "chatted",
        "cancel",
        "pause",
        "countdown",
        "oxygen-",
        "blip",
        "bell",
        "collect",
        "skip",
    ),
    "vocal": (
        "-die",
        "-hit",
        "grunt",
        "hurt",
        "laugh",
        "scream",
        "shriek",
        "ouch",
        "yell",
        "groan",
        "wail",
        "roar",
        "hell_",
        "hogchant",
        "yoohoo",
        "kiss",
        "applause",
    ),
}
"""Sound-event classes, found by keywords in a file's path (first class with a match wins)."""


def sound_category(relative_path: str) -> str:
    """The sound-event class of an effect from its path, or '' when no keyword matches."""
    return _first_match(relative_path, SOUND_CATEGORIES.items())


def _first_match(text: str, table: Iterable[tuple[str, tuple[str, ...]]]) -> str:
    """The label of the first (label, keywords) row with a keyword in `text` (case-insensitive), else ''."""
    lowered = text.lower()
    return next((label for label, keywords in table if any(keyword in lowered for keyword in keywords)), "")


def _sfx(package: str, base: Path, unit: str, files: list[Path], kind: str = "sfx") -> list[Recording]:
    return [
        Recording(
            package, path, f"{package}/{unit}/{_rel(path, base)}", kind, {"category": sound_category(_rel(path, base))}
        )
        for path in files
    ]


def _music(package: str, base: Path, unit: str, files: list[Path]) -> list[Recording]:
    return [Recording(package, path, f"{package}/{unit}/{_rel(path, base)}", "music") for path in files]


_DESC = re.compile(r"(?P<stamp>.+?)_desc(?:_(?P<locale>[A-Za-z]{2,3}(?:_[A-Za-z]{2})?(?:@[a-z]+)?))?\.ogg")
_DIGIT = re.compile(r"(?P<digit>\d)(?:_(?P<desc>desc_)?(?P<locale>[A-Za-z]{2,3}(?:_[A-Za-z]{2})?))?\.ogg")


def scan_tuxpaint(package: str, root: Path) -> list[Recording]:
    """Spoken stamp descriptions (~10 languages), digits 0-9 in ~22 locales, spoken letters, real sound effects."""
    base = root / "usr/share/tuxpaint/stamps"
    found = []
    for path in _audio_files(base):
        rel = _rel(path, base)
        folder = path.parent.relative_to(base).as_posix()
        digit = _DIGIT.fullmatch(path.name) if folder == "symbols/math" else None
        desc = _DESC.fullmatch(path.name)
        if digit:
            locale = digit["locale"] or "en"
            reading = f"{'desc_' if digit['desc'] else ''}{locale}"
            labels = {"digit": digit["digit"], "language": language_of(locale), "locale": locale}
            found.append(
                Recording(
                    package, path, f"{package}/digits/{locale.lower()}/{reading}/{digit['digit']}", "speech", labels
                )
            )
        elif desc:
            stamp = f"{folder}/{desc['stamp']}"
            locale = desc["locale"] or "en"
            labels = {"stamp": stamp, "language": language_of(locale), "locale": locale}
            found.append(Recording(package, path, f"{package}/stamp/{stamp}/{locale}", "speech", labels))
        elif folder.startswith("symbols/alphabets"):
            found.append(Recording(package, path, f"{package}/letters/{rel}", "speech"))
        else:
            found += _sfx(package, base, "sfx", [path])
    return found


_HEDGEWARS_LANGUAGES = {"Russian": "ru", "Russian_pl": "pl"}


def voice_phrase(stem: str) -> str:
    """Hedgewars phrase name without take numbers: 'Ow3' -> 'ow', 'Firepunch1' -> 'firepunch'."""
    return re.sub(r"[\d_]+$", "", stem).lower() or stem.lower()


def scan_hedgewars(package: str, root: Path) -> list[Recording]:
    """15 voice packs sharing ~60 phrases (en, es, pl, ru, uk), 26 music tracks, ~100 game effects."""
    base = root / "usr/share/games/hedgewars/Data"
    found = []
    for path in _audio_files(base / "Sounds/voices"):
        pack = path.parent.name
        language = pack.split("_", 1)[1] if pack.startswith("Default_") else _HEDGEWARS_LANGUAGES.get(pack, "en")
        labels = {"voice": pack, "phrase": voice_phrase(path.stem), "language": language}
        found.append(Recording(package, path, f"{package}/voice/{pack}/{path.stem}", "speech", labels))
    found += _music(package, base, "music", _audio_files(base / "Music"))
    effects = [path for path in _audio_files(base / "Sounds") if "voices" not in path.relative_to(base).parts]
    return found + _sfx(package, base, "sfx", effects)


def scan_ktuberling(package: str, root: Path) -> list[Recording]:
    """The same ~70 object words spoken in ~26 languages; the soundtheme files name the word of each file."""
    base = root / "usr/share/ktuberling/sounds"
    found: dict[Path, Recording] = {}
    for theme in sorted(base.glob("*.soundtheme")):
        try:
            language_node = ET.parse(theme).getroot()
        except ET.ParseError:
            continue
        locale = language_node.get("code", theme.stem)
        for sound in language_node.iter("sound"):
            path = base / sound.get("file", "")
            if path.is_file() and path not in found:
                labels = {"word": sound.get("name", ""), "language": language_of(locale), "locale": locale}
                found[path] = Recording(package, path, f"{package}/{locale}/{_rel(path, base)}", "speech", labels)
    return sorted(found.values(), key=lambda recording: recording.source_id)


def scan_festvox_ru(package: str, root: Path) -> list[Recording]:
    """620 read Russian sentences by one speaker."""
    base = root / "usr/share/festival/voices/russian"
    labels = {"language": "ru", "speaker": "msu_ru_nsh"}
    return [
        Recording(package, path, f"{package}/msu_ru_nsh/{path.stem}", "speech", dict(labels))
        for path in _audio_files(base)
    ]


def scan_pocketsphinx(package: str, root: Path) -> list[Recording]:
    """A few read English sentences (LibriVox) and spoken card names."""
    base = root / "usr/share/pocketsphinx/test/data"
    return [
        Recording(package, path, f"{package}/{_rel(path, base)}", "speech", {"language": "en"})
        for path in _audio_files(base)
    ]


def scan_hydrogen(package: str, root: Path) -> list[Recording]:
    """Drum kits: every sample layer of every instrument, named by the kit's drumkit.xml."""
    base = root / "usr/share/hydrogen/data/drumkits"
    found = []
    for kit_file in sorted(base.glob("*/drumkit.xml")):
        kit = kit_file.parent
        try:
            tree = ET.parse(kit_file).getroot()
        except ET.ParseError:
            continue
        namespace = tree.tag.split("}")[0] + "}" if tree.tag.startswith("{") else ""
        seen: set[Path] = set()
        for instrument in tree.iter(f"{namespace}instrument"):
            name = (instrument.findtext(f"{namespace}name") or "").strip()
            for node in instrument.iter(f"{namespace}filename"):
                path = kit / (node.text or "").strip()
                if path.is_file() and path not in seen:
                    seen.add(path)
                    labels = {"kit": kit.name, "instrument": name, "drum": drum_class(name)}
                    found.append(Recording(package, path, f"{package}/kit/{kit.name}/{path.name}", "drums", labels))
    return found


_DRUM_KEYWORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("kick", ("kick", "bass drum", "bassdrum")),
    ("hihat", ("hh", "hat")),
    ("snare", ("snare",)),
    ("cymbal", ("crash", "ride", "china", "splash", "cymbal")),
    ("tom", ("tom",)),
    (
        "percussion",
        (
            "clap",
            "cowbell",
            "tambourine",
            "agogo",
            "maraca",
            "clave",
            "woodblock",
            "conga",
            "bongo",
            "djembe",
            "cajon",
            "shaker",
            "sangban",
            "dununba",
            "kenkeni",
            "snap",
        ),
    ),
)


def drum_class(instrument: str) -> str:
    """Drum class of a kit instrument name ('Hi-Hat Open' -> 'hihat'), '' when unclear (sticks, effects)."""
    return _first_match(instrument, _DRUM_KEYWORDS)


_SONIC_PI_KINDS = {
    "ambi": "sfx",
    "vinyl": "sfx",
    "glitch": "sfx",
    "misc": "sfx",
    "bd": "drums",
    "sn": "drums",
    "drum": "drums",
    "perc": "drums",
    "tabla": "drums",
    "elec": "drums",
    "bass": "instrument",
    "guit": "instrument",
    "mehackit": "instrument",
    "loop": "music",
}


def scan_sonic_pi(package: str, root: Path) -> list[Recording]:
    """CC0 one-shots and loops: drums, bass, guitar, ambience, vinyl noise."""
    base = root / "usr/share/sonic-pi/samples"
    return [
        Recording(package, path, f"{package}/{path.name}", _SONIC_PI_KINDS.get(path.name.split("_")[0], "sfx"))
        for path in _audio_files(base)
    ]


def scan_frozen_bubble(package: str, root: Path) -> list[Recording]:
    """Three music tracks (named '*zik*') and game effects."""
    base = root / "usr/share/games/frozen-bubble/snd"
    files = _audio_files(base)
    music = [path for path in files if "zik" in path.stem]
    return _music(package, base, "music", music) + _sfx(package, base, "sfx", [p for p in files if p not in music])


def _folders(*specs: tuple[str, str, str]) -> Callable[[str, Path], list[Recording]]:
    """A scanner for packages that are plain folders of audio: (folder, unit, kind) triples."""

    def scan(package: str, root: Path) -> list[Recording]:
        found = []
        for folder, unit, kind in specs:
            base = root / folder
            files = _audio_files(base)
            found += _music(package, base, unit, files) if kind == "music" else _sfx(package, base, unit, files, kind)
        return found

    return scan


@dataclass(frozen=True)
class SourcePackage:
    """A package the bench reads: what it gives, and how to list it (or which SoundFont file it is)."""

    name: str
    contributes: str
    scan: Callable[[str, Path], list[Recording]] | None = None
    soundfont: str = ""


PACKAGES: tuple[SourcePackage, ...] = (
    SourcePackage(
        "tuxpaint-stamps-default",
        "spoken descriptions in ~10 languages, digits in ~22 locales, letters, real sound effects",
        scan_tuxpaint,
    ),
    SourcePackage("hedgewars-data", "15 voice packs x ~60 phrases, 26 music tracks, game effects", scan_hedgewars),
    SourcePackage("ktuberling-data", "~70 object words spoken in ~26 languages", scan_ktuberling),
    SourcePackage("festvox-ru", "620 read Russian sentences, one speaker", scan_festvox_ru),
    SourcePackage("pocketsphinx-testdata", "a few read English sentences", scan_pocketsphinx),
    SourcePackage(
        "wesnoth-1.16-music",
        "orchestral game music",
        _folders(("usr/share/games/wesnoth/1.16/data/core/music", "music", "music")),
    ),
    SourcePackage(
        "wesnoth-1.16-data",
        "combat, creature and ambient effects",
        _folders(("usr/share/games/wesnoth/1.16", "sfx", "sfx")),
    ),
    SourcePackage(
        "widelands-data",
        "game music; animal, work and interface effects",
        _folders(
            ("usr/share/games/widelands/data/music", "music", "music"),
            ("usr/share/games/widelands/data/sound", "sfx", "sfx"),
        ),
    ),
    SourcePackage(
        "supertux-data",
        "game music and effects",
        _folders(
            ("usr/share/games/supertux2/music", "music", "music"), ("usr/share/games/supertux2/sounds", "sfx", "sfx")
        ),
    ),
    SourcePackage(
        "colobot-common-sounds",
        "game music and effects",
        _folders(("usr/share/games/colobot/music", "music", "music"), ("usr/share/games/colobot/sounds", "sfx", "sfx")),
    ),
    SourcePackage(
        "hyperrogue-music",
        "game music and effects",
        _folders(("usr/share/hyperrogue/music", "music", "music"), ("usr/share/hyperrogue/sounds", "sfx", "sfx")),
    ),
    SourcePackage(
        "drascula-music", "adventure-game soundtrack", _folders(("usr/share/scummvm/drascula/audio", "music", "music"))
    ),
    SourcePackage(
        "fretsonfire-songs-muldjord",
        "rock songs (mix and guitar stems)",
        _folders(("usr/share/games/fretsonfire/data/songs", "songs", "music")),
    ),
    SourcePackage(
        "fretsonfire-songs-sectoid",
        "rock songs (mix and guitar stems)",
        _folders(("usr/share/games/fretsonfire/data/songs", "songs", "music")),
    ),
    SourcePackage("frozen-bubble-data", "game music and effects", scan_frozen_bubble),
    SourcePackage(
        "boswars-data", "unit acknowledgements and combat effects", _folders(("usr/share/games/boswars", "sfx", "sfx"))
    ),
    SourcePackage(
        "bucklespring-data", "mechanical keyboard key presses", _folders(("usr/share/buckle/wav", "keys", "sfx"))
    ),
    SourcePackage("oxygen-sounds", "desktop notification sounds", _folders(("usr/share/sounds", "ui", "ui"))),
    SourcePackage(
        "lomiri-sounds", "phone ringtones and notifications", _folders(("usr/share/sounds/lomiri", "ui", "ui"))
    ),
    SourcePackage("hydrogen-drumkits", "14 real drum kits, instruments named in drumkit.xml", scan_hydrogen),
    SourcePackage(
        "hydrogen-drumkits-effects",
        "guitar strum one-shots",
        _folders(("usr/share/hydrogen/data/drumkits", "kit", "instrument")),
    ),
    SourcePackage("sonic-pi-samples", "CC0 drums, bass, guitar, loops, ambience", scan_sonic_pi),
    SourcePackage(
        "fluid-soundfont-gm",
        "FluidR3 GM SoundFont: rendered notes, chords, phrases, drums",
        soundfont="usr/share/sounds/sf2/FluidR3_GM.sf2",
    ),
    SourcePackage(
        "csound-soundfont",
        "csound GM SoundFont: rendered notes and phrases",
        soundfont="usr/share/sounds/sf2/sf_GMbank.sf2",
    ),
    SourcePackage(
        "avldrums.lv2-soundfont",
        "AVL Red Zeppelin drum kit (Black Pearl left out: it is a test kit)",
        soundfont="usr/share/sounds/sf2/Red_Zeppelin_4_LV2.sf2",
    ),
    SourcePackage(
        "timgm6mb-soundfont",
        "TimGM6mb GM SoundFont: instrument-family validation notes only",
        soundfont="usr/share/sounds/sf2/TimGM6mb.sf2",
    ),
    SourcePackage(
        "musescore-general-soundfont-lossless",
        "MuseScore General SoundFont: instrument-family test notes only",
        soundfont="usr/share/sounds/sf2/MuseScore_General_Full.sf2",
    ),
)
"""Every package the bench uses, in build order."""
