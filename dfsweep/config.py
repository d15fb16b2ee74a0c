"""Run configuration: one frozen dataclass per stage, defaults in code, one YAML file overrides what differs.

A YAML file has up to four sections (prepare, train, sweep, report); an unknown section or key is an error that
lists the valid ones, and every value is type-checked when the dataclass is built.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dfsweep.perturbations import PERTURBATIONS


class ConfigError(ValueError):
    """A configuration value or key that dfsweep refuses, with the reason in the message."""


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


@dataclass(frozen=True)
class PrepareConfig:
    """Scanning, sampling, splitting and face cropping (`dfsweep prepare`)."""

    # Dataset roots; each holds real/ and fake/ folders. Relative paths are taken from the working directory.
    source: str = ""
    target: str = ""
    source_name: str = "source"
    target_name: str = "target"
    # Where each root keeps its real and fake files: "auto" (detect), "generic" (real/ + fake/), "ciplab"
    # (Kaggle real-and-fake-face-detection) or "manjilkarki" (Kaggle deepfake-and-real-images).
    source_layout: str = "auto"
    target_layout: str = "auto"
    # Keep a dataset's own Train/Validation/Test split (manjilkarki) instead of drawing ours; the target tests on
    # its Test part, holds its Validation part out as target/val and adapts on the rest.
    keep_dataset_splits: bool = False
    video_frames: int = 8  # evenly spaced frames sampled from each video
    # Per-class caps (the paper: 200 per class on the source set, 150 on the target set): files sampled per class for
    # face detection (a file without a usable face is not replaced); 0 means no cap.
    source_per_class_cap: int = 200
    target_per_class_cap: int = 150
    # Splits are drawn by hashing each sample's group with this seed, so they never depend on file order.
    split_seed: int = 0
    source_val_fraction: float = 0.2
    source_test_fraction: float = 0.2
    # The target is cut into a disjoint `adapt` split (V2's domain fine-tuning) and `test`.
    target_adapt_fraction: float = 0.3
    # Of that adapt pool, this share of the target is held out as `target/val` (drawn among the adapt groups, so
    # target test is the same whatever it is): arms that select their epoch on the target (selection target_val)
    # adapt on the rest and select on it; arms that select on source val adapt on the whole pool (adapt + val).
    target_val_fraction: float = 0.1
    crop_size_px: int = 299
    face_margin: float = 0.3  # fraction of the box's longer side added on every side before the square crop
    min_face_px: int = 40  # MTCNN's smallest face to look for (and the smallest box kept)
    min_face_prob: float = 0.9
    # Several faces in one image: keep the "most_confident" or the "largest"; the count is recorded.
    face_policy: str = "most_confident"
    # Leakage guard: crops within this many bits (of 256) of dHash in another split or domain are near-duplicates
    # (a JPEG re-encode moves up to ~11 bits; different aligned faces differ by 36 or more).
    near_duplicate_max_bits: int = 24
    # "drop": keep the first (source before target; train, val, adapt, test) and drop the rest; "fail": stop;
    # "keep": only record them.
    near_duplicate_policy: str = "drop"
    face_workers: int = 2  # MTCNN actors in Ray Data's pool
    cpus_per_face_worker: float = 0.5  # fractional, so the read tasks are never starved (ENVIRONMENT.md)
    gpus_per_face_worker: float = 0.0
    face_batch_size: int = 16

    def __post_init__(self) -> None:
        for name in ("source_per_class_cap", "target_per_class_cap", "crop_size_px", "min_face_px", "face_workers",
                     "face_batch_size"):
            _check(getattr(self, name) >= 0, f"prepare.{name} must be >= 0, got {getattr(self, name)}")
        _check(self.crop_size_px >= 71, f"prepare.crop_size_px must be >= 71 (Xception's minimum), got {self.crop_size_px}")
        _check(self.face_workers >= 1, "prepare.face_workers must be >= 1")
        f = self.source_val_fraction + self.source_test_fraction
        _check(0 < self.source_val_fraction < 1 and 0 < self.source_test_fraction < 1 and f < 1,
               "prepare.source_val_fraction and source_test_fraction must be in (0, 1) and leave room for train")
        _check(0 < self.target_adapt_fraction < 1, "prepare.target_adapt_fraction must be in (0, 1)")
        _check(0 <= self.target_val_fraction < self.target_adapt_fraction,
               "prepare.target_val_fraction must be in [0, target_adapt_fraction): it is carved out of the adapt pool")
        _check(0 <= self.min_face_prob <= 1, "prepare.min_face_prob must be in [0, 1]")
        _check(self.source_name != self.target_name, "prepare.source_name and target_name must differ")
        for name in ("source_layout", "target_layout"):
            _check(getattr(self, name) in ("auto", "generic", "ciplab", "manjilkarki"),
                   f"prepare.{name} must be one of auto, generic, ciplab, manjilkarki; got {getattr(self, name)!r}")
        _check(self.video_frames >= 1, "prepare.video_frames must be >= 1")
        _check(self.face_policy in ("most_confident", "largest"),
               f"prepare.face_policy must be 'most_confident' or 'largest', got {self.face_policy!r}")
        _check(self.near_duplicate_policy in ("drop", "fail", "keep"),
               f"prepare.near_duplicate_policy must be 'drop', 'fail' or 'keep', got {self.near_duplicate_policy!r}")
        _check(0 <= self.near_duplicate_max_bits <= 64, "prepare.near_duplicate_max_bits must be in [0, 64]")


PIXEL_RANGES = ("xception", "unit")


@dataclass(frozen=True)
class TrainConfig:
    """Model and training protocol of one trial (see DESIGN.md, "The protocol")."""

    input_size_px: int = 299
    # "xception": the backbone's own preprocessing, [-1, 1]; "unit": [0, 1] as in the paper's code.
    pixel_range: str = "xception"
    # "imagenet" (Keras download, needs network), "none" (random init) or a path to a Keras file whose layers
    # match Xception's by name.
    weights: str = "imagenet"
    batch_size: int = 32  # balanced: half real, half fake
    dense_units: int = 256
    dropout: float = 0.5
    head_epochs: int = 10
    head_lr: float = 1e-4
    finetune_epochs: int = 3  # V2 only
    finetune_lr: float = 1e-5
    unfreeze_last_layers: int = 40
    # BatchNormalization layers inside the unfrozen block stay in inference mode unless this is true.
    train_batchnorm: bool = False
    # Share of each V2 fine-tuning batch drawn from the target `adapt` split (domain fine-tuning).
    adapt_share: float = 0.25
    flip_prob: float = 0.5
    brightness_prob: float = 0.3
    brightness_min: float = 0.85
    brightness_max: float = 1.15
    # The `robust` preset adds JPEG re-compression and Gaussian blur at train time.
    jpeg_prob: float = 0.3
    jpeg_quality_min: int = 30
    jpeg_quality_max: int = 95
    blur_prob: float = 0.2
    blur_kernels_px: tuple[int, ...] = (3, 5)
    # float16 compute on GPU ("auto": when TensorFlow sees a GPU; "off": never). The output layer stays float32.
    mixed_precision: str = "auto"
    # Save each trial's selected model as models/<trial_id>.keras (about 90 MB each, whatever the input size).
    export_model: bool = True
    # Degraded test sets, made on the fly and scored by every trial: {perturbation: [levels]} for the kinds of
    # perturbations.PERTURBATIONS. A kind left out keeps its default levels; [] switches it off.
    test_perturbations: dict[str, tuple[int, ...]] = field(default_factory=lambda: default_test_perturbations())

    def __post_init__(self) -> None:
        _check(self.input_size_px >= 71, f"train.input_size_px must be >= 71 (Xception's minimum), got {self.input_size_px}")
        _check(self.pixel_range in PIXEL_RANGES, f"train.pixel_range must be one of {PIXEL_RANGES}, got {self.pixel_range!r}")
        _check(self.batch_size >= 2 and self.batch_size % 2 == 0, "train.batch_size must be even and >= 2 (balanced batches)")
        _check(self.head_epochs >= 1, "train.head_epochs must be >= 1")
        _check(self.mixed_precision in ("auto", "off"), "train.mixed_precision must be 'auto' or 'off'")
        _check(self.finetune_epochs >= 0, "train.finetune_epochs must be >= 0")
        _check(0 <= self.dropout < 1, "train.dropout must be in [0, 1)")
        _check(0 <= self.adapt_share < 1, "train.adapt_share must be in [0, 1)")
        _check(self.unfreeze_last_layers >= 0, "train.unfreeze_last_layers must be >= 0")
        _check(0 < self.brightness_min <= self.brightness_max, "train.brightness_min must be > 0 and <= brightness_max")
        for name in ("flip_prob", "brightness_prob", "jpeg_prob", "blur_prob"):
            _check(0 <= getattr(self, name) <= 1, f"train.{name} must be in [0, 1]")
        _check(1 <= self.jpeg_quality_min <= self.jpeg_quality_max <= 100,
               "train.jpeg_quality_min/max must satisfy 1 <= min <= max <= 100")
        _check(all(k >= 1 and k % 2 == 1 for k in self.blur_kernels_px), "train.blur_kernels_px must hold odd sizes >= 1")
        _check(len(self.blur_kernels_px) > 0, "train.blur_kernels_px must not be empty")
        _check(isinstance(self.test_perturbations, dict), "train.test_perturbations must be a mapping")
        unknown = sorted(set(self.test_perturbations) - set(PERTURBATIONS))
        _check(not unknown, f"unknown perturbation(s) {unknown} in train.test_perturbations; valid: {', '.join(PERTURBATIONS)}")
        levels = {**default_test_perturbations(), **{k: tuple(v) for k, v in self.test_perturbations.items()}}
        for name, values in levels.items():
            p = PERTURBATIONS[name]
            _check(all(isinstance(v, int) and p.valid(v) for v in values),
                   f"train.test_perturbations.{name} must hold {p.valid_text}, got {list(values)}")
            _check(len(set(values)) == len(values), f"train.test_perturbations.{name} has duplicates: {list(values)}")
        object.__setattr__(self, "test_perturbations", {name: levels[name] for name in PERTURBATIONS})

    def perturbation_levels(self) -> list[tuple[str, int]]:
        """(perturbation, level) of every degraded test set, kinds in registry order, levels in the config's."""
        return [(name, int(level)) for name, levels in self.test_perturbations.items() for level in levels]


