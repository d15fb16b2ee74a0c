"""The shortcut check: a cheap, non-neural variant `cue` scored under the same contract as V1 and V2.

A logistic regression on two 16-bin histograms of each crop: log|Laplacian| (sharpness; catches the resampling
blur and hard seams of pasted faces) and grey-level intensity. If this reaches a high AUC, the benchmark's fakes
can be told apart by a trivial cue, and a detector's AUC there measures the cue as much as the detector.
"""

from __future__ import annotations

import cv2
import numpy as np

LOG_LAPLACIAN_BINS = np.linspace(-3.0, 6.0, 17)  # log|Laplacian| of 8-bit grey images lies mostly in this range
INTENSITY_BINS = np.linspace(0.0, 255.0, 17)
C_GRID = (0.01, 0.1, 1.0, 10.0)  # inverse regularisation strengths tried; the best on source val is kept


def cue_features(x: np.ndarray) -> np.ndarray:
    """(n, 32): per image, the normalised 16-bin histograms of log|Laplacian| and of grey level."""
    out = np.empty((len(x), 32), np.float64)
    for i, img in enumerate(x):
        grey = cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)
        lap = np.log(np.abs(cv2.Laplacian(grey.astype(np.float32), cv2.CV_32F, ksize=3)) + 1e-3)
        h1, _ = np.histogram(np.clip(lap, LOG_LAPLACIAN_BINS[0], LOG_LAPLACIAN_BINS[-1]), LOG_LAPLACIAN_BINS)
        h2, _ = np.histogram(grey, INTENSITY_BINS)
        out[i, :16], out[i, 16:] = h1 / h1.sum(), h2 / h2.sum()
    return out


def split_features(d, batch_size: int = 64) -> np.ndarray:
    """cue_features of a split's images, read batch by batch (32 floats per sample are all that is kept)."""
    parts = [cue_features(d.batch(np.arange(a, min(a + batch_size, len(d))))) for a in range(0, len(d), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, 32))


def fit_cue(ctx):
    """Logistic regression on source train; C chosen on source val (AUC); no Keras model involved."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from dfsweep.trainables.metrics import val_auc as auc

    train, val = ctx.data["source", "train"], ctx.data["source", "val"]
    f_train, f_val = split_features(train), split_features(val)
    best = None
    for c in C_GRID:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
        model.fit(f_train, train.y)
        p = model.predict_proba(f_val)[:, 1]
        val_auc = auc(val.y, p)
        ctx.report(dict(phase="cue", C=c, val_auc=val_auc))
        if best is None or np.nan_to_num(val_auc, nan=-1) > np.nan_to_num(best[0], nan=-1):
            best = (val_auc, c, model)
    ctx.progress.best_epoch, ctx.progress.best_key = f"C={best[1]}", (best[0], 0.0)
    model = best[2]
    return lambda name, d: model.predict_proba(split_features(d))[:, 1]
