"""AudioSet from a generated miniature of its local layout: release CSVs, clips named by YouTube id and start."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from decar.cli import app
from decar.corpora.audioset import AudioSetError, in_valid, locate, read_segments, write_pretraining_list
from decar.evaluate.tasks import load_task
from decar.evaluate.tasks.base import TaskError

CLASSES = [("/m/09x0r", "Speech"), ("/m/04rlf", "Music"), ("/m/0jbk", "Animal"), ("/m/07yv9", "Vehicle")]
HEADER = (
    "# Segments csv created Sun Mar  5 10:54:31 2017\n# num_ytids=3\n"
    "# YTID, start_seconds, end_seconds, positive_labels\n"
)


def _ytid(i: int) -> str:
    """11-character ids with the awkward characters real ones have: leading '-', '_' inside, a leading 'Y'."""
    return ["-" + f"a_{i:08d}", f"Y{i:010d}", f"b{i:09d}_"][i % 3][:11]


def write_miniature(root: Path, per_subset: int = 30, missing: int = 2) -> dict[str, list[str]]:
    """Release CSVs for three subsets and clips in three naming styles; the last `missing` rows of each subset
    have no file. Returns the ytids per subset."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "class_labels_indices.csv").write_text(
        "index,mid,display_name\n" + "".join(f'{i},{mid},"{name}"\n' for i, (mid, name) in enumerate(CLASSES))
    )
    rng = np.random.default_rng(0)
    ytids: dict[str, list[str]] = {}
    for s, subset in enumerate(("balanced_train", "unbalanced_train", "eval")):
        lines, ytids[subset] = [HEADER], []
        for i in range(per_subset):
            ytid, start = _ytid(1000 * s + i), float(10 * (i % 4))
            mids = ",".join(CLASSES[k][0] for k in sorted({i % 4, (i * 7) % 4}))
            lines.append(f'{ytid}, {start:.3f}, {start + 10:.3f}, "{mids}"\n')
            ytids[subset].append(ytid)
            if i >= per_subset - missing:
                continue
            name = [
                f"{ytid}_{start:.3f}_{start + 10:.3f}",
                f"Y{ytid}_{start:.3f}_{start + 10:.3f}",
                f"{ytid}_{start:g}",
            ][i % 3]
            folder = root / "audio" / subset / f"part{i % 2}"
            folder.mkdir(parents=True, exist_ok=True)
            wave = (0.1 * rng.standard_normal(8000)).astype(np.float32)
            sf.write(folder / f"{name}.{'flac' if i % 2 else 'wav'}", wave, 16000)
        (root / f"{subset}_segments.csv").write_text("".join(lines))
    return ytids


@pytest.fixture(scope="module")
def miniature(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("audioset")
    write_miniature(root)
    return root


def test_clips_are_matched_whatever_their_naming_and_missing_ones_counted(miniature: Path) -> None:
    found = locate(miniature, ("balanced_train", "unbalanced_train", "eval"))
    assert {subset: len(rows) for subset, rows in found.clips.items()} == dict.fromkeys(found.clips, 28)
    assert dict(found.missing) == {"balanced_train": 2, "unbalanced_train": 2, "eval": 2}
    for rows in found.clips.values():
        for segment, path in rows:
            assert segment.ytid in path.name and f"{segment.start_s:g}" in path.name


def test_the_evaluation_task_is_527_way_multilabel_style(miniature: Path) -> None:
    task = load_task(f"audioset:{miniature}")
    assert task.multilabel and task.vocabulary == [name for _mid, name in CLASSES]
    splits = {split: [c for c in task.clips if c.split == split] for split in ("train", "valid", "test")}
    assert len(splits["test"]) == 28 and len(splits["train"]) + len(splits["valid"]) == 28
    assert all(in_valid(c.path.name.lstrip("Y")[:11]) for c in splits["valid"])
    assert task.metadata["segments_without_a_clip"] == "balanced_train 2, eval 2"
    assert any(len(c.labels) == 2 for c in task.clips)


def test_pretraining_list_holds_every_clip_found(miniature: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "data",
            "audioset",
            str(miniature),
            "-o",
            str(tmp_path / "files.txt"),
            "--subset",
            "balanced_train",
            "--subset",
            "unbalanced_train",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "balanced_train: 28 clips on disk, 2 segments without a file" in result.output
    lines = [line for line in (tmp_path / "files.txt").read_text().splitlines() if not line.startswith("#")]
    assert len(lines) == 56 and all(Path(line).is_file() for line in lines)


def test_malformed_release_files_are_named(tmp_path: Path) -> None:
    write_miniature(tmp_path, per_subset=3, missing=0)
    (tmp_path / "eval_segments.csv").write_text(HEADER + 'abcdefghijk, 0.000, 10.000, "/m/unknown"\n')
    with pytest.raises(AudioSetError, match=r"eval_segments.csv line 4: label\(s\) \['/m/unknown'\]"):
        read_segments(tmp_path, "eval", {mid: name for mid, name in CLASSES})
    (tmp_path / "class_labels_indices.csv").unlink()
    with pytest.raises(TaskError, match=r"class_labels_indices\.csv is missing"):
        load_task(f"audioset:{tmp_path}")
    empty = tmp_path / "empty"
    write_miniature(empty, per_subset=3, missing=3)
    with pytest.raises(AudioSetError, match="none of the 3 segments has a clip file"):
        write_pretraining_list(empty, tmp_path / "files.txt", ("eval",))


@pytest.mark.slow
def test_the_task_is_scored_by_map_and_d_prime(tmp_path: Path) -> None:
    from decar.evaluate.runner import evaluate

    write_miniature(tmp_path / "audioset", per_subset=120)  # enough valid clips for every class to vary
    results = evaluate("logmel-stats", [f"audioset:{tmp_path / 'audioset'}"], tmp_path / "out", seeds=1, progress=False)
    scores = results["tasks"]["audioset"]
    assert scores["primary_metric"] == "mAP" and scores["multilabel"] and 0.0 <= scores["mean"] <= 1.0
    assert set(scores["metrics"]) >= {"mAP", "d_prime"}
