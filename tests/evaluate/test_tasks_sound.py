"""Sound, music and scene corpus loaders and HEAR task folders, on miniature copies of the real layouts.

The loaders only list files, so the audio files here are empty placeholders.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from decar.evaluate.tasks import Task, TaskError, load_task
from decar.evaluate.tasks.birdsong import birdsong
from decar.evaluate.tasks.esc50 import esc10, esc50
from decar.evaluate.tasks.hear import load_hear_task
from decar.evaluate.tasks.musan import musan
from decar.evaluate.tasks.nsynth import nsynth_instrument, nsynth_pitch
from decar.evaluate.tasks.tut import tut_scenes_2018
from decar.evaluate.tasks.urbansound import urbansound8k


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def _write_csv(path: Path, header: list[str], rows: list[list[object]], delimiter: str = ",") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=delimiter, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def _by_name(task: Task) -> dict[str, tuple[tuple[str, ...], str | None, int | None]]:
    return {clip.path.name: (clip.labels, clip.split, clip.fold) for clip in task.clips}


# ---------------------------------------------------------------- ESC-50 / ESC-10

_ESC_CLASSES = [(0, "dog", True), (1, "rooster", True), (2, "pig", False), (10, "rain", True)]


def _esc50(root: Path) -> Path:
    rows = []
    for fold in range(1, 6):
        for target, category, is_esc10 in _ESC_CLASSES:
            src = 100000 + 100 * fold + target
            name = f"{fold}-{src}-A-{target}.wav"
            rows.append([name, fold, target, category, is_esc10, src, "A"])
            _touch(root / "audio" / name)
    _write_csv(
        root / "meta" / "esc50.csv", ["filename", "fold", "target", "category", "esc10", "src_file", "take"], rows
    )
    return root


def test_esc50_reads_official_folds_and_rotates_test_and_validation(tmp_path: Path) -> None:
    task = esc50(_esc50(tmp_path))
    assert task.split_mode == "kfold"
    assert task.vocabulary == ["dog", "rooster", "pig", "rain"]  # ordered by ESC-50 target id
    assert len(task.clips) == 20
    assert Counter(clip.fold for clip in task.clips) == {fold: 4 for fold in range(5)}
    assert _by_name(task)["3-100310-A-10.wav"] == (("rain",), None, 2)
    assert task.clips[0].path == tmp_path / "audio" / "1-100100-A-0.wav"
    rounds = list(task.splits())
    assert [split.name for split in rounds] == [f"fold{i}" for i in range(5)]
    for i, split in enumerate(rounds):
        assert {c.fold for c in split.test} == {i}
        assert {c.fold for c in split.valid} == {(i + 1) % 5}
        assert {c.fold for c in split.train} == set(range(5)) - {i, (i + 1) % 5}
        assert (len(split.train), len(split.valid), len(split.test)) == (12, 4, 4)


def test_esc10_keeps_the_flagged_classes_and_folds(tmp_path: Path) -> None:
    task = esc10(_esc50(tmp_path))
    assert task.vocabulary == ["dog", "rooster", "rain"]
    assert len(task.clips) == 15
    assert "pig" not in {clip.labels[0] for clip in task.clips}
    assert len(list(task.splits())) == 5


def test_esc50_dispatch_through_load_task_and_determinism(tmp_path: Path) -> None:
    root = _esc50(tmp_path)
    assert load_task("esc50:" + str(root)) == esc50(root) == esc50(root)
    assert load_task(f"esc10:{root}").vocabulary == ["dog", "rooster", "rain"]


def test_esc50_bad_input(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match=r"esc50\.csv is missing"):
        esc50(tmp_path)
    root = _esc50(tmp_path / "a")
    (root / "audio" / "2-100200-A-0.wav").unlink()
    with pytest.raises(TaskError, match=r"1 audio file\(s\) listed in .*esc50\.csv are missing.*2-100200-A-0\.wav"):
        esc50(root)
    meta = _esc50(tmp_path / "b") / "meta" / "esc50.csv"
    meta.write_text(meta.read_text().replace("2,pig,False", "2,pig,maybe"))
    with pytest.raises(TaskError, match=r"column 'esc10' holds \['maybe'\]"):
        esc50(meta.parents[1])
    meta.write_text(meta.read_text().replace("maybe", "False").replace("1-100101-A-1.wav,1,1,rooster", "x.wav,1,1,hen"))
    with pytest.raises(TaskError, match=r"class id 1 two names"):
        esc50(meta.parents[1])
    meta.write_text("filename,fold,target\n")
    with pytest.raises(TaskError, match=r"lacks column\(s\) \['category', 'esc10'\]"):
        esc50(meta.parents[1])


# ---------------------------------------------------------------- UrbanSound8K

_US8K_CLASSES = [(0, "air_conditioner"), (3, "dog_bark"), (6, "gun_shot")]


def _us8k(root: Path) -> Path:
    rows = []
    for fold in range(1, 11):
        for class_id, name in _US8K_CLASSES:
            fs_id = 1000 * fold + class_id
            slice_name = f"{fs_id}-{class_id}-0-{fold}.wav"
            rows.append([slice_name, fs_id, 0.0, 4.0, 1, fold, class_id, name])
            _touch(root / "audio" / f"fold{fold}" / slice_name)
    header = ["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"]
    _write_csv(root / "metadata" / "UrbanSound8K.csv", header, rows)
    return root


def test_urbansound8k_has_ten_rounds_with_the_next_fold_as_validation(tmp_path: Path) -> None:
    task = urbansound8k(_us8k(tmp_path))
    assert task.vocabulary == ["air_conditioner", "dog_bark", "gun_shot"]
    assert task.num_folds == 10
    assert len(task.clips) == 30
    clip = next(c for c in task.clips if c.path.name == "7003-3-0-7.wav")
    assert (clip.path, clip.labels, clip.fold) == (tmp_path / "audio" / "fold7" / "7003-3-0-7.wav", ("dog_bark",), 6)
    rounds = list(task.splits())
    assert len(rounds) == 10
    for i, split in enumerate(rounds):
        assert {c.fold for c in split.test} == {i}
        assert {c.fold for c in split.valid} == {(i + 1) % 10}
        assert len(split.train) == 24
    assert urbansound8k(tmp_path) == task


def test_urbansound8k_bad_input(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match=r"UrbanSound8K\.csv is missing"):
        urbansound8k(tmp_path)
    root = _us8k(tmp_path / "a")
    shutil.rmtree(root / "audio" / "fold10")
    with pytest.raises(TaskError, match=r"3 audio file\(s\) .* missing"):
        urbansound8k(root)
    meta = _us8k(tmp_path / "b") / "metadata" / "UrbanSound8K.csv"
    meta.write_text(meta.read_text().replace(",4.0,1,5,", ",4.0,1,five,"))
    with pytest.raises(TaskError, match=r"column 'fold' holds 'five'"):
        urbansound8k(meta.parents[1])


# ---------------------------------------------------------------- MUSAN

_MUSAN = {"music/fma": 4, "music/jamendo": 6, "speech/librivox": 5, "speech/us-gov": 5, "noise/free-sound": 7}


def _musan(root: Path) -> Path:
    for source, count in {**_MUSAN, "noise/sound-bible": 3}.items():
        for n in range(count):
            _touch(root / source / f"{source.replace('/', '-')}-{n:04d}.wav")
        (root / source / "ANNOTATIONS").write_text("annotations\n")
        (root / source / "LICENSE").write_text("licence\n")
    return root


def test_musan_splits_each_class_and_keeps_each_recording_in_one_split(tmp_path: Path) -> None:
    task = musan(_musan(tmp_path))
    assert task.vocabulary == ["music", "speech", "noise"]
    assert len(task.clips) == 30
    assert all(clip.path.suffix == ".wav" for clip in task.clips)
    assert len({clip.path for clip in task.clips}) == 30
    assert _by_name(task)["speech-us-gov-0003.wav"][0] == ("speech",)
    counts = Counter((clip.labels[0], clip.split) for clip in task.clips)
    for label in task.vocabulary:  # 10 files per class: 1 test, 1 valid, 8 train
        assert (counts[label, "train"], counts[label, "valid"], counts[label, "test"]) == (8, 1, 1)
    (split,) = task.splits()
    assert {c.path for c in split.train}.isdisjoint(c.path for c in split.valid + split.test)


def test_musan_split_depends_only_on_the_tree(tmp_path: Path) -> None:
    first, second = musan(_musan(tmp_path / "a")), musan(_musan(tmp_path / "b"))
    assert musan(tmp_path / "a") == first
    assert [(c.path.name, c.split) for c in first.clips] == [(c.path.name, c.split) for c in second.clips]


def test_musan_bad_input(tmp_path: Path) -> None:
    root = _musan(tmp_path)
    shutil.rmtree(root / "noise")
    with pytest.raises(TaskError, match=r"lacks the folder\(s\) \['noise'\]"):
        musan(root)
    _touch(root / "noise" / "free-sound" / "noise-free-sound-0000.wav")
    _touch(root / "noise" / "free-sound" / "noise-free-sound-0001.wav")
    with pytest.raises(TaskError, match=r"'noise' has 2 file\(s\)"):
        musan(root)


# ---------------------------------------------------------------- NSynth

_FAMILIES = {0: "bass", 1: "brass", 9: "synth_lead"}


def _nsynth(root: Path) -> Path:
    plan = {"train": [0, 1, 9], "valid": [0, 1], "test": [0, 1]}
    for split_index, (split, families) in enumerate(plan.items()):
        examples = {}
        for family in families:
            for k, pitch in enumerate((9, 60, 100)):
                instrument = 100 * family + 10 * split_index + k
                name = f"{_FAMILIES[family]}_synthetic_{instrument:03d}"
                note = f"{name}-{pitch:03d}-100"
                examples[note] = {
                    "note": 1000 * family + pitch,
                    "sample_rate": 16000,
                    "pitch": pitch,
                    "instrument_source": 1,
                    "instrument_family_str": _FAMILIES[family],
                    "instrument_str": name,
                    "note_str": note,
                    "instrument_family": family,
                    "velocity": 100,
                    "instrument_source_str": "synthetic",
                    "qualities": [0] * 10,
                    "instrument": instrument,
                    "qualities_str": [],
                }
                _touch(root / f"nsynth-{split}" / "audio" / f"{note}.wav")
        _write_json(root / f"nsynth-{split}" / "examples.json", examples)
    return root


def test_nsynth_instrument_uses_the_official_splits_and_training_families(tmp_path: Path) -> None:
    task = nsynth_instrument(_nsynth(tmp_path))
    assert task.vocabulary == ["bass", "brass", "synth_lead"]
    assert Counter(clip.split for clip in task.clips) == {"train": 9, "valid": 6, "test": 6}
    clip = next(c for c in task.clips if c.path.name == "brass_synthetic_111-060-100.wav")
    assert (clip.path.parent, clip.labels, clip.split) == (tmp_path / "nsynth-valid" / "audio", ("brass",), "valid")
    assert len(list(task.splits())) == 1
    assert nsynth_instrument(tmp_path) == task


def test_nsynth_pitch_orders_pitches_numerically(tmp_path: Path) -> None:
    task = nsynth_pitch(_nsynth(tmp_path))
    assert task.vocabulary == ["9", "60", "100"]
    assert _by_name(task)["bass_synthetic_002-100-100.wav"][:2] == (("100",), "train")


def test_nsynth_bad_input(tmp_path: Path) -> None:
    root = _nsynth(tmp_path)
    for note in ("bass_synthetic_020-009-100", "brass_synthetic_122-100-100"):
        (root / "nsynth-test" / "audio" / f"{note}.wav").unlink()
    with pytest.raises(TaskError, match=r"2 audio file\(s\) listed in .*nsynth-test.*bass_synthetic_020-009-100\.wav"):
        nsynth_instrument(root)
    valid = root / "nsynth-valid" / "examples.json"
    examples = json.loads(valid.read_text())
    examples["bass_synthetic_010-009-100"]["instrument_family_str"] = "kazoo"
    examples["bass_synthetic_010-009-100"]["instrument_family"] = 11
    _write_json(valid, examples)
    with pytest.raises(TaskError, match=r"nsynth-valid.*\['kazoo'\] that never occur in nsynth-train"):
        nsynth_instrument(root)
    del examples["bass_synthetic_010-009-100"]["pitch"]
    _write_json(valid, examples)
    with pytest.raises(TaskError, match=r"'bass_synthetic_010-009-100' lacks field\(s\) \['pitch'\]"):
        nsynth_pitch(root)
    shutil.rmtree(root / "nsynth-train")
    with pytest.raises(TaskError, match=r"nsynth-train.examples\.json is missing"):
        nsynth_instrument(root)


# ---------------------------------------------------------------- birdsong

_BIRD_CORPORA = {"ff1010bird": "ff1010bird_metadata.csv", "warblrb10k_public": "warblrb10k_public_metadata.csv"}


def _birdsong(root: Path, corpora: tuple[str, ...] = tuple(_BIRD_CORPORA)) -> Path:
    for corpus in corpora:
        rows = []
        for n in range(20):
            item = f"{n + 100}" if corpus == "ff1010bird" else f"{n:04x}-e0c1-4bcd"
            rows.append([item, n % 2])
            _touch(root / corpus / "wav" / f"{item}.wav")
        _write_csv(root / _BIRD_CORPORA[corpus], ["itemid", "hasbird"], rows)
    return root


def test_birdsong_split_is_stratified_by_corpus_and_label(tmp_path: Path) -> None:
    task = birdsong(_birdsong(tmp_path))
    assert task.vocabulary == ["no_bird", "bird"]
    assert len(task.clips) == 40
    assert _by_name(task)["101.wav"][0] == ("bird",)
    assert _by_name(task)["0002-e0c1-4bcd.wav"][0] == ("no_bird",)
    counts = Counter((clip.path.parts[-3], clip.labels[0], clip.split) for clip in task.clips)
    for corpus in _BIRD_CORPORA:
        for label in task.vocabulary:  # 10 per group: 1 test, 1 valid, 8 train
            assert [counts[corpus, label, split] for split in ("train", "valid", "test")] == [8, 1, 1]
    assert birdsong(tmp_path) == task
    assert len(list(task.splits())) == 1


def test_birdsong_reads_a_single_corpus(tmp_path: Path) -> None:
    task = birdsong(_birdsong(tmp_path, ("warblrb10k_public",)))
    assert len(task.clips) == 20
    assert {clip.path.parent for clip in task.clips} == {tmp_path / "warblrb10k_public" / "wav"}
    assert {(c.labels[0], c.split) for c in task.clips} == {
        (lab, s) for lab in task.vocabulary for s in ("train", "valid", "test")
    }


def test_birdsong_bad_input(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match=r"holds neither ff1010bird_metadata\.csv nor warblrb10k_public_metadata\.csv"):
        birdsong(tmp_path)
    root = _birdsong(tmp_path / "a", ("ff1010bird",))
    (root / "ff1010bird" / "wav" / "105.wav").unlink()
    with pytest.raises(TaskError, match=r"1 audio file\(s\) listed in .*ff1010bird_metadata\.csv are missing"):
        birdsong(root)
    meta = _birdsong(tmp_path / "b", ("ff1010bird",)) / "ff1010bird_metadata.csv"
    meta.write_text(meta.read_text().replace("105,1", "105,yes"))
    with pytest.raises(TaskError, match=r"'hasbird' holds \['yes'\]"):
        birdsong(meta.parent)


# ---------------------------------------------------------------- TUT Urban Acoustic Scenes 2018

_SCENES = ("airport", "bus", "park")


def _tut(root: Path, txt: bool = False) -> tuple[Path, dict[str, str]]:
    """Three scenes, 5 training and 2 evaluation locations of 2 segments each; returns file -> location.

    Identifiers (``<city>-<n>``) repeat across scenes, so the loader must keep an identifier on one side even when
    it covers several scenes.
    """
    meta, train, evaluate, location_of = [], [], [], {}
    for scene in _SCENES:
        for n in range(7):
            city = ("barcelona", "helsinki")[n % 2]
            identifier = f"{city}-{n}"
            for segment in range(2):
                filename = f"audio/{scene}-{identifier}-{segment}-a.wav"
                meta.append([filename, scene, identifier, "a"])
                (train if n < 5 else evaluate).append([filename, scene])
                location_of[filename.removeprefix("audio/")] = identifier
                _touch(root / filename)
    _write_csv(root / "meta.csv", ["filename", "scene_label", "identifier", "source_label"], meta, delimiter="\t")
    setup = root / "evaluation_setup"
    if txt:  # older releases: .txt lists without a header
        setup.mkdir(parents=True)
        (setup / "fold1_train.txt").write_text("".join(f"{f}\t{s}\n" for f, s in train))
        (setup / "fold1_evaluate.txt").write_text("".join(f"{f}\t{s}\n" for f, s in evaluate))
    else:
        _write_csv(setup / "fold1_train.csv", ["filename", "scene_label"], train, delimiter="\t")
        _write_csv(setup / "fold1_evaluate.csv", ["filename", "scene_label"], evaluate, delimiter="\t")
    return root, location_of


def test_tut_valid_is_carved_from_fold1_train_by_location(tmp_path: Path) -> None:
    root, location_of = _tut(tmp_path)
    task = tut_scenes_2018(root)
    assert task.vocabulary == ["airport", "bus", "park"]
    assert Counter(clip.split for clip in task.clips) == {"train": 24, "valid": 6, "test": 12}
    assert _by_name(task)["bus-helsinki-5-1-a.wav"] == (("bus",), "test", None)
    locations = {
        split: {location_of[c.path.name] for c in task.clips if c.split == split} for split in ("train", "valid")
    }
    assert locations["valid"] and not locations["train"] & locations["valid"]
    for split in ("train", "valid", "test"):
        assert {c.labels[0] for c in task.clips if c.split == split} == set(_SCENES)
    assert tut_scenes_2018(root) == task
    assert len(list(task.splits())) == 1


def test_tut_reads_the_headerless_txt_lists_alike(tmp_path: Path) -> None:
    csv_task = tut_scenes_2018(_tut(tmp_path / "csv")[0])
    txt_task = tut_scenes_2018(_tut(tmp_path / "txt", txt=True)[0])
    assert [(c.path.name, c.split) for c in csv_task.clips] == [(c.path.name, c.split) for c in txt_task.clips]


def test_tut_bad_input(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match=r"meta\.csv is missing"):
        tut_scenes_2018(tmp_path)
    root, _ = _tut(tmp_path / "a")
    (root / "evaluation_setup" / "fold1_evaluate.csv").unlink()
    with pytest.raises(TaskError, match=r"neither fold1_evaluate\.csv nor fold1_evaluate\.txt"):
        tut_scenes_2018(root)
    root, _ = _tut(tmp_path / "b")
    setup = root / "evaluation_setup" / "fold1_train.csv"
    setup.write_text(
        setup.read_text().replace("airport-barcelona-0-0-a.wav\tairport", "airport-barcelona-0-0-a.wav\tbus")
    )
    with pytest.raises(
        TaskError, match=r"labels audio/airport-barcelona-0-0-a\.wav 'bus' but .*meta\.csv says 'airport'"
    ):
        tut_scenes_2018(root)
    root, _ = _tut(tmp_path / "c")
    setup = root / "evaluation_setup" / "fold1_train.csv"
    setup.write_text(setup.read_text() + "audio/park-paris-9-0-a.wav\tpark\n")
    with pytest.raises(TaskError, match=r"lists audio/park-paris-9-0-a\.wav, which .*meta\.csv does not describe"):
        tut_scenes_2018(root)
    root, _ = _tut(tmp_path / "d")
    (root / "audio" / "park-barcelona-0-1-a.wav").unlink()
    with pytest.raises(TaskError, match=r"1 audio file\(s\) .* missing.*park-barcelona-0-1-a\.wav"):
        tut_scenes_2018(root)


# ---------------------------------------------------------------- HEAR task folders


def _hear(
    root: Path,
    *,
    split_mode: str = "trainvaltest",
    prediction_type: str = "multiclass",
    rates: tuple[int, ...] = (16000, 48000),
    splits: dict[str, dict[str, list[str]]] | None = None,
    **metadata: object,
) -> Path:
    """A scene task with 3 clips per split (one per label); in a multilabel task clip 0 also carries "dog"."""
    vocabulary = ["cat", "dog", "bird"]
    if splits is None:
        names = ["train", "valid", "test"] if split_mode == "trainvaltest" else [f"fold{i:02d}" for i in range(3)]
        extra = ["dog"] if prediction_type == "multilabel" else []
        splits = {
            name: {f"{name}-{n}.wav": [vocabulary[n]] + (extra if n == 0 else []) for n in range(3)} for name in names
        }
    fields = {
        "task_name": "mini_task",
        "version": "hear2021",
        "embedding_type": "scene",
        "prediction_type": prediction_type,
        "split_mode": split_mode,
        "sample_duration": 2.0,
        "evaluation": ["top1_acc"] if prediction_type == "multiclass" else ["mAP", "d_prime"],
        **({"nfolds": len(splits)} if split_mode != "trainvaltest" else {}),
        **metadata,
    }
    _write_json(root / "task_metadata.json", fields)
    _write_csv(root / "labelvocabulary.csv", ["idx", "label"], [[i, label] for i, label in enumerate(vocabulary)])
    for name, entries in splits.items():
        _write_json(root / f"{name}.json", entries)
        for rate in rates:
            for file in entries:
                _touch(root / str(rate) / name / file)
    return root


def test_hear_trainvaltest_multiclass_task(tmp_path: Path) -> None:
    task = load_hear_task(_hear(tmp_path))
    assert (task.name, task.vocabulary, task.multilabel, task.split_mode) == (
        "mini_task",
        ["cat", "dog", "bird"],
        False,
        "trainvaltest",
    )
    assert Counter(clip.split for clip in task.clips) == {"train": 3, "valid": 3, "test": 3}
    clip = next(c for c in task.clips if c.path.name == "valid-1.wav")
    assert (clip.path, clip.labels) == (tmp_path / "16000" / "valid" / "valid-1.wav", ("dog",))
    assert task.metadata["sample_rate"] == "16000"
    assert task.metadata["evaluation"] == "top1_acc"
    assert load_task(tmp_path) == task
    assert len(list(task.splits())) == 1


def test_hear_kfold_multilabel_task_without_16k_audio(tmp_path: Path) -> None:
    task = load_hear_task(
        _hear(tmp_path, split_mode="new_split_kfold", prediction_type="multilabel", rates=(22050, 44100))
    )
    assert task.multilabel and task.split_mode == "kfold" and task.num_folds == 3
    assert task.metadata["sample_rate"] == "44100"
    clip = next(c for c in task.clips if c.path.name == "fold01-0.wav")
    assert (clip.path.parent, clip.labels, clip.fold) == (tmp_path / "44100" / "fold01", ("cat", "dog"), 1)
    rounds = list(task.splits())
    assert len(rounds) == 3
    for i, split in enumerate(rounds):
        assert {c.fold for c in split.test} == {i} and {c.fold for c in split.valid} == {(i + 1) % 3}


def test_hear_kfold_without_nfolds_reads_the_fold_files_present(tmp_path: Path) -> None:
    with_nfolds = load_hear_task(_hear(tmp_path / "a", split_mode="presplit_kfold"))
    root = _hear(tmp_path / "b", split_mode="presplit_kfold")
    metadata = json.loads((root / "task_metadata.json").read_text())
    del metadata["nfolds"]
    _write_json(root / "task_metadata.json", metadata)
    without = load_hear_task(root)
    assert without.num_folds == with_nfolds.num_folds == 3
    assert [(c.path.name, c.fold) for c in without.clips] == [(c.path.name, c.fold) for c in with_nfolds.clips]


def test_hear_not_a_task_folder(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match=r"is not a HEAR task folder: it has no task_metadata\.json"):
        load_hear_task(tmp_path)
    with pytest.raises(TaskError, match=r"is not a task"):
        load_task(tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"embedding_type": "event"}, r"event \(timestamp\) task; event tasks are not supported yet"),
        ({"split_mode": "random"}, r"split_mode 'random'; expected one of"),
        ({"prediction_type": None}, r"prediction_type None"),
    ],
)
def test_hear_bad_metadata(tmp_path: Path, change: dict[str, object], message: str) -> None:
    with pytest.raises(TaskError, match=message):
        load_hear_task(_hear(tmp_path, **change))


def test_hear_bad_folder_contents(tmp_path: Path) -> None:
    root = _hear(tmp_path / "a")
    metadata = json.loads((root / "task_metadata.json").read_text())
    del metadata["split_mode"]
    _write_json(root / "task_metadata.json", metadata)
    with pytest.raises(TaskError, match=r"lacks key\(s\) \['split_mode'\]"):
        load_hear_task(root)
    splits = {"train": {"a.wav": ["cat"]}, "valid": {"b.wav": ["dog"]}, "test": {"c.wav": ["cow"]}}
    with pytest.raises(TaskError, match=r"test\.json labels 'c\.wav' \['cow'\], absent from labelvocabulary\.csv"):
        load_hear_task(_hear(tmp_path / "b", splits=splits))
    splits["test"] = {"c.wav": ["cat", "dog"]}
    with pytest.raises(TaskError, match=r"gives 'c\.wav' 2 label\(s\), expected exactly one"):
        load_hear_task(_hear(tmp_path / "c", splits=splits))
    root = _hear(tmp_path / "d")
    (root / "16000" / "test" / "test-2.wav").unlink()
    with pytest.raises(
        TaskError, match=r"1 audio file\(s\) listed in .*test\.json are missing.*16000.test.test-2\.wav"
    ):
        load_hear_task(root)
    root = _hear(tmp_path / "e")
    (root / "valid.json").unlink()
    with pytest.raises(TaskError, match=r"valid\.json is missing"):
        load_hear_task(root)
