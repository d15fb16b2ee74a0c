"""The verdict, rebuilt from scores/ (and the manifest's counts) alone: summary.json and a rich console report.

`build_summary` computes (through stats); `render` only draws. No Ray, TensorFlow or torch is imported here.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from dfsweep import __version__, schema
from dfsweep.config import ReportConfig, config_from_dict
from dfsweep.orchestrator import stats
from dfsweep.orchestrator.collect import collect_scores

BASELINE_VARIANT = "v1"
# Headline numbers are image-level AUCs on the test splits, clean (no perturbation).
AUC_LEVEL = "image"


def _seed_for(cfg: ReportConfig, *key: Any) -> np.random.SeedSequence:
    """A bootstrap seed per (trial, domain) that does not depend on the order things are computed in."""
    digest = hashlib.sha256(repr(key).encode()).digest()
    return np.random.SeedSequence([cfg.seed, int.from_bytes(digest[:8], "big")])


def _clean_test(scores: pa.Table) -> pa.Table:
    mask = pc.and_(pc.equal(scores.column("split"), "test"), pc.equal(scores.column("perturbation"), "none"))
    return scores.filter(mask)


def _arm(variant: str, augmentation: str) -> str:
    return f"{variant}/{augmentation}"


def per_trial(scores: pa.Table, cfg: ReportConfig) -> list[dict]:
    test = _clean_test(scores)
    rows = []
    keys = test.group_by(["trial_id", "variant", "augmentation", "seed", "domain"]).aggregate([]).to_pylist()
    for k in sorted(keys, key=lambda k: (k["domain"], k["variant"], k["augmentation"], k["seed"])):
        sub = test.filter(pc.and_(pc.equal(test.column("trial_id"), k["trial_id"]), pc.equal(test.column("domain"), k["domain"])))
        y, s = sub.column("label").to_numpy(), sub.column("score").to_numpy()
        ci = stats.bootstrap_auc_ci(y, s, n_resamples=cfg.bootstrap_samples, level=cfg.ci_level,
                                    seed=_seed_for(cfg, k["trial_id"], k["domain"]))
        cm = stats.confusion(y, s, cfg.threshold)
        rows.append(dict(k, arm=_arm(k["variant"], k["augmentation"]), n=len(y), n_real=ci.n_neg, n_fake=ci.n_pos,
                         auc=ci.auc, auc_ci_low=ci.low, auc_ci_high=ci.high, accuracy=cm.accuracy,
                         precision=cm.precision, recall=cm.recall, threshold=cm.threshold,
                         tn=cm.tn, fp=cm.fp, fn=cm.fn, tp=cm.tp, predicts_one_class=cm.predicted_one_class,
                         sample_ids_hash=hashlib.sha256("\n".join(sorted(sub.column("sample_id").to_pylist())).encode()).hexdigest()[:16]))
    return rows


def aggregate(trials: list[dict]) -> list[dict]:
    out = []
    for arm, domain in sorted({(t["arm"], t["domain"]) for t in trials}, key=lambda k: (k[1], k[0])):
        sub = [t for t in trials if t["arm"] == arm and t["domain"] == domain]
        a, acc = stats.mean_sd([t["auc"] for t in sub]), stats.mean_sd([t["accuracy"] for t in sub])
        out.append(dict(arm=arm, variant=sub[0]["variant"], augmentation=sub[0]["augmentation"], domain=domain,
                        n_seeds=a.n, seeds=sorted(t["seed"] for t in sub), auc_mean=a.mean, auc_sd=a.sd,
                        accuracy_mean=acc.mean, accuracy_sd=acc.sd, sd_ddof=a.ddof))
    return out


def paired_tests(trials: list[dict]) -> list[dict]:
    """Each non-baseline arm against V1, paired by seed, per domain: one-tailed paired t-test (H1: arm > V1)."""
    out = []
    arms = sorted({t["arm"] for t in trials if t["variant"] != BASELINE_VARIANT})
    base_arms = sorted({t["arm"] for t in trials if t["variant"] == BASELINE_VARIANT})
    for domain in sorted({t["domain"] for t in trials}):
        for base in base_arms:
            b = {t["seed"]: t for t in trials if t["arm"] == base and t["domain"] == domain}
            for arm in arms:
                c = {t["seed"]: t for t in trials if t["arm"] == arm and t["domain"] == domain}
                seeds = sorted(set(b) & set(c))
                res = stats.paired_t_greater([c[s]["auc"] for s in seeds], [b[s]["auc"] for s in seeds])
                unpaired = [s for s in seeds if c[s]["sample_ids_hash"] != b[s]["sample_ids_hash"]]
                out.append(dict(domain=domain, candidate=arm, baseline=base, metric=f"{AUC_LEVEL}-level AUC",
                                test="one-tailed paired t-test across seeds", alternative=res.alternative,
                                seeds=seeds, n_pairs=res.n_pairs, mean_diff=res.mean_diff, t=res.t, df=res.df,
                                p_value=res.p_value, samples_differ_for_seeds=unpaired))
    return out


def warnings_for(trials: list[dict], aggregates: list[dict], tests: list[dict], cfg: ReportConfig) -> list[str]:
    warns = []
    for t in trials:
        if t["predicts_one_class"]:
            called = "fake" if t["tp"] + t["fp"] else "real"
            warns.append(f"{t['trial_id']} calls every {t['domain']} test sample {called} at threshold "
                         f"{t['threshold']}: its accuracy says nothing about ranking (AUC {t['auc']:.3f})")
    for a in aggregates:
        if a["n_seeds"] < 3:
            warns.append(f"{a['arm']} on {a['domain']} has {a['n_seeds']} seed(s): fewer than 3, the across-seed test is weak or undefined")
    for t in tests:
        if t["samples_differ_for_seeds"]:
            warns.append(f"{t['candidate']} and {t['baseline']} were scored on different samples for seeds {t['samples_differ_for_seeds']}")
    for t in trials:
        if t["auc_ci_high"] - t["auc_ci_low"] > 0.2:
            warns.append(f"{t['trial_id']} on {t['domain']}: AUC CI [{t['auc_ci_low']:.3f}, {t['auc_ci_high']:.3f}] "
                         "is wider than 0.2: too few test samples to conclude much")
    return warns


def _manifest_counts(run: schema.RunDir) -> dict[str, Any]:
    if not run.manifest.exists():
        return {}
    m = pq.read_table(run.manifest, columns=["domain", "label", "status", "split"])
    counts: dict[str, Any] = {"inputs": m.num_rows, "by_status": {}, "crops_by_domain_split_label": {}}
    for r in m.group_by(["status"]).aggregate([("status", "count")]).to_pylist():
        counts["by_status"][r["status"]] = r["status_count"]
    ok = m.filter(pc.equal(m.column("status"), schema.STATUS_OK))
    for r in ok.group_by(["domain", "split", "label"]).aggregate([("label", "count")]).sort_by(
            [("domain", "ascending"), ("split", "ascending"), ("label", "ascending")]).to_pylist():
        counts["crops_by_domain_split_label"][f"{r['domain']}/{r['split']}/{schema.LABELS[r['label']]}"] = r["label_count"]
    return counts


def _run_config(run: schema.RunDir) -> dict[str, Any]:
    return yaml.safe_load(run.config.read_text()) if run.config.exists() else {}


def build_summary(run_dir: str | Path, cfg: ReportConfig | None = None) -> dict[str, Any]:
    """Everything the report shows, as plain data; the same files give the same summary."""
    run = schema.RunDir(run_dir)
    run_cfg = _run_config(run)
    if cfg is None:
        cfg = config_from_dict({"report": run_cfg["report"]} if "report" in run_cfg else {}).report
    scores = collect_scores(run.scores)
    trials = per_trial(scores, cfg)
    aggs = aggregate(trials)
    tests = paired_tests(trials)
    return dict(
        dfsweep_version=__version__,
        run_dir=str(run.root),
        auc_level=AUC_LEVEL,
        statistics=dict(ci=f"{cfg.ci_level:.0%} stratified percentile bootstrap, B={cfg.bootstrap_samples}, seed={cfg.seed}",
                        sd="sample standard deviation across seeds (ddof=1)",
                        test="one-tailed paired t-test across seeds, H1: candidate AUC > V1 AUC, df = seeds - 1",
                        threshold=cfg.threshold, alpha=cfg.alpha),
        config=run_cfg,
        counts=_manifest_counts(run),
        trials=trials,
        aggregate=aggs,
        tests=tests,
        warnings=warnings_for(trials, aggs, tests, cfg),
    )


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return stats.nan_to_none(float(obj))
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def write_summary(summary: dict[str, Any], path: str | Path) -> None:
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(_jsonable(summary), indent=2, sort_keys=True, allow_nan=False) + "\n")
    tmp.replace(path)


def _f(x: float | None, nd: int = 3) -> str:
    return "—" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{nd}f}"


def render(summary: dict[str, Any], console=None) -> None:
    """Draw the summary as rich tables; computes nothing."""
    from rich.console import Console
    from rich.panel import Panel
    from rich.table import Table

    console = console or Console()
    cfg = summary.get("config", {})
    tr, sw = cfg.get("train", {}), cfg.get("sweep", {})
    counts = summary.get("counts", {})
    head = [f"run: {summary['run_dir']}   dfsweep {summary['dfsweep_version']}",
            f"model: Xception {tr.get('input_size_px', '?')} px, pixel range {tr.get('pixel_range', '?')}, weights "
            f"{Path(str(tr.get('weights', '?'))).name}; head {tr.get('head_epochs', '?')} epochs @ {tr.get('head_lr', '?')}, "
            f"V2 fine-tune {tr.get('finetune_epochs', '?')} epochs @ {tr.get('finetune_lr', '?')}",
            f"seeds: {sw.get('seeds', '?')}   AUCs are {summary['auc_level']}-level, on test splits, clean",
            f"statistics: {summary['statistics']['ci']}; {summary['statistics']['sd']}"]
    if counts:
        head.append(f"inputs: {counts['inputs']} files; by status: "
                    + ", ".join(f"{k} {v}" for k, v in sorted(counts['by_status'].items())))
        head.append("crops: " + ", ".join(f"{k} {v}" for k, v in counts["crops_by_domain_split_label"].items()))
    console.print(Panel("\n".join(head), title="dfsweep report", expand=False))

    t = Table(title="Per trial (test split)", show_lines=False)
    for col in ("trial", "domain", "n (real/fake)", "AUC", f"{summary['statistics']['ci'].split()[0]} CI",
                "acc@thr", "TN FP FN TP"):
        t.add_column(col, justify="right" if col not in ("trial", "domain") else "left")
    for r in summary["trials"]:
        t.add_row(r["trial_id"], r["domain"], f"{r['n']} ({r['n_real']}/{r['n_fake']})", _f(r["auc"]),
                  f"[{_f(r['auc_ci_low'])}, {_f(r['auc_ci_high'])}]", _f(r["accuracy"]),
                  f"{r['tn']} {r['fp']} {r['fn']} {r['tp']}")
    console.print(t)

    a = Table(title="Across seeds: mean ± sd (ddof=1)")
    for col in ("variant/augmentation", "domain", "seeds", "AUC", "accuracy"):
        a.add_column(col)
    for r in summary["aggregate"]:
        a.add_row(r["arm"], r["domain"], str(r["n_seeds"]), f"{_f(r['auc_mean'])} ± {_f(r['auc_sd'])}",
                  f"{_f(r['accuracy_mean'])} ± {_f(r['accuracy_sd'])}")
    console.print(a)

    s = Table(title="Is the candidate better than V1? one-tailed paired t-test across seeds (H1: ΔAUC > 0)")
    for col in ("domain", "candidate vs baseline", "pairs", "mean ΔAUC", "t", "df", "p (one-sided)", "verdict"):
        s.add_column(col)
    alpha = summary["statistics"]["alpha"]
    for r in summary["tests"]:
        p = r["p_value"]
        verdict = ("undefined (too few seeds or zero variance)" if p is None or np.isnan(p)
                   else f"better at α={alpha}" if p < alpha else f"not shown at α={alpha}")
        s.add_row(r["domain"], f"{r['candidate']} vs {r['baseline']}", str(r["n_pairs"]), _f(r["mean_diff"], 4),
                  _f(r["t"]), str(r["df"]), _f(p, 4), verdict)
    console.print(s)
    if summary["warnings"]:
        console.print(Panel("\n".join(f"• {w}" for w in summary["warnings"]), title="validity warnings",
                            border_style="yellow", expand=False))


def report(run_dir: str | Path, cfg: ReportConfig | None = None, console=None) -> dict[str, Any]:
    """Build, write (summary.json) and render the report of one run directory."""
    summary = build_summary(run_dir, cfg)
    write_summary(summary, schema.RunDir(run_dir).summary)
    render(summary, console)
    return summary
