"""Statistics against independent references: scikit-learn, scipy, analytic values and hand-worked examples."""

import math
import tracemalloc

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from dfsweep.verdict import stats

import stats_reference  # tests/stats_reference.py: the slow direct bootstraps the fast ones replaced


def _data(n_pos=60, n_neg=80, shift=1.0, seed=0, ties=False):
    rng = np.random.default_rng(seed)
    s = np.concatenate([rng.normal(shift, 1, n_pos), rng.normal(0, 1, n_neg)])
    if ties:
        s = np.round(s, 1)
    y = np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]
    return y, s


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_matches_sklearn(seed, ties):
    y, s = _data(seed=seed, ties=ties)
    assert stats.auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_auc_hand_worked_with_a_tie():
    # pos: 0.8, 0.4; neg: 0.4, 0.1 -> pairs (0.8>0.4), (0.8>0.1), (0.4=0.4 -> 1/2), (0.4>0.1) = 3.5 / 4
    assert stats.auc([1, 1, 0, 0], [0.8, 0.4, 0.4, 0.1]) == pytest.approx(0.875)


def test_auc_matches_mann_whitney_u():
    y, s = _data(seed=3)
    u = sps.mannwhitneyu(s[y == 1], s[y == 0]).statistic
    assert stats.auc(y, s) == pytest.approx(u / (60 * 80))


def test_swapping_labels_mirrors_auc_around_half():
    y, s = _data(seed=4, ties=True)
    assert stats.auc(1 - y, s) == pytest.approx(1 - stats.auc(y, s))


def test_perfect_ranker_has_auc_one_and_a_degenerate_ci():
    y = np.r_[np.ones(30, int), np.zeros(30, int)]
    s = np.r_[np.linspace(0.6, 1, 30), np.linspace(0, 0.4, 30)]
    ci = stats.bootstrap_auc_ci(y, s, n_resamples=500, seed=1)
    assert (ci.auc, ci.low, ci.high) == (1.0, 1.0, 1.0)


def test_one_class_gives_nan_not_an_error():
    assert math.isnan(stats.auc([1, 1, 1], [0.1, 0.2, 0.3]))
    assert math.isnan(stats.bootstrap_auc_ci([0, 0], [0.1, 0.2], n_resamples=100).low)


def test_bootstrap_ci_agrees_with_hanley_mcneil_for_large_samples():
    # Hanley & McNeil (1982): an analytic standard error of the AUC, independent of any resampling.
    y, s = _data(n_pos=400, n_neg=400, shift=1.0, seed=5)
    a = stats.auc(y, s)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    se = math.sqrt((a * (1 - a) + 399 * (q1 - a * a) + 399 * (q2 - a * a)) / (400 * 400))
    ci = stats.bootstrap_auc_ci(y, s, n_resamples=2000, confidence=0.95, seed=7)
    assert ci.low < a < ci.high
    assert (ci.high - ci.low) == pytest.approx(2 * 1.959964 * se, rel=0.15)


def test_bootstrap_is_stratified_and_seeded():
    y, s = _data(n_pos=3, n_neg=40, seed=6)
    a1 = stats.bootstrap_auc_ci(y, s, n_resamples=300, seed=11)
    a2 = stats.bootstrap_auc_ci(y, s, n_resamples=300, seed=11)
    assert a1 == a2  # same seed, same interval
    assert (a1.n_pos, a1.n_neg) == (3, 40)
    assert not math.isnan(a1.low)  # every resample had both classes (an unstratified one would hit nan)


def test_bootstrap_percentile_matches_scipy_on_the_same_resamples():
    # Replay our resampling scheme through scipy.stats.bootstrap's percentile method on a 1-class-at-a-time
    # statistic: with fakes held fixed, AUC is the mean over reals of P(fake > real) -> scipy's own percentile CI.
    rng = np.random.default_rng(8)
    pos = rng.normal(1, 1, 50)
    neg = rng.normal(0, 1, 70)
    per_neg = np.array([(pos > v).mean() + 0.5 * (pos == v).mean() for v in neg])
    ref = sps.bootstrap((per_neg,), np.mean, n_resamples=4000, method="percentile", confidence_level=0.9,
                        random_state=np.random.default_rng(3)).confidence_interval
    # Our bootstrap also resamples fakes, so it is wider; with fakes fixed the scales must agree within reason.
    ours = stats.bootstrap_auc_ci(np.r_[np.ones(50, int), np.zeros(70, int)], np.r_[pos, neg], n_resamples=4000,
                                  confidence=0.9, seed=3)
    assert ours.low <= ref.low + 0.01 and ours.high >= ref.high - 0.01
    assert (ours.high - ours.low) < 2.5 * (ref.high - ref.low)


def test_paired_t_greater_against_scipy_and_by_hand():
    v2 = np.array([0.71, 0.74, 0.69, 0.77])
    v1 = np.array([0.65, 0.70, 0.68, 0.70])
    res = stats.paired_t_greater(v2, v1)
    d = v2 - v1
    t = d.mean() / (d.std(ddof=1) / math.sqrt(4))
    assert res.df == 3 and res.n_pairs == 4
    assert res.t == pytest.approx(t)
    assert res.p_value == pytest.approx(sps.t.sf(t, 3))
    assert res.p_value == pytest.approx(sps.ttest_rel(v2, v1, alternative="greater").pvalue)


def test_paired_t_is_undefined_with_one_seed_or_zero_variance():
    one = stats.paired_t_greater([0.7], [0.6])
    assert one.df == 0 and math.isnan(one.p_value)
    flat = stats.paired_t_greater([0.7, 0.8], [0.6, 0.7])
    assert flat.mean_diff == pytest.approx(0.1) and math.isnan(flat.p_value)


def test_mean_sd_states_ddof():
    r = stats.mean_sd([0.6, 0.7, 0.8])
    assert r.ddof == 1 and r.sd == pytest.approx(0.1) and r.mean == pytest.approx(0.7)
    assert stats.mean_sd([0.6, 0.8], ddof=0).sd == pytest.approx(0.1)
    assert math.isnan(stats.mean_sd([0.5]).sd)


