from pathlib import Path
from typing import Any

import pytest
import yaml

from decar.config import ConfigError, DecarConfig, load_config

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load_and_round_trip(path: Path, tmp_path: Path) -> None:
    cfg = load_config(path)
    cfg.to_yaml(tmp_path / "resolved.yaml")
    again = load_config(tmp_path / "resolved.yaml")
    assert again == cfg
    assert DecarConfig.from_dict(cfg.to_dict()) == cfg


def flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": (1, 2)}} -> {"a.b": [1, 2]}: one entry per config field, tuples as lists (YAML has lists)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return out


def field_differences(actual: dict[str, Any], expected: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """{field: (actual, expected)} for every field that differs or exists on one side only."""
    actual, expected = flat(actual), flat(expected)
    missing = object()
    return {
        key: (actual.get(key, missing), expected.get(key, missing))
        for key in sorted(actual.keys() | expected.keys())
        if actual.get(key, missing) != expected.get(key, missing)
    }


def test_paper_config_matches_reference_settings(paper_settings: dict[str, Any]) -> None:
    """Every field of configs/decar.yaml, resolved, against the hand-written settings: any drift fails."""
    cfg = load_config(REPO / "configs" / "decar.yaml")
    assert field_differences(cfg.to_dict(), paper_settings) == {}


def test_defaults_are_the_paper_config(paper_settings: dict[str, Any]) -> None:
    assert field_differences(DecarConfig().to_dict(), paper_settings) == {}
    assert DecarConfig() == load_config(REPO / "configs" / "decar.yaml") == load_config(None)


def test_a_partial_section_keeps_the_paper_defaults(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"frontend": {"n_mels": 32}, "augment": {"mixup": {"enabled": True}}}))
    cfg = load_config(path)
    assert cfg.frontend.n_mels == 32
    assert cfg.frontend.l2_normalize_waveform  # DecarConfig()'s value, not FrontendConfig()'s
    assert cfg.augment.mixup.enabled and cfg.augment.specaugment == DecarConfig().augment.specaugment
    assert load_config(None, ["frontend.n_mels=32"]).frontend == cfg.frontend


def test_tiny_config_is_the_paper_pipeline_scaled_down() -> None:
    tiny = load_config(REPO / "configs" / "tiny.yaml")
    assert tiny.method == DecarConfig().method and tiny.model.name == "efficientnet_b0"
    assert not tiny.frontend.l2_normalize_waveform and tiny.objective.kmeans_backend == "torch"
    assert (tiny.data.num_workers, tiny.device) == (0, "cpu")


def test_precedence_defaults_yaml_cli(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"optim": {"lr": 0.3, "epochs": 7}}))
    cfg = load_config(path, ["optim.lr=0.1", "objective.num_clusters=16", "data.cache_dir=/tmp/x"])
    assert cfg.optim.lr == 0.1  # CLI beats YAML
    assert cfg.optim.epochs == 7  # YAML beats default
    assert cfg.optim.momentum == 0.9  # default
    assert cfg.objective.num_clusters == 16
    assert cfg.data.cache_dir == "/tmp/x"


def test_int_is_accepted_for_float_fields() -> None:
    assert load_config(None, ["optim.lr=1"]).optim.lr == 1.0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=0.1", "unknown config key"),
        ("optim.lr=fast", "optim.lr must be float"),
        ("optim.batch_size=0", "batch_size"),
        ("precision=fp8", "precision"),
        ("nonsense", "key=value"),
        ("frontend.f_max=9000", "frontend"),
    ],
)
def test_bad_overrides_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_missing_or_invalid_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n- not a mapping\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)
