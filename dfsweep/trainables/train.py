"""The Ray Tune trainable: one trial = one (variant, augmentation, seed).

It trains on source train, selects its epoch on source val only (never on test), and writes one score per
(sample, perturbation, level) of source val, source test and target test, clean and degraded, to
scores/<trial_id>.parquet. Each epoch ends in a Tune checkpoint (weights, optimizer, random state), so a
restarted trial resumes where it stopped. A variant is one entry of VARIANTS.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa

from dfsweep import schema
from dfsweep.config import TrainConfig
from dfsweep.storage import parse
from dfsweep.trainables.data import SplitData, balanced_epoch, mixed_epoch

Report = Callable[..., None]

# (domain, split) pairs a trial loads; scores are written for the SCORED ones (clean), and for the test sets
# degraded by every perturbation level.
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


# --- per-epoch state: the best epoch on source val, and Tune checkpoints ---------------------------------------------

class Progress:
    """Epoch counter, best-on-val bookkeeping and the Tune checkpoint of both.

    `report(metrics, arrays)` ends an epoch: it records the metrics and, through `save`, a checkpoint holding the
    current weights, the optimizer's variables, the best weights so far and the numpy random state. `restored`
    holds what a restarted trial gets back.
    """

    def __init__(self, rng: np.random.Generator, save: Callable[[dict, dict], None], restored: dict | None) -> None:
        self.rng, self.save = rng, save
        self.epoch = 0  # epochs completed, over both phases
        self.best_key, self.best_epoch, self.best_weights = (-np.inf, -np.inf), None, None
        self.restored = restored
        if restored:
            self.epoch = restored["state"]["epoch"]
            self.best_key = tuple(restored["state"]["best_key"])
            self.best_epoch = restored["state"]["best_epoch"]
            self.best_weights = restored["arrays"].get("best")
            rng.bit_generator.state = restored["state"]["rng"]

    def done(self, epoch: int) -> bool:
        """Whether global epoch `epoch` (1-based) was completed before a restart."""
        return epoch <= self.epoch

    def offer(self, val_auc: float, val_loss: float, weights: list, label: str) -> None:
        key = (float(np.nan_to_num(val_auc, nan=-1.0)), -val_loss)
        if key > self.best_key:
            self.best_key, self.best_epoch, self.best_weights = key, label, weights

    def end_epoch(self, metrics: dict, training: dict) -> None:
        """training: the model's current, optimizer and seeds arrays (see _training_state)."""
        self.epoch += 1
        state = dict(epoch=self.epoch, best_key=list(self.best_key), best_epoch=self.best_epoch,
                     rng=self.rng.bit_generator.state)
        self.save(dict(metrics, epoch=self.epoch), dict(state=state, arrays=dict(training, best=self.best_weights)))


def _seeded_layers(model) -> list:
    """Layers with a Keras random-seed generator (the head's Dropout), in a fixed order."""
    found = []
    for layer in model.layers:
        if hasattr(layer, "layers"):
            found += _seeded_layers(layer)
        elif getattr(layer, "seed_generator", None) is not None:
            found.append(layer)
    return found


def _training_state(model) -> dict:
    """What resuming an epoch loop needs besides the numpy rng: weights, Adam's variables, dropout seed states."""
    opt = model.optimizer
    return dict(current=model.get_weights(),
                optimizer=[np.asarray(v.numpy()) for v in opt.variables] if opt.built else [],
                seeds=[np.asarray(layer.seed_generator.state.numpy()) for layer in _seeded_layers(model)])


def _restore_training(model, arrays: dict) -> None:
    model.set_weights(arrays["current"])
    if arrays.get("optimizer"):
        model.optimizer.build(model.trainable_variables)
        for var, val in zip(model.optimizer.variables, arrays["optimizer"]):
            var.assign(val)
    for layer, val in zip(_seeded_layers(model), arrays.get("seeds") or []):
        layer.seed_generator.state.assign(val)


# --- frozen-backbone features, cached on the run's storage ------------------------------------------------------------

