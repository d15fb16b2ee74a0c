"""Train-time augmentation presets: named chains of random transforms on RGB float batches in [0, 255].

Each image is hit with its transform's probability. A preset draws all of an epoch's random choices up front, per
sample and in a fixed order (`plan(n, rng, cfg)`), and applies them batch by batch (`AugmentPlan.apply`), so a
streamed epoch gets exactly the augmentation an in-memory one would, whatever order its batches are loaded in.
A trial's `augmentation` is a preset name (PRESETS), recorded in its scores; adding one is one function and one
entry in PRESETS. The test-time perturbations are another registry (dfsweep/perturbations.py); the JPEG and blur
transforms here reuse its functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from dfsweep.config import TrainConfig
from dfsweep.perturbations import blur, jpeg


# --- transforms: draw(n, rng, ...) -> per-sample choices; apply(batch, choices) -> batch ---------------------------

def draw_flip(n: int, rng: np.random.Generator, p: float) -> np.ndarray:
    return rng.random(n) < p


def apply_flip(batch: np.ndarray, flip: np.ndarray) -> np.ndarray:
    """Flip the images whose `flip` is set left-right."""
    out = batch.copy()
    out[flip] = out[flip, :, ::-1]
    return out


def draw_brightness(n: int, rng: np.random.Generator, p: float, low: float, high: float) -> np.ndarray:
    hit = rng.random(n) < p
    return np.where(hit, rng.uniform(low, high, n), 1.0)


def apply_brightness(batch: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """Multiply each image by its factor (1 where not hit), clipped to [0, 255]."""
    return np.clip(batch * factor.astype(batch.dtype)[:, None, None, None], 0, 255)


def draw_per_hit(n: int, rng: np.random.Generator, p: float, pick: Callable[[], int]) -> np.ndarray:
    """0 where not hit; where hit (probability p), `pick()`'s value, drawn in sample order."""
    out = np.zeros(n, np.int64)
    for i in np.flatnonzero(rng.random(n) < p):
        out[i] = pick()
    return out


def apply_jpeg(batch: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """Re-compress the images with a quality > 0 at that quality."""
    out = batch.copy()
    for i in np.flatnonzero(quality):
        out[i] = jpeg(np.clip(batch[i], 0, 255).astype(np.uint8), int(quality[i]))
    return out


def apply_blur(batch: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Blur the images with a kernel > 0 with that kernel."""
    out = batch.copy()
    for i in np.flatnonzero(kernel):
        out[i] = blur(batch[i], int(kernel[i]))
    return out


@dataclass(frozen=True)
class AugmentPlan:
    """An epoch's augmentation: (apply, per-sample choices) steps, applied in order to any slice of the epoch."""

    steps: tuple[tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], np.ndarray], ...]

    def apply(self, batch: np.ndarray, start: int) -> np.ndarray:
        """Augment `batch`, the epoch's samples start .. start + len(batch)."""
        for fn, choices in self.steps:
            batch = fn(batch, choices[start:start + len(batch)])
        return batch


# --- presets: plan(n, rng, cfg) -> AugmentPlan ---------------------------------------------------------------------

def _none(n: int, rng: np.random.Generator, cfg: TrainConfig) -> AugmentPlan:
    return AugmentPlan(())


def _paper(n: int, rng: np.random.Generator, cfg: TrainConfig) -> AugmentPlan:
    flip = draw_flip(n, rng, cfg.flip_prob)
    factor = draw_brightness(n, rng, cfg.brightness_prob, cfg.brightness_min, cfg.brightness_max)
    return AugmentPlan(((apply_flip, flip), (apply_brightness, factor)))


def _robust(n: int, rng: np.random.Generator, cfg: TrainConfig) -> AugmentPlan:
    paper = _paper(n, rng, cfg)
    quality = draw_per_hit(n, rng, cfg.jpeg_prob, lambda: int(rng.integers(cfg.jpeg_quality_min, cfg.jpeg_quality_max + 1)))
    kernel = draw_per_hit(n, rng, cfg.blur_prob, lambda: int(rng.choice(cfg.blur_kernels_px)))
    return AugmentPlan(paper.steps + ((apply_jpeg, quality), (apply_blur, kernel)))


# name -> plan(n, rng, train_cfg). paper: the paper's V2 (flip + brightness); robust: + JPEG + blur.
PRESETS = {"none": _none, "paper": _paper, "robust": _robust}


def get_preset(name: str) -> Callable[[int, np.random.Generator, TrainConfig], AugmentPlan]:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown augmentation {name!r}; valid: {', '.join(PRESETS)}") from None


def augment(batch: np.ndarray, rng: np.random.Generator, cfg: TrainConfig, preset: str) -> np.ndarray:
    """A whole batch through a preset at once (plan, then apply): for tests and one-off use."""
    return get_preset(preset)(len(batch), rng, cfg).apply(batch, 0)
