"""The frozen-backbone feature cache: Xception embeddings computed once per (crops, input size, pixel range,
weights, set) and shared by every trial of every seed (V1, and the head phase of variants that fine-tune).

Files: features/<key>/<set>.npz (schema.FEATURES_NPZ_KEYS), written atomically: concurrent trials may both write
the same content.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np

from dfsweep import schema
from dfsweep.config import TrainConfig
from dfsweep.trainables.data import SplitData


class FeatureCache:
    """Embeddings of the frozen backbone, keyed by everything that changes them."""

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
        """The embeddings of `data` (set `name`, e.g. "source-train"), from the cache when it holds this set."""
        path = self.dir / f"{name}.npz"
        if self.enabled and path.exists():
            with np.load(io.BytesIO(path.read_bytes())) as f:
                if np.array_equal(f["sample_id"], data.sample_id):
                    return f["features"]
        feats = det.backbone.predict(data.x, batch_size=batch_size, verbose=0)
        if self.enabled:
            buf = io.BytesIO()
            np.savez(buf, features=feats, sample_id=data.sample_id)
            path.write_bytes(buf.getvalue())
        return feats
