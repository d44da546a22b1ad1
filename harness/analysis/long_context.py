"""Long-context figures from a run's scores by prompt length and needle depth: the grid, and the
"effective length" (the longest length whose score stays within a stated drop of the shortest's), with a
bootstrap interval over items."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

DEFAULT_DROP = 0.10  # 10 points below the short-context score still counts as reaching that length


@dataclass(frozen=True)
class Cell:
    length: int
    depth: float
    n: int  # items
    mean: float  # NaN when every item was over the window
    over_window: int  # items the server refused as longer than the model's context


@dataclass(frozen=True)
class EffectiveLength:
    value: int | None  # None: not even the shortest length holds up (or nothing was scored)
    lo: int | None  # 95% bootstrap interval over items, in the lengths measured
    hi: int | None
    baseline: float  # the shortest length's score
    drop: float
    by_length: dict = field(default_factory=dict)  # length -> mean score (over-window items count as 0)


def grid(rows: list[tuple[int, float, float, bool]]) -> list[Cell]:
    """rows: (length, depth, item score, over the window) per item -> a cell per length and depth."""
    scores: dict[tuple[int, float], list[float]] = defaultdict(list)
    over: dict[tuple[int, float], int] = defaultdict(int)
    for length, depth, score, refused in rows:
        if refused:
            over[(length, depth)] += 1
        else:
            scores[(length, depth)].append(score)
    cells = []
    for key in sorted(set(scores) | set(over)):
        s = scores.get(key, [])
        cells.append(Cell(key[0], key[1], len(s) + over[key], float(np.mean(s)) if s else float("nan"), over[key]))
    return cells


def effective_length(
    rows: list[tuple[int, float, float, bool]], drop: float = DEFAULT_DROP, n_resamples: int = 2000, seed: int = 0
) -> EffectiveLength:
    """The longest length L such that every length up to L scores at least (shortest length's score − drop).

    An item over the window scores 0 here: the model cannot answer what it cannot read. The interval
    resamples items within each length (a percentile bootstrap), so it is in the lengths measured.
    """
    by_length: dict[int, list[float]] = defaultdict(list)
    for length, _depth, score, refused in rows:
        by_length[length].append(0.0 if refused else score)
    if not by_length:
        return EffectiveLength(None, None, None, float("nan"), drop)
    lengths = sorted(by_length)
    arrays = [np.asarray(by_length[length], dtype=float) for length in lengths]
    means = np.array([a.mean() for a in arrays])
    value = _reach(lengths, means, drop)
    rng = np.random.default_rng(seed)
    draws = np.empty((n_resamples, len(lengths)))
    for j, a in enumerate(arrays):
        draws[:, j] = a[rng.integers(0, len(a), size=(n_resamples, len(a)))].mean(axis=1)
    reached = [_reach(lengths, d, drop) for d in draws]
    as_index = np.array([-1 if r is None else lengths.index(r) for r in reached])
    lo_i, hi_i = np.percentile(as_index, [2.5, 97.5], method="nearest")
    return EffectiveLength(
        value,
        None if lo_i < 0 else lengths[int(lo_i)],
        None if hi_i < 0 else lengths[int(hi_i)],
        float(means[0]),
        drop,
        {length: float(m) for length, m in zip(lengths, means)},
    )


def _reach(lengths: list[int], means: np.ndarray, drop: float) -> int | None:
    floor = means[0] - drop
    if means[0] <= 0:
        return None  # nothing found even at the shortest length: no length "holds"
    reached = None
    for length, m in zip(lengths, means):
        if m < floor - 1e-12:
            break
        reached = length
    return reached
