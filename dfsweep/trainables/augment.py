"""Train-time augmentation on RGB float arrays in [0, 255]: each transform applies with its own probability.

Augmentation presets are named here; a trial's `augmentation` is one of these names and is recorded in its scores.
"""

from __future__ import annotations

import numpy as np

from dfsweep.config import TrainConfig


def hflip(batch: np.ndarray, rng: np.random.Generator, p: float) -> np.ndarray:
    """Flip each image left-right with probability p."""
    flip = rng.random(len(batch)) < p
    out = batch.copy()
    out[flip] = out[flip, :, ::-1]
    return out


def brightness(batch: np.ndarray, rng: np.random.Generator, p: float, low: float, high: float) -> np.ndarray:
    """Multiply each image by a factor in [low, high] with probability p (clipped to [0, 255])."""
    hit = rng.random(len(batch)) < p
    factor = np.where(hit, rng.uniform(low, high, len(batch)), 1.0).astype(batch.dtype)
    return np.clip(batch * factor[:, None, None, None], 0, 255)


def _none(batch: np.ndarray, rng: np.random.Generator, cfg: TrainConfig) -> np.ndarray:
    return batch


def _paper(batch: np.ndarray, rng: np.random.Generator, cfg: TrainConfig) -> np.ndarray:
    batch = hflip(batch, rng, cfg.flip_prob)
    return brightness(batch, rng, cfg.brightness_prob, cfg.brightness_min, cfg.brightness_max)


# name -> fn(batch, rng, train_cfg); the paper's V2 uses flip + brightness.
PRESETS = {"none": _none, "paper": _paper}


def get_preset(name: str):
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown augmentation {name!r}; valid: {', '.join(PRESETS)}") from None
