"""Per-epoch state of a trial and its Tune checkpoints: the epoch counter, the best epoch on source val, and what a
restarted trial needs to continue exactly where it stopped (weights, Adam's variables, dropout seed states, the numpy
random state).
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np


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
        """training: the model's current, optimizer and seeds arrays (see training_state)."""
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


def training_state(model) -> dict:
    """What resuming an epoch loop needs besides the numpy rng: weights, Adam's variables, dropout seed states."""
    opt = model.optimizer
    return dict(current=model.get_weights(),
                optimizer=[np.asarray(v.numpy()) for v in opt.variables] if opt.built else [],
                seeds=[np.asarray(layer.seed_generator.state.numpy()) for layer in _seeded_layers(model)])


def restore_training(model, arrays: dict) -> None:
    model.set_weights(arrays["current"])
    if arrays.get("optimizer"):
        model.optimizer.build(model.trainable_variables)
        for var, val in zip(model.optimizer.variables, arrays["optimizer"]):
            var.assign(val)
    restore_seeds(model, arrays)


def restore_seeds(model, arrays: dict) -> None:
    """Only the dropout seed states: what a phase that starts afresh (a new optimizer, weights it chooses itself)
    still carries over from the phase before."""
    for layer, val in zip(_seeded_layers(model), arrays.get("seeds") or []):
        layer.seed_generator.state.assign(val)


def tune_checkpointing(earlier: list[tuple[int, str]] = (), tune_dir=None) -> tuple[Callable, dict | None]:
    """(save, restored) backed by Tune: save reports metrics with a checkpoint directory; restored is the payload of
    Tune's last checkpoint of this trial (a retry within the sweep), else of the first of `earlier` ((epoch, path
    under tune_dir), newest first: checkpoints an interrupted sweep left) that reads back whole, else None."""
    from ray import tune

    def save(metrics: dict, payload: dict) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "state.json").write_text(json.dumps(payload["state"]))
            arrays = payload["arrays"]
            flat = {f"{group}_{i:04d}": a for group in ("current", "optimizer", "seeds", "best")
                    for i, a in enumerate(arrays.get(group) or [])}
            np.savez(Path(tmp) / "arrays.npz", **flat)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))

    ckpt = tune.get_checkpoint()
    if ckpt is not None:
        return save, _read_checkpoint(ckpt)
    for _, path in earlier:
        loc = tune_dir / path
        try:
            return save, _read_checkpoint(tune.Checkpoint(loc.path, filesystem=loc.fs))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):  # cut short: the one before it
            continue
    return save, None


def _read_checkpoint(ckpt) -> dict:
    """The payload of one checkpoint directory (state.json, arrays.npz); raises if either does not read back."""
    with ckpt.as_directory() as d:
        state = json.loads((Path(d) / "state.json").read_text())
        with np.load(Path(d) / "arrays.npz") as f:
            groups: dict[str, list] = {"current": [], "optimizer": [], "seeds": [], "best": []}
            for name in sorted(f.files):
                group = name.rsplit("_", 1)[0]
                groups[group].append(f[name])
    return dict(state=state, arrays={k: (v or None) if k == "best" else v for k, v in groups.items()})
