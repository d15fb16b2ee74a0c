"""Scores -> one summary: every number the report shows, as plain data (summary.json).

`group_scores` splits the scores table into groups in one sort; `build_summary` computes from them (through stats)
the per-trial metrics, the per-seed and across-seed tests of each candidate against the baseline, robustness and the
validity warnings (validity.py). The figures' data (figure_data.py) and two runs side by side (compare.py) start from the same
grouping. The arms' roles (baseline, candidate, diagnostic) come from the scores' `role` column
(schema.role_of), never from a variant's name. METRIC_COLUMNS is the one list of per-trial metric columns that
metrics.csv, the console and report.html show.

Every AUC says its grain (`auc_level` on every row): image, frame or video (a video's score is the mean of its
frames'). Grains are computed, tested (Holm families included) and shown apart, never pooled.
"""

from __future__ import annotations

import hashlib
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from dfsweep import __version__, perturbations, schema
from dfsweep.config import ReportConfig, config_from_dict
from dfsweep.verdict import answer, stats
from dfsweep.verdict.labels import (COUNT_HEADER, GRAIN_MEANING, GRAIN_ORDER, auc_label, cell_order, format_interval,
                                    format_number, grains_present)
from dfsweep.verdict.scores import collect_scores, encoded, read_plan_trials, row_keys, value_ranks
from dfsweep.verdict.validity import calibration_counts, collapsed_counts, shortcuts, warnings_for

BASELINE, CANDIDATE, DIAGNOSTIC = schema.ROLES


@dataclass(frozen=True)
class MetricColumn:
    """One column of the per-trial tables (console and report.html) and the metrics.csv fields behind it.

    `header` may name {auc} (the grain's AUC), {n} (what a row counts), {ci} ("95% CI") and {thr} (the report
    threshold). `fields` are the keys of metric and trial rows it shows, in metrics.csv's column order. `show` is how
    a table cell shows them: "number" (one value at `decimals` places), "interval" ("[low, high]"), "n" ("n (real/
    fake)"), "counts" (integers joined by spaces), or "csv" (in metrics.csv only, not in the tables).
    """

    header: str
    fields: tuple[str, ...]
    show: str = "number"
    decimals: int = 3

    def title(self, *, grain: str, ci: str, threshold: float) -> str:
        return self.header.format(auc=auc_label(grain), n=COUNT_HEADER[grain], ci=ci, thr=threshold)

    def cell(self, row: dict[str, Any]) -> str:
        values = [row[f] for f in self.fields]
        if self.show == "number":
            return format_number(values[0], self.decimals)
        if self.show == "interval":
            return format_interval(*values, self.decimals)
        if self.show == "n":
            return f"{values[0]} ({values[1]}/{values[2]})"
        if self.show == "counts":
            return " ".join(str(v) for v in values)
        raise ValueError(f"metric column {self.header!r} is not shown in tables (show={self.show!r})")


# The per-trial metrics, in the order metrics.csv, the console and report.html list them. A new metric is one entry
# here and one line in `_metrics` that computes it.
METRIC_COLUMNS = (
    MetricColumn("{n}", ("n", "n_real", "n_fake"), "n"),
    MetricColumn("{auc}", ("auc",)),
    MetricColumn("{ci}", ("auc_ci_low", "auc_ci_high"), "interval"),
    MetricColumn("AP", ("average_precision",)),
    MetricColumn("EER", ("eer",)),
    MetricColumn("acc@{thr}", ("accuracy",)),
    MetricColumn("precision@{thr}", ("precision",), "csv"),
    MetricColumn("recall@{thr}", ("recall",), "csv"),
    MetricColumn("F1@{thr}", ("f1",)),
    MetricColumn("TN FP FN TP @{thr}", ("tn", "fp", "fn", "tp"), "counts"),
    MetricColumn("Brier", ("brier",)),
    # max - min of the scores: near 0, the model gives every sample the same score (validity.COLLAPSED_SCORE_RANGE).
    MetricColumn("score range", ("score_range",), "csv"),
)
# What a metric row is about, before its metrics (metrics.csv's first columns).
METRIC_ID_COLUMNS = ("trial_id", "variant", "augmentation", "seed", "domain", "perturbation", "level", "auc_level")
METRICS_COLUMNS = METRIC_ID_COLUMNS + tuple(f for column in METRIC_COLUMNS for f in column.fields)
# The metrics at the threshold chosen on source val (trial rows: <field>_at_val_threshold).
VAL_THRESHOLD_FIELDS = ("accuracy", "precision", "recall", "f1", "tn", "fp", "fn", "tp")


