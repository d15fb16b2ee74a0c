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
    cfg = config_from_dict({"prepare": PREPARED(data)})
    run = schema.RunDir(data.parent / "base")
    prepare(cfg.prepare, run, log=lambda *a: None)
    run.data = data
    return run


def PREPARED(data: Path) -> dict:
    """The prepare section the crops were made with (a run given the same one finds its crops complete)."""
    return {"source": str(data / "source"), "target": str(data / "target"), "crop_size_px": 80}


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
            if list(hit.tune.glob("sweep-*/*/checkpoint_*")):
                for pid in _trial_worker_pids():
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_after_first_checkpoint, daemon=True)
    watcher.start()
    run_sweep(cfg, hit, log=lambda *a: None)
    watcher.join(timeout=5)
    assert killed, "the trial finished before it could be killed"

    rows = [json.loads(line) for line in hit.tune.glob("sweep-*/*/result.json")[0].read_text().splitlines()]
    epochs = [r["epoch"] for r in rows if r.get("phase") in ("head", "finetune")]
    assert sorted(set(epochs)) == [1, 2, 3, 4, 5]
    assert epochs.count(1) == 1  # restarted from a checkpoint, not from scratch (which would report epoch 1 again)

    keys = [("domain", "ascending"), ("split", "ascending"), ("sample_id", "ascending")]
    a = pq.read_table(calm.score_file("v2-paper-s9")).sort_by(keys)
    b = pq.read_table(hit.score_file("v2-paper-s9")).sort_by(keys)
    assert a.column("sample_id").equals(b.column("sample_id"))
    np.testing.assert_array_equal(a.column("score").to_numpy(), b.column("score").to_numpy())


def test_killed_driver_resumes_only_unfinished_trials(crops, weights_file, ray_session, tmp_path):
    """`dfsweep run` is SIGKILLed mid-sweep; `dfsweep run --resume RUN_DIR` finishes only the unfinished trial."""
    import subprocess
    import sys

    import yaml
    from typer.testing import CliRunner

    from dfsweep.cli import app
    from dfsweep.orchestrator.collect import collect_scores

    run = _copy(crops, tmp_path / "driver")
    cfg_dict = {
        "prepare": PREPARED(crops.data),
        "train": {"input_size_px": 71, "weights": str(weights_file), "head_epochs": 3, "finetune_epochs": 1,
                  "batch_size": 8, "test_jpeg_qualities": [], "test_blur_kernels_px": [], "export_model": False},
        "sweep": {"variants": ["v1", "v2"], "seeds": [4], "cpus_per_trial": 1, "max_concurrent_trials": 1},
        "report": {"bootstrap_samples": 200},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg_dict))
    env = {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}
    driver = subprocess.Popen([sys.executable, "-m", "dfsweep.cli", "run", str(run.root), "-c", str(tmp_path / "c.yaml")],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    # Kill the driver once the first trial is done and the second has checkpointed at least once.
    while time.monotonic() < deadline:
        assert driver.poll() is None, "the sweep finished before its driver could be killed"
        if run.scores.glob("*.parquet") and len(run.tune.glob("sweep-001/*/checkpoint_*")) >= 2:
            break
        time.sleep(0.05)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    done_before = {p.name: Path(p).stat().st_mtime_ns for p in run.scores.glob("*.parquet")}
    assert len(done_before) == 1 and not run.summary.exists()

    result = CliRunner().invoke(app, ["run", "--resume", str(run.root)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    out = " ".join(result.output.split())
    assert "crops are complete" in out and "resuming sweep-001" in out
    unfinished = next(t for t in ("v1-none-s4", "v2-paper-s4") if f"{t}.parquet" not in done_before)
    assert f"1 of 2 trials to run: {unfinished}" in out  # only the unfinished trial ran
    assert {p.name: Path(p).stat().st_mtime_ns for p in run.scores.glob("*.parquet") if p.name in done_before} == done_before
    scores = collect_scores(run.scores)  # refuses duplicate (trial, sample, perturbation, level) rows
    assert sorted(set(scores.column("trial_id").to_pylist())) == ["v1-none-s4", "v2-paper-s4"]
    assert run.summary.exists()  # and the report was made
    result_json = next(p for p in run.tune.glob("sweep-001/*/result.json") if unfinished in str(p))
    epochs = [json.loads(line).get("epoch") for line in result_json.read_text().splitlines()]
    assert epochs.count(1) == 1  # the interrupted trial continued from its checkpoint


def test_resume_needs_a_run_and_its_own_config(tmp_path):
    from typer.testing import CliRunner

    from dfsweep.cli import app

    result = CliRunner().invoke(app, ["run", "--resume", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "nothing to resume" in result.output
    (tmp_path / "c.yaml").write_text("sweep:\n  seeds: [1]\n")
    result = CliRunner().invoke(app, ["run", "--resume", str(tmp_path / "nothing"), "-c", str(tmp_path / "c.yaml")])
    assert result.exit_code == 2 and "--resume continues a run with its saved config.yaml" in result.output