class FeatureCache:
    """Embeddings of the frozen backbone, computed once per (crops, input size, pixel range, weights, set) and
    shared by every trial of every seed (V1, and V2's head phase)."""

    def __init__(self, run: schema.RunDir, cfg: TrainConfig, enabled: bool = True) -> None:
        weights = cfg.weights
        if weights not in ("imagenet", "none") and Path(weights).is_file():
            st = Path(weights).stat()
            weights = f"{Path(weights).resolve()}:{st.st_size}:{st.st_mtime_ns}"
        crops = run.crops_done.read_text().strip() if run.crops_done.exists() else ""
        key = json.dumps([crops, cfg.input_size_px, cfg.pixel_range, weights])
        self.dir = run.features / hashlib.sha256(key.encode()).hexdigest()[:16]
        self.enabled = enabled and cfg.weights != "none"  # random weights differ per seed: nothing to share

    def get(self, det, name: str, data: SplitData, batch_size: int) -> np.ndarray:
        path = self.dir / f"{name}.npz"
        if self.enabled and path.exists():
            with np.load(io.BytesIO(path.read_bytes())) as f:
                if np.array_equal(f["sample_id"], data.sample_id):
                    return f["features"]
        feats = det.backbone.predict(data.x, batch_size=batch_size, verbose=0)
        if self.enabled:
            buf = io.BytesIO()
            np.savez(buf, features=feats, sample_id=data.sample_id)
            path.write_bytes(buf.getvalue())  # atomic: concurrent trials may both write the same content
        return feats


# --- the variants ---------------------------------------------------------------------------------------------------

@dataclass
class Context:
    """What a variant's fit gets: the loaded splits, the config, randomness, augmentation, progress, features."""

    data: dict
    cfg: TrainConfig
    rng: np.random.Generator
    augment: Callable
    progress: Progress
    report: Report
    features: FeatureCache


def _train_head(det, ctx: Context) -> Callable[[str, SplitData], np.ndarray]:
    """Train the head on frozen-backbone features (V1, and V2's first phase); restore its best epoch on val.

    Returns a scorer on features: (set name, SplitData) -> probabilities.
    """
    import keras

    cfg, prog = ctx.cfg, ctx.progress
    feat = lambda name, d: ctx.features.get(det, name, d, cfg.batch_size)  # noqa: E731
    train, val = ctx.data["source", "train"], ctx.data["source", "val"]
    f_train, f_val = feat("source-train", train), feat("source-val", val)
    det.head.compile(optimizer=keras.optimizers.Adam(cfg.head_lr), loss="binary_crossentropy")
    if prog.restored and prog.epoch < cfg.head_epochs:  # restarted inside the head phase
        _restore_training(det.head, prog.restored["arrays"])
    for epoch in range(1, cfg.head_epochs + 1):
        if prog.done(epoch):
            continue
        idx = balanced_epoch(train.y, cfg.batch_size, ctx.rng, "source train")
        hist = det.head.fit(f_train[idx], train.y[idx].astype(np.float32), batch_size=cfg.batch_size, shuffle=False,
                            epochs=1, verbose=0)
        p = det.head.predict(f_val, batch_size=256, verbose=0).ravel()
        val_auc, val_loss = _auc(val.y, p), _bce(val.y, p)
        prog.offer(val_auc, val_loss, det.head.get_weights(), f"head/{epoch}")
        metrics = dict(phase="head", train_loss=float(hist.history["loss"][-1]), val_auc=val_auc, val_loss=val_loss)
        prog.end_epoch(metrics, _training_state(det.head))
    det.head.set_weights(prog.best_weights)
    return lambda name, d: det.head.predict(feat(name, d), batch_size=256, verbose=0).ravel()


def fit_v1(det, ctx: Context) -> Callable[[str, SplitData], np.ndarray]:
    """Backbone frozen; the head trains at head_lr on cached features."""
    from dfsweep.trainables.models import freeze_backbone

    freeze_backbone(det)
    return _train_head(det, ctx)


def fit_v2(det, ctx: Context) -> Callable[[str, SplitData], np.ndarray]:
    """The head phase of V1, then the last `unfreeze_last_layers` layers at finetune_lr with augmentation and
    target-adapt batches; the fine-tuning epoch best on source val is kept."""
    import keras

    from dfsweep.trainables.models import freeze_backbone, unfreeze_last

    cfg, prog = ctx.cfg, ctx.progress
    freeze_backbone(det)
    if not prog.restored or prog.epoch < cfg.head_epochs:
        _train_head(det, ctx)
    if len(prog.best_weights) == len(det.head.get_weights()):
        # Fine-tuning starts from the head phase's best epoch. V2's own choice is among its fine-tuning epochs
        # (otherwise a V2 whose fine-tuning never beats that epoch on val would simply be V1 again).
        det.head.set_weights(prog.best_weights)
        if cfg.finetune_epochs:
            prog.best_key, prog.best_epoch = (-np.inf, -np.inf), None
        prog.best_weights = det.model.get_weights()
    unfreeze_last(det, cfg.unfreeze_last_layers, cfg.train_batchnorm)
    det.model.compile(optimizer=keras.optimizers.Adam(cfg.finetune_lr), loss="binary_crossentropy")
    if prog.restored and prog.epoch > cfg.head_epochs:  # restarted inside the fine-tuning phase
        _restore_training(det.model, prog.restored["arrays"])
    train, val, adapt = ctx.data["source", "train"], ctx.data["source", "val"], ctx.data["target", "adapt"]
    for epoch in range(1, cfg.finetune_epochs + 1):
        if prog.done(cfg.head_epochs + epoch):
            continue
        x, y = mixed_epoch(train, adapt if len(adapt) else None, cfg.batch_size, cfg.adapt_share, ctx.rng)
        hist = det.model.fit(ctx.augment(x, ctx.rng, cfg), y, batch_size=cfg.batch_size, shuffle=False, epochs=1,
                             verbose=0)
        p = det.model.predict(val.x, batch_size=cfg.batch_size, verbose=0).ravel()
        val_auc, val_loss = _auc(val.y, p), _bce(val.y, p)
        prog.offer(val_auc, val_loss, det.model.get_weights(), f"finetune/{epoch}")
        metrics = dict(phase="finetune", train_loss=float(hist.history["loss"][-1]), val_auc=val_auc, val_loss=val_loss)
        prog.end_epoch(metrics, _training_state(det.model))
    det.model.set_weights(prog.best_weights)
    return lambda name, d: det.model.predict(d.x, batch_size=cfg.batch_size, verbose=0).ravel()


