"""Leaderboards (each model against its suite's best), model pairs for the A-vs-B pages, the Pareto front.

Every comparison here is made by `compare.pair_cells` and corrected by `compare.correct`, the same
pipeline as `harness compare` and `harness check`, so a difference and its p-value read the same in
the terminal and the report. One sign convention everywhere: Δ = A − B, where B is the reference
(the suite's best model, the baseline, the earlier model of the plan, the old run) and A the other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from harness.analysis.compare import PairComparison, compare_models, correct, pair_cells
from harness.analysis.summary import CellSummary, RunSummary
from harness.errors import HarnessError
from harness.formatting import finite

ALPHA = 0.05


@dataclass(frozen=True)
class BoardRow:
    """One model on one suite's leaderboard; diff/lo/hi/p compare it with the suite's best model (A − best)."""

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
    """Models A and B on one suite: the paired comparison (diff = A − B) and the items where they differ."""

    suite: str
    a: CellSummary
    b: CellSummary  # the reference: the model earlier in the plan
    comparison: PairComparison
    disagree: tuple[str, ...]  # item ids, in A's item order

    @property
    def a_better(self) -> int:
        return self.comparison.discordant_b  # the comparison's `b` side is A (its `a` is the reference)

    @property
    def b_better(self) -> int:
        return self.comparison.discordant_a


def _never_answered(c: CellSummary) -> bool:
    return bool(c.n_samples) and c.errors >= c.n_samples


def leaderboards(summary: RunSummary, prefer: dict[str, str] | None = None) -> dict[str, list[BoardRow]]:
    """suite -> rows sorted best first. Every model is compared with the suite's best model on their
    shared items; p-values are Holm-adjusted over all comparisons of all suites.

    `prefer`: suite -> the model the routing calls best (`recommend`), which wins a tie on score, so the
    leaderboard's ★ and the Routing table never name two different models for one score."""
    by_suite: dict[str, list[CellSummary]] = {}
    for c in summary.cells:
        if c.n_items:
            by_suite.setdefault(c.suite, []).append(c)
    order = {m.model: i for i, m in enumerate(summary.models)}
    run = summary.run.id
    boards: dict[str, list[BoardRow]] = {}
    pending: list[tuple[str, int, PairComparison]] = []
    for suite, cells in by_suite.items():
        chosen = (prefer or {}).get(suite)
        # A model that never answered is no contender for "best", whatever its (all-zero) score ties with.
        cells = sorted(
            cells,
            key=lambda c: (
                _never_answered(c),
                -(c.mean if finite(c.mean) else -1.0),
                c.model != chosen,
                order.get(c.model, 0),
            ),
        )
        best = cells[0]
        if _never_answered(best):
            boards[suite] = [BoardRow(c, rank, False) for rank, c in enumerate(cells, start=1)]
            continue
        rows = [BoardRow(best, 1, True)]
        for rank, c in enumerate(cells[1:], start=2):
            cmp = pair_cells(best, run, c, run)
            rows.append(BoardRow(c, rank, False, cmp.diff, cmp.diff_lo, cmp.diff_hi, cmp.n_paired, cmp.method))
            if finite(cmp.p_value):
                pending.append((suite, rank - 1, cmp))
        boards[suite] = rows
    for (suite, idx, _), cmp in zip(pending, correct([c for _, _, c in pending], "holm", ALPHA)):
        row = boards[suite][idx]
        boards[suite][idx] = BoardRow(
            row.cell, row.rank, False, row.diff, row.lo, row.hi, row.n_paired, row.method, cmp.p_value, cmp.p_adjusted
        )
    return boards


def n_comparisons(boards: dict[str, list[BoardRow]]) -> int:
    return sum(1 for rows in boards.values() for r in rows if finite(r.p_adj))


def pairs(summary: RunSummary) -> list[tuple[str, str, list[PairSuite]]]:
    """Every pair of models as (A, B, per suite), B the earlier model of the plan: `compare_models`'s
    comparisons (the ones `harness compare RUN` prints), Holm-corrected together, with the disagreeing items."""
    try:
        result = compare_models(None, summary=summary)  # type: ignore[arg-type]  # the summary is given
    except HarnessError:  # one model, or nothing in common: no pairs
        return []
    cells = {(c.model, c.suite): c for c in summary.cells}
    out: dict[tuple[str, str], list[PairSuite]] = {}
    for cmp in result.comparisons:
        a, b = cells[(cmp.b.model, cmp.suite)], cells[(cmp.a.model, cmp.suite)]
        if not cmp.n_paired:
            continue
        b_by_item = dict(zip(b.item_ids, b.scores))
        disagree = tuple(i for i, s in zip(a.item_ids, a.scores) if i in b_by_item and b_by_item[i] != s)
        out.setdefault((cmp.b.model, cmp.a.model), []).append(PairSuite(cmp.suite, a, b, cmp, disagree))
    return [(a, b, per_suite) for (a, b), per_suite in out.items()]


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