def bootstrap_seed(cfg: ReportConfig, *key: Any) -> np.random.SeedSequence:
    """A bootstrap seed per (trial, domain, ...) that does not depend on the order things are computed in."""
    digest = hashlib.sha256(repr(key).encode()).digest()
    return np.random.SeedSequence([cfg.seed, int.from_bytes(digest[:8], "big")])


def _grain_key(grain: str, *key: Any) -> tuple:
    # Image-grain bootstrap seeds keep the key they had before grains existed, so their CIs do not move.
    return key if grain == "image" else (*key, grain)


def arm_name(variant: str, arm: str) -> str:
    """The report's name of an arm: variant/arm id (the arm id is the augmentation in runs from before arms)."""
    return f"{variant}/{arm}"


@dataclass(frozen=True)
class Group:
    """One (trial, domain, split, perturbation, level, grain): its samples sorted by sample_id (for the video grain:
    its videos, sorted by video_id, which stands in for sample_id), so nothing hangs on row order."""

    sample_id: np.ndarray
    label: np.ndarray
    score: np.ndarray
    video_id: np.ndarray | None = None  # frame grain only: the video of each frame


# (trial_id, domain, split, perturbation, level, grain)
GroupKey = tuple[str, str, str, str, int, str]


@dataclass(frozen=True)
class GroupedScores:
    """A scores table split into groups, and each trial's variant, augmentation, seed, role and arm."""

    groups: dict[GroupKey, Group]
    trials: dict[str, dict[str, Any]]


_GROUP_KEYS = ("trial_id", "domain", "split", "perturbation", "level")


def _videos(frames: Group, where: str) -> Group:
    """Video grain from frame grain: one row per video_id, its score the mean of its frames' scores and its label the
    one its frames share. Frames of one video that disagree on the label are a broken file: SchemaError naming it."""
    vid, inv = np.unique(frames.video_id, return_inverse=True)
    inv = inv.reshape(-1)
    n = np.bincount(inv)
    n_fake = np.bincount(inv, weights=frames.label).astype(np.int64)
    bad = np.flatnonzero((n_fake > 0) & (n_fake < n))
    if len(bad):
        i = bad[0]
        more = f"; {len(bad) - 1} more video(s) likewise" if len(bad) > 1 else ""
        raise schema.SchemaError(f"video {vid[i]} ({where}): its frames disagree on the label ({n_fake[i]} fake, "
                                 f"{n[i] - n_fake[i]} real), yet a video has one label{more}")
    return Group(vid, (n_fake > 0).astype(np.int8), np.bincount(inv, weights=frames.score) / n)


def _objects(column: pa.ChunkedArray) -> np.ndarray:
    """A string column as a numpy object array that holds each distinct string once (rows share it)."""
    column = encoded(column)
    return column.dictionary.to_numpy(zero_copy_only=False)[column.indices.to_numpy()]


