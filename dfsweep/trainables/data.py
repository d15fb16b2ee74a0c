"""A trial's data, streamed: splits as per-sample identities, images fetched batch by batch, balanced batch plans.

A `SplitData` holds only what identifies its samples (sample_id, label, dataset, video_id: tens of bytes each) and
where each crop lives in crops/ (dfsweep.crops.CropStore); `batch(idx)` fetches, decodes and resizes just those
images, and applies the split's test-time perturbation on the fly (a degraded test set is the clean one plus its
perturbation, made when scored, never stored). Batches are RGB float32 in [0, 255] at the model's input size; the
model does its own scaling. An epoch is a plan of indices (balanced real/fake, the adapt mix) drawn up front;
`batch_dataset` feeds a plan to Keras with a bounded prefetch, in order and with static batch shapes, so a streamed
epoch computes exactly what an in-memory one does.
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass, replace
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dfsweep import crops as crops_format
from dfsweep.perturbations import NONE, get_perturbation

TEST_SETS = (("source", "test"), ("target", "test"))


@dataclass(frozen=True)
class SplitData:
    """One (domain, split) of the crops, sorted by sample_id so nothing depends on shard layout; no pixels held."""

    domain: str
    split: str
    y: np.ndarray  # (n,) int8, 1 = fake
    sample_id: np.ndarray  # (n,) str
    dataset: np.ndarray  # (n,) str
    video_id: np.ndarray  # (n,) str, "" for images
    where: np.ndarray  # (n, 3) int32: file, row group, row of each crop in `store`
    store: crops_format.CropStore
    size_px: int
    perturbation: str = NONE  # a test set's perturbation (perturbations.PERTURBATIONS) and level; clean: "none", 0
    level: int = 0

    def __len__(self) -> int:
        return len(self.y)

    def batch(self, idx: np.ndarray) -> np.ndarray:
        """The images of samples `idx`, in that order: (k, size, size, 3) float32 in [0, 255]."""
        idx = np.asarray(idx)
        w = self.where[idx]
        pngs = self.store.images(w[:, 0], w[:, 1], w[:, 2])
        apply = None if self.perturbation == NONE else get_perturbation(self.perturbation).apply
        out = np.empty((len(idx), self.size_px, self.size_px, 3), np.float32)
        for i, png in enumerate(pngs):
            rgb = crops_format.to_input_size(crops_format.decode_png_rgb(png), self.size_px)
            out[i] = apply(rgb, self.level) if apply else rgb
        return out

    def degraded(self, perturbation: str, level: int) -> "SplitData":
        """The same samples under a test-time perturbation (made batch by batch when read)."""
        get_perturbation(perturbation)
        return replace(self, perturbation=perturbation, level=int(level))


def index_crops(store: crops_format.CropStore) -> pa.Table:
    """Every crop's identity and location, sorted by (domain, split, sample_id)."""
    return store.index().sort_by([("domain", "ascending"), ("split", "ascending"), ("sample_id", "ascending")])


def load_split(index: pa.Table, store: crops_format.CropStore, domain: str, split: str, size_px: int) -> SplitData:
    """The crops of one domain and split (from `index_crops`), sorted by sample_id."""
    rows = index.filter(pc.and_(pc.equal(index.column("domain"), domain), pc.equal(index.column("split"), split)))
    rows = rows.sort_by("sample_id")
    where = np.stack([rows.column(c).to_numpy() for c in ("_file", "_group", "_row")], axis=1).astype(np.int32)
    return SplitData(domain=domain, split=split, y=rows.column("label").to_numpy().astype(np.int8),
                     sample_id=np.asarray(rows.column("sample_id").to_pylist()),
                     dataset=np.asarray(rows.column("dataset").to_pylist()),
                     video_id=np.asarray(rows.column("video_id").to_pylist(), dtype=object),
                     where=where.reshape(-1, 3), store=store, size_px=size_px)


def merge_splits(a: SplitData, b: SplitData, split: str) -> SplitData:
    """The samples of two clean splits of one domain and store as one split named `split`, sorted by sample_id."""
    if (a.domain, a.store, a.size_px) != (b.domain, b.store, b.size_px) or NONE != a.perturbation or NONE != b.perturbation:
        raise ValueError("only clean splits of one domain, crop store and input size can be merged")
    sample_id = np.concatenate([a.sample_id, b.sample_id])
    order = np.argsort(sample_id, kind="stable")
    cat = lambda x, y: np.concatenate([x, y])[order]  # noqa: E731
    return replace(a, split=split, y=cat(a.y, b.y), sample_id=sample_id[order], dataset=cat(a.dataset, b.dataset),
                   video_id=cat(a.video_id, b.video_id), where=cat(a.where, b.where).reshape(-1, 3))


