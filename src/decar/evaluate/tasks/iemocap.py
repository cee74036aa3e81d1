"""IEMOCAP 4-class emotion recognition, leave-one-session-out.

Layout: ``Session1..5/sentences/wav/<dialog>/<utterance>.wav`` and ``Session*/dialog/EmoEvaluation/<dialog>.txt``,
whose summary lines read ``[6.2901 - 8.2357]\\tSes01F_impro01_F000\\tneu\\t[2.5000, 2.5000, 2.5000]``. The standard
4-class set keeps neutral, angry, sad and happy, with excited merged into happy; the other categories (frustrated,
surprised, ...) and ``xxx`` (no agreement) are dropped.

Folds are sessions (fold = session - 1), evaluated with the HEAR rotation of :class:`Task`: fold i is test and
fold i+1 validation, so five rounds. The DECAR paper instead reports session 5 as the only test set.
"""

from __future__ import annotations

import re
from pathlib import Path

from decar.evaluate.tasks.base import Clip, Task, TaskError, register_task

TASK = "iemocap_4"
LABEL_MAP: dict[str, str] = {"neu": "neu", "ang": "ang", "sad": "sad", "hap": "hap", "exc": "hap"}
"""IEMOCAP category -> task label; categories not listed are dropped."""
SESSIONS = range(1, 6)
_SUMMARY = re.compile(r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\t(\S+)\t(\S+)\t\[")


def _read_evaluation(path: Path) -> list[tuple[str, str]]:
    """(utterance id, category) from one EmoEvaluation file's summary lines."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise TaskError(f"{TASK}: cannot read {path}: {err}") from err
    rows: list[tuple[str, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.startswith("["):
            continue
        match = _SUMMARY.match(line)
        if match is None:
            raise TaskError(
                f"{TASK}: {path} line {number}: expected '[start - end]<TAB>utterance<TAB>emotion<TAB>[V, A, D]', "
                f"got {line.strip()!r}"
            )
        rows.append((match.group(1), match.group(2)))
    return rows


@register_task(TASK)
def iemocap_4(root: Path) -> Task:
    """IEMOCAP neutral / angry / sad / happy+excited, one fold per session.

    Args:
        root: the IEMOCAP folder holding ``Session1`` ... ``Session5``.
    """
    sessions = [s for s in SESSIONS if (root / f"Session{s}").is_dir()]
    if not sessions:
        raise TaskError(f"{TASK}: {root} has no Session1..Session5 folders; it is not an IEMOCAP root")
    clips: list[Clip] = []
    missing: list[str] = []
    dropped = 0
    for session in sessions:
        folder = root / f"Session{session}"
        evaluations = folder / "dialog" / "EmoEvaluation"
        files = (
            sorted(p for p in evaluations.glob("*.txt") if not p.name.startswith(".")) if evaluations.is_dir() else []
        )
        if not files:
            raise TaskError(f"{TASK}: {evaluations} has no <dialog>.txt emotion evaluation files")
        for evaluation in files:
            for utterance, category in _read_evaluation(evaluation):
                if category not in LABEL_MAP:
                    dropped += 1
                    continue
                path = folder / "sentences" / "wav" / evaluation.stem / f"{utterance}.wav"
                if not path.is_file():
                    missing.append(str(path.relative_to(root)))
                clips.append(Clip(path, (LABEL_MAP[category],), fold=session - 1))
    if missing:
        raise TaskError(
            f"{TASK}: {len(missing)} labelled utterance(s) have no wav file under {root}, e.g. {missing[:3]}"
        )
    clips.sort(key=lambda c: c.path)
    metadata = {"sessions": ",".join(map(str, sessions)), "dropped_other_emotions": str(dropped)}
    return Task(TASK, clips, sorted(set(LABEL_MAP.values())), split_mode="kfold", source=str(root), metadata=metadata)
