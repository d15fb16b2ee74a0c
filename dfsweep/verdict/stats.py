"""Every statistic of the verdict: pure numpy/scipy functions, keyword-only options, an explicit seed, frozen results.

Conventions: labels are 1 = fake (positive), 0 = real; scores are probabilities of fake. AUC counts ties as 1/2.
`confidence` is the coverage of an interval (0.95). Imports nothing from dfsweep: the summary calls in, never back.
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


def _percentile_interval(boot: np.ndarray, confidence: float) -> tuple[float, float]:
    """The equal-tailed percentile interval of bootstrap replicates at `confidence`."""
    tail = (1 - confidence) / 2
    low, high = np.quantile(boot, [tail, 1 - tail])
    return float(low), float(high)


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
    confidence: float
    n_resamples: int
    n_pos: int
    n_neg: int
    method: str = "stratified percentile bootstrap"


def bootstrap_auc_ci(y, s, *, n_resamples: int = 2000, confidence: float = 0.95, seed: int | np.random.SeedSequence = 0) -> AucCI:
    """Percentile CI of the AUC, resampling fakes and reals separately (both classes in every resample)."""
    y, s = _check_binary(y, s)
    pos, neg = s[y == 1], s[y == 0]
    point = auc(y, s)
    if len(pos) == 0 or len(neg) == 0:
        return AucCI(point, float("nan"), float("nan"), confidence, n_resamples, len(pos), len(neg))
    rng = np.random.default_rng(seed)
    bp = pos[rng.integers(0, len(pos), (n_resamples, len(pos)))]
    bn = neg[rng.integers(0, len(neg), (n_resamples, len(neg)))]
    ranks = sps.rankdata(np.concatenate([bp, bn], axis=1), axis=1)
    boot = _auc_from_ranks(ranks[:, : len(pos)].sum(axis=1), len(pos), len(neg))
    low, high = _percentile_interval(boot, confidence)
    return AucCI(point, low, high, confidence, n_resamples, len(pos), len(neg))


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
class MeanBand:
    """Mean across seeds with its t band, mean ± t_{(1+confidence)/2, n-1} sd / sqrt(n) (nan below 2 values)."""

    mean: float
    sd: float
    n: int
    ddof: int
    low: float
    high: float
    confidence: float


def mean_band(values, *, confidence: float = 0.95) -> MeanBand:
    """The mean of `values` (one per seed) with a Student-t band of the mean; the band is nan with fewer than 2 values
    or a non-finite mean or sd."""
    ms = mean_sd(values)
    if ms.n < 2 or not (math.isfinite(ms.mean) and math.isfinite(ms.sd)):
        return MeanBand(ms.mean, ms.sd, ms.n, ms.ddof, float("nan"), float("nan"), confidence)
    half = float(sps.t.ppf((1 + confidence) / 2, ms.n - 1)) * ms.sd / math.sqrt(ms.n)
    return MeanBand(ms.mean, ms.sd, ms.n, ms.ddof, ms.mean - half, ms.mean + half, confidence)


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
    def f1(self) -> float:
        """2 TP / (2 TP + FP + FN): the harmonic mean of precision and recall; 0 when there is no true positive but
        some sample is positive or called so, nan when there is none of either."""
        d = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / d if d else float("nan")

    @property
    def predicted_fake_share(self) -> float:
        """The share of samples called fake (nan for no samples)."""
        return (self.tp + self.fp) / self.n if self.n else float("nan")

    @property
    def predicted_one_class(self) -> bool:
        return (self.tp + self.fp == 0) or (self.tn + self.fn == 0)


def confusion(y, s, *, threshold: float = 0.5) -> Confusion:
    """Counts at `threshold` (a score >= threshold is called fake)."""
    y, s = _check_binary(y, s)
    pred = s >= threshold
    return Confusion(threshold, tn=int(((y == 0) & ~pred).sum()), fp=int(((y == 0) & pred).sum()),
                     fn=int(((y == 1) & ~pred).sum()), tp=int(((y == 1) & pred).sum()))


def brier_score(y, s) -> float:
    """Mean squared difference between the probability of fake and the 0/1 label (Brier, 1950): 0 is perfect, 0.25
    is a constant 0.5; lower is better and, unlike AUC, it penalises miscalibration. nan for no samples; ValueError
    when a score is not a probability."""
    y, s = _check_binary(y, s)
    if ((s < 0) | (s > 1)).any():
        raise ValueError("the Brier score needs probabilities: scores must lie in [0, 1]")
    return float(np.mean((s - y) ** 2)) if len(y) else float("nan")


def average_precision(y, s) -> float:
    """Step-wise average precision, sum_k (R_k - R_{k-1}) P_k over distinct thresholds (scikit-learn's
    average_precision_score, no interpolation); nan when there are no fakes."""
    y, s = _check_binary(y, s)
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), len(s) - 1]  # last index of each group of tied scores
    tp = np.cumsum(y_sorted)[last]
    precision = tp / (last + 1)
    recall_step = np.diff(tp, prepend=0) / n_pos
    return float(np.sum(recall_step * precision))


def roc_curve(y, s) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) with every distinct score a threshold, from (0, 0) at threshold inf to (1, 1); a score
    >= threshold is called fake. ValueError when a class is absent: the curve is undefined then."""
    y, s = _check_binary(y, s)
    if y.all() or not y.any():
        raise ValueError("a ROC curve needs both real and fake samples")
    return _roc(y, s)


