"""A two-node Ray cluster on one machine (conftest's ray_two_nodes: a head with no CPUs and a 2-CPU worker node) runs
a one-trial sweep. Once Tune has registered the trial's first epoch checkpoint (the sweep's `checkpoint` event), the worker
node is SIGKILLed (raylet, object store, agents, and with them the trial's worker process) and a replacement node
joins. Tune retries the trial from its last checkpoint, and the sweep ends with exactly the per-sample scores of an
undisturbed run on the same cluster. Both nodes share this machine's disk, so a local run directory is shared storage
here (the CLI's storage check allows it for the same reason: one machine); a cluster of several machines keeps the run
on a storage URI, which tests/test_s3_ray.py covers, or on a shared mount."""

import shutil
import threading
import time
from pathlib import Path

import pytest

from conftest import (V2_TRIAL, assert_same_scores, copy_crops, restartable_v2_sweep, trial_epoch_rows,
                      trial_worker_pids)

from dfsweep import events, schema
from dfsweep.config import config_from_dict
from dfsweep.data_pipeline.pipeline import prepare
from dfsweep.orchestrator.sweep import run_sweep

# The timeout (pytest-timeout) only guards against a hang: without a replacement node the retried trial would wait
# for a CPU forever. The module takes ~2 min on 2 cores.
pytestmark = [pytest.mark.ray, pytest.mark.tf, pytest.mark.slow, pytest.mark.timeout(900)]

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
    cfg = restartable_v2_sweep(weights_file)
    calm = copy_crops(crops, tmp_path / "calm")
    run_sweep(cfg, calm, log=lambda *a: None)

    (worker,) = cluster.worker_nodes
    raylet = worker.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
    hit = copy_crops(crops, tmp_path / "hit")
    seen: dict = {}

    checkpointed = threading.Event()

    def note_epoch_1_checkpoint(event: dict) -> None:  # in the sweep's Tune loop (dfsweep.events)
        if event["event"] == "checkpoint" and event["trial"] == V2_TRIAL:
            checkpointed.set()

    def kill_worker_node_once_checkpointed() -> None:
        try:
            if not checkpointed.wait(timeout=300):
                return
            seen["trial_pids"] = [p for p in trial_worker_pids() if _parent(p) == raylet]
            cluster.remove_node(worker, allow_graceful=False)  # SIGKILL to every process of the node
            seen["epochs_before"] = [r["epoch"] for r in trial_epoch_rows(hit, V2_TRIAL)]
            seen["replacement"] = cluster.add_node(num_cpus=2)
        except BaseException as exc:  # re-raised by the test
            seen["error"] = exc

    # A thread of its own: adding a node from inside Tune's loop would stall the loop that notices the dead trial.
    watcher = threading.Thread(target=kill_worker_node_once_checkpointed, daemon=True)
    watcher.start()
    t0 = time.monotonic()
    with events.listening(note_epoch_1_checkpoint):
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
    rows = trial_epoch_rows(hit, V2_TRIAL)
    epochs = [r["epoch"] for r in rows]
    assert sorted(set(epochs)) == [1, 2, 3, 4, 5]
    assert epochs.count(1) == 1
    starts = [i for i, r in enumerate(rows) if r["iterations_since_restore"] == 1]
    assert len(starts) == 2 and starts[0] == 0
    retry = starts[1]
    # It picks up after a checkpointed epoch: at most one epoch past the first attempt's last report (a node killed
    # after Tune logged epoch k but before epoch k's checkpoint was registered restarts at k, from k - 1's).
    assert 2 <= epochs[retry] and epochs[retry] in (epochs[retry - 1], epochs[retry - 1] + 1)
    print(f"\nkilled node {worker.node_id[:8]} (raylet {raylet}, trial pids {seen['trial_pids']}) after epochs "
          f"{seen['epochs_before']}; retried from epoch {epochs[retry]}; reported epochs {epochs}; "
          f"disturbed sweep {seen['sweep_s']:.0f} s")

    assert_same_scores(calm.score_file(V2_TRIAL), hit.score_file(V2_TRIAL))