def group_scores(scores: pa.Table) -> GroupedScores:
    """Split the scores table into groups in one sort, instead of one filter per group: still images (video_id "")
    at the image grain, frames at the frame grain, and from the frames the videos at the video grain. The sort is on
    integer row keys (scores.row_keys), in the order of the values themselves."""
    n = scores.num_rows
    if "video_id" in scores.column_names:
        video = encoded(scores.column("video_id"))
        frame = pc.not_equal(video.dictionary, "").to_numpy(zero_copy_only=False)[video.indices.to_numpy()]
    else:
        frame = np.zeros(n, bool)
    group_key = row_keys([*(scores.column(k) for k in _GROUP_KEYS), pa.array(frame)])
    order = np.lexsort((value_ranks(scores.column("sample_id"))[0], group_key))
    group_key = group_key[order]
    frame = frame[order]
    sample_id = _objects(scores.column("sample_id"))[order]
    video_id = _objects(scores.column("video_id"))[order] if frame.any() else None
    label = scores.column("label").to_numpy()[order].astype(np.int8)
    score = scores.column("score").to_numpy()[order].astype(np.float64)
    change = np.ones(n, bool)
    change[1:] = group_key[1:] != group_key[:-1]
    starts = np.flatnonzero(change)
    groups, trials = {}, {}
    for a, b in zip(starts, np.r_[starts[1:], n]):
        first = int(order[a])
        value = {k: scores.column(k)[first].as_py() for k in (*_GROUP_KEYS, "variant", "augmentation", "seed", "arm")}
        trial = value["trial_id"]
        key = (trial, value["domain"], value["split"], value["perturbation"], value["level"])
        if frame[a]:
            g = Group(sample_id[a:b], label[a:b], score[a:b], video_id[a:b])
            groups[(*key, "frame")] = g
            groups[(*key, "video")] = _videos(g, f"trial {key[0]}, {key[1]} {key[2]}, {key[3]} {key[4]}")
        else:
            groups[(*key, "image")] = Group(sample_id[a:b], label[a:b], score[a:b])
        role = scores.column("role")[first].as_py() if "role" in scores.column_names else ""
        trials.setdefault(trial, dict(variant=value["variant"], augmentation=value["augmentation"], seed=value["seed"],
                                      role=schema.role_of(value["variant"], role),
                                      arm=arm_name(value["variant"], schema.arm_of(value["augmentation"], value["arm"]))))
    return GroupedScores(groups, trials)


def _mixed_warnings(data: GroupedScores) -> list[str]:
    """Where one trial x domain x split holds both still images and video frames, say that they are kept apart."""
    cells: dict[tuple[str, str], set[str]] = {}
    for trial, domain, split, pert, level, grain in data.groups:
        if grain == "image" and (trial, domain, split, pert, level, "frame") in data.groups:
            cells.setdefault((domain, split), set()).add(trial)
    return [f"{domain} {split}: {len(trials)} trial(s) hold both still images and video frames ({', '.join(sorted(trials))}): "
            f"{auc_label('image')} on the stills, {auc_label('frame')} and {auc_label('video')} on the frames, "
            "each apart, never pooled"
            for (domain, split), trials in sorted(cells.items())]


def _metrics(y: np.ndarray, s: np.ndarray, cfg: ReportConfig, seed_key: tuple) -> dict[str, Any]:
    """Every metric of one group (the fields of METRIC_COLUMNS, and what the warnings need)."""
    ci = stats.bootstrap_auc_ci(y, s, n_resamples=cfg.bootstrap_samples, confidence=cfg.ci_level,
                                seed=bootstrap_seed(cfg, *seed_key))
    cm = stats.confusion(y, s, threshold=cfg.threshold)
    e = stats.eer(y, s)
    return dict(n=len(y), n_real=ci.n_neg, n_fake=ci.n_pos, auc=ci.auc, auc_ci_low=ci.low, auc_ci_high=ci.high,
                average_precision=stats.average_precision(y, s), eer=e.eer, eer_threshold=e.threshold,
                accuracy=cm.accuracy, precision=cm.precision, recall=cm.recall, f1=cm.f1, threshold=cm.threshold,
                tn=cm.tn, fp=cm.fp, fn=cm.fn, tp=cm.tp, predicts_one_class=cm.predicted_one_class,
                predicted_fake_share=cm.predicted_fake_share, brier=stats.brier_score(y, s),
                score_range=float(np.ptp(s)) if len(s) else float("nan"))


