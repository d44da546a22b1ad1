"""Tool and agent figures: outcome classes per model (call, no_call, bad_arguments, text_call, error), and pass^k."""

from __future__ import annotations

from collections import Counter, defaultdict
from math import comb
from typing import Iterable, Sequence

from harness.providers.text_calls import OUTCOMES


def pass_hat_k(samples: Sequence[int], passed: Sequence[int], k: int) -> float:
    """pass^k: the chance that k tries of a task, drawn from its n >= k samples, all succeed, averaged over tasks.

    The unbiased estimator per task is C(c, k) / C(n, k) (tau-bench's); tasks with fewer than k samples are
    left out. Returns NaN when no task has k samples.
    """
    values = [comb(c, k) / comb(n, k) for n, c in zip(samples, passed) if n >= k]
    return sum(values) / len(values) if values else float("nan")


def outcome_counts(rows: Iterable[tuple[str, str | None]]) -> dict[str, Counter]:
    """(model, tool_outcome) rows -> model -> Counter of outcome classes (samples of non-tool suites skipped)."""
    out: dict[str, Counter] = defaultdict(Counter)
    for model, outcome in rows:
        if outcome:
            out[model][outcome] += 1
    return {m: Counter({k: c[k] for k in OUTCOMES if c[k]}) for m, c in out.items()}
