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


# A failed write leaves nothing behind: no `.NAME.PID.tmp` beside the target and no partial target (issue 13, item 15).

def _disk_full(*args, **kwargs):
    raise OSError(28, "No space left on device")


class _FillsUp:
    """A file object that takes the first half of what it is given, then finds the disk full."""

    def __init__(self, f):
        self._f = f

    def write(self, data):
        self._f.write(bytes(data)[: len(data) // 2])
        self._f.flush()
        _disk_full()

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize("old", [None, b"old bytes"], ids=["new", "replacing"])
def test_a_write_that_fails_midway_leaves_no_temp_file_and_no_partial_target(tmp_path, monkeypatch, old):
    import builtins

    from dfsweep import storage

    loc = parse(tmp_path / "d") / "scores.parquet"
    if old is not None:
        loc.write_bytes(old)
    real_open = builtins.open
    monkeypatch.setattr(storage, "open", lambda *a, **k: _FillsUp(real_open(*a, **k)), raising=False)
    with pytest.raises(OSError, match="No space left"):
        loc.write_bytes(b"x" * 10_000)
    assert _leftovers(tmp_path / "d") == ([] if old is None else ["scores.parquet"])
    assert old is None or Path(loc.path).read_bytes() == old  # the old file whole, not a half-written new one


@pytest.mark.parametrize("fail", ["write", "rename"])
def test_an_upload_that_fails_leaves_no_temp_file_and_no_partial_target(tmp_path, monkeypatch, fail):
    import shutil

    src = tmp_path / "model.keras"
    src.write_bytes(os.urandom(100_000))
    dst = parse(tmp_path / "models") / "m.keras"

    def half_copy(a, b, *args, **kwargs):  # the disk fills up halfway through the copy
        Path(b).write_bytes(Path(a).read_bytes()[:50_000])
        _disk_full()

    if fail == "write":
        monkeypatch.setattr(shutil, "copyfile", half_copy)
    else:
        monkeypatch.setattr(os, "replace", _disk_full)
    with pytest.raises(OSError, match="No space left"):
        dst.upload(src)
    assert _leftovers(tmp_path / "models") == []


@pytest.mark.parametrize("fail", ["block", "finish"])
def test_writing_that_fails_leaves_no_temp_file_and_no_partial_target(where, monkeypatch, tmp_path, fail):
    """block: the code writing through it fails midway; finish: the file cannot be put in place (the rename on a
    disk, the upload to an object store)."""
    import tempfile

    from dfsweep import storage

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # where a remote write stages its file
    (tmp_path / "tmp").mkdir()
    root = parse(where)
    loc = root / "scores" / "t.parquet"
    (root / "scores" / "other.txt").write_text("kept")
    if fail == "finish":
        monkeypatch.setattr(os, "replace", _disk_full)
        monkeypatch.setattr(storage.pafs, "copy_files", _disk_full)
    with pytest.raises(OSError, match="No space left"):
        with loc.writing() as local:
            local.write_bytes(b"part of it")
            if fail == "block":
                _disk_full()  # e.g. a ParquetWriter that finds the disk full after its first row group
    assert [p.name for p in (root / "scores").iterdir()] == ["other.txt"]
    assert _leftovers(tmp_path / "tmp") == []
    if loc.is_local:
        assert not list(Path(loc.parent.path).glob(".*"))


def test_writing_puts_the_whole_file_in_place(where):
    loc = parse(where) / "scores" / "t.parquet"
    with loc.writing() as local:
        local.write_bytes(b"first ")
        with open(local, "ab") as f:
            f.write(b"second")
        assert not loc.exists()  # not there until the block ends
    assert loc.read_bytes() == b"first second"
    assert [p.name for p in loc.parent.iterdir()] == ["t.parquet"]


def test_move_renames_a_file_into_a_new_folder(where):
    root = parse(where)
    src, dst = root / "scores" / "t.parquet", root / "scores" / "_bad" / "t.parquet.20260101T000000.000000Z"
    src.write_bytes(b"cut sho")
    src.move(dst)
    assert not src.exists() and dst.read_bytes() == b"cut sho"
    assert [p.name for p in root.glob("scores/*.parquet")] == []  # set aside: out of every *.parquet listing
