"""Killed mid-sweep and resumed (real Ray Tune, real Keras, on loopback): a trial whose worker process is SIGKILLed
is restarted by Tune from its last per-epoch checkpoint and ends with exactly the scores of an undisturbed run; a
`dfsweep run` driver that is SIGKILLed is resumed with `dfsweep run --resume`, which finishes only the unfinished
trial, from its checkpoint, and duplicates or loses no trial's scores."""

import os
import re
import shutil
import signal
from pathlib import Path

import pytest

from conftest import (V2_TRIAL, EventFifo, assert_same_scores, copy_crops, restartable_v2_sweep, trial_epoch_rows,
                      trial_worker_pids)

from dfsweep import events, schema
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

    def kill_once_epoch_1_is_checkpointed(event: dict) -> None:
        if event["event"] == "checkpoint" and event["trial"] == V2_TRIAL and not killed:
            for pid in trial_worker_pids():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    with events.listening(kill_once_epoch_1_is_checkpointed):  # called in the sweep's Tune loop, as it goes
        run_sweep(cfg, hit, log=lambda *a: None)
    assert killed, "the trial finished before it could be killed"

    epochs = [r["epoch"] for r in trial_epoch_rows(hit, V2_TRIAL)]
    # Restarted from epoch 1's checkpoint, not from scratch (which would report epoch 1 again): every epoch reported
    # once, in order, up to the last. Tune may start the restarted trial's result.json afresh ([2, 3, 4, 5]) or append
    # to it ([1, 2, 3, 4, 5]), depending on whether its last sync ran before the kill; both are a resume.
    assert epochs == sorted(set(epochs)) and epochs[-1] == 5 and min(epochs) <= 2, epochs

    assert_same_scores(calm.score_file(V2_TRIAL), hit.score_file(V2_TRIAL))


def two_trial_config(crops, weights_file, **prepare) -> dict:
    """V1 and V2 (3 head + 1 fine-tuning epochs at 71 px), one trial at a time, on the crops fixture's data."""
    return {
        "prepare": {**PREPARED(crops.data), **prepare},
        "train": {"input_size_px": 71, "weights": str(weights_file), "head_epochs": 3, "finetune_epochs": 1,
                  "batch_size": 8, "test_perturbations": {"jpeg": [], "blur": [], "noise": []}, "export_model": False},
        "sweep": {"variants": ["v1", "v2"], "seeds": [4], "cpus_per_trial": 1, "max_concurrent_trials": 1},
        "report": {"bootstrap_samples": 200},
    }


TWO_TRIALS = ("v1-none-s4", "v2-paper-s4")


@pytest.fixture(scope="module")
def calm_two_trials(crops, weights_file, tmp_path_factory):
    """The undisturbed sweep of two_trial_config on the crops fixture's crops (what every disturbed run must equal)."""
    run = copy_crops(crops, tmp_path_factory.mktemp("calm") / "run")
    run_sweep(config_from_dict(two_trial_config(crops, weights_file)), run, log=lambda *a: None)
    return run


def _start_cli(args: list[str], ray_session, fifo: EventFifo, out: Path, **env):
    """`python -m dfsweep.cli ARGS` on the tests' Ray, in a process group of its own, its events to `fifo`."""
    import subprocess
    import sys

    env = {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address, **fifo.env, **env}
    with open(out, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "dfsweep.cli", *args], env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    fifo.watch(proc)
    return proc


def _assert_no_partial_files(run: schema.RunDir) -> None:
    """No temporary file is left, and every score file and detections part reads back whole."""
    import pyarrow.parquet as pq

    root = Path(run.root.path)
    assert not list(root.rglob("*.tmp")), "a write was left half-done"
    for f in [*root.glob("scores/*.parquet"), *root.glob("detections/*/part-*.parquet")]:
        pq.read_table(f)