def test_confusion_hand_worked():
    c = stats.confusion([1, 1, 1, 0, 0], [0.9, 0.5, 0.2, 0.6, 0.1], threshold=0.5)
    assert (c.tn, c.fp, c.fn, c.tp) == (1, 1, 1, 2)
    assert c.accuracy == pytest.approx(3 / 5) and c.precision == pytest.approx(2 / 3) and c.recall == pytest.approx(2 / 3)
    assert not c.predicted_one_class
    assert stats.confusion([1, 0], [0.2, 0.3]).predicted_one_class  # everything called real


def test_input_checks():
    with pytest.raises(ValueError, match="0 \\(real\\) or 1"):
        stats.auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="same length"):
        stats.auc([0, 1], [0.1])
    with pytest.raises(ValueError, match="finite"):
        stats.auc([0, 1], [0.1, float("nan")])


# --- average precision, EER, DeLong, paired / hierarchical bootstrap, Wilcoxon, Holm ---------------------------

from sklearn.metrics import average_precision_score, roc_curve  # noqa: E402


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_average_precision_matches_sklearn(seed, ties):
    y, s = _data(n_pos=20 + 10 * seed, n_neg=70, shift=0.7, seed=seed, ties=ties)
    perm = np.random.default_rng(seed).permutation(len(y))  # labels not grouped by class
    assert stats.average_precision(y[perm], s[perm]) == pytest.approx(average_precision_score(y[perm], s[perm]),
                                                                       abs=1e-12)


def test_average_precision_heavy_ties_and_edge_cases():
    rng = np.random.default_rng(9)
    for _ in range(20):
        y = rng.integers(0, 2, 30)
        y[0] = 1
        s = rng.integers(0, 4, 30) / 4  # only 4 distinct scores
        assert stats.average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert stats.average_precision([1, 1, 0], [0.2, 0.2, 0.2]) == pytest.approx(2 / 3)  # one threshold: precision
    assert math.isnan(stats.average_precision([0, 0], [0.1, 0.2]))


def _eer_reference(y, s):
    # Brute force from scikit-learn's full ROC: scan every segment for the sign change of FNR - FPR.
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    fnr = 1 - tpr
    for i in range(1, len(fpr)):
        g0, g1 = fnr[i - 1] - fpr[i - 1], fnr[i] - fpr[i]
        if g0 > 0 >= g1:
            w = g0 / (g0 - g1)
            t = thr[i] if not np.isfinite(thr[i - 1]) else thr[i - 1] + w * (thr[i] - thr[i - 1])
            return fpr[i - 1] + w * (fpr[i] - fpr[i - 1]), t, fnr[i - 1] + w * (fnr[i] - fnr[i - 1])
    raise AssertionError("no crossing")


def test_eer_hand_worked():
    # thresholds 0.9, 0.6, 0.4, 0.1 -> (FPR, TPR) = (0, .5), (.5, .5), (.5, 1), (1, 1): FPR = FNR = .5 at 0.6
    r = stats.eer([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9])
    assert r.eer == pytest.approx(0.5) and r.threshold == pytest.approx(0.6)


def test_eer_interpolates_between_bracketing_points():
    # thresholds 0.9, 0.5, 0.1 -> (FPR, TPR) = (0, .5), (.5, 1), (1, 1): FNR - FPR goes .5 -> -.5 between the
    # first two points, so halfway: EER = (0 + .5) / 2, threshold = (0.9 + 0.5) / 2
    r = stats.eer([1, 0, 1, 0], [0.9, 0.5, 0.5, 0.1])
    assert r.eer == pytest.approx(0.25) and r.threshold == pytest.approx(0.7)


def test_eer_perfect_ranker_and_one_class():
    r = stats.eer([1, 1, 0, 0], [0.9, 0.8, 0.3, 0.2])
    assert r.eer == 0.0 and r.threshold == pytest.approx(0.8)
    assert math.isnan(stats.eer([1, 1], [0.1, 0.2]).eer) and math.isnan(stats.eer([0, 0], [0.1, 0.2]).threshold)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_eer_matches_brute_force_from_sklearn_roc(seed, ties):
    y, s = _data(n_pos=15 + 7 * seed, n_neg=40, shift=0.3 * seed, seed=seed, ties=ties)
    ref_eer, ref_thr, ref_fnr = _eer_reference(y, s)
    r = stats.eer(y, s)
    assert r.eer == pytest.approx(ref_eer, abs=1e-12) and r.eer == pytest.approx(ref_fnr, abs=1e-12)
    assert r.threshold == pytest.approx(ref_thr, abs=1e-12)


def test_eer_all_tied_scores_is_one_half():
    r = stats.eer([0, 1, 0, 1], [0.3, 0.3, 0.3, 0.3])
    assert r.eer == pytest.approx(0.5) and r.threshold == pytest.approx(0.3)


def _delong_naive(y, s1, s2):
    # Textbook DeLong (1988): psi(X, Y) = 1 if X > Y, 1/2 if tied; V10 per fake, V01 per real, S = S10/m + S01/n.
    y = np.asarray(y)
    out = []
    for s in (s1, s2):
        x, r = s[y == 1], s[y == 0]
        psi = (x[:, None] > r[None, :]) + 0.5 * (x[:, None] == r[None, :])
        out.append((psi.mean(), psi.mean(axis=1), psi.mean(axis=0)))
    m, n = len(out[0][1]), len(out[0][2])
    v10 = np.array([o[1] for o in out])
    v01 = np.array([o[2] for o in out])
    s10 = (v10 - v10.mean(axis=1, keepdims=True)) @ (v10 - v10.mean(axis=1, keepdims=True)).T / (m - 1)
    s01 = (v01 - v01.mean(axis=1, keepdims=True)) @ (v01 - v01.mean(axis=1, keepdims=True)).T / (n - 1)
    cov = s10 / m + s01 / n
    se = math.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    return out[0][0], out[1][0], se, (out[0][0] - out[1][0]) / se


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_delong_matches_naive_structural_components(seed, ties):
    rng = np.random.default_rng(seed)
    y, s1 = _data(n_pos=40 + seed, n_neg=55, shift=1.0, seed=seed, ties=ties)
    s2 = 0.6 * s1 + rng.normal(0, 0.8, len(y))  # correlated with the candidate
    if ties:
        s2 = np.round(s2, 1)
    a1, a2, se, z = _delong_naive(y, s1, s2)
    r = stats.delong_test(y, s1, s2)
    assert (r.n_pos, r.n_neg, r.alternative) == (40 + seed, 55, "greater")
    assert r.auc_candidate == pytest.approx(a1, abs=1e-10) and r.auc_baseline == pytest.approx(a2, abs=1e-10)
    assert r.auc_candidate == pytest.approx(roc_auc_score(y, s1), abs=1e-12)
    assert r.diff == pytest.approx(a1 - a2, abs=1e-10)
    assert r.se == pytest.approx(se, abs=1e-10) and r.z == pytest.approx(z, abs=1e-10)
    assert r.p_value == pytest.approx(sps.norm.sf(r.z), abs=1e-15)


