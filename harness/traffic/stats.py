"""Statistics of pairwise verdicts and classifications, on plain arrays (no store, no I/O).

- win rate with a cluster-robust interval: verdicts of one item (several judges, both orders) and
  of one route are not independent, so the standard error sums residuals per cluster (CR1, as
  statsmodels' OLS with cov_type="cluster");
- length-controlled win rate: a logistic regression of the verdict (win 1, tie 0.5, loss 0) on the
  length difference, read at zero difference (AlpacaEval's idea, without its other terms);
- Bradley-Terry strengths by maximum likelihood (ties half a win each way), with intervals from a
  bootstrap over items;
- Cohen's kappa between two raters; macro-F1, per-class precision/recall and the confusion matrix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Hashable, Sequence

import numpy as np

from harness.analysis.stats import clustered_se

NAN = float("nan")
Z95 = 1.959963984540054


@dataclass(frozen=True)
class WinRate:
    n: int
    wins: int
    ties: int
    losses: int
    rate: float
    lo: float
    hi: float
    se: float


def win_rate(outcomes: Sequence[float], clusters: Sequence[Hashable] | None = None, z: float = Z95) -> WinRate:
    """Outcomes 1 / 0.5 / 0 (win, tie, loss); a tie counts half. Interval: mean ± z·SE, SE clustered."""
    y = np.asarray(outcomes, dtype=float)
    n = int(y.size)
    wins, ties = int(np.sum(y == 1.0)), int(np.sum(y == 0.5))
    if n == 0:
        return WinRate(0, 0, 0, 0, NAN, NAN, NAN, NAN)
    rate = float(y.mean())
    se = clustered_se(y, list(clusters) if clusters is not None else list(range(n)))
    if se != se:
        return WinRate(n, wins, ties, n - wins - ties, rate, NAN, NAN, NAN)
    return WinRate(n, wins, ties, n - wins - ties, rate, max(0.0, rate - z * se), min(1.0, rate + z * se), se)


def logistic_fit(y: Sequence[float], x: Sequence[float], max_iter: int = 100) -> tuple[float, float] | None:
    """(intercept, slope) of logit P(y) = b0 + b1·x by maximum likelihood (y may be fractional); None if it diverges."""
    y_arr, x_arr = np.asarray(y, dtype=float), np.asarray(x, dtype=float)
    design = np.column_stack([np.ones_like(x_arr), x_arr])
    if y_arr.size < 3 or np.all(y_arr == y_arr[0]):
        return None  # all wins (or all losses): the maximum is at infinity
    beta = np.zeros(2)
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-(design @ beta)))
        w = p * (1.0 - p)
        hessian = design.T @ (design * w[:, None])
        try:
            step = np.linalg.solve(hessian, design.T @ (y_arr - p))
        except np.linalg.LinAlgError:
            return None
        beta = beta + step
        if not np.all(np.isfinite(beta)) or np.max(np.abs(beta)) > 50:
            return None
        if np.max(np.abs(step)) < 1e-10:
            return float(beta[0]), float(beta[1])
    return None


def length_controlled(outcomes: Sequence[float], length_diff: Sequence[float]) -> float:
    """The win rate at zero length difference: sigmoid(intercept) of the fit above; NaN when it cannot be fitted.

    The difference is scaled by its standard deviation first (the intercept does not change; the
    fit is better conditioned). With no spread in length there is nothing to control: the raw rate.
    """
    y = np.asarray(outcomes, dtype=float)
    d = np.asarray(length_diff, dtype=float)
    if y.size == 0:
        return NAN
    sd = float(np.std(d))
    if sd == 0:
        return float(y.mean())
    fit = logistic_fit(y, d / sd)
    return NAN if fit is None else 1.0 / (1.0 + math.exp(-fit[0]))


def bradley_terry(
    battles: Sequence[tuple[str, str, float]], anchor: str, max_iter: int = 200
) -> dict[str, float] | None:
    """Strengths (log-odds scale, `anchor` = 0) from battles (a, b, score of a: 1 / 0.5 / 0); None if not estimable.

    P(a beats b) = 1 / (1 + exp(s_b - s_a)); a tie is half a win for each. Maximum likelihood by
    Newton's method on the free strengths, with a tiny ridge so a model that never lost stays finite.
    """
    names = sorted({a for a, _, _ in battles} | {b for _, b, _ in battles})
    if anchor not in names or len(names) < 2:
        return None
    free = [m for m in names if m != anchor]
    index = {m: i for i, m in enumerate(free)}
    rows = np.zeros((len(battles), len(free)))
    y = np.empty(len(battles))
    for k, (a, b, s) in enumerate(battles):
        if a in index:
            rows[k, index[a]] += 1.0
        if b in index:
            rows[k, index[b]] -= 1.0
        y[k] = s
    beta = np.zeros(len(free))
    ridge = 1e-6
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-(rows @ beta)))
        gradient = rows.T @ (y - p) - ridge * beta
        hessian = rows.T @ (rows * (p * (1 - p))[:, None]) + ridge * np.eye(len(free))
        try:
            step = np.linalg.solve(hessian, gradient)
        except np.linalg.LinAlgError:
            return None
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    out = {m: float(beta[index[m]]) for m in free}
    out[anchor] = 0.0
    return out


def bradley_terry_intervals(
    battles: Sequence[tuple[str, str, float, Hashable]],
    anchor: str,
    n_resamples: int = 200,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, tuple[float, float, float]]:
    """model -> (strength, lo, hi): the fit on all battles, percentile interval over bootstrap resamples of clusters."""
    point = bradley_terry([(a, b, s) for a, b, s, _ in battles], anchor)
    if point is None:
        return {}
    by_cluster: dict[Hashable, list[tuple[str, str, float]]] = {}
    for a, b, s, c in battles:
        by_cluster.setdefault(c, []).append((a, b, s))
    keys = sorted(by_cluster, key=str)  # the store's order varies with concurrency: the draw must not
    for key in keys:
        by_cluster[key].sort()
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {m: [] for m in point}
    for _ in range(n_resamples):
        pick = rng.integers(0, len(keys), len(keys))
        sample = [battle for i in pick for battle in by_cluster[keys[i]]]
        fit = bradley_terry(sample, anchor)
        if fit is None:
            continue
        for m in draws:
            if m in fit:
                draws[m].append(fit[m])
    tail = (1 - confidence) / 2 * 100
    out = {}
    for m, s in point.items():
        values = draws[m]
        if len(values) < 10:
            out[m] = (s, NAN, NAN)
        else:
            out[m] = (s, float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail)))
    return out


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Agreement beyond chance between two raters' labels on the same items; NaN when undefined."""
    if len(a) != len(b) or not a:
        return NAN
    categories = sorted({*a, *b}, key=str)
    index = {c: i for i, c in enumerate(categories)}
    table = np.zeros((len(categories), len(categories)))
    for x, y in zip(a, b):
        table[index[x], index[y]] += 1
    n = table.sum()
    observed = np.trace(table) / n
    expected = float((table.sum(0) * table.sum(1)).sum()) / n**2
    return NAN if expected == 1 else float((observed - expected) / (1 - expected))


