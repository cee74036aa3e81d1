import sys
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from decar import cli
from decar.cli import app
from decar.config import load_config
from test_config import flat

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "tiny.yaml")
WIDE = {"COLUMNS": "200"}
"""Environment for tests that read rich-rendered help, which truncates option names at narrow widths."""


@pytest.mark.parametrize("command", [[], ["pretrain"], ["demo"], ["config"], ["config", "default"], ["config", "show"]])
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_pretrain_help_lists_every_option() -> None:
    output = runner.invoke(app, ["pretrain", "--help"], env=WIDE, terminal_width=200).output
    for option in ("--data", "--out", "--config", "--resume", "overrides"):
        assert option in output


def test_config_default_is_the_paper_config(paper_settings: dict[str, Any]) -> None:
    result = runner.invoke(app, ["config", "default"])
    assert result.exit_code == 0
    printed = flat(yaml.safe_load(result.output))
    yaml_file = flat(load_config(REPO / "configs" / "decar.yaml").to_dict())
    reference = flat(paper_settings)
    assert printed.keys() == yaml_file.keys() == reference.keys()
    for key, value in printed.items():
        assert (value, type(value)) == (yaml_file[key], type(yaml_file[key])), f"{key}: {value!r} vs decar.yaml"
        assert value == reference[key], f"{key}: printed {value!r}, the paper's {reference[key]!r}"


def test_config_show_applies_overrides() -> None:
    result = runner.invoke(app, ["config", "show", TINY, "optim.lr=0.5"])
    assert result.exit_code == 0
    assert yaml.safe_load(result.output)["optim"]["lr"] == 0.5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config", TINY, "optim.nope=1"], "unknown config key"),
        (["--config", "missing.yaml"], "config file not found"),
        (["--config", TINY], "does not exist"),
    ],
)
def test_pretrain_errors_are_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    data = tmp_path / ("nothing-here-" + "x" * 200)  # a path longer than any terminal line
    out = ["--out", str(tmp_path / "run")]
    result = runner.invoke(app, ["pretrain", "--data", str(data), *out, *args], env={"COLUMNS": "40"})
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ") and message in line
    if message == "does not exist":
        assert str(data) in line
    assert "Traceback" not in result.output


LONG_PATH = "/data/" + "/".join(f"a_rather_long_folder_name_{i:02d}" for i in range(8)) + "/clip.wav"


@pytest.mark.parametrize(
    "message",
    [
        f"audio source {LONG_PATH!r} does not exist",
        "k-means needs faiss: pip install decar[faiss] (or objective.kmeans_backend=torch)",
        "cannot decode /x/[bad]/a.wav: [Errno 2] [red]not[/red] found",
    ],
)
@pytest.mark.parametrize("columns", ["40", "200"])
def test_errors_are_printed_verbatim_on_one_line(message: str, columns: str) -> None:
    """Not rich markup (brackets survive), not wrapped at the terminal width (COLUMNS=40 in CI)."""
    assert len(LONG_PATH) > 200
    failing = typer.Typer()

    @failing.command()
    def fail() -> None:
        cli._fail(ValueError(message))

    result = runner.invoke(failing, [], env={"COLUMNS": columns})
    assert result.exit_code == 2
    assert result.stderr == f"error: {message}\n"
    assert result.stdout == ""


def test_missing_onnx_extra_names_the_install_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "decar.integrations.onnx", None)  # import fails as when onnx is absent
    result = runner.invoke(app, ["export-onnx", str(tmp_path / "c.pt"), "-o", str(tmp_path / "m.onnx")])
    assert result.exit_code == 2
    assert "install it with: pip install 'decar[onnx]'" in result.stderr.splitlines()[0]


def test_summary_table_never_wraps_or_cuts_values(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    bad = f"{LONG_PATH[:-4]}[bad].wav"
    cli._print_summary("pretraining summary", {"files_used": 64, "final_loss": 1.23456, "skipped": {bad: "NaN [x]"}})
    lines = capsys.readouterr().out.splitlines()
    assert any("files_used" in line and " 64 " in line for line in lines)
    assert any("final_loss" in line and " 1.235 " in line for line in lines)
    assert any("skipped file" in line and f" {bad}: NaN [x] " in line for line in lines)


def test_build_bench_without_its_extra_names_the_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = cli.importlib.util.find_spec
    monkeypatch.setattr(
        cli.importlib.util, "find_spec", lambda name, *a: None if name == "mido" else real_find_spec(name, *a)
    )
    result = runner.invoke(app, ["data", "build-bench", "--out", str(tmp_path / "b")], env={"COLUMNS": "40"})
    assert result.exit_code == 2
    assert "needs mido" in result.output and "pip install 'decar[bench]'" in result.output
    assert not (tmp_path / "b").exists()


def test_version_prints_and_exits_zero() -> None:
    import decar

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == decar.__version__


def test_help_does_not_wait_for_torch() -> None:
    """`decar --help` answers at once: the CLI and the package import the library only when a command runs."""
    import subprocess

    code = "import sys, decar.cli; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
    help_run = subprocess.run([sys.executable, "-m", "decar.cli", "--help"], capture_output=True, text=True)
    assert help_run.returncode == 0 and "pretrain" in help_run.stdout
