"""A Tune trial whose worker process is SIGKILLed mid-run is restarted by Tune from its last per-epoch checkpoint
and ends with exactly the scores of an undisturbed run (real Ray Tune, real Keras, on loopback)."""

import json
import os
import shutil
import signal
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

pytestmark = [pytest.mark.ray, pytest.mark.tf, pytest.mark.slow]


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


@pytest.fixture(scope="module")
def crops(tiny_demo, ray_session, tmp_path_factory):
    demo, _ = tiny_demo
    data = tmp_path_factory.mktemp("resume") / "data"
    shutil.copytree(demo, data, ignore=shutil.ignore_patterns("bad"), symlinks=True)
    cfg = config_from_dict({"prepare": {"source": str(data / "source"), "target": str(data / "target"),
                                        "crop_size_px": 80}})
    run = schema.RunDir(data.parent / "base")
    prepare(cfg.prepare, run, log=lambda *a: None)
    return run


def _copy(base: schema.RunDir, dst: Path) -> schema.RunDir:
    run = schema.RunDir(dst)
    shutil.copytree(base.crops, run.crops)
    shutil.copy(base.manifest, run.manifest)
    return run


def test_killed_trial_resumes_from_its_checkpoint_to_the_same_scores(crops, weights_file, tmp_path):
    cfg = config_from_dict({
        "train": {"input_size_px": 71, "weights": str(weights_file), "head_epochs": 3, "finetune_epochs": 2,
                  "batch_size": 8, "test_jpeg_qualities": [], "test_blur_kernels_px": [], "export_model": False},
        "sweep": {"variants": ["v2"], "seeds": [9], "cpus_per_trial": 1, "max_failures": 2},
    })
    calm = _copy(crops, tmp_path / "calm")
    run_sweep(cfg, calm, log=lambda *a: None)

    hit = _copy(crops, tmp_path / "hit")
    killed: list[int] = []

    def kill_after_first_checkpoint() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            if list(hit.tune.glob("sweep/*/checkpoint_*")):
                for pid in _trial_worker_pids():
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_after_first_checkpoint, daemon=True)
    watcher.start()
    run_sweep(cfg, hit, log=lambda *a: None)
    watcher.join(timeout=5)
    assert killed, "the trial finished before it could be killed"

    rows = [json.loads(line) for line in next(hit.tune.glob("sweep/*/result.json")).read_text().splitlines()]
    epochs = [r["epoch"] for r in rows if r.get("phase") in ("head", "finetune")]
    assert sorted(set(epochs)) == [1, 2, 3, 4, 5]
    assert epochs.count(1) == 1  # restarted from a checkpoint, not from scratch (which would report epoch 1 again)

    keys = [("domain", "ascending"), ("split", "ascending"), ("sample_id", "ascending")]
    a = pq.read_table(calm.score_file("v2-paper-s9")).sort_by(keys)
    b = pq.read_table(hit.score_file("v2-paper-s9")).sort_by(keys)
    assert a.column("sample_id").equals(b.column("sample_id"))
    np.testing.assert_array_equal(a.column("score").to_numpy(), b.column("score").to_numpy())
