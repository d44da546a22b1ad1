"""Paired comparisons of two models on the same items: one method gives both the interval and the p-value.

Every comparison tells one story: its confidence interval is the set of differences its own test does
not reject, so the interval excludes 0 exactly when the two-sided test rejects at 1 - confidence.

- Right/wrong scores, items independent: the exact McNemar test (two-sided binomial test of the b
  items where A alone is right among the b + c discordant ones, at 1/2; as statsmodels
  `mcnemar(exact=True)`), and its interval: the Clopper-Pearson interval of pi = b / (b + c)
  (statsmodels `proportion_confint(method="beta")`) mapped to the difference (b + c) / n * (2 pi - 1),
  conditional on b + c as the test is. It never leaves [-(b + c)/n, (b + c)/n]. With no discordant item
  the difference is bounded by how often the models could disagree: +-(Clopper-Pearson upper bound of
  0 discordant in n), and p = 1.
- Other scores, or grouped items: the sign-flip permutation test (whole groups flipped when items are
  grouped), inverted for the interval: delta is inside when the test of mean(d - delta) = 0 does not
  reject. Exact over all 2^G sign patterns when 2^G <= n_resamples (G = items, or groups), else the same
  `n_resamples` random patterns for every delta (numpy.random.default_rng(seed)). The bounds stay
  within the possible differences ([-1, 1] for scores in [0, 1]): a test that cannot reject (3 items
  give p >= 1/4 whatever they say) gives the whole range.
- Grouped items need at least `MIN_CLUSTERS` groups (with fewer, no permutation of groups can reach a
  small p-value and a clustered SE is unreliable): with fewer, items are treated as independent, and
  `note` says so.

`se` is the paired standard error of the difference (clustered with groups); only the minimum
detectable effect uses it. `noninferiority` answers a one-sided question with exact bounds as well.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.analysis.stats import (
    DEFAULT_RESAMPLES,
    MIN_CLUSTERS,
    NAN,
    _as_scores,
    _cluster_codes,
    _is_binary,
    _paired_se,
    _z,
)

__all__ = ["Comparison", "NonInferiority", "MIN_CLUSTERS", "paired_compare", "noninferiority"]

_CHUNK_ELEMENTS = 2_000_000
_BISECTIONS = 60


@dataclass(frozen=True)
class Comparison:
    """Model A minus model B on the same items.

    `diff` = mean(a) - mean(b) with the CI [lo, hi] of the same `method` as `p_value` ("mcnemar-exact",
    "permutation", "cluster-permutation" or "empty"): lo > 0 or hi < 0 exactly when p_value < 1 -
    confidence. `discordant_a` counts items where A scored higher than B, `discordant_b` the reverse
    (McNemar's b and c for right/wrong scores). `se` is the paired standard error of diff. `note`
    says why a method other than the expected one was used (too few groups), or "".
    """

    diff: float
    lo: float
    hi: float
    p_value: float
    method: str
    n: int
    discordant_a: int
    discordant_b: int
    se: float = NAN
    note: str = ""


@dataclass(frozen=True)
class NonInferiority:
    """One-sided test of H0: mean(a) - mean(best) <= -margin against H1: > -margin.

    `lower_bound` is the one-sided (1 - alpha) lower confidence bound of `diff` (the lower end of the
    paired interval at confidence 1 - 2 alpha); `noninferior` is True when lower_bound > -margin,
    equivalently p_value < alpha.
    """

    diff: float
    lower_bound: float
    margin: float
    p_value: float
    noninferior: bool
    method: str = ""
    note: str = ""


# --------------------------------------------------------------------------- exact McNemar


def _mcnemar_interval(b: int, c: int, n: int, confidence: float) -> tuple[float, float]:
    from scipy.stats import beta

    tail = (1.0 - confidence) / 2.0
    m = b + c
    if m == 0:
        psi_hi = float(beta.ppf(1.0 - tail, 1, n))  # Clopper-Pearson upper bound of 0 discordant in n
        return -psi_hi, psi_hi
    pi_lo = 0.0 if b == 0 else float(beta.ppf(tail, b, c + 1))
    pi_hi = 1.0 if c == 0 else float(beta.ppf(1.0 - tail, b + 1, c))
    return m / n * (2.0 * pi_lo - 1.0), m / n * (2.0 * pi_hi - 1.0)


def _mcnemar_p(b: int, c: int) -> float:
    if b + c == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(b, b + c, 0.5, alternative="two-sided").pvalue)


def _binary_lower_bound(b: int, c: int, n: int, alpha: float) -> float:
    """One-sided (1 - alpha) lower bound of p10 - p01: Clopper-Pearson lower of b/n minus upper of c/n, at alpha/2 each.

    Unconditional (the share of disagreeing items is uncertain too), so a handful of items where the
    two agree never proves non-inferiority the way a zero standard error would.
    """
    from scipy.stats import beta

    tail = alpha / 2.0
    lo_b = 0.0 if b == 0 else float(beta.ppf(tail, b, n - b + 1))
    hi_c = 1.0 if c == n else float(beta.ppf(1.0 - tail, c + 1, n - c))
    return lo_b - hi_c


def _binary_noninferiority_p(b: int, c: int, n: int, margin: float) -> float:
    """The smallest alpha at which `_binary_lower_bound` clears -margin (the bound grows with alpha)."""
    top = 1.0 - 1e-12
    if _binary_lower_bound(b, c, n, top) <= -margin:
        return 1.0
    lo, hi = 0.0, top
    for _ in range(_BISECTIONS):
        mid = (lo + hi) / 2.0
        if _binary_lower_bound(b, c, n, mid) > -margin:
            hi = mid
        else:
            lo = mid
    return hi


# --------------------------------------------------------------------------- sign-flip permutation


class _SignFlips:
    """The sign-flip test of sum over units u of (D_u - delta w_u) = 0, for any delta, on one set of patterns.

    Units are items (w = 1) or groups (D = the group's sum of differences, w = its size). For each sign
    pattern s it keeps A_s = sum s_u D_u and B_s = sum s_u w_u, so a test at any delta costs O(patterns).
    """

    def __init__(self, sums: np.ndarray, weights: np.ndarray, n_resamples: int, seed: int):
        self.sums, self.weights = sums, weights
        self.total, self.n = float(sums.sum()), float(weights.sum())
        g = sums.size
        self.exact = 2**g <= n_resamples
        self.n_patterns = 2**g if self.exact else n_resamples
        a_parts, b_parts = [], []
        step = max(1, _CHUNK_ELEMENTS // max(g, 1))
        rng = None if self.exact else np.random.default_rng(seed)
        bits = np.arange(g, dtype=np.int64)
        for start in range(0, self.n_patterns, step):
            rows = min(step, self.n_patterns - start)
            if self.exact:
                block = np.arange(start, start + rows, dtype=np.int64)
                signs = 1.0 - 2.0 * ((block[:, None] >> bits) & 1)
            else:
                signs = rng.integers(0, 2, size=(rows, g)) * 2.0 - 1.0
            a_parts.append(signs @ sums)
            b_parts.append(signs @ weights)
        self.a = np.concatenate(a_parts) if a_parts else np.zeros(0)
        self.b = np.concatenate(b_parts) if b_parts else np.zeros(0)
        self.scale = 1e-9 * max(1.0, float(np.abs(sums).sum()) + float(weights.sum()))

    def _p(self, hits: int) -> float:
        return min(1.0, hits / self.n_patterns if self.exact else (1 + hits) / (1 + self.n_patterns))

    def p_two_sided(self, delta: float) -> float:
        observed = abs(self.total - delta * self.n)
        return self._p(int(np.count_nonzero(np.abs(self.a - delta * self.b) >= observed - self.scale)))

    def p_greater(self, delta: float) -> float:
        """One-sided p of H0: mean difference <= delta."""
        observed = self.total - delta * self.n
        return self._p(int(np.count_nonzero(self.a - delta * self.b >= observed - self.scale)))

    def bound(self, accepted: float, rejected_end: float, alpha: float, p=None) -> float:
        """The accepted delta nearest `rejected_end`, by bisection between a delta the test accepts and the end."""
        p = p or self.p_two_sided
        if p(rejected_end) >= alpha:
            return rejected_end
        acc, rej = accepted, rejected_end
        for _ in range(_BISECTIONS):
            mid = (acc + rej) / 2.0
            if p(mid) >= alpha:
                acc = mid
            else:
                rej = mid
        return acc

    def interval(self, diff: float, confidence: float, span: tuple[float, float]) -> tuple[float, float, float]:
        """(lo, hi, p at 0): the deltas the two-sided test does not reject within `span` (the possible
        differences), agreeing with the test at 0."""
        alpha = 1.0 - confidence
        low_end, high_end = span
        p0 = self.p_two_sided(0.0)
        # Start each search from 0 when 0 lies on that side, so the interval contains 0 exactly when p0 >= alpha.
        lo_start = 0.0 if (low_end <= 0.0 < diff and p0 >= alpha) else diff
        hi_start = 0.0 if (diff < 0.0 <= high_end and p0 >= alpha) else diff
        if low_end <= 0.0 < diff and p0 < alpha:
            lo = self.bound(diff, 0.0, alpha)
        else:
            lo = self.bound(lo_start, low_end, alpha)
        if diff < 0.0 <= high_end and p0 < alpha:
            hi = self.bound(diff, 0.0, alpha)
        else:
            hi = self.bound(hi_start, high_end, alpha)
        return lo, hi, p0


def _units(d: np.ndarray, codes: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    if codes is None:
        return d, np.ones(d.size)
    return np.bincount(codes, weights=d), np.bincount(codes).astype(float)


def _span(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """The differences of means that are possible: [-1, 1] for scores in [0, 1], else from the scores seen."""
    low, high = min(float(a.min()), float(b.min())), max(float(a.max()), float(b.max()))
    if low >= 0.0 and high <= 1.0:
        low, high = 0.0, 1.0
    return low - high, high - low


def _grouping(clusters, n: int) -> tuple[np.ndarray | None, str]:
    codes = _cluster_codes(clusters, n)
    if codes is None:
        return None, ""
    g = int(codes.max()) + 1
    if g < MIN_CLUSTERS:
        return None, (
            f"{g} group{'s' if g != 1 else ''} are too few for a test across groups (needs "
            f"{MIN_CLUSTERS}): items treated as independent"
        )
    return codes, ""


# --------------------------------------------------------------------------- public


def paired_compare(
    a_scores,
    b_scores,
    clusters=None,
    seed: int = 0,
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> Comparison:
    """Compare two models scored on the same items (a_scores[i] and b_scores[i] are item i); see the module doc."""
    a = _as_scores(a_scores, "a_scores")
    b = _as_scores(b_scores, "b_scores")
    if a.size != b.size:
        raise ValueError(f"paired scores differ in length: {a.size} vs {b.size}")
    n = int(a.size)
    _z(confidence)  # validates it
    if n == 0:
        return Comparison(NAN, NAN, NAN, NAN, "empty", 0, 0, 0, NAN)
    codes, note = _grouping(clusters, n)
    d = a - b
    diff = float(d.mean())
    disc_a, disc_b = int(np.count_nonzero(d > 0)), int(np.count_nonzero(d < 0))
    se = _paired_se(d, codes)
    if codes is None and _is_binary(a) and _is_binary(b):
        lo, hi = _mcnemar_interval(disc_a, disc_b, n, confidence)
        return Comparison(diff, lo, hi, _mcnemar_p(disc_a, disc_b), "mcnemar-exact", n, disc_a, disc_b, float(se), note)
    if n == 1:
        return Comparison(diff, NAN, NAN, 1.0, "permutation", 1, disc_a, disc_b, NAN, note)
    flips = _SignFlips(*_units(d, codes), n_resamples, seed)
    lo, hi, p = flips.interval(diff, confidence, _span(a, b))
    method = "permutation" if codes is None else "cluster-permutation"
    return Comparison(diff, float(lo), float(hi), float(p), method, n, disc_a, disc_b, float(se), note)


def noninferiority(
    a_scores,
    best_scores,
    margin: float = 0.02,
    alpha: float = 0.05,
    clusters=None,
    seed: int = 0,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> NonInferiority:
    """Is model A at most `margin` worse than the best model on the same items?

    - 0/1 scores, items independent ("exact-binomial"): lower bound = Clopper-Pearson lower bound of
      the share of items where A alone is right minus the upper bound of the share where the best alone
      is, each at alpha/2 (as statsmodels `proportion_confint(method="beta")`); p is the smallest alpha
      at which that bound clears -margin;
    - otherwise: the one-sided sign-flip permutation test of `paired_compare` (whole groups with
      groups); the bound is the smallest delta it does not reject at alpha.
    Either way lower_bound > -margin exactly when p < alpha. With fewer than 2 items p and the bound
    are NaN and `noninferior` is False.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    a = _as_scores(a_scores, "a_scores")
    best = _as_scores(best_scores, "best_scores")
    if a.size != best.size:
        raise ValueError(f"paired scores differ in length: {a.size} vs {best.size}")
    n = int(a.size)
    if n < 2:
        return NonInferiority(float(a.mean() - best.mean()) if n else NAN, NAN, float(margin), NAN, False)
    codes, note = _grouping(clusters, n)
    d = a - best
    diff = float(d.mean())
    if codes is None and _is_binary(a) and _is_binary(best):
        b, c = int(np.count_nonzero(d > 0)), int(np.count_nonzero(d < 0))
        p, method = _binary_noninferiority_p(b, c, n, margin), "exact-binomial"
        lower = _binary_lower_bound(b, c, n, alpha)
    else:
        flips = _SignFlips(*_units(d, codes), n_resamples, seed)
        # The one-sided p grows with delta, so bisection finds the bound that agrees with p at -margin.
        lower = flips.bound(diff, _span(a, best)[0], alpha, p=flips.p_greater)
        p = flips.p_greater(-margin)
        method = "permutation" if codes is None else "cluster-permutation"
    return NonInferiority(diff, float(lower), float(margin), float(p), bool(p < alpha), method, note)