def default_test_perturbations() -> dict[str, tuple[int, ...]]:
    return {name: p.default_levels for name, p in PERTURBATIONS.items()}


# How a trial chooses its epoch: on source val (the paper's protocol), or on target val, a held-out part of the
# target's adapt pool (prepare.target_val_fraction), disjoint from target test and never test itself.
SELECTIONS = ("source_val", "target_val")


@dataclass(frozen=True)
class ArmSpec:
    """One point of the candidate variants' grid (sweep.arms): V2's interventions. A key left out takes the base
    point's value: augmentation "paper", train.unfreeze_last_layers, train.adapt_share, selection "source_val"."""

    # The arm's id in trial ids, scores and the report; "" names it after what it changes from the base point
    # (orchestrator/sweep.arm_name: e.g. "none-u0-a50-tval").
    name: str = ""
    augmentation: str = "paper"  # a train-time augmentation preset (trainables/augment.PRESETS)
    unfreeze_layers: int | None = None  # the last backbone layers fine-tuned; 0 = the head only
    adapt_share: float | None = None  # share of each fine-tuning batch from the target adapt split; 0 = none
    selection: str = "source_val"  # SELECTIONS
    # The fine-tuning phase's length and learning rate, where an arm needs its own (a head-only arm on cached features
    # can afford many epochs and a larger rate); left out: train.finetune_epochs, train.finetune_lr.
    finetune_epochs: int | None = None
    finetune_lr: float | None = None

    def __post_init__(self) -> None:
        _check(self.finetune_epochs is None or self.finetune_epochs >= 0, "sweep.arms finetune_epochs must be >= 0")
        _check(self.finetune_lr is None or self.finetune_lr > 0, "sweep.arms finetune_lr must be > 0")
        _check(self.name == "" or re.fullmatch(r"[A-Za-z0-9_]+(-[A-Za-z0-9_.]+)*", self.name) is not None,
               f"sweep.arms name {self.name!r} must be letters, digits and _ (parts joined by -)")
        _check(self.unfreeze_layers is None or self.unfreeze_layers >= 0, "sweep.arms unfreeze_layers must be >= 0")
        _check(self.adapt_share is None or 0 <= self.adapt_share < 1, "sweep.arms adapt_share must be in [0, 1)")
        _check(self.selection in SELECTIONS, f"sweep.arms selection must be one of {', '.join(SELECTIONS)}; "
                                             f"got {self.selection!r}")


