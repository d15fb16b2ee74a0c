"""Train-time augmentation presets: named chains of random transforms on RGB float batches in [0, 255].

Each image is hit with its transform's probability. A trial's `augmentation` is a preset name (PRESETS), recorded in
its scores; adding one is one function and one entry in PRESETS. The test-time perturbations of the robustness
sets are another registry (dfsweep/perturbations.py); the JPEG and blur transforms here reuse its functions.
"""

from __future__ import annotations

import numpy as np

from dfsweep.config import TrainConfig
from dfsweep.perturbations import blur, jpeg


# --- train-time transforms on float batches -------------------------------------------------------------------------

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


def random_jpeg(batch: np.ndarray, rng: np.random.Generator, p: float, q_min: int, q_max: int) -> np.ndarray:
    """Re-compress each image with probability p at a quality drawn uniformly from [q_min, q_max]."""
    out = batch.copy()
    for i in np.flatnonzero(rng.random(len(batch)) < p):
        out[i] = jpeg(np.clip(batch[i], 0, 255).astype(np.uint8), int(rng.integers(q_min, q_max + 1)))
    return out


def random_blur(batch: np.ndarray, rng: np.random.Generator, p: float, kernels: tuple[int, ...]) -> np.ndarray:
    """Blur each image with probability p with a kernel drawn from `kernels`."""
    out = batch.copy()
    for i in np.flatnonzero(rng.random(len(batch)) < p):
        out[i] = blur(batch[i], int(rng.choice(kernels)))
    return out


def _none(batch: np.ndarray, rng: np.random.Generator, cfg: TrainConfig) -> np.ndarray:
    return batch


def _paper(batch: np.ndarray, rng: np.random.Generator, cfg: TrainConfig) -> np.ndarray:
    batch = hflip(batch, rng, cfg.flip_prob)
    return brightness(batch, rng, cfg.brightness_prob, cfg.brightness_min, cfg.brightness_max)


def _robust(batch: np.ndarray, rng: np.random.Generator, cfg: TrainConfig) -> np.ndarray:
    batch = _paper(batch, rng, cfg)
    batch = random_jpeg(batch, rng, cfg.jpeg_prob, cfg.jpeg_quality_min, cfg.jpeg_quality_max)
    return random_blur(batch, rng, cfg.blur_prob, cfg.blur_kernels_px)


# name -> fn(batch, rng, train_cfg). paper: the paper's V2 (flip + brightness); robust: + JPEG + blur.
PRESETS = {"none": _none, "paper": _paper, "robust": _robust}


def get_preset(name: str):
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown augmentation {name!r}; valid: {', '.join(PRESETS)}") from None
