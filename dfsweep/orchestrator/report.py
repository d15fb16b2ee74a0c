"""The verdict, rebuilt from scores/ (and crops/ for thumbnails) alone: summary.json, metrics.csv, figures/, report.html
and a rich console report.

`build_summary` and the `*_data` helpers compute (through stats); `render`, plots, html_report and the writers only
draw. No Ray, TensorFlow or torch is imported here. Every AUC says its level (`auc_level` on every row, "image-level AUC",
"frame-level AUC" or "video-level AUC" in every table and figure): scores without a video_id are still images, scores
with one are video frames, and a video's score is the mean of its frames'. Levels differ by several points, so they
are computed, tested (Holm families included) and shown apart, never pooled.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
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
from scipy import stats as sps

from dfsweep import __version__, schema
from dfsweep.config import ReportConfig, config_from_dict
from dfsweep.orchestrator import stats
from dfsweep.orchestrator.collect import collect_scores
from dfsweep.storage import Location, parse

BASELINE_VARIANT = "v1"
# Diagnostic arms are shown beside the others but are not candidates in the tests against V1 (nor in Holm's family).
CUE_VARIANT = "cue"
CUE_IN_DOMAIN_AUC = 0.8
# "Beats V1 on the target" only counts where the cue itself is off chance: two near-0.5 AUCs say nothing.
CUE_TARGET_MIN_AUC = 0.6
# Headline numbers are AUCs on the test splits, clean (no perturbation), at each level the scores hold, in this order:
# still images (video_id ""), video frames, and videos (the mean of their frames' scores; only where there are frames).
AUC_LEVELS = ("image", "frame", "video")
LEVEL_MEANING = {"image": "one score per still image's face crop",
                 "frame": "one score per video frame's face crop",
                 "video": "a video's score is the mean of its frames' scores"}
# What one row of a level counts, in tables and figures ("sample" for images, as before levels existed).
LEVEL_UNIT = {"image": "sample", "frame": "frame", "video": "video"}
_LEVEL_ORDER = {lv: i for i, lv in enumerate(AUC_LEVELS)}
# Beside summary.json in the run directory (schema.RunDir does not name them): run.root / FIGURES_DIR, run.root / REPORT_HTML.
FIGURES_DIR = "figures"
REPORT_HTML = "report.html"
COMPARE_JSON = "compare.json"  # `dfsweep report --compare` writes it in the working directory unless --out says otherwise
CONTACT_SHEET_K = 16  # highest-confidence errors shown per arm
METRICS_COLUMNS = ("trial_id", "variant", "augmentation", "seed", "domain", "perturbation", "level", "auc_level", "n",
                   "n_real", "n_fake", "auc", "auc_ci_low", "auc_ci_high", "average_precision", "eer", "accuracy",
                   "precision", "recall", "f1", "tn", "fp", "fn", "tp")

# "Ranking fine, calibration off": the paper's baseline ranked target samples well yet called them all real at 0.5.
CALIBRATION_MIN_AUC = 0.7
CALIBRATION_MAX_ACCURACY = 0.55
DOMINANT_SHARE = 0.9  # one class "dominates the predictions" when at least this share of samples is called it
# A per-seed paired-bootstrap CI of ΔAUC wider than this that still contains 0 cannot tell the arms apart.
WIDE_DIFF_CI = 0.1
# Perturbation order in tables: clean first, then by kind as the schema lists them, each from mild to severe.
_PERTURBATION_ORDER = {p: i for i, p in enumerate(schema.PERTURBATIONS)}


def auc_label(level: str) -> str:
    """"image-level AUC", "frame-level AUC" or "video-level AUC": how every output names an AUC."""
    return f"{level}-level AUC"


def levels_of(summary: dict[str, Any]) -> list[str]:
    """The AUC levels a summary holds, primary first (a summary from before `auc_levels` has one, `auc_level`)."""
    return list(summary.get("auc_levels") or [summary["auc_level"]])


def _level_key(level: str, *key: Any) -> tuple:
    # Image-level bootstrap seeds keep the key they had before levels existed, so their CIs do not move.
    return key if level == "image" else (*key, level)


def _seed_for(cfg: ReportConfig, *key: Any) -> np.random.SeedSequence:
    """A bootstrap seed per (trial, domain) that does not depend on the order things are computed in."""
    digest = hashlib.sha256(repr(key).encode()).digest()
    return np.random.SeedSequence([cfg.seed, int.from_bytes(digest[:8], "big")])


def _arm(variant: str, augmentation: str) -> str:
    return f"{variant}/{augmentation}"


def _severity(perturbation: str, level: int) -> tuple[int, int]:
    # JPEG gets worse as quality falls; blur as the kernel grows.
    return _PERTURBATION_ORDER.get(perturbation, len(_PERTURBATION_ORDER)), -level if perturbation == "jpeg" else level


@dataclass(frozen=True)
class _Group:
    """One (trial, domain, split, perturbation, level, auc_level): its samples sorted by sample_id (for video level:
    its videos, sorted by video_id, which stands in for sample_id), so nothing hangs on row order."""

    sample_id: np.ndarray
    label: np.ndarray
    score: np.ndarray
    video_id: np.ndarray | None = None  # frame level only: the video of each frame


# (trial_id, domain, split, perturbation, level, auc_level)
GroupKey = tuple[str, str, str, str, int, str]


@dataclass(frozen=True)
class _Scores:
    groups: dict[GroupKey, _Group]
    trials: dict[str, dict[str, Any]]  # trial_id -> variant, augmentation, seed


_GROUP_KEYS = ("trial_id", "domain", "split", "perturbation", "level")


def _videos(frames: _Group, where: str) -> _Group:
    """Video level from frame level: one row per video_id, its score the mean of its frames' scores and its label the
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
    return _Group(vid, (n_fake > 0).astype(np.int8), np.bincount(inv, weights=frames.score) / n)


def _load(scores: pa.Table) -> _Scores:
    """Split the scores table into groups in one sort, instead of one filter per group: still images (video_id "")
    at image level, frames at frame level, and from the frames the videos at video level."""
    frame = (pc.not_equal(scores.column("video_id"), "") if "video_id" in scores.column_names
             else pa.array(np.zeros(scores.num_rows, bool)))
    t = scores.append_column("_frame", frame).sort_by([(k, "ascending") for k in (*_GROUP_KEYS, "_frame", "sample_id")])
    cols = {k: t.column(k).to_numpy(zero_copy_only=False)
            for k in (*_GROUP_KEYS, "_frame", "sample_id", "variant", "augmentation", "seed")}
    video_id = t.column("video_id").to_numpy(zero_copy_only=False) if cols["_frame"].any() else None
    label = t.column("label").to_numpy().astype(np.int8)
    score = t.column("score").to_numpy().astype(np.float64)
    n = t.num_rows
    change = np.zeros(n, bool)
    change[:1] = True
    for k in (*_GROUP_KEYS, "_frame"):
        change[1:] |= cols[k][1:] != cols[k][:-1]
    starts = np.flatnonzero(change)
    groups, trials = {}, {}
    for a, b in zip(starts, np.r_[starts[1:], n]):
        trial = str(cols["trial_id"][a])
        key = (trial, str(cols["domain"][a]), str(cols["split"][a]), str(cols["perturbation"][a]), int(cols["level"][a]))
        if cols["_frame"][a]:
            g = _Group(cols["sample_id"][a:b], label[a:b], score[a:b], video_id[a:b])
            groups[(*key, "frame")] = g
            groups[(*key, "video")] = _videos(g, f"trial {key[0]}, {key[1]} {key[2]}, {key[3]} {key[4]}")
        else:
            groups[(*key, "image")] = _Group(cols["sample_id"][a:b], label[a:b], score[a:b])
        trials.setdefault(trial, dict(variant=str(cols["variant"][a]), augmentation=str(cols["augmentation"][a]),
                                      seed=int(cols["seed"][a])))
    return _Scores(groups, trials)