@dataclass(frozen=True)
class Classification:
    labels: tuple[str, ...]  # rows/columns of the matrix: the known labels, then "(other)" when any answer was none
    matrix: tuple[tuple[int, ...], ...]  # matrix[gold][predicted]
    precision: dict[str, float]
    recall: dict[str, float]
    f1: dict[str, float]
    support: dict[str, int]
    macro_f1: float
    accuracy: float
    n: int


OTHER = "(other)"


def classification(gold: Sequence[str], predicted: Sequence[str | None], labels: Sequence[str] = ()) -> Classification:
    """Per-class precision/recall/F1 over the gold labels, their macro mean, accuracy and the confusion matrix.

    An answer that is no label (None or "") is its own column "(other)": wrong for every class. A
    class never predicted has precision 0 (sklearn's zero_division=0), so macro-F1 is never flattered.
    """
    classes = list(dict.fromkeys([*labels, *sorted(set(gold))]))
    pred = [p if p else OTHER for p in predicted]
    columns = classes + ([OTHER] if OTHER in pred or any(p not in classes for p in pred) else [])
    col = {c: i for i, c in enumerate(columns)}
    matrix = np.zeros((len(columns), len(columns)), dtype=int)
    for g, p in zip(gold, pred):
        matrix[col[g], col.get(p, col.get(OTHER, 0))] += 1
    precision, recall, f1, support = {}, {}, {}, {}
    for c in classes:
        i = col[c]
        tp = int(matrix[i, i])
        predicted_c, actual_c = int(matrix[:, i].sum()), int(matrix[i, :].sum())
        precision[c] = tp / predicted_c if predicted_c else 0.0
        recall[c] = tp / actual_c if actual_c else 0.0
        pr = precision[c] + recall[c]
        f1[c] = 2 * precision[c] * recall[c] / pr if pr else 0.0
        support[c] = actual_c
    present = [c for c in classes if support[c]]
    macro = float(np.mean([f1[c] for c in present])) if present else NAN
    n = len(gold)
    accuracy = float(np.trace(matrix)) / n if n else NAN
    return Classification(
        labels=tuple(columns),
        matrix=tuple(tuple(int(v) for v in row) for row in matrix),
        precision=precision,
        recall=recall,
        f1=f1,
        support=support,
        macro_f1=macro,
        accuracy=accuracy,
        n=n,
    )
