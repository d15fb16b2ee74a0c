"""The variants a sweep can run: one entry of VARIANTS each, carrying its whole contract.

A variant's `fit(det, ctx)` trains on source train, selects its epoch on a validation split only (never on test:
source val, or for arms that select on the target, target val) and returns a scorer (set name, SplitData) ->
probabilities of fake. Its `role` is written into every score row, so the report finds the baseline, the candidates
and the diagnostics from the scores alone:
- v1 (baseline): frozen ImageNet Xception + head (Dense, Dropout, sigmoid); the head trains on cached features.
- v2 (candidate): v1's head phase, then the last `unfreeze_last_layers` backbone layers at finetune_lr with
  augmentation and target-adapt batches; its epoch is chosen among the fine-tuning epochs. Its interventions are the
  sweep's grid (arms: augmentation, unfrozen depth, adapt share, selection); with 0 unfrozen layers and no
  augmentation the backbone's output does not change, so that arm fine-tunes the head on cached features.
- cue (diagnostic): a logistic regression on trivial image statistics (trainables/cue.py): the shortcut check.
Adding a variant is one function and one entry here; tests parametrised over VARIANTS cover it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from dfsweep.config import TrainConfig
from dfsweep.trainables.checkpoint import Progress, restore_seeds, restore_training, training_state
from dfsweep.trainables.data import (SplitData, balanced_epoch, batch_dataset, gather, merge_splits, mixed_epoch,
                                     predict_split)
from dfsweep.trainables.features import FeatureCache
from dfsweep.trainables.metrics import bce, val_auc

Scorer = Callable[[str, SplitData], np.ndarray]
HEAD_PREDICT_BATCH = 256  # the head scores 2048-float features: large batches cost nothing


@dataclass
class Context:
    """What a variant's fit gets: the splits, the config (the arm's unfrozen depth and adapt share in it), randomness,
    the augmentation preset, the selection split, progress, features, and how many threads load data."""

    data: dict
    cfg: TrainConfig
    rng: np.random.Generator
    augment: Callable  # augment.PRESETS entry: plan(n, rng, cfg) -> AugmentPlan
    progress: Progress
    report: Callable[..., None]
    features: FeatureCache
    workers: int = 2
    augmentation: str = "none"  # the preset's name
    selection: str = "source_val"  # config.SELECTIONS

    @property
    def val(self) -> tuple[str, SplitData]:
        """The split the trial selects its epochs on, with its feature-set name."""
        domain = "target" if self.selection == "target_val" else "source"
        return f"{domain}-val", self.data[domain, "val"]

    @property
    def adapt(self) -> tuple[str, SplitData]:
        """The target data fine-tuning batches draw from, with its feature-set name: the adapt split, and target val
        too when the trial does not select on it (the whole adapt pool, as before target val existed)."""
        adapt = self.data["target", "adapt"]
        if self.selection == "target_val":
            return "target-adapt", adapt
        return "target-adapt-pool", merge_splits(adapt, self.data["target", "val"], "adapt")


def _concat(parts) -> np.ndarray:
    return np.concatenate([p.ravel() for p in parts]) if parts else np.zeros(0, np.float32)


def run_epoch(model, batches, val_scores: Callable[[], np.ndarray], val_y: np.ndarray, ctx: Context, *,
              phase: str, label: str) -> None:
    """One epoch of `model` over `batches` (a dataset of (x, y) batches, in order), then its AUC and loss on the
    selection split (ctx.val): offered as the best epoch, reported, and checkpointed with the model's training
    state."""
    hist = model.fit(batches, shuffle=False, epochs=1, verbose=0)
    p = val_scores()
    auc, loss = val_auc(val_y, p), bce(val_y, p)
    ctx.progress.offer(auc, loss, model.get_weights(), label)
    metrics = dict(phase=phase, train_loss=float(hist.history["loss"][-1]), val_auc=auc, val_loss=loss)
    ctx.progress.end_epoch(metrics, training_state(model))


def _head_scores(det, store, n: int) -> np.ndarray:
    """The head's outputs on the first n rows of a feature store, in row order."""
    starts = range(0, n, HEAD_PREDICT_BATCH)
    return _concat([np.asarray(det.head.predict_on_batch(store.rows(np.arange(a, min(a + HEAD_PREDICT_BATCH, n)))))
                    for a in starts])


