"""The CLI: every command explains itself; bad config is a clear message, not a traceback; --dry-run plans."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dfsweep.cli import app

runner = CliRunner()


def _roots(tmp_path: Path) -> list[str]:
    """--source/--target options naming two dataset roots with real/ and fake/ (what a run checks up front)."""
    for d in ("src", "tgt"):
        for c in ("real", "fake"):
            (tmp_path / d / c).mkdir(parents=True, exist_ok=True)
            (tmp_path / d / c / "a.png").write_bytes(b"")
    return ["--source", str(tmp_path / "src"), "--target", str(tmp_path / "tgt")]


@pytest.mark.parametrize("command", ["demo-data", "prepare", "run", "report"])
def test_help_explains_each_command(command):
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "Usage" in result.output and len(result.output.splitlines()) > 5


def test_top_level_help_lists_commands():
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for command in ("demo-data", "prepare", "run", "report"):
        assert command in result.output


def test_unknown_config_key_is_a_clear_error(tmp_path):
    (tmp_path / "bad.yaml").write_text("train:\n  epochs: 3\n")
    result = runner.invoke(app, ["run", str(tmp_path / "run"), "--config", str(tmp_path / "bad.yaml"), "--dry-run"])
    assert result.exit_code == 2
    assert "unknown key(s) ['epochs']" in result.output and "head_epochs" in result.output
    assert "Traceback" not in result.output


def test_dry_run_plans_one_trial_per_variant_and_seed(tmp_path):
    (tmp_path / "c.yaml").write_text("sweep:\n  seeds: [1, 2]\n")
    result = runner.invoke(app, ["run", str(tmp_path / "run"), "-c", str(tmp_path / "c.yaml"), "--dry-run",
                                 *_roots(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "6 trials" in result.output
    for tid in ("v1-none-s1", "v2-paper-s1", "cue-none-s1", "v1-none-s2", "v2-paper-s2", "cue-none-s2"):
        assert tid in result.output


def test_missing_dataset_folder_is_a_clear_error(tmp_path):
    (tmp_path / "src" / "real").mkdir(parents=True)
    result = runner.invoke(app, ["prepare", str(tmp_path / "run"), "--source", str(tmp_path / "src"),
                                 "--target", str(tmp_path / "src")])
    assert result.exit_code == 2 and "no fake/ folder" in result.output


def test_report_without_scores_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "nothing to report" in result.output


def test_a_run_dir_refuses_results_from_a_different_config(tmp_path):
    run = tmp_path / "run"
    (run / "scores").mkdir(parents=True)
    (tmp_path / "a.yaml").write_text("train:\n  input_size_px: 128\n")
    (tmp_path / "b.yaml").write_text("train:\n  input_size_px: 96\n")
    roots = _roots(tmp_path)
    assert runner.invoke(app, ["run", str(run), "-c", str(tmp_path / "a.yaml"), "--dry-run", *roots]).exit_code == 0
    (run / "scores" / "v1-none-s1.parquet").write_bytes(b"")
    result = runner.invoke(app, ["run", str(run), "-c", str(tmp_path / "b.yaml"), "--dry-run", *roots])
    assert result.exit_code == 2 and "train.input_size_px changed" in result.output
    assert runner.invoke(app, ["run", str(run), "--dry-run"]).exit_code == 0  # the saved config is reused


def test_report_compare_puts_two_runs_side_by_side(tmp_path, monkeypatch):
    import json

    from dfsweep import schema
    from test_report import SHIFT, _write_scores

    a, b = schema.RunDir(tmp_path / "a"), schema.RunDir(tmp_path / "b")
    _write_scores(a, SHIFT)
    _write_scores(b, {**SHIFT, ("v2", "target"): 1.5})
    out = tmp_path / "out" / "cmp.json"
    out.parent.mkdir()
    result = runner.invoke(app, ["report", "--compare", str(a.root), str(b.root), "--out", str(out)],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    cmp = json.loads(out.read_text())
    assert (cmp["a"], cmp["b"], cmp["metric"]) == (str(a.root), str(b.root), "image-level AUC")
    assert len(cmp["rows"]) == 4 and all(r["diff"] == pytest.approx(r["b_auc_mean"] - r["a_auc_mean"]) for r in cmp["rows"])
    (v2t,) = [r for r in cmp["rows"] if (r["arm"], r["domain"]) == ("v2/paper", "target")]
    for fragment in ("image-level AUC", "Δ (B − A)", "v2/paper", f"{v2t['diff']:+.3f}", str(out)):
        assert fragment in result.output, fragment
    assert not (a.root / "summary.json").exists() and not (b.root / "report.html").exists()  # compares, reports nothing

    monkeypatch.chdir(tmp_path)  # without --out: compare.json in the working directory
    result = runner.invoke(app, ["report", str(b.root), "--compare", str(a.root)])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "compare.json").read_text()) == cmp  # RUN_DIR is B, --compare names A

    result = runner.invoke(app, ["report", "--compare", str(tmp_path / "nope"), str(b.root)])
    assert result.exit_code == 2 and "nothing to report" in result.output


def test_report_still_rebuilds_one_run_with_figures_and_html(tmp_path):
    from dfsweep import schema
    from test_report import SHIFT, _write_scores

    r = schema.RunDir(tmp_path / "run")
    _write_scores(r, SHIFT)
    (r.root / "config.yaml").write_text("report:\n  bootstrap_samples: 200\n")
    result = runner.invoke(app, ["report", str(r.root)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert r.summary.exists() and (r.root / "report.html").exists() and (r.root / "figures" / "roc.png").exists()
    assert "report.html" in result.output


def test_dry_run_sweeps_augmentations_for_v2_only(tmp_path):
    (tmp_path / "c.yaml").write_text("sweep:\n  seeds: [1, 2]\n  augmentations: [paper, robust]\n")
    result = runner.invoke(app, ["run", str(tmp_path / "run"), "-c", str(tmp_path / "c.yaml"), "--dry-run",
                                 *_roots(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "8 trials" in result.output and "v2-robust-s2" in result.output
    # once in the summary line, once in the line of trials to run: the table lists arms, and V1 is not gridded
    assert result.output.count("v1-none-s1") == 2
    rows = {line.split()[1]: line for line in result.output.splitlines() if line.startswith("│ ") and "/" in line}
    assert set(rows) == {"v1/none", "v2/paper", "v2/robust", "cue/none"}
    assert "2 of 2" in rows["v2/robust"] and "CPU-minutes" in _one_line(result.output)
    (tmp_path / "bad.yaml").write_text("sweep:\n  augmentations: [heavy]\n")
    bad = runner.invoke(app, ["run", str(tmp_path / "run2"), "-c", str(tmp_path / "bad.yaml"), "--dry-run"])
    assert bad.exit_code == 2 and "unknown augmentation 'heavy'" in bad.output


# Inputs a run needs are checked up front, before prepare and before Ray, and under --dry-run too (issue 13, item 12).

def _one_line(output: str) -> str:
    return " ".join(output.split())


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "run"])
def test_a_wrong_weights_path_is_refused_before_prepare_and_ray(tmp_path, monkeypatch, dry_run):
    import dfsweep.cli
    import dfsweep.orchestrator.run

    def tripwire(*args, **kwargs):
        raise AssertionError("Ray or prepare started before the inputs were checked")

    monkeypatch.setattr(dfsweep.cli, "attach", tripwire)
    monkeypatch.setattr(dfsweep.orchestrator.run, "prepare", tripwire)
    (tmp_path / "c.yaml").write_text(f"train:\n  weights: {tmp_path / 'nope' / 'xception.weights.h5'}\n")
    result = runner.invoke(app, ["run", str(tmp_path / "run"), "-c", str(tmp_path / "c.yaml"), *_roots(tmp_path)]
                           + (["--dry-run"] if dry_run else []))
    out = _one_line(result.output)
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert f"train.weights {tmp_path / 'nope' / 'xception.weights.h5'} does not exist" in out
    assert "Traceback" not in result.output


def test_a_weights_file_that_is_no_keras_file_is_refused_up_front(tmp_path):
    (tmp_path / "w.weights.h5").write_text("<html>a login page saved instead of the weights</html>")
    (tmp_path / "c.yaml").write_text(f"train:\n  weights: {tmp_path / 'w.weights.h5'}\n")
    result = runner.invoke(app, ["run", str(tmp_path / "run"), "-c", str(tmp_path / "c.yaml"), "--dry-run",
                                 *_roots(tmp_path)])
    assert result.exit_code == 2, result.output
    assert f"train.weights {tmp_path / 'w.weights.h5'} is not a Keras weights file" in _one_line(result.output)


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "run"])
def test_a_missing_source_or_target_is_refused_before_prepare_and_ray(tmp_path, monkeypatch, dry_run):
    import dfsweep.cli
    import dfsweep.orchestrator.run

    def tripwire(*args, **kwargs):
        raise AssertionError("Ray or prepare started before the inputs were checked")

    monkeypatch.setattr(dfsweep.cli, "attach", tripwire)
    monkeypatch.setattr(dfsweep.orchestrator.run, "prepare", tripwire)
    flag = ["--dry-run"] if dry_run else []
    result = runner.invoke(app, ["run", str(tmp_path / "r1"), *flag])
    assert result.exit_code == 2, result.output + repr(result.exception)
    out = _one_line(result.output)
    assert "prepare.source is not set" in out and "prepare.target is not set" in out and "--source" in out

    roots = _roots(tmp_path)
    result = runner.invoke(app, ["run", str(tmp_path / "r2"), "--source", str(tmp_path / "gone"), *roots[2:], *flag])
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert f"prepare.source {tmp_path / 'gone'} does not exist or is not a folder" in _one_line(result.output)

    (tmp_path / "half" / "real").mkdir(parents=True)
    result = runner.invoke(app, ["run", str(tmp_path / "r3"), *roots[:2], "--target", str(tmp_path / "half"), *flag])
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert f"prepare.target {tmp_path / 'half'} has no fake/ folder" in _one_line(result.output)


def test_resuming_with_complete_crops_needs_no_datasets(tmp_path):
    run = tmp_path / "run"
    assert runner.invoke(app, ["run", str(run), "--dry-run", *_roots(tmp_path)]).exit_code == 0
    (run / "crops").mkdir()
    (run / "crops" / "_DONE").write_text("x\n")
    import shutil

    shutil.rmtree(tmp_path / "src")  # the datasets are not rescanned once the crops are complete
    result = runner.invoke(app, ["run", str(run), "--resume", "--dry-run"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["run", str(run), "--dry-run"])  # without --resume prepare rescans them
    assert result.exit_code == 2 and "prepare.source" in _one_line(result.output)


# A run directory from another dfsweep version: the stamp says which, the error says what to do (item 13).

def test_a_run_is_stamped_with_the_dfsweep_version_that_wrote_it(tmp_path):
    from dfsweep import __version__

    run = tmp_path / "run"
    assert runner.invoke(app, ["run", str(run), "--dry-run", *_roots(tmp_path)]).exit_code == 0
    assert f"dfsweep_version: {__version__}" in (run / "config.yaml").read_text().splitlines()[0]
    assert runner.invoke(app, ["run", str(run), "--dry-run", *_roots(tmp_path)]).exit_code == 0  # and it reads back


@pytest.mark.parametrize("stamp", ["# dfsweep_version: 9.1.0\n", ""], ids=["stamped", "unstamped"])
def test_a_run_from_another_version_says_which_keys_are_unknown_and_what_to_do(tmp_path, stamp):
    from dfsweep import __version__

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(stamp + "train:\n  head_epochs: 2\n  warmup_epochs: 1\n"
                                     "sweep:\n  seeds: [1]\n  pruner: asha\n")
    result = runner.invoke(app, ["run", str(run), "--dry-run", *_roots(tmp_path)])
    assert result.exit_code == 2, result.output
    out = _one_line(result.output)
    assert "unknown to this dfsweep" in out and "train.warmup_epochs, sweep.pruner" in out, out
    written = "written by dfsweep 9.1.0" if stamp else "carries no dfsweep version stamp"
    assert written in out and f"this is dfsweep {__version__}" in out
    assert "start a new run directory" in out and "pip install" in out and "Traceback" not in result.output
    result = runner.invoke(app, ["run", str(run), "--resume", "--dry-run"])
    assert result.exit_code == 2 and "train.warmup_epochs, sweep.pruner" in _one_line(result.output)


def test_a_given_config_does_not_hide_results_made_by_another_version(tmp_path):
    """With --config, the saved config of a run holding results is still read: results made under settings this
    version cannot even name must not be mixed with new ones."""
    run = tmp_path / "run"
    (run / "scores").mkdir(parents=True)
    (run / "config.yaml").write_text("# dfsweep_version: 9.1.0\ntrain:\n  warmup_epochs: 1\n")
    (run / "scores" / "v1-none-s1.parquet").write_bytes(b"")
    (tmp_path / "c.yaml").write_text("sweep:\n  seeds: [1]\n")
    result = runner.invoke(app, ["run", str(run), "-c", str(tmp_path / "c.yaml"), "--dry-run", *_roots(tmp_path)])
    assert result.exit_code == 2, result.output
    out = _one_line(result.output)
    assert "train.warmup_epochs" in out and "written by dfsweep 9.1.0" in out


def test_report_of_a_run_from_another_version_says_what_to_do(tmp_path):
    from dfsweep import schema
    from test_report import SHIFT, _write_scores

    r = schema.RunDir(tmp_path / "run")
    _write_scores(r, SHIFT)
    (r.root / "config.yaml").write_text("# dfsweep_version: 9.1.0\nreport:\n  bootstrap_samples: 200\n"
                                        "  permutations: 500\n")
    result = runner.invoke(app, ["report", str(r.root)])
    assert result.exit_code == 2, result.output
    out = _one_line(result.output)
    assert "report.permutations" in out and "written by dfsweep 9.1.0" in out and "Traceback" not in result.output


@pytest.mark.ray
def test_submit_beside_another_local_ray_is_refused_at_once_with_the_reason(ray_session, tmp_path):
    """Another Ray on the machine (here the session's) holds 127.0.0.1:52365, the port of every local Ray's dashboard
    agent: a new local Ray's dashboard would answer a submitted job with "No available agent" for ever (seen in CI:
    the dashboard test failed after the Ray tests before it). --submit says so before starting anything."""
    from dfsweep import schema

    run = schema.RunDir(tmp_path / "run")
    run.crops.mkdir(parents=True)
    run.crops_done.write_text("x\n")  # complete crops: --resume needs no datasets
    run.config.write_text("sweep:\n  variants: [cue]\n  seeds: [1]\n")
    result = runner.invoke(app, ["run", str(run.root), "--resume", "--submit"], env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    out = _one_line(result.output)
    assert "listens on 127.0.0.1:52365" in out and "--address auto" in out and "ray stop" in out
    assert "submitted as Ray job" not in out
