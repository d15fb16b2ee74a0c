"""The slow reference: dfsweep.verdict.stats's three AUC bootstraps as they were before they were vectorised, the
direct implementation that tests/test_stats.py holds the fast ones to (the same seed must give the same interval)
and bench/report.py times beside them.

Never used by the report (it lives with the tests, outside the package). Each resample is materialised:
`bootstrap_auc_ci` ranks a (B, n) score array with scipy.stats.rankdata(axis=1); the paired and hierarchical
bootstraps count with `_resampled_aucs`, which holds a (B, distinct scores) histogram. Memory grows as B x n:
gigabytes at n = 50,000 and B = 2,000.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sps

from dfsweep.verdict.stats import (AucCI, HierarchicalBootstrap, PairedBootstrap, _auc_from_ranks, _check_binary,
                                   _paired_input, _percentile_interval, auc)


def bootstrap_auc_ci(y, s, *, n_resamples: int = 2000, confidence: float = 0.95,
                     seed: int | np.random.SeedSequence = 0) -> AucCI:
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


# --- probability of improvement: the definitions as double loops, in exact fractions ----------------------------------

def placements(y, s) -> list:
    """DeLong's placement of every sample from its definition, one pair at a time: a fake's share of the reals scored
    below it, a real's share of the fakes scored above it, a tie counting half (exact Fractions)."""
    from fractions import Fraction

    y, s = list(y), list(s)
    out = []
    for i in range(len(y)):
        others = [j for j in range(len(y)) if y[j] != y[i]]
        won = 0
        for j in others:
            mine, theirs = (s[i], s[j]) if y[i] == 1 else (s[j], s[i])  # the fake's score, the real's score
            won += Fraction(1) if mine > theirs else Fraction(1, 2) if mine == theirs else 0
        out.append(won / len(others))
    return out


def sample_win_share(y, s_candidate, s_baseline) -> tuple:
    """(balanced share, fakes' share, reals' share): per sample, 1 when its placement is higher under the candidate,
    1/2 when equal, 0 when lower; averaged per class, and the two classes' shares averaged."""
    from fractions import Fraction

    c, b = placements(y, s_candidate), placements(y, s_baseline)
    share = {}
    for label in (1, 0):
        won = [Fraction(1) if c[i] > b[i] else Fraction(1, 2) if c[i] == b[i] else Fraction(0)
               for i in range(len(y)) if y[i] == label]
        share[label] = sum(won) / len(won)
    return (share[1] + share[0]) / 2, share[1], share[0]


def seed_win_share(candidate, baseline) -> tuple:
    """(share, wins, ties, losses) over the seeds, one seed at a time."""
    wins = ties = losses = 0
    for a, b in zip(candidate, baseline):
        if a > b:
            wins += 1
        elif a == b:
            ties += 1
        else:
            losses += 1
    n = wins + ties + losses
    return (wins + ties / 2) / n, wins, ties, losses
