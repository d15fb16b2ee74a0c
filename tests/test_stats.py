"""Statistics against independent references: scikit-learn, scipy, analytic values and hand-worked examples."""

import math

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from dfsweep.orchestrator import stats


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
    ci = stats.bootstrap_auc_ci(y, s, n_resamples=2000, level=0.95, seed=7)
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
                                  level=0.9, seed=3)
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
