"""Run configuration: nested dataclasses that round-trip through YAML and take `key=value` overrides.

The defaults are the paper's DECAR v1 settings (REFERENCE §1a), field for field the same as configs/decar.yaml.
Precedence is defaults < YAML file < command-line overrides; the resolved config is written to the run folder
and into every checkpoint so a model can be rebuilt without the file that trained it.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from decar._dicts import ConfigError, dataclass_from_dict
from decar.augment import AugmentConfig
from decar.data import PAD_MODES
from decar.frontend import FrontendConfig
from decar.objectives import DeepClusterV1Config, list_objectives, objective_config_class

CONFIG_VERSION = 1


@dataclass
class DataConfig:
    """Which part of each file is used and how features are fed.

    Attributes:
        crop_seconds: length of each training example; the paper uses whole 10 s clips.
        random_crop: random crop position while training (the per-epoch feature pass always centre-crops).
        pad_to_crop: bring shorter files to `crop_seconds` (else batches are padded to their longest item).
        pad_mode: how a short crop is brought to length: "silence" (zero-pad the waveform, the paper) or
            "tile" (repeat the clip), which leaves no silent tail whose length a clustering could encode.
        min_seconds: files shorter than this are skipped as unusable (`decar.embed.MIN_SECONDS`, 0.05 s, is
            the shortest clip embedding accepts).
        cache_dir: folder for cached log-mel features so epochs do not re-decode audio (None: no cache).
        num_workers: DataLoader worker processes (each decodes and featurises audio on one thread).
        max_files: use at most this many files (None: all), handy for smoke runs.
        max_files_per_folder: keep at most this many files of each top-level folder of the corpus (below the
            folder all its files share), drawn with the run's seed; None keeps all. A corpus that one source
            dominates (the bench's is 56 % synthetic speech) can be balanced this way, as the paper balanced
            AudioSet. Files given as shards are not balanced here (`decar data shard` chooses what goes in).
    """

    crop_seconds: float = 10.0
    random_crop: bool = True
    pad_to_crop: bool = True
    pad_mode: str = "silence"
    min_seconds: float = 0.05
    cache_dir: str | None = None
    num_workers: int = 4
    max_files: int | None = None
    max_files_per_folder: int | None = None


@dataclass
class ModelConfig:
    """Encoder name in the registry (`decar.models.list_models()`) and its factory arguments."""

    name: str = "efficientnet_b0"
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    """SGD settings; the defaults are the paper's (no schedule).

    Attributes:
        steps_per_epoch: optimiser steps per epoch (between two clusterings for the per-epoch methods); None
            is the paper's one pass over the data (N // batch_size). Small corpora need more steps to learn
            each epoch's pseudo-labels.
        schedule: "constant" (the paper) or "warmup_cosine": linear warmup from 0 over `warmup_epochs`, then
            cosine decay to `final_lr`, set every step (DeepCluster-v2's schedule, which its official code
            builds but never applies).
        warmup_epochs: length of the warmup (may be fractional).
        final_lr: learning rate at the last step of a cosine schedule.
        lars: wrap SGD in LARS (layer-wise trust ratio, LARC's clip mode on every parameter, as swav trains
            DeepCluster-v2 with large batches).
        lars_trust: LARS trust coefficient (swav: 0.001).
    """

    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 1e-5
    batch_size: int = 64
    epochs: int = 200
    steps_per_epoch: int | None = None
    grad_clip: float | None = None
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    final_lr: float = 0.0
    lars: bool = False
    lars_trust: float = 0.001


def paper_frontend() -> FrontendConfig:
    """The DECAR v1 frontend: `FrontendConfig()`'s log-mel with the waveform L2-normalised first (REFERENCE §1a).

    `FrontendConfig()` itself leaves the waveform's scale alone, as BYOL-A and the log-mel baseline need.
    """
    return FrontendConfig(l2_normalize_waveform=True)


@dataclass
class DecarConfig:
    """Everything a pretraining run needs; the defaults are the paper's DECAR v1 settings (configs/decar.yaml).

    Attributes:
        method: the pretraining method (`decar.objectives.list_objectives()`): "deepcluster_v1" (the paper's
            first published variant), "dcv2" (its later DeepCluster-v2 variant) or "online".
        objective: the method's own settings, a dataclass registered with it (`objective_config_class`).
        seed: base seed; every random draw is a function of (seed, epoch, step) so resumes are exact.
        deterministic: ask torch for deterministic kernels (slower; used by the resume test).
        device: "auto" (cuda if available), "cpu" or "cuda".
        precision: "fp32" or "bf16" (autocast; CUDA and CPU).
        channels_last: channels-last memory format for convolutional encoders.
        checkpoint_minutes: also checkpoint mid-epoch after this many minutes (epochs always end with one).
        time_budget_minutes: stop once the run has used this much wall time, counted over every resume
            (checkpoint, encoder export and summary as at the end), e.g. to compare methods at equal cost.
        num_threads: torch intra-op threads on CPU (None: torch's default).
        shortcut_check_epochs: every this many epochs, also measure the loudness and duration shortcuts by
            intervention (`decar.shortcuts`; ``ami_gain`` and ``ami_cut`` in log.jsonl; about a minute on 2 CPU
            cores for a d = 512 encoder); 0: only at the end of the run.
    """

    method: str = "deepcluster_v1"
    frontend: FrontendConfig = field(default_factory=paper_frontend)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: Any = field(default_factory=DeepClusterV1Config)
    optim: OptimConfig = field(default_factory=OptimConfig)
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    precision: str = "fp32"
    channels_last: bool = True
    checkpoint_minutes: float = 5.0
    time_budget_minutes: float | None = None
    num_threads: int | None = None
    shortcut_check_epochs: int = 0

    def validate(self) -> DecarConfig:
        """Raise ConfigError on settings that cannot run; returns self for chaining."""
        if self.method not in list_objectives():
            raise ConfigError(f"method must be one of {', '.join(list_objectives())}, got {self.method!r}")
        expected = objective_config_class(self.method)
        if not isinstance(self.objective, expected):
            raise ConfigError(f"method {self.method!r} takes objective settings {expected.__name__}")
        checks = [
            (self.precision in ("fp32", "bf16"), f"precision must be fp32 or bf16, got {self.precision!r}"),
            (
                self.device in ("auto", "cpu", "cuda"),
                f"device must be auto, cpu or cuda, got {self.device!r}",
            ),
            (self.data.crop_seconds > 0, "data.crop_seconds must be > 0"),
            (self.optim.batch_size >= 1, "optim.batch_size must be >= 1"),
            (self.optim.epochs >= 1, "optim.epochs must be >= 1"),
            (self.optim.lr > 0, "optim.lr must be > 0"),
            (self.optim.schedule in ("constant", "warmup_cosine"), "optim.schedule: constant|warmup_cosine"),
            (self.optim.warmup_epochs >= 0, "optim.warmup_epochs must be >= 0"),
            (self.data.pad_mode in PAD_MODES, "data.pad_mode: silence|tile"),
            (self.shortcut_check_epochs >= 0, "shortcut_check_epochs must be >= 0 (0: only at the end)"),
            (
                self.data.max_files_per_folder is None or self.data.max_files_per_folder >= 1,
                "data.max_files_per_folder must be >= 1 (or null for no limit)",
            ),
        ]
        problems = [message for ok, message in checks if not ok] + self.objective.validate()
        if problems:
            raise ConfigError(problems[0])
        try:
            self.frontend.validate()
        except ValueError as err:
            raise ConfigError(f"frontend: {err}") from err
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"config_version": CONFIG_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DecarConfig:
        """Build from a plain dict; keys it leaves out take DecarConfig()'s values, inside sections too."""
        data = dict(data)
        data.pop("config_version", None)
        objective = data.pop("objective", None) or {}
        config = dataclass_from_dict(cls, _fill_defaults(cls(), data))
        try:
            objective_class = objective_config_class(config.method)
        except KeyError as err:
            raise ConfigError(err.args[0]) from err
        config.objective = dataclass_from_dict(
            objective_class, _fill_defaults(objective_class(), objective), prefix="objective."
        )
        return config

    def to_yaml(self, path: str | Path) -> None:
        from decar._io import atomic_write_text

        atomic_write_text(Path(path), yaml.safe_dump(self.to_dict(), sort_keys=False))


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> DecarConfig:
    """Defaults, then the YAML file at `path`, then `key=value` overrides (dotted keys, YAML-typed values).

    Example:
        >>> cfg = load_config("configs/tiny.yaml", ["optim.lr=0.1", "objective.num_clusters=16"])
    """
    data = _read_yaml(Path(path)) if path is not None else {}
    for override in overrides or []:
        key, sep, raw = override.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {override!r} must look like key=value, e.g. optim.lr=0.1")
        _set_dotted(data, key.strip(), yaml.safe_load(raw) if raw.strip() else None)
    return DecarConfig.from_dict(data).validate()


def _read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file's mapping; a ``base: OTHER.yaml`` key (relative to the file) is read first and overlaid,
    sections merged key by key, so that an ablation states only what it changes."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    if path.resolve() in chain:
        raise ConfigError(f"config file {path}: its base chain loops ({' -> '.join(str(p) for p in chain)})")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    base = loaded.pop("base", None)
    if base is None:
        return loaded
    if not isinstance(base, str):
        raise ConfigError(f"config file {path}: base must be the path of another config, got {base!r}")
    return _overlay(_read_yaml(path.parent / base, (*chain, path.resolve())), loaded)


def _overlay(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``: nested mappings merged key by key, anything else (lists too) replaced; an empty
    mapping clears the base's (``model: {name: efficientnet_b0, kwargs: {}}`` drops AudioNTT's ``d``)."""
    merged = dict(base)
    for key, value in top.items():
        both_maps = isinstance(value, dict) and bool(value) and isinstance(merged.get(key), dict)
        merged[key] = _overlay(merged[key], value) if both_maps else value
    return merged


def _fill_defaults(default: Any, data: Any) -> Any:
    """`data` completed with the leaves of the dataclass instance `default` that it lacks, recursively.

    A section given in part (`frontend: {n_mels: 128}`) keeps DecarConfig()'s values for the rest, which are
    not always its class's defaults (`frontend.l2_normalize_waveform`). Unknown keys and wrong types are left
    for `dataclass_from_dict` to report.
    """
    if not isinstance(data, dict):
        return data
    filled = dict(data)
    for item in dataclasses.fields(default):
        value = getattr(default, item.name)
        if dataclasses.is_dataclass(value):
            filled[item.name] = _fill_defaults(value, filled.get(item.name) or {})
        elif item.name not in filled:
            filled[item.name] = copy.deepcopy(value)
    return filled


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value
