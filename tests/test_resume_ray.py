"""Killed mid-sweep and resumed (real Ray Tune, real Keras, on loopback): a trial whose worker process is SIGKILLed
is restarted by Tune from its last per-epoch checkpoint and ends with exactly the scores of an undisturbed run; a
`dfsweep run` driver that is SIGKILLed is resumed with `dfsweep run --resume`, which finishes only the unfinished
trial, from its checkpoint, and duplicates or loses no trial's scores."""

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from conftest import (V2_TRIAL, assert_same_scores, copy_crops, restartable_v2_sweep, trial_epoch_rows,
                      trial_worker_pids)

from dfsweep import schema
from dfsweep.config import config_from_dict
from dfsweep.data_pipeline.pipeline import prepare
from dfsweep.orchestrator.sweep import run_sweep

pytestmark = [pytest.mark.ray, pytest.mark.tf, pytest.mark.slow]


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


def test_killed_trial_resumes_from_its_checkpoint_to_the_same_scores(crops, weights_file, tmp_path):
    cfg = restartable_v2_sweep(weights_file)
    calm = copy_crops(crops, tmp_path / "calm")
    run_sweep(cfg, calm, log=lambda *a: None)

    hit = copy_crops(crops, tmp_path / "hit")
    killed: list[int] = []

    def kill_after_first_checkpoint() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            if len(trial_epoch_rows(hit, V2_TRIAL)) >= 2:  # so epoch 1's checkpoint is registered
                for pid in trial_worker_pids():
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_after_first_checkpoint, daemon=True)
    watcher.start()
    run_sweep(cfg, hit, log=lambda *a: None)
    watcher.join(timeout=5)
    assert killed, "the trial finished before it could be killed"

    epochs = [r["epoch"] for r in trial_epoch_rows(hit, V2_TRIAL)]
    # Restarted from a checkpoint, not from scratch (which would report epoch 1 again): every epoch reported once, in
    # order, up to the last. Tune may start the restarted trial's result.json afresh ([3, 4, 5]) or append to it
    # ([1, 2, 3, 4, 5]), depending on when its last sync ran before the kill; both are a resume.
    assert epochs == sorted(set(epochs)) and epochs[-1] == 5 and min(epochs) <= 3, epochs

    assert_same_scores(calm.score_file(V2_TRIAL), hit.score_file(V2_TRIAL))


def test_killed_driver_resumes_only_unfinished_trials(crops, weights_file, ray_session, tmp_path):
    """`dfsweep run` is SIGKILLed mid-sweep; `dfsweep run --resume RUN_DIR` finishes only the unfinished trial."""
    import subprocess
    import sys

    import yaml
    from typer.testing import CliRunner

    from dfsweep.cli import app
    from dfsweep.verdict.scores import collect_scores

    run = copy_crops(crops, tmp_path / "driver")
    cfg_dict = {
        "prepare": PREPARED(crops.data),
        "train": {"input_size_px": 71, "weights": str(weights_file), "head_epochs": 3, "finetune_epochs": 1,
                  "batch_size": 8, "test_perturbations": {"jpeg": [], "blur": [], "noise": []}, "export_model": False},
        "sweep": {"variants": ["v1", "v2"], "seeds": [4], "cpus_per_trial": 1, "max_concurrent_trials": 1},
        "report": {"bootstrap_samples": 200},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg_dict))
    # Tune saves its experiment state (what a restore starts from) at most every 10 s by default; every 2 s here, so
    # that the short second trial is caught running with a checkpoint in the saved state.
    env = {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address, "TUNE_GLOBAL_CHECKPOINT_S": "2"}
    driver = subprocess.Popen([sys.executable, "-m", "dfsweep.cli", "run", str(run.root), "-c", str(tmp_path / "c.yaml")],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def saved_checkpoint(trial: str) -> bool:
        """Whether Tune's saved experiment state holds a checkpoint of the trial."""
        from ray.tune import ExperimentAnalysis

        try:
            trials = ExperimentAnalysis(os.fspath(run.tune / "sweep-001")).trials
        except Exception:  # no state saved yet, or one being written
            return False
        return any(t.config["trial"]["trial_id"] == trial and t.checkpoint is not None for t in trials)

    # Kill the driver once the first trial is done and the saved state has a checkpoint of the second.
    trials = ("v1-none-s4", "v2-paper-s4")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert driver.poll() is None, "the sweep finished before its driver could be killed"
        done = [t for t in trials if run.score_file(t).exists()]
        if len(done) == 1 and saved_checkpoint(next(t for t in trials if t not in done)):
            break
        time.sleep(0.25)
    else:
        pytest.fail("the second trial had no saved checkpoint within 300 s")
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    done_before = {p.name: Path(p).stat().st_mtime_ns for p in run.scores.glob("*.parquet")}
    assert len(done_before) == 1 and not run.summary.exists()

    result = CliRunner().invoke(app, ["run", "--resume", str(run.root)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    out = " ".join(result.output.split())
    assert "crops are complete" in out and "resuming sweep-001" in out
    unfinished = next(t for t in trials if f"{t}.parquet" not in done_before)
    assert f"1 of 2 trials to run: {unfinished}" in out  # only the unfinished trial ran
    assert {p.name: Path(p).stat().st_mtime_ns for p in run.scores.glob("*.parquet") if p.name in done_before} == done_before
    scores = collect_scores(run.scores)  # refuses duplicate (trial, sample, perturbation, level) rows
    assert sorted(set(scores.column("trial_id").to_pylist())) == ["v1-none-s4", "v2-paper-s4"]
    assert run.summary.exists()  # and the report was made
    epochs = [r["epoch"] for r in trial_epoch_rows(run, unfinished)]
    assert sorted(set(epochs)) == [1, 2, 3, 4] and epochs.count(1) == 1  # it continued from its checkpoint


def test_resume_needs_a_run_and_its_own_config(tmp_path):
    from typer.testing import CliRunner

    from dfsweep.cli import app

    result = CliRunner().invoke(app, ["run", "--resume", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "nothing to resume" in result.output
    (tmp_path / "c.yaml").write_text("sweep:\n  seeds: [1]\n")
    result = CliRunner().invoke(app, ["run", "--resume", str(tmp_path / "nothing"), "-c", str(tmp_path / "c.yaml")])
    assert result.exit_code == 2 and "--resume continues a run with its saved config.yaml" in result.output
