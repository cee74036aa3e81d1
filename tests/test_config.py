from pathlib import Path

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


def test_paper_config_matches_reference_settings() -> None:
    cfg = load_config(REPO / "configs" / "decar.yaml")
    assert (cfg.frontend.win_length, cfg.frontend.hop_length, cfg.frontend.n_fft, cfg.frontend.n_mels) == (
        400,
        160,
        1024,
        64,
    )
    assert cfg.frontend.power == 1.0 and cfg.data.crop_seconds == 10.0
    assert cfg.model.name == "efficientnet_b0"
    assert (cfg.objective.num_clusters, cfg.objective.pca_dim, cfg.objective.kmeans_iters) == (512, 128, 20)
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.optim.batch_size) == (0.05, 0.9, 64)


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
