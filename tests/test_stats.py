"""Each statistic in harness.analysis.stats checked against an independent reference on fixed data.

References: statsmodels (test-only dependency) and scipy for Wilson, McNemar, Holm/BH, clustered
SEs and z-tests; published pass@k values and exact binomial ratios; brute-force enumeration for
permutation tests; simulation (fixed seeds) for the null false-positive rate and for power.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats as st

sm = pytest.importorskip("statsmodels.api")
from statsmodels.stats.contingency_tables import mcnemar  # noqa: E402
from statsmodels.stats.multitest import multipletests  # noqa: E402
from statsmodels.stats.proportion import proportion_confint  # noqa: E402
from statsmodels.stats.weightstats import DescrStatsW  # noqa: E402

from harness.analysis import paired, stats  # noqa: E402
from harness.analysis.paired import Comparison, NonInferiority, noninferiority, paired_compare  # noqa: E402
from harness.analysis.stats import (  # noqa: E402
    Estimate,
    adjust_pvalues,
    clustered_se,
    mean_ci,
    minimum_detectable_effect,
    minimum_detectable_effect_sd,
    pass_at_k,
    pass_at_k_estimate,
    percentiles,
    wilson_interval,
)

TOL = 1e-9


def _plain(value) -> bool:
    """A plain Python number (float/int/bool), not a numpy scalar."""
    return type(value) in (float, int, bool)


def _all_plain(result) -> bool:
    return all(_plain(v) for k, v in vars(result).items() if k not in ("method", "note"))


def _cluster_ols(y, groups):
    """statsmodels reference: SE of the intercept-only OLS with cluster-robust covariance (CR1)."""
    y = np.asarray(y, dtype=float)
    fit = sm.OLS(y, np.ones((y.size, 1))).fit(cov_type="cluster", cov_kwds={"groups": groups})
    return float(fit.params[0]), float(fit.bse[0])


# --------------------------------------------------------------------------- Wilson


@pytest.mark.parametrize(
    "k,n",
    [(0, 1), (1, 1), (0, 10), (3, 10), (10, 10), (1, 7), (50, 100), (87, 120), (999, 1000), (1, 5000)],
)
@pytest.mark.parametrize("confidence", [0.95, 0.90, 0.99])
def test_wilson_matches_statsmodels(k, n, confidence):
    lo, hi = wilson_interval(k, n, confidence)
    ref_lo, ref_hi = proportion_confint(k, n, alpha=1 - confidence, method="wilson")
    assert lo == pytest.approx(ref_lo, abs=TOL)
    assert hi == pytest.approx(ref_hi, abs=TOL)
    assert _plain(lo) and _plain(hi)
    assert 0.0 <= lo <= k / n <= hi <= 1.0


def test_wilson_edges():
    assert all(math.isnan(x) for x in wilson_interval(0, 0))
    assert wilson_interval(0, 20)[0] == 0.0
    assert wilson_interval(20, 20)[1] == 1.0
    with pytest.raises(ValueError):
        wilson_interval(5, 4)
    with pytest.raises(ValueError):
        wilson_interval(1, 4, confidence=1.0)


def test_mean_ci_binary_is_wilson():
    scores = [1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 1, 0, 1]
    est = mean_ci(scores)
    ref_lo, ref_hi = proportion_confint(9, 13, alpha=0.05, method="wilson")
    assert isinstance(est, Estimate)
    assert est.method == "wilson"
    assert est.n == 13
    assert est.mean == pytest.approx(9 / 13, abs=TOL)
    assert est.lo == pytest.approx(ref_lo, abs=TOL)
    assert est.hi == pytest.approx(ref_hi, abs=TOL)
    assert est.se == pytest.approx(math.sqrt(9 / 13 * 4 / 13 / 13), abs=TOL)
    assert _all_plain(est)
    # bools and numpy arrays are accepted alike
    assert mean_ci(np.array(scores, dtype=bool)) == est
    assert mean_ci(np.array(scores, dtype=float)) == est


# --------------------------------------------------------------------------- edge inputs


def test_mean_ci_empty_and_single():
    est = mean_ci([])
    assert est.method == "empty" and est.n == 0
    assert all(math.isnan(v) for v in (est.mean, est.lo, est.hi, est.se))

    one_binary = mean_ci([1])
    assert one_binary.method == "wilson" and one_binary.mean == 1.0
    assert one_binary.lo == pytest.approx(proportion_confint(1, 1, method="wilson")[0], abs=TOL)

    one_real = mean_ci([0.5])
    assert one_real.mean == 0.5 and one_real.n == 1
    assert math.isnan(one_real.lo) and math.isnan(one_real.hi) and math.isnan(one_real.se)

    one_clustered = mean_ci([0.5], clusters=["x"])
    assert one_clustered.mean == 0.5


def test_nan_scores_are_rejected():
    with pytest.raises(ValueError):
        mean_ci([1.0, float("nan")])
    with pytest.raises(ValueError):
        paired_compare([1, 0], [0, float("nan")])


def test_length_mismatches_are_rejected():
    with pytest.raises(ValueError):
        paired_compare([1, 0, 1], [1, 0])
    with pytest.raises(ValueError):
        mean_ci([1, 0, 1], clusters=["a", "b"])
    with pytest.raises(ValueError):
        noninferiority([1, 0], [1])


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_matches_scipy_within_monte_carlo_error():
    rng = np.random.default_rng(42)
    x = rng.uniform(0, 1, size=200).round(3)
    est = mean_ci(x, seed=0)
    assert est.method == "bootstrap"
    assert est.mean == pytest.approx(float(x.mean()), abs=TOL)

    ref = st.bootstrap(
        (x,),
        np.mean,
        confidence_level=0.95,
        n_resamples=10_000,
        method="percentile",
        random_state=np.random.default_rng(7),
    )
    # Monte-Carlo sd of a 2.5% quantile of 10k resamples is ~0.03 SE; allow 0.15 SE.
    se_ref = float(np.std(x, ddof=0)) / math.sqrt(x.size)
    assert est.lo == pytest.approx(ref.confidence_interval.low, abs=0.15 * se_ref)
    assert est.hi == pytest.approx(ref.confidence_interval.high, abs=0.15 * se_ref)
    # the bootstrap SE estimates the plug-in SE sd_pop / sqrt(n) (MC error ~0.7%)
    assert est.se == pytest.approx(se_ref, rel=0.03)
    assert _all_plain(est)


def test_bootstrap_is_deterministic_for_a_seed():
    x = [0.1, 0.5, 0.25, 0.9, 0.7, 0.3, 0.35]
    assert mean_ci(x, seed=3) == mean_ci(list(x), seed=3)
    assert mean_ci(x, seed=3).lo != mean_ci(x, seed=4).lo


def test_bootstrap_constant_scores():
    est = mean_ci([0.5] * 10)
    assert (est.mean, est.lo, est.hi, est.se) == (0.5, 0.5, 0.5, 0.0)


# --------------------------------------------------------------------------- clustered SE


def test_clustered_se_hand_computed():
    # clusters a: [1, 1, 0], b: [0, 0], c: [1]; n = 6, mean = 1/2, G = 3
    # residual sums: a: 0.5+0.5-0.5 = 0.5, b: -1.0, c: 0.5
    # CR0 = (0.25 + 1 + 0.25) / 36 = 1.5/36; CR1 = CR0 * 3/2 = 2.25/36 -> SE = 1.5/6 = 0.25
    scores = [1, 1, 0, 0, 0, 1]
    groups = ["a", "a", "a", "b", "b", "c"]
    assert clustered_se(scores, groups) == pytest.approx(0.25, abs=TOL)
    # Three groups are too few for a clustered interval: Wilson over items, and the estimate says so.
    est = mean_ci(scores, clusters=groups)
    assert est.method == "wilson" and "3 groups are too few" in est.note
    assert (est.lo, est.hi) == pytest.approx(wilson_interval(3, 6))
    # With ten groups the clustered interval is mean +- z * SE, the SE by hand as above.
    ten = mean_ci(scores * 5, clusters=[f"{g}{k}" for k in range(5) for g in groups])
    assert ten.method == "clustered" and ten.note == ""
    se = clustered_se(scores * 5, [f"{g}{k}" for k in range(5) for g in groups])
    z = st.norm.ppf(0.975)
    assert ten.lo == pytest.approx(0.5 - z * se, abs=TOL) and ten.hi == pytest.approx(0.5 + z * se, abs=TOL)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("binary", [True, False])
def test_clustered_se_matches_statsmodels_cluster_ols(seed, binary):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 15, size=17)
    groups = np.repeat([f"task{i}" for i in range(sizes.size)], sizes)
    effect = np.repeat(rng.normal(0, 1, sizes.size), sizes)
    latent = effect + rng.normal(0, 1, groups.size)
    y = (latent > 0).astype(float) if binary else 1 / (1 + np.exp(-latent))
    ref_mean, ref_se = _cluster_ols(y, groups)
    est = mean_ci(y, clusters=groups)
    assert est.mean == pytest.approx(ref_mean, abs=TOL)
    assert est.se == pytest.approx(ref_se, abs=TOL)
    assert clustered_se(list(y), list(groups)) == pytest.approx(ref_se, abs=TOL)


def test_clustered_se_singletons_reduce_to_plain_se():
    y = np.array([0.2, 0.4, 0.9, 0.1, 0.5])
    plain = float(np.std(y, ddof=1)) / math.sqrt(y.size)
    assert clustered_se(y, range(5)) == pytest.approx(plain, abs=TOL)
    # and mean_ci treats all-singleton clusters as "no clustering"
    assert mean_ci(y, clusters=range(5)).method == "bootstrap"
    assert mean_ci([1, 0, 1], clusters=["a", "b", "c"]).method == "wilson"


def test_blank_cluster_labels_are_singletons():
    # Item.group is "" for independent items: each such item is its own cluster.
    y = [1, 0, 1, 1, 0, 0, 1, 1]
    labels = ["s1", "s1", "s1", "", "", None, "s2", "s2"]
    explicit = ["s1", "s1", "s1", "u1", "u2", "u3", "s2", "s2"]
    assert clustered_se(y, labels) == pytest.approx(_cluster_ols(y, explicit)[1], abs=TOL)
    assert mean_ci(y, clusters=labels) == mean_ci(y, clusters=explicit)
    assert mean_ci(y, clusters=[""] * 8) == mean_ci(y)  # all blank: no clustering -> Wilson
    # tuple labels (e.g. (subject, item) for several samples per item) are one label each
    tuples = [("a", 1)] * 4 + [("b", 2)] * 4
    assert clustered_se(y, tuples) == pytest.approx(clustered_se(y, [0] * 4 + [1] * 4), abs=TOL)


def test_single_cluster_falls_back_to_independent_items():
    # A single cluster's spread cannot be estimated: the interval treats items as independent
    # (a small smoke run often draws every item from one subject) instead of showing none.
    est = mean_ci([1, 0, 1, 1], clusters=["x"] * 4)
    assert est.mean == 0.75 and est.method == "wilson"
    assert (est.lo, est.hi) == pytest.approx(wilson_interval(3, 4))
    assert math.isnan(clustered_se([1, 0, 1, 1], ["x"] * 4))
    assert math.isnan(clustered_se([], []))


def test_clustered_binary_bounds_are_clipped():
    est = mean_ci([1, 1, 1, 1, 1, 0] * 10, clusters=[f"g{i // 3}" for i in range(60)])
    assert est.method == "clustered"
    assert 0.0 <= est.lo <= est.mean <= est.hi <= 1.0
    full = mean_ci([1] * 40, clusters=[f"g{i // 4}" for i in range(40)])  # 100%: never a zero-width interval
    assert full.hi == 1.0 and full.lo == pytest.approx(wilson_interval(40, 40)[0])


# --------------------------------------------------------------------------- pass@k


@pytest.mark.parametrize(
    "n,c,k,expected",
    [(5, 2, 1, 0.4), (5, 2, 2, 0.7), (10, 1, 5, 0.5), (200, 10, 10, 0.408548), (10, 0, 3, 0.0)],
)
def test_pass_at_k_published_values(n, c, k, expected):
    value = pass_at_k(n, c, k)
    assert _plain(value)
    tol = 5e-7 if n == 200 else TOL  # the n=200 value is published to 6 decimals
    assert value == pytest.approx(expected, abs=tol)
    exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
    assert value == pytest.approx(float(exact), abs=TOL)


def test_pass_at_k_matches_exact_binomial_ratio():
    for n, c, k in itertools.product([1, 2, 7, 20, 100], [0, 1, 3, 7, 50], [1, 2, 5, 10, 100]):
        if c > n or k > n:
            continue
        exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
        assert pass_at_k(n, c, k) == pytest.approx(float(exact), abs=TOL), (n, c, k)


def test_pass_at_k_validation():
    assert pass_at_k(5, 4, 2) == 1.0  # fewer than k failures: every k-subset has a pass
    for bad in [(5, 6, 1), (5, -1, 1), (5, 2, 0), (5, 2, 6)]:
        with pytest.raises(ValueError):
            pass_at_k(*bad)


def test_pass_at_k_estimate():
    ns = [10, 10, 10, 10, 20, 20]
    cs = [0, 1, 5, 10, 3, 20]
    values = [pass_at_k(n, c, 5) for n, c in zip(ns, cs)]
    est = pass_at_k_estimate(ns, cs, k=5)
    assert est.n == 6 and est.method == "bootstrap"
    assert est.mean == pytest.approx(float(np.mean(values)), abs=TOL)
    assert est.lo <= est.mean <= est.hi
    assert est == mean_ci(values)
    # k == n: per-task values are 0/1, so the task-level CI is Wilson
    binary = pass_at_k_estimate([3, 3, 3, 3], [0, 0, 3, 0], k=3)  # pass@3 per task: 0, 0, 1, 0
    assert binary.method == "wilson" and binary.mean == 0.25
    assert pass_at_k_estimate([], [], k=1).method == "empty"
    with pytest.raises(ValueError):
        pass_at_k_estimate([3, 3], [1], k=1)


# --------------------------------------------------------------------------- McNemar / paired


def _pairs_from_table(n11, n10, n01, n00):
    """Paired binary scores with the given 2x2 counts (n10: A right, B wrong)."""
    a = [1] * n11 + [1] * n10 + [0] * n01 + [0] * n00
    b = [1] * n11 + [0] * n10 + [1] * n01 + [0] * n00
    order = np.random.default_rng(n11 + 7 * n10 + 13 * n01).permutation(len(a))
    return list(np.array(a)[order]), list(np.array(b)[order])


@pytest.mark.parametrize(
    "table",
    [
        (10, 5, 1, 4),
        (40, 12, 3, 45),
        (30, 8, 8, 20),
        (5, 0, 6, 2),
        (100, 25, 40, 35),
        (0, 1, 0, 0),
        (50, 200, 170, 80),
        (3, 13, 0, 1),
    ],
)
def test_mcnemar_matches_binomtest_and_statsmodels(table):
    n11, n10, n01, n00 = table
    a, b = _pairs_from_table(*table)
    res = paired_compare(a, b)
    assert isinstance(res, Comparison)
    assert res.method == "mcnemar-exact"
    assert (res.discordant_a, res.discordant_b, res.n) == (n10, n01, sum(table))
    ref_binom = st.binomtest(n10, n10 + n01, 0.5, alternative="two-sided").pvalue
    ref_sm = mcnemar(np.array([[n11, n10], [n01, n00]]), exact=True).pvalue
    assert res.p_value == pytest.approx(ref_binom, abs=TOL)
    assert res.p_value == pytest.approx(ref_sm, abs=TOL)
    assert res.diff == pytest.approx((n10 - n01) / sum(table), abs=TOL)
    assert _all_plain(res)


def test_mcnemar_without_discordant_pairs():
    # No disagreement in 5 items bounds the difference by how often the two could disagree.
    res = paired_compare([1, 1, 0, 0, 1], [1, 1, 0, 0, 1])
    assert res.p_value == 1.0 and (res.diff, res.se) == (0.0, 0.0)
    psi_hi = proportion_confint(0, 5, alpha=0.05, method="beta")[1]
    assert (res.lo, res.hi) == pytest.approx((-psi_hi, psi_hi), abs=TOL)
    assert (res.discordant_a, res.discordant_b) == (0, 0)


def test_paired_compare_empty_and_single():
    empty = paired_compare([], [])
    assert empty.n == 0 and empty.method == "empty"
    assert all(math.isnan(v) for v in (empty.diff, empty.lo, empty.hi, empty.p_value))
    single = paired_compare([1], [0])
    assert single.diff == 1.0 and single.p_value == 1.0
    assert single.lo < 0 < single.hi == 1.0 and math.isnan(single.se)
    single_real = paired_compare([0.5], [0.2])
    assert math.isnan(single_real.lo) and math.isnan(single_real.se)


def test_paired_se_matches_statsmodels():
    rng = np.random.default_rng(11)
    a = rng.random(150)
    b = np.clip(a + rng.normal(-0.05, 0.2, 150), 0, 1)
    res = paired_compare(a, b, confidence=0.9)
    d = DescrStatsW(a - b)
    assert res.diff == pytest.approx(float(d.mean), abs=TOL)
    assert res.se == pytest.approx(float(d.std_mean), abs=TOL)


def test_paired_clustered_se_matches_statsmodels_cluster_ols():
    rng = np.random.default_rng(5)
    groups = np.repeat(np.arange(12), 8)
    shift = np.repeat(rng.normal(0, 0.3, 12), 8)
    a = (rng.random(96) < 0.6 + 0.3 * np.tanh(shift)).astype(float)
    b = (rng.random(96) < 0.6).astype(float)
    res = paired_compare(a, b, clusters=groups)
    ref_diff, ref_se = _cluster_ols(a - b, groups)
    assert res.method == "cluster-permutation"
    assert res.diff == pytest.approx(ref_diff, abs=TOL)
    assert res.se == pytest.approx(ref_se, abs=TOL)
    assert -1.0 <= res.lo <= res.diff <= res.hi <= 1.0


def _brute_force_sign_flip_p(values):
    values = np.asarray(values, dtype=float)
    observed = abs(values.sum())
    hits = total = 0
    for signs in itertools.product([1.0, -1.0], repeat=values.size):
        total += 1
        hits += abs(np.dot(signs, values)) >= observed - 1e-9
    return hits / total


def test_cluster_permutation_flips_whole_clusters():
    rng = np.random.default_rng(8)
    groups = np.repeat(list("abcdefghij"), 6)
    a = rng.integers(0, 2, 60).astype(float)
    b = rng.integers(0, 2, 60).astype(float)
    res = paired_compare(a, b, clusters=groups)
    cluster_sums = [float((a - b)[groups == g].sum()) for g in "abcdefghij"]
    assert res.p_value == pytest.approx(_brute_force_sign_flip_p(cluster_sums), abs=TOL)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_permutation_exact_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 11, 12) / 10  # grades in tenths: non-binary
    b = rng.integers(0, 11, 12) / 10
    a[0], b[0] = 0.5, 0.2  # guarantee non-binary
    res = paired_compare(a, b)
    assert res.method == "permutation"
    ref = st.permutation_test(
        (a, b),
        lambda x, y, axis: np.mean(x - y, axis=axis),
        permutation_type="samples",
        n_resamples=np.inf,
        alternative="two-sided",
    ).pvalue
    assert res.p_value == pytest.approx(ref, abs=TOL)
    assert res.p_value == pytest.approx(_brute_force_sign_flip_p(a - b), abs=TOL)
    assert (res.discordant_a, res.discordant_b) == (int((a > b).sum()), int((a < b).sum()))


def test_permutation_monte_carlo_within_error_of_exact():
    # 30 integer differences: exact null distribution of sum(+-d) by convolution of counts.
    rng = np.random.default_rng(9)
    d = rng.integers(-4, 5, 40)
    d = d[d != 0][:30]
    a, b = 0.5 + d / 10, np.full(d.size, 0.5)
    total = int(np.abs(d).sum())
    dist = {0: 1}
    for v in np.abs(d):
        nxt = {}
        for s, cnt in dist.items():
            for t in (s + v, s - v):
                nxt[t] = nxt.get(t, 0) + cnt
        dist = nxt
    observed = abs(int(d.sum()))
    exact = sum(cnt for s, cnt in dist.items() if abs(s) >= observed) / 2**d.size
    assert total > 0
    res = paired_compare(a, b, seed=1)
    mc_sd = math.sqrt(exact * (1 - exact) / 10_000)
    assert res.p_value == pytest.approx(exact, abs=4 * mc_sd + 1e-4)
    assert paired_compare(a, b, seed=1) == res  # deterministic at a fixed seed


# --------------------------------------------------------------------------- Holm / BH


PVALUE_SETS = [
    [0.01, 0.04, 0.03, 0.005],
    [0.2, 0.2, 0.01, 0.5, 0.049, 0.001, 0.8],
    [0.0, 1.0, 0.5],
    [0.03],
    [0.04, 0.04, 0.04, 0.04],
    list(np.random.default_rng(3).random(25) ** 3),
]


@pytest.mark.parametrize("pvals", PVALUE_SETS)
@pytest.mark.parametrize("method,sm_method", [("holm", "holm"), ("bh", "fdr_bh")])
def test_adjust_pvalues_matches_statsmodels(pvals, method, sm_method):
    ours = adjust_pvalues(pvals, method=method)
    ref = multipletests(pvals, method=sm_method)[1]
    assert isinstance(ours, list) and all(_plain(p) for p in ours)
    np.testing.assert_allclose(ours, ref, atol=TOL, rtol=0)


def test_adjust_pvalues_default_nan_and_empty():
    p = [0.01, 0.04, 0.03]
    assert adjust_pvalues(p) == adjust_pvalues(p, "holm")
    assert adjust_pvalues([]) == []
    with_nan = adjust_pvalues([0.01, float("nan"), 0.04], "holm")
    assert math.isnan(with_nan[1])
    assert with_nan[0] == pytest.approx(0.02, abs=TOL)
    assert with_nan[2] == pytest.approx(0.04, abs=TOL)
    with pytest.raises(ValueError):
        adjust_pvalues(p, "bonferroni-ish")
    with pytest.raises(ValueError):
        adjust_pvalues([1.5])


# --------------------------------------------------------------------------- null simulation


def test_null_simulation_corrected_false_positive_rate():
    """Two identical models on four suites, 1000 runs: Holm (and BH) keep any-rejection <= 5%."""
    rng = np.random.default_rng(2024)
    sims = 1000
    p_easy = rng.beta(4, 2, 300)  # binary suite, 300 items
    p_hard = rng.beta(1, 3, 120)  # binary suite, 120 items
    quality = rng.beta(2, 2, 40)  # graded suite, 40 items in [0, 1]
    groups = np.repeat(np.arange(10), 12)  # clustered binary suite: 10 tasks x 12 items
    p_clustered = 1 / (1 + np.exp(-np.repeat(rng.normal(0, 1.5, 10), 12)))
    holm_hits = bh_hits = raw_hits = 0
    for i in range(sims):
        pvals = []
        for p in (p_easy, p_hard):
            a, b = (rng.random((2, p.size)) < p).astype(float)
            pvals.append(paired_compare(a, b).p_value)
        a, b = np.clip(quality + rng.normal(0, 0.15, (2, quality.size)), 0, 1).round(2)
        pvals.append(paired_compare(a, b, seed=i, n_resamples=999).p_value)
        a, b = (rng.random((2, p_clustered.size)) < p_clustered).astype(float)
        pvals.append(paired_compare(a, b, clusters=groups, n_resamples=1024).p_value)
        raw_hits += min(pvals) < 0.05
        holm_hits += min(adjust_pvalues(pvals, "holm")) < 0.05
        bh_hits += min(adjust_pvalues(pvals, "bh")) < 0.05
    assert holm_hits / sims <= 0.05
    assert bh_hits / sims <= 0.05
    assert raw_hits > holm_hits  # the correction is doing something


# --------------------------------------------------------------------------- MDE / power


def test_minimum_detectable_effect_formula():
    z = st.norm.ppf(0.975) + st.norm.ppf(0.8)
    assert minimum_detectable_effect(400, 0.2) == pytest.approx(z * math.sqrt(0.2 / 400), abs=TOL)
    z90 = st.norm.ppf(0.995) + st.norm.ppf(0.9)
    assert minimum_detectable_effect(1000, 0.1, alpha=0.01, power=0.9) == pytest.approx(
        z90 * math.sqrt(0.1 / 1000), abs=TOL
    )
    assert minimum_detectable_effect_sd(100, 0.3) == pytest.approx(z * 0.3 / 10, abs=TOL)
    assert math.isnan(minimum_detectable_effect(0, 0.2))
    assert math.isnan(minimum_detectable_effect(100, 0.0))
    assert math.isnan(minimum_detectable_effect_sd(0, 0.3))
    with pytest.raises(ValueError):
        minimum_detectable_effect(100, 1.5)


def test_minimum_detectable_effect_has_about_80_percent_power():
    """Simulate paired binary runs whose true difference equals the MDE; McNemar rejects ~80%."""
    n, psi = 400, 0.2
    mde = minimum_detectable_effect(n, psi)
    p10, p01 = (psi + mde) / 2, (psi - mde) / 2
    rng = np.random.default_rng(0)
    sims, rejections = 2000, 0
    for _ in range(sims):
        cell = rng.choice(3, size=n, p=[p10, p01, 1 - psi])  # 0: A only, 1: B only, 2: agree
        a = (cell == 0).astype(float)
        b = (cell == 1).astype(float)
        rejections += paired_compare(a, b).p_value < 0.05
    assert rejections / sims == pytest.approx(0.8, abs=0.05)


def test_mde_sd_power_by_simulation():
    n, sd = 200, 0.25
    mde = minimum_detectable_effect_sd(n, sd)
    rng = np.random.default_rng(1)
    d = mde + sd * rng.standard_normal((4000, n))
    z = d.mean(axis=1) / (d.std(axis=1, ddof=1) / math.sqrt(n))
    assert float(np.mean(np.abs(z) > st.norm.ppf(0.975))) == pytest.approx(0.8, abs=0.03)


# --------------------------------------------------------------------------- non-inferiority


@pytest.mark.parametrize("margin", [0.0, 0.02, 0.05])
def test_noninferiority_binary_matches_clopper_pearson(margin):
    rng = np.random.default_rng(21)
    best = (rng.random(500) < 0.7).astype(float)
    a = np.where(rng.random(500) < 0.1, 1 - best, best)  # 10% of items flipped
    res = noninferiority(a, best, margin=margin, alpha=0.05)
    assert isinstance(res, NonInferiority) and res.method == "exact-binomial"
    b, c = int(((a == 1) & (best == 0)).sum()), int(((a == 0) & (best == 1)).sum())
    ref = (
        proportion_confint(b, 500, alpha=0.05, method="beta")[0]
        - proportion_confint(c, 500, alpha=0.05, method="beta")[1]
    )
    assert res.diff == pytest.approx((b - c) / 500, abs=TOL)
    assert res.lower_bound == pytest.approx(ref, abs=TOL)
    # p is the level at which the bound reaches -margin.
    at_p = (
        proportion_confint(b, 500, alpha=res.p_value, method="beta")[0]
        - proportion_confint(c, 500, alpha=res.p_value, method="beta")[1]
    )
    assert res.p_value == 1.0 or at_p == pytest.approx(-margin, abs=1e-6)
    assert res.noninferior == (res.p_value < 0.05) == (res.lower_bound > -margin)
    assert res.margin == margin
    assert _all_plain(res)


def test_noninferiority_verdicts_and_edges():
    best = [1] * 80 + [0] * 20
    same = noninferiority(best * 3, best * 3)
    assert same.noninferior and same.diff == 0.0
    # Five items that agree prove nothing: no zero standard error makes them certain.
    assert not noninferiority([1, 1, 0, 1, 1], [1, 1, 0, 1, 1], margin=0.02).noninferior
    much_worse = [0] * 30 + [1] * 50 + [0] * 20  # 30 points worse
    assert not noninferiority(much_worse, best, margin=0.02).noninferior
    slightly_worse = list(best)
    slightly_worse[0] = 0  # 1 point worse out of 100, margin 5 points
    assert noninferiority(slightly_worse * 10, best * 10, margin=0.05).noninferior
    empty = noninferiority([], [])
    assert not empty.noninferior and math.isnan(empty.p_value)
    single = noninferiority([1], [0])
    assert not single.noninferior and math.isnan(single.lower_bound)
    clustered = noninferiority(slightly_worse * 2, best * 2, margin=0.05, clusters=np.arange(200) // 10)
    assert clustered.method == "cluster-permutation" and clustered.lower_bound < clustered.diff
    with pytest.raises(ValueError):
        noninferiority(best, best, margin=-0.1)


# --------------------------------------------------------------------------- percentiles


def test_percentiles():
    lat = [0.5, 1.2, 0.9, 3.0, 0.7, 2.2, 1.1]
    ours = percentiles(lat)
    ref = np.percentile(lat, [50, 90, 99])
    assert list(ours) == [50, 90, 99]
    np.testing.assert_allclose(list(ours.values()), ref, atol=TOL, rtol=0)
    assert all(_plain(v) for v in ours.values())
    assert percentiles(lat + [float("nan"), None]) == ours
    assert percentiles(np.array(lat + [np.nan])) == ours
    assert all(math.isnan(v) for v in percentiles([]).values())
    assert all(math.isnan(v) for v in percentiles([None, float("nan")]).values())
    assert percentiles([2.0], qs=(5, 95)) == {5: 2.0, 95: 2.0}


@pytest.mark.parametrize("module", [stats, paired])
def test_module_imports_only_numpy_and_scipy(module):
    import ast
    import pathlib

    tree = ast.parse(pathlib.Path(module.__file__).read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            roots.add(node.module if node.module.startswith("harness") else node.module.split(".")[0])
    assert roots <= {
        "numpy",
        "scipy",
        "math",
        "statistics",
        "dataclasses",
        "typing",
        "__future__",
        "harness.analysis.stats",
    }


def test_means_and_intervals_do_not_load_scipy():
    """The summary after every run needs only these; scipy.stats alone takes ~0.4 s to import."""
    import subprocess
    import sys

    code = (
        "import sys, harness.analysis.stats as s; s.mean_ci([1, 0, 1, 1], clusters=['a', 'a', 'b', 'c']); "
        "s.wilson_interval(3, 4); s.percentiles([0.1, 0.2]); s.minimum_detectable_effect(100, 0.2); "
        "print('scipy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
