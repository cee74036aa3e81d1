"""Bird audio detection (DCASE 2018 task 3 development data): freefield1010 and warblr, bird present or not.

Layout under the root, either corpus or both::

    ff1010bird_metadata.csv             header itemid,hasbird
    ff1010bird/wav/<itemid>.wav
    warblrb10k_public_metadata.csv      header itemid,hasbird
    warblrb10k_public/wav/<itemid>.wav

``hasbird`` 1 -> "bird", 0 -> "no_bird". There is no official split (the DECAR code drew a random 80/20 one), so
this loader makes a deterministic 80/10/10 train/valid/test split stratified by corpus and label: within each
(corpus, label) group the files are ranked by a salted SHA-1 of their relative path
(see :func:`~decar.evaluate.tasks.esc50.stratified_split`).
"""

from __future__ import annotations

from pathlib import Path

from decar.evaluate.tasks._common import read_table, require_files, stratified_split
from decar.evaluate.tasks.base import Clip, Task, TaskError, register_task

TASK = "birdsong"
CORPORA: dict[str, str] = {
    "ff1010bird": "ff1010bird_metadata.csv",
    "warblrb10k_public": "warblrb10k_public_metadata.csv",
}
"""Audio folder (holding ``wav/``) -> its metadata CSV, both directly under the root."""
LABELS: dict[str, str] = {"0": "no_bird", "1": "bird"}
"""``hasbird`` value -> label; the vocabulary keeps this order, so class index = hasbird."""


@register_task(TASK)
def birdsong(root: Path) -> Task:
    """Bird presence in 10 s field recordings, binary.

    Args:
        root: the folder holding the metadata CSV(s) and audio folder(s) described in the module docstring.
    """
    present = {corpus: root / csv_name for corpus, csv_name in CORPORA.items() if (root / csv_name).is_file()}
    if not present:
        raise TaskError(f"{TASK}: {root} holds neither {' nor '.join(CORPORA.values())}")
    labels: dict[str, str] = {}
    groups: dict[str, list[str]] = {}
    for corpus, meta in present.items():
        rows = read_table(TASK, meta, ("itemid", "hasbird"))
        bad = sorted({row["hasbird"] for row in rows} - set(LABELS))
        if bad:
            raise TaskError(f"{TASK}: {meta} column 'hasbird' holds {bad[:3]}, expected 0 or 1")
        rels = [f"{corpus}/wav/{row['itemid']}.wav" for row in rows]
        require_files(TASK, (root / rel for rel in rels), meta)
        for rel, row in zip(rels, rows, strict=True):
            if rel in labels:
                raise TaskError(f"{TASK}: {meta} lists itemid {row['itemid']!r} twice")
            label = LABELS[row["hasbird"]]
            labels[rel] = label
            groups.setdefault(f"{corpus}/{label}", []).append(rel)
    splits = stratified_split(TASK, groups)
    clips = [Clip(root / rel, (labels[rel],), split=splits[rel]) for rel in sorted(labels)]
    return Task(TASK, clips, list(LABELS.values()), source=str(root))
