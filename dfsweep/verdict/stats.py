"""Every statistic of the verdict: pure numpy/scipy functions, keyword-only options, an explicit seed, frozen results.

Conventions: labels are 1 = fake (positive), 0 = real; scores are probabilities of fake. AUC counts ties as 1/2.
`confidence` is the coverage of an interval (0.95). Imports nothing from dfsweep: the summary calls in, never back.

The AUC bootstraps draw the resamples they always drew and count each resample's Mann-Whitney wins a chunk of
resamples at a time (`_WinCounter`), never ranking a (B, n) array: time O(B (n + distinct scores)), memory bounded
by the chunk. tests/stats_reference.py keeps the direct implementation that the tests hold them to.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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


def bootstrap_auc_ci(y, s, *, n_resamples: int = 2000, confidence: float = 0.95,
                     seed: int | np.random.SeedSequence = 0) -> AucCI:
    """Percentile CI of the AUC, resampling fakes and reals separately (both classes in every resample)."""
    y, s = _check_binary(y, s)
    pos, neg = s[y == 1], s[y == 0]
    point = auc(y, s)
    m, n = len(pos), len(neg)
    if m == 0 or n == 0:
        return AucCI(point, float("nan"), float("nan"), confidence, n_resamples, m, n)
    counter = _WinCounter(pos, neg)
    boot = _count_resamples(counter.wins2, np.random.default_rng(seed), n_resamples, m, n) / (2 * m * n)
    low, high = _percentile_interval(boot, confidence)
    return AucCI(point, low, high, confidence, n_resamples, m, n)


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
    """One-tailed paired t-test of H1: mean(candidate - baseline) > 0 (alternative "greater") or < 0 ("less")."""

    mean_diff: float
    t: float
    df: int
    p_value: float
    n_pairs: int
    alternative: str = "greater"


def paired_t(candidate, baseline, *, alternative: str = "greater") -> PairedT:
    """One-tailed paired t-test across seeds (scipy.stats.ttest_rel) of H1: mean(candidate - baseline) > 0
    (alternative "greater") or < 0 ("less"); df = n_pairs - 1. t and p are nan below 2 pairs or with zero variance."""
    if alternative not in ("greater", "less"):
        raise ValueError(f"alternative must be 'greater' or 'less', got {alternative!r}")
    a, b = np.asarray(candidate, np.float64), np.asarray(baseline, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired samples must have the same length, got {len(a)} and {len(b)}")
    n = len(a)
    diff = a - b
    if n < 2:
        return PairedT(float(diff.mean()) if n else float("nan"), float("nan"), max(n - 1, 0), float("nan"), n,
                       alternative)
    if np.ptp(diff) <= 1e-12:  # zero variance (up to rounding): t is undefined, say so plainly
        return PairedT(float(diff[0]), float("nan"), n - 1, float("nan"), n, alternative)
    res = sps.ttest_rel(a, b, alternative=alternative)
    return PairedT(float(diff.mean()), float(res.statistic), n - 1, float(res.pvalue), n, alternative)


def paired_t_greater(candidate, baseline) -> PairedT:
    """Paired t-test across seeds (scipy.stats.ttest_rel, alternative='greater'); df = n_pairs - 1."""
    return paired_t(candidate, baseline, alternative="greater")


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


# Resamples are drawn in blocks of about _DRAW_ENTRIES index draws (8 MiB of int64), at most _AHEAD blocks ahead of
# the one being counted, and counted _COUNT_ENTRIES entries at a time so that one resample's histogram stays in a
# core's cache: a bootstrap's working set is a few tens of MiB whatever B and n.
_DRAW_ENTRIES = 1 << 20
_COUNT_ENTRIES = 1 << 17
_AHEAD = 2


def _rows_per_block(entries_per_row: int, budget: int | None = None) -> int:
    return max(1, (_DRAW_ENTRIES if budget is None else budget) // max(entries_per_row, 1))


def _count_resamples(count: Callable[[np.ndarray, np.ndarray], np.ndarray], rng: np.random.Generator, n_rows: int,
                     m: int, n: int) -> np.ndarray:
    """count(ip, ineg) of the n_rows stratified resamples the reference draws, `rng.integers(0, m, (n_rows, m))`
    (every resample's fakes) then `rng.integers(0, n, (n_rows, n))` (every resample's reals), concatenated over
    blocks of resamples without ever holding all the draws; rng ends where the two whole draws leave it.

    A Generator's bounded integers are read off one stream, so drawing in pieces gives the numbers one draw gives.
    The reals' draws start where the fakes' end: a copy of rng reads the fakes' part while rng itself is first moved
    past it (drawn and dropped) and then reads the reals'. One worker thread draws, in the order the blocks are
    asked for, while the caller counts the block before: numpy fills the arrays without holding the GIL.
    """
    step = _rows_per_block(m + n)
    rows = [min(step, n_rows - start) for start in range(0, n_rows, step)]
    fakes = copy.deepcopy(rng)

    def skip_fakes() -> None:
        for r in rows:
            rng.integers(0, m, (r, m))

    def draw(r: int) -> tuple[np.ndarray, np.ndarray]:
        return fakes.integers(0, m, (r, m)), rng.integers(0, n, (r, n))

    counted = []
    with ThreadPoolExecutor(max_workers=1) as drawer:
        skipped = drawer.submit(skip_fakes)  # runs first: one worker runs its tasks in the order they came
        ahead = deque(drawer.submit(draw, r) for r in rows[:_AHEAD])
        for i in range(len(rows)):
            block = ahead.popleft().result()
            if i + _AHEAD < len(rows):
                ahead.append(drawer.submit(draw, rows[i + _AHEAD]))
            counted.append(count(*block))
        skipped.result()
    return np.concatenate(counted) if counted else np.zeros(0)


class _WinCounter:
    """Mann-Whitney counts of one model's scores over stratified resamples given as index draws.

    `wins2(ip, ineg)` gives, per resample, 2 #(fake > real) + #(fake = real) over its m n pairs, in exact integers:
    wins2 / (2 m n) is the AUC, the same float that ranking the resample gives (both are the correctly rounded value
    of the same rational).

    Sort once: one class is "looked up" (one table read per draw), the other "counted" (a histogram per resample
    over slots between and at the looked-up class's distinct scores: below the first, at it where a counted score
    ties it, between it and the next, ...). The histogram's running sum then gives, for every looked-up score, the
    counted scores below it (at its "between" slot) and up to it (at its "at" slot); their sum is its 2 below + tied.
    Looking up the reals works the same on negated scores (a fake above a real is a real below a fake). Each class
    is tried in each part and the cheaper kept: O(n + distinct scores) per resample.
    """

    def __init__(self, pos: np.ndarray, neg: np.ndarray):
        options = (self._layout(pos, neg), self._layout(-neg, -pos))
        # per resample: 3 passes over the looked-up draws, 2 over the counted ones, 2 over the slots
        cost = [3 * len(g) + 2 * len(c) + 2 * layout[3] for layout, (g, c) in zip(options, ((pos, neg), (neg, pos)))]
        self.look_up_reals = cost[1] < cost[0]
        self.code, self.counted_slot, self.table, self.k = options[self.look_up_reals]
        self.entries_per_resample = len(pos) + len(neg) + self.k

    @staticmethod
    def _layout(looked_up: np.ndarray, counted: np.ndarray):
        """(distinct-score code of each looked-up score, slot of each counted score, the (between, at) slot pair of
        each distinct looked-up score or None when no score is shared, number of slots)."""
        u, code = np.unique(looked_up, return_inverse=True)
        q = len(u)
        t = np.searchsorted(u, counted)  # distinct looked-up scores strictly below each counted score
        tied = np.zeros(len(counted), dtype=bool)
        inside = t < q
        tied[inside] = u[t[inside]] == counted[inside]
        has_at = np.zeros(q, dtype=bool)
        has_at[t[tied]] = True  # an "at" slot only for a looked-up score that some counted score equals
        between = np.arange(q + 1) + np.r_[0, np.cumsum(has_at)]  # slot of the gap just below u[t] (t = q: above all)
        counted_slot = between[t] + tied
        table = (between[:q], between[:q] + has_at) if has_at.any() else None
        return code.astype(np.intp), counted_slot.astype(np.intp), table, q + 1 + int(has_at.sum())

    def wins2(self, ip: np.ndarray, ineg: np.ndarray) -> np.ndarray:
        """2 #(fake > real) + #(fake = real) of each resample (row): fakes pos[ip[b]], reals neg[ineg[b]]."""
        look, count = (ineg, ip) if self.look_up_reals else (ip, ineg)
        step = _rows_per_block(self.entries_per_resample, _COUNT_ENTRIES)
        return np.concatenate([self._wins2(look[i:i + step], count[i:i + step]) for i in range(0, len(look), step)])

    def _wins2(self, look: np.ndarray, count: np.ndarray) -> np.ndarray:
        b, k = len(look), self.k
        slots = np.take(self.counted_slot, count)
        slots += np.arange(0, b * k, k)[:, None]  # one histogram of k slots per resample, side by side
        running = np.bincount(slots.ravel(), minlength=b * k).reshape(b, k).cumsum(axis=1)
        if self.table is None:  # no tie across classes: below and up-to are the same slot
            table, factor = running, 2
        else:
            table, factor = np.take(running, self.table[0], axis=1), 1
            table += np.take(running, self.table[1], axis=1)
        at = np.take(self.code, look)
        at += np.arange(0, b * table.shape[1], table.shape[1])[:, None]
        return factor * np.take(table, at).sum(axis=1)