@dataclass(frozen=True)
class SweepConfig:
    """Which trials Ray Tune runs, and with what resources."""

    # v1, v2 and the shortcut check `cue` (a logistic regression on trivial image statistics, seconds per trial).
    variants: tuple[str, ...] = ("v1", "v2", "cue")
    seeds: tuple[int, ...] = (42, 123, 7)
    # The candidate arms (variants that take them: V2) are the grid over V2's interventions; each combination of
    # these axes is one arm, named after what it changes from the base point (paper augmentation,
    # train.unfreeze_last_layers, train.adapt_share, source-val selection): the defaults give the paper's V2 alone,
    # arm "paper". V1 and cue run once per seed whatever these hold.
    augmentations: tuple[str, ...] = ("paper",)  # train-time augmentation presets (trainables/augment.py)
    unfreeze_layers: tuple[int, ...] = ()  # backbone layers fine-tuned (0 = head only); empty: train.unfreeze_last_layers
    adapt_shares: tuple[float, ...] = ()  # target-adapt share of fine-tuning batches; empty: train.adapt_share
    selections: tuple[str, ...] = ("source_val",)  # SELECTIONS
    # Or the arms one by one, instead of the grid (a list of mappings, keys of ArmSpec): e.g.
    # [{augmentation: paper}, {augmentation: none, unfreeze_layers: 0, adapt_share: 0.5, selection: target_val}].
    arms: tuple[ArmSpec, ...] = ()
    # Share work between trials: the frozen-backbone feature cache (V1 of every seed embeds each crop once).
    # Off only to measure what sharing saves (bench/sweep.py --no-cache).
    share_work: bool = True
    cpus_per_trial: float = 2.0
    gpus_per_trial: float = 0.0
    max_concurrent_trials: int = 0  # 0: as many as the resources allow
    max_failures: int = 1  # retries of a failed trial

    def __post_init__(self) -> None:
        _check(len(self.variants) > 0, "sweep.variants must not be empty")
        _check(len(self.seeds) > 0, "sweep.seeds must not be empty")
        _check(len(set(self.seeds)) == len(self.seeds), f"sweep.seeds has duplicates: {list(self.seeds)}")
        _check(len(self.augmentations) > 0 and len(set(self.augmentations)) == len(self.augmentations),
               "sweep.augmentations must be a non-empty list without duplicates")
        for axis in ("unfreeze_layers", "adapt_shares", "selections"):
            values = getattr(self, axis)
            _check(len(set(values)) == len(values), f"sweep.{axis} has duplicates: {list(values)}")
        _check(all(n >= 0 for n in self.unfreeze_layers), "sweep.unfreeze_layers must hold values >= 0")
        _check(all(0 <= a < 1 for a in self.adapt_shares), "sweep.adapt_shares must hold values in [0, 1)")
        _check(len(self.selections) > 0 and set(self.selections) <= set(SELECTIONS),
               f"sweep.selections must hold some of {', '.join(SELECTIONS)}; got {list(self.selections)}")
        grid_given = (self.augmentations != ("paper",) or self.unfreeze_layers or self.adapt_shares
                      or self.selections != ("source_val",))
        _check(not (self.arms and grid_given), "give either sweep.arms (arms one by one) or the grid axes "
               "(sweep.augmentations, unfreeze_layers, adapt_shares, selections), not both")
        _check(self.cpus_per_trial > 0, "sweep.cpus_per_trial must be > 0")
        _check(self.gpus_per_trial >= 0, "sweep.gpus_per_trial must be >= 0")


