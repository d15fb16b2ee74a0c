"""The progress displays (orchestrator.progress), Ray's output routing (orchestrator.runlog) and their Tune callback.

The display's state and lines on plain dicts and a hand-driven clock; the callback in a real tiny Tune run on the
session Ray (a trial that fails once and is restarted, one that fails for good), with Tune's own reporter off and,
under --verbose, on; the live table in a real terminal (`script`) on a real `dfsweep run` of two cue trials.
"""

from __future__ import annotations

import io
import logging
import re

import pytest
from rich.console import Console

from dfsweep.orchestrator.progress import PrepareProgress, SweepProgress, TrialRow, clock_text, sweep_eta


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _console(terminal: bool = False, height: int = 40) -> Console:
    return Console(file=io.StringIO(), width=120, height=height, force_terminal=terminal, color_system=None)


def _lines(console: Console) -> list[str]:
    return console.file.getvalue().splitlines()


TRIALS = [dict(trial_id="v1-none-s1", variant="v1"), dict(trial_id="v2-paper-s1", variant="v2"),
          dict(trial_id="cue-none-s1", variant="cue")]
EPOCHS = {"v1-none-s1": 2, "v2-paper-s1": 3, "cue-none-s1": None}


def test_clock_text():
    assert [clock_text(s) for s in (0, 42.4, 605, 3723, None)] == ["0:00", "0:42", "10:05", "1:02:03", "?"]


def test_sweep_lines_are_one_per_event_plus_a_progress_line_at_most_every_30_s_or_5_min_when_nothing_changes():
    clock, console = Clock(), _console()
    with SweepProgress(console, TRIALS, EPOCHS, name="sweep-001", max_failures=2, clock=clock) as d:
        d.started("v1-none-s1")
        d.started("v2-paper-s1")
        for epoch in (1, 2):  # 20 results over 100 s: 3 progress lines, at 30, 60 and 90 s
            for _ in range(10):
                clock.t += 5
                d.result("v1-none-s1", dict(phase="head", epoch=epoch, val_auc=0.6 + epoch / 10))
                d.tick()
        for t in (125, 300, 425):  # nothing new after 100 s: one line 30 s after the last (90 s), then 300 s later
            clock.t = 1000 + t
            d.tick()
        d.result("v1-none-s1", dict(phase="done", epoch=2, chosen_epoch="head/2", scores_written=10))
        d.finished("v1-none-s1")
        d.result("v2-paper-s1", dict(phase="head", epoch=1, val_auc=0.7))
        d.restarting("v2-paper-s1", 1, "RayActorError: the actor died")
        d.started("v2-paper-s1")
        d.result("v2-paper-s1", dict(phase="finetune", epoch=3, val_auc=0.75))
        d.started("cue-none-s1")
        d.result("cue-none-s1", dict(phase="cue", C=0.1, val_auc=0.9))
        d.failed("cue-none-s1", "ValueError: boom")
        d.result("v2-paper-s1", dict(phase="done", epoch=3, chosen_epoch="finetune/1"))
        clock.t += 10
        d.finished("v2-paper-s1")
    assert _lines(console) == [
        "v1-none-s1 started",
        "v2-paper-s1 started",
        "v1-none-s1: head (epoch 1/2)",
        # By hand (sweep_eta): at 30 s v1 is 1 epoch of 2 in, so it takes 60 s, as do v2 and the cue (nothing known
        # of them: the mean); 30 + 30 + 60 s left, two at a time: 60 s. At 60 s, epoch 2 of 2: v1 and v2 take 60 s,
        # 0 left, the cue 60 s. At 90 s, still epoch 2: 90 s each, so the cue's 90 s.
        "sweep-001: 0/3 trials done, 2 running (v1-none-s1 head 1/2, v2-paper-s1), 1 pending; elapsed 0:30; ETA 1:00",
        "sweep-001: 0/3 trials done, 2 running (v1-none-s1 scoring 2/2, v2-paper-s1), 1 pending; elapsed 1:00; ETA 1:00",
        "sweep-001: 0/3 trials done, 2 running (v1-none-s1 scoring 2/2, v2-paper-s1), 1 pending; elapsed 1:30; ETA 1:30",
        # From here on each trial is expected to take as long as it has run so far (epoch 2 of 2).
        "sweep-001: 0/3 trials done, 2 running (v1-none-s1 scoring 2/2, v2-paper-s1), 1 pending; elapsed 2:05; ETA 2:05",
        "sweep-001: 0/3 trials done, 2 running (v1-none-s1 scoring 2/2, v2-paper-s1), 1 pending; elapsed 7:05; ETA 7:05",
        "v1-none-s1 done in 7:05, selected head/2, last val AUC 0.800",
        "v2-paper-s1: head (epoch 1/3)",
        "v2-paper-s1 failed (RayActorError: the actor died); restarting (failure 1 of 2 allowed)",
        "v2-paper-s1 restarted (attempt 2)",
        "v2-paper-s1: finetune (epoch 3/3)",
        "cue-none-s1 started",
        "cue-none-s1: cue",
        "cue-none-s1 FAILED after 0:00: ValueError: boom",
        "v2-paper-s1 done in 7:15, selected finetune/1, last val AUC 0.750",
        "sweep-001: 2/3 trials done, 1 failed; elapsed 7:15",
    ]


