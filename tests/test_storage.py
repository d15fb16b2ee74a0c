"""storage.Location on a local disk and on S3 (a moto server on loopback), and the cluster storage check."""

import os
from pathlib import Path

import pyarrow as pa
import pytest

from dfsweep import schema
from dfsweep.storage import Location, StorageError, check_cluster_storage, mount_type, parse


@pytest.fixture(params=["local", "s3"])
def where(request, tmp_path):
    """The same tests on a local folder and on a bucket prefix."""
    if request.param == "local":
        return str(tmp_path / "store")
    bucket = request.getfixturevalue("s3_bucket")
    return f"s3://{bucket}/some/prefix"


def test_paths_and_uris_parse_to_locations(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rel = parse("runs/a")
    assert rel.is_local and str(rel) == str(tmp_path / "runs" / "a")  # made absolute: trials run elsewhere
    assert parse(f"file://{tmp_path}/x") == parse(tmp_path / "x")
    assert os.fspath(parse(tmp_path)) == str(tmp_path)
    assert (rel / "scores" / "t.parquet").name == "t.parquet" and (rel / "t.parquet").stem == "t"
    assert (rel / "scores").parent == rel


def test_round_trips_and_listing(where):
    root = parse(where)
    table = pa.table({"a": [1, 2, 3]})
    (root / "d" / "one.parquet").write_parquet(table)
    (root / "d" / "two.parquet").write_parquet(table.slice(0, 1))
    (root / "d" / "_DONE").write_text("sig\n")
    (root / "e" / "sub" / "x.txt").write_bytes(b"\x00\x01")
    assert str(root).startswith("s3://") != root.is_local
    assert [p.name for p in (root / "d").glob("*.parquet")] == ["one.parquet", "two.parquet"]
    assert [p.name for p in root.glob("e/*/x.txt")] == ["x.txt"]
    assert (root / "d").read_parquet().num_rows == 4  # a folder of parts; _DONE is not data
    assert (root / "d" / "_DONE").read_text() == "sig\n" and (root / "e" / "sub" / "x.txt").read_bytes() == b"\x00\x01"
    assert (root / "d").is_dir() and (root / "d" / "one.parquet").is_file() and not (root / "nothing").exists()
    assert root.glob("nothing/*") == [] and (root / "nothing").iterdir() == []
    (root / "d" / "_DONE").unlink()
    (root / "d" / "_DONE").unlink(missing_ok=True)
    assert not (root / "d" / "_DONE").exists()
    (root / "d").rmtree()
    assert not (root / "d").exists() and not (root / "d" / "one.parquet").exists()


def test_local_files_for_keras_go_up_and_come_back(where, tmp_path):
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(3_000_000))
    dst = parse(where) / "models" / "m.keras"
    dst.upload(src)
    with dst.local_copy() as local:
        assert Path(local).read_bytes() == src.read_bytes()
    assert not list(dst.parent.glob(".*"))  # no temporary file left beside it


def test_an_interrupted_local_write_leaves_the_old_file_whole(tmp_path, monkeypatch):
    loc = parse(tmp_path) / "scores.parquet"
    loc.write_parquet(pa.table({"a": [1]}))

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        loc.write_parquet(pa.table({"a": [2, 3]}))
    assert loc.read_parquet().column("a").to_pylist() == [1]


def test_remote_locations_are_not_local_paths(s3_bucket):
    loc = parse(f"s3://{s3_bucket}/x")
    with pytest.raises(TypeError, match="not on a local disk"):
        os.fspath(loc)


def test_a_run_dir_on_s3_names_its_files_there(s3_bucket):
    run = schema.RunDir(f"s3://{s3_bucket}/runs/one")
    assert str(run.score_file("v1-none-s0")) == f"s3://{s3_bucket}/runs/one/scores/v1-none-s0.parquet"
    assert run.crops_done.path == f"{s3_bucket}/runs/one/crops/_DONE"


def test_an_unknown_scheme_is_a_clear_error():
    with pytest.raises(StorageError, match="cannot open storage 'nosuch://bucket/x'"):
        parse("nosuch://bucket/x")


MOUNTS = """\
/dev/nvme0n1p1 / ext4 rw,relatime 0 0
fs-1.efs.amazonaws.com:/ /mnt/efs nfs4 rw,vers=4.1 0 0
/dev/nvme1n1 /mnt/efs/local ext4 rw 0 0
tmpfs /tmp tmpfs rw 0 0
"""


def test_mount_type_takes_the_deepest_mount_point():
    assert mount_type("/mnt/efs/runs/a", MOUNTS) == "nfs4"
    assert mount_type("/mnt/efs/local/a", MOUNTS) == "ext4"
    assert mount_type("/mnt/efsx/a", MOUNTS) == "ext4"  # a prefix of the name is not a parent folder
    assert mount_type("/home/me", MOUNTS) == "ext4"


def _node(addr: str, host: str, alive: bool = True) -> dict:
    return {"NodeManagerAddress": addr, "NodeManagerHostname": host, "Alive": alive}


def test_node_local_storage_is_refused_on_a_multi_machine_cluster(s3_bucket):
    one_machine = [_node("10.0.0.1", "head"), _node("10.0.0.1", "head")]  # two Ray nodes on one machine
    two_machines = [_node("10.0.0.1", "head"), _node("10.0.0.2", "gpu-1")]
    dead_other = [_node("10.0.0.1", "head"), _node("10.0.0.2", "gpu-1", alive=False)]
    local = parse("/home/ray/runs/x")
    check_cluster_storage(local, one_machine, mounts_text=MOUNTS)
    check_cluster_storage(local, dead_other, mounts_text=MOUNTS)
    with pytest.raises(StorageError, match=r"/home/ray/runs/x is on this machine's own disk \(ext4\).*2 machines"):
        check_cluster_storage(local, two_machines, mounts_text=MOUNTS)
    check_cluster_storage(local, two_machines, shared=True, mounts_text=MOUNTS)  # --shared-storage
    check_cluster_storage(parse("/mnt/efs/runs/x"), two_machines, mounts_text=MOUNTS)  # NFS
    check_cluster_storage(parse(f"s3://{s3_bucket}/runs/x"), two_machines, mounts_text=MOUNTS)
    assert isinstance(parse(f"s3://{s3_bucket}/runs/x"), Location)


def test_glob_steps_over_files_on_the_way(where):
    root = parse(where)
    (root / "a" / "marker").write_text("x")
    (root / "a" / "t1" / "result.json").write_text("{}")
    assert [p.name for p in root.glob("a/*/result.json")] == ["result.json"]