def metric_rows(data: GroupedScores, cfg: ReportConfig) -> list[dict]:
    """One row per trial x domain x perturbation x level x grain of the test split (metrics.csv, and the robustness
    table)."""
    rows = []
    for (trial, domain, split, pert, level, grain), g in data.groups.items():
        if split != "test":
            continue
        # The clean rows keep the seed key they always had, so their CIs do not move.
        key = _grain_key(grain, *((trial, domain) if pert == perturbations.NONE else (trial, domain, pert, level)))
        meta = data.trials[trial]
        rows.append(dict(trial_id=trial, **meta, domain=domain,
                         perturbation=pert, level=level, auc_level=grain, **_metrics(g.label, g.score, cfg, key)))
    rows.sort(key=lambda r: (GRAIN_ORDER[r["auc_level"]], r["domain"], r["variant"], r["augmentation"], r["seed"],
                             r["trial_id"], perturbations.order_key(r["perturbation"], r["level"])))
    return rows


def _val_threshold(data: GroupedScores, trial: str, grain: str) -> tuple[float, str | None, int]:
    """The threshold chosen on the trial's own clean source val split at the same grain (its EER point), or nan and
    why not."""
    g = data.groups.get((trial, "source", "val", perturbations.NONE, 0, grain))
    if g is None:
        if any(k[:5] == (trial, "source", "val", perturbations.NONE, 0) for k in data.groups):
            return float("nan"), f"no {grain}-level source val rows for this trial", 0
        return float("nan"), "no source val rows for this trial", 0
    t = stats.eer(g.label, g.score).threshold
    if math.isnan(t):
        return t, "source val rows hold only one class", len(g.label)
    return t, None, len(g.label)


def per_trial(data: GroupedScores, metrics: list[dict]) -> list[dict]:
    """The clean test rows, plus metrics at the threshold chosen on source val (what a deployed model would use)."""
    rows = []
    for m in metrics:
        if m["perturbation"] != perturbations.NONE:
            continue
        r = {k: v for k, v in m.items() if k not in ("perturbation", "level")}
        g = data.groups[m["trial_id"], m["domain"], "test", perturbations.NONE, m["level"], m["auc_level"]]
        t, reason, n_val = _val_threshold(data, m["trial_id"], m["auc_level"])
        r.update(val_threshold=t, val_threshold_reason=reason, val_threshold_n=n_val)
        if reason is None:
            cm = stats.confusion(g.label, g.score, threshold=t)
            values = tuple(getattr(cm, f) for f in VAL_THRESHOLD_FIELDS)
        else:
            values = (None,) * len(VAL_THRESHOLD_FIELDS)
        r.update({f"{f}_at_val_threshold": v for f, v in zip(VAL_THRESHOLD_FIELDS, values)})
        r["sample_ids_hash"] = hashlib.sha256("\n".join(sorted(g.sample_id)).encode()).hexdigest()[:16]
        rows.append(r)
    return rows


def aggregate(trials: list[dict]) -> list[dict]:
    """Mean ± sd across seeds per grain, arm and domain."""
    out = []
    cells = sorted({(t["auc_level"], t["arm"], t["domain"]) for t in trials}, key=lambda k: cell_order(*k))
    for grain, arm, domain in cells:
        sub = [t for t in trials if (t["auc_level"], t["arm"], t["domain"]) == (grain, arm, domain)]
        a, acc = stats.mean_sd([t["auc"] for t in sub]), stats.mean_sd([t["accuracy"] for t in sub])
        out.append(dict(arm=arm, variant=sub[0]["variant"], augmentation=sub[0]["augmentation"], role=sub[0]["role"],
                        domain=domain, auc_level=grain, metric=auc_label(grain), n_seeds=a.n,
                        seeds=sorted(t["seed"] for t in sub), auc_mean=a.mean, auc_sd=a.sd, accuracy_mean=acc.mean,
                        accuracy_sd=acc.sd, sd_ddof=a.ddof))
    return out


def _comparisons(trials: list[dict]) -> Iterator[tuple[str, str, str, str, dict[int, dict], dict[int, dict]]]:
    """(grain, domain, candidate arm, baseline arm, baseline trials by seed, candidate trials by seed), in a stable
    order; trials of one grain are only ever compared with trials of the same grain. Diagnostic arms are left out."""
    for grain in sorted({t["auc_level"] for t in trials}, key=GRAIN_ORDER.get):
        at = [t for t in trials if t["auc_level"] == grain]
        arms = sorted({t["arm"] for t in at if t["role"] == CANDIDATE})
        base_arms = sorted({t["arm"] for t in at if t["role"] == BASELINE})
        for domain in sorted({t["domain"] for t in at}):
            for base in base_arms:
                b = {t["seed"]: t for t in at if t["arm"] == base and t["domain"] == domain}
                for arm in arms:
                    c = {t["seed"]: t for t in at if t["arm"] == arm and t["domain"] == domain}
                    yield grain, domain, arm, base, b, c