def _features(det, ctx: Context, name: str, data: SplitData):
    return ctx.features.get(det, name, data, ctx.cfg.batch_size)


def _train_head(det, ctx: Context) -> Scorer:
    """Train the head on frozen-backbone features (V1, and V2's first phase); restore its best epoch on the
    selection split.

    Returns a scorer on features.
    """
    import keras

    cfg, prog = ctx.cfg, ctx.progress
    train, (val_name, val) = ctx.data["source", "train"], ctx.val
    f_train, f_val = _features(det, ctx, "source-train", train), _features(det, ctx, val_name, val)
    head_scores = lambda store, n: _head_scores(det, store, n)  # noqa: E731

    det.head.compile(optimizer=keras.optimizers.Adam(cfg.head_lr), loss="binary_crossentropy")
    if prog.restored and prog.epoch < cfg.head_epochs:  # restarted inside the head phase
        restore_training(det.head, prog.restored["arrays"])
    bs = cfg.batch_size
    for epoch in range(1, cfg.head_epochs + 1):
        if prog.done(epoch):
            continue
        idx = balanced_epoch(train.y, bs, ctx.rng, "source train")
        y = train.y[idx].astype(np.float32)
        batches = batch_dataset(len(idx) // bs, lambda b: (f_train.rows(idx[b * bs:(b + 1) * bs]), y[b * bs:(b + 1) * bs]),
                                (bs, f_train.dim), workers=1)
        run_epoch(det.head, batches, lambda: head_scores(f_val, len(val)), val.y, ctx, phase="head",
                  label=f"head/{epoch}")
    det.head.set_weights(prog.best_weights)
    return lambda name, d: head_scores(_features(det, ctx, name, d), len(d))


def fit_v1(det, ctx: Context) -> Scorer:
    """Backbone frozen; the head trains at head_lr on cached features."""
    from dfsweep.trainables.models import freeze_backbone

    freeze_backbone(det)
    return _train_head(det, ctx)