def _mixed_warnings(data: _Scores) -> list[str]:
    """Where one trial x domain x split holds both still images and video frames, say that they are kept apart."""
    cells: dict[tuple[str, str], set[str]] = {}
    for trial, domain, split, pert, level, auc_level in data.groups:
        if auc_level == "image" and (trial, domain, split, pert, level, "frame") in data.groups:
            cells.setdefault((domain, split), set()).add(trial)
    return [f"{domain} {split}: {len(trials)} trial(s) hold both still images and video frames ({', '.join(sorted(trials))}): "
            f"{auc_label('image')} on the stills, {auc_label('frame')} and {auc_label('video')} on the frames, "
            "each apart, never pooled"
            for (domain, split), trials in sorted(cells.items())]


def _f1(cm: stats.Confusion) -> float:
    """2 TP / (2 TP + FP + FN): the harmonic mean of precision and recall, 0 when there is no true positive."""
    d = 2 * cm.tp + cm.fp + cm.fn
    return 2 * cm.tp / d if d else float("nan")


def _metrics(y: np.ndarray, s: np.ndarray, cfg: ReportConfig, seed_key: tuple) -> dict[str, Any]:
    ci = stats.bootstrap_auc_ci(y, s, n_resamples=cfg.bootstrap_samples, level=cfg.ci_level, seed=_seed_for(cfg, *seed_key))
    cm = stats.confusion(y, s, cfg.threshold)
    e = stats.eer(y, s)
    return dict(n=len(y), n_real=ci.n_neg, n_fake=ci.n_pos, auc=ci.auc, auc_ci_low=ci.low, auc_ci_high=ci.high,
                average_precision=stats.average_precision(y, s), eer=e.eer, eer_threshold=e.threshold,
                accuracy=cm.accuracy, precision=cm.precision, recall=cm.recall, f1=_f1(cm), threshold=cm.threshold,
                tn=cm.tn, fp=cm.fp, fn=cm.fn, tp=cm.tp, predicts_one_class=cm.predicted_one_class,
                predicted_fake_share=(cm.tp + cm.fp) / cm.n if cm.n else float("nan"))


def metric_rows(data: _Scores, cfg: ReportConfig) -> list[dict]:
    """One row per trial x domain x perturbation x level x AUC level of the test split (metrics.csv, and the
    robustness table)."""
    rows = []
    for (trial, domain, split, pert, level, auc_level), g in data.groups.items():
        if split != "test":
            continue
        # The clean rows keep the seed key they always had, so their CIs do not move.
        key = _level_key(auc_level, *((trial, domain) if pert == "none" else (trial, domain, pert, level)))
        meta = data.trials[trial]
        rows.append(dict(trial_id=trial, **meta, arm=_arm(meta["variant"], meta["augmentation"]), domain=domain,
                         perturbation=pert, level=level, auc_level=auc_level, **_metrics(g.label, g.score, cfg, key)))
    rows.sort(key=lambda r: (_LEVEL_ORDER[r["auc_level"]], r["domain"], r["variant"], r["augmentation"], r["seed"],
                             r["trial_id"], _severity(r["perturbation"], r["level"])))
    return rows


def _val_threshold(data: _Scores, trial: str, auc_level: str) -> tuple[float, str | None, int]:
    """The threshold chosen on the trial's own clean source val split at the same AUC level (its EER point), or nan
    and why not."""
    g = data.groups.get((trial, "source", "val", "none", 0, auc_level))
    if g is None:
        if any(k[:5] == (trial, "source", "val", "none", 0) for k in data.groups):
            return float("nan"), f"no {auc_level}-level source val rows for this trial", 0
        return float("nan"), "no source val rows for this trial", 0
    t = stats.eer(g.label, g.score).threshold
    if math.isnan(t):
        return t, "source val rows hold only one class", len(g.label)
    return t, None, len(g.label)


def per_trial(data: _Scores, metrics: list[dict]) -> list[dict]:
    """The clean test rows, plus metrics at the threshold chosen on source val (what a deployed model would use)."""
    rows = []
    for m in metrics:
        if m["perturbation"] != "none":
            continue
        r = {k: v for k, v in m.items() if k not in ("perturbation", "level")}
        g = data.groups[m["trial_id"], m["domain"], "test", "none", m["level"], m["auc_level"]]
        t, reason, n_val = _val_threshold(data, m["trial_id"], m["auc_level"])
        r.update(val_threshold=t, val_threshold_reason=reason, val_threshold_n=n_val)
        fields = ("accuracy", "precision", "recall", "f1", "tn", "fp", "fn", "tp")
        if reason is None:
            cm = stats.confusion(g.label, g.score, t)
            values = (cm.accuracy, cm.precision, cm.recall, _f1(cm), cm.tn, cm.fp, cm.fn, cm.tp)
        else:
            values = (None,) * len(fields)
        r.update({f"{f}_at_val_threshold": v for f, v in zip(fields, values)})
        r["sample_ids_hash"] = hashlib.sha256("\n".join(sorted(g.sample_id)).encode()).hexdigest()[:16]
        rows.append(r)
    return rows


def aggregate(trials: list[dict]) -> list[dict]:
    """Mean ± sd across seeds per AUC level, arm and domain."""
    out = []
    cells = sorted({(t["auc_level"], t["arm"], t["domain"]) for t in trials},
                   key=lambda k: (_LEVEL_ORDER[k[0]], k[2], k[1]))
    for auc_level, arm, domain in cells:
        sub = [t for t in trials if (t["auc_level"], t["arm"], t["domain"]) == (auc_level, arm, domain)]
        a, acc = stats.mean_sd([t["auc"] for t in sub]), stats.mean_sd([t["accuracy"] for t in sub])
        out.append(dict(arm=arm, variant=sub[0]["variant"], augmentation=sub[0]["augmentation"], domain=domain,
                        auc_level=auc_level, metric=auc_label(auc_level), n_seeds=a.n, seeds=sorted(t["seed"] for t in sub),
                        auc_mean=a.mean, auc_sd=a.sd, accuracy_mean=acc.mean, accuracy_sd=acc.sd, sd_ddof=a.ddof))
    return out