# --- epochs: plans of indices, drawn up front --------------------------------------------------------------------

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


@dataclass(frozen=True)
class EpochPlan:
    """One epoch in batch order: position i is sample `index[i]` of split `source[i]` (0 = train, 1 = adapt)."""

    source: np.ndarray  # (n,) int8
    index: np.ndarray  # (n,) int64
    y: np.ndarray  # (n,) float32
    batch_size: int

    def __len__(self) -> int:
        return len(self.y)


def mixed_epoch(train: SplitData, adapt: SplitData | None, batch_size: int, adapt_share: float,
                rng: np.random.Generator) -> EpochPlan:
    """One epoch of balanced batches where `adapt_share` of each batch comes from the target adapt split: each batch
    is its train part, then its adapt part, fed with shuffle=False."""
    n_batches = max(1, -(-len(train) // batch_size))
    n_adapt = 0 if adapt is None or adapt_share == 0 else max(2, 2 * round(batch_size * adapt_share / 2))
    n_train = batch_size - n_adapt
    ti = balanced_epoch(train.y, n_train, rng, "source train", n_batches).reshape(n_batches, n_train)
    source = np.zeros((n_batches, batch_size), np.int8)
    index = np.zeros((n_batches, batch_size), np.int64)
    y = np.zeros((n_batches, batch_size), np.float32)
    index[:, :n_train], y[:, :n_train] = ti, train.y[ti]
    if n_adapt:
        ai = balanced_epoch(adapt.y, n_adapt, rng, "target adapt", n_batches).reshape(n_batches, n_adapt)
        source[:, n_train:], index[:, n_train:], y[:, n_train:] = 1, ai, adapt.y[ai]
    return EpochPlan(source.ravel(), index.ravel(), y.ravel(), batch_size)


def gather(splits: tuple[SplitData, ...], source: np.ndarray, index: np.ndarray) -> np.ndarray:
    """The images at (source[i], index[i]), in order, each split's fetched in one request."""
    out = None
    for s, split in enumerate(splits):
        at = np.flatnonzero(source == s)
        if not len(at):
            continue
        images = split.batch(index[at])
        if out is None:
            out = np.empty((len(source), *images.shape[1:]), np.float32)
        out[at] = images
    return out


# --- feeding Keras ------------------------------------------------------------------------------------------------

def prefetched(n: int, load: Callable[[int], object], workers: int = 2, depth: int = 2) -> Iterator[object]:
    """load(0), load(1), ... load(n - 1) in order, computed `depth` ahead by `workers` threads (image decoding and
    Parquet reads release the GIL), so at most `depth` + 1 loaded items are held at once."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dfsweep-data") as pool:
        pending = [pool.submit(load, i) for i in range(min(depth, n))]
        for i in range(n):
            if i + depth < n:
                pending.append(pool.submit(load, i + depth))
            yield pending.pop(0).result()


def batch_dataset(n_batches: int, load: Callable[[int], tuple[np.ndarray, np.ndarray]], x_shape: tuple[int, ...],
                  *, workers: int = 2):
    """A tf.data.Dataset of `n_batches` (x, y) batches, batch b being load(b), loaded in order `workers` threads
    ahead (see `prefetched`). Every batch has the static shape `x_shape` (batch size first): Keras compiles the same
    step as for an in-memory array fed with a batch size, and so computes the same numbers (a batch dimension left
    unknown gives other convolution kernels and other rounding: measured, 2e-4 apart after one epoch)."""
    import tensorflow as tf

    def batches():
        yield from prefetched(n_batches, load, workers)

    spec = (tf.TensorSpec(x_shape, tf.float32), tf.TensorSpec(x_shape[:1], tf.float32))
    ds = tf.data.Dataset.from_generator(batches, output_signature=spec)
    return ds.apply(tf.data.experimental.assert_cardinality(n_batches))


def predict_split(model, split: SplitData, batch_size: int, *, workers: int = 2,
                  inputs: Callable[[np.ndarray], np.ndarray] | None = None) -> Iterator[np.ndarray]:
    """The model's outputs on `split`, batch by batch in sample order (batches of batch_size, the last one shorter).
    `inputs` maps sample indices to the model's input (default: the split's images)."""
    n = len(split)
    starts = range(0, n, batch_size)
    fetch = inputs or split.batch
    for x in prefetched(len(starts), lambda b: fetch(np.arange(starts[b], min(starts[b] + batch_size, n))), workers):
        yield np.asarray(model.predict_on_batch(x))