@dataclass(frozen=True)
class ReportConfig:
    """Statistics of the report."""

    bootstrap_samples: int = 2000
    ci_level: float = 0.95
    seed: int = 0  # of the bootstrap's random generator
    threshold: float = 0.5  # decision threshold of the confusion matrices
    alpha: float = 0.05  # significance level used in the verdict lines

    def __post_init__(self) -> None:
        _check(self.bootstrap_samples >= 100, "report.bootstrap_samples must be >= 100")
        _check(0.5 < self.ci_level < 1, "report.ci_level must be in (0.5, 1)")
        _check(0 < self.threshold < 1, "report.threshold must be in (0, 1)")
        _check(0 < self.alpha < 1, "report.alpha must be in (0, 1)")


@dataclass(frozen=True)
class Config:
    """The whole run: one section per stage."""

    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    report: ReportConfig = field(default_factory=ReportConfig)


SECTIONS = {"prepare": PrepareConfig, "train": TrainConfig, "sweep": SweepConfig, "report": ReportConfig}


def _coerce(section: str, key: str, value: Any, annotation: Any) -> Any:
    """Check one YAML value against its field's annotation; ints are accepted where floats are expected."""
    where = f"{section}.{key}"
    origin = typing.get_origin(annotation)
    if origin is types.UnionType:  # `X | None`: YAML null, or an X
        (inner,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        return None if value is None else _coerce(section, key, value, inner)
    if dataclasses.is_dataclass(annotation):  # a mapping of the dataclass's keys (sweep.arms items)
        _check(isinstance(value, dict), f"{where} items must be mappings, got {value!r}")
        hints = typing.get_type_hints(annotation)
        valid = [f.name for f in dataclasses.fields(annotation)]
        unknown = sorted(set(value) - set(valid))
        _check(not unknown, f"unknown key(s) {unknown} in {where}; valid keys: {', '.join(valid)}")
        return annotation(**{k: _coerce(section, f"{key}.{k}", v, hints[k]) for k, v in value.items()})
    if origin is dict:
        key_type, value_type = typing.get_args(annotation)
        _check(isinstance(value, dict), f"{where} must be a mapping, got {value!r}")
        return {_coerce(section, key, k, key_type): _coerce(section, f"{key}.{k}", v, value_type) for k, v in value.items()}
    if origin is tuple:
        (item_type, _ellipsis) = typing.get_args(annotation)
        _check(isinstance(value, (list, tuple)), f"{where} must be a list, got {value!r}")
        return tuple(_coerce(section, key, v, item_type) for v in value)
    if annotation is bool:
        _check(isinstance(value, bool), f"{where} must be true or false, got {value!r}")
        return value
    if annotation is float:
        _check(isinstance(value, (int, float)) and not isinstance(value, bool), f"{where} must be a number, got {value!r}")
        return float(value)
    if annotation is int:
        _check(isinstance(value, int) and not isinstance(value, bool), f"{where} must be an integer, got {value!r}")
        return value
    if annotation is str:
        _check(isinstance(value, (str, int, float)) and not isinstance(value, bool), f"{where} must be a string, got {value!r}")
        return str(value)
    raise TypeError(f"unsupported annotation {annotation!r} for {where}")  # a programming error, not user input


# Keys that were replaced: read with a deprecation message, mapped onto their replacement (section, old -> new).
DEPRECATED = {("train", "test_jpeg_qualities"): ("test_perturbations", "jpeg"),
              ("train", "test_blur_kernels_px"): ("test_perturbations", "blur")}


def _undeprecate(section: str, values: dict[str, Any]) -> dict[str, Any]:
    values = dict(values)
    for (sec, old), (new, kind) in DEPRECATED.items():
        if sec != section or old not in values:
            continue
        levels = values.pop(old)
        given = values.get(new)
        _check(given is None or (isinstance(given, dict) and kind not in given),
               f"{section}.{old} (deprecated) and {section}.{new}.{kind} both given: keep only {section}.{new}")
        warnings.warn(f"config key {section}.{old} is deprecated: write {section}.{new}: {{{kind}: {levels!r}}}",
                      FutureWarning, stacklevel=4)
        values[new] = {**(given or {}), kind: levels}
    return values


def _section(section: str, cls: type, values: Any) -> Any:
    _check(isinstance(values, dict), f"section {section!r} must be a mapping, got {values!r}")
    values = _undeprecate(section, values)
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(valid))
    _check(not unknown, f"unknown key(s) {unknown} in section {section!r}; valid keys: {', '.join(valid)}")
    return cls(**{k: _coerce(section, k, v, hints[k]) for k, v in values.items()})