@dataclass(frozen=True)
class _Pair:
    """Candidate and baseline scores on the samples both were scored on, joined on sample_id."""

    y: np.ndarray
    s_candidate: np.ndarray
    s_baseline: np.ndarray
    n_only_candidate: int
    n_only_baseline: int
    n_label_disagree: int


def _pair(c: Group, b: Group) -> _Pair:
    _, ic, ib = np.intersect1d(c.sample_id, b.sample_id, assume_unique=True, return_indices=True)
    agree = c.label[ic] == b.label[ib]  # a sample's label is its own: a disagreement is a broken file, left out
    ic, ib = ic[agree], ib[agree]
    return _Pair(b.label[ib], c.score[ic], b.score[ib], len(c.sample_id) - len(agree), len(b.sample_id) - len(agree),
                 int((~agree).sum()))


def per_seed_tests(data: GroupedScores, trials: list[dict], cfg: ReportConfig) -> tuple[list[dict], dict[tuple, _Pair]]:
    """Each candidate arm against each baseline arm of the same seed, per grain and domain, paired on sample_id (on
    video_id at the video grain): DeLong's one-sided test and the paired bootstrap CI of ΔAUC. Also returns the joined
    scores, which the across-seed bootstrap resamples."""
    out, pairs = [], {}
    for grain, domain, arm, base, b, c in _comparisons(trials):
        for seed in sorted(set(b) & set(c)):
            ct, bt = c[seed]["trial_id"], b[seed]["trial_id"]
            p = _pair(data.groups[ct, domain, "test", perturbations.NONE, 0, grain],
                      data.groups[bt, domain, "test", perturbations.NONE, 0, grain])
            pairs[grain, domain, arm, base, seed] = p
            dl = stats.delong_test(p.y, p.s_candidate, p.s_baseline)
            pb = stats.paired_bootstrap_auc_diff(p.y, p.s_candidate, p.s_baseline, n_resamples=cfg.bootstrap_samples,
                                                 confidence=cfg.ci_level,
                                                 seed=bootstrap_seed(cfg, *_grain_key(grain, "paired", ct, bt, domain)))
            sw = stats.sample_win_share(p.y, p.s_candidate, p.s_baseline)
            out.append(dict(domain=domain, seed=seed, candidate=arm, baseline=base, candidate_trial=ct, baseline_trial=bt,
                            auc_level=grain, metric=auc_label(grain), n_paired=len(p.y), n_real=dl.n_neg, n_fake=dl.n_pos,
                            n_only_candidate=p.n_only_candidate, n_only_baseline=p.n_only_baseline,
                            n_label_disagree=p.n_label_disagree, auc_candidate=dl.auc_candidate,
                            auc_baseline=dl.auc_baseline, diff=dl.diff, delong_z=dl.z, delong_se=dl.se,
                            delong_p=dl.p_value, delong_alternative=dl.alternative, diff_ci_low=pb.low,
                            diff_ci_high=pb.high, diff_ci_level=pb.confidence, prob_positive=pb.prob_positive,
                            prob_positive_is="bootstrap probability (share of paired resamples with ΔAUC > 0), not a p-value",
                            sample_win_share=sw.share, sample_win_share_fake=sw.share_fake,
                            sample_win_share_real=sw.share_real))
    return out, pairs


