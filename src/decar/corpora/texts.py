"""Text for synthetic speech: Tux Paint's stamp descriptions, translated into ~60 languages.

Each stamp has a ``NAME.txt`` whose first line is English and whose other lines are ``LOCALE.utf8=Text``. The
texts are grouped by the espeak-ng voice that reads the locale, and keep their stamp id, so that the texts of
held-out stamps can be left out of the corpus.
"""

from __future__ import annotations

import re
from pathlib import Path

from decar.corpora.sources import language_of

_LINE = re.compile(r"(?P<locale>[A-Za-z_@]+)\.utf8=(?P<text>.+)")
_VOICE_ALIASES = {"zh": "cmn"}


def espeak_voice_for(locale: str, voices: set[str]) -> str | None:
    """The espeak-ng language voice for a locale ('pt_BR' -> 'pt-BR', 'fr_CA' -> 'fr', 'zh_TW' -> 'cmn')."""
    by_lower = {voice.lower(): voice for voice in voices}
    exact = locale.split("@")[0].replace("_", "-").lower()
    if exact in by_lower:
        return by_lower[exact]
    language = language_of(locale)
    return by_lower.get(_VOICE_ALIASES.get(language, language))


def stamp_texts(stamps_root: Path, voices: set[str]) -> dict[str, list[tuple[str, str]]]:
    """espeak voice -> [(stamp id, text)], from every stamp description under ``usr/share/tuxpaint/stamps``.

    The stamp id matches :func:`decar.corpora.sources.scan_tuxpaint`'s ``stamp`` label (folder/name).
    """
    texts: dict[str, set[tuple[str, str]]] = {}
    for path in sorted(stamps_root.rglob("*.txt")):
        stamp = path.relative_to(stamps_root).with_suffix("").as_posix()
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        entries = [("en", lines[0])] if lines and "=" not in lines[0] else []
        entries += [(match["locale"], match["text"]) for line in lines if (match := _LINE.fullmatch(line.strip()))]
        for locale, text in entries:
            voice = espeak_voice_for(locale, voices)
            if voice and text.strip():
                texts.setdefault(voice, set()).add((stamp, text.strip()))
    return {voice: sorted(pairs) for voice, pairs in sorted(texts.items())}