def config_from_dict(data: dict[str, Any] | None) -> Config:
    """Build a Config from nested plain data (a parsed YAML file), refusing unknown sections and keys."""
    data = data or {}
    _check(isinstance(data, dict), f"a config must be a mapping of sections, got {type(data).__name__}")
    unknown = sorted(set(data) - set(SECTIONS))
    _check(not unknown, f"unknown section(s) {unknown}; valid sections: {', '.join(SECTIONS)}")
    return Config(**{name: _section(name, cls, data[name]) for name, cls in SECTIONS.items() if name in data})


def load_config(path: str | Path | None) -> Config:
    """Defaults, overridden by the YAML file at `path` (if any)."""
    if path is None:
        return Config()
    from dfsweep.storage import parse

    path = parse(path)  # a local file, or a run's config.yaml on storage
    _check(path.is_file(), f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    return config_from_dict(data)


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Plain data (tuples as lists) that `config_from_dict` turns back into the same Config."""
    def plain(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return list(v) if isinstance(v, tuple) else v
    return {name: {k: plain(v) for k, v in dataclasses.asdict(getattr(cfg, name)).items()} for name in SECTIONS}


def with_overrides(cfg: Config, section: str, **values: Any) -> Config:
    """A copy of `cfg` with some keys of one section replaced (None values are ignored); checked like YAML."""
    values = {k: v for k, v in values.items() if v is not None}
    if not values:
        return cfg
    merged = {**config_to_dict(cfg)[section], **values}
    return dataclasses.replace(cfg, **{section: _section(section, SECTIONS[section], merged)})
