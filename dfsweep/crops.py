"""The crops format's one owner: its PNG codec, its writer (shards sized for random access), its reader, and random
access to single crops' images (CropStore).

Every stage that touches face crops goes through here: prepare writes crops/*.parquet (schema.CROPS), trials stream
the images they need through a CropStore, the report reads thumbnails. No stage reads another stage's module to get
at crop pixels.
"""

from __future__ import annotations

import threading
from typing import Iterable

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dfsweep import schema
from dfsweep.storage import Location

SHARD_ROWS = 512  # crops per shard of crops/
# Rows per Parquet row group of crops/: a trial fetches a sample's image by reading its row group, so a small group
# bounds what one random access reads (16 crops, ~1 MB at 299 px) while keeping the files' metadata small.
ROW_GROUP_ROWS = 16
# What a trial keeps in memory per crop: its identity (tens of bytes), never its pixels.
IDENTITY_COLUMNS = ("sample_id", "dataset", "domain", "split", "label", "video_id")


def encode_png(bgr: np.ndarray) -> bytes:
    """A BGR uint8 (H, W, 3) image as lossless PNG bytes (OpenCV's channel order, as it decodes files)."""
    ok, buf = cv2.imencode(".png", bgr)
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 3-channel image
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def encode_png_rgb(rgb: np.ndarray) -> bytes:
    """An RGB uint8 (H, W, 3) image as PNG bytes."""
    return encode_png(np.ascontiguousarray(rgb[:, :, ::-1]))


def decode_png_rgb(data: bytes) -> np.ndarray:
    """A crop's PNG bytes as RGB uint8 (H, W, 3); ValueError for bytes that are not an image."""
    try:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    except cv2.error:
        bgr = None
    if bgr is None:
        raise ValueError(f"not a decodable image ({len(data or b'')} bytes)")
    return bgr[:, :, ::-1]


def to_input_size(rgb: np.ndarray, size_px: int) -> np.ndarray:
    """A decoded crop at the model's input size: bilinear resize when its size differs (trials and predict alike)."""
    if rgb.shape[0] != size_px or rgb.shape[1] != size_px:
        rgb = cv2.resize(rgb, (size_px, size_px), interpolation=cv2.INTER_LINEAR)
    return rgb


def read_crops(run: schema.RunDir, columns: list[str] | None = None,
               sample_ids: Iterable[str] | None = None) -> pa.Table:
    """The run's crops (all columns checked against schema.CROPS, or only `columns`), optionally only the rows of
    `sample_ids` (a filter pushed into the Parquet read). FileNotFoundError before prepare has completed them."""
    if not run.crops_done.exists():
        raise FileNotFoundError(f"no complete crops in {run.crops}; run `dfsweep prepare` first")
    filters = None if sample_ids is None else [("sample_id", "in", sorted(set(sample_ids)))]
    table = run.crops.read_parquet(columns=columns, filters=filters)
    return table if columns else schema.validate_table(table, schema.CROPS, str(run.crops))


def write_shards(tables: Iterable[pa.Table], out: Location, *, rows_per_shard: int = SHARD_ROWS) -> int:
    """Write crop tables (schema.CROPS) into out/shard-NNNNN.parquet, about `rows_per_shard` rows each, holding at
    most one shard in memory; out/ is emptied first. Returns the rows written. out/ counts as complete only once
    the caller writes its _DONE marker: readers refuse it before that."""
    out.rmtree()
    out.mkdir()
    buffer: list[pa.Table] = []
    buffered = shards = written = 0
    for table in tables:
        buffer.append(schema.validate_table(table, schema.CROPS, str(out)).select(schema.CROPS.names))
        buffered += table.num_rows
        written += table.num_rows
        if buffered >= rows_per_shard:
            (out / f"shard-{shards:05d}.parquet").write_parquet(pa.concat_tables(buffer), row_group_size=ROW_GROUP_ROWS)
            shards, buffer, buffered = shards + 1, [], 0
    if buffer:
        (out / f"shard-{shards:05d}.parquet").write_parquet(pa.concat_tables(buffer), row_group_size=ROW_GROUP_ROWS)
    return written


def release_freed_arrow_memory() -> None:
    """Have pyarrow hand freed buffers back to the OS: jemalloc, else the system allocator. mimalloc, the default of
    these wheels, keeps the row groups a long epoch has read (measured, bench/scale.py loader at 20,000 crops: peak
    356 MiB with mimalloc, 259 with jemalloc, 267 with the system allocator)."""
    try:
        pa.set_memory_pool(pa.jemalloc_memory_pool())
    except NotImplementedError:
        pa.set_memory_pool(pa.system_memory_pool())


