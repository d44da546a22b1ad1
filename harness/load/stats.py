"""Per-stage statistics of a load test, and the bootstrap test for a p99 that got worse."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from harness.load.requests import ERROR_KINDS, RequestResult

PERCENTILES = (50, 90, 95, 99)


def percentiles(values: Sequence[float], prefix: str) -> dict[str, float | None]:
    """p50/p90/p95/p99 (linear interpolation, numpy's default) or None when nothing was measured."""
    if len(values) == 0:
        return {f"{prefix}_p{q}": None for q in PERCENTILES}
    found = np.percentile(np.asarray(values, dtype=float), PERCENTILES)
    return {f"{prefix}_p{q}": float(v) for q, v in zip(PERCENTILES, found)}


def time_in_flight(results: Iterable[RequestResult], start: float, end: float) -> float:
    """Mean number of requests in flight over [start, end] (the integral of the in-flight count)."""
    if end <= start:
        return 0.0
    total = 0.0
    for r in results:
        finished = r.sent_at + r.elapsed
        total += max(0.0, min(end, finished) - max(start, r.sent_at))
    return total / (end - start)


@dataclass(frozen=True)
class StageTarget:
    concurrency: int | None
    rate: float | None


def stage_stats(
    results: list[RequestResult],
    target: StageTarget,
    *,
    slo_limits: dict[str, float] | None = None,
    lags: Sequence[float] = (),
    stopped: str = "",
) -> dict:
    """The stage's figures (the `harness load --json` STAGE shape, plus more); None = not measured."""
    measured = [r for r in results if r.measured]
    ok = [r for r in measured if r.ok]
    n = len(measured)
    stats: dict = {
        "concurrency": target.concurrency,
        "rate": target.rate,
        "requests": n,
        "ok": len(ok),
        "errors": n - len(ok),
    }
    by_kind = {k: sum(1 for r in measured if r.error == k) for k in ERROR_KINDS}
    stats["errors_by_kind"] = {k: v for k, v in by_kind.items() if v}
    stats["error_rate"] = (n - len(ok)) / n if n else None
    stats["rate_limited_rate"] = by_kind["429"] / n if n else None
    if n:
        first = min(r.sent_at for r in measured)
        last_send = max(r.sent_at for r in measured)
        last_end = max(r.sent_at + r.elapsed for r in measured)
    else:
        first = last_send = last_end = 0.0
    # Achieved load is judged while the stage was being fed (first to last measured send): the
    # tail after the last send, when the in-flight count drains, is not a level anyone asked for.
    window_end = last_send if last_send > first else last_end
    stats["achieved_concurrency"] = time_in_flight(results, first, window_end) if n > 1 else None
    stats["achieved_rate"] = (n - 1) / (last_send - first) if n > 1 and last_send > first else None
    span = last_end - first
    stats["duration_s"] = span if n else None
    stats["requests_per_s"] = len(ok) / span if ok and span > 0 else None
    out_tokens = [r.output_tokens for r in ok if r.output_tokens is not None]
    stats["output_tokens_per_s"] = sum(out_tokens) / span if out_tokens and span > 0 else None
    in_tokens = [r.input_tokens for r in ok if r.input_tokens is not None]
    stats["input_tokens"] = sum(in_tokens) if in_tokens else None
    stats["output_tokens"] = sum(out_tokens) if out_tokens else None
    stats.update(percentiles([r.ttft for r in ok if r.ttft is not None], "ttft"))
    stats.update(percentiles([r.latency for r in ok if r.latency is not None], "latency"))
    stats.update(percentiles([g for r in ok for g in r.itl], "itl"))
    stats.update(percentiles([t for r in ok if (t := r.tpot) is not None], "tpot"))
    if slo_limits is not None:
        good = sum(1 for r in ok if meets(r, slo_limits))
        stats["goodput"] = good / n if n else None
        stats["goodput_per_s"] = good / span if span > 0 else None
    if lags:
        lag_p99 = float(np.percentile(lags, 99))
        stats["generator_lag_p99"] = lag_p99
        # An open-loop generator that sends late offers less load than asked: say so. (Judged on
        # the lags against its own schedule: a Poisson sample's realised rate varies by itself.)
        stats["generator_behind"] = lag_p99 > 0.05
    stats["stopped_early"] = stopped or None
    return stats


def meets(r: RequestResult, limits: dict[str, float]) -> bool:
    """Per-request SLO: the TTFT and latency limits of the SLO's p-terms applied to one request."""
    for metric, limit in limits.items():
        value = getattr(r, metric, None)
        if value is None or value > limit:
            return False
    return True


@dataclass(frozen=True)
class P99Change:
    old: float
    new: float
    diff: float  # new - old, seconds
    lo: float
    hi: float  # the 95% bootstrap interval of diff
    significant: bool  # the interval lies above zero: p99 got worse


def p99_change(
    old: Sequence[float], new: Sequence[float], *, confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> P99Change | None:
    """Bootstrap interval (percentile method, independent resampling of each side) of p99(new) - p99(old).

    A p99 rests on the few slowest requests, so normal-theory intervals do not apply; the bootstrap
    makes no assumption about the latency distribution. None when a side has under 20 requests.
    """
    from scipy.stats import bootstrap

    a, b = np.asarray(old, dtype=float), np.asarray(new, dtype=float)
    if len(a) < 20 or len(b) < 20:
        return None

    def diff(x, y, axis=-1):
        return np.percentile(y, 99, axis=axis) - np.percentile(x, 99, axis=axis)

    res = bootstrap(
        (a, b),
        diff,
        paired=False,
        vectorized=True,
        n_resamples=resamples,
        confidence_level=confidence,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    d = float(diff(a, b))
    return P99Change(float(np.percentile(a, 99)), float(np.percentile(b, 99)), d, lo, hi, bool(lo > 0))
