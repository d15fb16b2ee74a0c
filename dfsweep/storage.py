"""Where a run's files live: a local folder, or any filesystem pyarrow opens by URI (s3://, gs://, hdfs://).

`Location` is a path on a pyarrow filesystem with the few pathlib operations dfsweep needs, so one code path serves a
laptop folder, an NFS mount and a bucket. Every write is atomic: a temporary file renamed into place on a disk, one
object PUT of the finished bytes on an object store (an object is whole or absent; a process killed mid-upload leaves
nothing). A Location crosses to Ray workers as its string (`str(loc)`, a path or a URI) and is parsed again there,
so credentials come from each node's own environment, never from a pickled object.

S3 credentials and region come from the usual AWS variables, files or instance role. `AWS_ENDPOINT_URL_S3` or
`AWS_ENDPOINT_URL` (which pyarrow itself does not read) point s3:// at another S3-compatible server: MinIO, moto.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

# Mount types whose files every node of a cluster sees at the same path (a node-local disk is none of these).
SHARED_MOUNT_TYPES = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "glusterfs", "ceph",
                      "cephfs", "9p", "fuse.sshfs", "fuse.s3fs", "fuse.gcsfuse", "fuse.juicefs", "fuse.mountpoint-s3",
                      "fuse.goofys", "efs", "fuse.rclone", "fuse.glusterfs", "fuse.cephfs")


class StorageError(ValueError):
    """A storage location that cannot serve this run (a node-local path on a multi-machine cluster, a bad URI)."""


class Location:
    """A file or folder on a pyarrow filesystem; `str()` gives the local path or the URI."""

    __slots__ = ("fs", "path", "scheme")

    def __init__(self, fs: pafs.FileSystem, path: str, scheme: str = "") -> None:
        self.fs, self.path, self.scheme = fs, path.rstrip("/") or "/", scheme

    # --- naming -----------------------------------------------------------------------------------------------------
    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def __str__(self) -> str:
        return self.path if self.is_local else f"{self.scheme}://{self.path}"

    def __repr__(self) -> str:
        return f"Location({str(self)!r})"

    def __fspath__(self) -> str:
        """Only a local Location is an os.PathLike: code that needs a real file must ask for `local_copy`."""
        if not self.is_local:
            raise TypeError(f"{self} is not on a local disk")
        return self.path

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Location) and (self.scheme, self.path) == (other.scheme, other.path)

    def __hash__(self) -> int:
        return hash((self.scheme, self.path))

    def __lt__(self, other: Location) -> bool:
        return (self.scheme, self.path) < (other.scheme, other.path)

    def __truediv__(self, name: str) -> Location:
        return Location(self.fs, posixpath.join(self.path, str(name)), self.scheme)

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def stem(self) -> str:
        return posixpath.splitext(self.name)[0]

    @property
    def suffix(self) -> str:
        return posixpath.splitext(self.name)[1]

    @property
    def parent(self) -> Location:
        return Location(self.fs, posixpath.dirname(self.path), self.scheme)

    # --- questions --------------------------------------------------------------------------------------------------
    def _type(self) -> pafs.FileType:
        return self.fs.get_file_info(self.path).type

    def exists(self) -> bool:
        return self._type() != pafs.FileType.NotFound

    def is_dir(self) -> bool:
        return self._type() == pafs.FileType.Directory

    def is_file(self) -> bool:
        return self._type() == pafs.FileType.File

    def iterdir(self) -> list[Location]:
        """Direct children, sorted by name; none when the folder does not exist or is a file."""
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True))
        except NotADirectoryError:
            return []
        return sorted((Location(self.fs, i.path, self.scheme) for i in infos), key=lambda loc: loc.path)

    def glob(self, pattern: str) -> list[Location]:
        """Children matching a pattern of `/`-separated fnmatch parts (`*` never crosses a `/`), sorted."""
        found = [self]
        for part in pattern.split("/"):
            found = [c for loc in found for c in loc.iterdir() if fnmatch.fnmatchcase(c.name, part)]
        return sorted(found, key=lambda loc: loc.path)

    # --- reading ----------------------------------------------------------------------------------------------------
    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.path) as f:
            return f.read()

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def read_parquet(self, columns: list[str] | None = None, filters=None) -> pa.Table:
        """One Parquet file, or every Parquet file of a folder (names starting with `_` or `.` are not data)."""
        return pq.read_table(self.path, filesystem=self.fs, columns=columns, filters=filters)

    # --- writing (atomic) -------------------------------------------------------------------------------------------
    def mkdir(self, parents: bool = True, exist_ok: bool = True) -> None:
        if self.is_local:
            Path(self.path).mkdir(parents=parents, exist_ok=exist_ok)
        # An object store has no folders: a key's prefix exists once a file is written under it.

    def _tmp_path(self) -> str:
        return posixpath.join(posixpath.dirname(self.path), f".{self.name}.{os.getpid()}.tmp")

    def write_bytes(self, data: bytes) -> None:
        if self.is_local:
            self.parent.mkdir()
            tmp = self._tmp_path()
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                os.replace(tmp, self.path)
            finally:
                if os.path.exists(tmp):  # a failed write leaves nothing behind
                    os.unlink(tmp)
        else:
            with self.fs.open_output_stream(self.path) as f:  # the object appears whole when the stream closes
                f.write(data)

    def write_text(self, text: str, encoding: str = "utf-8") -> None:
        self.write_bytes(text.encode(encoding))

    def write_parquet(self, table: pa.Table, *, row_group_size: int | None = None) -> None:
        buf = pa.BufferOutputStream()
        pq.write_table(table, buf, row_group_size=row_group_size)
        self.write_bytes(buf.getvalue().to_pybytes())

    @contextmanager
    def writing(self) -> Iterator[Path]:
        """A local file to write this one through, piece by piece: it appears here whole when the block ends
        (renamed into place, or uploaded in one piece), and never when the block raises (the partial file is removed)."""
        if self.is_local:
            self.parent.mkdir()
            tmp = Path(self._tmp_path())
            try:
                yield tmp
                os.replace(tmp, self.path)
            finally:
                tmp.unlink(missing_ok=True)
            return
        with tempfile.TemporaryDirectory(prefix="dfsweep-") as d:
            tmp = Path(d) / self.name
            yield tmp
            self.upload(tmp)

    def move(self, dst: Location) -> None:
        """Rename this file to `dst` on the same filesystem (an object store copies, then deletes)."""
        if self.is_local:
            dst.parent.mkdir()
            os.replace(self.path, dst.path)
        else:
            self.fs.move(self.path, dst.path)

    def unlink(self, missing_ok: bool = False) -> None:
        if missing_ok and not self.exists():
            return
        self.fs.delete_file(self.path)

    def rmtree(self) -> None:
        """Delete a folder and everything below it; nothing happens when it does not exist."""
        if self.is_dir():
            self.fs.delete_dir(self.path)

    # --- local files for libraries that need one (Keras models) -----------------------------------------------------
    def upload(self, local: str | Path) -> None:
        """Copy a local file here, atomically (local: temporary name then rename; object store: one upload)."""
        if self.is_local:
            self.parent.mkdir()
            tmp = self._tmp_path()
            try:
                shutil.copyfile(local, tmp)
                os.replace(tmp, self.path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        else:
            pafs.copy_files(str(local), self.path, source_filesystem=pafs.LocalFileSystem(),
                            destination_filesystem=self.fs)

    @contextmanager
    def local_copy(self) -> Iterator[Path]:
        """A local path holding this file: itself on a local disk, else a temporary download (removed after)."""
        if self.is_local:
            yield Path(self.path)
            return
        with tempfile.TemporaryDirectory(prefix="dfsweep-") as tmp:
            dst = Path(tmp) / self.name
            pafs.copy_files(self.path, str(dst), source_filesystem=self.fs,
                            destination_filesystem=pafs.LocalFileSystem())
            yield dst


def _s3(uri: str) -> tuple[pafs.FileSystem, str]:
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        return pafs.FileSystem.from_uri(uri)  # resolves the bucket's region
    parts = urlsplit(uri)
    ep = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    fs = pafs.S3FileSystem(endpoint_override=ep.netloc, scheme=ep.scheme or "https",
                           region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1")
    return fs, (parts.netloc + parts.path).rstrip("/")


def parse(where: str | os.PathLike | Location) -> Location:
    """A Location from a local path (made absolute: trials run in other folders and on other nodes), a file:// URI,
    or any URI pyarrow knows (s3://bucket/prefix, gs://bucket/prefix, hdfs://...)."""
    if isinstance(where, Location):
        return where
    text = os.fspath(where) if not isinstance(where, str) else where
    scheme = urlsplit(text).scheme if "://" in text else ""
    if scheme in ("", "file"):
        local = urlsplit(text).path if scheme else text
        return Location(pafs.LocalFileSystem(), str(Path(local).expanduser().resolve()))
    try:
        fs, path = _s3(text) if scheme == "s3" else pafs.FileSystem.from_uri(text)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        raise StorageError(f"cannot open storage {text!r}: {exc}") from exc
    return Location(fs, path, scheme)


# --- may this storage serve a cluster? -------------------------------------------------------------------------------

def mount_type(path: str, mounts_text: str | None = None) -> str:
    """The filesystem type of the mount holding `path` (longest mount point that is a prefix), from /proc/mounts."""
    if mounts_text is None:
        try:
            mounts_text = Path("/proc/mounts").read_text()
        except OSError:
            return "unknown"
    best, kind = "", "unknown"
    for line in mounts_text.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best):
            best, kind = point, fields[2]
    return kind


