"""The crops format's one owner: PNG codec, shard writer, reader (refusing incomplete crops), degraded sets."""

import numpy as np
import pyarrow as pa
import pytest

from dfsweep import crops, schema


def _crop_rows(n: int, start: int = 0) -> pa.Table:
    rng = np.random.default_rng(start)
    images = [crops.encode_png_rgb(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)) for _ in range(n)]
    return pa.table({
        "sample_id": [f"s{start + i:04d}" for i in range(n)], "dataset": ["d"] * n, "domain": ["source"] * n,
        "label": pa.array([i % 2 for i in range(n)], pa.int8()), "split": ["test"] * n, "image": images,
        "height": pa.array([8] * n, pa.int32()), "width": pa.array([8] * n, pa.int32()),
        "box": pa.array([[0.0, 0.0, 8.0, 8.0]] * n, pa.list_(pa.float32(), 4)),
        "face_prob": pa.array([0.99] * n, pa.float32()),
        "landmarks": pa.array([[1.0] * 10] * n, pa.list_(pa.float32(), 10)), "n_faces": pa.array([1] * n, pa.int16()),
        "phash": [b"\x00" * 32] * n, "path": [f"/x/{i}.png" for i in range(n)], "video_id": [""] * n,
        "frame_index": pa.array([-1] * n, pa.int32())})


def test_png_round_trip_is_lossless_and_bad_bytes_are_a_value_error():
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(crops.decode_png_rgb(crops.encode_png_rgb(rgb)), rgb)
    np.testing.assert_array_equal(crops.decode_png_rgb(crops.encode_png(rgb[:, :, ::-1].copy())), rgb)
    for bad in (b"", b"not a png"):
        with pytest.raises(ValueError, match="not a decodable image"):
            crops.decode_png_rgb(bad)


def test_to_input_size_resizes_only_when_needed():
    rgb = np.zeros((10, 10, 3), np.uint8)
    assert crops.to_input_size(rgb, 10) is rgb and crops.to_input_size(rgb, 6).shape == (6, 6, 3)


def test_shards_hold_about_rows_per_shard_and_reader_refuses_incomplete_crops(tmp_path):
    run = schema.RunDir(tmp_path)
    written = crops.write_shards((_crop_rows(3, 10 * k) for k in range(5)), run.crops, rows_per_shard=6)
    assert written == 15 and sorted(p.name for p in run.crops.glob("*.parquet")) == [
        "shard-00000.parquet", "shard-00001.parquet", "shard-00002.parquet"]  # 6 + 6 + 3 rows
    with pytest.raises(FileNotFoundError, match="run `dfsweep prepare` first"):
        crops.read_crops(run)
    run.crops_done.write_text("x\n")
    assert crops.read_crops(run).num_rows == 15
    some = crops.read_crops(run, columns=["sample_id"], sample_ids=["s0001", "s0041", "missing"])
    assert sorted(some.column("sample_id").to_pylist()) == ["s0001", "s0041"]


def test_degraded_sets_follow_their_schema(tmp_path):
    rows = _crop_rows(4)
    table = crops.degraded_table(rows, [bytes(rows.column("image")[i].as_py()) for i in range(4)], "noise", 10)
    path = tmp_path / "noise-10.parquet"
    import pyarrow.parquet as pq

    pq.write_table(table, path)
    back = crops.read_degraded(path, "source")
    assert back.schema.names[: len(schema.DEGRADED)] == schema.DEGRADED.names and back.num_rows == 4
    assert set(back.column("level").to_pylist()) == {10} and crops.read_degraded(path, "target").num_rows == 0
