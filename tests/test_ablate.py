"""`decar ablate` on tiny stand-ins: equal budgets, resumable runs, a ranked table and chart; config `base:`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from decar.ablate import bench_corpus, plan_runs, run_ablations
from decar.cli import app
from decar.config import ConfigError, load_config
from decar.testing import write_hear_task, write_synthetic_corpus

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()


def _flat(data: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in data.items():
        flat.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict) and value else {prefix + key: value})
    return flat


def test_every_ablation_config_changes_one_thing_of_the_common_setting() -> None:
    """A dcv2_* file differs from dcv2.yaml in one section only; a method file keeps the encoder, the crops and
    the batch, so that only the method differs in what the budget buys."""
    common = _flat(load_config(CONFIGS / "ablations" / "dcv2.yaml").to_dict())
    files = sorted((CONFIGS / "ablations").glob("*.yaml"))
    assert len(files) >= 10
    for path in files:
        config = _flat(load_config(path).to_dict())
        changed = {key for key in common.keys() | config.keys() if common.get(key) != config.get(key)}
        if path.stem.startswith("dcv2_"):
            assert len({key.split(".")[0] for key in changed}) == 1, f"{path.name} changes {sorted(changed)}"
        else:
            kept = ("model.name", "model.kwargs.d", "data.crop_seconds", "optim.batch_size", "optim.steps_per_epoch")
            assert not changed & set(kept), f"{path.name} changes {sorted(changed & set(kept))}"


def test_a_base_is_read_first_and_overlaid_section_by_section(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("model: {name: audiontt2020, kwargs: {d: 64}}\noptim: {lr: 0.3, epochs: 2}\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\noptim: {lr: 0.1}\n")
    (tmp_path / "swap.yaml").write_text("base: base.yaml\nmodel: {name: efficientnet_b0, kwargs: {}}\n")
    child = load_config(tmp_path / "child.yaml")
    assert (child.optim.lr, child.optim.epochs, child.model.kwargs) == (0.1, 2, {"d": 64})
    assert load_config(tmp_path / "swap.yaml").model.kwargs == {}  # an empty mapping clears the base's
    (tmp_path / "loop_a.yaml").write_text("base: loop_b.yaml\n")
    (tmp_path / "loop_b.yaml").write_text("base: loop_a.yaml\n")
    with pytest.raises(ConfigError, match="base chain loops"):
        load_config(tmp_path / "loop_a.yaml")
    (tmp_path / "orphan.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(ConfigError, match=r"not found: .*missing\.yaml"):
        load_config(tmp_path / "orphan.yaml")


def test_runs_are_planned_per_config_and_seed_and_names_must_differ(tmp_path: Path) -> None:
    a, b = CONFIGS / "tiny.yaml", CONFIGS / "tiny_v2.yaml"
    runs = plan_runs([a, b], 2, tmp_path)
    assert [(r.name, r.seed) for r in runs] == [("tiny", 0), ("tiny", 1), ("tiny_v2", 0), ("tiny_v2", 1)]
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "tiny.yaml").write_text("base: ../../configs/tiny.yaml\n")
    with pytest.raises(ValueError, match="share a file name"):
        plan_runs([a, tmp_path / "x" / "tiny.yaml"], 1, tmp_path)
    with pytest.raises(FileNotFoundError, match="no corpus"):
        bench_corpus(tmp_path)


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bench stand-in: a generated corpus/ and one small HEAR task."""
    root = tmp_path_factory.mktemp("bench")
    write_synthetic_corpus(root / "corpus", files_per_kind=4, seconds=1.0)
    write_hear_task(root / "tasks" / "sounds", "sounds", ("tone", "noise_high", "clicks"), seed=0)
    return root