def test_killed_driver_resumes_only_unfinished_trials(crops, weights_file, ray_session, calm_two_trials, tmp_path):
    """`dfsweep run` is SIGKILLed mid-sweep; `dfsweep run --resume RUN_DIR` finishes only the unfinished trial, with
    the undisturbed run's scores."""
    import yaml
    from typer.testing import CliRunner

    from dfsweep.cli import app
    from dfsweep.verdict.scores import collect_scores

    run = copy_crops(crops, tmp_path / "driver")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(two_trial_config(crops, weights_file)))
    fifo = EventFifo(tmp_path / "events")
    driver = _start_cli(["run", str(run.root), "-c", str(tmp_path / "c.yaml")], ray_session, fifo, tmp_path / "out")

    # Kill the driver once the first trial is done and the second has a checkpoint (dfsweep.events): just when Tune
    # uploads its experiment state in the background, which the kill may leave half-written; the resume does not
    # depend on it (orchestrator.sweep.earlier_checkpoints).
    first = fifo.wait(lambda e: e["event"] == "trial_done")["trial"]
    second = next(t for t in TWO_TRIALS if t != first)
    fifo.wait(lambda e: e["event"] == "checkpoint" and e["trial"] == second)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    done_before = {p.name: Path(p).stat().st_mtime_ns for p in run.scores.glob("*.parquet")}
    assert list(done_before) == [f"{first}.parquet"] and not run.summary.exists()

    result = CliRunner().invoke(app, ["run", "--resume", str(run.root)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    out = " ".join(result.output.split())
    assert "crops are complete" in out and f"resuming {second} after epoch" in out
    assert f"1 of 2 trials to run: {second}" in out  # only the unfinished trial ran
    assert {p.name: Path(p).stat().st_mtime_ns for p in run.scores.glob("*.parquet") if p.name in done_before} == done_before
    scores = collect_scores(run.scores)  # refuses duplicate (trial, sample, perturbation, level) rows
    assert sorted(set(scores.column("trial_id").to_pylist())) == list(TWO_TRIALS)
    assert run.summary.exists()  # and the report was made
    # It continued after its last checkpointed epoch k, in a new Tune experiment: epochs k + 1 .. 4 only. (The killed
    # driver may not have logged its last epochs to sweep-001's result.json: those rows are Tune's, written late.)
    k = int(re.search(rf"resuming {second} after epoch (\d+)", out).group(1))
    assert k >= 1 and [r["epoch"] for r in trial_epoch_rows(run, second, "sweep-002")] == list(range(k + 1, 5))
    for trial in TWO_TRIALS:
        assert_same_scores(calm_two_trials.score_file(trial), run.score_file(trial))


def test_ctrl_c_in_prepare_and_in_the_sweep_then_resume_gives_the_undisturbed_scores(crops, weights_file, ray_session,
                                                                                      calm_two_trials, tmp_path):
    """SIGINT (Ctrl-C) to `dfsweep run`, once while it crops faces and once while it trains: each time it stops
    cleanly (exit 130, no half-written file) and says how to resume; `dfsweep run --resume` then finishes with the
    undisturbed run's crops and scores."""
    import yaml
    from typer.testing import CliRunner

    from dfsweep.cli import app
    from dfsweep.crops import read_crops

    run = schema.RunDir(tmp_path / "run")
    # Small detection batches, one actor: prepare writes many parts, so Ctrl-C lands between two of them.
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(two_trial_config(crops, weights_file, face_workers=1,
                                                                     face_batch_size=2)))
    resume = f"dfsweep run --resume {run.root}"

    fifo = EventFifo(tmp_path / "events-1")
    proc = _start_cli(["run", str(run.root), "-c", str(tmp_path / "c.yaml")], ray_session, fifo, tmp_path / "out-1")
    fifo.wait(lambda e: e["event"] == "detected" and len([x for x in fifo.seen if x["event"] == "detected"]) == 2)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=120) == 130, (tmp_path / "out-1").read_text()
    out = " ".join((tmp_path / "out-1").read_text().split())
    assert "stopped (Ctrl-C)" in out and f"resume with: {resume}" in out and "Traceback" not in out, out
    assert not run.crops_done.exists() and not run.score_file(TWO_TRIALS[0]).exists()
    parts = {p: os.stat(p.path).st_mtime_ns for p in run.root.glob("detections/*/part-*.parquet")}
    assert parts, "no detections were kept"
    _assert_no_partial_files(run)

    fifo = EventFifo(tmp_path / "events-2")
    proc = _start_cli(["run", "--resume", str(run.root)], ray_session, fifo, tmp_path / "out-2")
    fifo.wait(lambda e: e["event"] == "checkpoint" and e["epoch"] >= 1)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=180) == 130, (tmp_path / "out-2").read_text()
    out = " ".join((tmp_path / "out-2").read_text().split())
    assert "stopped (Ctrl-C)" in out and f"resume with: {resume}" in out and "Traceback" not in out, out
    assert {p: os.stat(p.path).st_mtime_ns for p in parts} == parts  # the detections made before Ctrl-C were not redone
    assert run.crops_done.exists() and not run.summary.exists()
    _assert_no_partial_files(run)

    result = CliRunner().invoke(app, ["run", "--resume", str(run.root)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "crops are complete" in " ".join(result.output.split())
    columns, keys = ["sample_id", "split", "label", "image"], [("sample_id", "ascending")]
    assert read_crops(run, columns=columns).sort_by(keys).equals(read_crops(crops, columns=columns).sort_by(keys))
    for trial in TWO_TRIALS:
        assert_same_scores(calm_two_trials.score_file(trial), run.score_file(trial))
    _assert_no_partial_files(run)


def test_resume_needs_a_run_and_its_own_config(tmp_path):
    from typer.testing import CliRunner

    from dfsweep.cli import app

    result = CliRunner().invoke(app, ["run", "--resume", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "nothing to resume" in result.output
    (tmp_path / "c.yaml").write_text("sweep:\n  seeds: [1]\n")
    result = CliRunner().invoke(app, ["run", "--resume", str(tmp_path / "nothing"), "-c", str(tmp_path / "c.yaml")])
    assert result.exit_code == 2 and "--resume continues a run with its saved config.yaml" in result.output