def _roc(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full ROC (every distinct score a threshold, no points dropped), starting at (0, 0) with threshold inf."""
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), len(s) - 1]
    tp = np.cumsum(y_sorted)[last]
    fp = last + 1 - tp
    return np.r_[0.0, fp / fp[-1]], np.r_[0.0, tp / tp[-1]], np.r_[np.inf, s_sorted[last]]


@dataclass(frozen=True)
class EER:
    """Equal error rate: the ROC point where the false-positive rate equals the false-negative rate."""

    eer: float
    threshold: float


def eer(y, s) -> EER:
    """Equal error rate, interpolated linearly between the two ROC points that bracket FPR = FNR.

    The threshold is interpolated likewise; when the crossing lies between (0, 0) (threshold inf) and the
    first ROC point, the threshold is that point's (the top score). nan fields when a class is absent.
    """
    y, s = _check_binary(y, s)
    if y.all() or not y.any():
        return EER(float("nan"), float("nan"))
    fpr, tpr, thr = _roc(y, s)
    gap = (1 - tpr) - fpr  # FNR - FPR: 1 at (0, 0), -1 at (1, 1), strictly decreasing in between
    i = int(np.argmax(gap <= 0))  # first point at or past the crossing; i >= 1 because gap[0] = 1
    w = gap[i - 1] / (gap[i - 1] - gap[i])
    rate = fpr[i - 1] + w * (fpr[i] - fpr[i - 1])
    t = thr[i] if i == 1 else thr[i - 1] + w * (thr[i] - thr[i - 1])
    return EER(float(rate), float(t))


@dataclass(frozen=True)
class DeLong:
    """DeLong test of two correlated AUCs on the same samples; one-sided, H1: AUC(candidate) > AUC(baseline)."""

    auc_candidate: float
    auc_baseline: float
    diff: float
    se: float
    z: float
    p_value: float
    n_pos: int
    n_neg: int
    alternative: str = "greater"


def _paired_input(y, s_candidate, s_baseline):
    """Checked labels and both models' scores on the same samples, with the class masks and sizes."""
    y, sc = _check_binary(y, s_candidate)
    _, sb = _check_binary(y, s_baseline)
    pos, neg = y == 1, y == 0
    return y, sc, sb, pos, neg, int(pos.sum()), int(neg.sum())


def delong_test(y, s_candidate, s_baseline) -> DeLong:
    """DeLong, DeLong & Clarke-Pearson (1988) for two AUCs on the same samples, via the midrank algorithm of
    Sun & Xu (2014): structural components V10, V01 from midranks, S = S10 / n_pos + S01 / n_neg, z = diff / se.

    The p-value is one-sided (candidate better); z and p are nan when se is 0 (e.g. identical scores) or a
    class has fewer than 2 samples.
    """
    y, sc, sb, pos, neg, m, n = _paired_input(y, s_candidate, s_baseline)
    if m == 0 or n == 0:
        nan = float("nan")
        return DeLong(nan, nan, nan, nan, nan, nan, m, n)
    scores = np.stack([sc, sb])  # (2, N)
    tz = sps.rankdata(scores, axis=1)
    tx = sps.rankdata(scores[:, pos], axis=1)
    ty = sps.rankdata(scores[:, neg], axis=1)
    aucs = _auc_from_ranks(tz[:, pos].sum(axis=1), m, n)
    v10 = (tz[:, pos] - tx) / n  # (2, m): per fake, share of reals ranked below it
    v01 = 1 - (tz[:, neg] - ty) / m  # (2, n): per real, share of fakes ranked above it
    diff = float(aucs[0] - aucs[1])
    if m < 2 or n < 2:
        nan = float("nan")
        return DeLong(float(aucs[0]), float(aucs[1]), diff, nan, nan, nan, m, n)
    cov = np.cov(v10) / m + np.cov(v01) / n
    se = math.sqrt(max(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1], 0.0))
    if se <= 1e-12:  # zero variance of the difference (up to rounding): the test is undefined
        return DeLong(float(aucs[0]), float(aucs[1]), diff, se, float("nan"), float("nan"), m, n)
    z = diff / se
    return DeLong(float(aucs[0]), float(aucs[1]), diff, se, z, float(sps.norm.sf(z)), m, n)


