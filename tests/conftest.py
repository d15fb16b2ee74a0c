"""Shared fixtures: a tiny demo dataset with bad files planted in it, offline weights, one local Ray for the session.

Tests that start Ray expect to run in a private network namespace (`make test` does this with
scripts/isolated.sh), so Ray's servers are reachable on loopback only.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

# torchvision (the CUDA build pip resolves to here) segfaults when it is imported after TensorFlow; the other order
# works. Tests import both in one process, so torchvision goes first.
import torchvision  # noqa: F401,E402

import pytest  # noqa: E402

from ci_skips import pytest_runtest_makereport  # noqa: E402,F401 (the hook: under .ci/run a skip fails the run)

_TMP = Path(tempfile.mkdtemp(prefix="dfsweep-tests-"))
os.environ.update(
    RAY_AUTH_MODE="disabled",  # Ray 2.60's token auth would write ~/.ray/auth_token
    RAY_USAGE_STATS_ENABLED="0",
    RAY_TMPDIR=str(_TMP / "ray"),
    TUNE_GLOBAL_CHECKPOINT_S="0",
    TF_ENABLE_ONEDNN_OPTS="0",
    TF_CPP_MIN_LOG_LEVEL="2",
    AWS_EC2_METADATA_DISABLED="true",
    RAY_DEDUP_LOGS="0",
)
os.environ.pop("RAY_ADDRESS", None)

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / ".weights" / "xception_imagenet_notop.weights.h5"


def _only_loopback() -> bool:
    """True inside a network namespace whose only interface is loopback (sysfs may still show the host's)."""
    import socket

    return [name for _, name in socket.if_nameindex()] == ["lo"]


@pytest.fixture(scope="session")
def weights_file() -> Path:
    """ImageNet Xception weights written offline by `make setup` (scripts/offline_weights.py)."""
    if not WEIGHTS.is_file():
        pytest.fail(f"{WEIGHTS} is missing: run `make setup` (it writes the offline ImageNet weights)")
    return WEIGHTS


def _require_loopback() -> None:
    if not _only_loopback() and os.environ.get("DFSWEEP_ALLOW_NETWORK_RAY") != "1":
        pytest.skip("Ray tests run in a private network namespace: use `make test` (scripts/isolated.sh), "
                    "or set DFSWEEP_ALLOW_NETWORK_RAY=1")


def _init_local_ray() -> None:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray (2 CPUs, no dashboard) shared by every Ray test; shut down at the end."""
    _require_loopback()
    import ray

    _init_local_ray()
    yield ray
    ray.shutdown()


@contextmanager
def session_ray_paused():
    """Shut ray_session's Ray down meanwhile if it is running (another order of modules), and start it again after.
    Its dashboard agent holds 127.0.0.1:52365, the port every local Ray's agent takes, so a `dfsweep --submit`
    starting its own local Ray beside it could not take the job."""
    import ray

    paused = ray.is_initialized()
    if paused:
        ray.shutdown()
    try:
        yield
    finally:
        if paused:
            _init_local_ray()


@pytest.fixture(scope="module")
def ray_two_nodes():
    """Two Ray nodes on this machine (ray.cluster_utils.Cluster), the driver connected to the head: the head has no
    CPUs, so every task, actor and trial runs on the 2-CPU worker node. Yields the Cluster. If ray_session's Ray is
    running (another order of modules), it is shut down meanwhile and started again afterwards."""
    _require_loopback()
    import ray
    from ray.cluster_utils import Cluster

    with session_ray_paused():
        # shutdown_at_exit=False: a Node that shuts down at exit installs signal handlers, which only the main thread
        # may do, and tests add nodes from a watcher thread; the `finally` below shuts the cluster down instead.
        cluster = Cluster(initialize_head=True, head_node_args=dict(num_cpus=0, include_dashboard=False),
                          shutdown_at_exit=False)
        try:
            cluster.add_node(num_cpus=2)
            ray.init(address=cluster.address, log_to_driver=False)
            yield cluster
        finally:
            ray.shutdown()
            cluster.shutdown()


def trial_worker_pids() -> list[int]:
    """PIDs of the processes that run Tune trials (their command line is `ray::DfsweepTrial...`, TRIAL_ACTOR)."""
    from dfsweep.trainables.train import TRIAL_ACTOR

    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if cmd.startswith(f"ray::{TRIAL_ACTOR}"):
                pids.append(int(entry))
    return pids


def trial_epoch_rows(run, trial: str, sweep: str = "sweep-*") -> list[dict]:
    """A trial's per-epoch rows in its result.json, which Tune's driver appends as it takes each report. A row for
    epoch k + 1 means epoch k's checkpoint is registered (Tune saves a reported checkpoint before the next epoch)."""
    import json

    rows = []
    for path in run.tune.glob(f"{sweep}/{trial}/result.json"):
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line being written
                continue
            if row.get("phase") in ("head", "finetune"):
                rows.append(row)
    return rows


class EventFifo:
    """A FIFO that a child process writes its dfsweep events to (`env` sets DFSWEEP_EVENTS for it); `wait(match)`
    blocks until an event matches, reading them as the child emits them: a kill lands at a point the code reached,
    never after a guessed time. Pass the child to `watch` so that its exit ends a wait.

    open_now=False leaves the FIFO unread until `open()`: the child's first event then holds it (opening a FIFO to
    write blocks until a reader opens it), so a test can look at the run while it stands at that point."""

    def __init__(self, path: Path, open_now: bool = True) -> None:
        import queue

        from dfsweep import events

        os.mkfifo(path)
        self.path = path
        self.env = {events.ENV: str(path)}
        self.seen: list[dict] = []
        self._queue: queue.Queue = queue.Queue()
        if open_now:
            self.open()

    def open(self) -> None:
        import threading

        threading.Thread(target=self._read, args=(self.path,), daemon=True).start()

    def _read(self, path: Path) -> None:
        import json

        with open(path) as fifo:  # blocks until the child opens it for its first event
            for line in fifo:
                self._queue.put(json.loads(line))
        self._queue.put(None)  # closed: the child exited

    def watch(self, proc) -> None:
        import threading

        threading.Thread(target=lambda: (proc.wait(), self._queue.put(None)), daemon=True).start()

    def wait(self, match, timeout: float = 300) -> dict:
        import queue
        import time

        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no matching event within {timeout:.0f} s; events so far: {self.seen}")
            if event is None:
                pytest.fail(f"the process ended before a matching event; events so far: {self.seen}")
            self.seen.append(event)
            if match(event):
                return event


V2_TRIAL = "v2-paper-s9"


def restartable_v2_sweep(weights_file: Path):
    """A sweep of one V2 trial (V2_TRIAL: 3 head + 2 fine-tuning epochs at 71 px) that Tune retries up to twice."""
    from dfsweep.config import config_from_dict

    return config_from_dict({
        "train": {"input_size_px": 71, "weights": str(weights_file), "head_epochs": 3, "finetune_epochs": 2,
                  "batch_size": 8, "test_perturbations": {"jpeg": [], "blur": [], "noise": []}, "export_model": False},
        "sweep": {"variants": ["v2"], "seeds": [9], "cpus_per_trial": 1, "max_failures": 2},
    })


def assert_same_scores(a_file, b_file) -> None:
    """Two score files hold the same samples with bitwise-equal scores."""
    import numpy as np
    import pyarrow.parquet as pq

    keys = [("domain", "ascending"), ("split", "ascending"), ("sample_id", "ascending")]
    a = pq.read_table(a_file).sort_by(keys)
    b = pq.read_table(b_file).sort_by(keys)
    assert a.num_rows > 0
    assert a.column("sample_id").equals(b.column("sample_id"))
    np.testing.assert_array_equal(a.column("score").to_numpy(), b.column("score").to_numpy())


def copy_crops(base, dst: Path):
    """A new run directory at dst holding base's manifest and complete crops (so a sweep can start there)."""
    import shutil

    from dfsweep import schema

    run = schema.RunDir(dst)
    shutil.copytree(base.crops, run.crops)
    shutil.copy(base.manifest, run.manifest)
    return run


def write_bad_inputs(class_dir: Path, outside: Path) -> dict[str, str]:
    """Plant files that must end as manifest rows with a reason; returns file name -> expected status.

    `outside` is a folder outside the dataset root (for the symlink that must not be followed).
    """
    import cv2
    import numpy as np

    class_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    cv2.imwrite(str(class_dir / "noise.png"), rng.integers(0, 256, (200, 200, 3), dtype=np.uint8))
    cv2.imwrite(str(class_dir / "tiny.png"), rng.integers(0, 256, (24, 24, 3), dtype=np.uint8))
    (class_dir / "empty.jpg").write_bytes(b"")
    (class_dir / "page.jpg").write_text("<html><body>not a picture</body></html>")
    (class_dir / "notes.txt").write_text("a text file")
    ok, jpeg = cv2.imencode(".jpg", rng.integers(0, 256, (120, 120, 3), dtype=np.uint8))
    (class_dir / "cut.jpg").write_bytes(jpeg.tobytes()[: len(jpeg) // 2])
    outside.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(outside / "secret.png"), rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    (class_dir / "link.png").symlink_to(outside / "secret.png")
    (class_dir / "linked_dir").symlink_to(outside, target_is_directory=True)
    os.mkfifo(class_dir / "pipe.png")
    with open(os.path.join(os.fsencode(class_dir), b"caf\xe9.png"), "wb") as fh:  # Latin-1 name: not UTF-8
        fh.write(jpeg.tobytes())
    return {"noise.png": "no_face", "tiny.png": "too_small", "empty.jpg": "unreadable", "page.jpg": "unreadable",
            "notes.txt": "unsupported", "cut.jpg": "truncated", "link.png": "symlink_outside",
            "linked_dir": "symlink_dir", "pipe.png": "not_a_file", "caf\\xe9.png": "no_face"}


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A small demo benchmark (8 people per domain, 3 photos each) with bad inputs planted in source/fake."""
    from dfsweep.data_pipeline.demo import build_demo

    out = tmp_path_factory.mktemp("demo")
    build_demo(out, seed=0, people_per_domain=8, photos_per_person=3, log=lambda *a: None)
    bad = write_bad_inputs(out / "source" / "fake" / "bad", tmp_path_factory.mktemp("outside"))
    return out, bad


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A moto S3 server on 127.0.0.1, and the environment that points s3:// at it; stopped at the end. The server
    binds port 0 itself and prints the port it got once it listens (a port picked here and released before the server
    took it could be taken by another process in between)."""
    import subprocess
    import sys

    log = tmp_path_factory.mktemp("moto") / "server.log"
    serve = ("import sys, threading; from moto.server import ThreadedMotoServer; "
             "s = ThreadedMotoServer(ip_address='127.0.0.1', port=0, verbose=False); s.start(); "
             "print(s.get_host_and_port()[1], flush=True); threading.Event().wait()")
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-c", serve], stdout=subprocess.PIPE, stderr=err, text=True)
    line = proc.stdout.readline()  # blocks until the server listens, or exits
    if not line.strip().isdigit():
        proc.kill()
        pytest.fail(f"moto S3 server did not start: {line!r} {log.read_text()[-2000:]}")
    port = int(line)
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    yield env
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def s3_bucket(s3_server, monkeypatch):
    """A fresh bucket on the moto server, with this process's environment pointing s3:// there; yields its name."""
    import uuid

    import pyarrow.fs as pafs

    for k, v in s3_server.items():
        monkeypatch.setenv(k, v)
    name = f"dfsweep-{uuid.uuid4().hex[:12]}"
    fs = pafs.S3FileSystem(endpoint_override=s3_server["AWS_ENDPOINT_URL"].split("://")[1], scheme="http",
                           access_key="testing", secret_key="testing", region="us-east-1", allow_bucket_creation=True)
    fs.create_dir(name)
    return name


@pytest.fixture(scope="session")
def tiny_crops(tiny_demo, tmp_path_factory):
    """Crops of the tiny demo made in-process (MTCNN, no Ray), written as a run directory's crops (80 px)."""
    import pyarrow as pa

    from dfsweep import crops, schema
    from dfsweep.config import PrepareConfig
    from dfsweep.data_pipeline.faces import PART, FaceCropper
    from dfsweep.data_pipeline.paths import unescape_path
    from dfsweep.data_pipeline.scan import build_manifest

    demo, _ = tiny_demo
    run = schema.RunDir(tmp_path_factory.mktemp("crops"))
    manifest = build_manifest(PrepareConfig(source=str(demo / "source"), target=str(demo / "target"), crop_size_px=80))
    pending = manifest.filter(pa.compute.equal(manifest.column("status"), "pending"))
    cropper = FaceCropper(crop_size_px=80, margin=0.3, min_face_px=40, min_face_prob=0.9)
    rows = [{**r, **cropper.crop_one(unescape_path(r["path"]), r["frame_index"])} for r in pending.to_pylist()]
    table = pa.Table.from_pylist([r for r in rows if r["status"] == "ok"], schema=PART).drop_columns(["status", "reason"])
    crops.write_shards([table], run.crops)
    run.crops_done.write_text("test\n")
    return run


@pytest.fixture(scope="session")
def scaled_source(tiny_crops):
    """The tiny crops and how many of them are source train (what the scale tests multiply)."""
    import pyarrow.compute as pc

    from dfsweep import crops

    t = crops.read_crops(tiny_crops, columns=["domain", "split"])
    n = pc.sum(pc.and_(pc.equal(t.column("domain"), "source"), pc.equal(t.column("split"), "train"))).as_py()
    return tiny_crops, int(n)