def _comparisons(trials: list[dict]) -> Iterator[tuple[str, str, str, str, dict[int, dict], dict[int, dict]]]:
    """(AUC level, domain, candidate arm, baseline arm, baseline trials by seed, candidate trials by seed), in a
    stable order; trials of one AUC level are only ever compared with trials of the same level."""
    for auc_level in sorted({t["auc_level"] for t in trials}, key=_LEVEL_ORDER.get):
        at = [t for t in trials if t["auc_level"] == auc_level]
        arms = sorted({t["arm"] for t in at if t["variant"] not in (BASELINE_VARIANT, CUE_VARIANT)})
        base_arms = sorted({t["arm"] for t in at if t["variant"] == BASELINE_VARIANT})
        for domain in sorted({t["domain"] for t in at}):
            for base in base_arms:
                b = {t["seed"]: t for t in at if t["arm"] == base and t["domain"] == domain}
                for arm in arms:
                    c = {t["seed"]: t for t in at if t["arm"] == arm and t["domain"] == domain}
                    yield auc_level, domain, arm, base, b, c


@dataclass(frozen=True)
class _Pair:
    """Candidate and baseline scores on the samples both were scored on, joined on sample_id."""

    y: np.ndarray
    s_candidate: np.ndarray
    s_baseline: np.ndarray
    n_only_candidate: int
    n_only_baseline: int
    n_label_disagree: int


def _pair(c: _Group, b: _Group) -> _Pair:
    _, ic, ib = np.intersect1d(c.sample_id, b.sample_id, assume_unique=True, return_indices=True)
    agree = c.label[ic] == b.label[ib]  # a sample's label is its own: a disagreement is a broken file, left out
    ic, ib = ic[agree], ib[agree]
    return _Pair(b.label[ib], c.score[ic], b.score[ib], len(c.sample_id) - len(agree), len(b.sample_id) - len(agree),
                 int((~agree).sum()))


def per_seed_tests(data: _Scores, trials: list[dict], cfg: ReportConfig) -> tuple[list[dict], dict[tuple, _Pair]]:
    """Each non-baseline arm against V1 of the same seed, per AUC level and domain, paired on sample_id (on video_id at
    video level): DeLong's one-sided test and the paired bootstrap CI of ΔAUC. Also returns the joined scores, which the
    across-seed bootstrap resamples."""
    out, pairs = [], {}
    for auc_level, domain, arm, base, b, c in _comparisons(trials):
        for seed in sorted(set(b) & set(c)):
            ct, bt = c[seed]["trial_id"], b[seed]["trial_id"]
            p = _pair(data.groups[ct, domain, "test", "none", 0, auc_level],
                      data.groups[bt, domain, "test", "none", 0, auc_level])
            pairs[auc_level, domain, arm, base, seed] = p
            dl = stats.delong_test(p.y, p.s_candidate, p.s_baseline)
            pb = stats.paired_bootstrap_auc_diff(p.y, p.s_candidate, p.s_baseline, n_resamples=cfg.bootstrap_samples,
                                                 level=cfg.ci_level,
                                                 seed=_seed_for(cfg, *_level_key(auc_level, "paired", ct, bt, domain)))
            out.append(dict(domain=domain, seed=seed, candidate=arm, baseline=base, candidate_trial=ct, baseline_trial=bt,
                            auc_level=auc_level, metric=auc_label(auc_level), n_paired=len(p.y), n_real=dl.n_neg, n_fake=dl.n_pos,
                            n_only_candidate=p.n_only_candidate, n_only_baseline=p.n_only_baseline,
                            n_label_disagree=p.n_label_disagree, auc_candidate=dl.auc_candidate,
                            auc_baseline=dl.auc_baseline, diff=dl.diff, delong_z=dl.z, delong_se=dl.se,
                            delong_p=dl.p_value, delong_alternative=dl.alternative, diff_ci_low=pb.low,
                            diff_ci_high=pb.high, diff_ci_level=pb.level, prob_positive=pb.prob_positive,
                            prob_positive_is="bootstrap probability (share of paired resamples with ΔAUC > 0), not a p-value"))
    return out, pairs


def across_seed_tests(trials: list[dict], pairs: dict[tuple, _Pair], cfg: ReportConfig) -> list[dict]:
    """Each non-baseline arm against V1, paired by seed, per AUC level and domain: one-tailed paired t-test (H1: arm >
    V1), its Holm adjustment over the candidate arms of the domain at that level (a family never mixes levels),
    Wilcoxon (enough seeds only) and the hierarchical bootstrap CI of the mean ΔAUC (seeds, then samples)."""
    out = []
    for auc_level, domain, arm, base, b, c in _comparisons(trials):
        seeds = sorted(set(b) & set(c))
        cand, basel = [c[s]["auc"] for s in seeds], [b[s]["auc"] for s in seeds]
        res = stats.paired_t_greater(cand, basel)
        w = stats.wilcoxon_greater(cand, basel)
        joined = [pairs[auc_level, domain, arm, base, s] for s in seeds]
        hb = stats.hierarchical_bootstrap_mean_diff([(p.y, p.s_candidate, p.s_baseline) for p in joined],
                                                    n_resamples=cfg.bootstrap_samples, level=cfg.ci_level,
                                                    seed=_seed_for(cfg, *_level_key(auc_level, "hierarchical", domain,
                                                                                    arm, base)))
        unpaired = [s for s in seeds if c[s]["sample_ids_hash"] != b[s]["sample_ids_hash"]]
        out.append(dict(domain=domain, candidate=arm, baseline=base, auc_level=auc_level, metric=auc_label(auc_level),
                        test="one-tailed paired t-test across seeds", alternative=res.alternative,
                        seeds=seeds, n_pairs=res.n_pairs, mean_diff=res.mean_diff, t=res.t, df=res.df,
                        p_value=res.p_value, samples_differ_for_seeds=unpaired,
                        wilcoxon_statistic=w.statistic, wilcoxon_p=w.p_value, wilcoxon_reason=w.reason,
                        hier_mean_diff=hb.mean_diff, hier_ci_low=hb.low, hier_ci_high=hb.high, hier_ci_level=hb.level))
    for family_key in {(t["auc_level"], t["domain"]) for t in out}:
        family = [t for t in out if (t["auc_level"], t["domain"]) == family_key]
        for t, p in zip(family, stats.holm([t["p_value"] for t in family])):
            t["p_holm"] = p
            t["holm_family"] = len(family)
    return out


