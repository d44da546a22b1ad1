"""One story per comparison: the interval of `paired_compare` and its p-value agree, stay in range, and match
scipy/statsmodels on small, degenerate and clustered cases."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

st = pytest.importorskip("scipy.stats")
pytest.importorskip("statsmodels")
from statsmodels.stats.contingency_tables import mcnemar  # noqa: E402
from statsmodels.stats.proportion import proportion_confint  # noqa: E402

from harness.analysis.paired import MIN_CLUSTERS, noninferiority, paired_compare  # noqa: E402

TOL = 1e-9


def _agrees(res, confidence: float) -> bool:
    """The interval excludes 0 exactly when the two-sided test rejects at 1 - confidence."""
    return (res.lo > 0 or res.hi < 0) == (res.p_value < 1 - confidence)


def _pairs(n11, n10, n01, n00):
    a = np.array([1] * n11 + [1] * n10 + [0] * n01 + [0] * n00, dtype=float)
    b = np.array([1] * n11 + [0] * n10 + [1] * n01 + [0] * n00, dtype=float)
    return a, b


# --------------------------------------------------------------------------- exact McNemar


TABLES = [
    (10, 5, 1, 4),
    (40, 12, 3, 45),
    (30, 8, 8, 20),
    (5, 0, 6, 2),
    (0, 1, 0, 0),
    (3, 13, 0, 1),
    (0, 0, 3, 0),
    (0, 9, 0, 0),
    (1, 0, 0, 0),
    (100, 25, 40, 35),
    (0, 2, 0, 1),
]


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_mcnemar_interval_is_the_clopper_pearson_interval_of_the_test(table, confidence):
    n11, n10, n01, n00 = table
    a, b = _pairs(*table)
    n, m = sum(table), n10 + n01
    res = paired_compare(a, b, confidence=confidence)
    assert res.method == "mcnemar-exact"
    ref_p = mcnemar(np.array([[n11, n10], [n01, n00]]), exact=True).pvalue
    assert res.p_value == pytest.approx(ref_p, abs=TOL)
    if m:
        pi_lo, pi_hi = proportion_confint(n10, m, alpha=1 - confidence, method="beta")
        assert res.lo == pytest.approx(m / n * (2 * pi_lo - 1), abs=1e-9)
        assert res.hi == pytest.approx(m / n * (2 * pi_hi - 1), abs=1e-9)
    assert -1.0 <= res.lo <= res.diff <= res.hi <= 1.0
    assert _agrees(res, confidence)


def test_mcnemar_agreement_on_many_random_tables():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 60))
        cells = rng.multinomial(n, rng.dirichlet([1, 1, 1, 1]))
        res = paired_compare(*_pairs(*cells))
        assert _agrees(res, 0.95), cells
        assert -1.0 <= res.lo <= res.hi <= 1.0


def test_both_models_at_zero_or_at_100_percent_have_a_real_interval():
    # The issue: both sides at 0 printed "+0.0 (+0.0 to +0.0)".
    for score in (0.0, 1.0):
        res = paired_compare([score] * 8, [score] * 8)
        psi_hi = proportion_confint(0, 8, alpha=0.05, method="beta")[1]
        assert res.p_value == 1.0 and res.diff == 0.0
        assert (res.lo, res.hi) == pytest.approx((-psi_hi, psi_hi), abs=TOL)
        assert res.lo < 0 < res.hi


def test_small_all_or_nothing_difference_stays_within_the_possible_range():
    # The issue: "-66.7 [-108.0, -25.3]": a normal interval beyond 100 points on three items.
    res = paired_compare([0, 0, 0], [1, 1, 0])
    assert res.diff == pytest.approx(-2 / 3)
    # Conditional on the 2 discordant items, as the exact test is: no worse than both going to b.
    assert -1.0 <= res.lo <= res.diff < res.hi <= 1.0
    assert _agrees(res, 0.95) and res.p_value == pytest.approx(0.5)


# --------------------------------------------------------------------------- sign-flip permutation


def _scipy_permutation_p(d: np.ndarray) -> float:
    return float(
        st.permutation_test(
            (d,), np.mean, permutation_type="samples", n_resamples=np.inf, alternative="two-sided"
        ).pvalue
    )


@pytest.mark.parametrize("seed", range(6))
def test_permutation_interval_is_the_inverted_scipy_test(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 11, 10) / 10
    b = np.clip(a - rng.integers(-2, 6, 10) / 10, 0, 1)
    a[0], b[0] = 0.55, 0.15  # non-binary
    res = paired_compare(a, b)
    assert res.method == "permutation"
    d = a - b
    assert res.p_value == pytest.approx(_scipy_permutation_p(d), abs=TOL)
    eps = 1e-6
    # Just inside each bound scipy's test does not reject; just outside it does (unless the bound is the
    # end of the possible range, -1 or 1).
    for bound, outward in ((res.lo, -eps), (res.hi, eps)):
        assert _scipy_permutation_p(d - (bound - outward)) >= 0.05 - 1e-12
        if -1 < bound < 1:
            assert _scipy_permutation_p(d - (bound + outward)) < 0.05
    assert -1 <= res.lo <= res.diff <= res.hi <= 1
    assert _agrees(res, 0.95)


def test_permutation_agreement_monte_carlo_and_exact():
    rng = np.random.default_rng(4)
    for n in (3, 7, 12, 40, 200):
        for shift in (0.0, 0.05, 0.2):
            a = np.clip(rng.beta(2, 2, n) + shift, 0, 1).round(2)
            b = rng.beta(2, 2, n).round(2)
            for confidence in (0.9, 0.95):
                res = paired_compare(a, b, confidence=confidence, n_resamples=2000)
                assert _agrees(res, confidence), (n, shift, res)
                assert -1 <= res.lo <= res.hi <= 1
    three = paired_compare([0.1, 0.2, 0.3], [0.8, 0.9, 0.7])  # 3 items: p >= 1/4, nothing excluded
    assert three.p_value == 0.25 and (three.lo, three.hi) == (-1.0, 1.0)


# --------------------------------------------------------------------------- groups


def _brute_cluster_p(sums: np.ndarray, sizes: np.ndarray, delta: float) -> float:
    terms = sums - delta * sizes
    observed = abs(terms.sum())
    hits = [abs(np.dot(s, terms)) >= observed - 1e-9 for s in itertools.product([1.0, -1.0], repeat=terms.size)]
    return float(np.mean(hits))


def test_cluster_interval_is_the_inverted_test_over_whole_groups():
    rng = np.random.default_rng(8)
    groups = np.repeat(np.arange(11), rng.integers(2, 6, 11))
    a = (rng.random(groups.size) < 0.75).astype(float)
    b = (rng.random(groups.size) < 0.45).astype(float)
    res = paired_compare(a, b, clusters=groups)
    assert res.method == "cluster-permutation" and res.note == ""
    d = a - b
    sums = np.array([d[groups == g].sum() for g in range(11)])
    sizes = np.array([(groups == g).sum() for g in range(11)], dtype=float)
    assert res.p_value == pytest.approx(_brute_cluster_p(sums, sizes, 0.0), abs=TOL)
    for bound, outward in ((res.lo, -1e-6), (res.hi, 1e-6)):
        assert _brute_cluster_p(sums, sizes, bound - outward) >= 0.05
        if -1 < bound < 1:
            assert _brute_cluster_p(sums, sizes, bound + outward) < 0.05
    assert _agrees(res, 0.95)


def test_clustered_agreement_on_random_grouped_suites():
    rng = np.random.default_rng(12)
    for trial in range(40):
        g = int(rng.integers(MIN_CLUSTERS, 30))
        groups = np.repeat(np.arange(g), rng.integers(1, 8, g))
        effect = np.repeat(rng.normal(0, 1, g), np.bincount(groups))
        a = (rng.random(groups.size) < 1 / (1 + np.exp(-effect - 0.3 * (trial % 3)))).astype(float)
        b = (rng.random(groups.size) < 1 / (1 + np.exp(-effect))).astype(float)
        res = paired_compare(a, b, clusters=groups, n_resamples=2000, seed=trial)
        assert res.method == "cluster-permutation"
        assert _agrees(res, 0.95), (trial, res)
        assert -1.0 <= res.lo <= res.hi <= 1.0


def test_one_group_or_a_few_fall_back_to_items_and_say_so():
    # The issue: all items in one group gave "+50.0, p 1.000", no interval, MDE "—".
    a, b = [1, 1, 1, 0, 1, 1], [0, 0, 1, 0, 0, 1]
    one = paired_compare(a, b, clusters=["x"] * 6)
    plain = paired_compare(a, b)
    assert one.method == "mcnemar-exact" and "1 group are too few" in one.note
    assert (one.diff, one.lo, one.hi, one.p_value) == (plain.diff, plain.lo, plain.hi, plain.p_value)
    assert math.isfinite(one.lo) and _agrees(one, 0.95)
    few = paired_compare(a * 3, b * 3, clusters=[i // 2 for i in range(18)])
    assert few.method == "mcnemar-exact" and "9 groups are too few" in few.note
    enough = paired_compare(a * 4, b * 4, clusters=[i // 2 for i in range(24)])
    assert enough.method == "cluster-permutation" and enough.note == ""


# --------------------------------------------------------------------------- non-inferiority


def test_noninferiority_bound_and_p_agree_on_every_kind_of_case():
    rng = np.random.default_rng(3)
    for trial in range(120):
        n = int(rng.integers(2, 80))
        kind = trial % 3
        best = rng.random(n) < 0.7
        a = np.where(rng.random(n) < rng.uniform(0, 0.3), ~best, best)
        a, best = a.astype(float), best.astype(float)
        clusters = None
        if kind == 1:
            a, best = (a + rng.integers(0, 3, n)) / 3, (best + rng.integers(0, 3, n)) / 3
        elif kind == 2:
            clusters = rng.integers(0, max(2, n // 3), n)
        margin = float(rng.choice([0.0, 0.02, 0.1]))
        res = noninferiority(a, best, margin=margin, alpha=0.05, clusters=clusters, n_resamples=2000)
        assert res.noninferior == (res.p_value < 0.05) == (res.lower_bound > -margin), (trial, res)
        assert res.lower_bound <= res.diff + 1e-12
        assert res.lower_bound >= -1.0 - 1e-12


def test_noninferiority_one_miss_in_forty_is_checked_exactly():
    best = np.ones(40)
    a = best.copy()
    a[5] = 0
    res = noninferiority(a, best, margin=0.10)
    # Upper Clopper-Pearson bound of 1 miss in 40 at 2.5%: the model could be 13 points worse.
    ref = 0.0 - proportion_confint(1, 40, alpha=0.05, method="beta")[1]
    assert res.lower_bound == pytest.approx(ref, abs=TOL) and not res.noninferior
    assert noninferiority(np.tile(a, 4), np.tile(best, 4), margin=0.10).noninferior
