"""`decar demo`: generated audio → pretraining for a budget → the fresh model against the baselines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from decar.cli import app

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


def test_demo_runs_the_chain_and_a_rerun_reuses_it(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["demo", "--out", str(tmp_path), "--minutes", "0.05", "--seeds", "1", "--generated"]
    result = runner.invoke(app, args, env={"COLUMNS": "40"})
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "run_generated" / "summary.json").read_text())
    assert summary["method"] == "dcv2" and summary["stopped_by_time_budget"]
    bench = json.loads((tmp_path / "results_generated" / "bench.json").read_text())
    rows = bench["protocols"]["linear"]
    fresh = str(tmp_path / "run_generated" / "checkpoint.pt")
    assert [row["spec"] for row in rows] == ["pretrained", fresh, f"random:{fresh}", "logmel-stats"]
    assert set(rows[0]["tasks"]) == {"sound_family", "pitch_direction"}
    assert "report:" in result.output and (tmp_path / "results_generated" / "bench.png").is_file()
    assert "generated audio" in " ".join(result.output.split())
    checkpoint = (tmp_path / "run_generated" / "checkpoint.pt").stat().st_mtime_ns
    assert runner.invoke(app, args).exit_code == 0
    assert (tmp_path / "run_generated" / "checkpoint.pt").stat().st_mtime_ns == checkpoint  # the run is reused


def test_without_its_packages_the_demo_says_why_and_uses_generated_audio(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from decar import demo
    from decar.corpora import bench
    from decar.corpora.debian import PackageUnavailableError

    def unavailable(*_args: object, **_kwargs: object) -> None:
        raise PackageUnavailableError("Debian package 'csound-soundfont' is unavailable: no network")

    monkeypatch.setattr(bench, "build_bench", unavailable)
    audio = demo.demo_audio(tmp_path)
    assert audio.kind == "generated" and (audio.bench / "tasks" / "sound_family").is_dir()
    assert "csound-soundfont' is unavailable: no network" in caplog.text