def test_a_trial_that_ends_without_its_done_report_was_stopped():
    """Ctrl-C: Tune stops every trial and ends them as if complete; a display left by an exception stops the rest."""
    clock, console = Clock(), _console()
    with pytest.raises(KeyboardInterrupt):
        with SweepProgress(console, TRIALS, EPOCHS, clock=clock) as d:
            d.started("v1-none-s1")
            d.started("v2-paper-s1")
            d.result("v1-none-s1", dict(phase="head", epoch=1, val_auc=0.6))
            d.finished("v1-none-s1")
            raise KeyboardInterrupt
    assert d.rows["v1-none-s1"].status == "stopped" and d.rows["v2-paper-s1"].status == "stopped"
    assert _lines(console)[-2:] == ["v1-none-s1 stopped after 0:00",
                                    "sweep: 0/3 trials done, 1 pending, 2 stopped; elapsed 0:00"]


def test_eta_by_hand():
    now = 100.0
    rows = [TrialRow("v1-a", "v1", 2, status="done", started=0, ended=10),
            TrialRow("v1-b", "v1", 2, status="done", started=0, ended=20),
            TrialRow("v1-c", "v1", 2),  # pending: the median v1, 15 s
            TrialRow("v2-a", "v2", 4, status="running", epoch=1, started=80),  # 20 s for 1 of 4 epochs: 80 s, 60 left
            TrialRow("cue-a", "cue", None)]  # nothing known of the cue: the mean of the others' expectations, 47.5
    assert sweep_eta(rows, now, concurrency=1) == pytest.approx(15 + 60 + 47.5)
    assert sweep_eta(rows, now, concurrency=2) == pytest.approx(max((15 + 60 + 47.5) / 2, 60))
    assert sweep_eta(rows, now, concurrency=8) == pytest.approx(60)  # never less than the longest one left
    assert sweep_eta([TrialRow("x", "v1", 2)], now, 1) is None  # nothing known yet
    assert sweep_eta(rows[:2], now, 1) == 0.0


def test_epoch_totals_follow_each_arms_own_finetune_epochs():
    from dfsweep.config import config_from_dict
    from dfsweep.orchestrator.sweep import plan_trials, trial_epochs

    cfg = config_from_dict({"train": {"head_epochs": 5, "finetune_epochs": 2},
                            "sweep": {"seeds": [1], "variants": ["v1", "v2", "cue"],
                                      "arms": [{"augmentation": "paper"},
                                               {"augmentation": "none", "unfreeze_layers": 0, "finetune_epochs": 9}]}})
    got = {t["trial_id"]: trial_epochs(t, cfg.train) for t in plan_trials(cfg)}
    assert sorted(got.values(), key=str) == [14, 5, 7, None], got  # v2 u0 arm: 5 + 9; paper arm: 5 + 2; v1: 5


def test_the_live_table_has_a_row_per_trial_with_status_phase_epoch_auc_elapsed():
    clock = Clock()
    d = SweepProgress(_console(terminal=True), TRIALS, EPOCHS, name="sweep-001", clock=clock)
    d.started("v1-none-s1")
    clock.t += 65
    d.result("v1-none-s1", dict(phase="head", epoch=1, val_auc=0.6123))
    out = _console(terminal=True)
    out.print(d.render())
    text = out.file.getvalue()
    assert re.search(r"trial\s+┃ status\s+┃ phase\s+┃ epoch ┃ val AUC ┃ elapsed", text), text
    assert re.search(r"v1-none-s1\s+│ running\s+│ head\s+│\s+1/2 │\s+0\.612 │\s+1:05", text), text
    assert re.search(r"v2-paper-s1\s+│ pending", text) and re.search(r"cue-none-s1\s+│ pending", text), text
    assert "sweep-001: 0/3 trials done, 1 running, 2 pending; elapsed 1:05" in text
    d.result("v1-none-s1", dict(phase="head", epoch=2, val_auc=0.7))  # its last epoch: it goes on to score
    out.print(d.render())
    assert re.search(r"v1-none-s1\s+│ running\s+│ scoring\s+│\s+2/2 │\s+0\.700", out.file.getvalue())


