"""Crops Parquet -> in-memory arrays per (domain, split), and balanced real/fake batches.

Arrays hold RGB float32 pixels in [0, 255] at the model's input size; the model does its own scaling.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dfsweep.data_pipeline.faces import decode_png_rgb


@dataclass(frozen=True)
class SplitData:
    domain: str
    split: str
    x: np.ndarray  # (n, size, size, 3) float32 in [0, 255]
    y: np.ndarray  # (n,) int8, 1 = fake
    sample_id: np.ndarray  # (n,) str
    dataset: np.ndarray  # (n,) str
    video_id: np.ndarray | None = None  # (n,) str, "" for images

    def __len__(self) -> int:
        return len(self.y)


def load_split(crops: pa.Table, domain: str, split: str, size_px: int) -> SplitData:
    """The crops of one domain and split, sorted by sample_id so the order never depends on shard layout."""
    rows = crops.filter(pc.and_(pc.equal(crops.column("domain"), domain), pc.equal(crops.column("split"), split)))
    rows = rows.sort_by("sample_id")
    x = np.empty((rows.num_rows, size_px, size_px, 3), np.float32)
    for i, png in enumerate(rows.column("image").to_pylist()):
        rgb = decode_png_rgb(png)
        if rgb.shape[0] != size_px or rgb.shape[1] != size_px:
            rgb = cv2.resize(rgb, (size_px, size_px), interpolation=cv2.INTER_LINEAR)
        x[i] = rgb
    return SplitData(domain=domain, split=split, x=x, y=np.asarray(rows.column("label").to_pylist(), np.int8),
                     sample_id=np.asarray(rows.column("sample_id").to_pylist()),
                     dataset=np.asarray(rows.column("dataset").to_pylist()),
                     video_id=np.asarray(rows.column("video_id").to_pylist(), dtype=object))


def _class_indices(y: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    real, fake = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
    if len(real) == 0 or len(fake) == 0:
        raise ValueError(f"{what} needs both classes for balanced batches; has {len(real)} real and {len(fake)} fake")
    return real, fake


def _draw(pool: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k indices from pool: a shuffled pass over it, repeated (oversampling) when k exceeds its size."""
    reps = -(-k // len(pool))
    return np.concatenate([rng.permutation(pool) for _ in range(reps)])[:k]


def balanced_epoch(y: np.ndarray, batch_size: int, rng: np.random.Generator, what: str = "train",
                   n_batches: int | None = None) -> np.ndarray:
    """Indices for one epoch of batches with exactly batch_size/2 real and batch_size/2 fake each, flattened."""
    real, fake = _class_indices(y, what)
    half = batch_size // 2
    n_batches = n_batches or max(1, -(-len(y) // batch_size))
    r, f = _draw(real, half * n_batches, rng), _draw(fake, half * n_batches, rng)
    batches = [rng.permutation(np.concatenate([r[b * half:(b + 1) * half], f[b * half:(b + 1) * half]]))
               for b in range(n_batches)]
    return np.concatenate(batches)


def mixed_epoch(train: SplitData, adapt: SplitData | None, batch_size: int, adapt_share: float,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One epoch of balanced batches where `adapt_share` of each batch comes from the target adapt split.

    Returns (x, y) in batch order, to be fed with shuffle=False.
    """
    n_batches = max(1, -(-len(train) // batch_size))
    n_adapt = 0 if adapt is None or adapt_share == 0 else max(2, 2 * round(batch_size * adapt_share / 2))
    n_train = batch_size - n_adapt
    ti = balanced_epoch(train.y, n_train, rng, "source train", n_batches).reshape(n_batches, n_train)
    xs, ys = [], []
    ai = None
    if n_adapt:
        ai = balanced_epoch(adapt.y, n_adapt, rng, "target adapt", n_batches).reshape(n_batches, n_adapt)
    for b in range(n_batches):
        xb, yb = [train.x[ti[b]]], [train.y[ti[b]]]
        if ai is not None:
            xb.append(adapt.x[ai[b]])
            yb.append(adapt.y[ai[b]])
        xs.append(np.concatenate(xb))
        ys.append(np.concatenate(yb))
    return np.concatenate(xs), np.concatenate(ys).astype(np.float32)


# --- degraded test sets: made once per sweep, read by every trial --------------------------------------------------

TEST_SETS = (("source", "test"), ("target", "test"))


def perturbation_levels(train_cfg) -> list[tuple[str, int]]:
    """(perturbation, level) pairs of the robustness sets, in the config's order."""
    return ([("jpeg", int(q)) for q in train_cfg.test_jpeg_qualities]
            + [("blur", int(k)) for k in train_cfg.test_blur_kernels_px])


def degraded_dir(run, train_cfg):
    """Where the degraded sets of this run live (a storage Location); keyed by the crops they come from and the
    input size."""
    import hashlib

    crops_key = run.crops_done.read_text().strip() if run.crops_done.exists() else "none"
    key = hashlib.sha256(f"{crops_key}:{train_cfg.input_size_px}".encode()).hexdigest()[:12]
    return run.degraded / key


def build_degraded_sets(run, train_cfg, log=print, out=None) -> list:
    """Write one Parquet file per (perturbation, level) of the test crops, resized to the input size first.

    Already-written files are kept (atomic writes, so a file that exists is whole): the sets are made once per
    sweep, shared by every trial, and not remade when the sweep is resumed.
    """
    from dfsweep.data_pipeline.faces import encode_png
    from dfsweep.data_pipeline.pipeline import read_crops
    from dfsweep.storage import parse
    from dfsweep.trainables.augment import PERTURBATIONS

    levels = perturbation_levels(train_cfg)
    out = parse(out) if out is not None else degraded_dir(run, train_cfg)
    todo = [(p, lv) for p, lv in levels if not (out / f"{p}-{lv}.parquet").exists()]
    if not todo:
        return [out / f"{p}-{lv}.parquet" for p, lv in levels]
    crops = read_crops(run)
    size = train_cfg.input_size_px
    clean = {key: load_split(crops, *key, size) for key in TEST_SETS}
    for pert, level in todo:
        fn = PERTURBATIONS[pert]
        parts = []
        for (domain, split), d in clean.items():
            images = [encode_png(np.ascontiguousarray(fn(x.astype(np.uint8), level)[:, :, ::-1])) for x in d.x]
            parts.append(pa.table({"sample_id": d.sample_id.tolist(), "dataset": d.dataset.tolist(),
                                   "video_id": pa.array(d.video_id.tolist(), pa.string()),
                                   "domain": [domain] * len(d), "split": [split] * len(d), "label": d.y.tolist(),
                                   "image": pa.array(images, pa.binary()), "perturbation": [pert] * len(d),
                                   "level": pa.array([level] * len(d), pa.int32())}))
        (out / f"{pert}-{level}.parquet").write_parquet(pa.concat_tables(parts))
    log(f"degraded test sets: {len(todo)} made, {len(levels) - len(todo)} reused, in {out}")
    return [out / f"{p}-{lv}.parquet" for p, lv in levels]


def load_degraded(path, domain: str, size_px: int) -> SplitData:
    """One degraded set (a path or storage URI) of one domain, as SplitData (split 'test'), sorted by sample_id."""
    from dfsweep.storage import parse

    table = parse(path).read_parquet()
    table = table.filter(pc.equal(table.column("domain"), domain)).sort_by("sample_id")
    x = np.empty((table.num_rows, size_px, size_px, 3), np.float32)
    for i, png in enumerate(table.column("image").to_pylist()):
        x[i] = decode_png_rgb(png)
    return SplitData(domain=domain, split="test", x=x, y=np.asarray(table.column("label").to_pylist(), np.int8),
                     sample_id=np.asarray(table.column("sample_id").to_pylist()),
                     dataset=np.asarray(table.column("dataset").to_pylist()),
                     video_id=np.asarray(table.column("video_id").to_pylist(), dtype=object))