def across_seed_tests(trials: list[dict], pairs: dict[tuple, _Pair], cfg: ReportConfig,
                      seed_tests: list[dict]) -> list[dict]:
    """Each candidate arm against each baseline arm, paired by seed, per grain and domain: one-tailed paired t-test
    (H1: candidate > baseline), its Holm adjustment over the candidate arms of the domain at that grain (a family
    never mixes grains), Wilcoxon (enough seeds only) and the hierarchical bootstrap CI of the mean ΔAUC (seeds, then
    samples); the other tail (H1: candidate < baseline), Holm'd in its own family, for a "worse" verdict; the
    probabilities of improvement (seed-level, and per-sample: the mean of seed_tests' per-seed shares); and the
    verdict (answer.decide) and rank by mean Δ."""
    sample_share = {(s["auc_level"], s["domain"], s["candidate"], s["baseline"], s["seed"]): s["sample_win_share"]
                    for s in seed_tests}
    out = []
    for grain, domain, arm, base, b, c in _comparisons(trials):
        seeds = sorted(set(b) & set(c))
        cand, basel = [c[s]["auc"] for s in seeds], [b[s]["auc"] for s in seeds]
        res = stats.paired_t_greater(cand, basel)
        less = stats.paired_t(cand, basel, alternative="less")
        sw = stats.seed_win_share(cand, basel)
        w = stats.wilcoxon_greater(cand, basel)
        joined = [pairs[grain, domain, arm, base, s] for s in seeds]
        hb = stats.hierarchical_bootstrap_mean_diff([(p.y, p.s_candidate, p.s_baseline) for p in joined],
                                                    n_resamples=cfg.bootstrap_samples, confidence=cfg.ci_level,
                                                    seed=bootstrap_seed(cfg, *_grain_key(grain, "hierarchical", domain,
                                                                                         arm, base)))
        unpaired = [s for s in seeds if c[s]["sample_ids_hash"] != b[s]["sample_ids_hash"]]
        out.append(dict(domain=domain, candidate=arm, baseline=base, auc_level=grain, metric=auc_label(grain),
                        test="one-tailed paired t-test across seeds", alternative=res.alternative,
                        seeds=seeds, n_pairs=res.n_pairs, mean_diff=res.mean_diff, t=res.t, df=res.df,
                        p_value=res.p_value, samples_differ_for_seeds=unpaired,
                        wilcoxon_statistic=w.statistic, wilcoxon_p=w.p_value, wilcoxon_reason=w.reason,
                        wilcoxon_n_pairs=w.n_pairs, wilcoxon_n_zero=w.n_zero,
                        hier_mean_diff=hb.mean_diff, hier_ci_low=hb.low, hier_ci_high=hb.high,
                        hier_ci_level=hb.confidence, p_value_less=less.p_value,
                        auc_mean_candidate=float(np.mean(cand)) if seeds else float("nan"),
                        auc_mean_baseline=float(np.mean(basel)) if seeds else float("nan"),
                        seed_win_share=sw.share, seed_wins=sw.wins, seed_ties=sw.ties, seed_losses=sw.losses,
                        seed_win_share_note=answer.seed_share_note(sw.n_seeds),
                        sample_win_share=float(np.mean([sample_share[grain, domain, arm, base, s] for s in seeds]))
                        if seeds else float("nan")))
    for family_key in {(t["auc_level"], t["domain"]) for t in out}:
        family = [t for t in out if (t["auc_level"], t["domain"]) == family_key]
        for t, p in zip(family, stats.holm([t["p_value"] for t in family])):
            t["p_holm"] = p
            t["holm_family"] = len(family)
        for t, p in zip(family, stats.holm([t["p_value_less"] for t in family])):  # the other tail: its own family
            t["p_holm_less"] = p
            t["verdict"] = answer.decide(t["p_holm"], p, cfg.alpha, ci_low=t["hier_ci_low"], ci_high=t["hier_ci_high"])
    for key in {(t["auc_level"], t["domain"], t["baseline"]) for t in out}:
        ranked = [t for t in out if (t["auc_level"], t["domain"], t["baseline"]) == key]
        for t, r in zip(ranked, answer.ranks([t["mean_diff"] for t in ranked])):
            t["rank"] = r
    return out