@pytest.mark.slow
def test_ablate_trains_each_config_for_the_budget_and_ranks_them(bench: Path, tmp_path: Path) -> None:
    configs = [CONFIGS / "tiny.yaml", CONFIGS / "tiny_v2.yaml"]
    settings = ["optim.epochs=50", "optim.steps_per_epoch=3", "num_threads=1", "checkpoint_minutes=0.01"]
    text = run_ablations(configs, bench, 0.1, tmp_path, seeds=2, overrides=settings, probe_seeds=1)
    for run in plan_runs(configs, 2, tmp_path):
        summary = json.loads((run.folder / "summary.json").read_text())
        assert summary["stopped_by_time_budget"], run  # the budget, not the epochs, ended every run
        assert yaml.safe_load((run.folder / "config.yaml").read_text())["seed"] == run.seed
    report = json.loads((tmp_path / "ablations.json").read_text())
    assert set(report["configs"]) == {"tiny", "tiny_v2"} and report["tasks"] == ["sounds"]
    for row in report["configs"].values():
        assert row["seeds"] == [0, 1] and row["scores"]["average"]["std_over_seeds"] is not None
        assert [run["global_step"] > 0 and run["clips_per_s"] > 0 for run in row["training"]] == [True, True]
    assert "| reference |" in text and (tmp_path / "ablations.png").stat().st_size > 0
    checks = [report["reference"][key] for key in ("ami_gain", "ami_cut")] + [
        r[key] for c in report["configs"].values() for r in c["training"] for key in ("ami_gain", "ami_cut")
    ]
    assert all(isinstance(value, float) and -1 <= value <= 1 for value in checks)
    assert "gain AMI" in text and "cut AMI" in text
    for name, row in report["configs"].items():  # two seeds: every run has its own row and average
        for run in row["training"]:
            assert 0 <= run["average"]["mean"] <= 1 and f"| {name} | {run['seed']} | {run['global_step']} |" in text
    saved = json.loads((tmp_path / "shortcuts.json").read_text())
    assert {entry["pad_mode"] for entry in saved.values()} == {"silence", "tile"}  # tiny pads, tiny_v2 tiles
    first = {
        str(p): p.stat().st_mtime_ns for p in [*tmp_path.glob("runs/*/*/checkpoint.pt"), tmp_path / "shortcuts.json"]
    }
    run_ablations(configs, bench, 0.1, tmp_path, seeds=2, overrides=settings, probe_seeds=1)
    again = {
        str(p): p.stat().st_mtime_ns for p in [*tmp_path.glob("runs/*/*/checkpoint.pt"), tmp_path / "shortcuts.json"]
    }
    assert first == again  # runs and shortcut checks reused


def test_the_report_is_written_after_each_trained_run(
    bench: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import decar.pretrain

    real_fit, trained = decar.pretrain.fit, []

    def fit_until_killed(*args: object, **kwargs: object) -> object:
        if trained:
            raise RuntimeError("killed during the second run")
        trained.append(args)
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(decar.pretrain, "fit", fit_until_killed)
    configs = [CONFIGS / "tiny.yaml", CONFIGS / "tiny_v2.yaml"]
    settings = ["optim.epochs=50", "optim.steps_per_epoch=3", "num_threads=1", "checkpoint_minutes=0.01"]
    with pytest.raises(RuntimeError, match="killed"):
        run_ablations(configs, bench, 0.05, tmp_path, overrides=settings, probe_seeds=1)
    report = json.loads((tmp_path / "ablations.json").read_text())
    assert list(report["configs"]) == ["tiny"] and report["pending"] == ["tiny_v2 seed 0"]
    assert "Still to train: tiny_v2 seed 0." in (tmp_path / "ablations.md").read_text()
    (tmp_path / "ablations.md").unlink()
    text = run_ablations(configs, bench, 0.05, tmp_path, overrides=settings, probe_seeds=1, report_only=True)
    assert len(trained) == 1 and "Still to train: tiny_v2 seed 0." in text  # nothing trained, the table rewritten
    assert (tmp_path / "ablations.md").read_text() == text
    with pytest.raises(FileNotFoundError, match=r"no run has finished a 0\.05-minute budget"):
        run_ablations(configs, bench, 0.05, tmp_path / "elsewhere", overrides=settings, report_only=True)


def test_cli_ablate_errors_are_one_line(bench: Path, tmp_path: Path) -> None:
    args = ["ablate", str(CONFIGS / "tiny.yaml"), "--bench", str(bench), "-o", str(tmp_path)]
    result = runner.invoke(app, [*args, "--budget", "0"])
    assert result.exit_code == 2 and "positive number of minutes" in result.stderr
    result = runner.invoke(app, [*args[:1], "missing.yaml", *args[2:], "--budget", "1"])
    assert result.exit_code == 2 and "ablation config not found" in result.stderr