def fit_v2(det, ctx: Context) -> Scorer:
    """The head phase of V1, then the last `unfreeze_last_layers` layers at finetune_lr with augmentation and
    target-adapt batches; the fine-tuning epoch best on the selection split is kept."""
    import keras

    from dfsweep.trainables.models import freeze_backbone, unfreeze_last

    cfg, prog = ctx.cfg, ctx.progress
    freeze_backbone(det)
    if not prog.restored or prog.epoch < cfg.head_epochs:
        _train_head(det, ctx)
    # Nothing unfrozen and nothing augmented: the backbone's output is the cached features, so only the head trains.
    on_features = cfg.unfreeze_last_layers == 0 and ctx.augmentation == "none"
    model = det.head if on_features else det.model
    if prog.epoch == cfg.head_epochs:  # at the phase boundary: best_weights are the head phase's
        # Fine-tuning starts from the head phase's best epoch. V2's own choice is among its fine-tuning epochs
        # (otherwise a V2 whose fine-tuning never beats that epoch on val would simply be V1 again).
        det.head.set_weights(prog.best_weights)
        if cfg.finetune_epochs:
            prog.best_key, prog.best_epoch = (-np.inf, -np.inf), None
        prog.best_weights = model.get_weights()
    if not on_features:
        unfreeze_last(det, cfg.unfreeze_last_layers, cfg.train_batchnorm)
    model.compile(optimizer=keras.optimizers.Adam(cfg.finetune_lr), loss="binary_crossentropy")
    restored_at = prog.restored["state"]["epoch"] if prog.restored else 0  # epochs done before this (re)start
    if restored_at > cfg.head_epochs:  # restarted inside the fine-tuning phase
        restore_training(model, prog.restored["arrays"])
    elif restored_at == cfg.head_epochs:
        # Restarted right after the last head epoch: fine-tuning starts afresh from the head's best weights, but the
        # head's Dropout goes on drawing from where the head phase left its seed state.
        restore_seeds(model, prog.restored["arrays"])
    train, (val_name, val), (adapt_name, adapt) = ctx.data["source", "train"], ctx.val, ctx.adapt
    bs = cfg.batch_size
    if on_features:
        f_train, f_val = _features(det, ctx, "source-train", train), _features(det, ctx, val_name, val)
        f_adapt = _features(det, ctx, adapt_name, adapt) if len(adapt) and cfg.adapt_share else None

        def scores_of(d: SplitData, name: str) -> np.ndarray:
            return _head_scores(det, _features(det, ctx, name, d), len(d))

        val_scores = lambda: _head_scores(det, f_val, len(val))  # noqa: E731
    else:
        def scores_of(d: SplitData, name: str) -> np.ndarray:
            return _concat(list(predict_split(det.model, d, bs, workers=ctx.workers)))

        val_scores = lambda: scores_of(val, val_name)  # noqa: E731

    for epoch in range(1, cfg.finetune_epochs + 1):
        if prog.done(cfg.head_epochs + epoch):
            continue
        plan = mixed_epoch(train, adapt if len(adapt) else None, bs, cfg.adapt_share, ctx.rng)
        if on_features:
            def load(b: int, plan=plan) -> tuple[np.ndarray, np.ndarray]:
                sl = slice(b * bs, (b + 1) * bs)
                x = np.empty((bs, f_train.dim), np.float32)
                for s, store in enumerate((f_train, f_adapt)):
                    at = np.flatnonzero(plan.source[sl] == s)
                    if len(at):
                        x[at] = store.rows(plan.index[sl][at])
                return x, plan.y[sl]

            batches = batch_dataset(len(plan) // bs, load, (bs, f_train.dim), workers=1)
        else:
            aug = ctx.augment(len(plan), ctx.rng, cfg)

            def load(b: int, plan=plan, aug=aug) -> tuple[np.ndarray, np.ndarray]:
                sl = slice(b * bs, (b + 1) * bs)
                x = gather((train, adapt), plan.source[sl], plan.index[sl])
                return aug.apply(x, sl.start), plan.y[sl]

            batches = batch_dataset(len(plan) // bs, load, (bs, train.size_px, train.size_px, 3), workers=ctx.workers)
        run_epoch(model, batches, val_scores, val.y, ctx, phase="finetune", label=f"finetune/{epoch}")
    model.set_weights(prog.best_weights)
    return lambda name, d: scores_of(d, name)


def fit_cue(det, ctx: Context) -> Scorer:
    """The shortcut check (trainables/cue.py); no Keras model involved."""
    from dfsweep.trainables.cue import fit_cue as fit

    return fit(ctx)


@dataclass(frozen=True)
class Variant:
    fit: Callable[..., Scorer]
    role: str  # schema.ROLES: baseline (what candidates are tested against), candidate, diagnostic (never tested)
    # False: the variant runs once per seed (arm "none"); True: once per arm of the sweep's grid (sweep.arms or the
    # axes sweep.augmentations, unfreeze_layers, adapt_shares, selections).
    arms: bool = False
    keras: bool = True  # builds (and exports) a Keras Xception detector


VARIANTS = {
    "v1": Variant(fit_v1, "baseline"),
    "v2": Variant(fit_v2, "candidate", arms=True),
    "cue": Variant(fit_cue, "diagnostic", keras=False),
}


def get_variant(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown variant {name!r}; valid: {', '.join(VARIANTS)}") from None


def trial_id(variant: str, arm: str, seed: int) -> str:
    return f"{variant}-{arm}-s{seed}"