def robustness(metrics: list[dict], cfg: ReportConfig) -> list[dict]:
    """AUC and accuracy against perturbation level, per grain, arm and domain, across seeds; empty when nothing is
    perturbed."""
    out = []
    cells: dict[tuple, list[dict]] = {}
    for m in metrics:
        if m["perturbation"] != perturbations.NONE:
            cells.setdefault((m["auc_level"], m["domain"], m["arm"], m["perturbation"], m["level"]), []).append(m)
    order = lambda kv: (GRAIN_ORDER[kv[0][0]], *kv[0][1:3], perturbations.order_key(*kv[0][3:]))  # noqa: E731
    for (grain, domain, arm, pert, level), sub in sorted(cells.items(), key=order):
        a = stats.mean_band([m["auc"] for m in sub], confidence=cfg.ci_level)
        acc = stats.mean_band([m["accuracy"] for m in sub], confidence=cfg.ci_level)
        out.append(dict(domain=domain, arm=arm, variant=sub[0]["variant"], augmentation=sub[0]["augmentation"],
                        perturbation=pert, level=level, auc_level=grain, metric=auc_label(grain), n_seeds=a.n,
                        seeds=sorted(m["seed"] for m in sub), auc_mean=a.mean, auc_sd=a.sd, auc_band_low=a.low,
                        auc_band_high=a.high, accuracy_mean=acc.mean, accuracy_sd=acc.sd, accuracy_band_low=acc.low,
                        accuracy_band_high=acc.high, threshold=cfg.threshold, band_level=cfg.ci_level, sd_ddof=a.ddof))
    return out


# How an arm chose its epochs (config.SELECTIONS), as the report states it.
SELECTION_MEANING = {
    "source_val": "source val (the paper's protocol)",
    "target_val": "target val: a held-out part of the target's adapt pool, disjoint from target test (never test)",
}
ARM_SETTINGS = ("augmentation", "unfreeze_layers", "adapt_share", "finetune_epochs", "finetune_lr", "selection")


def arms(data: GroupedScores, plan: list[dict] | None) -> list[dict]:
    """One row per arm of the report: its role, its trials and the grid point it is (the sweep's plan,
    scores/_PLAN.json: unfrozen layers, adapt share, fine-tuning epochs and rate, selection; runs from before arms
    have only the augmentation), baseline first, then candidates and diagnostics, each by name."""
    planned = {t["trial_id"]: t for t in plan or []}
    out: dict[str, dict] = {}
    for trial in sorted(data.trials):
        meta = data.trials[trial]
        row = out.setdefault(meta["arm"], dict(arm=meta["arm"], variant=meta["variant"], role=meta["role"],
                                               augmentation=meta["augmentation"], seeds=[], trials=[]))
        row["seeds"].append(meta["seed"])
        row["trials"].append(trial)
        row.update({k: planned[trial][k] for k in ARM_SETTINGS if k in planned.get(trial, {})})
    for row in out.values():
        row["seeds"].sort()
        if "selection" in row:
            row["selection_meaning"] = SELECTION_MEANING.get(row["selection"], row["selection"])
    return sorted(out.values(), key=lambda r: (schema.ROLES.index(r["role"]) if r["role"] in schema.ROLES else 9,
                                               r["arm"]))


def _manifest_counts(run: schema.RunDir) -> dict[str, Any]:
    if not run.manifest.exists():
        return {}
    m = run.manifest.read_parquet(columns=["domain", "label", "status", "split"])
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


@contextmanager
def timed(timings: dict[str, float] | None, step: str) -> Iterator[None]:
    """Add the seconds the block takes to timings[step] (when timings is given)."""
    start = time.perf_counter()
    yield
    if timings is not None:
        timings[step] = timings.get(step, 0.0) + time.perf_counter() - start


