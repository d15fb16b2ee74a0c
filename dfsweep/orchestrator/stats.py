"""Statistics of the report: pure numpy/scipy functions with an explicit seed, returning frozen results.

Conventions: labels are 1 = fake (positive), 0 = real; scores are probabilities of fake. AUC counts ties as 1/2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps


def _check_binary(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y, s = np.asarray(y), np.asarray(s, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError(f"labels and scores must be 1-D of the same length, got {y.shape} and {s.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    return y.astype(np.int8), s


def _auc_from_ranks(ranks_pos_sum: np.ndarray, n_pos: int, n_neg: int) -> np.ndarray:
    return (ranks_pos_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def auc(y, s) -> float:
    """Area under the ROC curve (Mann-Whitney U / (n_pos n_neg)); nan when a class is absent."""
    y, s = _check_binary(y, s)
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = sps.rankdata(s)
    return float(_auc_from_ranks(ranks[y == 1].sum(), n_pos, n_neg))


@dataclass(frozen=True)
class AucCI:
    auc: float
    low: float
    high: float
    level: float
    n_resamples: int
    n_pos: int
    n_neg: int
    method: str = "stratified percentile bootstrap"


def bootstrap_auc_ci(y, s, *, n_resamples: int = 2000, level: float = 0.95, seed: int | np.random.SeedSequence = 0) -> AucCI:
    """Percentile CI of the AUC, resampling fakes and reals separately (both classes in every resample)."""
    y, s = _check_binary(y, s)
    pos, neg = s[y == 1], s[y == 0]
    point = auc(y, s)
    if len(pos) == 0 or len(neg) == 0:
        return AucCI(point, float("nan"), float("nan"), level, n_resamples, len(pos), len(neg))
    rng = np.random.default_rng(seed)
    bp = pos[rng.integers(0, len(pos), (n_resamples, len(pos)))]
    bn = neg[rng.integers(0, len(neg), (n_resamples, len(neg)))]
    ranks = sps.rankdata(np.concatenate([bp, bn], axis=1), axis=1)
    boot = _auc_from_ranks(ranks[:, : len(pos)].sum(axis=1), len(pos), len(neg))
    alpha = (1 - level) / 2
    low, high = np.quantile(boot, [alpha, 1 - alpha])
    return AucCI(point, float(low), float(high), level, n_resamples, len(pos), len(neg))


@dataclass(frozen=True)
class MeanSD:
    mean: float
    sd: float
    n: int
    ddof: int


def mean_sd(values, *, ddof: int = 1) -> MeanSD:
    """Mean and standard deviation (sample sd, ddof=1, by default); sd is nan when n <= ddof."""
    v = np.asarray(values, dtype=np.float64)
    sd = float(v.std(ddof=ddof)) if len(v) > ddof else float("nan")
    return MeanSD(float(v.mean()) if len(v) else float("nan"), sd, len(v), ddof)


@dataclass(frozen=True)
class PairedT:
    """One-tailed paired t-test of H1: mean(candidate - baseline) > 0."""

    mean_diff: float
    t: float
    df: int
    p_value: float
    n_pairs: int
    alternative: str = "greater"


def paired_t_greater(candidate, baseline) -> PairedT:
    """Paired t-test across seeds (scipy.stats.ttest_rel, alternative='greater'); df = n_pairs - 1."""
    a, b = np.asarray(candidate, np.float64), np.asarray(baseline, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired samples must have the same length, got {len(a)} and {len(b)}")
    n = len(a)
    diff = a - b
    if n < 2:
        return PairedT(float(diff.mean()) if n else float("nan"), float("nan"), max(n - 1, 0), float("nan"), n)
    if np.ptp(diff) <= 1e-12:  # zero variance (up to rounding): t is undefined, say so plainly
        return PairedT(float(diff[0]), float("nan"), n - 1, float("nan"), n)
    res = sps.ttest_rel(a, b, alternative="greater")
    return PairedT(float(diff.mean()), float(res.statistic), n - 1, float(res.pvalue), n)


@dataclass(frozen=True)
class Confusion:
    """Counts at a threshold: a score >= threshold is called fake."""

    threshold: float
    tn: int
    fp: int
    fn: int
    tp: int

    @property
    def n(self) -> int:
        return self.tn + self.fp + self.fn + self.tp

    @property
    def accuracy(self) -> float:
        return (self.tp + self.tn) / self.n if self.n else float("nan")

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else float("nan")

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else float("nan")

    @property
    def predicted_one_class(self) -> bool:
        return (self.tp + self.fp == 0) or (self.tn + self.fn == 0)


def confusion(y, s, threshold: float = 0.5) -> Confusion:
    y, s = _check_binary(y, s)
    pred = s >= threshold
    return Confusion(threshold, tn=int(((y == 0) & ~pred).sum()), fp=int(((y == 0) & pred).sum()),
                     fn=int(((y == 1) & ~pred).sum()), tp=int(((y == 1) & pred).sum()))


def nan_to_none(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x
