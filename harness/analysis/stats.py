"""Statistics over per-item score arrays: means with CIs, pass@k, paired comparisons, corrections.

Formula references:
- Wilson score interval: Wilson (1927); as statsmodels `proportion_confint(method="wilson")`.
- Clustered standard error: Miller (2024), "Adding Error Bars to Evals", arXiv 2411.00640:
  the cluster-robust (CR0) variance of a mean, times the small-sample factor G/(G-1)
  (CR1, as in Stata and statsmodels `cov_type="cluster"`).
- Unbiased pass@k: Chen et al. (2021), "Evaluating Large Language Models Trained on Code",
  arXiv 2107.03374, eq. 1, evaluated in the numerically stable product form of their fig. 3.
- Paired comparisons (exact McNemar, sign-flip permutation, non-inferiority) live in `paired`.
- Multiple comparisons: Holm (1979) step-down; Benjamini & Hochberg (1995) step-up.
- Minimum detectable effect: normal approximation to the McNemar test (cf. Connor 1987),
  MDE = (z_{1-alpha/2} + z_{power}) * sqrt(discordance / n); Miller (2024) discusses power analysis.

Conventions shared by every function here:
- inputs may be lists, tuples or numpy arrays; results are plain Python floats / ints;
- "binary" means every score is exactly 0 or 1 (bools count);
- scores must be finite: a NaN score raises ValueError (decide upstream whether a failed item
  scores 0 or is dropped, so that pairing stays intact). Only `percentiles` ignores NaN;
- empty input gives NaN estimates and never raises; where a spread cannot be estimated
  (n = 1; in paired tests, a single cluster) the bounds and standard error are NaN while the mean is reported;
- confidence intervals other than Wilson and the bootstrap use the normal critical value
  z_{1-(1-confidence)/2}, as Miller (2024) does.

Normal quantiles come from the standard library's `NormalDist` (Wichura's AS241, as accurate as
scipy's `norm.ppf`), and scipy is imported only by the tests that need it (binomial, normal tail,
permutation): the summary printed after every run needs means and intervals only, and scipy.stats
alone takes ~0.4 s to import.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Iterable, Sequence

import numpy as np

_NORMAL = NormalDist()

__all__ = [
    "Estimate",
    "wilson_interval",
    "mean_ci",
    "clustered_se",
    "pass_at_k",
    "pass_at_k_estimate",
    "adjust_pvalues",
    "minimum_detectable_effect",
    "minimum_detectable_effect_sd",
    "percentiles",
]

NAN = float("nan")
DEFAULT_RESAMPLES = 10_000
# Fewest groups a cluster-robust interval or a test across groups is used with: below it a clustered SE
# is unreliable and no flip of whole groups can reach p < 0.005; items are then treated as independent.
MIN_CLUSTERS = 10
# Elements per chunk of resampling work (keeps memory bounded for large n).
_CHUNK_ELEMENTS = 2_000_000


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Estimate:
    """A mean with its confidence interval.

    `method` is one of "wilson", "bootstrap", "clustered", "empty"; `se` is the standard error
    (for "wilson" the Wald value sqrt(p(1-p)/n), for "bootstrap" the sd of the bootstrap means).
    """

    mean: float
    lo: float
    hi: float
    n: int
    method: str
    se: float
    note: str = ""  # why the expected method was not used (too few groups), or ""


# --------------------------------------------------------------------------- helpers


def _as_scores(scores, name: str = "scores") -> np.ndarray:
    arr = np.asarray(scores, dtype=float).reshape(-1)
    if arr.size and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (got NaN or inf)")
    return arr


def _is_binary(arr: np.ndarray) -> bool:
    return bool(arr.size) and bool(np.all((arr == 0.0) | (arr == 1.0)))


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return _NORMAL.inv_cdf(1.0 - (1.0 - confidence) / 2.0)


def _is_blank_label(label) -> bool:
    if label is None:
        return True
    if isinstance(label, str):
        return label == ""
    return isinstance(label, float) and math.isnan(label)


def _label_codes(clusters, n: int) -> np.ndarray:
    """Integer codes 0..G-1 for cluster labels; blank labels ("", None, NaN) are singletons."""
    labels = list(clusters.reshape(-1)) if isinstance(clusters, np.ndarray) else list(clusters)
    if len(labels) != n:
        raise ValueError(f"clusters has {len(labels)} labels for {n} scores")
    seen: dict = {}
    codes = np.empty(n, dtype=np.int64)
    next_code = 0
    for i, label in enumerate(labels):
        if _is_blank_label(label):
            codes[i] = next_code
            next_code += 1
        else:
            if label not in seen:
                seen[label] = next_code
                next_code += 1
            codes[i] = seen[label]
    return codes


def _cluster_codes(clusters, n: int) -> np.ndarray | None:
    """Integer cluster codes 0..G-1, or None when there is no real clustering."""
    if clusters is None:
        return None
    codes = _label_codes(clusters, n)
    if n == 0 or codes.max() + 1 == n:  # every item its own cluster: same as no clustering
        return None
    return codes


def _clustered_se_codes(arr: np.ndarray, codes: np.ndarray) -> float:
    n = arr.size
    g = int(codes.max()) + 1
    if g < 2:
        return NAN
    resid_sums = np.bincount(codes, weights=arr - arr.mean(), minlength=g)
    var_cr0 = float(np.sum(resid_sums**2)) / n**2
    return math.sqrt(var_cr0 * g / (g - 1))


def _plain_se(arr: np.ndarray) -> float:
    if arr.size < 2:
        return NAN
    return float(np.std(arr, ddof=1)) / math.sqrt(arr.size)


def _paired_se(d: np.ndarray, codes: np.ndarray | None) -> float:
    return _plain_se(d) if codes is None else _clustered_se_codes(d, codes)


# --------------------------------------------------------------------------- means


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for `successes` out of `n`; (nan, nan) when n == 0."""
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return (NAN, NAN)
    z = _z(confidence)
    p = successes / n
    z2n = z * z / n
    centre = (p + z2n / 2.0) / (1.0 + z2n)
    half = z / (1.0 + z2n) * math.sqrt(p * (1.0 - p) / n + z2n / (4.0 * n))
    # At k = 0 / k = n the bound is exactly 0 / 1; set it so rounding cannot exclude p-hat.
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return (lo, hi)


