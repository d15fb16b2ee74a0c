"""The crops format's one owner: PNG codec, shard writer, reader (refusing incomplete crops), random access."""

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


def test_crop_store_fetches_single_images_by_location_in_any_order(tmp_path):
    run = schema.RunDir(tmp_path)
    crops.write_shards((_crop_rows(20, 100 * k) for k in range(3)), run.crops, rows_per_shard=30)
    run.crops_done.write_text("x\n")
    import pyarrow.parquet as pq

    assert {pq.ParquetFile(str(f)).metadata.row_group(0).num_rows for f in run.crops.glob("*.parquet")} == {
        crops.ROW_GROUP_ROWS}  # small row groups: a random access reads few neighbours
    store = crops.CropStore.of_run(run)
    index = store.index()
    assert index.num_rows == 60 and set(crops.IDENTITY_COLUMNS) <= set(index.column_names)
    assert "image" not in index.column_names  # the index holds identities and locations, never pixels
    full = crops.read_crops(run)
    truth = dict(zip(full.column("sample_id").to_pylist(), full.column("image").to_pylist()))
    pick = np.random.default_rng(1).permutation(60)[:25]
    where = [index.column(c).to_numpy()[pick] for c in ("_file", "_group", "_row")]
    got = store.images(*where)
    assert got == [truth[index.column("sample_id")[int(i)].as_py()] for i in pick]
    with pytest.raises(FileNotFoundError, match="run `dfsweep prepare` first"):
        crops.CropStore.of_run(schema.RunDir(tmp_path / "empty"))
