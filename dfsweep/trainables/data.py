"""Crops Parquet -> in-memory arrays per (domain, split), balanced real/fake batches, and the degraded test sets.

Arrays hold RGB float32 pixels in [0, 255] at the model's input size; the model does its own scaling. Crops and
degraded sets are read and written through dfsweep/crops.py, perturbations come from dfsweep/perturbations.py.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dfsweep import crops as crops_format
from dfsweep import schema
from dfsweep.config import TrainConfig
from dfsweep.perturbations import get_perturbation
from dfsweep.storage import Location, parse


@dataclass(frozen=True)
class SplitData:
    domain: str
    split: str
    x: np.ndarray  # (n, size, size, 3) float32 in [0, 255]
    y: np.ndarray  # (n,) int8, 1 = fake
    sample_id: np.ndarray  # (n,) str
    dataset: np.ndarray  # (n,) str
    video_id: np.ndarray | None = None  # (n,) str, "" for images
    perturbation: str = "none"  # a degraded set's kind (perturbations.PERTURBATIONS) and level; clean: "none", 0
    level: int = 0

    def __len__(self) -> int:
        return len(self.y)


def load_split(crops: pa.Table, domain: str, split: str, size_px: int) -> SplitData:
    """The crops of one domain and split, sorted by sample_id so the order never depends on shard layout."""
    rows = crops.filter(pc.and_(pc.equal(crops.column("domain"), domain), pc.equal(crops.column("split"), split)))
    return _split_data(rows.sort_by("sample_id"), domain, split, size_px)


def _split_data(rows: pa.Table, domain: str, split: str, size_px: int, perturbation: str = "none",
                level: int = 0) -> SplitData:
    x = np.empty((rows.num_rows, size_px, size_px, 3), np.float32)
    for i, png in enumerate(rows.column("image").to_pylist()):
        x[i] = crops_format.to_input_size(crops_format.decode_png_rgb(png), size_px)
    return SplitData(domain=domain, split=split, x=x, y=np.asarray(rows.column("label").to_pylist(), np.int8),
                     sample_id=np.asarray(rows.column("sample_id").to_pylist()),
                     dataset=np.asarray(rows.column("dataset").to_pylist()),
                     video_id=np.asarray(rows.column("video_id").to_pylist(), dtype=object),
                     perturbation=perturbation, level=int(level))


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


def degraded_dir(run: schema.RunDir, train_cfg: TrainConfig) -> Location:
    """Where the degraded sets of this run live; keyed by the crops they come from and the input size."""
    crops_key = run.crops_done.read_text().strip() if run.crops_done.exists() else "none"
    key = hashlib.sha256(f"{crops_key}:{train_cfg.input_size_px}".encode()).hexdigest()[:12]
    return run.degraded / key


def build_degraded_sets(run: schema.RunDir, train_cfg: TrainConfig, log=print, out=None) -> list[Location]:
    """Write one Parquet file (schema.DEGRADED) per (perturbation, level) of train.test_perturbations, from the
    test crops resized to the input size first.

    Already-written files are kept (atomic writes, so a file that exists is whole): the sets are made once per
    sweep, shared by every trial, and not remade when the sweep is resumed.
    """
    levels = train_cfg.perturbation_levels()
    out = parse(out) if out is not None else degraded_dir(run, train_cfg)
    todo = [(p, lv) for p, lv in levels if not (out / f"{p}-{lv}.parquet").exists()]
    if not todo:
        return [out / f"{p}-{lv}.parquet" for p, lv in levels]
    crops = crops_format.read_crops(run)
    size = train_cfg.input_size_px
    clean = {}
    for domain, split in TEST_SETS:
        rows = crops.filter(pc.and_(pc.equal(crops.column("domain"), domain), pc.equal(crops.column("split"), split)))
        rows = rows.sort_by("sample_id")
        clean[domain, split] = (rows, _split_data(rows, domain, split, size))
    for pert, level in todo:
        apply = get_perturbation(pert).apply
        parts = [crops_format.degraded_table(rows, [crops_format.encode_png_rgb(apply(x.astype(np.uint8), level))
                                                    for x in d.x], pert, level)
                 for rows, d in clean.values()]
        (out / f"{pert}-{level}.parquet").write_parquet(pa.concat_tables(parts))
    log(f"degraded test sets: {len(todo)} made, {len(levels) - len(todo)} reused, in {out}")
    return [out / f"{p}-{lv}.parquet" for p, lv in levels]


def load_degraded(path, domain: str, size_px: int) -> SplitData:
    """One degraded set (a path or storage URI) of one domain, as SplitData (split 'test', with the set's perturbation
    and level from its columns), sorted by sample_id."""
    table = crops_format.read_degraded(path, domain).sort_by("sample_id")
    kinds = set(zip(table.column("perturbation").to_pylist(), table.column("level").to_pylist()))
    if len(kinds) > 1:
        raise schema.SchemaError(f"{path}: a degraded set holds one perturbation level, this one {sorted(kinds)}")
    perturbation, level = kinds.pop() if kinds else ("none", 0)
    return _split_data(table, domain, "test", size_px, perturbation, level)
