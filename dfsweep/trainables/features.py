"""The frozen-backbone feature cache: Xception embeddings computed once per (crops, input size, pixel range,
weights, set) and shared by every trial of every seed (V1, and the head phase of variants that fine-tune).

Files (schema.FEATURE_IDS): features/<key>/<set>.npy, a float32 (n, 2048) array written batch by batch as the
backbone streams over the set, and <set>.ids.parquet, the set's sample_ids in row order (written last: a set whose
ids file exists is whole). A trial reads the rows it needs with positioned reads (FeatureStore), never the whole
array, from a local copy of the file (the file itself on a local or shared disk; a download from a bucket).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow as pa

from dfsweep import schema
from dfsweep.config import TrainConfig
from dfsweep.trainables.data import SplitData, predict_split


class FeatureStore:
    """A local .npy feature file, read row by row (os.pread: nothing mapped, nothing held but the rows asked for)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f)
            self.offset = f.tell()
        if fortran or dtype != np.float32 or len(shape) != 2:
            raise schema.SchemaError(f"{self.path}: expected a C-order float32 (n, d) array, got {dtype} {shape}")
        self.n, self.dim = shape
        self._fd = os.open(self.path, os.O_RDONLY)
        self._row_bytes = self.dim * 4

    def __len__(self) -> int:
        return self.n

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """Rows `idx` in that order: (k, dim) float32; a run of consecutive rows is one read."""
        idx = np.asarray(idx, np.int64)
        out = np.empty((len(idx), self.dim), np.float32)
        start = 0
        while start < len(idx):
            stop = start + 1
            while stop < len(idx) and idx[stop] == idx[stop - 1] + 1:
                stop += 1
            data = os.pread(self._fd, self._row_bytes * (stop - start), self.offset + self._row_bytes * int(idx[start]))
            out[start:stop] = np.frombuffer(data, np.float32).reshape(stop - start, self.dim)
            start = stop
        return out

    def close(self) -> None:
        os.close(self._fd)


def write_features(path: Path, n: int, dim: int, batches: Iterable[np.ndarray]) -> None:
    """An (n, dim) float32 .npy from batches of rows, written as they come."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
                                                 "fortran_order": False, "shape": (n, dim)})
        written = 0
        for b in batches:
            b = np.ascontiguousarray(b, np.float32)
            f.write(b.tobytes())
            written += len(b)
    if written != n:
        raise RuntimeError(f"{path}: wrote {written} feature rows, expected {n}")  # a bug, never a data problem


class FeatureCache:
    """Embeddings of the frozen backbone, keyed by everything that changes them; `close()` drops the trial's local
    copies."""

    def __init__(self, run: schema.RunDir, cfg: TrainConfig, enabled: bool = True) -> None:
        weights = cfg.weights
        if weights not in ("imagenet", "none") and Path(weights).is_file():
            st = Path(weights).stat()
            weights = f"{Path(weights).resolve()}:{st.st_size}:{st.st_mtime_ns}"
        crops = run.crops_done.read_text().strip() if run.crops_done.exists() else ""
        key = json.dumps([crops, cfg.input_size_px, cfg.pixel_range, weights])
        self.dir = run.features / hashlib.sha256(key.encode()).hexdigest()[:16]
        self.enabled = enabled and cfg.weights != "none"  # random weights differ per seed: nothing to share
        self.local = Path(tempfile.mkdtemp(prefix="dfsweep-features-"))
        self.stores: list[FeatureStore] = []

    def _cached(self, name: str, data: SplitData) -> Path | None:
        ids, array = self.dir / f"{name}.ids.parquet", self.dir / f"{name}.npy"
        if not (self.enabled and ids.exists() and array.exists()):
            return None
        table = schema.validate_table(ids.read_parquet(), schema.FEATURE_IDS, str(ids))
        if not np.array_equal(np.asarray(table.column("sample_id").to_pylist()), data.sample_id):
            return None
        if array.is_local:
            return Path(array.path)
        local = self.local / array.name
        with array.local_copy() as copy:
            shutil.copyfile(copy, local)
        return local

    def get(self, det, name: str, data: SplitData, batch_size: int) -> FeatureStore:
        """The embeddings of `data` (set `name`, e.g. "source-train"), from the cache when it holds this set."""
        path = self._cached(name, data)
        if path is None:
            path = self.local / f"{name}.npy"
            dim = int(det.backbone.output_shape[-1])
            write_features(path, len(data), dim, predict_split(det.backbone, data, batch_size))
            if self.enabled:  # atomic writes: concurrent trials may both write the same content
                (self.dir / f"{name}.npy").upload(path)
                (self.dir / f"{name}.ids.parquet").write_parquet(
                    pa.table({"sample_id": data.sample_id.tolist()}, schema=schema.FEATURE_IDS))
        store = FeatureStore(path)
        self.stores.append(store)
        return store

    def close(self) -> None:
        for store in self.stores:
            store.close()
        shutil.rmtree(self.local, ignore_errors=True)