def _mean_band(values: list[float], level: float) -> tuple[stats.MeanSD, float, float]:
    """Mean across seeds with a t band, mean ± t_{(1+level)/2, n-1} sd / sqrt(n); nan band below 2 seeds."""
    ms = stats.mean_sd(values)
    if ms.n < 2 or not (math.isfinite(ms.mean) and math.isfinite(ms.sd)):
        return ms, float("nan"), float("nan")
    half = float(sps.t.ppf((1 + level) / 2, ms.n - 1)) * ms.sd / math.sqrt(ms.n)
    return ms, ms.mean - half, ms.mean + half


def robustness(metrics: list[dict], cfg: ReportConfig) -> list[dict]:
    """AUC and accuracy against perturbation level, per AUC level, arm and domain, across seeds; empty when nothing is
    perturbed."""
    out = []
    cells: dict[tuple, list[dict]] = {}
    for m in metrics:
        if m["perturbation"] != "none":
            cells.setdefault((m["auc_level"], m["domain"], m["arm"], m["perturbation"], m["level"]), []).append(m)
    order = lambda kv: (_LEVEL_ORDER[kv[0][0]], *kv[0][1:3], _severity(*kv[0][3:]))  # noqa: E731
    for (auc_level, domain, arm, pert, level), sub in sorted(cells.items(), key=order):
        a, a_low, a_high = _mean_band([m["auc"] for m in sub], cfg.ci_level)
        acc, acc_low, acc_high = _mean_band([m["accuracy"] for m in sub], cfg.ci_level)
        out.append(dict(domain=domain, arm=arm, variant=sub[0]["variant"], augmentation=sub[0]["augmentation"],
                        perturbation=pert, level=level, auc_level=auc_level, metric=auc_label(auc_level), n_seeds=a.n, seeds=sorted(m["seed"] for m in sub),
                        auc_mean=a.mean, auc_sd=a.sd, auc_band_low=a_low, auc_band_high=a_high,
                        accuracy_mean=acc.mean, accuracy_sd=acc.sd, accuracy_band_low=acc_low,
                        accuracy_band_high=acc_high, threshold=cfg.threshold, band_level=cfg.ci_level, sd_ddof=a.ddof))
    return out


def warnings_for(trials: list[dict], aggregates: list[dict], tests: list[dict], seed_tests: list[dict],
                 cfg: ReportConfig) -> list[str]:
    """Validity warnings; each one about an AUC names its level (image-level warnings read as before levels existed)."""
    warns = []
    for t in trials:
        if t["predicts_one_class"]:
            called = "fake" if t["tp"] + t["fp"] else "real"
            warns.append(f"{t['trial_id']} calls every {t['domain']} test {LEVEL_UNIT[t['auc_level']]} {called} at "
                         f"threshold {t['threshold']}: its accuracy says nothing about ranking "
                         f"({auc_label(t['auc_level'])} {t['auc']:.3f})")
    for t in trials:
        share = t["predicted_fake_share"]
        dominant = max(share, 1 - share) >= DOMINANT_SHARE
        if t["auc"] >= CALIBRATION_MIN_AUC and t["accuracy"] <= CALIBRATION_MAX_ACCURACY and dominant:
            called, frac = ("fake", share) if share >= 0.5 else ("real", 1 - share)
            at_val = (f"no source-val threshold ({t['val_threshold_reason']})" if t["val_threshold_reason"] else
                      f"at the source-val threshold {t['val_threshold']:.3f} accuracy is {t['accuracy_at_val_threshold']:.3f}")
            warns.append(f"{t['trial_id']} on {t['domain']}: ranking fine, calibration off — {auc_label(t['auc_level'])} "
                         f"{t['auc']:.3f} but accuracy {t['accuracy']:.3f} at threshold {t['threshold']}, "
                         f"{frac:.0%} of {LEVEL_UNIT[t['auc_level']]}s called {called}; {at_val}")
    warns += _shortcut_warnings(aggregates)
    no_val = sorted({t["trial_id"] for t in trials if t["val_threshold_reason"] is not None})
    if no_val:
        warns.append(f"no source-val threshold for {', '.join(no_val)}: their *_at_val_threshold fields are empty")
    few = {}  # seeds do not depend on the level: one warning per arm and domain
    for a in aggregates:
        if a["n_seeds"] < 3:
            few.setdefault((a["arm"], a["domain"]), a["n_seeds"])
    for (arm, domain), n in few.items():
        warns.append(f"{arm} on {domain} has {n} seed(s): fewer than 3, the across-seed test is weak or undefined")
    for t in tests:
        if t["samples_differ_for_seeds"]:
            unit = LEVEL_UNIT[t["auc_level"]]
            same = [s for s in seed_tests if s["seed"] in t["samples_differ_for_seeds"]
                    and (s["auc_level"], s["domain"], s["candidate"], s["baseline"])
                    == (t["auc_level"], t["domain"], t["candidate"], t["baseline"])]
            detail = "; ".join(f"seed {s['seed']}: {s['n_paired']} paired, {s['n_only_candidate']} only in "
                               f"{t['candidate']}, {s['n_only_baseline']} only in {t['baseline']}" for s in same)
            level = "" if t["auc_level"] == "image" else f" of {t['metric']}"
            warns.append(f"{t['candidate']} and {t['baseline']} were scored on different {unit}s for seeds "
                         f"{t['samples_differ_for_seeds']} on {t['domain']}: paired tests{level} use the common "
                         f"{unit}s only ({detail})")
    for s in seed_tests:
        if s["n_label_disagree"]:
            level = "" if s["auc_level"] == "image" else f" of {s['metric']}"
            warns.append(f"{s['candidate_trial']} and {s['baseline_trial']} on {s['domain']} disagree on the label of "
                         f"{s['n_label_disagree']} {LEVEL_UNIT[s['auc_level']]}(s): left out of the paired tests{level}")
    for t in trials:
        if t["auc_ci_high"] - t["auc_ci_low"] > 0.2:
            warns.append(f"{t['trial_id']} on {t['domain']}: {auc_label(t['auc_level'])} CI [{t['auc_ci_low']:.3f}, "
                         f"{t['auc_ci_high']:.3f}] is wider than 0.2: too few test {LEVEL_UNIT[t['auc_level']]}s to "
                         "conclude much")
    cells = sorted({(s["auc_level"], s["domain"]) for s in seed_tests}, key=lambda k: (_LEVEL_ORDER[k[0]], k[1]))
    for auc_level, domain in cells:
        sub = [s for s in seed_tests if (s["auc_level"], s["domain"]) == (auc_level, domain)]
        wide = [s for s in sub
                if s["diff_ci_low"] < 0 < s["diff_ci_high"] and s["diff_ci_high"] - s["diff_ci_low"] > WIDE_DIFF_CI]
        if wide:
            which = ", ".join(f"{s['candidate']} vs {s['baseline']} seed {s['seed']}" for s in wide)
            warns.append(f"{domain}: the paired-bootstrap {cfg.ci_level:.0%} CI of Δ {auc_label(auc_level)} contains 0 "
                         f"and is wider than {WIDE_DIFF_CI} for {len(wide)} of {len(sub)} per-seed comparisons ({which}): "
                         "CIs too wide to conclude per seed")
    return warns


