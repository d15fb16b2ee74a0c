"""The figures' data, computed once from the summary's grouping of the scores: ROC curves, score distributions,
confusion counts and the most confident errors (plots.py draws these and computes nothing of its own)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from dfsweep import perturbations
from dfsweep.verdict import stats
from dfsweep.verdict.labels import GRAIN_ORDER, GRAINS, cell_order
from dfsweep.verdict.summary import Group, GroupedScores

CONTACT_SHEET_K = 16  # highest-confidence errors shown per arm


@dataclass(frozen=True)
class CleanGroup:
    """One clean test group of one trial and domain at one grain."""

    trial_id: str
    arm: str
    seed: int
    domain: str
    grain: str
    group: Group


def clean_test_groups(data: GroupedScores, grains: tuple[str, ...] = GRAINS) -> list[CleanGroup]:
    """Every clean test group at the given grains, ordered by grain, domain, arm, seed, trial."""
    out = [CleanGroup(trial, data.trials[trial]["arm"],
                     data.trials[trial]["seed"], domain, grain, g)
           for (trial, domain, split, pert, _, grain), g in data.groups.items()
           if split == "test" and pert == perturbations.NONE and grain in grains]
    out.sort(key=lambda x: (GRAIN_ORDER[x.grain], x.domain, x.arm, x.seed, x.trial_id))
    return out


@dataclass(frozen=True)
class RocCurve:
    trial_id: str
    arm: str
    seed: int
    domain: str
    grain: str
    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    auc: float


@dataclass(frozen=True)
class ScoreDistribution:
    """Scores of the real and of the fake test samples of one arm and domain at one grain, pooled over its seeds."""

    arm: str
    domain: str
    grain: str
    seeds: tuple[int, ...]
    real: np.ndarray  # sorted
    fake: np.ndarray  # sorted


@dataclass(frozen=True)
class ConfusionCell:
    """Confusion counts of one arm and domain at one grain, summed over its seeds, at the report threshold."""

    arm: str
    domain: str
    grain: str
    threshold: float
    seeds: tuple[int, ...]
    tn: int
    fp: int
    fn: int
    tp: int


@dataclass(frozen=True)
class ErrorSample:
    """A misclassified test sample and its worst error over the seeds of one arm."""

    sample_id: str
    trial_id: str
    seed: int
    domain: str
    label: int
    score: float
    error: float


@dataclass(frozen=True)
class FigureData:
    """Everything the figures draw beyond the summary itself."""

    rocs: tuple[RocCurve, ...]
    distributions: tuple[ScoreDistribution, ...]
    confusion: tuple[ConfusionCell, ...]
    top_errors: Mapping[str, tuple[ErrorSample, ...]]  # per arm, most confident first, at most k
    arms: tuple[str, ...]  # every arm of the run, sorted
    threshold: float  # of the errors and the confusion counts
    k: int  # errors kept per arm


def roc_curves(groups: list[CleanGroup]) -> list[RocCurve]:
    """One ROC per trial, domain and grain, with its AUC; groups lacking a class are left out."""
    out = []
    for x in groups:
        g = x.group
        if g.label.all() or not g.label.any():
            continue
        fpr, tpr, thr = stats.roc_curve(g.label, g.score)
        out.append(RocCurve(x.trial_id, x.arm, x.seed, x.domain, x.grain, fpr, tpr, thr, stats.auc(g.label, g.score)))
    return out


def score_distributions(groups: list[CleanGroup]) -> list[ScoreDistribution]:
    """Scores of real and of fake test samples per grain, arm and domain, pooled over the arm's seeds (at the video
    grain, the videos' mean scores)."""
    cells: dict[tuple[str, str, str], list[CleanGroup]] = {}
    for x in groups:
        cells.setdefault((x.grain, x.arm, x.domain), []).append(x)
    out = []
    for (grain, arm, domain), sub in sorted(cells.items(), key=lambda kv: cell_order(*kv[0])):
        score = np.concatenate([x.group.score for x in sub])
        label = np.concatenate([x.group.label for x in sub])
        out.append(ScoreDistribution(arm, domain, grain, tuple(sorted(x.seed for x in sub)),
                                     np.sort(score[label == 0]), np.sort(score[label == 1])))
    return out


def confusion_data(summary: dict[str, Any]) -> list[ConfusionCell]:
    """Confusion counts at the report threshold per grain, arm and domain, summed over the arm's seeds (test split,
    clean)."""
    cells: dict[tuple[str, str, str], list[dict]] = {}
    for t in summary["trials"]:
        cells.setdefault((t["auc_level"], t["arm"], t["domain"]), []).append(t)
    return [ConfusionCell(arm, domain, grain, summary["statistics"]["threshold"], tuple(sorted(t["seed"] for t in sub)),
                          *(int(sum(t[k] for t in sub)) for k in ("tn", "fp", "fn", "tp")))
            for (grain, arm, domain), sub in sorted(cells.items(), key=lambda kv: cell_order(*kv[0]))]


def top_errors(groups: list[CleanGroup], arm: str, *, k: int = CONTACT_SHEET_K,
               threshold: float = 0.5) -> list[ErrorSample]:
    """The k misclassified test samples (clean; a score >= threshold is called fake) with the largest |score - label|,
    pooled over the trials of one arm. A sample wrong in several seeds counts once, with its worst error (ties: the
    first trial_id); ties between samples go to the smaller sample_id, so the list does not depend on row order.
    Samples are images and frames (each has a crop to show), not videos."""
    worst: dict[str, ErrorSample] = {}
    for x in groups:
        if x.arm != arm or x.grain not in ("image", "frame"):
            continue
        g = x.group
        wrong = np.flatnonzero((g.score >= threshold) != (g.label == 1))
        err = np.abs(g.score - g.label)
        for i in wrong:
            sid, e = str(g.sample_id[i]), float(err[i])
            cur = worst.get(sid)
            if cur is None or (-e, x.trial_id) < (-cur.error, cur.trial_id):
                worst[sid] = ErrorSample(sid, x.trial_id, x.seed, x.domain, int(g.label[i]), float(g.score[i]), e)
    return sorted(worst.values(), key=lambda r: (-r.error, r.sample_id))[:k]


def figure_data(data: GroupedScores, summary: dict[str, Any], *, k: int = CONTACT_SHEET_K) -> FigureData:
    """The figures' data from the grouped scores (clean test groups, taken once) and the summary (its threshold and
    trial rows)."""
    threshold = summary["statistics"]["threshold"]
    groups = clean_test_groups(data)
    arms = tuple(sorted({m["arm"] for m in data.trials.values()}))
    return FigureData(tuple(roc_curves(groups)), tuple(score_distributions(groups)), tuple(confusion_data(summary)),
                      {arm: tuple(top_errors(groups, arm, k=k, threshold=threshold)) for arm in arms}, arms, threshold,
                      k)