def _resampled_aucs(pos: np.ndarray, neg: np.ndarray, ip: np.ndarray, ineg: np.ndarray) -> np.ndarray:
    """AUC of every stratified resample at once: row b holds fakes pos[ip[b]] and reals neg[ineg[b]].

    Same value as ranking each row with scipy.stats.rankdata(..., axis=1), but counts instead of sorts: scores
    become dense integer codes, a per-row histogram of the reals' codes gives, for every fake, the number of reals
    strictly below it and tied with it. O(B (n + distinct scores)) time and memory.
    """
    codes = (sps.rankdata(np.concatenate([pos, neg]), method="dense") - 1).astype(np.intp)
    cp, cn = codes[: len(pos)], codes[len(pos):]
    b, k = ip.shape[0], int(codes.max()) + 1
    rows = np.arange(b)[:, None] * k
    count = np.bincount((rows + cn[ineg]).ravel(), minlength=b * k).reshape(b, k)
    below = np.cumsum(count, axis=1) - count
    at = rows + cp[ip]
    wins = below.ravel()[at] + 0.5 * count.ravel()[at]
    return wins.sum(axis=1) / (ip.shape[1] * ineg.shape[1])


@dataclass(frozen=True)
class PairedBootstrap:
    """Percentile CI of AUC(candidate) - AUC(baseline) from a stratified bootstrap shared by both models."""

    diff: float
    low: float
    high: float
    confidence: float
    prob_positive: float
    n_resamples: int
    note: str = "prob_positive is the share of resamples with diff > 0, a bootstrap probability, not a p-value"


def paired_bootstrap_auc_diff(y, s_candidate, s_baseline, *, n_resamples: int = 2000, confidence: float = 0.95,
                              seed: int | np.random.SeedSequence = 0) -> PairedBootstrap:
    """Percentile CI of the AUC difference, resampling fakes and reals separately with the same indices for both
    models (so their correlation is kept). prob_positive = share of resamples with diff > 0: a bootstrap
    probability, not a p-value. nan fields when a class is absent.
    """
    y, sc, sb, pos, neg, m, n = _paired_input(y, s_candidate, s_baseline)
    if m == 0 or n == 0:
        nan = float("nan")
        return PairedBootstrap(nan, nan, nan, confidence, nan, n_resamples)
    rng = np.random.default_rng(seed)
    ip = rng.integers(0, m, (n_resamples, m))
    ineg = rng.integers(0, n, (n_resamples, n))
    boot = _resampled_aucs(sc[pos], sc[neg], ip, ineg) - _resampled_aucs(sb[pos], sb[neg], ip, ineg)
    low, high = _percentile_interval(boot, confidence)
    return PairedBootstrap(auc(y, sc) - auc(y, sb), low, high, confidence, float(np.mean(boot > 0)), n_resamples)


