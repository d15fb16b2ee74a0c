"""The test-time perturbations of the robustness sets: one registry entry each, carrying its whole contract.

A perturbation degrades one RGB uint8 image at an integer level (JPEG quality, blur kernel, noise sigma). Its entry
says what the level means and which way is harsher, so the degraded sets (trainables), the config
(`train.test_perturbations`) and every report table, figure and caption (verdict) take it from here. Adding one is
one function and one entry in PERTURBATIONS; tests parametrised over the registry cover it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

NONE = "none"  # the `perturbation` of clean score rows (level 0)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Re-compress as JPEG at `quality` (1-100) and decode again."""
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]


def blur(img: np.ndarray, kernel_px: int) -> np.ndarray:
    """Gaussian blur with an odd kernel of `kernel_px` pixels (sigma from the kernel size, as OpenCV derives it)."""
    if kernel_px % 2 == 0 or kernel_px < 1:
        raise ValueError(f"blur kernel must be a positive odd number of pixels, got {kernel_px}")
    return cv2.GaussianBlur(img, (kernel_px, kernel_px), 0)


def noise(img: np.ndarray, sigma: int) -> np.ndarray:
    """Additive Gaussian noise of standard deviation `sigma` (on 0-255), rounded and clipped to uint8.

    The noise is drawn from a generator seeded by the image's own pixels and sigma, so a degraded set is the same
    whatever order or process makes it (and two different images never share a noise pattern by construction).
    """
    if sigma < 0:
        raise ValueError(f"noise sigma must be >= 0, got {sigma}")
    img = np.ascontiguousarray(img, dtype=np.uint8)
    digest = hashlib.sha256(img.tobytes() + f"{img.shape}:{int(sigma)}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "big"))
    noisy = img.astype(np.float32) + rng.normal(0.0, float(sigma), img.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Perturbation:
    """One kind of degradation and what its integer level means."""

    apply: Callable[[np.ndarray, int], np.ndarray]  # (RGB uint8 image, level) -> RGB uint8 image
    quantity: str  # what the level measures, for axis labels and captions: "JPEG quality"
    unit: str  # "" when the quantity has none
    harsher: str  # "lower" or "higher": which way the level degrades more
    default_levels: tuple[int, ...]  # train.test_perturbations' default for this kind
    valid: Callable[[int], bool]
    valid_text: str  # what `valid` accepts, for the config's error message

    def severity(self, level: int) -> int:
        """A number that grows as the level gets harsher (for ordering tables and curves)."""
        return -level if self.harsher == "lower" else level

    @property
    def axis_label(self) -> str:
        unit = f", {self.unit}" if self.unit else ""
        return f"{self.quantity}{unit} ({self.harsher} is harsher)"


PERTURBATIONS: dict[str, Perturbation] = {
    "jpeg": Perturbation(jpeg, "JPEG quality", "", "lower", (95, 80, 60, 40, 20), lambda q: 1 <= q <= 100,
                         "qualities in [1, 100]"),
    "blur": Perturbation(blur, "blur kernel", "px", "higher", (3, 5, 9), lambda k: k >= 1 and k % 2 == 1,
                         "odd kernel sizes >= 1"),
    "noise": Perturbation(noise, "Gaussian noise sigma", "on 0-255", "higher", (5, 10, 20), lambda s: 1 <= s <= 255,
                          "sigmas in [1, 255]"),
}


def get_perturbation(name: str) -> Perturbation:
    try:
        return PERTURBATIONS[name]
    except KeyError:
        raise ValueError(f"unknown perturbation {name!r}; valid: {', '.join(PERTURBATIONS)}") from None


def order_key(perturbation: str, level: int) -> tuple[int, int]:
    """Clean first, then the kinds in registry order, each from mild to harsh; unknown kinds (old files) last."""
    if perturbation == NONE:
        return (-1, 0)
    names = list(PERTURBATIONS)
    if perturbation not in PERTURBATIONS:
        return (len(names), level)
    return (names.index(perturbation), PERTURBATIONS[perturbation].severity(level))
