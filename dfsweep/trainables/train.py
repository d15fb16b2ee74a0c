"""The Ray Tune trainable: one trial = one (variant, augmentation, seed).

It trains on source train, selects its epoch on source val only (never on test), and writes one score per
(sample, perturbation, level) of source val, source test and target test to scores/<trial_id>.parquet.
A variant is one entry of VARIANTS: its augmentation preset and its fit function.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyarrow as pa

from dfsweep import schema
from dfsweep.config import TrainConfig
from dfsweep.trainables.data import SplitData, balanced_epoch, load_split, mixed_epoch

Report = Callable[[dict], None]
Scorer = Callable[[tuple[str, str]], np.ndarray]

# (domain, split) pairs a trial loads; scores are written for the SCORED ones.
LOADED = (("source", "train"), ("source", "val"), ("source", "test"), ("target", "adapt"), ("target", "test"))
SCORED = (("source", "val"), ("source", "test"), ("target", "test"))


def trial_id(variant: str, augmentation: str, seed: int) -> str:
    return f"{variant}-{augmentation}-s{seed}"


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")


def _bce(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


class _Best:
    """Keeps the weights of the best epoch on source val: highest AUC, then lowest loss."""

    def __init__(self) -> None:
        self.key, self.weights, self.epoch = (-np.inf, -np.inf), None, None

    def offer(self, val_auc: float, val_loss: float, weights_fn: Callable[[], list], epoch: str) -> None:
        key = (np.nan_to_num(val_auc, nan=-1.0), -val_loss)
        if key > self.key:
            self.key, self.weights, self.epoch = key, weights_fn(), epoch


def _train_head(det, feats: dict, data: dict, cfg: TrainConfig, rng: np.random.Generator, report: Report) -> _Best:
    """Train the head on frozen-backbone features (V1, and V2's first phase); restore its best epoch on source val."""
    import keras

    det.head.compile(optimizer=keras.optimizers.Adam(cfg.head_lr), loss="binary_crossentropy")
    train, val = data["source", "train"], data["source", "val"]
    best = _Best()
    for epoch in range(1, cfg.head_epochs + 1):
        idx = balanced_epoch(train.y, cfg.batch_size, rng, "source train")
        hist = det.head.fit(feats["source", "train"][idx], train.y[idx].astype(np.float32), batch_size=cfg.batch_size,
                            shuffle=False, epochs=1, verbose=0)
        p = det.head.predict(feats["source", "val"], batch_size=256, verbose=0).ravel()
        val_auc, val_loss = _auc(val.y, p), _bce(val.y, p)
        report(dict(phase="head", epoch=epoch, train_loss=float(hist.history["loss"][-1]), val_auc=val_auc, val_loss=val_loss))
        best.offer(val_auc, val_loss, det.head.get_weights, f"head/{epoch}")
    det.head.set_weights(best.weights)
    return best


def _embed(det, data: dict, batch_size: int) -> dict:
    """Frozen-backbone features of every loaded split (computed once per trial, reused every head epoch)."""
    return {key: det.backbone.predict(d.x, batch_size=batch_size, verbose=0) for key, d in data.items()}


def fit_v1(det, data: dict, cfg: TrainConfig, rng: np.random.Generator, augment, report: Report) -> tuple[Scorer, str]:
    """Backbone frozen; the head trains at head_lr on cached features."""
    from dfsweep.trainables.models import freeze_backbone

    freeze_backbone(det)
    feats = _embed(det, data, cfg.batch_size)
    best = _train_head(det, feats, data, cfg, rng, report)
    return (lambda key: det.head.predict(feats[key], batch_size=256, verbose=0).ravel()), best.epoch


def fit_v2(det, data: dict, cfg: TrainConfig, rng: np.random.Generator, augment, report: Report) -> tuple[Scorer, str]:
    """The head phase of V1, then the last `unfreeze_last_layers` layers at finetune_lr with augmentation and
    target-adapt batches; the best epoch on source val (head phase included) is kept."""
    import keras

    from dfsweep.trainables.models import freeze_backbone, unfreeze_last

    freeze_backbone(det)
    head_best = _train_head(det, _embed(det, data, cfg.batch_size), data, cfg, rng, report)
    best = _Best()
    best.key, best.weights, best.epoch = head_best.key, det.model.get_weights(), head_best.epoch
    unfreeze_last(det, cfg.unfreeze_last_layers)
    det.model.compile(optimizer=keras.optimizers.Adam(cfg.finetune_lr), loss="binary_crossentropy")
    train, val, adapt = data["source", "train"], data["source", "val"], data["target", "adapt"]
    for epoch in range(1, cfg.finetune_epochs + 1):
        x, y = mixed_epoch(train, adapt if len(adapt) else None, cfg.batch_size, cfg.adapt_share, rng)
        hist = det.model.fit(augment(x, rng, cfg), y, batch_size=cfg.batch_size, shuffle=False, epochs=1, verbose=0)
        p = det.model.predict(val.x, batch_size=cfg.batch_size, verbose=0).ravel()
        val_auc, val_loss = _auc(val.y, p), _bce(val.y, p)
        report(dict(phase="finetune", epoch=cfg.head_epochs + epoch, train_loss=float(hist.history["loss"][-1]),
                    val_auc=val_auc, val_loss=val_loss))
        best.offer(val_auc, val_loss, det.model.get_weights, f"finetune/{epoch}")
    det.model.set_weights(best.weights)
    return (lambda key: det.model.predict(data[key].x, batch_size=cfg.batch_size, verbose=0).ravel()), best.epoch


@dataclass(frozen=True)
class Variant:
    augmentation: str  # the preset from trainables.augment used at train time
    fit: Callable[..., tuple[Scorer, str]]
    description: str


VARIANTS = {
    "v1": Variant("none", fit_v1, "frozen ImageNet Xception + head (Dense 256, Dropout 0.5, sigmoid)"),
    "v2": Variant("paper", fit_v2, "V1, then the last 40 layers at 1e-5 with flip/brightness and target-adapt batches"),
}


def get_variant(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown variant {name!r}; valid: {', '.join(VARIANTS)}") from None


def _score_table(tid: str, spec: dict, split: SplitData, scores: np.ndarray) -> pa.Table:
    n = len(split)
    return pa.table({
        "trial_id": [tid] * n, "variant": [spec["variant"]] * n, "augmentation": [spec["augmentation"]] * n,
        "seed": [int(spec["seed"])] * n, "dataset": split.dataset.tolist(), "domain": [split.domain] * n,
        "split": [split.split] * n, "sample_id": split.sample_id.tolist(), "label": split.y.tolist(),
        "perturbation": ["none"] * n, "level": [0] * n, "score": scores.astype(np.float32),
    }, schema=schema.SCORES)


def _setup_tensorflow(seed: int, cpus: float) -> None:
    import keras
    import tensorflow as tf

    threads = max(1, int(cpus))
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # TF already started in this process (a test calling trials in a row): keep its pools
    for gpu in tf.config.list_physical_devices("GPU"):
        tf.config.experimental.set_memory_growth(gpu, True)  # trials may share a GPU
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def run_trial(spec: dict, run_dir: str, train_cfg: TrainConfig, cpus: float = 1.0, report: Report | None = None) -> pa.Table:
    """Train one trial and write its scores; returns the score table. `spec`: variant, augmentation, seed."""
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from dfsweep.data_pipeline.pipeline import read_crops
    from dfsweep.trainables.augment import get_preset
    from dfsweep.trainables.models import build_detector

    report = report or (lambda metrics: None)
    variant = get_variant(spec["variant"])
    augment = get_preset(spec["augmentation"])
    tid = trial_id(spec["variant"], spec["augmentation"], spec["seed"])
    _setup_tensorflow(int(spec["seed"]), cpus)
    run = schema.RunDir(run_dir)
    crops = read_crops(run)
    data = {key: load_split(crops, *key, train_cfg.input_size_px) for key in LOADED}
    for key in (("source", "train"), ("source", "val")):
        if len(data[key]) == 0:
            raise ValueError(f"{key[0]} {key[1]} split is empty: not enough usable crops")
    rng = np.random.default_rng(int(spec["seed"]))
    det = build_detector(train_cfg.input_size_px, train_cfg.pixel_range, train_cfg.weights, train_cfg.dense_units,
                         train_cfg.dropout)
    scorer, chosen = variant.fit(det, data, train_cfg, rng, augment, report)
    table = pa.concat_tables([_score_table(tid, spec, data[key], scorer(key)) for key in SCORED if len(data[key])])
    run.scores.mkdir(parents=True, exist_ok=True)
    import pyarrow.parquet as pq

    tmp = run.score_file(tid).with_suffix(".tmp")
    pq.write_table(table, tmp)
    tmp.replace(run.score_file(tid))  # atomic: a score file is whole or absent
    report(dict(phase="done", epoch=-1, chosen_epoch=chosen, scores_written=table.num_rows))
    return table


def tune_trainable(config: dict, *, run_dir: str, train_cfg: TrainConfig, cpus: float) -> None:
    """The function Ray Tune runs: config = {"trial": {variant, augmentation, seed}}; metrics go to tune.report."""
    from ray import tune

    run_trial(config["trial"], run_dir, train_cfg, cpus, report=lambda m: tune.report(m))
