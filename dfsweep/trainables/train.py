"""The Ray Tune trainable: one trial = one (variant, arm, seed) -> scores/<trial_id>.parquet.

`run_trial` loads the splits, lets the variant (trainables/variants.py) train with its arm's settings (augmentation,
unfrozen depth, adapt share) and select its epoch on its selection split (source val, or target val), and writes one
score per (sample, perturbation, level) of source val, source test and target test, clean and degraded, with the
variant's role and the arm. Each epoch ends in a Tune checkpoint (trainables/checkpoint.py), so a
restarted trial resumes where it stopped. The selected model is exported with its model card.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa

from dfsweep import schema
from dfsweep.config import TrainConfig
from dfsweep.trainables.checkpoint import tune_checkpointing
from dfsweep.trainables.data import SplitData
from dfsweep.trainables.metrics import val_auc
from dfsweep.trainables.variants import trial_id

Report = Callable[..., None]

# (domain, split) pairs a trial loads; scores are written for the SCORED ones (clean), and for the test sets
# degraded by every perturbation level.
LOADED = (("source", "train"), ("source", "val"), ("source", "test"), ("target", "adapt"), ("target", "val"),
          ("target", "test"))
SCORED = (("source", "val"), ("source", "test"), ("target", "test"))


def _score_table(tid: str, spec: dict, role: str, split: SplitData, scores: np.ndarray) -> pa.Table:
    n = len(split)
    arm = spec.get("arm", spec["augmentation"])
    return pa.table({
        "trial_id": [tid] * n, "variant": [spec["variant"]] * n, "augmentation": [spec["augmentation"]] * n,
        "seed": [int(spec["seed"])] * n, "dataset": split.dataset.tolist(), "domain": [split.domain] * n,
        "split": [split.split] * n, "sample_id": split.sample_id.tolist(), "label": split.y.tolist(),
        "perturbation": [split.perturbation] * n, "level": [split.level] * n, "score": scores.astype(np.float32),
        "video_id": [""] * n if split.video_id is None else split.video_id.tolist(), "role": [role] * n,
        "arm": [arm] * n,
    }, schema=schema.SCORES)


def crop_settings(run: schema.RunDir) -> dict | None:
    """The crop settings prepare wrote beside the crops (crops/_SETTINGS.json), or None for crops made before."""
    return json.loads(run.crop_settings.read_text()) if run.crop_settings.exists() else None


def export_model(model, run: schema.RunDir, tid: str, card: dict):
    """The selected model as models/<trial_id>.keras (pixels in [0, 255] -> probability of fake, its own
    preprocessing inside) plus its model card models/<trial_id>.json (schema.MODEL_CARD_KEYS): what it is and the
    input contract (crop settings, input size, pixel range) that `predict` follows."""
    card = schema.validate_model_card(card, f"model card of {tid}")
    path = run.models / f"{tid}.keras"
    with tempfile.TemporaryDirectory(prefix="dfsweep-model-") as tmp:
        local = Path(tmp) / path.name
        model.save(local)  # Keras writes only to a local file
        path.upload(local)
    (run.models / f"{tid}.json").write_text(json.dumps(card, indent=2, default=str))
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
              checkpoint: tuple[Callable, dict | None] | None = None, feature_cache: bool = True) -> pa.Table:
    """Train one trial and write its scores; returns the score table (read back from the file).

    spec: variant, augmentation, seed, and the arm's id and settings (arm, unfreeze_layers, adapt_share, selection,
    finetune_epochs, finetune_lr: orchestrator/sweep.plan_trials; where left out: the augmentation, train_cfg's and
    source val). report(metrics) receives every epoch's metrics; checkpoint = (save, restored)
    wires Tune's checkpoints (save(metrics, payload) reports and checkpoints; restored: the payload, or None).
    feature_cache: share frozen-backbone features through the run's features/ (off only to measure what it saves).
    Crops stream from crops/ batch by batch; the test sets are degraded on the fly by each perturbation level of
    train.test_perturbations; the score file is written split by split and appears whole at the end.
    """
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import pyarrow.parquet as pq

    from dfsweep.crops import CropStore, release_freed_arrow_memory
    from dfsweep.trainables.augment import get_preset
    from dfsweep.trainables.checkpoint import Progress
    from dfsweep.trainables.data import TEST_SETS, index_crops, load_split
    from dfsweep.trainables.features import FeatureCache
    from dfsweep.trainables.models import build_detector
    from dfsweep.trainables.variants import Context, get_variant

    report = report or (lambda metrics: None)
    variant = get_variant(spec["variant"])
    tid = trial_id(spec["variant"], spec.get("arm", spec["augmentation"]), spec["seed"])
    train_cfg = dataclasses.replace(
        train_cfg, unfreeze_last_layers=int(spec.get("unfreeze_layers", train_cfg.unfreeze_last_layers)),
        adapt_share=float(spec.get("adapt_share", train_cfg.adapt_share)),
        finetune_epochs=int(spec.get("finetune_epochs", train_cfg.finetune_epochs)),
        finetune_lr=float(spec.get("finetune_lr", train_cfg.finetune_lr)))
    selection = spec.get("selection", "source_val")
    _setup_tensorflow(int(spec["seed"]), cpus, train_cfg.mixed_precision)
    run = schema.RunDir(run_dir)
    release_freed_arrow_memory()
    store = CropStore.of_run(run)
    index = index_crops(store)
    data = {key: load_split(index, store, *key, train_cfg.input_size_px) for key in LOADED}
    del index
    for key in (("source", "train"), ("source", "val")):
        if len(data[key]) == 0:
            raise ValueError(f"{key[0]} {key[1]} split is empty: not enough usable crops")
    if selection == "target_val" and len(set(data["target", "val"].y.tolist())) < 2:
        raise ValueError(f"trial {tid} selects on target val, which holds {len(data['target', 'val'])} crops of "
                         f"{len(set(data['target', 'val'].y.tolist()))} class(es): raise prepare.target_val_fraction "
                         "(or add target data)")
    rng = np.random.default_rng(int(spec["seed"]))
    save, restored = checkpoint if checkpoint else (None, None)
    det = build_detector(train_cfg.input_size_px, train_cfg.pixel_range, train_cfg.weights, train_cfg.dense_units,
                         train_cfg.dropout) if variant.keras else None
    features = FeatureCache(run, train_cfg, enabled=feature_cache)
    ctx = Context(data=data, cfg=train_cfg, rng=rng, augment=get_preset(spec["augmentation"]),
                  progress=Progress(rng, save or (lambda metrics, payload: report(metrics)), restored),
                  report=report, features=features, workers=max(1, min(4, int(cpus))),
                  augmentation=spec["augmentation"], selection=selection)
    try:
        scorer = variant.fit(det, ctx)
        if train_cfg.export_model and det is not None:
            selection_auc = ctx.progress.best_key[0]
            source_val = data["source", "val"]
            export_model(det.model, run, tid, dict(
                trial_id=tid, variant=spec["variant"], augmentation=spec["augmentation"], seed=int(spec["seed"]),
                role=variant.role, input_size_px=train_cfg.input_size_px, pixel_range=train_cfg.pixel_range,
                weights=train_cfg.weights, chosen_epoch=ctx.progress.best_epoch,
                source_val_auc=(selection_auc if selection == "source_val"
                                else val_auc(source_val.y, scorer("source-val", source_val))),
                crop=crop_settings(run), arm=spec.get("arm", spec["augmentation"]),
                unfreeze_layers=train_cfg.unfreeze_last_layers, adapt_share=train_cfg.adapt_share,
                selection=selection, selection_auc=selection_auc))
        sets = [(f"{key[0]}-{key[1]}", data[key]) for key in SCORED]
        sets += [(f"{domain}-test-{pert}-{level}", data[domain, split].degraded(pert, level))
                 for pert, level in train_cfg.perturbation_levels() for domain, split in TEST_SETS]
        rows = 0
        with run.score_file(tid).writing() as local:  # a score file is whole or absent
            with pq.ParquetWriter(local, schema.SCORES) as writer:
                for name, split in sets:
                    if len(split):
                        table = _score_table(tid, spec, variant.role, split, scorer(name, split))
                        writer.write_table(table)
                        rows += table.num_rows
    finally:
        features.close()
    report(dict(phase="done", epoch=ctx.progress.epoch, chosen_epoch=ctx.progress.best_epoch, scores_written=rows))
    return run.score_file(tid).read_parquet()


def progress_line(tid: str, metrics: dict) -> str:
    """One report of a trial as a line of its log: `[v2-paper-s5] epoch 3 (finetune): train_loss 0.412, ...`."""
    rest = dict(metrics)
    phase, epoch = rest.pop("phase", "report"), rest.pop("epoch", None)
    head = (f"epoch {epoch} ({phase})" if phase in ("head", "finetune")
            else f"{phase} after epoch {epoch}" if epoch is not None else phase)
    return f"[{tid}] {head}: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                           for k, v in rest.items())


def tune_trainable(config: dict, *, run_dir: str, train_cfg: TrainConfig, cpus: float, feature_cache: bool = True) -> None:
    """The function Ray Tune runs: config = {"trial": {variant, augmentation, seed, resume_from}}; per-epoch metrics
    and checkpoints go to Tune. A trial Tune retries resumes from its last checkpoint; one an interrupted sweep left
    unfinished, from the newest of `resume_from` (orchestrator.sweep.earlier_checkpoints) that reads back.

    Every report is also printed, one line each, to the trial's own stdout: Ray keeps it in the trial actor's log
    (the dashboard's Actors page shows it; the driver's console does not, as Ray is started with log_to_driver off)."""
    from ray import tune

    spec = config["trial"]
    tid = trial_id(spec["variant"], spec["augmentation"], spec["seed"])
    earlier = [(int(epoch), path) for epoch, path in spec.get("resume_from") or []]
    save, restored = tune_checkpointing(earlier, schema.RunDir(run_dir).tune)
    start = f"after epoch {restored['state']['epoch']}" if restored else "from the start"
    print(f"[{tid}] trial {spec['variant']}, augmentation {spec['augmentation']}, seed {spec['seed']}: {start}",
          flush=True)

    def report(metrics: dict) -> None:
        print(progress_line(tid, metrics), flush=True)
        tune.report(metrics)

    def save_and_say(metrics: dict, payload: dict) -> None:
        print(progress_line(tid, metrics), flush=True)
        save(metrics, payload)

    run_trial(spec, run_dir, train_cfg, cpus, report=report, checkpoint=(save_and_say, restored),
              feature_cache=feature_cache)


TRIAL_ACTOR = "DfsweepTrial"  # the class of every trial's actor: the dashboard's Class, the process `ray::DfsweepTrial…`


def tune_trial_class(trainable) -> type:
    """Tune's own class for a function trainable (tune_trainable, as wrapped by tune.with_parameters and
    tune.with_resources), whose actors' repr is their trial id: Ray records an actor's custom __repr__ when it starts
    and the dashboard lists it (Actors page, Repr column; tasks are named `<trial id>.train`), where Tune's plain
    wrapper shows every trial as `ImplicitFunc` named after the function. `wrap_function` is what Tune applies to a
    function itself (a DeveloperAPI in Ray 2.60)."""
    from ray.tune.trainable.function_trainable import wrap_function

    class DfsweepTrial(wrap_function(trainable)):
        def __repr__(self) -> str:
            spec = (self.config or {}).get("trial") or {}
            return str(spec.get("trial_id") or self.trial_name)

    DfsweepTrial.__qualname__ = DfsweepTrial.__name__ = TRIAL_ACTOR  # not `tune_trial_class.<locals>.DfsweepTrial`
    return DfsweepTrial