def machines(nodes: list[dict]) -> set[tuple[str, str]]:
    """The distinct machines among alive Ray nodes (`ray.nodes()` entries): nodes on one machine share its disks."""
    return {(n.get("NodeManagerAddress", ""), n.get("NodeManagerHostname", "")) for n in nodes if n.get("Alive")}


def check_cluster_storage(loc: Location, nodes: list[dict], *, shared: bool = False,
                          mounts_text: str | None = None) -> None:
    """Refuse, up front, a node-local folder as the storage of a cluster whose nodes are on more than one machine.

    Object stores and shared mounts (NFS, Lustre, FUSE buckets...) pass; so does a local folder when every node is
    on this one machine, or when the user says it is shared (`shared`, the CLI's --shared-storage).
    """
    hosts = machines(nodes)
    if not loc.is_local or shared or len(hosts) <= 1:
        return
    kind = mount_type(loc.path, mounts_text)
    if kind in SHARED_MOUNT_TYPES:
        return
    raise StorageError(
        f"{loc} is on this machine's own disk ({kind}), but the Ray cluster has nodes on {len(hosts)} machines: "
        "trials on other nodes could neither read the crops nor write their scores there. Give a storage URI every "
        "node can reach (s3://bucket/prefix, gs://bucket/prefix) or a shared mount (NFS) at the same path on every "
        "node; if this path is such a mount, say so with --shared-storage.")