def clustered_se(scores, clusters) -> float:
    """Cluster-robust standard error of the mean (Miller 2024, with the G/(G-1) factor).

    SE^2 = G/(G-1) * (1/n^2) * sum_c (sum_{i in c} (s_i - mean))^2, G = number of clusters.
    Equals statsmodels OLS(s, 1).fit(cov_type="cluster").bse, and with all-singleton clusters the
    usual sd(ddof=1)/sqrt(n). NaN when n == 0 or G < 2. Labels may be any hashable values;
    a blank label ("", None or NaN, as `Item.group` is for an independent item) makes the item
    its own cluster.
    """
    arr = _as_scores(scores)
    codes = _label_codes(clusters, arr.size)
    if arr.size == 0:
        return NAN
    return _clustered_se_codes(arr, codes)


def _bootstrap_means(arr: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = arr.size
    out = np.empty(n_resamples)
    step = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, n_resamples, step):
        stop = min(n_resamples, start + step)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = arr[idx].mean(axis=1)
    return out


def mean_ci(
    scores,
    clusters=None,
    confidence: float = 0.95,
    seed: int = 0,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> Estimate:
    """Mean score with a confidence interval.

    - `clusters` given (a hashable label per item, blank = own cluster; at least one cluster
      with 2+ items, and at least MIN_CLUSTERS clusters): mean +- z * clustered SE (see
      `clustered_se`); bounds are clipped to [0, 1] when every score lies in [0, 1], and for 0/1
      scores never narrower than Wilson. Clusters that are all singletons count as no
      clustering; fewer than MIN_CLUSTERS clusters too, and `note` says so.
    - else all scores 0/1: Wilson interval (defined from n = 1 on).
    - else: percentile bootstrap of the mean, `n_resamples` resamples from
      numpy.random.default_rng(seed); NaN bounds when n == 1.
    """
    arr = _as_scores(scores)
    n = int(arr.size)
    codes = _cluster_codes(clusters, n)
    z = _z(confidence)
    if n == 0:
        return Estimate(NAN, NAN, NAN, 0, "empty", NAN)
    mean = float(arr.mean())

    note = ""
    if codes is not None and int(codes.max()) + 1 < MIN_CLUSTERS:
        # A handful of groups (one, on a small smoke run) cannot estimate the spread between groups:
        # fall back to independent items rather than show no interval, or a wildly unstable one.
        g = int(codes.max()) + 1
        note = (
            f"{g} group{'s' if g != 1 else ''} are too few for a clustered interval (needs {MIN_CLUSTERS}): "
            f"items treated as independent"
        )
        codes = None
    if codes is not None:
        se = _clustered_se_codes(arr, codes)
        lo, hi = mean - z * se, mean + z * se
        if not math.isnan(se) and arr.min() >= 0.0 and arr.max() <= 1.0:
            lo, hi = max(0.0, lo), min(1.0, hi)
        if _is_binary(arr) and not math.isnan(se):
            # The normal approximation collapses to a zero-width interval when every item in a
            # small sample agrees (all right or all wrong); clustering can only widen the
            # uncertainty, so never report less than the independent-items Wilson interval.
            w_lo, w_hi = wilson_interval(int(arr.sum()), n, confidence)
            lo, hi = min(lo, w_lo), max(hi, w_hi)
        return Estimate(mean, float(lo), float(hi), n, "clustered", float(se))

    if _is_binary(arr):
        k = int(arr.sum())
        lo, hi = wilson_interval(k, n, confidence)
        return Estimate(mean, lo, hi, n, "wilson", math.sqrt(mean * (1.0 - mean) / n), note)

    if n == 1:
        return Estimate(mean, NAN, NAN, 1, "bootstrap", NAN, note)
    boots = _bootstrap_means(arr, n_resamples, seed)
    alpha = 1.0 - confidence
    lo, hi = np.quantile(boots, [alpha / 2.0, 1.0 - alpha / 2.0])
    return Estimate(mean, float(lo), float(hi), n, "bootstrap", float(np.std(boots, ddof=1)), note)


# --------------------------------------------------------------------------- pass@k


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (Chen et al. 2021).

    1 - C(n-c, k) / C(n, k), computed as 1 - prod_{i=n-c+1}^{n} (1 - k/i). Requires
    0 <= c <= n and 1 <= k <= n.
    """
    n, c, k = int(n), int(c), int(k)
    if not (0 <= c <= n):
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not (1 <= k <= n):
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0
    i = np.arange(n - c + 1, n + 1, dtype=float)
    return float(1.0 - np.prod(1.0 - k / i))


def pass_at_k_estimate(
    per_task_n,
    per_task_c,
    k: int,
    confidence: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """Mean pass@k over tasks with a CI across tasks.

    Each task's pass@k is computed with `pass_at_k`; the mean and its CI come from `mean_ci` over
    those per-task values (Wilson when they are all 0/1, e.g. k == n; bootstrap otherwise), so the
    interval reflects the sampling of tasks. Every task needs n >= k.
    """
    ns = np.asarray(per_task_n).reshape(-1)
    cs = np.asarray(per_task_c).reshape(-1)
    if ns.size != cs.size:
        raise ValueError(f"per_task_n has {ns.size} tasks, per_task_c has {cs.size}")
    values = [pass_at_k(int(n), int(c), k) for n, c in zip(ns, cs)]
    return mean_ci(values, confidence=confidence, seed=seed)


# --------------------------------------------------------------------------- corrections


def adjust_pvalues(pvalues: Iterable[float], method: str = "holm") -> list[float]:
    """Adjust p-values for multiple comparisons: "holm" (FWER, default) or "bh" (FDR).

    Holm: sorted ascending p_(1..m), adj_(j) = max_{i<=j} min(1, (m - i + 1) p_(i)).
    BH: adj_(j) = min_{i>=j} min(1, m / i * p_(i)). NaN entries are left NaN and not counted in m.
    Matches statsmodels multipletests(method="holm" / "fdr_bh").
    """
    method = method.lower()
    if method not in ("holm", "bh"):
        raise ValueError(f"method must be 'holm' or 'bh', got {method!r}")
    p = np.asarray(list(pvalues), dtype=float).reshape(-1)
    out = np.full(p.size, NAN)
    valid = np.flatnonzero(~np.isnan(p))
    m = valid.size
    if m == 0:
        return [float(x) for x in out]
    if np.any((p[valid] < 0) | (p[valid] > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    order = valid[np.argsort(p[valid], kind="mergesort")]
    sorted_p = p[order]
    rank = np.arange(1, m + 1)
    if method == "holm":
        adj = np.maximum.accumulate(np.minimum(1.0, (m - rank + 1) * sorted_p))
    else:
        adj = np.minimum.accumulate((m / rank * sorted_p)[::-1])[::-1]
        adj = np.minimum(1.0, adj)
    out[order] = adj
    return [float(x) for x in out]


# --------------------------------------------------------------------------- power


def minimum_detectable_effect(n: int, discordance_rate: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest accuracy difference a paired binary comparison detects with the given power.

    Normal approximation to the two-sided McNemar test: with discordance rate psi (share of items
    where exactly one model is right), the difference estimate has sd ~ sqrt(psi / n), so
    MDE = (z_{1-alpha/2} + z_{power}) * sqrt(psi / n).
    It ignores the delta^2 term of the alternative's variance (psi - delta^2), which makes it
    slightly conservative. A result above psi means no difference is detectable at that
    discordance. NaN when n < 1 or psi == 0 (no discordance: the MDE is not identified).
    """
    if not 0.0 <= discordance_rate <= 1.0:
        raise ValueError(f"discordance_rate must be in [0, 1], got {discordance_rate}")
    if n < 1 or discordance_rate == 0.0:
        return NAN
    return _power_multiplier(alpha, power) * math.sqrt(discordance_rate / n)


def minimum_detectable_effect_sd(n: int, sd_diff: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """MDE for a paired comparison of non-binary scores: (z_{1-alpha/2} + z_{power}) * sd / sqrt(n).

    `sd_diff` is the sd of the per-item differences a - b. For clustered items pass the design-
    corrected value Comparison.se * sqrt(n). NaN when n < 1 or sd_diff is NaN.
    """
    if n < 1 or math.isnan(sd_diff):
        return NAN
    if sd_diff < 0:
        raise ValueError(f"sd_diff must be >= 0, got {sd_diff}")
    return _power_multiplier(alpha, power) * sd_diff / math.sqrt(n)


def _power_multiplier(alpha: float, power: float) -> float:
    if not 0.0 < alpha < 1.0 or not 0.0 < power < 1.0:
        raise ValueError(f"alpha and power must be in (0, 1), got {alpha}, {power}")
    return _NORMAL.inv_cdf(1.0 - alpha / 2.0) + _NORMAL.inv_cdf(power)


# --------------------------------------------------------------------------- latency


def percentiles(values, qs: Sequence[float] = (50, 90, 99)) -> dict[float, float]:
    """Percentiles (linear interpolation) of `values`, ignoring NaN / None; NaN when none remain.

    Returns {q: value} in the order of `qs`, e.g. {50: 0.8, 90: 1.9, 99: 3.2}.
    """
    if not isinstance(values, np.ndarray):
        values = list(values)
    arr = np.asarray(values, dtype=float).reshape(-1)
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return {q: NAN for q in qs}
    vals = np.percentile(arr, list(qs))
    return {q: float(v) for q, v in zip(qs, vals)}
