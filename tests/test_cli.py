"""The CLI: every command explains itself; bad config is a clear message, not a traceback; --dry-run plans."""

import pytest
from typer.testing import CliRunner

from dfsweep.cli import app

runner = CliRunner()


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
    result = runner.invoke(app, ["run", str(tmp_path / "run"), "-c", str(tmp_path / "c.yaml"), "--dry-run"])
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
    assert runner.invoke(app, ["run", str(run), "-c", str(tmp_path / "a.yaml"), "--dry-run"]).exit_code == 0
    (run / "scores" / "v1-none-s1.parquet").write_bytes(b"")
    result = runner.invoke(app, ["run", str(run), "-c", str(tmp_path / "b.yaml"), "--dry-run"])
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
    result = runner.invoke(app, ["run", str(tmp_path / "run"), "-c", str(tmp_path / "c.yaml"), "--dry-run"],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "8 trials" in result.output and "v2-robust-s2" in result.output
    assert result.output.count("v1-none-s1") == 2  # once in the summary line, once in the table: V1 is not gridded
    (tmp_path / "bad.yaml").write_text("sweep:\n  augmentations: [heavy]\n")
    bad = runner.invoke(app, ["run", str(tmp_path / "run2"), "-c", str(tmp_path / "bad.yaml"), "--dry-run"])
    assert bad.exit_code == 2 and "unknown augmentation 'heavy'" in bad.output