class CropStore:
    """Random access to the images of the run's crops (or of any crops-like Parquet files) without loading them.

    `index()` reads only the identity columns of every file and says where each row lives (file, row group, row);
    `images(where)` reads the row groups holding the rows asked for, image column only, and returns their PNG bytes.
    Memory holds the identities, one open handle per file (its footer: ~20 KB per row group, ~1.2 KB per crop) and
    at most the row groups of one request. Thread-safe: the loading threads share the handles, one lock per file.
    """

    def __init__(self, files: list[Location]) -> None:
        self.files = sorted(files)
        self._handles: dict[int, pq.ParquetFile] = {}
        self._locks = [threading.Lock() for _ in self.files]
        self._opening = threading.Lock()

    @classmethod
    def of_run(cls, run: schema.RunDir) -> "CropStore":
        if not run.crops_done.exists():
            raise FileNotFoundError(f"no complete crops in {run.crops}; run `dfsweep prepare` first")
        return cls(run.crops.glob("*.parquet"))

    def _file(self, i: int) -> pq.ParquetFile:
        with self._opening:
            if i not in self._handles:
                f = self.files[i]
                self._handles[i] = pq.ParquetFile(f.path if f.is_local else f.fs.open_input_file(f.path))
            return self._handles[i]

    def index(self, columns: Iterable[str] = IDENTITY_COLUMNS) -> pa.Table:
        """The identity columns of every row, plus where it lives: `_file`, `_group`, `_row` (int32)."""
        parts = []
        for i in range(len(self.files)):
            pf = self._file(i)
            with self._locks[i]:
                t = pf.read(columns=list(columns))
            sizes = [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)]
            group = np.repeat(np.arange(len(sizes), dtype=np.int32), sizes)
            row = np.concatenate([np.arange(k, dtype=np.int32) for k in sizes]) if sizes else np.zeros(0, np.int32)
            parts.append(t.append_column("_file", pa.array(np.full(t.num_rows, i, np.int32)))
                         .append_column("_group", pa.array(group)).append_column("_row", pa.array(row)))
        if not parts:
            raise FileNotFoundError(f"no crop files among {len(self.files)} paths")
        return pa.concat_tables(parts)

    def images(self, file: np.ndarray, group: np.ndarray, row: np.ndarray, column: str = "image") -> list[bytes]:
        """The PNG bytes of the rows at (file[i], group[i], row[i]), in the order asked; each row group read once."""
        out: list[bytes | None] = [None] * len(file)
        wanted: dict[tuple[int, int], list[int]] = {}
        for i, key in enumerate(zip(file.tolist(), group.tolist())):
            wanted.setdefault(key, []).append(i)
        for (f, g), positions in wanted.items():
            handle = self._file(f)
            with self._locks[f]:
                col = handle.read_row_group(g, columns=[column], use_threads=False).column(0)
            for i in positions:
                out[i] = col[int(row[i])].as_py()
        return out


def scale_crops(run: schema.RunDir, out: schema.RunDir, copies: int, *, splits: Iterable[tuple[str, str]]) -> int:
    """A larger crops set for benchmarks and the memory test: every crop of `splits` ((domain, split) pairs) `copies`
    times, each copy re-encoded with a small brightness jitter and its own sample_id; other crops once. Streams one
    shard at a time; returns the rows written. Writes out's crops/_DONE."""
    import hashlib

    wanted = {tuple(s) for s in splits}

    def rows() -> Iterable[pa.Table]:
        for shard in sorted(run.crops.glob("*.parquet")):
            table = schema.validate_table(shard.read_parquet(), schema.CROPS, str(shard))
            keys = list(zip(table.column("domain").to_pylist(), table.column("split").to_pylist()))
            many = np.array([k in wanted for k in keys])
            yield table.filter(pa.array(~many))
            grown = table.filter(pa.array(many))
            for k in range(copies):
                ids = [hashlib.sha256(f"{sid}:{k}".encode()).hexdigest()[:32] for sid in grown.column("sample_id").to_pylist()]
                factor = 1.0 + 0.03 * ((k % 7) - 3)
                images = [encode_png_rgb(np.clip(decode_png_rgb(png).astype(np.float32) * factor, 0, 255).astype(np.uint8))
                          for png in grown.column("image").to_pylist()]
                copy = grown.set_column(grown.schema.get_field_index("sample_id"), "sample_id", pa.array(ids))
                yield copy.set_column(copy.schema.get_field_index("image"), "image", pa.array(images, pa.binary()))

    written = write_shards(rows(), out.crops)
    out.crops_done.write_text(f"scaled x{copies}\n")
    return written