def _auc_diff(cand_pos, cand_neg, base_pos, base_neg) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The count that gives AUC(candidate) - AUC(baseline) of each resample, both models on the same draws."""
    cand, base = _WinCounter(cand_pos, cand_neg), _WinCounter(base_pos, base_neg)
    pairs = 2 * len(cand_pos) * len(cand_neg)
    return lambda ip, ineg: cand.wins2(ip, ineg) / pairs - base.wins2(ip, ineg) / pairs


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
    boot = _count_resamples(_auc_diff(sc[pos], sc[neg], sb[pos], sb[neg]), np.random.default_rng(seed), n_resamples,
                            m, n)
    low, high = _percentile_interval(boot, confidence)
    return PairedBootstrap(auc(y, sc) - auc(y, sb), low, high, confidence, float(np.mean(boot > 0)), n_resamples)


@dataclass(frozen=True)
class Wilcoxon:
    """One-sided Wilcoxon signed-rank test across seeds, H1: candidate > baseline. n_pairs counts the pairs ranked
    (nonzero differences); n_zero the pairs left out because their difference is zero."""

    statistic: float
    p_value: float
    n_pairs: int
    n_zero: int
    reason: str | None = None
    alternative: str = "greater"


def wilcoxon_greater(candidate, baseline, *, min_pairs: int = 6) -> Wilcoxon:
    """scipy.stats.wilcoxon(alternative='greater') on paired per-seed values. scipy's default zero_method='wilcox'
    drops zero differences before ranking, so only the nonzero ones count: with n of them the smallest attainable
    one-sided p is 2**-n, and below min_pairs the test says little and is not run: nan with a reason instead.
    """
    a, b = np.asarray(candidate, np.float64), np.asarray(baseline, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired samples must have the same length, got {len(a)} and {len(b)}")
    if min_pairs < 1:
        raise ValueError(f"min_pairs must be at least 1, got {min_pairs}")
    used = int(np.count_nonzero(a - b))  # the criterion scipy applies: a difference exactly 0 is dropped
    zero = len(a) - used
    if used < min_pairs:
        dropped = f"; {zero} with zero difference left out" if zero else ""
        return Wilcoxon(float("nan"), float("nan"), used, zero, f"fewer than {min_pairs} pairs ({used}{dropped})")
    res = sps.wilcoxon(a, b, alternative="greater")
    return Wilcoxon(float(res.statistic), float(res.pvalue), used, zero)


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
        m, n = int(p.sum()), int((~p).sum())
        rows = np.repeat(np.arange(n_resamples), draws[:, j])  # one sample resample per draw of seed j
        d = _count_resamples(_auc_diff(sc[p], sc[~p], sb[p], sb[~p]), rng, len(rows), m, n)
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


# --- probability of improvement: how often the candidate beats the baseline, beside the mean difference ---------------


@dataclass(frozen=True)
class SeedWins:
    """Seed-level probability of improvement: the share of matched seeds (the same seed for both arms) whose candidate
    AUC is above the baseline's, ties counting half. With n seeds it can only be a multiple of 1/(2n)."""

    share: float  # (wins + ties / 2) / n_seeds; nan without a seed
    wins: int
    ties: int
    losses: int
    n_seeds: int  # the seeds compared (both AUCs defined)
    n_left_out: int  # seeds left out because an AUC is nan (a class absent)


