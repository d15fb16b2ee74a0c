"""The crops format's one owner: its PNG codec, its reader and its writer, and the same for the degraded test sets.

Every stage that touches face crops goes through here: prepare writes crops/*.parquet (schema.CROPS), trials read
them and write degraded/<key>/<perturbation>-<level>.parquet (schema.DEGRADED), the report reads thumbnails. No
stage reads another stage's module to get at crop pixels.
"""

from __future__ import annotations

from typing import Iterable

import cv2
import numpy as np
import pyarrow as pa

from dfsweep import schema
from dfsweep.storage import Location, parse

SHARD_ROWS = 512  # crops per shard of crops/


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
            (out / f"shard-{shards:05d}.parquet").write_parquet(pa.concat_tables(buffer))
            shards, buffer, buffered = shards + 1, [], 0
    if buffer:
        (out / f"shard-{shards:05d}.parquet").write_parquet(pa.concat_tables(buffer))
    return written


def degraded_table(rows: pa.Table, images: list[bytes], perturbation: str, level: int) -> pa.Table:
    """A degraded set: the identity columns of `rows` (crops or a split's table), the degraded PNGs, the kind and
    level; checked against schema.DEGRADED."""
    n = rows.num_rows
    table = pa.table({name: rows.column(name) for name in ("sample_id", "dataset", "video_id", "domain", "split", "label")})
    table = table.append_column("image", pa.array(images, pa.binary()))
    table = table.append_column("perturbation", pa.array([perturbation] * n, pa.string()))
    table = table.append_column("level", pa.array([int(level)] * n, pa.int32()))
    return schema.validate_table(table, schema.DEGRADED, f"degraded {perturbation}-{level}")


def read_degraded(path: str | Location, domain: str | None = None) -> pa.Table:
    """One degraded set (a path or storage URI), checked against schema.DEGRADED; only `domain`'s rows if given."""
    path = parse(path)
    filters = None if domain is None else [("domain", "=", domain)]
    return schema.validate_table(path.read_parquet(filters=filters), schema.DEGRADED, str(path))