@dataclass(frozen=True)
class Variant:
    fit: Callable[..., Callable[[str, SplitData], np.ndarray]]
    description: str
    # False: the variant runs once per seed with augmentation "none"; True: once per sweep.augmentations preset.
    augmentation_axis: bool = False
    keras: bool = True  # builds (and exports) a Keras Xception detector


def _fit_cue(det, ctx: Context):
    from dfsweep.trainables.cue import fit_cue

    return fit_cue(det, ctx)


VARIANTS = {
    "v1": Variant(fit_v1, "frozen ImageNet Xception + head (Dense 256, Dropout 0.5, sigmoid); head on cached features"),
    "v2": Variant(fit_v2, "V1, then the last 40 layers at 1e-5 with augmentation and target-adapt batches",
                  augmentation_axis=True),
    "cue": Variant(_fit_cue, "shortcut check: logistic regression on sharpness and intensity histograms", keras=False),
}


def get_variant(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown variant {name!r}; valid: {', '.join(VARIANTS)}") from None


# --- the trial ------------------------------------------------------------------------------------------------------

def _score_table(tid: str, spec: dict, split: SplitData, scores: np.ndarray, perturbation: str = "none",
                 level: int = 0) -> pa.Table:
    n = len(split)
    return pa.table({
        "trial_id": [tid] * n, "variant": [spec["variant"]] * n, "augmentation": [spec["augmentation"]] * n,
        "seed": [int(spec["seed"])] * n, "dataset": split.dataset.tolist(), "domain": [split.domain] * n,
        "split": [split.split] * n, "sample_id": split.sample_id.tolist(), "label": split.y.tolist(),
        "perturbation": [perturbation] * n, "level": [int(level)] * n, "score": scores.astype(np.float32),
        "video_id": [""] * n if split.video_id is None else split.video_id.tolist(),
    }, schema=schema.SCORES)


def export_model(model, run: schema.RunDir, tid: str, meta: dict):
    """The selected model as models/<trial_id>.keras (pixels in [0, 255] -> probability of fake, its own
    preprocessing inside) plus models/<trial_id>.json with the input contract it was built with."""
    path = run.models / f"{tid}.keras"
    with tempfile.TemporaryDirectory(prefix="dfsweep-model-") as tmp:
        local = Path(tmp) / path.name
        model.save(local)  # Keras writes only to a local file
        path.upload(local)
    (run.models / f"{tid}.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "rng"}, indent=2,
                                                       default=str))
    return path


