"""The report from stored scores alone: numbers against scikit-learn/scipy, JSON on disk, no heavy imports."""

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from dfsweep import schema
from dfsweep.config import ReportConfig
from dfsweep.orchestrator.collect import collect_scores
from dfsweep.orchestrator.report import build_summary, render, write_summary

SEEDS = (1, 2, 3)


def _write_scores(run: schema.RunDir, shift: dict, n: int = 60) -> dict:
    """Synthetic scores: each (variant, seed, domain) separates the classes by `shift[variant, domain] + seed noise`."""
    run.scores.mkdir(parents=True, exist_ok=True)
    truth = {}
    for variant, aug in (("v1", "none"), ("v2", "paper")):
        for seed in SEEDS:
            rng = np.random.default_rng(seed * 10 + (variant == "v2"))
            cols = {k: [] for k in schema.SCORES.names}
            for domain in ("source", "target"):
                y = np.r_[np.ones(n // 2, int), np.zeros(n // 2, int)]
                logit = rng.normal(0, 1, n) + y * (shift[variant, domain] + 0.1 * seed)
                s = 1 / (1 + np.exp(-logit))
                truth[f"{variant}-{aug}-s{seed}", domain] = (y, s)
                for i in range(n):
                    for k, v in dict(trial_id=f"{variant}-{aug}-s{seed}", variant=variant, augmentation=aug, seed=seed,
                                     dataset=domain, domain=domain, split="test", sample_id=f"{domain}{i}", label=y[i],
                                     perturbation="none", level=0, score=s[i]).items():
                        cols[k].append(v)
            pq.write_table(pa.table(cols, schema=schema.SCORES), run.score_file(f"{variant}-{aug}-s{seed}"))
    return truth


@pytest.fixture()
def run(tmp_path):
    r = schema.RunDir(tmp_path)
    truth = _write_scores(r, {("v1", "source"): 2.0, ("v2", "source"): 2.2, ("v1", "target"): 0.2, ("v2", "target"): 0.8})
    return r, truth


def test_per_trial_auc_and_ci_against_sklearn(run):
    r, truth = run
    summary = build_summary(r.root, ReportConfig(bootstrap_samples=500))
    assert len(summary["trials"]) == 12
    for t in summary["trials"]:
        y, s = truth[t["trial_id"], t["domain"]]
        assert t["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-9)
        assert t["auc_ci_low"] <= t["auc"] <= t["auc_ci_high"]
        assert t["tp"] + t["fn"] == 30 and t["tn"] + t["fp"] == 30


def test_across_seed_aggregate_and_paired_t_against_scipy(run):
    r, truth = run
    summary = build_summary(r.root, ReportConfig(bootstrap_samples=500))
    for domain in ("source", "target"):
        v1 = [roc_auc_score(*truth[f"v1-none-s{s}", domain]) for s in SEEDS]
        v2 = [roc_auc_score(*truth[f"v2-paper-s{s}", domain]) for s in SEEDS]
        agg = {a["arm"]: a for a in summary["aggregate"] if a["domain"] == domain}
        assert agg["v1/none"]["auc_mean"] == pytest.approx(np.mean(v1))
        assert agg["v1/none"]["auc_sd"] == pytest.approx(np.std(v1, ddof=1)) and agg["v1/none"]["sd_ddof"] == 1
        (test,) = [t for t in summary["tests"] if t["domain"] == domain]
        ref = sps.ttest_rel(v2, v1, alternative="greater")
        assert test["t"] == pytest.approx(ref.statistic) and test["p_value"] == pytest.approx(ref.pvalue)
        assert test["df"] == 2 and test["candidate"] == "v2/paper" and test["baseline"] == "v1/none"


def test_summary_json_is_standard_and_rebuilt_identically(run, tmp_path):
    r, _ = run
    a = build_summary(r.root, ReportConfig(bootstrap_samples=300))
    write_summary(a, tmp_path / "a.json")
    write_summary(build_summary(r.root, ReportConfig(bootstrap_samples=300)), tmp_path / "b.json")
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text()
    loaded = json.loads((tmp_path / "a.json").read_text())  # allow_nan=False on write: strict JSON
    assert loaded["auc_level"] == "image" and "ddof=1" in loaded["statistics"]["sd"]


def test_one_class_predictions_are_warned_about(tmp_path):
    r = schema.RunDir(tmp_path)
    _write_scores(r, {("v1", "source"): 2.0, ("v2", "source"): 2.0, ("v1", "target"): 0.0, ("v2", "target"): 0.0})
    t = pq.read_table(r.score_file("v1-none-s1"))
    t = t.set_column(t.schema.get_field_index("score"), "score", pa.array(np.full(t.num_rows, 0.1, np.float32)))
    pq.write_table(t, r.score_file("v1-none-s1"))
    warnings = build_summary(r.root, ReportConfig(bootstrap_samples=200))["warnings"]
    assert any("v1-none-s1 calls every" in w and "real" in w for w in warnings)


def test_duplicate_score_rows_are_refused(run):
    r, _ = run
    pq.write_table(pq.read_table(r.score_file("v1-none-s1")), r.scores / "copy.parquet")
    with pytest.raises(schema.SchemaError, match="duplicate"):
        collect_scores(r.scores)


def test_render_draws_every_section(run):
    from rich.console import Console

    r, _ = run
    console = Console(record=True, width=160)
    render(build_summary(r.root, ReportConfig(bootstrap_samples=200)), console)
    text = console.export_text()
    for fragment in ("dfsweep report", "Per trial", "mean ± sd", "paired t-test", "v2/paper vs v1/none"):
        assert fragment in text


def test_stats_and_report_import_no_ray_tensorflow_or_torch():
    code = ("import sys, dfsweep.orchestrator.report, dfsweep.orchestrator.stats, dfsweep.orchestrator.collect; "
            "print(','.join(m for m in ('ray', 'tensorflow', 'torch', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