def _shortcut_warnings(aggregates: list[dict]) -> list[str]:
    """The data carry a shortcut when the trivial `cue` is strong in-domain or beats V1 on the target (per AUC level)."""
    out = []
    for auc_level in sorted({a["auc_level"] for a in aggregates}, key=_LEVEL_ORDER.get):
        label = auc_label(auc_level)
        cue = {a["domain"]: a for a in aggregates if a["variant"] == CUE_VARIANT and a["auc_level"] == auc_level}
        v1 = {a["domain"]: a for a in aggregates if a["variant"] == BASELINE_VARIANT and a["auc_level"] == auc_level}
        if "source" in cue and cue["source"]["auc_mean"] >= CUE_IN_DOMAIN_AUC:
            out.append(f"shortcut: the trivial cue (sharpness/intensity histograms + logistic regression) reaches "
                       f"{label} {cue['source']['auc_mean']:.3f} on the source test: the fakes carry a cue a detector "
                       "can learn instead of the manipulation")
        if ("target" in cue and "target" in v1 and cue["target"]["auc_mean"] > v1["target"]["auc_mean"]
                and cue["target"]["auc_mean"] >= CUE_TARGET_MIN_AUC):
            out.append(f"shortcut: the trivial cue beats V1 on the target ({label} {cue['target']['auc_mean']:.3f} vs "
                       f"{v1['target']['auc_mean']:.3f}): the target's fakes differ by simple image statistics")
    return out


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
def _timed(timings: dict[str, float] | None, step: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    if timings is not None:
        timings[step] = timings.get(step, 0.0) + time.perf_counter() - start


def build_summary(run_dir: str | Path, cfg: ReportConfig | None = None, *,
                  timings: dict[str, float] | None = None, scores: pa.Table | None = None) -> dict[str, Any]:
    """Everything the report shows, as plain data; the same files give the same summary.

    `timings`, when given, receives the seconds each step took (kept out of the summary, which must not vary).
    `scores`, when given, is the run's collect_scores table (so a caller that needs it too reads it once).
    """
    run = schema.RunDir(run_dir)
    run_cfg = _run_config(run)
    if cfg is None:
        cfg = config_from_dict({"report": run_cfg["report"]} if "report" in run_cfg else {}).report
    with _timed(timings, "load"):
        data = _load(collect_scores(run.scores) if scores is None else scores)
    with _timed(timings, "per_trial"):
        metrics = metric_rows(data, cfg)
        trials = per_trial(data, metrics)
    with _timed(timings, "per_seed_tests"):
        seed_tests, pairs = per_seed_tests(data, trials, cfg)
    with _timed(timings, "across_seed"):
        aggs = aggregate(trials)
        tests = across_seed_tests(trials, pairs, cfg)
    with _timed(timings, "robustness"):
        robust = robustness(metrics, cfg)
    ci = f"{cfg.ci_level:.0%}"
    levels = _levels_present({m["auc_level"] for m in metrics} or {k[-1] for k in data.groups})
    return dict(
        dfsweep_version=__version__,
        run_dir=str(run.root),
        auc_level=levels[0],  # the primary level (kept from when there was only one)
        auc_levels=levels,
        statistics=dict(
            auc_levels={lv: LEVEL_MEANING[lv] for lv in levels},
            levels_apart=("every row names its auc_level; levels are computed, tested and shown apart, never pooled: "
                          "Holm families are per domain and level, video-level pairs join on video_id"),
            ci=f"{ci} stratified percentile bootstrap, B={cfg.bootstrap_samples}, seed={cfg.seed}",
            sd="sample standard deviation across seeds (ddof=1)",
            test="one-tailed paired t-test across seeds, H1: candidate AUC > V1 AUC, df = seeds - 1",
            threshold=cfg.threshold, alpha=cfg.alpha,
            per_trial=(f"average_precision: step-wise (no interpolation); eer: equal error rate, interpolated on the ROC, "
                       f"eer_threshold its score; f1 and the confusion counts at threshold {cfg.threshold}"),
            val_threshold=("the EER threshold of the trial's own clean source val scores; *_at_val_threshold are test "
                           "metrics at it (a score >= threshold is called fake)"),
            per_seed=(f"each candidate vs V1 of the same seed, paired on sample_id: DeLong's one-sided z-test "
                      f"(H1: candidate AUC > V1 AUC) and a {ci} paired stratified percentile bootstrap CI of ΔAUC, "
                      f"B={cfg.bootstrap_samples}; prob_positive is a bootstrap probability, not a p-value"),
            across_seeds=(f"p_holm: Holm-adjusted t-test p over the candidate arms of a domain; Wilcoxon signed-rank, "
                          f"one-sided, only with >= 6 seeds; hierarchical bootstrap (seeds, then fakes and reals) "
                          f"{ci} CI of the mean ΔAUC, B={cfg.bootstrap_samples}"),
            robustness=(f"test rows with a perturbation; mean across seeds with a {ci} band, "
                        f"mean ± t_(1+level)/2,n-1 · sd / sqrt(n); accuracy at threshold {cfg.threshold}"),
        ),
        config=run_cfg,
        counts=_manifest_counts(run),
        trials=trials,
        aggregate=aggs,
        tests=tests,
        per_seed_tests=seed_tests,
        robustness=robust,
        metrics=metrics,
        warnings=_mixed_warnings(data) + warnings_for(trials, aggs, tests, seed_tests, cfg),
    )


def _levels_present(levels: set[str]) -> list[str]:
    """The levels in AUC_LEVELS order; an empty run counts as image-level, as every run did before levels existed."""
    return sorted(levels, key=_LEVEL_ORDER.get) or ["image"]

# Data behind the figures (plots.py draws these and computes nothing of its own).


def roc_curve(y, s) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) with every distinct score a threshold, from (0, 0) at threshold inf to (1, 1); a score
    >= threshold is called fake. ValueError when a class is absent: the curve is undefined then."""
    y, s = stats._check_binary(y, s)
    if y.all() or not y.any():
        raise ValueError("a ROC curve needs both real and fake samples")
    return stats._roc(y, s)


def _clean_test_groups(scores: pa.Table, levels: tuple[str, ...] = AUC_LEVELS
                       ) -> list[tuple[dict[str, Any], str, str, _Group]]:
    """(trial meta with its arm, domain, AUC level, group) of every clean test group at the given levels, ordered by
    level, domain, arm, seed, trial."""
    clean = scores.filter(pc.and_(pc.equal(scores.column("split"), "test"),
                                  pc.equal(scores.column("perturbation"), "none")))
    data = _load(clean)
    out = [(dict(data.trials[trial], trial_id=trial, arm=_arm(data.trials[trial]["variant"],
                                                                data.trials[trial]["augmentation"])), domain, auc_level, g)
           for (trial, domain, _, _, _, auc_level), g in data.groups.items() if auc_level in levels]
    out.sort(key=lambda x: (_LEVEL_ORDER[x[2]], x[1], x[0]["arm"], x[0]["seed"], x[0]["trial_id"]))
    return out


def roc_data(scores: pa.Table) -> list[dict[str, Any]]:
    """One ROC per trial, domain and AUC level (test split, clean), with its AUC and level; groups lacking a class are
    left out."""
    out = []
    for meta, domain, auc_level, g in _clean_test_groups(scores):
        if g.label.all() or not g.label.any():
            continue
        fpr, tpr, thr = roc_curve(g.label, g.score)
        out.append(dict(meta, domain=domain, auc_level=auc_level, fpr=fpr, tpr=tpr, thresholds=thr,
                        auc=stats.auc(g.label, g.score), metric=auc_label(auc_level)))
    return out


def score_distributions(scores: pa.Table) -> list[dict[str, Any]]:
    """Scores of real and of fake test samples (clean) per AUC level, arm and domain, pooled over the arm's seeds (at
    video level, the videos' mean scores)."""
    cells: dict[tuple[str, str, str], list[tuple[dict, _Group]]] = {}
    for meta, domain, auc_level, g in _clean_test_groups(scores):
        cells.setdefault((auc_level, meta["arm"], domain), []).append((meta, g))
    out = []
    for (auc_level, arm, domain), sub in sorted(cells.items(), key=lambda kv: (_LEVEL_ORDER[kv[0][0]], kv[0][2], kv[0][1])):
        score = np.concatenate([g.score for _, g in sub])
        label = np.concatenate([g.label for _, g in sub])
        out.append(dict(arm=arm, domain=domain, auc_level=auc_level, seeds=sorted(m["seed"] for m, _ in sub),
                        real=np.sort(score[label == 0]), fake=np.sort(score[label == 1])))
    return out