def test_a_table_taller_than_the_terminal_keeps_the_running_rows_and_counts_the_rest():
    trials = [dict(trial_id=f"v1-none-s{i}", variant="v1") for i in range(40)]
    d = SweepProgress(_console(terminal=True, height=20), trials, {}, clock=Clock())
    d.started("v1-none-s39")
    shown = d._shown_rows()
    assert len(shown) == 12 and shown[-1] == "… 29 more: 29 pending"
    assert any(getattr(r, "trial_id", "") == "v1-none-s39" for r in shown)


def test_prepare_lines():
    clock, console = Clock(), _console()
    with PrepareProgress(console, clock=clock) as p:
        p("scan", 0, 0)
        p("scanned", 100, 120)
        for done in range(0, 101, 5):  # 5 faces every 4 s (1.25/s), 80 s in all: progress lines at 32 s and 64 s
            p("detect", done, 100)
            clock.t += 4
        p("write", 0, 98)
    assert _lines(console) == ["faces: 40/100 detected (40%), 1.2/s; ETA 0:48",
                               "faces: 80/100 detected (80%), 1.2/s; ETA 0:16",
                               "faces: 100/100 detected in 1:20"]
    live = _console(terminal=True)
    live.print(p.render())
    assert "120 files scanned, 100 sampled" in live.file.getvalue() and "100/100 cropped" in live.file.getvalue()


def test_the_prepare_panel_last_frame_says_the_crops_were_written():
    """The last frame stays on the terminal: it said 'writing 98 crops' under a spinner for ever (seen in tmux)."""
    frames = []
    for failed in (False, True):
        console = _console(terminal=True)
        try:
            with PrepareProgress(console, clock=Clock()) as p:
                p("scanned", 100, 120)
                p("detect", 100, 100)
                p("write", 0, 98)
                writing = _console(terminal=True)
                writing.print(p.render())
                assert "writing 98 crops" in writing.file.getvalue()
                if failed:
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            pass
        last = _console(terminal=True)
        last.print(p.render())
        frames.append(last.file.getvalue())
    assert "wrote 98 crops" in frames[0] and "writing" not in frames[0]
    assert "stopped writing 98 crops" in frames[1]


def test_ray_warnings_go_to_the_log_file_and_only_unknown_ones_to_the_console(tmp_path):
    from dfsweep import schema
    from dfsweep.orchestrator.runlog import RunLog

    import ray  # noqa: F401  (Ray puts its console handler on the "ray" logger when imported)
    import ray.data  # noqa: F401  (and Ray Data its own on "ray.data")

    console = _console()
    before = {name: list(logging.getLogger(name).handlers) for name in ("ray", "ray.data")}
    assert before["ray"] and before["ray.data"]
    with RunLog(schema.RunDir(tmp_path / "run"), console, command="run") as log:
        logging.getLogger("ray.tune.execution").warning("Experiment state snapshotting has been triggered multiple "
                                                        "times in the last 5.0 seconds")
        logging.getLogger("ray.data._internal").warning("something new went wrong\nwith details")
        logging.getLogger("ray.tune").info("an info line")
    assert {name: logging.getLogger(name).handlers for name in before} == before  # routed back as it was
    shown = _lines(console)
    assert shown[0] == f"run directory: {tmp_path / 'run'}"
    assert shown[1].startswith(f"log: {tmp_path / 'run' / 'logs'}/run-") and shown[1].endswith(".log (Ray, Ray "
                                                                                               "Data and Tune; "
                                                                                               "--verbose shows "
                                                                                               "them here)")
    assert shown[2:] == ["ray warning: something new went wrong (more in the log file)"]
    text = open(log.local).read()
    for fragment in ("snapshotting has been triggered", "something new went wrong", "with details", "an info line"):
        assert fragment in text