def test_delong_identical_scores_and_clearly_better_candidate():
    y, s = _data(shift=1.5, seed=4)
    same = stats.delong_test(y, s, s.copy())
    assert same.diff == 0 and math.isnan(same.z) and math.isnan(same.p_value)
    noise = np.random.default_rng(5).normal(0, 1, len(y))
    better = stats.delong_test(y, s, noise)  # real signal against pure noise
    assert better.diff > 0.2 and better.p_value < 1e-3
    worse = stats.delong_test(y, noise, s)  # one-sided: the same evidence the other way round gives p near 1
    assert worse.p_value > 1 - 1e-3 and worse.p_value == pytest.approx(1 - better.p_value)
    assert math.isnan(stats.delong_test([1, 1], [0.2, 0.3], [0.1, 0.4]).auc_candidate)


def test_resampled_aucs_match_sklearn_row_by_row():
    # The reference's counting shortcut against roc_auc_score on explicit resamples (ties included).
    y, s = _data(n_pos=25, n_neg=35, seed=6, ties=True)
    pos, neg = s[y == 1], s[y == 0]
    rng = np.random.default_rng(1)
    ip, ineg = rng.integers(0, 25, (50, 25)), rng.integers(0, 35, (50, 35))
    got = stats_reference._resampled_aucs(pos, neg, ip, ineg)
    yb = np.r_[np.ones(25, int), np.zeros(35, int)]
    ref = [roc_auc_score(yb, np.r_[pos[ip[b]], neg[ineg[b]]]) for b in range(50)]
    np.testing.assert_allclose(got, ref, atol=1e-12)


@pytest.mark.parametrize("n_pos, n_neg, decimals, reals_looked_up, ties_across", [
    (25, 35, 1, False, True),  # heavy ties across the classes: the slots "at" a score are used
    (25, 35, None, False, False),  # continuous scores: no tie across classes, the one-slot path
    (3, 400, 2, False, True),  # a tiny class of fakes: they are looked up, the reals counted
    (400, 3, 2, True, True),  # a tiny class of reals: looked up instead (negated scores)
    (400, 3, None, True, False),
    (30, 30, 0, False, True),  # a handful of distinct scores
])
def test_win_counter_matches_sklearn_row_by_row(n_pos, n_neg, decimals, reals_looked_up, ties_across):
    # The fast count (one class looked up, the other histogrammed into slots) against roc_auc_score resample by
    # resample, exactly: wins2 / (2 m n) is the float that ranking gives. Both parts of each class are exercised.
    rng = np.random.default_rng(n_pos + n_neg)
    s = np.r_[rng.normal(0.7, 1, n_pos), rng.normal(0, 1, n_neg)]
    s = s if decimals is None else np.round(s, decimals)
    pos, neg = s[:n_pos], s[n_pos:]
    counter = stats._WinCounter(pos, neg)
    assert counter.look_up_reals is reals_looked_up and (counter.table is not None) is ties_across
    ip, ineg = rng.integers(0, n_pos, (60, n_pos)), rng.integers(0, n_neg, (60, n_neg))
    wins2 = counter.wins2(ip, ineg)
    assert wins2.dtype == np.int64
    yb = np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]
    ref = np.array([roc_auc_score(yb, np.r_[pos[ip[b]], neg[ineg[b]]]) for b in range(60)])
    np.testing.assert_allclose(wins2 / (2 * n_pos * n_neg), ref, rtol=0, atol=1e-15)
    # by hand, resample 0: 2 per pair the fake wins, 1 per tie
    x, r = pos[ip[0]][:, None], neg[ineg[0]][None, :]
    assert wins2[0] == 2 * (x > r).sum() + (x == r).sum()


