"""Report statistics: leaderboards with significance against the best, pairwise disagreements, Pareto front."""

from __future__ import annotations

import math
from dataclasses import dataclass

from harness.analysis import paired, stats
from harness.analysis.summary import CellSummary, RunSummary
from harness.formatting import finite

ALPHA = 0.05
PAIR_RESAMPLES = 2000  # permutation draws for A-vs-B pages (non-binary scores only)


@dataclass(frozen=True)
class BoardRow:
    """One model on one suite's leaderboard; diff/lo/hi/p compare it with the suite's best model."""

    cell: CellSummary
    rank: int
    best: bool
    diff: float = math.nan
    lo: float = math.nan
    hi: float = math.nan
    n_paired: int = 0
    method: str = ""
    p: float = math.nan
    p_adj: float = math.nan

    @property
    def worse(self) -> bool:
        return not self.best and self.p_adj < ALPHA and self.diff < 0


@dataclass(frozen=True)
class PairSuite:
    """Models A and B on one suite: the paired comparison and the items where they differ."""

    suite: str
    a: CellSummary
    b: CellSummary
    comparison: paired.Comparison
    disagree: tuple[str, ...]  # item ids, in A's item order

    @property
    def a_better(self) -> int:
        return self.comparison.discordant_a

    @property
    def b_better(self) -> int:
        return self.comparison.discordant_b


def _aligned(a: CellSummary, b: CellSummary):
    """Per-item scores of a and b on their shared items (a's order), with cluster labels or None."""
    b_by_item = dict(zip(b.item_ids, b.scores))
    groups_a = a.groups or ("",) * len(a.item_ids)
    ids, xs, ys, groups = [], [], [], []
    for item, score, group in zip(a.item_ids, a.scores, groups_a):
        other = b_by_item.get(item)
        if other is not None:
            ids.append(item)
            xs.append(score)
            ys.append(other)
            groups.append(group)
    return ids, xs, ys, (groups if any(groups) else None)


def _never_answered(c: CellSummary) -> bool:
    return bool(c.n_samples) and c.errors >= c.n_samples


def leaderboards(summary: RunSummary) -> dict[str, list[BoardRow]]:
    """suite -> rows sorted best first. Every model is compared with the suite's best model on their
    shared items (`paired_compare`); p-values are Holm-adjusted over all comparisons of all suites."""
    by_suite: dict[str, list[CellSummary]] = {}
    for c in summary.cells:
        if c.n_items:
            by_suite.setdefault(c.suite, []).append(c)
    order = {m.model: i for i, m in enumerate(summary.models)}
    boards: dict[str, list[BoardRow]] = {}
    pending: list[tuple[str, int, paired.Comparison]] = []
    for suite, cells in by_suite.items():
        # A model that never answered is no contender for "best", whatever its (all-zero) score ties with.
        cells = sorted(
            cells, key=lambda c: (_never_answered(c), -(c.mean if finite(c.mean) else -1.0), order.get(c.model, 0))
        )
        best = cells[0]
        if _never_answered(best):
            boards[suite] = [BoardRow(c, rank, False) for rank, c in enumerate(cells, start=1)]
            continue
        rows = [BoardRow(best, 1, True)]
        for rank, c in enumerate(cells[1:], start=2):
            ids, xs, bs, clusters = _aligned(c, best)
            cmp = paired.paired_compare(xs, bs, clusters=clusters)
            rows.append(BoardRow(c, rank, False, cmp.diff, cmp.lo, cmp.hi, cmp.n, cmp.method, cmp.p_value))
            if finite(cmp.p_value):
                pending.append((suite, rank - 1, cmp))
        boards[suite] = rows
    adjusted = stats.adjust_pvalues([cmp.p_value for _, _, cmp in pending], "holm")
    for (suite, idx, _), p_adj in zip(pending, adjusted):
        row = boards[suite][idx]
        boards[suite][idx] = BoardRow(
            row.cell, row.rank, False, row.diff, row.lo, row.hi, row.n_paired, row.method, row.p, p_adj
        )
    return boards


def n_comparisons(boards: dict[str, list[BoardRow]]) -> int:
    return sum(1 for rows in boards.values() for r in rows if finite(r.p_adj))


def pairs(summary: RunSummary) -> list[tuple[str, str, list[PairSuite]]]:
    """Every pair of models (run order) with, per shared suite, the comparison and disagreeing items."""
    cells = {(c.model, c.suite): c for c in summary.cells if c.n_items}
    models = [m.model for m in summary.models if any(k[0] == m.model for k in cells)]
    out = []
    for i, a in enumerate(models):
        for b in models[i + 1 :]:
            per_suite = []
            for s in summary.suites:
                ca, cb = cells.get((a, s.suite)), cells.get((b, s.suite))
                if ca is None or cb is None:
                    continue
                ids, xs, ys, clusters = _aligned(ca, cb)
                cmp = paired.paired_compare(xs, ys, clusters=clusters, n_resamples=PAIR_RESAMPLES)
                disagree = tuple(item for item, x, y in zip(ids, xs, ys) if x != y)
                per_suite.append(PairSuite(s.suite, ca, cb, cmp, disagree))
            out.append((a, b, per_suite))
    return out


def pareto_front(points: list[tuple[float, float]]) -> list[bool]:
    """For (cost, accuracy) points: True where no other point is at most as costly and at least as
    accurate while strictly better in one of the two. Points with a NaN coordinate are never on it."""
    flags = []
    for i, (c, a) in enumerate(points):
        if not (finite(c) and finite(a)):
            flags.append(False)
            continue
        dominated = any(
            j != i and finite(c2) and finite(a2) and c2 <= c and a2 >= a and (c2 < c or a2 > a)
            for j, (c2, a2) in enumerate(points)
        )
        flags.append(not dominated)
    return flags