@dataclass(frozen=True)
class Wilcoxon:
    """One-sided Wilcoxon signed-rank test across seeds, H1: candidate > baseline."""

    statistic: float
    p_value: float
    n_pairs: int
    reason: str | None = None
    alternative: str = "greater"


def wilcoxon_greater(candidate, baseline, *, min_pairs: int = 6) -> Wilcoxon:
    """scipy.stats.wilcoxon(alternative='greater') on paired per-seed values. With n pairs the smallest attainable
    one-sided p is 2**-n, so below min_pairs the test says little and is not run: nan with a reason instead.
    """
    a, b = np.asarray(candidate, np.float64), np.asarray(baseline, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired samples must have the same length, got {len(a)} and {len(b)}")
    n = len(a)
    if n < min_pairs:
        return Wilcoxon(float("nan"), float("nan"), n, f"fewer than {min_pairs} pairs ({n})")
    if np.all(a == b):
        return Wilcoxon(float("nan"), float("nan"), n, "all differences are zero")
    res = sps.wilcoxon(a, b, alternative="greater")
    return Wilcoxon(float(res.statistic), float(res.pvalue), n)


@dataclass(frozen=True)
class HierarchicalBootstrap:
    """Percentile CI of the mean over seeds of AUC(candidate) - AUC(baseline), resampling seeds then samples."""

    mean_diff: float
    low: float
    high: float
    confidence: float
    n_seeds: int
    n_resamples: int
    method: str = "seeds with replacement, then fakes and reals with replacement within each drawn seed"


def hierarchical_bootstrap_mean_diff(per_seed, *, n_resamples: int = 2000, confidence: float = 0.95,
                                     seed: int | np.random.SeedSequence = 0) -> HierarchicalBootstrap:
    """Two-level bootstrap of the mean per-seed AUC difference, so the CI reflects both seed-to-seed variation
    (training randomness) and the finite test set. per_seed: list of (y, s_candidate, s_baseline), one per seed.

    Each resample draws seeds with replacement; every draw of a seed gets its own stratified sample resample.
    nan fields when there are no seeds or a seed lacks a class.
    """
    data = []
    for y, sc, sb in per_seed:
        y, sc = _check_binary(y, sc)
        _, sb = _check_binary(y, sb)
        data.append((y, sc, sb))
    k, nan = len(data), float("nan")
    if k == 0 or any(y.all() or not y.any() for y, _, _ in data):
        return HierarchicalBootstrap(nan, nan, nan, confidence, k, n_resamples)
    point = float(np.mean([auc(y, sc) - auc(y, sb) for y, sc, sb in data]))
    rng = np.random.default_rng(seed)
    picked = rng.integers(0, k, (n_resamples, k))
    draws = np.bincount((np.arange(n_resamples)[:, None] * k + picked).ravel(), minlength=n_resamples * k)
    draws = draws.reshape(n_resamples, k)  # draws[b, j]: how often resample b drew seed j
    total = np.zeros(n_resamples)
    for j, (y, sc, sb) in enumerate(data):
        p = y == 1
        rows = np.repeat(np.arange(n_resamples), draws[:, j])  # one entry per draw of seed j
        m, n = int(p.sum()), int((~p).sum())
        ip = rng.integers(0, m, (len(rows), m))
        ineg = rng.integers(0, n, (len(rows), n))
        d = _resampled_aucs(sc[p], sc[~p], ip, ineg) - _resampled_aucs(sb[p], sb[~p], ip, ineg)
        total += np.bincount(rows, weights=d, minlength=n_resamples)
    boot = total / k
    low, high = _percentile_interval(boot, confidence)
    return HierarchicalBootstrap(point, low, high, confidence, k, n_resamples)


def holm(p_values) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, made monotone, capped at 1) controlling the family-wise
    error rate; nan inputs stay nan and do not count in the number of tests m."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    if m:
        order = ok[np.argsort(p[ok], kind="stable")]
        adj = np.minimum(np.maximum.accumulate(p[order] * (m - np.arange(m))), 1.0)
        out[order] = adj
    return [float(v) for v in out]
