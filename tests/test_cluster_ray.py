"""A two-node Ray cluster on one machine (conftest's ray_two_nodes: a head with no CPUs and a 2-CPU worker node) runs
a one-trial sweep. Once Tune has the trial's first epoch and its checkpoint, the worker node is SIGKILLed (raylet,
object store, agents, and with them the trial's worker process) and a replacement node joins. Tune retries the
trial from its last checkpoint, and the sweep ends with exactly the per-sample scores of an undisturbed run on the
same cluster. Both nodes share this machine's disk, so the local run directory (crops and scores, which trials read
and write on whatever node they run, and Tune's storage path) is shared storage here; a real multi-node cluster
needs it on a shared filesystem, which this test does not cover."""

import json
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from dfsweep import schema
from dfsweep.config import config_from_dict
from dfsweep.data_pipeline.pipeline import prepare
from dfsweep.orchestrator.sweep import run_sweep

# The timeout (pytest-timeout) only guards against a hang: without a replacement node the retried trial would wait
# for a CPU forever. The module takes ~2 min on 2 cores.
pytestmark = [pytest.mark.ray, pytest.mark.tf, pytest.mark.slow, pytest.mark.timeout(900)]

TRIAL = "v2-paper-s9"


@pytest.fixture(scope="module")
def crops(tiny_demo, ray_two_nodes, tmp_path_factory):
    demo, _ = tiny_demo
    data = tmp_path_factory.mktemp("cluster") / "data"
    shutil.copytree(demo, data, ignore=shutil.ignore_patterns("bad"), symlinks=True)
    cfg = config_from_dict({"prepare": {"source": str(data / "source"), "target": str(data / "target"),
                                        "crop_size_px": 80}})
    run = schema.RunDir(data.parent / "base")
    prepare(cfg.prepare, run, log=lambda *a: None)  # Ray Data's MTCNN actors run on the worker node
    return run


def _copy(base: schema.RunDir, dst: Path) -> schema.RunDir:
    run = schema.RunDir(dst)
    shutil.copytree(base.crops, run.crops)
    shutil.copy(base.manifest, run.manifest)
    return run


def _trial_rows(run: schema.RunDir) -> list[dict]:
    """The trial's epoch rows in result.json, which Tune's driver writes as it takes each report (and checkpoint)."""
    rows = []
    for path in run.tune.glob(f"sweep-*/{TRIAL}/result.json"):
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line being written
                continue
            if row.get("phase") in ("head", "finetune"):
                rows.append(row)
    return rows


def _trial_worker_pids() -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if cmd.startswith("ray::ImplicitFunc"):
                pids.append(int(entry))
    return pids


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def test_killed_worker_node_trial_resumes_on_a_new_node_with_the_same_scores(crops, ray_two_nodes, weights_file,
                                                                              tmp_path):
    import ray
    from ray._private import ray_constants

    cluster = ray_two_nodes
    cfg = config_from_dict({
        "train": {"input_size_px": 71, "weights": str(weights_file), "head_epochs": 3, "finetune_epochs": 2,
                  "batch_size": 8, "test_jpeg_qualities": [], "test_blur_kernels_px": [], "export_model": False},
        "sweep": {"variants": ["v2"], "seeds": [9], "cpus_per_trial": 1, "max_failures": 2},
    })
    calm = _copy(crops, tmp_path / "calm")
    run_sweep(cfg, calm, log=lambda *a: None)

    (worker,) = cluster.worker_nodes
    raylet = worker.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
    hit = _copy(crops, tmp_path / "hit")
    seen: dict = {}

    def kill_worker_node_after_first_epoch() -> None:
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                if _trial_rows(hit):  # Tune has epoch 1 and its checkpoint
                    seen["trial_pids"] = [p for p in _trial_worker_pids() if _parent(p) == raylet]
                    cluster.remove_node(worker, allow_graceful=False)  # SIGKILL to every process of the node
                    seen["epochs_before"] = [r["epoch"] for r in _trial_rows(hit)]
                    seen["replacement"] = cluster.add_node(num_cpus=2)
                    return
                time.sleep(0.05)
        except BaseException as exc:  # re-raised by the test
            seen["error"] = exc

    watcher = threading.Thread(target=kill_worker_node_after_first_epoch, daemon=True)
    watcher.start()
    t0 = time.monotonic()
    run_sweep(cfg, hit, log=lambda *a: None)
    seen["sweep_s"] = time.monotonic() - t0
    watcher.join(timeout=60)
    assert "error" not in seen, seen.get("error")
    assert "replacement" in seen, "the trial finished before its node could be killed"

    # The trial ran on the worker node, and that node and its processes died.
    assert seen["trial_pids"], "no trial worker process was a child of the killed node's raylet"
    assert all(_gone(pid) for pid in seen["trial_pids"])
    deadline = time.monotonic() + 60  # the GCS marks a node dead after missed health checks (~15 s by default)
    while (alive := {n["NodeID"]: n["Alive"] for n in ray.nodes()})[worker.node_id] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert alive[worker.node_id] is False
    assert alive[seen["replacement"].node_id] is True and alive[cluster.head_node.node_id] is True

    # Restarted once, from a checkpoint: epoch 1 is reported once, and the second attempt's first report is a later
    # epoch (Tune counts iterations_since_restore from 1 again in a restored trial).
    rows = _trial_rows(hit)
    epochs = [r["epoch"] for r in rows]
    assert sorted(set(epochs)) == [1, 2, 3, 4, 5]
    assert epochs.count(1) == 1
    starts = [i for i, r in enumerate(rows) if r["iterations_since_restore"] == 1]
    assert len(starts) == 2 and starts[0] == 0
    retry = starts[1]
    assert epochs[retry] == epochs[retry - 1] + 1  # picks up right after the first attempt's last checkpoint
    print(f"\nkilled node {worker.node_id[:8]} (raylet {raylet}, trial pids {seen['trial_pids']}) after epochs "
          f"{seen['epochs_before']}; retried from epoch {epochs[retry]}; reported epochs {epochs}; "
          f"disturbed sweep {seen['sweep_s']:.0f} s")

    keys = [("domain", "ascending"), ("split", "ascending"), ("sample_id", "ascending")]
    a = pq.read_table(calm.score_file(TRIAL)).sort_by(keys)
    b = pq.read_table(hit.score_file(TRIAL)).sort_by(keys)
    assert a.num_rows > 0
    assert a.column("sample_id").equals(b.column("sample_id"))
    np.testing.assert_array_equal(a.column("score").to_numpy(), b.column("score").to_numpy())
