"""Loaders for the speech corpora and plain manifests, run on miniature copies of each corpus's real layout.

Audio files are empty placeholders (the loaders list files and never decode them) except the Speech Commands
background noise, whose headers give the durations that silence clips are cut from.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from decar.evaluate.tasks import Task, TaskError, load_task
from decar.evaluate.tasks._common import hash_split
from decar.evaluate.tasks.iemocap import iemocap_4
from decar.evaluate.tasks.librispeech import librispeech100_speaker
from decar.evaluate.tasks.manifest import load_manifest
from decar.evaluate.tasks.speech_commands import (
    COMMANDS,
    V1_WORDS,
    V2_ONLY_WORDS,
    speech_commands_v1_12,
    speech_commands_v1_30,
    speech_commands_v2_12,
    speech_commands_v2_35,
)
from decar.evaluate.tasks.voxceleb import voxceleb1_iden
from decar.evaluate.tasks.voxforge import speaker_of, voxforge_lid

NOISE_SECONDS = 10.0


def touch(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def split_counts(task: Task) -> Counter[str | None]:
    return Counter(c.split for c in task.clips)


# --- Speech Commands -----------------------------------------------------------------------------------------


def make_speech_commands(root: Path, version: int) -> Path:
    """Five speakers per word: speaker 3 in validation_list.txt, speaker 4 in testing_list.txt, 0-2 train."""
    words = sorted(V1_WORDS | V2_ONLY_WORDS if version == 2 else V1_WORDS)
    valid, test = [], []
    for word in words:
        for speaker in range(5):
            name = f"{word}/{speaker:08x}_nohash_0.wav"
            touch(root / name)
            if speaker == 3:
                valid.append(name)
            elif speaker == 4:
                test.append(name)
    touch(root / "validation_list.txt", "\n".join(valid) + "\n")
    touch(root / "testing_list.txt", "\n".join(test) + "\n")
    touch(root / "README.md", "Speech Commands")
    noise = root / "_background_noise_"
    touch(noise / "README.md", "noise recordings")
    rng = np.random.default_rng(0)
    for name in ("pink_noise.wav", "white_noise.wav"):
        sf.write(noise / name, 0.01 * rng.standard_normal(int(NOISE_SECONDS * 16000)), 16000)
    return root


@pytest.fixture(scope="module")
def sc_v2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_speech_commands(tmp_path_factory.mktemp("sc_v2"), version=2)


@pytest.fixture(scope="module")
def sc_v1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_speech_commands(tmp_path_factory.mktemp("sc_v1"), version=1)


def test_speech_commands_v2_12_labels_and_splits(sc_v2: Path) -> None:
    task = speech_commands_v2_12(sc_v2)
    assert task.vocabulary == ["_silence_", "_unknown_", *COMMANDS]
    words = [c for c in task.clips if c.labels != ("_silence_",)]
    assert Counter(c.split for c in words) == {"train": 35 * 3, "valid": 35, "test": 35}
    by_path = {c.path: c for c in words}
    assert by_path[sc_v2 / "yes" / "00000000_nohash_0.wav"].labels == ("yes",)
    assert by_path[sc_v2 / "backward" / "00000000_nohash_0.wav"].labels == ("_unknown_",)
    assert by_path[sc_v2 / "go" / "00000003_nohash_0.wav"].split == "valid"
    assert by_path[sc_v2 / "go" / "00000004_nohash_0.wav"].split == "test"
    assert all(c.path.parent.name != "_background_noise_" for c in words)
    assert "_background_noise_" not in task.vocabulary
    split = next(task.splits())
    assert len(split.train) + len(split.valid) + len(split.test) == len(task.clips)


def test_speech_commands_silence_segments(sc_v2: Path) -> None:
    """Silence: 1 s noise segments, about one average command class per split, from disjoint parts of each file."""
    silence = [c for c in speech_commands_v2_12(sc_v2).clips if c.labels == ("_silence_",)]
    # Every command has 3 train, 1 valid and 1 test file in the fixture.
    assert Counter(c.split for c in silence) == {"train": 3, "valid": 1, "test": 1}
    portions = {"train": (0.0, 8.0), "valid": (8.0, 9.0), "test": (9.0, 10.0)}
    for clip in silence:
        assert clip.path.parent == sc_v2 / "_background_noise_"
        assert clip.duration_s == 1.0
        low, high = portions[clip.split]
        assert low <= clip.start_s and clip.start_s + clip.duration_s <= high + 1e-9
    train = sorted((c.path.name, c.start_s) for c in silence if c.split == "train")
    assert train == [("pink_noise.wav", 0.0), ("pink_noise.wav", 7.0), ("white_noise.wav", 0.0)]


def test_speech_commands_v2_35_and_v1(sc_v1: Path, sc_v2: Path) -> None:
    task = speech_commands_v2_35(sc_v2)
    assert task.vocabulary == sorted(V1_WORDS | V2_ONLY_WORDS)
    assert split_counts(task) == {"train": 105, "valid": 35, "test": 35}
    assert all(c.labels[0] == c.path.parent.name for c in task.clips)
    v1 = speech_commands_v1_30(sc_v1)
    assert v1.vocabulary == sorted(V1_WORDS) and len(v1.vocabulary) == 30
    assert split_counts(v1) == {"train": 90, "valid": 30, "test": 30}
    v1_12 = speech_commands_v1_12(sc_v1)
    assert Counter(c.labels[0] for c in v1_12.clips)["_unknown_"] == 20 * 5
    with pytest.raises(TaskError, match="looks like Speech Commands v1"):
        speech_commands_v2_35(sc_v1)
    with pytest.raises(TaskError, match="v2-only words"):
        speech_commands_v1_12(sc_v2)


def test_speech_commands_deterministic_and_dispatch(sc_v2: Path) -> None:
    first = load_task("speech_commands_v2_12:" + str(sc_v2))
    assert first.name == "speech_commands_v2_12"
    assert first == speech_commands_v2_12(sc_v2)


def test_speech_commands_bad_roots(tmp_path: Path) -> None:
    root = make_speech_commands(tmp_path / "sc", version=2)
    (root / "testing_list.txt").unlink()
    with pytest.raises(TaskError, match=r"testing_list\.txt is missing"):
        speech_commands_v2_35(root)
    touch(root / "testing_list.txt", "yes/ffffffff_nohash_9.wav\n")
    with pytest.raises(TaskError, match=r"1 file\(s\) named in the split lists are not on disk.*ffffffff"):
        speech_commands_v2_35(root)
    touch(root / "testing_list.txt", "")
    for noise in (root / "_background_noise_").glob("*.wav"):
        noise.unlink()
    with pytest.raises(TaskError, match="_background_noise_ has no wav files"):
        speech_commands_v2_12(root)
    touch(root / "mozart" / "a.wav")
    with pytest.raises(TaskError, match=r"not Speech Commands words: \['mozart'\]"):
        speech_commands_v2_35(root)
    with pytest.raises(TaskError, match=r"validation_list\.txt is missing"):
        speech_commands_v2_35(tmp_path)


def test_speech_commands_short_noise(tmp_path: Path) -> None:
    root = make_speech_commands(tmp_path / "sc", version=2)
    for noise in (root / "_background_noise_").glob("*.wav"):
        sf.write(noise, np.zeros(16000 * 5), 16000)
    with pytest.raises(TaskError, match="too short to cut 1 s silence clips for the valid split"):
        speech_commands_v2_12(root)


# --- VoxCeleb1 -------------------------------------------------------------------------------------------------


def make_voxceleb(root: Path) -> Path:
    """Three speakers, two videos each: video A utterances train, video B one valid and one test."""
    lines = []
    for speaker in ("id10001", "id10002", "id10003"):
        for video, codes in (("1zcIwhmdeo4", "11"), ("7gWzIy6yIIk", "23")):
            for n, code in enumerate(codes, start=1):
                rel = f"{speaker}/{video}/{n:05d}.wav"
                touch(root / "wav" / rel)
                lines.append(f"{code} {rel}")
    touch(root / "iden_split.txt", "\n".join(lines) + "\n")
    return root


def test_voxceleb_split_file(tmp_path: Path) -> None:
    root = make_voxceleb(tmp_path)
    task = voxceleb1_iden(root)
    assert task.vocabulary == ["id10001", "id10002", "id10003"]
    assert split_counts(task) == {"train": 6, "valid": 3, "test": 3}
    by_path = {c.path: c for c in task.clips}
    clip = by_path[root / "wav" / "id10002" / "7gWzIy6yIIk" / "00002.wav"]
    assert (clip.labels, clip.split) == (("id10002",), "test")
    assert task == voxceleb1_iden(root)
    assert len(list(task.splits())) == 1


def test_voxceleb_errors(tmp_path: Path) -> None:
    root = make_voxceleb(tmp_path)
    for rel in ("id10001/1zcIwhmdeo4/00001.wav", "id10003/7gWzIy6yIIk/00002.wav"):
        (root / "wav" / rel).unlink()
    with pytest.raises(TaskError, match=r"2 file\(s\) listed in .*iden_split.txt are missing.*id10001/1zcIwhmdeo4"):
        voxceleb1_iden(root)
    touch(root / "iden_split.txt", "1 id10001/1zcIwhmdeo4/00002.wav\n4 id10001/1zcIwhmdeo4/00002.wav\n")
    with pytest.raises(TaskError, match="line 2: expected"):
        voxceleb1_iden(root)
    (root / "iden_split.txt").unlink()
    with pytest.raises(TaskError, match=r"iden_split\.txt is missing"):
        voxceleb1_iden(root)
    touch(tmp_path / "other" / "iden_split.txt", "1 id10001/x/00001.wav\n")
    with pytest.raises(TaskError, match="not a VoxCeleb1 root"):
        voxceleb1_iden(tmp_path / "other")


# --- IEMOCAP ---------------------------------------------------------------------------------------------------

IEMOCAP_EMOTIONS = ("neu", "ang", "sad", "hap", "exc", "fru")


def make_iemocap(root: Path) -> Path:
    """Five sessions, one dialog each, one utterance per emotion in IEMOCAP_EMOTIONS."""
    for session in range(1, 6):
        dialog = f"Ses0{session}F_impro01"
        lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
        for n, emotion in enumerate(IEMOCAP_EMOTIONS):
            utterance = f"{dialog}_F{n:03d}"
            lines += [
                f"[{6.29 + 3 * n:.4f} - {8.23 + 3 * n:.4f}]\t{utterance}\t{emotion}\t[2.5000, 2.5000, 2.5000]",
                "C-E2:\tNeutral;\t()",
                "A-E3:\tval 3; act 2; dom  2;\t()",
                "",
            ]
            touch(root / f"Session{session}" / "sentences" / "wav" / dialog / f"{utterance}.wav")
        evaluation = root / f"Session{session}" / "dialog" / "EmoEvaluation"
        touch(evaluation / f"{dialog}.txt", "\n".join(lines))
        touch(evaluation / "Categorical" / f"{dialog}_e1_cat.txt", f"{dialog}_F000 :Neutral state; ()\n")
    return root


def test_iemocap_folds_and_labels(tmp_path: Path) -> None:
    root = make_iemocap(tmp_path)
    task = iemocap_4(root)
    assert task.vocabulary == ["ang", "hap", "neu", "sad"]
    assert task.split_mode == "kfold" and task.num_folds == 5
    assert len(task.clips) == 5 * 5
    assert task.metadata["dropped_other_emotions"] == "5"
    for clip in task.clips:
        session = int(clip.path.relative_to(root).parts[0].removeprefix("Session"))
        assert clip.fold == session - 1 and clip.split is None
    labels = {c.path.stem: c.labels for c in task.clips}
    assert labels["Ses02F_impro01_F004"] == ("hap",)  # exc merged into hap
    assert labels["Ses02F_impro01_F001"] == ("ang",)
    assert "Ses02F_impro01_F005" not in labels  # fru dropped
    rounds = list(task.splits())
    assert [r.name for r in rounds] == [f"fold{i}" for i in range(5)]
    for i, split in enumerate(rounds):
        assert {c.fold for c in split.test} == {i}
        assert {c.fold for c in split.valid} == {(i + 1) % 5}
        assert {c.fold for c in split.train} == set(range(5)) - {i, (i + 1) % 5}
    assert task == iemocap_4(root)


def test_iemocap_errors(tmp_path: Path) -> None:
    root = make_iemocap(tmp_path / "iemocap")
    (root / "Session3" / "sentences" / "wav" / "Ses03F_impro01" / "Ses03F_impro01_F002.wav").unlink()
    with pytest.raises(TaskError, match=r"1 labelled utterance\(s\) have no wav file.*Ses03F_impro01_F002.wav"):
        iemocap_4(root)
    with pytest.raises(TaskError, match="not an IEMOCAP root"):
        iemocap_4(tmp_path)
    evaluation = root / "Session1" / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt"
    touch(evaluation, "[6.29 8.23] Ses01F_impro01_F000 neu\n")
    with pytest.raises(TaskError, match=r"Ses01F_impro01.txt line 1: expected"):
        iemocap_4(root)


# --- LibriSpeech -----------------------------------------------------------------------------------------------


def make_librispeech(root: Path) -> Path:
    """Speaker 19: 10 utterances over two chapters; 26: 3 utterances; 27: 2 (dropped)."""
    subset = root / "LibriSpeech" / "train-clean-100"
    for speaker, chapters in (("19", {"198": 6, "227": 4}), ("26", {"495": 3}), ("27", {"123349": 2})):
        for chapter, count in chapters.items():
            folder = subset / speaker / chapter
            for n in range(count):
                touch(folder / f"{speaker}-{chapter}-{n:04d}.flac")
            touch(folder / f"{speaker}-{chapter}.trans.txt", "TRANSCRIPT\n")
    touch(root / "LibriSpeech" / "SPEAKERS.TXT", "; speakers\n")
    return root / "LibriSpeech"


def test_librispeech_per_speaker_split(tmp_path: Path) -> None:
    root = make_librispeech(tmp_path)
    task = librispeech100_speaker(root)
    assert task.vocabulary == ["19", "26"]
    assert task.metadata["dropped_speakers"] == "1"
    per_speaker = {s: Counter(c.split for c in task.clips if c.labels == (s,)) for s in task.vocabulary}
    assert per_speaker == {"19": {"train": 8, "valid": 1, "test": 1}, "26": {"train": 1, "valid": 1, "test": 1}}
    assert all(c.path.name.startswith(c.labels[0] + "-") for c in task.clips)
    assert len({c.path for c in task.clips}) == len(task.clips)
    assert librispeech100_speaker(root / "train-clean-100").clips == task.clips
    assert task == librispeech100_speaker(root)
    assert len(list(task.splits())) == 1


def test_hash_split_rule() -> None:
    for n in range(12):
        keys = [f"utt{i}" for i in range(n)]
        split = hash_split(keys)
        assert split == hash_split(reversed(keys))
        counts = Counter(split.values())
        if n >= 3:
            assert counts["valid"] == counts["test"] == 1 and counts["train"] == n - 2
        else:
            assert counts == Counter({"train": n})
    assert Counter(hash_split(str(i) for i in range(100)).values()) == {"train": 80, "valid": 10, "test": 10}


def test_librispeech_errors(tmp_path: Path) -> None:
    root = make_librispeech(tmp_path)
    with pytest.raises(TaskError, match="neither the LibriSpeech folder"):
        librispeech100_speaker(tmp_path)
    touch(root / "train-clean-100" / "19" / "198" / "20-198-0001.flac")
    with pytest.raises(TaskError, match=r"20-198-0001.flac does not follow"):
        librispeech100_speaker(root)


# --- VoxForge --------------------------------------------------------------------------------------------------


def make_voxforge(root: Path, languages: tuple[str, ...] = ("de", "en", "fr")) -> Path:
    """Per language: six named speakers with two sessions each and two anonymous sessions."""
    for language in languages:
        sessions = [f"{language}spk{i}-2008010{i}-{tag}{i}" for i in range(6) for tag in "ab"]
        sessions += ["anonymous-20080504-qvg", "anonymous-20080505-zzz"]
        for session in sessions:
            folder = root / language / session
            audio = "flac" if session.endswith("b5") else "wav"
            for n in range(2):
                touch(folder / audio / f"{language}-{n:04d}.{audio}")
            touch(folder / "etc" / "PROMPTS", "prompts\n")
    return root


def test_voxforge_splits_by_speaker(tmp_path: Path) -> None:
    root = make_voxforge(tmp_path)
    task = voxforge_lid(root)
    assert task.vocabulary == ["de", "en", "fr"]
    assert len(task.clips) == 3 * 14 * 2
    for language in task.vocabulary:
        assert {c.split for c in task.clips if c.labels == (language,)} == {"train", "valid", "test"}
    splits_of_speaker: dict[tuple[str, str], set[str | None]] = {}
    for clip in task.clips:
        language, session = clip.path.relative_to(root).parts[:2]
        assert clip.labels == (language,)
        splits_of_speaker.setdefault((language, speaker_of(session)), set()).add(clip.split)
    assert all(len(s) == 1 for s in splits_of_speaker.values())
    assert len(splits_of_speaker) == 3 * 8  # both anonymous sessions are separate speakers
    assert any(c.path.suffix == ".flac" for c in task.clips)
    assert task == voxforge_lid(root)
    assert len(list(task.splits())) == 1


def test_voxforge_speaker_of() -> None:
    assert speaker_of("ralfherzog-20071220-de34") == "ralfherzog"
    assert speaker_of("jean-luc-20100101-abc") == "jean-luc"
    assert speaker_of("anonymous-20080504-qvg") == "anonymous-20080504-qvg"
    assert speaker_of("session_7") == "session_7"


def test_voxforge_errors(tmp_path: Path) -> None:
    root = make_voxforge(tmp_path / "one", languages=("en",))
    with pytest.raises(TaskError, match=r"1 language folder\(s\)"):
        voxforge_lid(root)
    root = make_voxforge(tmp_path / "stray")
    touch(root / "en" / "loose.wav")
    with pytest.raises(TaskError, match=r"loose\.wav is not inside a session folder"):
        voxforge_lid(root)
    root = make_voxforge(tmp_path / "small")
    touch(root / "it" / "rossi-20080101-x" / "wav" / "it-0001.wav")
    task = voxforge_lid(root)
    assert task.metadata["train_only_languages"] == "it"
    assert {c.split for c in task.clips if c.labels == ("it",)} == {"train"}


# --- Manifests -------------------------------------------------------------------------------------------------


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    return touch(path, "\n".join([header, *rows]) + "\n")


@pytest.fixture()
def audio_dir(tmp_path: Path) -> Path:
    for name in ("a.wav", "b.wav", "c.wav", "d.wav", "e.wav", "f.wav"):
        touch(tmp_path / "audio" / name)
    return tmp_path


def test_manifest_csv_trainvaltest(audio_dir: Path) -> None:
    rows = [
        "audio/a.wav,dog,train,,",
        "audio/b.wav,cat,train,0.5,1.5",
        "audio/c.wav,dog,valid,,",
        "audio/d.wav,cat,test,,",
    ]
    rows.append(f"{audio_dir / 'audio' / 'e.wav'},cat,TRAIN,,")
    path = write_csv(audio_dir / "pets.csv", "path,label,split,start_s,duration_s", rows)
    task = load_manifest(path)
    assert (task.name, task.vocabulary, task.multilabel, task.split_mode) == (
        "pets",
        ["cat", "dog"],
        False,
        "trainvaltest",
    )
    assert split_counts(task) == {"train": 3, "valid": 1, "test": 1}
    clip = task.clips[1]
    assert (clip.path, clip.labels, clip.start_s, clip.duration_s) == (
        audio_dir / "audio" / "b.wav",
        ("cat",),
        0.5,
        1.5,
    )
    assert task.clips[4].split == "train"
    assert load_task(path) == task
    assert len(next(task.splits()).train) == 3


def test_manifest_multilabel_and_kfold(audio_dir: Path) -> None:
    rows = ["audio/a.wav,dog;bark,0", "audio/b.wav,cat,1", "audio/c.wav,dog,2", "audio/d.wav,cat;meow,fold3"]
    task = load_manifest(write_csv(audio_dir / "sounds.csv", "path,label,fold", rows))
    assert task.multilabel and task.split_mode == "kfold" and task.num_folds == 4
    assert task.vocabulary == ["bark", "cat", "dog", "meow"]
    assert task.clips[0].labels == ("dog", "bark") and task.clips[3].fold == 3
    rounds = list(task.splits())
    assert [(r.test[0].fold, r.valid[0].fold) for r in rounds] == [(0, 1), (1, 2), (2, 3), (3, 0)]

    lines = [
        {"path": "audio/a.wav", "labels": ["x", "y"], "fold": 0},
        {"path": "audio/b.wav", "labels": "y", "fold": 1},
        {"path": "audio/c.wav", "labels": ["x"], "fold": 2, "start_s": 1, "speaker": "ignored"},
    ]
    path = touch(audio_dir / "tags.jsonl", "\n".join(json.dumps(line) for line in lines) + "\n\n")
    task = load_task(path)
    assert (task.name, task.multilabel, task.vocabulary) == ("tags", True, ["x", "y"])
    assert [c.labels for c in task.clips] == [("x", "y"), ("y",), ("x",)]
    assert task.clips[2].start_s == 1.0


@pytest.mark.parametrize(
    ("header", "rows", "message"),
    [
        ("file,label,split", ["audio/a.wav,dog,train"], "needs a 'path' and a 'label'"),
        ("path,split", ["audio/a.wav,train"], "needs a 'path' and a 'label'"),
        ("path,label,split", [], "has no rows"),
        ("path,label,split", ["audio/a.wav,dog,train", "audio/b.wav,dog,"], "line 3: the row has neither"),
        (
            "path,label,split,fold",
            ["audio/a.wav,dog,train,", "audio/b.wav,dog,,1"],
            r"mixes split \(line 2\) and fold \(line 3\)",
        ),
        (
            "path,label,split",
            ["audio/a.wav,dog,train", "audio/zz.wav,dog,test"],
            r"line 3: audio file .*zz.wav does not exist",
        ),
        (
            "path,label,split",
            ["audio/a.wav,dog,train", "audio/b.wav,cow,test"],
            "line 3: test label 'cow' never appears in train",
        ),
        ("path,label,split", ["audio/a.wav,dog,dev"], "line 2: split 'dev' is not one of"),
        ("path,label,split", ["audio/a.wav,,train"], "line 2: no 'label' value"),
        ("path,label,split", ["audio/a.wav,dog,train", "audio/a.wav,cat,train"], "line 3: repeats the clip of line 2"),
        ("path,label,fold", ["audio/a.wav,dog,first"], "fold 'first' is not a fold number"),
        ("path,label,split,duration_s", ["audio/a.wav,dog,train,0"], "duration_s '0' is not a positive number"),
        ("path,label,split", ["audio/a.wav,dog,train,extra"], "line 2: more fields than the header"),
    ],
)
def test_manifest_csv_errors(audio_dir: Path, header: str, rows: list[str], message: str) -> None:
    with pytest.raises(TaskError, match=message):
        load_manifest(write_csv(audio_dir / "bad.csv", header, rows))


def test_manifest_file_errors(audio_dir: Path) -> None:
    with pytest.raises(TaskError, match="has no rows"):
        load_manifest(touch(audio_dir / "empty.csv"))
    with pytest.raises(TaskError, match="line 2: not valid JSON"):
        load_manifest(
            touch(audio_dir / "broken.jsonl", '{"path": "audio/a.wav", "label": "x", "split": "train"}\n{oops\n')
        )
    with pytest.raises(TaskError, match="line 1: labels must be strings"):
        load_manifest(touch(audio_dir / "typed.jsonl", '{"path": "audio/a.wav", "labels": [1.5], "fold": 0}\n'))


@pytest.mark.parametrize("alias", ["absolute", "dotdot", "symlink", "copy"])
def test_a_train_clip_listed_again_for_test_under_another_name_is_refused(tmp_path: Path, alias: str) -> None:
    audio = tmp_path / "audio"
    for index, name in enumerate(["a", "b", "c", "d"]):
        touch(audio / f"{name}.wav", f"distinct audio {index}")
    (audio / "sub").mkdir()
    test_path = {
        "absolute": str(audio / "a.wav"),
        "dotdot": "audio/sub/../a.wav",
        "symlink": "audio/link.wav",
        "copy": "audio/copy.wav",
    }[alias]
    (audio / "link.wav").symlink_to(audio / "a.wav")
    (audio / "copy.wav").write_bytes((audio / "a.wav").read_bytes())
    rows = ["path,label,split", "audio/a.wav,x,train", "audio/b.wav,y,train", "audio/c.wav,x,valid"]
    rows += ["audio/d.wav,y,test", f"{test_path},x,test"]
    manifest = touch(tmp_path / "task.csv", "\n".join(rows) + "\n")
    same = r"\(test\) is the same audio as .*a\.wav \(train\)|line 6: repeats the clip of line 2"
    with pytest.raises(TaskError, match=same):
        list(load_manifest(manifest).splits())


def test_manifest_fields_may_hold_newlines_and_unicode_separators(tmp_path: Path) -> None:
    for name in ("a", "b", "c", "d"):
        touch(tmp_path / f"{name}.wav", name)
    label = "dog\u2028barking"  # a line separator for str.splitlines, plain text for csv
    rows = [f'a.wav,"{label}",train', 'b.wav,"cat\nmeow",train', f'c.wav,"{label}",valid', f'd.wav,"{label}",test']
    manifest = touch(tmp_path / "task.csv", "path,label,split\n" + "\n".join(rows) + "\n")
    task = load_manifest(manifest)
    assert sorted(task.vocabulary) == sorted(["cat\nmeow", label]) and len(task.clips) == 4