def confusion_data(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Confusion counts at the report threshold per AUC level, arm and domain, summed over the arm's seeds (test split,
    clean)."""
    cells: dict[tuple[str, str, str], list[dict]] = {}
    for t in summary["trials"]:
        cells.setdefault((t["auc_level"], t["arm"], t["domain"]), []).append(t)
    return [dict(arm=arm, domain=domain, auc_level=auc_level, threshold=summary["statistics"]["threshold"],
                 seeds=sorted(t["seed"] for t in sub), **{k: int(sum(t[k] for t in sub)) for k in ("tn", "fp", "fn", "tp")})
            for (auc_level, arm, domain), sub in sorted(cells.items(),
                                                         key=lambda kv: (_LEVEL_ORDER[kv[0][0]], kv[0][2], kv[0][1]))]


def arms_of(scores: pa.Table) -> list[str]:
    """The run's arms (variant/augmentation), sorted."""
    pairs = scores.select(["variant", "augmentation"]).group_by(["variant", "augmentation"]).aggregate([])
    return sorted(_arm(v, a) for v, a in zip(pairs.column("variant").to_pylist(), pairs.column("augmentation").to_pylist()))


def top_errors(scores: pa.Table, arm: str, *, k: int = CONTACT_SHEET_K, threshold: float = 0.5) -> list[dict[str, Any]]:
    """The k misclassified test samples (clean; a score >= threshold is called fake) with the largest |score - label|,
    pooled over the trials of one arm. A sample wrong in several seeds counts once, with its worst error (ties: the
    first trial_id); ties between samples go to the smaller sample_id, so the list does not depend on row order.
    Samples are images and frames (each has a crop to show), not videos."""
    worst: dict[str, dict[str, Any]] = {}
    for meta, domain, _, g in _clean_test_groups(scores, ("image", "frame")):
        if meta["arm"] != arm:
            continue
        wrong = np.flatnonzero((g.score >= threshold) != (g.label == 1))
        err = np.abs(g.score - g.label)
        for i in wrong:
            sid, e = str(g.sample_id[i]), float(err[i])
            cur = worst.get(sid)
            if cur is None or (-e, meta["trial_id"]) < (-cur["error"], cur["trial_id"]):
                worst[sid] = dict(sample_id=sid, trial_id=meta["trial_id"], seed=meta["seed"], domain=domain,
                                  label=int(g.label[i]), score=float(g.score[i]), error=e)
    return sorted(worst.values(), key=lambda r: (-r["error"], r["sample_id"]))[:k]


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


def write_summary(summary: dict[str, Any], path: str | Path | Location) -> None:
    parse(path).write_text(json.dumps(_jsonable(summary), indent=2, sort_keys=True, allow_nan=False) + "\n")


def write_metrics_csv(summary: dict[str, Any], path: str | Path | Location) -> None:
    """summary["metrics"] as CSV, one row per trial x domain x perturbation x level; empty cells for None."""
    f = io.StringIO(newline="")
    w = csv.DictWriter(f, fieldnames=METRICS_COLUMNS, extrasaction="ignore")
    w.writeheader()
    for row in _jsonable(summary["metrics"]):
        w.writerow({k: "" if row.get(k) is None else row[k] for k in METRICS_COLUMNS})
    parse(path).write_text(f.getvalue())


def verdict_text(p_holm: float | None, alpha: float) -> str:
    """The verdict line of an across-seed test, from its Holm-adjusted p (the console and report.html say the same)."""
    if p_holm is None or np.isnan(p_holm):
        return "undefined (too few seeds or zero variance)"
    return f"better at α={alpha}" if p_holm < alpha else f"not shown at α={alpha}"


def _f(x: float | None, nd: int = 3) -> str:
    return "—" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{nd}f}"


def _ci(low: float | None, high: float | None, nd: int = 3) -> str:
    return f"[{_f(low, nd)}, {_f(high, nd)}]"


def _levels_sentence(levels: list[str]) -> str:
    """How the console and report.html say which AUCs a run holds."""
    if levels == ["image"]:
        return "AUCs are image-level"
    return ("AUCs are " + " and ".join(f"{lv}-level ({LEVEL_MEANING[lv]})" for lv in levels)
            + ", each in its own rows, never pooled")


_N_HEADER = {"image": "n (real/fake)", "frame": "frames (real/fake)", "video": "videos (real/fake)"}


