from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from decar.cli import app
from decar.config import DecarConfig

runner = CliRunner()
TINY = str(Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml")


@pytest.mark.parametrize("command", [[], ["pretrain"], ["demo"], ["config"], ["config", "default"], ["config", "show"]])
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_pretrain_help_lists_every_option() -> None:
    output = runner.invoke(app, ["pretrain", "--help"], terminal_width=200).output
    for option in ("--data", "--out", "--config", "--resume", "overrides"):
        assert option in output


def test_config_default_is_the_paper_config() -> None:
    result = runner.invoke(app, ["config", "default"])
    assert result.exit_code == 0
    assert DecarConfig.from_dict(yaml.safe_load(result.output)) == DecarConfig()


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
    data = tmp_path / "nothing-here"
    result = runner.invoke(app, ["pretrain", "--data", str(data), "--out", str(tmp_path / "run"), *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
