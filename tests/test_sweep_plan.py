"""A run's report covers exactly the trials its sweep plans, and score files that cannot be read are named, set aside
and their trials run again (issue 13, items 3 and 10). No Ray: every planned trial here already has its scores, or
the tests stop at planning."""

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from dfsweep import schema
from dfsweep.cli import app
from dfsweep.config import config_from_dict
from dfsweep.orchestrator.sweep import run_sweep, todo_trials
from dfsweep.verdict.report import report
from dfsweep.verdict.scores import collect_scores
from test_cli import _one_line, _roots
from test_report import SHIFT, _write_scores

runner = CliRunner()
QUIET = dict(log=lambda *a: None)


def _cfg(seeds, variants=("v1", "v2")):
    return config_from_dict({"sweep": {"variants": list(variants), "seeds": list(seeds)},
                             "report": {"bootstrap_samples": 200}})


def _trials(summary) -> set[str]:
    return {t["trial_id"] for t in summary["trials"]}


def _cut(path, keep: float = 0.5) -> None:
    """Truncate a file, as a full disk or a killed copy leaves it."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * keep)])


# --- the grid: arms of V2's interventions (issue 15 item 3) ------------------------------------------------------------

def _plan(sweep: dict, train: dict | None = None) -> list[dict]:
    from dfsweep.orchestrator.sweep import plan_trials

    return plan_trials(config_from_dict({"sweep": {"seeds": [1], **sweep}, "train": train or {}}))


def test_the_default_grid_is_the_papers_v2_alone_and_keeps_its_trial_ids():
    plan = _plan({})
    assert [t["trial_id"] for t in plan] == ["v1-none-s1", "v2-paper-s1", "cue-none-s1"]
    v1, v2, _ = plan
    assert (v2["arm"], v2["augmentation"], v2["unfreeze_layers"], v2["adapt_share"], v2["selection"]) == \
        ("paper", "paper", 40, 0.25, "source_val")
    assert (v1["arm"], v1["unfreeze_layers"], v1["adapt_share"]) == ("none", 0, 0.0)  # V1 fine-tunes nothing
    # sweep.augmentations alone names its arms after the presets, as before arms existed
    assert [t["trial_id"] for t in _plan({"variants": ["v2"], "augmentations": ["paper", "robust"]})] == \
        ["v2-paper-s1", "v2-robust-s1"]


def test_every_combination_of_the_axes_is_one_arm_named_by_what_it_changes():
    plan = _plan({"variants": ["v1", "v2"], "augmentations": ["none", "paper"], "unfreeze_layers": [0, 40],
                  "adapt_shares": [0, 0.25], "selections": ["source_val", "target_val"]})
    arms = [t["arm"] for t in plan if t["variant"] == "v2"]
    assert len(arms) == len(set(arms)) == 16
    assert {"paper", "none-u0-a0-tval", "paper-a0", "none-u0", "paper-tval"} <= set(arms)
    by = {t["arm"]: t for t in plan}
    assert (by["none-u0-a0-tval"]["unfreeze_layers"], by["none-u0-a0-tval"]["adapt_share"],
            by["none-u0-a0-tval"]["selection"]) == (0, 0.0, "target_val")
    # names are relative to train's own depth and share: the base point is "paper" whatever they are
    assert [t["arm"] for t in _plan({"variants": ["v2"]}, {"unfreeze_last_layers": 20, "adapt_share": 0.5})] == ["paper"]


def test_arms_one_by_one_take_the_base_point_for_what_they_leave_out():
    plan = _plan({"variants": ["v2"], "arms": [{"augmentation": "paper"},
                                               {"augmentation": "none", "unfreeze_layers": 0, "adapt_share": 0.5,
                                                "selection": "target_val"},
                                               {"name": "mine", "augmentation": "robust", "adapt_share": 0},
                                               {"augmentation": "none", "unfreeze_layers": 0, "finetune_epochs": 8,
                                                "finetune_lr": 0.001}]})
    assert [(t["trial_id"], t["unfreeze_layers"], t["adapt_share"]) for t in plan] == \
        [("v2-paper-s1", 40, 0.25), ("v2-none-u0-a50-tval-s1", 0, 0.5), ("v2-mine-s1", 40, 0.0),
         ("v2-none-u0-e8-lr0.001-s1", 0, 0.25)]
    assert (plan[0]["finetune_epochs"], plan[0]["finetune_lr"]) == (3, 1e-5)  # train's, where an arm says nothing
    assert (plan[3]["finetune_epochs"], plan[3]["finetune_lr"]) == (8, 0.001)


def test_the_demo_config_plans_its_arms():
    from pathlib import Path

    from dfsweep.config import load_config
    from dfsweep.orchestrator.sweep import plan_trials

    plan = plan_trials(load_config(Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"))
    assert len(plan) == 12 and {t["arm"] for t in plan if t["variant"] == "v2"} == {"paper", "target_adapt"}
    adapt = next(t for t in plan if t["arm"] == "target_adapt")
    assert (adapt["unfreeze_layers"], adapt["adapt_share"], adapt["augmentation"]) == (0, 0.75, "none")


@pytest.mark.parametrize("arms, fragment", [
    ([{"name": "x"}, {"name": "x", "adapt_share": 0}], "two arms are named 'x'"),
    ([{"augmentation": "paper"}, {"name": "again"}], "same grid point"),
    ([{"augmentation": "heavy"}], "unknown augmentation 'heavy'"),
])
def test_arms_that_cannot_be_told_apart_are_refused(arms, fragment):
    with pytest.raises(ValueError, match=fragment):
        _plan({"variants": ["v2"], "arms": arms})


# --- item 3: the report covers exactly the planned trials ------------------------------------------------------------

def test_dropping_a_seed_leaves_its_trials_out_of_the_report_and_names_them(tmp_path):
    run = schema.RunDir(tmp_path / "run")
    _write_scores(run, SHIFT)  # seeds 1, 2, 3 of v1/none and v2/paper
    assert run_sweep(_cfg([1, 2]), run, **QUIET) == []  # seed 3 dropped from the sweep: nothing to run
    summary = report(run.root)
    assert _trials(summary) == {"v1-none-s1", "v1-none-s2", "v2-paper-s1", "v2-paper-s2"}
    assert summary["not_in_sweep"] == ["v1-none-s3.parquet", "v2-paper-s3.parquet"]
    assert any("not in this sweep" in w and "v1-none-s3.parquet" in w for w in summary["warnings"])
    assert run.score_file("v1-none-s3").exists()  # kept: adding the seed back reports it again
    assert sorted(set(collect_scores(run.scores).column("seed").to_pylist())) == [1, 2]

    result = runner.invoke(app, ["report", str(run.root)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "not in this sweep" in _one_line(result.output)

    assert run_sweep(_cfg([1, 2, 3]), run, **QUIET) == []  # the seed is back: so are its trials
    assert len(_trials(report(run.root))) == 6


def test_dropping_a_variant_leaves_its_trials_out_of_the_report(tmp_path):
    run = schema.RunDir(tmp_path / "run")
    _write_scores(run, SHIFT)
    run_sweep(_cfg([1, 2, 3], variants=["v1"]), run, **QUIET)
    assert _trials(report(run.root)) == {"v1-none-s1", "v1-none-s2", "v1-none-s3"}


def test_adding_seeds_or_variants_runs_only_the_new_trials(tmp_path):
    run = schema.RunDir(tmp_path / "run")
    _write_scores(run, SHIFT, seeds=(1, 2))
    assert [t["trial_id"] for t in todo_trials(_cfg([1, 2, 3]), run, **QUIET)] == ["v1-none-s3", "v2-paper-s3"]
    assert [t["trial_id"] for t in todo_trials(_cfg([1, 2], ("v1", "v2", "cue")), run, **QUIET)] == \
        ["cue-none-s1", "cue-none-s2"]


def test_dry_run_says_which_planned_trials_have_scores(tmp_path):
    run = schema.RunDir(tmp_path / "run")
    _write_scores(run, SHIFT, seeds=(1, 2))
    (tmp_path / "c.yaml").write_text("sweep:\n  variants: [v1, v2]\n  seeds: [2, 3]\n")
    result = runner.invoke(app, ["run", str(run.root), "-c", str(tmp_path / "c.yaml"), "--dry-run",
                                 *_roots(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = _one_line(result.output)
    assert "2 of 4 trials to run: v1-none-s3, v2-paper-s3" in out, out
    assert "2 score files of trials not in this sweep (v1-none-s1.parquet, v2-paper-s1.parquet)" in out


# --- item 10: score files that cannot be read ------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["truncated", "empty", "not parquet"])
def test_report_names_a_corrupt_score_file_and_says_what_to_do(tmp_path, damage):
    run = schema.RunDir(tmp_path / "run")
    _write_scores(run, SHIFT)
    bad = run.score_file("v2-paper-s2")
    {"truncated": lambda: _cut(bad), "empty": lambda: Path(bad).write_bytes(b""),
     "not parquet": lambda: Path(bad).write_text("trial_id,score\nv2-paper-s2,0.5\n")}[damage]()
    with pytest.raises(schema.SchemaError, match="v2-paper-s2.parquet"):
        collect_scores(run.scores)
    result = runner.invoke(app, ["report", str(run.root)])
    assert result.exit_code == 2, result.output + repr(result.exception)
    out = _one_line(result.output)
    assert f"{bad} is not a readable score file" in out and "dfsweep run" in out, out
    assert "Traceback" not in result.output


def test_a_score_file_that_breaks_the_schema_is_named_too(tmp_path):
    run = schema.RunDir(tmp_path / "run")
    _write_scores(run, SHIFT)
    f = run.score_file("v1-none-s1")
    pq.write_table(pq.read_table(f).drop_columns(["score"]), f)
    result = runner.invoke(app, ["report", str(run.root)])
    assert result.exit_code == 2 and "v1-none-s1.parquet" in _one_line(result.output)


def test_planning_sets_a_corrupt_score_file_aside_and_reruns_its_trial(tmp_path):
    run = schema.RunDir(tmp_path / "run")
    _write_scores(run, SHIFT, seeds=(1,))
    _cut(run.score_file("v2-paper-s1"))
    logged = []
    todo = todo_trials(_cfg([1]), run, log=logged.append)
    assert [t["trial_id"] for t in todo] == ["v2-paper-s1"]  # counted as missing, not as done
    assert not run.score_file("v2-paper-s1").exists() and run.score_file("v1-none-s1").exists()
    (aside,) = run.scores_set_aside.iterdir()
    assert aside.name.startswith("v2-paper-s1.parquet.")  # scores/_bad/<name>.<time>: kept for a post-mortem
    assert any("v2-paper-s1.parquet is not a readable score file" in m and str(aside) in m for m in logged), logged
    assert [p.name for p in run.scores.glob("*.parquet")] == ["v1-none-s1.parquet"]  # the report is unaffected
    summary = report(run.root)  # until the trial has run again, the report says it lacks scores
    assert _trials(summary) == {"v1-none-s1"} and summary["planned_without_scores"] == ["v2-paper-s1"]
    assert any("v2-paper-s1" in w and "no scores" in w for w in summary["warnings"])


def test_dry_run_names_a_corrupt_score_file_without_moving_it(tmp_path):
    run = schema.RunDir(tmp_path / "run")
    _write_scores(run, SHIFT, seeds=(1,))
    _cut(run.score_file("v2-paper-s1"))
    (tmp_path / "c.yaml").write_text("sweep:\n  variants: [v1, v2]\n  seeds: [1]\n")
    result = runner.invoke(app, ["run", str(run.root), "-c", str(tmp_path / "c.yaml"), "--dry-run",
                                 *_roots(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = _one_line(result.output)
    assert "1 of 2 trials to run: v2-paper-s1" in out and "v2-paper-s1.parquet is not a readable score file" in out
    assert run.score_file("v2-paper-s1").exists()  # a dry run changes nothing


def test_an_unfinished_trial_resumes_from_its_newest_checkpoint_that_reads_back(tmp_path):
    """A sweep stopped mid-trial (driver killed, Ctrl-C) leaves the trial's epoch checkpoints under tune/sweep-*/;
    the next sweep's trial starts from the newest that reads back whole, skipping a cut one."""
    import json

    import numpy as np

    from dfsweep.orchestrator.sweep import earlier_checkpoints
    from dfsweep.trainables.checkpoint import tune_checkpointing

    run = schema.RunDir(tmp_path / "run")
    trial = "v2-paper-s1"

    def checkpoint(sweep: str, n: int, epoch: int, of: str = trial) -> Path:
        d = Path(run.tune.path) / sweep / of / f"checkpoint_{n:06d}"
        d.mkdir(parents=True)
        (d / "state.json").write_text(json.dumps({"epoch": epoch, "best_key": [0.5, -1.0], "best_epoch": "head 1",
                                                 "rng": {"state": epoch}}))
        np.savez(d / "arrays.npz", current_0000=np.full(3, epoch, np.float32))
        return d

    checkpoint("sweep-001", 0, 1)
    checkpoint("sweep-001", 1, 2)
    cut = checkpoint("sweep-002", 0, 3) / "arrays.npz"
    cut.write_bytes(cut.read_bytes()[:100])  # the kill landed while it was written
    garbled = checkpoint("sweep-002", 1, 4) / "state.json"
    garbled.write_text('{"epoch": 4, "best')
    checkpoint("sweep-001", 0, 9, of="v1-none-s1")  # another trial's

    earlier = earlier_checkpoints(run, trial)  # the cut and the garbled ones left out
    assert earlier == [(2, "sweep-001/v2-paper-s1/checkpoint_000001"), (1, "sweep-001/v2-paper-s1/checkpoint_000000")]
    _, restored = tune_checkpointing(earlier, run.tune)
    assert restored["state"]["epoch"] == 2 and restored["arrays"]["current"][0].tolist() == [2, 2, 2]
    # The trial itself also passes over one that does not read back (a zip directory, but cut data).
    damaged = checkpoint("sweep-003", 0, 5) / "arrays.npz"
    data = bytearray(damaged.read_bytes())
    data[40:80] = bytes(40)  # inside the array's data, before the zip directory
    damaged.write_bytes(bytes(data))
    listed = earlier_checkpoints(run, trial)
    assert listed[0] == (5, "sweep-003/v2-paper-s1/checkpoint_000000")
    assert tune_checkpointing(listed, run.tune)[1]["state"]["epoch"] == 2
    assert tune_checkpointing([], run.tune)[1] is None  # nothing earlier: the trial starts afresh