def render(summary: dict[str, Any], console=None) -> None:
    """Draw the summary as rich tables, one per AUC level where a run has several; computes nothing."""
    from rich.console import Console
    from rich.panel import Panel
    from rich.table import Table

    console = console or Console()
    cfg = summary.get("config", {})
    tr, sw = cfg.get("train", {}), cfg.get("sweep", {})
    counts = summary.get("counts", {})
    st = summary["statistics"]
    levels = levels_of(summary)
    thr = st["threshold"]
    head = [f"run: {summary['run_dir']}   dfsweep {summary['dfsweep_version']}",
            f"model: Xception {tr.get('input_size_px', '?')} px, pixel range {tr.get('pixel_range', '?')}, weights "
            f"{Path(str(tr.get('weights', '?'))).name}; head {tr.get('head_epochs', '?')} epochs @ {tr.get('head_lr', '?')}, "
            f"V2 fine-tune {tr.get('finetune_epochs', '?')} epochs @ {tr.get('finetune_lr', '?')}",
            f"seeds: {sw.get('seeds', '?')}   {_levels_sentence(levels)}, on test splits, clean unless a "
            "perturbation is named",
            f"statistics: {st['ci']}; {st['sd']}"]
    if counts:
        head.append(f"inputs: {counts['inputs']} files; by status: "
                    + ", ".join(f"{k} {v}" for k, v in sorted(counts['by_status'].items())))
        head.append("crops: " + ", ".join(f"{k} {v}" for k, v in counts["crops_by_domain_split_label"].items()))
    console.print(Panel("\n".join(head), title="dfsweep report", expand=False))
    ci_name = f"{st['ci'].split()[0]} CI"
    alpha = st["alpha"]

    def at(rows: list[dict], level: str) -> list[dict]:
        return [r for r in rows if r["auc_level"] == level]

    def titled(title: str, level: str) -> str:
        return title if len(levels) == 1 else f"{title} — {auc_label(level)}"

    for level in levels:
        auc = auc_label(level)
        t = Table(title=titled("Per trial (test split, clean)", level), show_lines=False)
        for col in ("trial", "domain", _N_HEADER[level], auc, ci_name, "AP", "EER", f"acc@{thr}", f"F1@{thr}",
                    f"TN FP FN TP @{thr}"):
            t.add_column(col, justify="right" if col not in ("trial", "domain") else "left")
        for r in at(summary["trials"], level):
            t.add_row(r["trial_id"], r["domain"], f"{r['n']} ({r['n_real']}/{r['n_fake']})", _f(r["auc"]),
                      _ci(r["auc_ci_low"], r["auc_ci_high"]), _f(r["average_precision"]), _f(r["eer"]),
                      _f(r["accuracy"]), _f(r["f1"]), f"{r['tn']} {r['fp']} {r['fn']} {r['tp']}")
        console.print(t)

    for level in levels:
        v = Table(title=titled("Per trial at the threshold chosen on source val (its EER point), test split, clean", level))
        for col in ("trial", "domain", "val threshold", "accuracy", "precision", "recall", "F1", "TN FP FN TP"):
            v.add_column(col, justify="right" if col not in ("trial", "domain") else "left")
        for r in at(summary["trials"], level):
            if r["val_threshold_reason"] is not None:
                v.add_row(r["trial_id"], r["domain"], f"— ({r['val_threshold_reason']})", "—", "—", "—", "—", "—")
                continue
            v.add_row(r["trial_id"], r["domain"], _f(r["val_threshold"]), _f(r["accuracy_at_val_threshold"]),
                      _f(r["precision_at_val_threshold"]), _f(r["recall_at_val_threshold"]), _f(r["f1_at_val_threshold"]),
                      " ".join(str(r[f"{k}_at_val_threshold"]) for k in ("tn", "fp", "fn", "tp")))
        console.print(v)

    for level in levels:
        a = Table(title=titled("Across seeds: mean ± sd (ddof=1)", level))
        for col in ("variant/augmentation", "domain", "seeds", auc_label(level), "accuracy"):
            a.add_column(col)
        for r in at(summary["aggregate"], level):
            a.add_row(r["arm"], r["domain"], str(r["n_seeds"]), f"{_f(r['auc_mean'])} ± {_f(r['auc_sd'])}",
                      f"{_f(r['accuracy_mean'])} ± {_f(r['accuracy_sd'])}")
        console.print(a)

    for level in levels:
        rows = at(summary["per_seed_tests"], level)
        if not rows:
            continue
        join = "video_id" if level == "video" else "sample_id"
        p = Table(title=f"Per seed: candidate vs V1 on the same {LEVEL_UNIT[level]}s (joined on {join}), "
                        f"Δ {auc_label(level)}",
                  caption="P_boot(Δ>0): share of paired bootstrap resamples with Δ > 0 — a bootstrap probability, not a p-value")
        for col in ("domain", "seed", "candidate vs baseline", "paired n", "Δ", "DeLong z", "DeLong p (one-sided)",
                    f"paired bootstrap {ci_name}", "P_boot(Δ>0)"):
            p.add_column(col)
        for r in rows:
            p.add_row(r["domain"], str(r["seed"]), f"{r['candidate']} vs {r['baseline']}", str(r["n_paired"]),
                      _f(r["diff"], 4), _f(r["delong_z"], 2), _f(r["delong_p"], 4),
                      _ci(r["diff_ci_low"], r["diff_ci_high"], 4), _f(r["prob_positive"]))
        console.print(p)

    for level in levels:
        s = Table(title=f"Is the candidate better than V1? one-tailed paired t-test across seeds (H1: Δ {auc_label(level)} > 0)",
                  caption="p Holm: adjusted over the candidate arms of a domain" + ("" if len(levels) == 1 else
                                                                                     " at this level")
                          + "; the verdict uses it")
        for col in ("domain", "candidate vs baseline", "pairs", "mean Δ", "t", "df", "p (one-sided)", "p Holm",
                    "verdict (Holm)"):
            s.add_column(col)
        for r in at(summary["tests"], level):
            ph = r.get("p_holm")
            s.add_row(r["domain"], f"{r['candidate']} vs {r['baseline']}", str(r["n_pairs"]), _f(r["mean_diff"], 4),
                      _f(r["t"]), str(r["df"]), _f(r["p_value"], 4), _f(ph, 4), verdict_text(ph, alpha))
        console.print(s)

    for level in levels:
        h = Table(title=f"Across seeds, two more views of the mean Δ {auc_label(level)}")
        for col in ("domain", "candidate vs baseline", "Wilcoxon W", "Wilcoxon p (one-sided)",
                    f"hierarchical bootstrap {ci_name} (seeds, then {LEVEL_UNIT[level]}s)"):
            h.add_column(col)
        for r in at(summary["tests"], level):
            wp = _f(r["wilcoxon_p"], 4) if r["wilcoxon_reason"] is None else f"not run: {r['wilcoxon_reason']}"
            h.add_row(r["domain"], f"{r['candidate']} vs {r['baseline']}", _f(r["wilcoxon_statistic"], 1), wp,
                      f"{_f(r['hier_mean_diff'], 4)} {_ci(r['hier_ci_low'], r['hier_ci_high'], 4)}")
        console.print(h)

    for level in levels:
        rows = at(summary["robustness"], level)
        if not rows:
            continue
        auc = auc_label(level)
        rb = Table(title=f"Robustness: {auc} and accuracy@{thr} against perturbation, mean across seeds "
                         f"[{st['ci'].split()[0]} t band]")
        for col in ("domain", "variant/augmentation", "perturbation", "level", "seeds", auc, f"accuracy@{thr}"):
            rb.add_column(col)
        for r in rows:
            rb.add_row(r["domain"], r["arm"], r["perturbation"], str(r["level"]), str(r["n_seeds"]),
                       f"{_f(r['auc_mean'])} {_ci(r['auc_band_low'], r['auc_band_high'])}",
                       f"{_f(r['accuracy_mean'])} {_ci(r['accuracy_band_low'], r['accuracy_band_high'])}")
        console.print(rb)

    if summary["warnings"]:
        console.print(Panel("\n".join(f"• {w}" for w in summary["warnings"]), title="validity warnings",
                            border_style="yellow", expand=False))