def build_summary(run_dir: str | Path, cfg: ReportConfig | None = None, *,
                  timings: dict[str, float] | None = None, data: GroupedScores | None = None) -> dict[str, Any]:
    """Everything the report shows, as plain data; the same files give the same summary.

    `timings`, when given, receives the seconds each step took (kept out of the summary, which must not vary).
    `data`, when given, is group_scores of the run's scores (so a caller that needs them too groups them once).
    """
    run = schema.RunDir(run_dir)
    run_cfg = _run_config(run)
    if cfg is None:
        cfg = config_from_dict({"report": run_cfg["report"]} if "report" in run_cfg else {}).report
    if data is None:
        with timed(timings, "load"):
            data = group_scores(collect_scores(run.scores))
    with timed(timings, "per_trial"):
        metrics = metric_rows(data, cfg)
        trials = per_trial(data, metrics)
    with timed(timings, "per_seed_tests"):
        seed_tests, pairs = per_seed_tests(data, trials, cfg)
    with timed(timings, "across_seed"):
        aggs = aggregate(trials)
        tests = across_seed_tests(trials, pairs, cfg, seed_tests)
    with timed(timings, "robustness"):
        robust = robustness(metrics, cfg)
    ci = f"{cfg.ci_level:.0%}"
    grains = grains_present({m["auc_level"] for m in metrics} or {k[-1] for k in data.groups})
    with timed(timings, "verdict"):
        verdict = answer.verdict_block(tests, grain=grains[0], alpha=cfg.alpha, ci=ci,
                                       bootstrap_samples=cfg.bootstrap_samples, threshold=cfg.threshold,
                                       calibration=calibration_counts(trials), collapsed=collapsed_counts(trials),
                                       shortcuts=shortcuts(aggs))
    return dict(
        dfsweep_version=__version__,
        run_dir=str(run.root),
        auc_level=grains[0],  # the primary grain (kept from when there was only one)
        auc_levels=grains,
        statistics=dict(
            auc_levels={g: GRAIN_MEANING[g] for g in grains},
            levels_apart=("every row names its auc_level; levels are computed, tested and shown apart, never pooled: "
                          "Holm families are per domain and level, video-level pairs join on video_id"),
            ci=f"{ci} stratified percentile bootstrap, B={cfg.bootstrap_samples}, seed={cfg.seed}",
            sd="sample standard deviation across seeds (ddof=1)",
            test="one-tailed paired t-test across seeds, H1: candidate AUC > baseline AUC, df = seeds - 1",
            threshold=cfg.threshold, alpha=cfg.alpha,
            per_trial=(f"average_precision: step-wise (no interpolation); eer: equal error rate, interpolated on the ROC, "
                       f"eer_threshold its score; f1 and the confusion counts at threshold {cfg.threshold}; brier: mean "
                       "squared error of the probability of fake against the 0/1 label (lower is better)"),
            val_threshold=("the EER threshold of the trial's own clean source val scores; *_at_val_threshold are test "
                           "metrics at it (a score >= threshold is called fake)"),
            per_seed=(f"each candidate vs the baseline of the same seed, paired on sample_id: DeLong's one-sided z-test "
                      f"(H1: candidate AUC > baseline AUC) and a {ci} paired stratified percentile bootstrap CI of ΔAUC, "
                      f"B={cfg.bootstrap_samples}; prob_positive is a bootstrap probability, not a p-value"),
            across_seeds=(f"p_holm: Holm-adjusted t-test p over the candidate arms of a domain; Wilcoxon signed-rank, "
                          f"one-sided, only with >= 6 seeds whose Δ is nonzero (a zero Δ is left out of the ranks and "
                          f"counted, as scipy's zero_method='wilcox' does); hierarchical bootstrap (seeds, then fakes "
                          f"and reals) {ci} CI of the mean ΔAUC, B={cfg.bootstrap_samples}"),
            robustness=(f"test rows with a perturbation; mean across seeds with a {ci} band, "
                        f"mean ± t_(1+level)/2,n-1 · sd / sqrt(n); accuracy at threshold {cfg.threshold}"),
            verdict=(answer.rule_text("AUC", cfg.alpha, ci) + " (p_value_less, p_holm_less: that other tail); rank: by "
                     "mean Δ per domain and baseline, largest first, ties sharing a rank"),
            probability_of_improvement=answer.PROBABILITY_OF_IMPROVEMENT,
        ),
        config=run_cfg,
        counts=_manifest_counts(run),
        arms=arms(data, read_plan_trials(run.scores)),
        trials=trials,
        aggregate=aggs,
        tests=tests,
        per_seed_tests=seed_tests,
        robustness=robust,
        metrics=metrics,
        warnings=_mixed_warnings(data) + warnings_for(trials, aggs, tests, seed_tests, cfg),
        verdict=verdict,
    )