def seed_win_share(candidate, baseline) -> SeedWins:
    """`candidate[i]` and `baseline[i]` are the two arms' AUCs on seed i. A pair with a nan AUC is left out and
    counted in n_left_out."""
    a, b = np.asarray(candidate, np.float64), np.asarray(baseline, np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired samples must be 1-D of the same length, got {a.shape} and {b.shape}")
    ok = ~(np.isnan(a) | np.isnan(b))
    a, b = a[ok], b[ok]
    wins, ties = int((a > b).sum()), int((a == b).sum())
    n = len(a)
    share = (wins + ties / 2) / n if n else float("nan")
    return SeedWins(float(share), wins, ties, n - wins - ties, n, int((~ok).sum()))


def _placements2(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Twice the DeLong placement of every sample, in exact integers kept as floats: a fake's 2 #(reals below it) +
    #(reals tied with it), a real's 2 #(fakes above it) + #(fakes tied with it)."""
    pos = y == 1
    m = int(pos.sum())
    ranks = sps.rankdata(s)  # midranks: halves, so twice them are integers
    out = np.empty(len(y))
    out[pos] = 2 * ranks[pos] - 2 * sps.rankdata(s[pos])  # 2 (reals below) + (reals tied)
    out[~pos] = 2 * m - (2 * ranks[~pos] - 2 * sps.rankdata(s[~pos]))  # 2 (fakes above) + (fakes tied)
    return np.rint(out)


def placements(y, s) -> np.ndarray:
    """DeLong's placement value of every sample, in input order: for a fake, the share of reals scored below it; for
    a real, the share of fakes scored above it; a tie counts half. A sample's placement is the share of the other
    class it is ranked correctly against; the AUC is the mean placement over the fakes and, equally, over the reals.
    nan for every sample when a class is absent."""
    y, s = _check_binary(y, s)
    pos = y == 1
    m, n = int(pos.sum()), int((~pos).sum())
    if m == 0 or n == 0:
        return np.full(len(y), np.nan)
    twice = _placements2(y, s)
    return np.where(pos, twice / (2 * n), twice / (2 * m))


@dataclass(frozen=True)
class SampleWins:
    """Per-sample paired probability of improvement within one seed: the share of the paired test samples whose
    placement (placements) is higher under the candidate than under the baseline, ties counting half, taken per
    class and averaged with equal weight: share = (share_fake + share_real) / 2."""

    share: float
    share_fake: float
    share_real: float
    n_fake: int
    n_real: int
    method: str = ("per sample, its DeLong placement under each model (the share of the other class it is ranked "
                   "correctly against, ties half); the share of samples placed higher by the candidate (ties half), "
                   "fakes and reals weighted equally")


def sample_win_share(y, s_candidate, s_baseline) -> SampleWins:
    """How often a test sample is ranked better by the candidate than by the baseline, on the same samples.

    Each class is a full view of the AUC (ΔAUC is the mean placement gain over the fakes and, equally, over the
    reals), so the two classes' shares are averaged with equal weight, as the AUC weighs them, rather than pooled
    (which would let the larger class decide). Invariant to any increasing transformation of either model's scores;
    1/2 when both rank alike; swapping the models gives 1 - share. Descriptive: the placements of one seed share
    the other class, so they are not independent and no p-value is drawn from them. nan fields when a class is
    absent."""
    y, sc, sb, pos, neg, m, n = _paired_input(y, s_candidate, s_baseline)
    if m == 0 or n == 0:
        nan = float("nan")
        return SampleWins(nan, nan, nan, m, n)
    c, b = _placements2(y, sc), _placements2(y, sb)  # exact: a tie in placement is a tie, not a rounding accident
    won = (c > b) + 0.5 * (c == b)
    fake, real = float(won[pos].mean()), float(won[neg].mean())
    return SampleWins((fake + real) / 2, fake, real, m, n)