def report(run_dir: str | Path, cfg: ReportConfig | None = None, console=None, *,
           timings: dict[str, float] | None = None) -> dict[str, Any]:
    """Build, write (summary.json, metrics.csv, figures/*.png, report.html) and render the report of one run directory."""
    # Imported here: matplotlib is only needed once there is something to draw.
    from dfsweep.orchestrator.html_report import write_html
    from dfsweep.orchestrator.plots import make_figures

    run = schema.RunDir(run_dir)
    with _timed(timings, "read"):
        scores = collect_scores(run.scores)
    summary = build_summary(run_dir, cfg, timings=timings, scores=scores)
    write_summary(summary, run.summary)
    write_metrics_csv(summary, run.metrics_csv)
    with _timed(timings, "figures"):
        figures = make_figures(run.root, summary, scores)
    with _timed(timings, "html"):
        write_html(summary, figures, run.root / REPORT_HTML)
    render(summary, console)
    return summary


# Two runs side by side: `dfsweep report RUN_B --compare RUN_A`.


def _arm_aucs(run: schema.RunDir) -> tuple[dict[tuple[str, str, str], dict[int, float]], dict[tuple[str, str], str]]:
    """AUC per (AUC level, arm, domain) and seed on the clean test split, and a hash of each (level, domain)'s test
    sample_ids (video_ids at video level)."""
    cells: dict[tuple[str, str, str], dict[int, float]] = {}
    ids: dict[tuple[str, str], set[str]] = {}
    for meta, domain, auc_level, g in _clean_test_groups(collect_scores(run.scores)):
        cells.setdefault((auc_level, meta["arm"], domain), {})[meta["seed"]] = stats.auc(g.label, g.score)
        ids.setdefault((auc_level, domain), set()).update(g.sample_id.tolist())
    return cells, {k: hashlib.sha256("\n".join(sorted(v)).encode()).hexdigest()[:16] for k, v in ids.items()}


def compare_runs(a: str | Path, b: str | Path) -> dict[str, Any]:
    """Mean ± sd (ddof=1) of the AUC across seeds per AUC level, arm and domain in run A and in run B, and B - A; a
    level is only ever compared with the same level.

    Computed from each run's scores/ (not its summary.json, which may be stale). The difference is of means, not a
    test: the runs need not share seeds or samples, and a warning says when their test samples differ.
    """
    run_a, run_b = schema.RunDir(a), schema.RunDir(b)
    (cells_a, ids_a), (cells_b, ids_b) = _arm_aucs(run_a), _arm_aucs(run_b)
    levels = _levels_present({k[0] for k in (*cells_a, *cells_b)})
    several = len(levels) > 1
    rows, warns = [], []
    for auc_level, arm, domain in sorted(set(cells_a) | set(cells_b), key=lambda k: (_LEVEL_ORDER[k[0]], k[2], k[1])):
        row: dict[str, Any] = dict(arm=arm, domain=domain, auc_level=auc_level, metric=auc_label(auc_level))
        for side, cells in (("a", cells_a), ("b", cells_b)):
            by_seed = cells.get((auc_level, arm, domain), {})
            ms = stats.mean_sd([by_seed[s] for s in sorted(by_seed)])
            row.update({f"{side}_auc_mean": ms.mean if ms.n else None, f"{side}_auc_sd": ms.sd if ms.n else None,
                        f"{side}_n_seeds": ms.n, f"{side}_seeds": sorted(by_seed)})
        both = row["a_n_seeds"] and row["b_n_seeds"]
        row["diff"] = row["b_auc_mean"] - row["a_auc_mean"] if both else None
        if not both:
            warns.append(f"{arm} on {domain} is only in run {'A' if row['a_n_seeds'] else 'B'}"
                         + (f" ({auc_label(auc_level)})" if several else ""))
        rows.append(row)
    for key in sorted(set(ids_a) & set(ids_b), key=lambda k: (_LEVEL_ORDER[k[0]], k[1])):
        if ids_a[key] != ids_b[key]:
            unit = LEVEL_UNIT[key[0]]
            warns.append(f"{key[1]}: the runs were scored on different test {unit}s"
                         + (f" ({auc_label(key[0])})" if several else "") + ": the difference mixes models and data")
    return dict(metric=auc_label(levels[0]), auc_level=levels[0], auc_levels=levels, a=str(run_a.root),
                b=str(run_b.root), split="test, clean",
                difference="mean AUC of B - mean AUC of A at the same level (a difference of means across seeds, not a test)",
                sd="sample standard deviation across seeds (ddof=1)", rows=rows, warnings=warns)


def render_comparison(cmp: dict[str, Any], console=None) -> None:
    """Draw compare_runs' result as one rich table per AUC level; computes nothing."""
    from rich.console import Console
    from rich.panel import Panel
    from rich.table import Table

    console = console or Console()

    def cell(r: dict, side: str) -> str:
        if not r[f"{side}_n_seeds"]:
            return "—"
        return f"{_f(r[f'{side}_auc_mean'])} ± {_f(r[f'{side}_auc_sd'])} ({r[f'{side}_n_seeds']} seeds)"

    for level in cmp.get("auc_levels") or [cmp["auc_level"]]:
        t = Table(title=f"{auc_label(level)}, {cmp['split']}: mean ± sd (ddof=1) across seeds",
                  caption=f"A = {cmp['a']}\nB = {cmp['b']}")
        for col in ("variant/augmentation", "domain", "A", "B", "Δ (B − A)"):
            t.add_column(col, justify="left" if col in ("variant/augmentation", "domain") else "right")
        for r in cmp["rows"]:
            if r.get("auc_level", level) != level:
                continue
            d = r["diff"]
            t.add_row(r["arm"], r["domain"], cell(r, "a"), cell(r, "b"), "—" if d is None else f"{d:+.3f}")
        console.print(t)
    if cmp["warnings"]:
        console.print(Panel("\n".join(f"• {w}" for w in cmp["warnings"]), title="comparison warnings",
                            border_style="yellow", expand=False))


def compare(a: str | Path, b: str | Path, out: str | Path, console=None) -> dict[str, Any]:
    """compare_runs(a, b), written to `out` (JSON) and rendered."""
    cmp = compare_runs(a, b)
    write_summary(cmp, out)
    render_comparison(cmp, console)
    return cmp
