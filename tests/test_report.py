"""The report from stored scores alone: numbers against scikit-learn/scipy, JSON on disk, no heavy imports."""

import csv
import io
import json
import math
import re
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from scipy import stats as sps
from sklearn.metrics import (accuracy_score, average_precision_score, confusion_matrix, f1_score, precision_score,
                             recall_score, roc_auc_score, roc_curve)

from dfsweep import perturbations, schema
from dfsweep.config import ReportConfig
from dfsweep.verdict import stats
from dfsweep.verdict.console import render
from dfsweep.verdict.report import FIGURES_DIR, REPORT_HTML, report, write_summary
from dfsweep.verdict.scores import collect_scores
from dfsweep.verdict.compare import compare_runs
from dfsweep.verdict.figure_data import confusion_data
from dfsweep.verdict.summary import METRIC_COLUMNS, METRICS_COLUMNS, bootstrap_seed, build_summary, group_scores

SEEDS = (1, 2, 3)


ARMS = (("v1", "none"), ("v2", "paper"))


def _write_scores(run: schema.RunDir, shift: dict, n: int = 60, *, arms=ARMS, seeds=SEEDS, val: bool = False,
                  perturbations=(), transform=None, roles: dict | None = None) -> dict:
    """Synthetic scores: each (variant, seed, domain) separates the classes by `shift[variant, domain] + seed noise`
    (a key (variant, augmentation, domain) wins over (variant, domain)).

    val: n clean source val rows per trial; perturbations: (perturbation, level) pairs, each a test copy of every
    sample with a weaker separation; transform(trial, domain, split, y, s) -> s replaces a trial's scores; roles:
    {variant: role} written into a `role` column (without it the files have none, as before roles existed).
    Returns truth[trial, domain] = (y, s) of the clean test rows, truth[trial, "val"] and truth[trial, domain, p, level].
    """
    run.scores.mkdir(parents=True, exist_ok=True)
    truth = {}
    for a, (variant, aug) in enumerate(arms):
        for seed in seeds:
            trial = f"{variant}-{aug}-s{seed}"
            rng = np.random.default_rng(seed * 10 + a)
            parts = []

            def add(domain, split, pert, level, sep, prefix, key):
                y = np.r_[np.ones(n // 2, int), np.zeros(n // 2, int)]
                logit = rng.normal(0, 1, n) + y * (sep + 0.1 * seed)
                s = 1 / (1 + np.exp(-logit))
                if transform is not None:
                    s = transform(trial, domain, split, y, s)
                s = s.astype(np.float32).astype(np.float64)  # what the file stores
                truth[key] = (y, s)
                table = pa.table(dict(trial_id=[trial] * n, variant=[variant] * n, augmentation=[aug] * n,
                                      seed=[seed] * n, dataset=[domain] * n, domain=[domain] * n, split=[split] * n,
                                      sample_id=[f"{prefix}{i}" for i in range(n)], label=y, perturbation=[pert] * n,
                                      level=[level] * n, score=s), schema=schema.scores_schema(video=False))
                if roles is not None:
                    table = table.append_column("role", pa.array([roles[variant]] * n, pa.string()))
                parts.append(table)

            for domain in ("source", "target"):
                sep = shift.get((variant, aug, domain), shift.get((variant, domain)))
                add(domain, "test", "none", 0, sep, domain, (trial, domain))
                for k, (pert, level) in enumerate(perturbations):
                    add(domain, "test", pert, level, sep * (0.8 - 0.1 * k), domain, (trial, domain, pert, level))
            if val:
                add("source", "val", "none", 0, shift.get((variant, aug, "source"), shift.get((variant, "source"))),
                    "val", (trial, "val"))
            pq.write_table(pa.concat_tables(parts), run.score_file(trial))
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


def test_collected_scores_hold_each_string_once_and_group_in_string_order(run):
    """String columns come back dictionary-encoded with one dictionary across the files (a row costs an index, not a
    string), and the groups still sort sample_ids as strings ("target10" before "target2")."""
    r, _ = run
    scores = collect_scores(r.scores)
    sample_id = scores.column("sample_id")
    assert pa.types.is_dictionary(sample_id.type) and sample_id.num_chunks == 1
    assert sorted(sample_id.chunk(0).dictionary.to_pylist()) == sorted(f"{d}{i}" for d in ("source", "target")
                                                                       for i in range(60))
    group = group_scores(scores).groups["v1-none-s1", "target", "test", "none", 0, "image"]
    assert group.sample_id.tolist() == sorted(f"target{i}" for i in range(60))


def test_render_draws_every_section(run):
    from rich.console import Console

    r, _ = run
    console = Console(record=True, width=160)
    render(build_summary(r.root, ReportConfig(bootstrap_samples=200)), console)
    text = console.export_text()
    for fragment in ("dfsweep report", "Per trial", "mean ± sd", "paired t-test", "v2/paper vs v1/none"):
        assert fragment in text


def test_stats_and_report_import_no_ray_tensorflow_or_torch():
    modules = ", ".join(f"dfsweep.verdict.{m}" for m in VERDICT_DEPENDS)
    code = (f"import sys, {modules}, matplotlib; "
            "print(','.join(m for m in ('ray', 'tensorflow', 'torch', 'keras', 'sklearn') if m in sys.modules), "
            "matplotlib.get_backend().lower(), sep='|')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "|agg"


# What each verdict module may import from the package: one way, no circle (labels <- answer <- summary <- tables <-
# console, html; summary <- plots; report on top). A new module must be declared here.
VERDICT_DEPENDS = {
    "stats": set(), "scores": set(), "labels": set(),
    "answer": {"labels"},
    "validity": {"labels"},
    "summary": {"stats", "labels", "scores", "answer", "validity"},
    "tables": {"labels", "summary"},
    "console": {"labels", "tables"},
    "html": {"labels", "tables"},
    "figure_data": {"stats", "labels", "summary"},
    "compare": {"stats", "labels", "scores", "summary", "figure_data"},
    "plots": {"labels", "figure_data"},
    "report": {"compare", "console", "figure_data", "html", "labels", "plots", "scores", "summary"},
}
# The bottom layer of dfsweep the verdict may use; never a stage (trainables, data_pipeline, orchestrator) or the CLI.
VERDICT_MAY_USE = {"dfsweep", "dfsweep.schema", "dfsweep.config", "dfsweep.storage", "dfsweep.crops",
                   "dfsweep.perturbations"}
HEAVY = {"ray", "tensorflow", "keras", "torch", "torchvision", "facenet_pytorch", "sklearn"}


def _imported(path) -> set[str]:
    """Every module an import statement anywhere in the file names (function bodies included): `import a.b` gives
    a.b; `from a import b` gives a, and a.b when that is a module."""
    import ast
    import importlib.util

    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            out.add(node.module)
            spec = importlib.util.find_spec(node.module) if node.module.split(".")[0] == "dfsweep" else None
            if spec is not None and spec.submodule_search_locations:  # a package: its names may be modules
                out.update(f"{node.module}.{a.name}" for a in node.names
                           if importlib.util.find_spec(f"{node.module}.{a.name}") is not None)
    return out


def test_verdict_imports_point_one_way_and_reach_no_heavy_package():
    import importlib.util
    from pathlib import Path

    import dfsweep.verdict

    package = Path(dfsweep.verdict.__file__).parent
    assert {p.stem for p in package.glob("*.py")} - {"__init__"} == set(VERDICT_DEPENDS)
    order, todo = [], dict(VERDICT_DEPENDS)  # the declared graph is acyclic: it has a topological order
    while todo:
        ready = [m for m, deps in todo.items() if deps <= set(order)]
        assert ready, f"import circle among {sorted(todo)}"
        order += sorted(ready)
        for m in ready:
            del todo[m]
    for path in package.glob("*.py"):
        names = _imported(path)
        ours = {n.split(".")[2] for n in names if n.startswith("dfsweep.verdict.")}
        assert ours <= VERDICT_DEPENDS.get(path.stem, set()), (path.name, ours)
        other = {n for n in names if n.split(".")[0] == "dfsweep" and not n.startswith("dfsweep.verdict")} - {
            "dfsweep.verdict"}
        assert other <= VERDICT_MAY_USE, (path.name, other - VERDICT_MAY_USE)
        if path.stem == "stats":
            assert not other and not ours, "stats imports nothing from dfsweep"
    # Everything reachable from the verdict inside dfsweep (the bottom layer too) imports no heavy package anywhere.
    seen, frontier = set(), [p for p in package.glob("*.py")]
    while frontier:
        path = frontier.pop()
        if path in seen:
            continue
        seen.add(path)
        names = _imported(path)
        assert not {n.split(".")[0] for n in names} & HEAVY, (path, sorted({n for n in names if n.split(".")[0] in HEAVY}))
        for n in names:
            if n.split(".")[0] == "dfsweep":
                spec = importlib.util.find_spec(n)
                if spec is not None and spec.origin and spec.origin.endswith(".py"):
                    frontier.append(Path(spec.origin))
    assert {p.stem for p in seen} >= {"schema", "perturbations", "crops", "storage", "config"}


SHIFT = {("v1", "source"): 2.0, ("v2", "source"): 2.2, ("v1", "target"): 0.2, ("v2", "target"): 0.8}


def _at(y, s, threshold):
    """Reference metrics at a threshold from scikit-learn (a score >= threshold is called fake)."""
    pred = (s >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    return dict(accuracy=accuracy_score(y, pred), precision=precision_score(y, pred, zero_division=np.nan),
                recall=recall_score(y, pred), f1=f1_score(y, pred), tn=tn, fp=fp, fn=fn, tp=tp)


def test_per_trial_ap_eer_f1_and_val_threshold_metrics(tmp_path):
    r = schema.RunDir(tmp_path)
    truth = _write_scores(r, SHIFT, val=True)
    summary = build_summary(r.root, ReportConfig(bootstrap_samples=200))
    assert len(summary["trials"]) == 12
    for t in summary["trials"]:
        y, s = truth[t["trial_id"], t["domain"]]
        assert t["average_precision"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
        e = stats.eer(y, s)
        assert (t["eer"], t["eer_threshold"]) == (pytest.approx(e.eer), pytest.approx(e.threshold))
        fpr, tpr, _ = roc_curve(y, s)  # the interpolated EER lies within one ROC step of the discrete crossing
        assert abs(t["eer"] - np.min(np.maximum(fpr, 1 - tpr))) <= 2 / 30
        assert t["f1"] == pytest.approx(f1_score(y, (s >= 0.5).astype(int))) and t["threshold"] == 0.5
        yv, sv = truth[t["trial_id"], "val"]
        assert t["val_threshold"] == pytest.approx(stats.eer(yv, sv).threshold) and t["val_threshold_reason"] is None
        assert t["val_threshold_n"] == 60
        ref = _at(y, s, t["val_threshold"])
        for k in ("accuracy", "precision", "recall", "f1"):
            assert t[f"{k}_at_val_threshold"] == pytest.approx(ref[k]), k
        for k in ("tn", "fp", "fn", "tp"):
            assert t[f"{k}_at_val_threshold"] == ref[k], k


def test_trial_without_val_rows_says_why(run, tmp_path):
    r, _ = run
    write_summary(build_summary(r.root, ReportConfig(bootstrap_samples=200)), tmp_path / "s.json")
    loaded = json.loads((tmp_path / "s.json").read_text())
    for t in loaded["trials"]:
        assert t["val_threshold"] is None and t["val_threshold_reason"] == "no source val rows for this trial"
        assert t["accuracy_at_val_threshold"] is None and t["tp_at_val_threshold"] is None
    assert any(w.startswith("no source-val threshold for") for w in loaded["warnings"])


def _shuffle(path, seed=0):
    t = pq.read_table(path)
    pq.write_table(t.take(np.random.default_rng(seed).permutation(t.num_rows)), path)


def test_per_seed_delong_and_paired_bootstrap_pair_on_sample_id(run):
    r, truth = run
    cfg = ReportConfig(bootstrap_samples=300)
    before = build_summary(r.root, cfg)["per_seed_tests"]
    _shuffle(r.score_file("v2-paper-s1"))
    _shuffle(r.score_file("v1-none-s2"), seed=1)
    after = build_summary(r.root, cfg)["per_seed_tests"]
    assert after == before and len(after) == 6
    for t in after:
        cand, base = f"v2-paper-s{t['seed']}", f"v1-none-s{t['seed']}"
        assert (t["candidate_trial"], t["baseline_trial"]) == (cand, base)
        (y, sc), (yb, sb) = truth[cand, t["domain"]], truth[base, t["domain"]]  # index i is sample f"{domain}{i}" in both
        assert (y == yb).all() and t["n_paired"] == 60 and t["n_only_candidate"] == t["n_only_baseline"] == 0
        d = stats.delong_test(y, sc, sb)
        assert t["delong_z"] == pytest.approx(d.z) and t["delong_p"] == pytest.approx(d.p_value)
        assert t["diff"] == pytest.approx(roc_auc_score(y, sc) - roc_auc_score(y, sb))
        # a hand-rolled DeLong from its definition: placements of each fake among reals and vice versa
        pos, neg = y == 1, y == 0

        def placements(s):
            v10 = ((s[pos][:, None] > s[neg][None]) + 0.5 * (s[pos][:, None] == s[neg][None])).mean(axis=1)
            v01 = ((s[pos][:, None] > s[neg][None]) + 0.5 * (s[pos][:, None] == s[neg][None])).mean(axis=0)
            return v10, v01

        (c10, c01), (b10, b01) = placements(sc), placements(sb)
        var = np.var(c10 - b10, ddof=1) / pos.sum() + np.var(c01 - b01, ddof=1) / neg.sum()
        assert t["delong_p"] == pytest.approx(sps.norm.sf((c10.mean() - b10.mean()) / np.sqrt(var)))
        by_id = np.argsort([f"{t['domain']}{i}" for i in range(60)])  # the report resamples in sample_id order
        pb = stats.paired_bootstrap_auc_diff(y[by_id], sc[by_id], sb[by_id], n_resamples=300,
                                             seed=bootstrap_seed(cfg, "paired", cand, base, t["domain"]))
        assert (t["diff_ci_low"], t["diff_ci_high"], t["prob_positive"]) == (pb.low, pb.high, pb.prob_positive)
        assert "not a p-value" in t["prob_positive_is"] and t["metric"] == "image-level AUC"


def test_different_sample_sets_are_paired_on_the_common_ones_and_warned_about(run):
    r, truth = run
    t = pq.read_table(r.score_file("v2-paper-s1"))
    keep = pc.invert(pc.is_in(t.column("sample_id"), pa.array([f"target{i}" for i in (0, 1, 2, 40, 41)])))
    pq.write_table(t.filter(keep), r.score_file("v2-paper-s1"))
    summary = build_summary(r.root, ReportConfig(bootstrap_samples=200))
    (s,) = [s for s in summary["per_seed_tests"] if s["domain"] == "target" and s["seed"] == 1]
    assert (s["n_paired"], s["n_only_candidate"], s["n_only_baseline"]) == (55, 0, 5)
    y, sc = truth["v2-paper-s1", "target"]
    _, sb = truth["v1-none-s1", "target"]
    common = np.setdiff1d(np.arange(60), [0, 1, 2, 40, 41])
    assert s["delong_p"] == pytest.approx(stats.delong_test(y[common], sc[common], sb[common]).p_value)
    (w,) = [w for w in summary["warnings"] if "different samples" in w]
    assert "on target" in w and "55 paired" in w and "5 only in v1/none" in w


def test_holm_across_two_candidate_arms(tmp_path):
    r = schema.RunDir(tmp_path)
    shift = {**SHIFT, ("v2", "robust", "source"): 2.1, ("v2", "robust", "target"): 0.5}
    truth = _write_scores(r, shift, arms=(("v1", "none"), ("v2", "paper"), ("v2", "robust")))
    summary = build_summary(r.root, ReportConfig(bootstrap_samples=200))
    for domain in ("source", "target"):
        tests = {t["candidate"]: t for t in summary["tests"] if t["domain"] == domain}
        assert sorted(tests) == ["v2/paper", "v2/robust"]
        v1 = [roc_auc_score(*truth[f"v1-none-s{s}", domain]) for s in SEEDS]
        p = {arm: sps.ttest_rel([roc_auc_score(*truth[f"v2-{arm[3:]}-s{s}", domain]) for s in SEEDS], v1,
                                alternative="greater").pvalue for arm in tests}
        lo, hi = sorted(p, key=p.get)  # Holm by hand: the smaller p times 2, the larger times 1, kept monotone
        expected = {lo: min(1.0, 2 * p[lo])}
        expected[hi] = min(1.0, max(expected[lo], p[hi]))
        for arm, t in tests.items():
            assert t["p_value"] == pytest.approx(p[arm]) and t["p_holm"] == pytest.approx(expected[arm])
            assert t["holm_family"] == 2 and t["baseline"] == "v1/none"
    assert len(summary["per_seed_tests"]) == 2 * 2 * 3


def test_wilcoxon_runs_with_six_seeds_and_says_why_not_with_three(run, tmp_path):
    r, _ = run
    three = build_summary(r.root, ReportConfig(bootstrap_samples=200))["tests"]
    for t in three:
        assert math.isnan(t["wilcoxon_p"]) and t["wilcoxon_reason"] == "fewer than 6 pairs (3)"
    six = schema.RunDir(tmp_path / "six")
    seeds = (1, 2, 3, 4, 5, 6)
    truth = _write_scores(six, SHIFT, seeds=seeds)
    cfg = ReportConfig(bootstrap_samples=200)
    summary = build_summary(six.root, cfg)
    for t in summary["tests"]:
        # AUCs on 30 x 30 samples are multiples of 1/900: rounding keeps ties between |differences| exact
        v1 = [round(roc_auc_score(*truth[f"v1-none-s{s}", t["domain"]]) * 900) / 900 for s in seeds]
        v2 = [round(roc_auc_score(*truth[f"v2-paper-s{s}", t["domain"]]) * 900) / 900 for s in seeds]
        ref = sps.wilcoxon(v2, v1, alternative="greater")
        assert t["wilcoxon_reason"] is None
        assert t["wilcoxon_statistic"] == pytest.approx(ref.statistic) and t["wilcoxon_p"] == pytest.approx(ref.pvalue)
        assert t["hier_mean_diff"] == pytest.approx(np.mean(np.subtract(v2, v1)))
        by_id = np.argsort([f"{t['domain']}{i}" for i in range(60)])  # the report resamples in sample_id order
        hb = stats.hierarchical_bootstrap_mean_diff(
            [(truth[f"v2-paper-s{s}", t["domain"]][0][by_id], truth[f"v2-paper-s{s}", t["domain"]][1][by_id],
              truth[f"v1-none-s{s}", t["domain"]][1][by_id]) for s in seeds],
            n_resamples=200, seed=bootstrap_seed(cfg, "hierarchical", t["domain"], "v2/paper", "v1/none"))
        assert (t["hier_ci_low"], t["hier_ci_high"]) == (hb.low, hb.high)


def _below_half(trial, domain, split, y, s):
    """v1-none: ranks every sample perfectly, yet every score is under 0.5 (the paper's baseline on the target)."""
    if not trial.startswith("v1-none"):
        return s
    return 0.05 + 0.2 * y + 0.1 * np.linspace(0, 1, len(y))


def test_calibration_warning_for_perfect_ranking_below_half(tmp_path):
    r = schema.RunDir(tmp_path)
    _write_scores(r, SHIFT, val=True, transform=_below_half)
    summary = build_summary(r.root, ReportConfig(bootstrap_samples=200))
    calib = [w for w in summary["warnings"] if "ranking fine, calibration off" in w]
    assert sorted(w.split(" on ")[0] + "/" + w.split(" on ")[1].split(":")[0] for w in calib) == sorted(
        f"v1-none-s{s}/{d}" for s in SEEDS for d in ("source", "target"))
    for t in summary["trials"]:
        if t["variant"] == "v1":
            assert t["auc"] == 1.0 and t["accuracy"] == 0.5 and t["predicted_fake_share"] == 0.0
            assert t["f1"] == 0.0 and math.isnan(t["precision"])
            assert t["accuracy_at_val_threshold"] == 1.0  # chosen on source val, the threshold separates the classes
    assert all("100% of samples called real" in w for w in calib)


def test_metrics_csv_has_one_row_per_trial_domain_perturbation_level(tmp_path):
    from rich.console import Console

    r = schema.RunDir(tmp_path)
    perts = (("jpeg", 80), ("blur", 5))
    truth = _write_scores(r, SHIFT, val=True, perturbations=perts, transform=_below_half)
    report(r.root, ReportConfig(bootstrap_samples=200), Console(file=io.StringIO()))
    text = (r.root / "metrics.csv").read_text()
    assert text.splitlines()[0] == ",".join(METRICS_COLUMNS) == (
        "trial_id,variant,augmentation,seed,domain,perturbation,level,auc_level,n,n_real,n_fake,auc,auc_ci_low,"
        "auc_ci_high,average_precision,eer,accuracy,precision,recall,f1,tn,fp,fn,tp,brier,score_range")
    rows = list(csv.DictReader(io.StringIO(text)))
    keys = [(x["trial_id"], x["domain"], x["perturbation"], x["level"]) for x in rows]
    expected = {(f"{v}-{a}-s{s}", d, p, str(lv)) for v, a in ARMS for s in SEEDS for d in ("source", "target")
                for p, lv in (("none", 0), *perts)}
    assert len(keys) == len(set(keys)) == 2 * 3 * 2 * 3 and set(keys) == expected
    for x in rows:
        key = (x["trial_id"], x["domain"]) if x["perturbation"] == "none" else (
            x["trial_id"], x["domain"], x["perturbation"], int(x["level"]))
        y, s = truth[key]
        assert float(x["auc"]) == pytest.approx(roc_auc_score(y, s)) and x["auc_level"] == "image"
        assert float(x["average_precision"]) == pytest.approx(average_precision_score(y, s))
        assert int(x["n"]) == 60 and int(x["tp"]) + int(x["fn"]) == int(x["n_fake"]) == 30
        assert float(x["auc_ci_low"]) <= float(x["auc"]) <= float(x["auc_ci_high"])
        if x["variant"] == "v1":  # calls every sample real: precision undefined, an empty cell
            assert x["precision"] == "" and x["tp"] == "0"
    assert json.loads(r.summary.read_text())["auc_level"] == "image"
    report(r.root, ReportConfig(bootstrap_samples=200), Console(file=io.StringIO()))
    assert (r.root / "metrics.csv").read_text() == text  # rebuilt identically


def test_robustness_table_from_synthetic_jpeg_and_blur_rows(tmp_path):
    from rich.console import Console

    r = schema.RunDir(tmp_path)
    perts = (("jpeg", 40), ("blur", 9), ("jpeg", 80), ("blur", 3))  # written out of order on purpose
    truth = _write_scores(r, SHIFT, perturbations=perts)
    summary = build_summary(r.root, ReportConfig(bootstrap_samples=200))
    rows = summary["robustness"]
    assert [(x["domain"], x["arm"], x["perturbation"], x["level"]) for x in rows] == [
        (d, arm, p, lv) for d in ("source", "target") for arm in ("v1/none", "v2/paper")
        for p, lv in (("jpeg", 80), ("jpeg", 40), ("blur", 3), ("blur", 9))]
    tq = sps.t.ppf(0.975, 2)
    for x in rows:
        trials = [f"{x['variant']}-{x['augmentation']}-s{s}" for s in SEEDS]
        aucs = [roc_auc_score(*truth[t, x["domain"], x["perturbation"], x["level"]]) for t in trials]
        accs = [np.mean((truth[t, x["domain"], x["perturbation"], x["level"]][1] >= 0.5)
                        == truth[t, x["domain"], x["perturbation"], x["level"]][0]) for t in trials]
        for name, v in (("auc", aucs), ("accuracy", accs)):
            half = tq * np.std(v, ddof=1) / np.sqrt(3)
            assert x[f"{name}_mean"] == pytest.approx(np.mean(v)) and x[f"{name}_sd"] == pytest.approx(np.std(v, ddof=1))
            assert x[f"{name}_band_low"] == pytest.approx(np.mean(v) - half)
            assert x[f"{name}_band_high"] == pytest.approx(np.mean(v) + half)
        assert x["n_seeds"] == 3 and x["band_level"] == 0.95 and x["metric"] == "image-level AUC"
    console = Console(record=True, width=160)
    render(summary, console)
    assert "Robustness: image-level AUC" in console.export_text()


def test_robustness_is_empty_without_perturbed_rows(run):
    from rich.console import Console

    r, _ = run
    summary = build_summary(r.root, ReportConfig(bootstrap_samples=200))
    assert summary["robustness"] == [] and {m["perturbation"] for m in summary["metrics"]} == {"none"}
    console = Console(record=True, width=160)
    render(summary, console)
    assert "Robustness" not in console.export_text()


def test_wide_paired_bootstrap_cis_get_one_warning_per_domain(tmp_path):
    r = schema.RunDir(tmp_path)
    same = {(v, d): 0.3 for v in ("v1", "v2") for d in ("source", "target")}  # no real difference, 60 samples
    _write_scores(r, same)
    summary = build_summary(r.root, ReportConfig(bootstrap_samples=300))
    wide = [w for w in summary["warnings"] if "CIs too wide to conclude" in w]
    expected = [d for d in ("source", "target")
                if any(s["domain"] == d and s["diff_ci_low"] < 0 < s["diff_ci_high"]
                       and s["diff_ci_high"] - s["diff_ci_low"] > 0.1 for s in summary["per_seed_tests"])]
    assert expected == ["source", "target"]
    assert [w.split(":")[0] for w in wide] == expected and all("of 3 per-seed comparisons" in w for w in wide)


def test_render_draws_the_new_sections(tmp_path):
    from rich.console import Console

    r = schema.RunDir(tmp_path)
    _write_scores(r, SHIFT, val=True)
    console = Console(record=True, width=140)
    render(build_summary(r.root, ReportConfig(bootstrap_samples=200)), console)
    text = console.export_text()
    for fragment in ("Per trial", "paired t-test", "image-level AUC", "AP", "EER", "F1@0.5", "threshold chosen on source val",
                     "Per seed", "DeLong p", "not a p-value", "p Holm", "Wilcoxon", "hierarchical bootstrap",
                     "fewer than 6 pairs"):
        assert fragment in text, fragment


def test_roc_curve_matches_sklearn_with_every_threshold(run):
    _, truth = run
    for key in (("v1-none-s1", "source"), ("v2-paper-s3", "target")):
        y, s = truth[key]
        fpr, tpr, thr = stats.roc_curve(y, s)
        ref_fpr, ref_tpr, ref_thr = roc_curve(y, s, drop_intermediate=False)
        np.testing.assert_allclose(fpr, ref_fpr)
        np.testing.assert_allclose(tpr, ref_tpr)
        np.testing.assert_array_equal(thr[1:], ref_thr[1:])
        assert thr[0] == np.inf
    with pytest.raises(ValueError, match="both real and fake"):
        stats.roc_curve(np.ones(4, int), np.linspace(0, 1, 4))


def test_confusion_data_sums_the_seeds_at_the_report_threshold(tmp_path):
    r = schema.RunDir(tmp_path)
    truth = _write_scores(r, SHIFT)
    summary = build_summary(r.root, ReportConfig(bootstrap_samples=200, threshold=0.4))
    cells = confusion_data(summary)
    assert [(c.domain, c.arm) for c in cells] == [(d, a) for d in ("source", "target") for a in ("v1/none", "v2/paper")]
    for c in cells:
        prefix = c.arm.replace("/", "-")
        ref = 0
        for seed in SEEDS:
            y, s = truth[f"{prefix}-s{seed}", c.domain]
            ref = ref + confusion_matrix(y, (s >= 0.4).astype(int), labels=[0, 1])
        assert [c.tn, c.fp, c.fn, c.tp] == ref.ravel().tolist()
        assert c.threshold == 0.4 and c.seeds == SEEDS


def test_report_writes_figures_and_a_self_contained_html(run):
    from rich.console import Console

    r, _ = run
    report(r.root, ReportConfig(bootstrap_samples=200), Console(file=io.StringIO()))
    names = sorted(p.name for p in (r.root / FIGURES_DIR).iterdir())
    assert names == ["confusion.png", "errors_v1-none.png", "errors_v2-paper.png", "histograms.png", "roc.png"]
    html = (r.root / REPORT_HTML).read_text()
    assert html.count("data:image/png;base64,") == len(names) and "image-level AUC" in html


def test_compare_runs_puts_two_runs_side_by_side(tmp_path):
    a, b = schema.RunDir(tmp_path / "a"), schema.RunDir(tmp_path / "b")
    _write_scores(a, SHIFT)
    better = {**SHIFT, ("v2", "target"): 1.5}
    _write_scores(b, better, arms=ARMS + (("v2", "robust"),), n=40)
    cmp = compare_runs(a.root, b.root)
    assert cmp["metric"] == "image-level AUC" and cmp["a"] == str(a.root) and cmp["b"] == str(b.root)
    agg = {side: {(x["arm"], x["domain"]): x for x in build_summary(r.root, ReportConfig(bootstrap_samples=200))["aggregate"]}
           for side, r in (("a", a), ("b", b))}
    assert [(x["domain"], x["arm"]) for x in cmp["rows"]] == [
        (d, arm) for d in ("source", "target") for arm in ("v1/none", "v2/paper", "v2/robust")]
    for x in cmp["rows"]:
        key = (x["arm"], x["domain"])
        if x["arm"] == "v2/robust":
            assert x["a_n_seeds"] == 0 and x["a_auc_mean"] is None and x["diff"] is None
            assert x["b_auc_mean"] == pytest.approx(agg["b"][key]["auc_mean"])
            continue
        for side in ("a", "b"):
            assert x[f"{side}_auc_mean"] == pytest.approx(agg[side][key]["auc_mean"])
            assert x[f"{side}_auc_sd"] == pytest.approx(agg[side][key]["auc_sd"]) and x[f"{side}_seeds"] == list(SEEDS)
        assert x["diff"] == pytest.approx(x["b_auc_mean"] - x["a_auc_mean"])
    assert "v2/robust on source is only in run B" in cmp["warnings"]
    assert any(w.startswith("target: the runs were scored on different test samples") for w in cmp["warnings"])
    same = compare_runs(a.root, a.root)
    assert same["warnings"] == [] and all(x["diff"] == 0 for x in same["rows"])


def test_cue_is_shown_but_not_tested_and_warns_about_a_shortcut(tmp_path):
    r = schema.RunDir(tmp_path)
    arms = ARMS + (("cue", "none"),)
    _write_scores(r, {("v1", "source"): 2.0, ("v2", "source"): 2.2, ("cue", "source"): 4.0,
                      ("v1", "target"): 0.2, ("v2", "target"): 0.8, ("cue", "target"): 1.5}, arms=arms)
    summary = build_summary(r.root, ReportConfig(bootstrap_samples=200))
    assert {a["arm"] for a in summary["aggregate"]} == {"v1/none", "v2/paper", "cue/none"}
    assert all(t["candidate"] != "cue/none" for t in summary["tests"])  # a diagnostic, not a candidate
    warns = " ".join(summary["warnings"])
    assert "shortcut: the diagnostic arm cue/none" in warns and "on the source test" in warns
    assert "beats the baseline v1/none on the target" in warns
    quiet = schema.RunDir(tmp_path / "quiet")
    _write_scores(quiet, {("v1", "source"): 2.0, ("v2", "source"): 2.2, ("cue", "source"): 0.1,
                          ("v1", "target"): 0.0, ("v2", "target"): 0.8, ("cue", "target"): 0.2}, arms=arms)
    # ...the cue edges past the baseline on the target there, but both sit near chance: that is noise, not a shortcut.
    assert "shortcut" not in " ".join(build_summary(quiet.root, ReportConfig(bootstrap_samples=200))["warnings"])


# Video runs: frames carry a video_id; frame-level and video-level metrics side by side, never pooled.


def _write_video_scores(run: schema.RunDir, shift: dict, videos: int = 8, *, arms=ARMS, seeds=SEEDS, val: bool = False,
                        perturbations=(), stills: int = 0) -> dict:
    """Synthetic frame scores: `videos` real and `videos` fake videos per domain, 3-8 frames each (the same videos and
    frames for every trial), each frame's logit around its video's mean logit, which separates the classes by
    `shift[variant, domain] + seed noise`. stills: that many still images (video_id "") per class as well.

    Returns truth[trial, domain] (and [trial, "val"], [trial, domain, p, level]) = dict(y, s, video_id) of the frames,
    and truth[trial, domain, "image"] = (y, s) of the stills.
    """
    run.scores.mkdir(parents=True, exist_ok=True)
    layout = {}  # (domain, split) -> video ids and frame counts, shared by all trials
    for k, (domain, split) in enumerate((("source", "test"), ("target", "test"), ("source", "val"))):
        n_frames = np.random.default_rng(100 + k).integers(3, 9, 2 * videos)
        layout[domain, split] = [f"vid-{domain}-{split}-{j:02d}" for j in range(2 * videos)], n_frames
    truth = {}
    for a, (variant, aug) in enumerate(arms):
        for seed in seeds:
            trial = f"{variant}-{aug}-s{seed}"
            rng = np.random.default_rng(seed * 10 + a + 1000)
            parts = []

            def add(domain, split, pert, level, sep, key):
                vids, n_frames = layout[domain, split]
                v_label = np.r_[np.ones(videos, int), np.zeros(videos, int)]
                v_logit = rng.normal(0, 1, len(vids)) + v_label * (sep + 0.1 * seed)
                vid = np.repeat(vids, n_frames)
                y = np.repeat(v_label, n_frames)
                s = 1 / (1 + np.exp(-(np.repeat(v_logit, n_frames) + rng.normal(0, 0.5, len(y)))))
                s = s.astype(np.float32).astype(np.float64)
                sid = [f"{v}-f{i}" for v, n in zip(vids, n_frames) for i in range(n)]
                truth[key] = dict(y=y, s=s, video_id=vid)
                parts.append(_rows(trial, variant, aug, seed, domain, split, pert, level, sid, y, s, vid.tolist()))
                if stills and split == "test" and pert == "none":
                    ys = np.r_[np.ones(stills, int), np.zeros(stills, int)]
                    ss = (1 / (1 + np.exp(-(rng.normal(0, 1, 2 * stills) + ys * sep)))).astype(np.float32).astype(float)
                    truth[trial, domain, "image"] = (ys, ss)
                    parts.append(_rows(trial, variant, aug, seed, domain, split, pert, level,
                                       [f"still-{domain}-{i}" for i in range(2 * stills)], ys, ss, [""] * 2 * stills))

            for domain in ("source", "target"):
                sep = shift.get((variant, aug, domain), shift.get((variant, domain)))
                add(domain, "test", "none", 0, sep, (trial, domain))
                for k, (pert, level) in enumerate(perturbations):
                    add(domain, "test", pert, level, sep * (0.8 - 0.1 * k), (trial, domain, pert, level))
            if val:
                add("source", "val", "none", 0, shift.get((variant, "source")), (trial, "val"))
            pq.write_table(pa.concat_tables(parts), run.score_file(trial))
    return truth


def _rows(trial, variant, aug, seed, domain, split, pert, level, sample_id, y, s, video_id) -> pa.Table:
    n = len(y)
    return pa.table(dict(trial_id=[trial] * n, variant=[variant] * n, augmentation=[aug] * n, seed=[seed] * n,
                         dataset=[domain] * n, domain=[domain] * n, split=[split] * n, sample_id=sample_id, label=y,
                         perturbation=[pert] * n, level=[level] * n, score=s, video_id=video_id),
                    schema=pa.schema([f for f in schema.SCORES if f.name not in ("role", "arm")]))  # from before roles


def _per_video(t: dict) -> tuple[np.ndarray, np.ndarray]:
    """(label, mean frame score) per video, computed here without the report's code."""
    scores, labels = {}, {}
    for v, y, s in zip(t["video_id"], t["y"], t["s"]):
        scores.setdefault(v, []).append(s)
        labels.setdefault(v, set()).add(int(y))
    assert all(len(x) == 1 for x in labels.values())
    vids = sorted(scores)
    return np.array([labels[v].pop() for v in vids]), np.array([np.mean(scores[v]) for v in vids])


ARMS3 = ARMS + (("v2", "robust"),)
SHIFT3 = {**SHIFT, ("v2", "robust", "source"): 2.1, ("v2", "robust", "target"): 0.5}


@pytest.fixture(scope="module")
def video_run(tmp_path_factory):
    r = schema.RunDir(tmp_path_factory.mktemp("video"))
    truth = _write_video_scores(r, SHIFT3, arms=ARMS3, val=True, perturbations=(("jpeg", 60),))
    return r, truth, build_summary(r.root, ReportConfig(bootstrap_samples=200))


def test_video_level_auc_is_the_auc_of_mean_frame_scores_and_frame_level_the_auc_of_frames(video_run):
    _, truth, summary = video_run
    assert summary["auc_levels"] == ["frame", "video"] and summary["auc_level"] == "frame"
    assert {t["auc_level"] for t in summary["trials"]} == {"frame", "video"}
    assert len(summary["trials"]) == 2 * 3 * 3 * 2  # levels x arms x seeds x domains
    for t in summary["trials"]:
        frames = truth[t["trial_id"], t["domain"]]
        if t["auc_level"] == "frame":
            y, s = frames["y"], frames["s"]
        else:
            y, s = _per_video(frames)
        assert t["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert (t["n"], t["n_fake"], t["n_real"]) == (len(y), int(y.sum()), int((1 - y).sum()))
        assert t["average_precision"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
        ref = _at(y, s, 0.5)
        assert [t[k] for k in ("tn", "fp", "fn", "tp")] == [ref[k] for k in ("tn", "fp", "fn", "tp")]
        # the val threshold is chosen at the same level: the EER point of the val videos' mean scores at video level
        val = truth[t["trial_id"], "val"]
        yv, sv = (val["y"], val["s"]) if t["auc_level"] == "frame" else _per_video(val)
        assert t["val_threshold"] == pytest.approx(stats.eer(yv, sv).threshold) and t["val_threshold_n"] == len(yv)
    n_videos = {t["n"] for t in summary["trials"] if t["auc_level"] == "video"}
    assert n_videos == {16}  # 8 real + 8 fake videos per domain, 3-8 frames each
    assert all(t["n"] > 16 for t in summary["trials"] if t["auc_level"] == "frame")


def test_every_row_names_its_level_and_levels_are_never_pooled(video_run):
    _, truth, summary = video_run
    for section in ("trials", "aggregate", "tests", "per_seed_tests", "robustness", "metrics"):
        assert summary[section] and all(r["auc_level"] in ("frame", "video") for r in summary[section]), section
    for section in ("aggregate", "tests", "per_seed_tests", "robustness"):
        assert all(r["metric"] == f"{r['auc_level']}-level AUC" for r in summary[section]), section
    for s in summary["per_seed_tests"]:  # paired on sample_id for frames, on video_id for videos
        n_frames = len(truth[s["candidate_trial"], s["domain"]]["y"])
        assert s["n_paired"] == (16 if s["auc_level"] == "video" else n_frames)
        assert s["n_only_candidate"] == s["n_only_baseline"] == 0
    assert len(summary["per_seed_tests"]) == 2 * 2 * 2 * 3  # levels x domains x candidate arms x seeds
    for level in ("frame", "video"):
        def auc(trial, domain):
            t = truth[trial, domain]
            return roc_auc_score(t["y"], t["s"]) if level == "frame" else roc_auc_score(*_per_video(t))

        for domain in ("source", "target"):
            v1 = [auc(f"v1-none-s{s}", domain) for s in SEEDS]
            agg = {a["arm"]: a for a in summary["aggregate"] if (a["domain"], a["auc_level"]) == (domain, level)}
            assert sorted(agg) == ["v1/none", "v2/paper", "v2/robust"] and agg["v1/none"]["auc_mean"] == pytest.approx(
                np.mean(v1)) and agg["v1/none"]["n_seeds"] == 3
            tests = {t["candidate"]: t for t in summary["tests"] if (t["domain"], t["auc_level"]) == (domain, level)}
            assert sorted(tests) == ["v2/paper", "v2/robust"]
            p = {arm: sps.ttest_rel([auc(f"v2-{arm[3:]}-s{s}", domain) for s in SEEDS], v1, alternative="greater").pvalue
                 for arm in tests}
            lo, hi = sorted(p, key=p.get)  # Holm within the level: a family of 2, not 4
            expected = {lo: min(1.0, 2 * p[lo])}
            expected[hi] = min(1.0, max(expected[lo], p[hi]))
            for arm, t in tests.items():
                assert t["p_value"] == pytest.approx(p[arm]) and t["p_holm"] == pytest.approx(expected[arm])
                assert t["holm_family"] == 2 and t["n_pairs"] == 3
            for x in (x for x in summary["robustness"] if (x["domain"], x["auc_level"]) == (domain, level)):
                trials = [f"{x['variant']}-{x['augmentation']}-s{s}" for s in SEEDS]
                ref = [roc_auc_score(*_per_video(truth[tr, domain, "jpeg", 60])) if level == "video" else
                       roc_auc_score(truth[tr, domain, "jpeg", 60]["y"], truth[tr, domain, "jpeg", 60]["s"]) for tr in trials]
                assert x["auc_mean"] == pytest.approx(np.mean(ref))


def test_video_run_writes_both_levels_to_metrics_csv_console_and_html(tmp_path):
    from rich.console import Console

    r = schema.RunDir(tmp_path)
    truth = _write_video_scores(r, SHIFT, perturbations=(("blur", 5),))
    console = Console(record=True, width=200, file=io.StringIO())
    report(r.root, ReportConfig(bootstrap_samples=200), console)
    rows = list(csv.DictReader(io.StringIO((r.root / "metrics.csv").read_text())))
    assert len(rows) == 2 * 3 * 2 * 2 * 2  # arms x seeds x domains x conditions x levels
    for x in rows:
        key = (x["trial_id"], x["domain"]) if x["perturbation"] == "none" else (
            x["trial_id"], x["domain"], x["perturbation"], int(x["level"]))
        t = truth[key]
        y, s = (t["y"], t["s"]) if x["auc_level"] == "frame" else _per_video(t)
        assert x["auc_level"] in ("frame", "video") and int(x["n"]) == len(y)
        assert float(x["auc"]) == pytest.approx(roc_auc_score(y, s), abs=1e-6)
    assert {x["auc_level"] for x in rows} == {"frame", "video"}
    assert {int(x["n"]) for x in rows if x["auc_level"] == "video"} == {16}
    text = console.export_text()
    for level in ("frame", "video"):
        for title in ("Per trial (test split, clean)", "Across seeds: mean ± sd (ddof=1)"):
            assert f"{title} — {level}-level AUC" in text, (title, level)
        for fragment in (f"Δ {level}-level AUC > 0", f"Robustness: {level}-level AUC"):
            assert fragment in text, fragment
    assert "image-level" not in text and "image AUC" not in text
    assert "on the same videos (joined on video_id)" in text and "videos (real/fake)" in text
    html = (r.root / REPORT_HTML).read_text()
    for fragment in ("frame-level AUC", "video-level AUC", "Per trial (test split, clean) — video-level AUC",
                     "a video&#x27;s score is the mean of its frames&#x27; scores"):
        assert fragment in html, fragment
    assert "image-level" not in html
    assert json.loads(r.summary.read_text())["auc_levels"] == ["frame", "video"]


def test_frames_of_one_video_that_disagree_on_the_label_are_an_error_naming_the_video(tmp_path):
    r = schema.RunDir(tmp_path)
    _write_video_scores(r, SHIFT, seeds=(1,))
    t = pq.read_table(r.score_file("v2-paper-s1"))
    sid = t.column("sample_id").to_pylist()
    label = np.array(t.column("label").to_pylist(), np.int8)
    label[sid.index("vid-target-test-03-f1")] = 0  # video 03 is fake: one of its frames now says real
    pq.write_table(t.set_column(t.schema.get_field_index("label"), "label", pa.array(label, pa.int8())),
                   r.score_file("v2-paper-s1"))
    with pytest.raises(schema.SchemaError,
                       match=r"video vid-target-test-03 \(trial v2-paper-s1, target test, none 0\): its frames disagree "
                             r"on the label \(\d+ fake, 1 real\)"):
        build_summary(r.root, ReportConfig(bootstrap_samples=100))


def test_image_only_run_has_the_image_level_alone(run):
    r, _ = run
    summary = build_summary(r.root, ReportConfig(bootstrap_samples=100))
    assert summary["auc_levels"] == ["image"] and summary["auc_level"] == "image"
    for section in ("trials", "aggregate", "tests", "per_seed_tests", "metrics"):
        assert {x["auc_level"] for x in summary[section]} == {"image"}, section


def test_stills_and_frames_in_one_run_are_kept_apart_and_said_so(tmp_path):
    r = schema.RunDir(tmp_path)
    truth = _write_video_scores(r, SHIFT, stills=10)
    summary = build_summary(r.root, ReportConfig(bootstrap_samples=100))
    assert summary["auc_levels"] == ["image", "frame", "video"] and summary["auc_level"] == "image"
    for t in summary["trials"]:
        frames = truth[t["trial_id"], t["domain"]]
        y, s = {"image": lambda: truth[t["trial_id"], t["domain"], "image"], "frame": lambda: (frames["y"], frames["s"]),
                "video": lambda: _per_video(frames)}[t["auc_level"]]()
        assert t["n"] == len(y) and t["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert {t["n"] for t in summary["trials"] if t["auc_level"] == "image"} == {20}
    assert all(t["holm_family"] == 1 for t in summary["tests"]) and len(summary["tests"]) == 3 * 2
    mixed = [w for w in summary["warnings"] if "both still images and video frames" in w]
    assert [w.split(":")[0] for w in mixed] == ["source test", "target test"]  # one per domain and split
    assert all("6 trial(s)" in w and "never pooled" in w for w in mixed)


def test_compare_runs_keeps_levels_apart(tmp_path):
    a, b = schema.RunDir(tmp_path / "a"), schema.RunDir(tmp_path / "b")
    truth_a = _write_video_scores(a, SHIFT)
    _write_video_scores(b, {**SHIFT, ("v2", "target"): 1.5})
    cmp = compare_runs(a.root, b.root)
    assert cmp["auc_levels"] == ["frame", "video"] and cmp["metric"] == "frame-level AUC"
    assert len(cmp["rows"]) == 2 * 2 * 2 and all(x["metric"] == f"{x['auc_level']}-level AUC" for x in cmp["rows"])
    (x,) = [x for x in cmp["rows"] if (x["arm"], x["domain"], x["auc_level"]) == ("v1/none", "target", "video")]
    assert x["a_auc_mean"] == pytest.approx(np.mean([roc_auc_score(*_per_video(truth_a[f"v1-none-s{s}", "target"]))
                                                     for s in SEEDS]))


def test_the_import_walker_sees_imports_inside_functions(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import numpy\n\ndef g():\n    import torch.nn\n    from sklearn.metrics import roc_auc_score\n")
    assert {"numpy", "torch.nn", "sklearn.metrics"} <= _imported(f)


# Roles, not names: the baseline, candidates and diagnostic come from the scores' `role` column.

ROLE_ARMS = (("v1", "none"), ("v2", "paper"), ("cue", "none"))
ROLE_SHIFT = {("v1", "source"): 2.0, ("v2", "source"): 2.2, ("cue", "source"): 4.0,
              ("v1", "target"): 0.2, ("v2", "target"): 0.8, ("cue", "target"): 1.5}


def _renamed(shift: dict, names: dict) -> dict:
    return {(names[v], d): x for (v, d), x in shift.items()}


def test_arms_are_found_by_role_not_by_name(tmp_path):
    legacy = schema.RunDir(tmp_path / "legacy")  # no role column: v1 baseline, cue diagnostic, v2 candidate
    _write_scores(legacy, ROLE_SHIFT, arms=ROLE_ARMS)
    names = {"v1": "base", "v2": "new", "cue": "check"}
    renamed = schema.RunDir(tmp_path / "renamed")  # other names, the same roles written out
    _write_scores(renamed, _renamed(ROLE_SHIFT, names), arms=tuple((names[v], a) for v, a in ROLE_ARMS),
                  roles={"base": "baseline", "new": "candidate", "check": "diagnostic"})
    cfg = ReportConfig(bootstrap_samples=200)
    a, b = build_summary(legacy.root, cfg), build_summary(renamed.root, cfg)
    assert {t["role"] for t in a["trials"] if t["variant"] == "v1"} == {"baseline"}
    assert {(t["variant"], t["role"]) for t in b["trials"]} == {("base", "baseline"), ("new", "candidate"),
                                                               ("check", "diagnostic")}
    assert [(t["candidate"], t["baseline"]) for t in b["tests"]] == [("new/paper", "base/none")] * 2
    for key in ("t", "p_value", "p_holm", "mean_diff", "hier_mean_diff"):  # (bootstrap seeds hash the arm names)
        assert [t[key] for t in a["tests"]] == [t[key] for t in b["tests"]], key
    assert [s["delong_p"] for s in a["per_seed_tests"]] == [s["delong_p"] for s in b["per_seed_tests"]]
    shortcut = [w for w in b["warnings"] if w.startswith("shortcut")]
    assert len(shortcut) == 2 and all("the diagnostic arm check/none" in w for w in shortcut)
    assert "beats the baseline base/none on the target" in shortcut[1]

    swapped = schema.RunDir(tmp_path / "swapped")  # a role overrides what the name used to mean
    _write_scores(swapped, ROLE_SHIFT, arms=ROLE_ARMS, roles={"v1": "candidate", "v2": "baseline", "cue": "candidate"})
    tests = build_summary(swapped.root, cfg)["tests"]
    assert sorted({(t["candidate"], t["baseline"]) for t in tests}) == [("cue/none", "v2/paper"), ("v1/none", "v2/paper")]


def test_an_unknown_role_is_refused_by_name(tmp_path):
    r = schema.RunDir(tmp_path)
    _write_scores(r, SHIFT, roles={"v1": "baseline", "v2": "candiate"})
    with pytest.raises(schema.SchemaError, match=r"unknown role\(s\) \['candiate'\]; valid: baseline, candidate, "
                                                 r"diagnostic"):
        collect_scores(r.scores)


def test_no_output_names_an_arm_by_a_hard_coded_variant():
    import re
    from pathlib import Path

    import dfsweep.verdict

    for path in Path(dfsweep.verdict.__file__).parent.glob("*.py"):
        code = path.read_text()
        assert re.search(r"\bV[123]\b", code) is None, path.name  # no "V1"/"V2" in any header, caption or warning
        assert re.search(r"""["'](v1|v2|cue)["']""", code) is None, path.name  # no arm found by its name


def test_report_says_baseline_and_candidate_not_v1_and_v2(tmp_path):
    import re

    from rich.console import Console

    r = schema.RunDir(tmp_path)
    _write_scores(r, ROLE_SHIFT, arms=ROLE_ARMS, val=True, perturbations=(("jpeg", 60),))
    console = Console(record=True, width=200, file=io.StringIO())
    report(r.root, ReportConfig(bootstrap_samples=200), console)
    text, html = console.export_text(), (r.root / REPORT_HTML).read_text()
    html = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)  # the figures' bytes may spell "V2" by chance
    for out in (text, html):
        assert re.search(r"\bV[12]\b", out) is None
        assert "Is the candidate better than the baseline?" in out and "fine-tune" in out
        assert "(variants that fine-tune)" in out and "v2/paper vs v1/none" in out
        assert "the diagnostic arm cue/none" in out


# The per-trial metric columns: one registry (summary.METRIC_COLUMNS) behind metrics.csv, the console and report.html.


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    from rich.console import Console

    r = schema.RunDir(tmp_path_factory.mktemp("reported"))
    truth = _write_scores(r, SHIFT, val=True, perturbations=(("jpeg", 60),))
    console = Console(record=True, width=250, file=io.StringIO())
    summary = report(r.root, ReportConfig(bootstrap_samples=200), console)
    return r, truth, summary, console.export_text(), (r.root / REPORT_HTML).read_text()


@pytest.mark.parametrize("column", METRIC_COLUMNS, ids=lambda c: c.fields[0])
def test_every_metric_column_reaches_rows_csv_console_and_html(reported, column):
    import html as html_lib

    r, _, summary, text, html = reported
    rows = list(csv.DictReader(io.StringIO(r.metrics_csv.read_text())))
    for field in column.fields:
        assert all(field in m for m in summary["metrics"]) and all(field in t for t in summary["trials"]), field
        assert field in rows[0], field
    if column.show == "csv":
        return
    header = column.title(grain="image", ci="95% CI", threshold=0.5)
    assert header in text and f"<th>{html_lib.escape(header)}</th>" in html
    for t in summary["trials"]:  # each trial's row holds the column's cell, as the registry formats it
        assert column.cell(t) in text and html_lib.escape(column.cell(t)) in html


def test_brier_score_in_rows_and_csv_against_sklearn(reported):
    from sklearn.metrics import brier_score_loss

    r, truth, summary, _, _ = reported
    for t in summary["trials"]:
        assert t["brier"] == pytest.approx(brier_score_loss(*truth[t["trial_id"], t["domain"]]), abs=1e-12)
    for x in csv.DictReader(io.StringIO(r.metrics_csv.read_text())):
        key = (x["trial_id"], x["domain"]) if x["perturbation"] == "none" else (
            x["trial_id"], x["domain"], x["perturbation"], int(x["level"]))
        assert float(x["brier"]) == pytest.approx(brier_score_loss(*truth[key]), abs=1e-9)


def test_report_reads_and_groups_the_scores_once(tmp_path, monkeypatch):
    from rich.console import Console

    from dfsweep.verdict import report as report_module
    from dfsweep.verdict import summary as summary_module

    r = schema.RunDir(tmp_path)
    _write_scores(r, SHIFT, perturbations=(("blur", 3),))
    calls = {"collect_scores": 0, "group_scores": 0}
    for module in (report_module, summary_module):
        for name in calls:
            real = getattr(module, name)

            def counted(*args, _real=real, _name=name, **kwargs):
                calls[_name] += 1
                return _real(*args, **kwargs)

            monkeypatch.setattr(module, name, counted)
    report(r.root, ReportConfig(bootstrap_samples=200), Console(file=io.StringIO()))
    assert calls == {"collect_scores": 1, "group_scores": 1}


# Perturbations from the registry: a new entry shows in every table, figure and report.html without verdict changes.


@pytest.mark.parametrize("kind", list(perturbations.PERTURBATIONS))
def test_every_registered_perturbation_reaches_tables_csv_figure_and_html(tmp_path, kind):
    import html as html_lib

    from rich.console import Console

    from dfsweep.verdict.labels import caption, perturbation_axes

    entry = perturbations.PERTURBATIONS[kind]
    mild, harsh = sorted(entry.default_levels[:2], key=entry.severity)
    r = schema.RunDir(tmp_path)
    _write_scores(r, SHIFT, perturbations=((kind, harsh), (kind, mild)))  # written harsh first on purpose
    console = Console(record=True, width=200, file=io.StringIO())
    summary = report(r.root, ReportConfig(bootstrap_samples=200), console)
    rows = summary["robustness"]
    assert {x["perturbation"] for x in rows} == {kind}
    assert [x["level"] for x in rows if (x["domain"], x["arm"]) == ("source", "v1/none")] == [mild, harsh]
    csv_rows = list(csv.DictReader(io.StringIO(r.metrics_csv.read_text())))
    assert {(x["perturbation"], int(x["level"])) for x in csv_rows} == {("none", 0), (kind, mild), (kind, harsh)}
    (axis,) = perturbation_axes(rows)
    assert (axis.kind, axis.quantity, axis.axis_label, axis.harsher) == (kind, entry.quantity, entry.axis_label,
                                                                         entry.harsher)
    assert entry.quantity in caption("robustness.png", ["image"], [axis])
    assert (r.root / FIGURES_DIR / "robustness.png").exists()
    html = (r.root / REPORT_HTML).read_text()
    assert f'<td class="l">{kind}</td>' in html  # a row of the robustness table
    for fragment in (entry.quantity, entry.axis_label):  # the table's caption and the figure's
        assert html_lib.escape(fragment) in html, fragment
    text = console.export_text()
    assert kind in text and "Robustness: image-level AUC" in text


# The answer first: the verdict block (summary["verdict"]), drawn first by the console and report.html; the ranking.

import stats_reference  # noqa: E402  (tests/stats_reference.py: the double loops the probabilities are held to)

from dfsweep.verdict import answer  # noqa: E402
from dfsweep.verdict.html import render_html  # noqa: E402


def _by_hand(truth, cand: str, base: str, domain: str, seeds=SEEDS) -> dict:
    """The verdict's numbers from the truth, without the report's code: AUCs by scikit-learn, both tails by scipy,
    the probabilities of improvement by counting and by the double loop (sample i is f"{domain}{i}" in both)."""
    c = [roc_auc_score(*truth[f"{cand}-s{s}", domain]) for s in seeds]
    b = [roc_auc_score(*truth[f"{base}-s{s}", domain]) for s in seeds]
    shares = [float(stats_reference.sample_win_share(truth[f"{cand}-s{s}", domain][0], truth[f"{cand}-s{s}", domain][1],
                                                     truth[f"{base}-s{s}", domain][1])[0]) for s in seeds]
    return dict(c=c, b=b, diff=np.mean(np.subtract(c, b)),
                p_greater=sps.ttest_rel(c, b, alternative="greater").pvalue,
                p_less=sps.ttest_rel(c, b, alternative="less").pvalue,
                seed_share=(sum(x > y for x, y in zip(c, b)) + 0.5 * sum(x == y for x, y in zip(c, b))) / len(seeds),
                sample_share=np.mean(shares))


def test_verdict_block_follows_its_stated_rule(run):
    r, truth = run
    summary = build_summary(r.root, ReportConfig(bootstrap_samples=300))
    v = summary["verdict"]
    assert v["auc_level"] == summary["auc_level"] == "image" and v["alpha"] == 0.05 and v["empty"] is None
    assert "Holm" in v["rule"] and "p < α = 0.05" in v["rule"] and "worse" in v["rule"] and "up to 2α" in v["rule"]
    assert "CI of the mean Δ (seeds, then test samples) lies above 0" in v["rule"]
    assert [(x["domain"], x["candidate"], x["baseline"]) for x in v["rows"]] == [
        ("source", "v2/paper", "v1/none"), ("target", "v2/paper", "v1/none")]
    for x in v["rows"]:
        ref = _by_hand(truth, "v2-paper", "v1-none", x["domain"])
        # one candidate: a Holm family of one, the adjusted p is the p
        assert x["p_holm_better"] == pytest.approx(ref["p_greater"]) and x["p_holm_worse"] == pytest.approx(ref["p_less"])
        expected = ("better" if ref["p_greater"] < 0.05 and x["ci_low"] > 0 else
                    "worse" if ref["p_less"] < 0.05 and x["ci_high"] < 0 else "not shown")
        assert x["verdict"] == expected
        assert x["mean_diff"] == pytest.approx(ref["diff"]) and x["rank"] == 1 and x["holm_family"] == 1
        assert (x["n_seeds"], x["seeds"]) == (3, list(SEEDS))
        assert x["auc_mean_candidate"] == pytest.approx(np.mean(ref["c"]))
        assert x["auc_mean_baseline"] == pytest.approx(np.mean(ref["b"]))
        (t,) = [t for t in summary["tests"] if t["domain"] == x["domain"]]
        assert (x["ci_low"], x["ci_high"], x["ci_level"]) == (t["hier_ci_low"], t["hier_ci_high"], 0.95)
        assert x["seed_win_share"] == pytest.approx(ref["seed_share"])
        assert x["seed_wins"] + x["seed_ties"] / 2 == pytest.approx(3 * ref["seed_share"])
        assert x["sample_win_share"] == pytest.approx(ref["sample_share"], abs=1e-12)
        assert x["seed_win_share_note"].startswith("3 seed(s)")  # fewer than 5: the note says the share is coarse
        assert [w["kind"] for w in x["warnings"]] == ["coarse_seed_share"]
        shown = ("greater", x["p_holm_better"]) if x["verdict"] == "better" or x["mean_diff"] >= 0 else (
            "less", x["p_holm_worse"])
        assert (x["alternative"], x["p_holm"]) == shown
    assert [x["verdict"] for x in v["rows"]][1] == "better"  # the fixture's candidate is far better on the target
    for s in summary["per_seed_tests"]:  # the per-sample share of each seed, beside DeLong and the bootstrap
        y, sc = truth[f"v2-paper-s{s['seed']}", s["domain"]]
        share, fake, real = stats_reference.sample_win_share(y, sc, truth[f"v1-none-s{s['seed']}", s["domain"]][1])
        assert (s["sample_win_share"], s["sample_win_share_fake"], s["sample_win_share_real"]) == (
            pytest.approx(float(share), abs=1e-12), pytest.approx(float(fake), abs=1e-12),
            pytest.approx(float(real), abs=1e-12))


def test_a_worse_candidate_is_called_worse_with_the_other_tail_holmed_in_its_own_family(tmp_path):
    from rich.console import Console

    r = schema.RunDir(tmp_path)
    shift = {("v1", "source"): 2.0, ("v1", "target"): 1.5, ("v2", "paper", "source"): 2.0,
             ("v2", "paper", "target"): 0.0, ("v2", "robust", "source"): 2.1, ("v2", "robust", "target"): 1.6}
    truth = _write_scores(r, shift, arms=ARMS3)
    console = Console(record=True, width=80, file=io.StringIO())  # a non-TTY's width
    summary = build_summary(r.root, ReportConfig(bootstrap_samples=200))
    render(summary, console)  # the console and report.html as report() draws them, without the figures
    for domain in ("source", "target"):
        ref = {arm: _by_hand(truth, arm.replace("/", "-"), "v1-none", domain) for arm in ("v2/paper", "v2/robust")}
        tests = {t["candidate"]: t for t in summary["tests"] if t["domain"] == domain}
        for tail, key in (("p_greater", "p_holm"), ("p_less", "p_holm_less")):  # Holm by hand, each tail apart
            lo, hi = sorted(ref, key=lambda a: ref[a][tail])
            expected = {lo: min(1.0, 2 * ref[lo][tail])}
            expected[hi] = min(1.0, max(expected[lo], ref[hi][tail]))
            for arm in ref:
                assert tests[arm][key] == pytest.approx(expected[arm]), (domain, arm, key)
        by_diff = sorted(ref, key=lambda a: -ref[a]["diff"])
        assert [tests[a]["rank"] for a in by_diff] == [1, 2]
        rows = [x for x in summary["verdict"]["rows"] if x["domain"] == domain]
        assert [x["candidate"] for x in rows] == by_diff  # the box lists a domain's candidates by rank
    (worse,) = [x for x in summary["verdict"]["rows"] if (x["domain"], x["candidate"]) == ("target", "v2/paper")]
    assert worse["verdict"] == "worse" and worse["alternative"] == "less" and worse["p_holm"] == worse["p_holm_worse"] < 0.05
    assert worse["mean_diff"] < -0.2 and worse["seed_win_share"] == 0.0 and worse["sample_win_share"] < 0.5
    text = console.export_text()
    assert "target: v2/paper vs v1/none — worse (rank 2)" in text
    assert f"p Holm {worse['p_holm']:.4f} (paired t, Δ<0)" in text
    html = render_html(summary, [])
    assert '<td class="v v-worse">worse</td>' in html
    assert "<td>worse at α=0.05 (H1: Δ &lt; 0)</td>" in html  # the t-test table says the same


def test_verdict_warnings_come_in_the_stated_priority(tmp_path):
    from rich.console import Console

    r = schema.RunDir(tmp_path)  # two seeds, a shortcut cue, a baseline that ranks well but calls everything real
    _write_scores(r, ROLE_SHIFT, arms=ROLE_ARMS, seeds=(1, 2), transform=_below_half)
    console = Console(record=True, width=100, file=io.StringIO())
    summary = build_summary(r.root, ReportConfig(bootstrap_samples=200))
    render(summary, console)
    assert answer.WARNING_PRIORITY == ("collapsed", "too_few_seeds", "shortcut", "different_samples",
                                       "calibration", "coarse_seed_share")
    for x in summary["verdict"]["rows"]:
        assert [w["kind"] for w in x["warnings"]] == ["too_few_seeds", "shortcut", "calibration"], x["domain"]
        texts = [w["text"] for w in x["warnings"]]
        assert texts[0] == "only 2 seed(s): the t-test is weak or undefined"
        (cue,) = [a for a in summary["aggregate"] if (a["arm"], a["domain"]) == ("cue/none", "source")]
        assert texts[1] == f"shortcut cue: the diagnostic cue/none reaches {cue['auc_mean']:.3f} on the source test"
        assert texts[2] == "calibration off: v1/none ranks well, accuracy at 0.5 near chance (2/2 seeds)"
    # each has its full warning among the validity warnings
    warns = "\n".join(summary["warnings"])
    assert "v1/none on target has 2 seed(s)" in warns and "shortcut: the diagnostic arm cue/none" in warns
    assert "v1-none-s1 on target: ranking fine, calibration off" in warns
    text = console.export_text()
    box = text[:text.index("dfsweep report")]
    assert box.count("! only 2 seed(s)") == 2 and box.count("! shortcut cue") == 2 and "! calibration" not in box
    assert box.count("+ 1 more in the validity warnings below") == 2


def _collapsed_v2(trial, domain, split, y, s):
    """v2-paper: one score for every sample up to float noise (measured: a 40-layer fine-tune at lr 1e-3 that diverged
    scored every sample 0.49757 +- 4e-6)."""
    if not trial.startswith("v2-paper"):
        return s
    return 0.49757 + 4e-6 * np.random.default_rng(len(y)).standard_normal(len(y))


def test_a_collapsed_arm_is_named_first_in_the_box_and_in_the_validity_warnings(tmp_path):
    from rich.console import Console

    r = schema.RunDir(tmp_path)
    truth = _write_scores(r, SHIFT, seeds=(1, 2, 3), transform=_collapsed_v2)
    summary = build_summary(r.root, ReportConfig(bootstrap_samples=200))
    for t in summary["trials"]:  # max - min of the stored scores, by hand
        y, s = truth[t["trial_id"], t["domain"]]
        assert t["score_range"] == pytest.approx(max(s) - min(s), abs=1e-12)
        assert (t["score_range"] < 1e-3) == t["trial_id"].startswith("v2-paper")
    warns = summary["warnings"]
    for seed in (1, 2, 3):
        for domain in ("source", "target"):
            (w,) = [w for w in warns if w.startswith(f"v2-paper-s{seed} gives every {domain} test sample")]
            assert "nearly the same score" in w and "collapsed in training" in w
    # the collapse comes first: the one-class warning that follows (every score is below 0.5) says less
    first = min(i for i, w in enumerate(warns) if "calls every" in w)
    assert all("collapsed in training" in w for w in warns[:first]) and first == 6
    for x in summary["verdict"]["rows"]:
        assert x["warnings"][0] == dict(kind="collapsed",
                                        text="collapsed: v2/paper gives every sample nearly one score (3/3 seeds)")
    console = Console(record=True, width=120, file=io.StringIO())
    render(summary, console)
    text = console.export_text()
    box = text[:text.index("dfsweep report")]
    assert box.count("! collapsed: v2/paper gives every sample nearly one score (3/3 seeds)") == 2


def test_undefined_with_one_seed_and_an_empty_box_that_says_why(tmp_path):
    from rich.console import Console

    one = schema.RunDir(tmp_path / "one")
    _write_scores(one, SHIFT, seeds=(1,))
    (x, _) = build_summary(one.root, ReportConfig(bootstrap_samples=100))["verdict"]["rows"]
    assert x["verdict"] == "undefined" and x["n_seeds"] == 1 and math.isnan(x["p_holm"])
    assert x["seed_win_share_note"] is not None and x["warnings"][0]["kind"] == "too_few_seeds"
    one_console = Console(record=True, width=120, file=io.StringIO())
    render(build_summary(one.root, ReportConfig(bootstrap_samples=100)), one_console)
    one_text = one_console.export_text()
    assert re.search(r"\(paired t, [^)]*\) · 1 seed\s+│", one_text) and "· 1 seeds" not in one_text
    alone = schema.RunDir(tmp_path / "alone")  # a baseline and nothing to compare with it
    _write_scores(alone, SHIFT, arms=(("v1", "none"),))
    console = Console(record=True, width=120, file=io.StringIO())
    summary = build_summary(alone.root, ReportConfig(bootstrap_samples=100))
    render(summary, console)
    assert summary["verdict"]["rows"] == [] and "no candidate arm was compared" in summary["verdict"]["empty"]
    text = console.export_text()
    assert text.index("no candidate arm was compared") < text.index("dfsweep report")
    assert "no candidate arm was compared" in render_html(summary, [])


def test_the_console_and_report_html_open_with_the_verdict_box(reported):
    import html as html_lib

    r, _, summary, text, html = reported
    first = text.splitlines()[0]
    assert "Verdict: is the candidate better than the baseline? (image-level AUC)" in first
    box = text[:text.index("dfsweep report")]  # the box ends before the header panel
    for x in summary["verdict"]["rows"]:
        assert f"{x['domain']}: {x['candidate']} vs {x['baseline']} — {x['verdict']} (rank {x['rank']})" in box
        assert f"Δ {x['mean_diff']:+.3f} [{x['ci_low']:+.3f}, {x['ci_high']:+.3f}]" in box
        assert f"P(better): {x['seed_wins'] + x['seed_ties'] / 2:g}/{x['n_seeds']} seeds" in box
    assert "Holm-adjusted over the domain's candidate arms, has p < α = 0.05" in " ".join(box.split())
    body = html[html.index("<body>"):]
    assert body.index('id="verdict"') < body.index('class="meta"') < body.index("Ranking of the candidate arms")
    for x in summary["verdict"]["rows"]:  # the verdict cell, coloured by its word
        assert f'<td class="v v-{x["verdict"].replace(" ", "-")}">{x["verdict"]}</td>' in html
    assert html_lib.escape(summary["verdict"]["caption"]) in html
    assert text.index("dfsweep report") < text.index("Ranking of the candidate arms") < text.index("Per trial")


def test_ranking_covers_every_level_and_the_box_the_primary_one(video_run):
    _, truth, summary = video_run
    assert summary["verdict"]["auc_level"] == "frame" and {x["auc_level"] for x in summary["tests"]} == {"frame", "video"}
    assert len(summary["verdict"]["rows"]) == 2 * 2  # domains x candidates, frame level only
    for t in summary["tests"]:
        others = [u for u in summary["tests"] if (u["auc_level"], u["domain"]) == (t["auc_level"], t["domain"])]
        assert t["rank"] == 1 + sum(u["mean_diff"] > t["mean_diff"] for u in others)
        assert t["verdict"] == answer.decide(t["p_holm"], t["p_holm_less"], 0.05, ci_low=t["hier_ci_low"],
                                             ci_high=t["hier_ci_high"])
    from dfsweep.verdict.tables import ranking_tables

    tables = ranking_tables(summary)
    assert [t.title for t in tables] == [f"Ranking of the candidate arms by mean Δ {g}-level AUC against the baseline"
                                         for g in ("frame", "video")]
    assert all(len(t.rows) == 4 and [row[1] for row in t.rows[:2]] in (["1", "2"], ["1", "1"]) for t in tables)


def test_decide_and_ranks_by_hand():
    up, down, across = dict(ci_low=0.01, ci_high=0.05), dict(ci_low=-0.05, ci_high=-0.01), dict(ci_low=-0.01, ci_high=0.03)
    assert answer.decide(0.01, 0.99, 0.05, **up) == "better" and answer.decide(0.99, 0.01, 0.05, **down) == "worse"
    assert answer.decide(0.2, 0.8, 0.05, **up) == "not shown" and answer.decide(0.05, 0.95, 0.05, **up) == "not shown"
    # consistent across seeds, but the CI over seeds and test samples holds 0: the test set's noise could make it
    assert answer.decide(0.001, 0.999, 0.05, **across) == "not shown"
    assert answer.decide(0.999, 0.001, 0.05, **across) == "not shown"
    assert answer.decide(0.01, 0.99, 0.05, ci_low=float("nan"), ci_high=float("nan")) == "not shown"
    assert answer.decide(float("nan"), float("nan"), 0.05, **up) == "undefined"
    assert answer.ranks([0.1, 0.3, 0.3, float("nan"), -0.2]) == [3, 1, 1, None, 4]  # ties share a rank
    assert answer.ranks([]) == [] and answer.ranks([0.0]) == [1]
    assert answer.seed_share_note(5) is None and "multiple of 1/4" in answer.seed_share_note(4)


def test_arms_say_what_each_one_is_and_which_split_chose_its_epochs(tmp_path):
    """An arm's id comes from the scores' `arm` column (its augmentation in files from before arms); what the grid
    point is comes from the sweep's plan, and the report states the split each arm selected its epochs on."""
    from dfsweep.verdict.scores import write_plan

    r = schema.RunDir(tmp_path)
    _write_scores(r, {("v1", "source"): 2.0, ("v2", "source"): 2.2, ("v1", "target"): 0.2, ("v2", "target"): 0.8},
                  arms=(("v1", "none"), ("v2", "none")))
    plan = []
    for seed in SEEDS:
        f = r.score_file(f"v2-none-s{seed}")
        t = pq.read_table(f)
        tid = f"v2-none-u0-a50-tval-s{seed}"
        t = t.set_column(0, "trial_id", pa.array([tid] * t.num_rows)).append_column(
            "arm", pa.array(["none-u0-a50-tval"] * t.num_rows))
        pq.write_table(t, r.score_file(tid))
        f.unlink()
        plan += [dict(trial_id=f"v1-none-s{seed}", variant="v1", arm="none", augmentation="none", unfreeze_layers=0,
                      adapt_share=0.0, selection="source_val", seed=seed),
                 dict(trial_id=tid, variant="v2", arm="none-u0-a50-tval", augmentation="none", unfreeze_layers=0,
                      adapt_share=0.5, selection="target_val", finetune_epochs=8, finetune_lr=0.001, seed=seed)]
    write_plan(r.scores, plan, dfsweep_version="test")
    summary = build_summary(r.root, ReportConfig(bootstrap_samples=200))
    arms = {a["arm"]: a for a in summary["arms"]}
    assert list(arms) == ["v1/none", "v2/none-u0-a50-tval"]  # baseline first
    cand = arms["v2/none-u0-a50-tval"]
    assert (cand["role"], cand["unfreeze_layers"], cand["adapt_share"], cand["selection"], cand["seeds"]) == \
        ("candidate", 0, 0.5, "target_val", sorted(SEEDS))
    assert "held-out part of the target's adapt pool" in cand["selection_meaning"]
    assert {t["candidate"] for t in summary["tests"]} == {"v2/none-u0-a50-tval"}
    from rich.console import Console

    console = Console(width=200, record=True)
    render(summary, console)
    text = " ".join(console.export_text().split())
    assert "Arms: what each one is" in text and "8 @ 0.001" in text and "source val (the paper's protocol)" in text