@pytest.mark.ray
def test_tune_callback_feeds_the_display_and_tunes_own_output_is_off_unless_verbose(ray_session, tmp_path, capsys):
    from dfsweep import schema
    from dfsweep.config import config_from_dict
    from dfsweep.orchestrator.runlog import quiet_tune
    from dfsweep.orchestrator.sweep import _new_tuner
    from dfsweep.orchestrator.tune_events import ShowProgress

    def _fake_trial(config):  # defined here: Ray pickles it by value for its workers
        """A Tune function trainable that reports like dfsweep's trials: "flaky" fails on its first attempt, "broken"
        always."""
        from pathlib import Path

        from ray import tune

        t = config["trial"]
        marker = Path(t["marker"])
        if t["variant"] == "flaky" and not marker.exists():
            marker.write_text("failed once")
            raise RuntimeError("first attempt fails")
        if t["variant"] == "broken":
            raise ValueError("this trial always fails")
        for epoch in (1, 2):
            tune.report(dict(phase="head", epoch=epoch, val_auc=0.5 + epoch / 10))
        tune.report(dict(phase="done", epoch=2, chosen_epoch="head/2"))

    cfg = config_from_dict({"sweep": {"max_failures": 1}})
    run = schema.RunDir(tmp_path / "run")
    todo = [dict(trial_id=f"{v}-none-s1", variant=v, augmentation="none", seed=1, marker=str(tmp_path / v))
            for v in ("ok", "flaky", "broken")]
    console = _console()
    display = SweepProgress(console, todo, {t["trial_id"]: 2 for t in todo}, name="sweep-001", max_failures=1)
    with quiet_tune(True) as verbose, display:
        results = _new_tuner(cfg, run, _fake_trial, todo, "sweep-001", verbose=verbose,
                             callbacks=(ShowProgress(display),)).fit()
    tune_out = capsys.readouterr().out
    assert sorted(r.metrics.get("phase", "") for r in results) == ["", "done", "done"]
    lines = _lines(console)
    for tid in ("ok-none-s1", "flaky-none-s1"):
        assert [ln for ln in lines if ln.startswith(tid)][-1].startswith(f"{tid} done in ")
        assert f"{tid}: head (epoch 1/2)" in lines
    assert "flaky-none-s1 restarted (attempt 2)" in lines
    restart = next(ln for ln in lines if ln.startswith("flaky-none-s1 failed ("))
    assert "RuntimeError: first attempt fails" in restart and "restarting (failure 1 of 1 allowed)" in restart
    broken = [ln for ln in lines if ln.startswith("broken-none-s1 FAILED")]
    assert len(broken) == 1 and "ValueError: this trial always fails" in broken[0], lines
    traceback = re.search(r"\(traceback: (\S+)\)$", broken[0]).group(1)
    assert traceback.startswith(str(tmp_path / "run" / "tune" / "sweep-001" / "broken-none-s1"))
    assert "this trial always fails" in open(traceback).read()  # synced there by the end of the sweep
    assert lines[-1].startswith("sweep-001: 2/3 trials done, 1 failed; elapsed ")
    assert "Trial status" not in tune_out and "Configuration for experiment" not in tune_out, tune_out

    with quiet_tune(False) as verbose:  # --verbose: Tune's own output is back
        _new_tuner(cfg, run, _fake_trial, todo[:1], "sweep-002", verbose=verbose).fit()
    assert "Configuration for experiment" in capsys.readouterr().out


@pytest.mark.ray
def test_the_live_display_in_a_terminal_shows_the_trial_rows(tiny_crops, ray_session, tmp_path):
    """`dfsweep run` under `script` (a pseudo-terminal): the live table draws a row per trial, and the sweep ends
    with every row done, before the report."""
    import os
    import shutil
    import subprocess
    import sys

    import yaml

    from dfsweep import schema

    assert shutil.which("script"), "`script` (util-linux) is needed to run a command in a pseudo-terminal"
    run = schema.RunDir(tmp_path / "run")
    shutil.copytree(tiny_crops.crops, run.crops)  # complete crops: `--resume` goes straight to the sweep
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump({
        "prepare": {"crop_size_px": 80},
        "sweep": {"variants": ["cue"], "seeds": [1, 2], "cpus_per_trial": 1},
        "report": {"bootstrap_samples": 100}}))
    env = {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address, "COLUMNS": "100",
           "LINES": "40", "TERM": "xterm-256color"}
    cmd = f"{sys.executable} -m dfsweep.cli run --resume {run.root}"
    proc = subprocess.run(["script", "-q", "-e", "-c", cmd, "/dev/null"], env=env, capture_output=True, timeout=300)
    raw = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, raw[-3000:]
    assert "\x1b[" in raw  # drawn with terminal control codes: a live display, not lines
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)", "", raw)
    frames = text.split("sweep-001: ")
    assert len(frames) > 3, text[-3000:]  # redrawn as the trials ran
    last = frames[-1]
    assert last.startswith("2/2 trials done"), last[:500]
    for tid in ("cue-none-s1", "cue-none-s2"):
        assert re.search(rf"{tid}\s+│ done\s+│ selected C=", last), last[:1500]
        assert re.search(rf"{tid}\s+│ (pending|running)", text)  # and before that, pending or running
    assert last.index("cue-none-s2") < last.index("dfsweep report")  # the table, then the report
    assert "started" not in text and "Trial status" not in text  # no event lines, no Tune tables
