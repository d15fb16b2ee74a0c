"""The two numbers a trial selects its epoch by, on source val: AUC (sklearn's) and binary cross-entropy.

The report's statistics live in dfsweep/verdict/stats.py; a trial only needs these two, and takes them from here.
"""

from __future__ import annotations

import numpy as np


def val_auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC, nan when `y` holds one class only."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")


def bce(y: np.ndarray, p: np.ndarray) -> float:
    """Mean binary cross-entropy of probabilities `p` against 0/1 labels `y` (clipped at 1e-7)."""
    p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