@pytest.mark.parametrize("n_rows, draw_entries", [(7, 10**6), (7, 48), (7, 16), (7, 1), (0, 16)])
def test_resamples_are_the_whole_draws_in_blocks(n_rows, draw_entries, monkeypatch):
    # The fakes' indices of every resample, then the reals': block by block (drawn and counted on threads) the same
    # numbers, in the same order, as the reference's two whole draws, and the generator left where they leave it
    # (the hierarchical bootstrap draws on from there).
    monkeypatch.setattr(stats, "_DRAW_ENTRIES", draw_entries)  # 16 entries: one resample of 11 + 5 per block
    whole = np.random.default_rng(4)
    ip, ineg = whole.integers(0, 11, (n_rows, 11)), whole.integers(0, 5, (n_rows, 5))
    seen = []

    def count(bp, bn):
        seen.append(len(bp))
        return np.c_[bp, bn]  # every draw of each resample, one row per resample

    rng = np.random.default_rng(4)
    got = stats._count_resamples(count, rng, n_rows, 11, 5)
    np.testing.assert_array_equal(got.reshape(n_rows, 16), np.c_[ip, ineg])
    assert sum(seen) == n_rows and max(seen, default=0) == min(n_rows, max(1, draw_entries // 16))
    assert rng.integers(0, 2**31, 4).tolist() == whole.integers(0, 2**31, 4).tolist()


def test_paired_bootstrap_seeded_and_contains_point():
    rng = np.random.default_rng(2)
    y, s1 = _data(n_pos=50, n_neg=60, seed=7)
    s2 = s1 + rng.normal(0, 1.0, len(y))
    a = stats.paired_bootstrap_auc_diff(y, s1, s2, n_resamples=1000, seed=3)
    assert a == stats.paired_bootstrap_auc_diff(y, s1, s2, n_resamples=1000, seed=3)
    assert a.diff == pytest.approx(roc_auc_score(y, s1) - roc_auc_score(y, s2), abs=1e-12)
    assert a.low <= a.diff <= a.high and a.confidence == 0.95 and a.n_resamples == 1000
    assert 0.5 < a.prob_positive <= 1 and "not a p-value" in a.note
    b = stats.paired_bootstrap_auc_diff(y, s1, s2, n_resamples=1000, seed=np.random.SeedSequence(3))
    assert b == a  # an int seed and its SeedSequence give the same stream


def test_paired_bootstrap_identical_and_dominating_models():
    y, s = _data(n_pos=30, n_neg=30, seed=8)
    same = stats.paired_bootstrap_auc_diff(y, s, s.copy(), n_resamples=500, seed=1)
    assert (same.diff, same.low, same.high, same.prob_positive) == (0.0, 0.0, 0.0, 0.0)
    perfect = np.where(y == 1, 0.9, 0.1)
    flat = np.full(len(y), 0.5)  # AUC 1/2 on every resample; the perfect ranker has AUC 1 on every resample
    dom = stats.paired_bootstrap_auc_diff(y, perfect, flat, n_resamples=500, seed=1)
    assert dom.prob_positive == 1.0 and (dom.diff, dom.low, dom.high) == (0.5, 0.5, 0.5)
    assert math.isnan(stats.paired_bootstrap_auc_diff([1, 1], [0.1, 0.2], [0.2, 0.1]).low)


def test_paired_bootstrap_se_agrees_with_delong():
    # Two independent routes to the sampling variability of the difference: percentile width ~ 2 z se(DeLong).
    rng = np.random.default_rng(11)
    y, s1 = _data(n_pos=300, n_neg=300, seed=9)
    s2 = 0.7 * s1 + rng.normal(0, 0.8, len(y))
    dl = stats.delong_test(y, s1, s2)
    bs = stats.paired_bootstrap_auc_diff(y, s1, s2, n_resamples=2000, seed=4)
    assert (bs.high - bs.low) == pytest.approx(2 * 1.959964 * dl.se, rel=0.15)


def test_wilcoxon_matches_scipy_and_refuses_small_samples():
    cand = np.array([0.71, 0.74, 0.69, 0.77, 0.73, 0.75, 0.70])
    base = np.array([0.65, 0.70, 0.70, 0.70, 0.69, 0.72, 0.66])
    r = stats.wilcoxon_greater(cand, base)
    ref = sps.wilcoxon(cand, base, alternative="greater")
    assert r.n_pairs == 7 and r.reason is None
    assert r.statistic == pytest.approx(ref.statistic) and r.p_value == pytest.approx(ref.pvalue)
    six = stats.wilcoxon_greater(cand[:6], base[:6])
    assert six.p_value == pytest.approx(sps.wilcoxon(cand[:6], base[:6], alternative="greater").pvalue)
    few = stats.wilcoxon_greater(cand[:5], base[:5])
    assert math.isnan(few.p_value) and few.n_pairs == 5 and "fewer than 6" in few.reason
    assert few.reason == "fewer than 6 pairs (5)" and (r.n_zero, six.n_zero, few.n_zero) == (0, 0, 0)
    with pytest.raises(ValueError, match="same length"):
        stats.wilcoxon_greater(cand, base[:6])


def test_wilcoxon_counts_only_the_pairs_scipy_ranks():
    # scipy's default zero_method="wilcox" drops zero differences before ranking, so the minimum of 6 pairs and the
    # pairs reported are the nonzero ones. Six seeds, two of them with equal AUCs: scipy ranks 4 and its p would be
    # 2**-4 = 0.0625, a test that cannot reach 0.05 and is shown as if 6 pairs were behind it.
    cand6 = np.array([0.75, 0.80, 0.70, 0.90, 0.65, 0.85])
    base6 = np.array([0.75, 0.70, 0.70, 0.80, 0.60, 0.70])  # seeds 1 and 3 tie
    assert sps.wilcoxon(cand6, base6, alternative="greater").pvalue == pytest.approx(2 ** -4)
    six = stats.wilcoxon_greater(cand6, base6)
    assert math.isnan(six.p_value) and math.isnan(six.statistic)
    assert (six.n_pairs, six.n_zero) == (4, 2)
    assert six.reason == "fewer than 6 pairs (4; 2 with zero difference left out)"
    # Eight seeds, two ties: 6 pairs ranked, enough to run; the same statistic and p as scipy, all from 6 pairs.
    cand8, base8 = np.r_[cand6, 0.95, 0.72], np.r_[base6, 0.85, 0.71]
    eight = stats.wilcoxon_greater(cand8, base8)
    ref = sps.wilcoxon(cand8, base8, alternative="greater")
    assert (eight.n_pairs, eight.n_zero, eight.reason) == (6, 2, None)
    assert eight.statistic == pytest.approx(ref.statistic) and eight.p_value == pytest.approx(ref.pvalue)
    assert eight.p_value == pytest.approx(2 ** -6)  # every nonzero difference positive: the smallest p of 6 ranks
    # All differences zero: nothing to rank.
    flat = stats.wilcoxon_greater(cand8, cand8.copy())
    assert math.isnan(flat.p_value) and (flat.n_pairs, flat.n_zero) == (0, 8)
    assert flat.reason == "fewer than 6 pairs (0; 8 with zero difference left out)"
    with pytest.raises(ValueError, match=r"^min_pairs must be at least 1, got 0$"):
        stats.wilcoxon_greater(cand8, base8, min_pairs=0)


def _seeds(k, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for j in range(k):
        y, s1 = _data(n_pos=30 + 5 * j, n_neg=40 + 3 * j, shift=1.0, seed=100 + j)
        out.append((y, s1, 0.5 * s1 + rng.normal(0, 1, len(y))))
    return out


def test_hierarchical_bootstrap_point_ci_and_seed():
    per_seed = _seeds(5)
    r = stats.hierarchical_bootstrap_mean_diff(per_seed, n_resamples=1000, seed=2)
    ref = np.mean([roc_auc_score(y, a) - roc_auc_score(y, b) for y, a, b in per_seed])
    assert r.mean_diff == pytest.approx(ref, abs=1e-12)
    assert r.low <= r.mean_diff <= r.high and (r.n_seeds, r.n_resamples, r.confidence) == (5, 1000, 0.95)
    assert r == stats.hierarchical_bootstrap_mean_diff(per_seed, n_resamples=1000, seed=2)
    assert r != stats.hierarchical_bootstrap_mean_diff(per_seed, n_resamples=1000, seed=3)


def test_hierarchical_bootstrap_with_one_seed_is_a_sample_level_interval():
    per_seed = _seeds(1)
    r = stats.hierarchical_bootstrap_mean_diff(per_seed, n_resamples=2000, seed=5)
    y, a, b = per_seed[0]
    flat = stats.paired_bootstrap_auc_diff(y, a, b, n_resamples=2000, seed=5)
    assert r.n_seeds == 1 and r.mean_diff == pytest.approx(flat.diff, abs=1e-12)
    assert r.low <= r.mean_diff <= r.high and r.high - r.low > 0
    assert (r.high - r.low) == pytest.approx(flat.high - flat.low, rel=0.15)


def test_hierarchical_bootstrap_covers_seed_spread_and_handles_bad_input():
    # Seeds whose differences disagree: the two-level CI must be at least as wide as a seed-level-only percentile
    # bootstrap of the per-seed differences (scipy.stats.bootstrap), since it adds sample noise on top.
    rng = np.random.default_rng(3)
    per_seed = []
    for j, noise in enumerate([0.1, 2.0, 0.3, 3.0, 0.2, 1.0]):
        y, s1 = _data(n_pos=80, n_neg=80, shift=2.0, seed=200 + j)
        per_seed.append((y, s1, s1 + rng.normal(0, noise, len(y))))
    r = stats.hierarchical_bootstrap_mean_diff(per_seed, n_resamples=2000, seed=1)
    d = np.array([roc_auc_score(y, a) - roc_auc_score(y, b) for y, a, b in per_seed])
    ref = sps.bootstrap((d,), np.mean, n_resamples=4000, method="percentile",
                        random_state=np.random.default_rng(0)).confidence_interval
    assert r.high - r.low >= 0.9 * (ref.high - ref.low)
    assert r.low <= r.mean_diff <= r.high
    assert math.isnan(stats.hierarchical_bootstrap_mean_diff([]).mean_diff)
    assert math.isnan(stats.hierarchical_bootstrap_mean_diff([([1, 1], [0.1, 0.2], [0.2, 0.1])]).low)


def test_holm_hand_worked_and_properties():
    # sorted 0.01, 0.03, 0.04 -> 3 * 0.01, 2 * 0.03, max(0.06, 1 * 0.04) -> back in the input order
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([0.5, 0.4, 0.9]) == pytest.approx([1.0, 1.0, 1.0])  # capped at 1
    out = stats.holm([0.02, float("nan"), 0.01])  # nan passed through and not counted: m = 2
    assert math.isnan(out[1]) and out[0] == pytest.approx(0.02) and out[2] == pytest.approx(0.02)
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 0.2, 12)
    adj = np.array(stats.holm(p))
    order = np.argsort(p)
    assert np.all(np.diff(adj[order]) >= 0) and np.all(adj >= p) and np.all(adj <= 1)
    assert np.all(adj <= np.minimum(p * 12, 1) + 1e-15)  # never more conservative than Bonferroni
    assert stats.holm([]) == []


# --- F1, Brier, the t band of a mean, the percentile interval ------------------------------------------------------

from sklearn.metrics import brier_score_loss, f1_score  # noqa: E402


def test_f1_hand_worked_and_against_sklearn():
    c = stats.confusion([1, 1, 1, 0, 0], [0.9, 0.5, 0.2, 0.6, 0.1], threshold=0.5)  # TP 2, FP 1, FN 1
    assert c.f1 == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert c.predicted_fake_share == pytest.approx(3 / 5)
    for seed in range(4):
        y, s = _data(n_pos=20, n_neg=30, seed=seed)
        for threshold in (-0.5, 0.5, 1.5):
            ref = f1_score(y, (s >= threshold).astype(int), zero_division=0.0)
            assert stats.confusion(y, s, threshold=threshold).f1 == pytest.approx(ref, abs=1e-12)
    assert stats.confusion([1, 0], [0.1, 0.2]).f1 == 0.0  # a fake missed, nothing called fake: 0, as sklearn says
    assert math.isnan(stats.confusion([0, 0], [0.1, 0.2]).f1)  # no fake and none called fake: undefined
    assert math.isnan(stats.confusion([], []).predicted_fake_share)


def test_brier_score_hand_worked():
    # (0.9 - 1)^2 + (0.2 - 0)^2 + (0.4 - 1)^2 + (0.5 - 0)^2 = 0.01 + 0.04 + 0.36 + 0.25 = 0.66, over 4 samples
    assert stats.brier_score([1, 0, 1, 0], [0.9, 0.2, 0.4, 0.5]) == pytest.approx(0.165)
    assert stats.brier_score([1, 0], [1.0, 0.0]) == 0.0  # perfect and certain
    assert stats.brier_score([1, 0, 1], [0.5, 0.5, 0.5]) == pytest.approx(0.25)  # a constant 1/2
    assert stats.brier_score([1, 1], [0.0, 0.0]) == 1.0  # certain and wrong; one class is fine
    assert math.isnan(stats.brier_score([], []))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_brier_score_matches_sklearn(seed):
    y, s = _data(seed=seed)
    p = 1 / (1 + np.exp(-s))
    assert stats.brier_score(y, p) == pytest.approx(brier_score_loss(y, p), abs=1e-12)


def test_brier_score_input_checks():
    with pytest.raises(ValueError, match=r"^the Brier score needs probabilities: scores must lie in \[0, 1\]$"):
        stats.brier_score([0, 1], [0.2, 1.2])
    with pytest.raises(ValueError, match=r"^the Brier score needs probabilities: scores must lie in \[0, 1\]$"):
        stats.brier_score([0, 1], [-0.1, 0.5])
    with pytest.raises(ValueError, match="0 \\(real\\) or 1"):
        stats.brier_score([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="same length"):
        stats.brier_score([0, 1], [0.1])


def test_mean_band_against_scipy_t_interval():
    values = [0.71, 0.74, 0.69, 0.77, 0.70]
    for confidence in (0.9, 0.95):
        r = stats.mean_band(values, confidence=confidence)
        low, high = sps.t.interval(confidence, len(values) - 1, loc=np.mean(values), scale=sps.sem(values))
        assert (r.low, r.high) == (pytest.approx(low), pytest.approx(high))
        assert r.mean == pytest.approx(np.mean(values)) and r.sd == pytest.approx(np.std(values, ddof=1))
        assert (r.n, r.ddof, r.confidence) == (5, 1, confidence)
    # two values, by hand: mean 0.7, sd sqrt(0.02), t_{0.975, 1} = 12.706...
    r = stats.mean_band([0.6, 0.8], confidence=0.95)
    half = 12.706204736 * math.sqrt(0.02) / math.sqrt(2)
    assert (r.low, r.high) == (pytest.approx(0.7 - half), pytest.approx(0.7 + half))
    one = stats.mean_band([0.7])
    assert one.mean == 0.7 and math.isnan(one.low) and math.isnan(one.high) and one.n == 1
    with pytest.raises(AttributeError):
        one.mean = 0.0  # a frozen result


def test_percentile_intervals_are_the_equal_tailed_quantiles_of_their_replicates():
    # Replay bootstrap_auc_ci's resamples by hand (same generator, same draws) and take the quantiles with numpy.
    y, s = _data(n_pos=15, n_neg=20, seed=12)
    ci = stats.bootstrap_auc_ci(y, s, n_resamples=400, confidence=0.8, seed=5)
    rng = np.random.default_rng(5)
    pos, neg = s[y == 1], s[y == 0]
    bp = pos[rng.integers(0, 15, (400, 15))]
    bn = neg[rng.integers(0, 20, (400, 20))]
    boot = [roc_auc_score(np.r_[np.ones(15), np.zeros(20)], np.r_[bp[b], bn[b]]) for b in range(400)]
    assert (ci.low, ci.high) == (pytest.approx(np.quantile(boot, 0.1)), pytest.approx(np.quantile(boot, 0.9)))
    assert ci.confidence == 0.8


# --- the fast bootstraps against the slow reference they replaced (tests/stats_reference.py) -----------------------
# Same seed -> the same resample draws -> the same AUC per resample (both are the correctly rounded value of the same
# rational) -> the same interval, exactly. "tiny chunks" forces many draw blocks and count chunks at small sizes.

def _scores(n_pos, n_neg, decimals, seed, shift=0.8):
    rng = np.random.default_rng(seed)
    s = np.r_[rng.normal(shift, 1, n_pos), rng.normal(0, 1, n_neg)]
    y = np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]
    perm = rng.permutation(len(y))  # classes interleaved, as in a real score file
    s = s if decimals is None else np.round(s, decimals)
    return y[perm], s[perm], np.round(0.6 * s[perm] + rng.normal(0, 0.8, len(y)), 2 if decimals is not None else 12)


SIZES = [  # (fakes, reals, decimals of the scores: None = continuous)
    (60, 80, None), (60, 80, 2), (40, 40, 0), (3, 500, None), (500, 3, 2), (1, 50, 2), (50, 1, None), (2, 2, None),
    (2000, 3000, 2), (2000, 3000, None)]


@pytest.fixture(params=["default chunks", "tiny chunks"])
def chunks(request, monkeypatch):
    if request.param == "tiny chunks":
        monkeypatch.setattr(stats, "_DRAW_ENTRIES", 97)
        monkeypatch.setattr(stats, "_COUNT_ENTRIES", 61)
    return request.param


@pytest.mark.parametrize("n_pos, n_neg, decimals", SIZES)
def test_bootstrap_auc_ci_equals_the_reference(n_pos, n_neg, decimals, chunks):
    y, s, _ = _scores(n_pos, n_neg, decimals, seed=n_pos + n_neg)
    for seed in (0, 11, np.random.SeedSequence([3, 2024])):
        for n_resamples, confidence in ((300, 0.95), (257, 0.8)):
            got = stats.bootstrap_auc_ci(y, s, n_resamples=n_resamples, confidence=confidence, seed=seed)
            assert got == stats_reference.bootstrap_auc_ci(y, s, n_resamples=n_resamples, confidence=confidence,
                                                           seed=seed)
            assert (got.n_pos, got.n_neg, got.n_resamples) == (n_pos, n_neg, n_resamples)


@pytest.mark.parametrize("n_pos, n_neg, decimals", SIZES)
def test_paired_bootstrap_equals_the_reference(n_pos, n_neg, decimals, chunks):
    y, s1, s2 = _scores(n_pos, n_neg, decimals, seed=7 + n_pos)
    for seed in (0, 5, np.random.SeedSequence(9)):
        got = stats.paired_bootstrap_auc_diff(y, s1, s2, n_resamples=311, seed=seed)
        assert got == stats_reference.paired_bootstrap_auc_diff(y, s1, s2, n_resamples=311, seed=seed)
    # identical models: every resample's difference exactly 0 in both, so prob_positive is 0 in both
    same = stats.paired_bootstrap_auc_diff(y, s1, s1.copy(), n_resamples=200, seed=1)
    assert same == stats_reference.paired_bootstrap_auc_diff(y, s1, s1.copy(), n_resamples=200, seed=1)
    assert same.prob_positive == 0.0


def test_bootstraps_equal_the_reference_with_all_scores_tied_and_perfect_separation(chunks):
    y = np.r_[np.ones(30, int), np.zeros(45, int)]
    flat, perfect = np.full(75, 0.5), np.where(y == 1, 0.9, 0.1)
    for s in (flat, perfect):
        assert (stats.bootstrap_auc_ci(y, s, n_resamples=150, seed=2)
                == stats_reference.bootstrap_auc_ci(y, s, n_resamples=150, seed=2))
    assert (stats.paired_bootstrap_auc_diff(y, perfect, flat, n_resamples=150, seed=2)
            == stats_reference.paired_bootstrap_auc_diff(y, perfect, flat, n_resamples=150, seed=2))


@pytest.mark.parametrize("sizes", [
    [(30, 40, None), (5, 60, 1), (50, 50, 2), (1, 30, None)],  # mixed sizes, ties, a seed with a single fake
    [(200, 300, 2)] * 3,
    [(40, 40, None)],  # one seed: every resample draws it once
])
def test_hierarchical_bootstrap_equals_the_reference(sizes, chunks):
    per_seed = [_scores(m, n, d, seed=100 + j) for j, (m, n, d) in enumerate(sizes)]
    for seed in (0, 3, np.random.SeedSequence([1, 2])):
        for n_resamples in (200, 333):
            got = stats.hierarchical_bootstrap_mean_diff(per_seed, n_resamples=n_resamples, seed=seed)
            assert got == stats_reference.hierarchical_bootstrap_mean_diff(per_seed, n_resamples=n_resamples, seed=seed)


def test_bootstraps_equal_the_reference_at_the_field_s_scale():
    # 50,000 test samples per domain (float32 probabilities, as in a score file: some ties); the reference holds a
    # (B, n) array, so B is small here; bench/report.py times both at B = 2,000.
    rng = np.random.default_rng(50)
    y = (rng.random(50_000) < 0.5).astype(int)
    s1 = (1 / (1 + np.exp(-(rng.normal(0, 1, 50_000) + 1.2 * y)))).astype(np.float32).astype(np.float64)
    s2 = (1 / (1 + np.exp(-(0.5 * np.log(s1 / (1 - s1)) + rng.normal(0, 1, 50_000))))).astype(np.float32)
    s2 = s2.astype(np.float64)
    assert stats.bootstrap_auc_ci(y, s1, n_resamples=100, seed=8) == stats_reference.bootstrap_auc_ci(
        y, s1, n_resamples=100, seed=8)
    assert stats.paired_bootstrap_auc_diff(y, s1, s2, n_resamples=100, seed=8) == (
        stats_reference.paired_bootstrap_auc_diff(y, s1, s2, n_resamples=100, seed=8))
    per_seed = [(y, s1, s2), (y[:20_000], s2[:20_000], s1[:20_000])]
    assert stats.hierarchical_bootstrap_mean_diff(per_seed, n_resamples=100, seed=8) == (
        stats_reference.hierarchical_bootstrap_mean_diff(per_seed, n_resamples=100, seed=8))


def _peak_mib(fn) -> float:
    # numpy reports its array buffers to tracemalloc (from every thread), so this is the call's own peak
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_bootstrap_memory_is_bounded_by_the_chunk_not_by_b_times_n():
    # The reference holds (B, n) index, score and rank arrays (B = 2,000 resamples of 50,000 samples: 100M entries
    # each); the fast path holds a few blocks of about _DRAW_ENTRIES draws, whatever B.
    y = np.r_[np.ones(25_000, int), np.zeros(25_000, int)]
    s = np.random.default_rng(0).normal(size=50_000) + y
    small = _peak_mib(lambda: stats.bootstrap_auc_ci(y, s, n_resamples=200, seed=1))
    large = _peak_mib(lambda: stats.bootstrap_auc_ci(y, s, n_resamples=800, seed=1))
    reference = _peak_mib(lambda: stats_reference.bootstrap_auc_ci(y, s, n_resamples=100, seed=1))
    # Flat in B: 4x the resamples may hold a block or two more in flight (the drawing thread runs ahead by up to two
    # blocks of ~8 MiB, depending on scheduling), never the (B, n) arrays (600 x 50,000 x 8 bytes = 229 MiB more each).
    assert large < 64 and large - small < 20
    assert reference > 4 * large  # what it replaces: already 100 x 50,000 floats per array at B = 100
    paired = _peak_mib(lambda: stats.paired_bootstrap_auc_diff(y, s, s[::-1].copy(), n_resamples=400, seed=1))
    assert paired < 64


# --- the other tail of the paired t-test; probability of improvement (seed-level and per-sample) ---------------------

def test_paired_t_less_against_scipy_and_the_greater_tail():
    cand = np.array([0.61, 0.66, 0.60, 0.64])
    base = np.array([0.65, 0.70, 0.68, 0.70])
    less = stats.paired_t(cand, base, alternative="less")
    greater = stats.paired_t_greater(cand, base)
    ref = sps.ttest_rel(cand, base, alternative="less")
    assert (less.alternative, less.df, less.n_pairs) == ("less", 3, 4)
    assert less.t == pytest.approx(ref.statistic) and less.p_value == pytest.approx(ref.pvalue)
    d = cand - base  # by hand: the lower tail of Student's t at t = mean / (sd / sqrt(n))
    assert less.p_value == pytest.approx(sps.t.cdf(d.mean() / (d.std(ddof=1) / 2), 3))
    assert less.p_value + greater.p_value == pytest.approx(1.0) and less.t == greater.t
    assert greater == stats.paired_t(cand, base, alternative="greater")
    assert math.isnan(stats.paired_t([0.7], [0.6], alternative="less").p_value)
    with pytest.raises(ValueError, match=r"^alternative must be 'greater' or 'less', got 'two-sided'$"):
        stats.paired_t(cand, base, alternative="two-sided")


def test_placements_hand_worked():
    # fakes 0.9, 0.6; reals 0.5, 0.1. Candidate: every fake above every real, every placement 1 (AUC 1).
    # Baseline moves the second fake to 0.4: it beats the real at 0.1 only (1/2), and the real at 0.5 now has one of
    # the two fakes above it (1/2); the others stay at 1 (AUC 3/4).
    y = [1, 1, 0, 0]
    np.testing.assert_array_equal(stats.placements(y, [0.9, 0.6, 0.5, 0.1]), [1, 1, 1, 1])
    np.testing.assert_array_equal(stats.placements(y, [0.9, 0.4, 0.5, 0.1]), [1, 0.5, 0.5, 1])
    # a tie across the classes counts half for both: fake 0.5 vs reals 0.5 and 0.2 -> (1/2 + 1) / 2
    np.testing.assert_array_equal(stats.placements([1, 0, 0], [0.5, 0.5, 0.2]), [0.75, 0.5, 1])
    assert np.isnan(stats.placements([1, 1], [0.2, 0.3])).all()


@pytest.mark.parametrize("n_pos, n_neg, decimals", [(12, 17, None), (12, 17, 1), (3, 25, 1), (25, 2, 0), (1, 1, None)])
def test_placements_match_the_double_loop_and_average_to_the_auc(n_pos, n_neg, decimals):
    y, s, _ = _scores(n_pos, n_neg, decimals, seed=n_pos * n_neg)
    got = stats.placements(y, s)
    np.testing.assert_allclose(got, [float(p) for p in stats_reference.placements(y, s)], rtol=0, atol=1e-15)
    # the AUC is the mean placement of the fakes and, equally, of the reals
    assert got[y == 1].mean() == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert got[y == 0].mean() == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_sample_win_share_hand_worked():
    # The example above: fake 2 (1 > 1/2) and real 1 (1 > 1/2) are placed higher by the candidate, the other two tie
    # (1/2 each): fakes (1/2 + 1) / 2 = 3/4, reals likewise, balanced 3/4.
    r = stats.sample_win_share([1, 1, 0, 0], [0.9, 0.6, 0.5, 0.1], [0.9, 0.4, 0.5, 0.1])
    assert (r.share, r.share_fake, r.share_real, r.n_fake, r.n_real) == (0.75, 0.75, 0.75, 2, 2)
    # Classes of different sizes are weighted equally, not pooled. One fake, three reals; the candidate puts the fake
    # on top (placement 1), the baseline below two reals (1/3): the fake is placed higher (1). The reals at 0.5 and
    # 0.4 have the fake above them under the candidate (placement 1), not under the baseline (0): higher; the real
    # at 0.1 has it above under both (1 and 1): a tie (1/2). Fakes 1, reals (1 + 1 + 1/2) / 3 = 5/6.
    r = stats.sample_win_share([1, 0, 0, 0], [0.9, 0.5, 0.4, 0.1], [0.3, 0.5, 0.4, 0.1])
    assert (r.share_fake, r.share_real) == (1.0, pytest.approx(5 / 6)) and r.share == pytest.approx((1 + 5 / 6) / 2)
    # pooled it would be (1 + 5/2) / 4 = 7/8: the three reals would outvote the one fake
    assert r.share != pytest.approx(7 / 8)


@pytest.mark.parametrize("n_pos, n_neg, decimals", [(15, 20, None), (15, 20, 1), (4, 30, 1), (30, 3, 0), (2, 2, None)])
def test_sample_win_share_matches_the_double_loop(n_pos, n_neg, decimals):
    y, s1, s2 = _scores(n_pos, n_neg, decimals, seed=n_pos + 3 * n_neg)
    if decimals is not None:
        s2 = np.round(s2, decimals)  # ties within and across the models
    got = stats.sample_win_share(y, s1, s2)
    share, fake, real = stats_reference.sample_win_share(y, s1, s2)
    assert got.share == pytest.approx(float(share), abs=1e-15)
    assert (got.share_fake, got.share_real) == (pytest.approx(float(fake), abs=1e-15), pytest.approx(float(real), abs=1e-15))
    assert (got.n_fake, got.n_real) == (n_pos, n_neg)


def test_sample_win_share_properties():
    y, s1, s2 = _scores(30, 40, None, seed=21)
    assert stats.sample_win_share(y, s1, s1.copy()).share == 0.5  # the same model: every placement tied
    # ranks alike (an increasing transformation): every placement tied, whatever the scores
    assert stats.sample_win_share(y, 1 / (1 + np.exp(-3 * s1)), s1).share == 0.5
    ab, ba = stats.sample_win_share(y, s1, s2), stats.sample_win_share(y, s2, s1)
    assert ab.share == pytest.approx(1 - ba.share) and ab.share_fake == pytest.approx(1 - ba.share_fake)
    perfect = np.where(y == 1, 0.9, 0.1)
    assert stats.sample_win_share(y, perfect, 1 - perfect).share == 1.0  # every placement 1 against every placement 0
    one = stats.sample_win_share([1, 1], [0.2, 0.3], [0.3, 0.2])
    assert math.isnan(one.share) and (one.n_fake, one.n_real) == (2, 0)
    with pytest.raises(AttributeError):
        ab.share = 0.0  # a frozen result


def test_seed_win_share_hand_worked_and_against_the_loop():
    r = stats.seed_win_share([0.7, 0.8, 0.6], [0.6, 0.8, 0.7])  # a win, a tie, a loss: (1 + 1/2) / 3
    assert (r.share, r.wins, r.ties, r.losses, r.n_seeds, r.n_left_out) == (0.5, 1, 1, 1, 3, 0)
    assert stats.seed_win_share([0.9, 0.8], [0.5, 0.5]).share == 1.0
    rng = np.random.default_rng(3)
    for k in (1, 4, 7):
        a, b = np.round(rng.uniform(0.5, 1, k), 2), np.round(rng.uniform(0.5, 1, k), 2)
        got = stats.seed_win_share(a, b)
        assert (got.share, got.wins, got.ties, got.losses) == pytest.approx(stats_reference.seed_win_share(a, b))
    gap = stats.seed_win_share([0.7, float("nan"), 0.9], [0.6, 0.5, 0.95])  # a seed without an AUC is left out
    assert (gap.share, gap.n_seeds, gap.n_left_out) == (0.5, 2, 1)
    assert math.isnan(stats.seed_win_share([], []).share)
    with pytest.raises(ValueError, match="same length"):
        stats.seed_win_share([0.7, 0.8], [0.6])