def _setup_tensorflow(seed: int, cpus: float, mixed_precision: str = "off") -> None:
    import keras
    import tensorflow as tf

    threads = max(1, int(cpus))
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # TF already started in this process (a test calling trials in a row): keep its pools
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)  # trials may share a GPU
        except RuntimeError:
            pass
    if gpus and mixed_precision == "auto":
        keras.mixed_precision.set_global_policy("mixed_float16")
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def run_trial(spec: dict, run_dir: str, train_cfg: TrainConfig, cpus: float = 1.0, report: Report | None = None,
              checkpoint: tuple[Callable, dict | None] | None = None, feature_cache: bool = True,
              degraded: list | None = None, private_degraded: bool = False) -> pa.Table:
    """Train one trial and write its scores; returns the score table.

    spec: variant, augmentation, seed. report(metrics) receives every epoch's metrics; checkpoint = (save, restored)
    wires Tune's checkpoints (save(metrics, payload) reports and checkpoints; restored: the payload, or None).
    degraded: the degraded-set files (paths or URIs) to score (default: this run's, made once by the sweep); private_degraded:
    make them afresh in a temporary folder of this trial instead (only to measure what sharing saves).
    """
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from dfsweep.data_pipeline.pipeline import read_crops
    from dfsweep.trainables.augment import get_preset
    from dfsweep.trainables.data import TEST_SETS, load_degraded, load_split
    from dfsweep.trainables.models import build_detector

    report = report or (lambda metrics: None)
    variant = get_variant(spec["variant"])
    tid = trial_id(spec["variant"], spec["augmentation"], spec["seed"])
    _setup_tensorflow(int(spec["seed"]), cpus, train_cfg.mixed_precision)
    run = schema.RunDir(run_dir)
    crops = read_crops(run)
    data = {key: load_split(crops, *key, train_cfg.input_size_px) for key in LOADED}
    for key in (("source", "train"), ("source", "val")):
        if len(data[key]) == 0:
            raise ValueError(f"{key[0]} {key[1]} split is empty: not enough usable crops")
    rng = np.random.default_rng(int(spec["seed"]))
    save, restored = checkpoint if checkpoint else (None, None)
    det = build_detector(train_cfg.input_size_px, train_cfg.pixel_range, train_cfg.weights, train_cfg.dense_units,
                         train_cfg.dropout) if variant.keras else None
    ctx = Context(data=data, cfg=train_cfg, rng=rng, augment=get_preset(spec["augmentation"]),
                  progress=Progress(rng, save or (lambda metrics, payload: report(metrics)), restored),
                  report=report, features=FeatureCache(run, train_cfg, enabled=feature_cache))
    scorer = variant.fit(det, ctx)
    if train_cfg.export_model and det is not None:
        export_model(det.model, run, tid, dict(spec, trial_id=tid, input_size_px=train_cfg.input_size_px,
                                               pixel_range=train_cfg.pixel_range, weights=train_cfg.weights,
                                               chosen_epoch=ctx.progress.best_epoch,
                                               source_val_auc=ctx.progress.best_key[0]))
    tables = [_score_table(tid, spec, data[key], scorer(f"{key[0]}-{key[1]}", data[key])) for key in SCORED
              if len(data[key])]
    private = tempfile.TemporaryDirectory() if private_degraded else None
    if degraded is None:
        from dfsweep.trainables.data import build_degraded_sets

        degraded = build_degraded_sets(run, train_cfg, log=lambda *a: None, out=private.name if private else None)
    for path in map(parse, degraded):
        for domain, _split in TEST_SETS:
            d = load_degraded(path, domain, train_cfg.input_size_px)
            if len(d):
                pert, level = path.stem.split("-")
                tables.append(_score_table(tid, spec, d, scorer(f"{domain}-test-{path.stem}", d), pert, int(level)))
    table = pa.concat_tables(tables)
    if private:
        private.cleanup()
    run.score_file(tid).write_parquet(table)  # atomic: a score file is whole or absent
    report(dict(phase="done", epoch=ctx.progress.epoch, chosen_epoch=ctx.progress.best_epoch,
                scores_written=table.num_rows))
    return table


def _tune_checkpointing() -> tuple[Callable, dict | None]:
    """(save, restored) backed by Tune: save reports metrics with a checkpoint directory; restored reads the last."""
    from ray import tune

    def save(metrics: dict, payload: dict) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "state.json").write_text(json.dumps(payload["state"]))
            arrays = payload["arrays"]
            flat = {f"{group}_{i:04d}": a for group in ("current", "optimizer", "seeds", "best")
                    for i, a in enumerate(arrays.get(group) or [])}
            np.savez(Path(tmp) / "arrays.npz", **flat)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))

    restored = None
    ckpt = tune.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            state = json.loads((Path(d) / "state.json").read_text())
            with np.load(Path(d) / "arrays.npz") as f:
                groups: dict[str, list] = {"current": [], "optimizer": [], "seeds": [], "best": []}
                for name in sorted(f.files):
                    group = name.rsplit("_", 1)[0]
                    groups[group].append(f[name])
        restored = dict(state=state, arrays={k: (v or None) if k == "best" else v for k, v in groups.items()})
    return save, restored


def tune_trainable(config: dict, *, run_dir: str, train_cfg: TrainConfig, cpus: float, feature_cache: bool = True,
                   degraded: list | None = None, private_degraded: bool = False) -> None:
    """The function Ray Tune runs: config = {"trial": {variant, augmentation, seed}}; per-epoch metrics and
    checkpoints go to Tune, and a restarted trial resumes from its last checkpoint."""
    from ray import tune

    run_trial(config["trial"], run_dir, train_cfg, cpus, report=lambda m: tune.report(m),
              checkpoint=_tune_checkpointing(), feature_cache=feature_cache, degraded=degraded,
              private_degraded=private_degraded)
