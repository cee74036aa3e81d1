"""Every kind of broken or unusual input through every command (`decar.testing.write_malformed_corpus`).

Each bad file must be named with its reason and skipped, each good one used, the exit status must say whether
anything failed, memory must stay bounded on the one-hour file, and no traceback may reach the user. What each
command did with each input is printed as a table at the end of the test run (tests/conftest.py).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

import decar
from conftest import MALFORMED_OUTCOMES
from decar.audio import AudioError
from decar.testing import MALFORMED_GOOD, write_malformed_corpus, write_random_checkpoint

PEAK_RSS_LIMIT_MB = 1500
"""Peak memory of `decar embed` on the corpus with its one-hour file: torch and the model (about 400 MB), the
hour decoded to float32 (230 MB) and its copies while resampling; a window-at-a-time embedding keeps the rest
flat (an unbounded path once reached 2.3 GB on one second of audio)."""
REASONS = {
    "empty": "empty",
    "corrupt": "cannot decode",
    "nan": "non-finite",
    "zero_frames": "no audio frames",
    "truncated_header": "cannot decode",
    "truncated_data": "truncated",
    "inf": "non-finite",
    "ten_samples": "too short",
    "random_bytes": "cannot decode",
    "folder_named_wav": "a folder, not an audio file",
    "broken_symlink": "broken symbolic link",
}
"""Each bad input and a word of the reason every command must give for it."""
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    made = write_malformed_corpus(tmp_path_factory.mktemp("malformed") / "corpus")
    assert set(made) == set(REASONS) | set(MALFORMED_GOOD)
    return made


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_checkpoint(tmp_path_factory.mktemp("model") / "checkpoint.pt")


def _named(corpus: dict[str, Path]) -> dict[str, str]:
    """Input name by the path string commands report."""
    return {str(path): name for name, path in corpus.items()}


def _check_and_record(command: str, corpus: dict[str, Path], outcomes: dict[str, str]) -> None:
    """Every input has an outcome: "ok" for the good ones, the expected reason for the bad ones."""
    assert set(outcomes) == set(corpus), f"{command}: no outcome for {set(corpus) - set(outcomes)}"
    for name, outcome in outcomes.items():
        MALFORMED_OUTCOMES.append((name, command, outcome))
        if name in MALFORMED_GOOD:
            assert outcome == "ok", f"{command} {name}: {outcome}"
        else:
            assert REASONS[name] in outcome, f"{command} {name}: {outcome!r} does not say {REASONS[name]!r}"


def _run(args: list[str]) -> tuple[subprocess.CompletedProcess[str], float]:
    """`decar ARGS` in a child process: its result and its peak resident memory in MB."""
    probe = (
        "import atexit, resource, sys; "
        "atexit.register(lambda: print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "
        "file=sys.stderr)); "
        f"sys.argv = ['decar', *{args!r}]; "
        "from decar.cli import app; app()"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=900)
    peak = [line for line in done.stderr.splitlines() if line.startswith("PEAK_RSS_KB")]
    return done, int(peak[-1].split()[1]) / 1024 if peak else float("nan")


def test_decar_embed(corpus: dict[str, Path], checkpoint: Path, tmp_path: Path) -> None:
    folder = corpus["empty"].parent
    done, peak_mb = _run(["embed", str(folder), "-o", str(tmp_path / "out"), "--model", str(checkpoint)])
    assert done.returncode == 1, done.stderr[-2000:]  # 1: some files failed, the others were embedded
    assert "Traceback" not in done.stderr + done.stdout
    with (tmp_path / "out" / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    named = _named(corpus)
    outcomes = {named[row["input"]]: "ok" if row["status"] == "ok" else row["error"] for row in rows}
    _check_and_record("decar embed", corpus, outcomes)
    assert peak_mb < PEAK_RSS_LIMIT_MB, f"peak memory {peak_mb:.0f} MB with a one-hour file"
    MALFORMED_OUTCOMES.append(("one_hour", "decar embed", f"peak memory {peak_mb:.0f} MB < {PEAK_RSS_LIMIT_MB}"))


def test_decar_pretrain(corpus: dict[str, Path], tmp_path: Path) -> None:
    folder = corpus["empty"].parent
    config = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
    args = ["pretrain", "--config", str(config), "--data", str(folder), "--out", str(tmp_path / "run")]
    args += ["optim.epochs=1", "optim.steps_per_epoch=2", "num_threads=1", "objective.num_clusters=4"]
    done, _ = _run(args)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr + done.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    skipped = {Path(path).name: reason for path, reason in summary["skipped"].items()}
    outcomes = {name: skipped.get(path.name, "ok") for name, path in corpus.items()}
    assert summary["files_used"] == len(MALFORMED_GOOD)
    _check_and_record("decar pretrain", corpus, outcomes)


def test_decar_evaluate(corpus: dict[str, Path], tmp_path: Path) -> None:
    """A task lists every input, good and bad, in every split; the bad ones are reported and left out."""
    manifest = tmp_path / "task.csv"
    splits = ("train", "train", "train", "train", "valid", "valid", "test", "test")
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split"])
        for i, name in enumerate(MALFORMED_GOOD):
            writer.writerow([corpus[name], "ab"[i % 2], splits[i]])
        for i, name in enumerate(REASONS):
            writer.writerow([corpus[name], "ab"[i % 2], ("train", "valid", "test")[i % 3]])
    done, _ = _run(["evaluate", "-m", "logmel-stats", "-t", str(manifest), "-o", str(tmp_path / "out"), "--seeds", "1"])
    assert done.returncode == 1, done.stderr[-2000:]  # 1: the run finished, some clips were left out
    assert "Traceback" not in done.stderr + done.stdout
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    failures = {failure["path"]: failure["reason"] for failure in results["tasks"]["task"]["failures"]}
    outcomes = {name: failures.get(str(path), "ok") for name, path in corpus.items()}
    _check_and_record("decar evaluate", corpus, outcomes)


def test_load_embed(corpus: dict[str, Path], checkpoint: Path) -> None:
    """The Python API raises AudioError (a ValueError) naming the file, and nothing else, for each bad input.
    The one-hour file goes through `decar embed` above (the same `embed` call), not again here."""
    model = decar.load(checkpoint)
    outcomes = {"one_hour": "ok"}
    for name, path in corpus.items():
        if name == "one_hour":
            continue
        try:
            vector = model.embed(path)
        except AudioError as err:
            assert str(path) in str(err)
            outcomes[name] = err.reason
        else:
            outcomes[name] = "ok" if vector.shape == (1, model.embed_dim) else f"shape {vector.shape}"
    _check_and_record("decar.load().embed", corpus, outcomes)
