"""What a load test does: stages (a concurrency or a Poisson rate, held for N requests or S seconds)
and the service-level objective (SLO) a stage is judged against."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from harness.errors import HarnessError


@dataclass(frozen=True)
class Stage:
    """One level of load: closed loop (`concurrency` users, each sending its next request when the
    last one ends) or open loop (Poisson arrivals at `rate` per second, whatever the server does)."""

    concurrency: int | None = None
    rate: float | None = None
    requests: int | None = None  # measured requests (after warm-up)
    duration_s: float | None = None  # or: measured seconds
    warmup: int = 0  # requests sent first and not measured
    ramp_s: float = 0.0  # closed loop: users start evenly over this many seconds, not all at once

    @property
    def label(self) -> str:
        return f"c={self.concurrency}" if self.concurrency is not None else f"rate={self.rate:g}/s"


@dataclass(frozen=True)
class Workload:
    """The requests: prompts rendered from the plan's suites, or synthetic ones of a given length."""

    synthetic_input_tokens: int | None = None
    output_tokens: int | None = None  # max_tokens sent (None: each suite's own)
    ignore_eos: bool = False  # ask the server not to stop before max_tokens (vLLM, llama.cpp)
    suites: tuple[str, ...] = ()  # restrict to these plan suites
    images: int = 0  # synthetic images added to each request's last user message
    image_size: tuple[int, int] = (1024, 1024)


@dataclass(frozen=True)
class SloTerm:
    metric: str  # a stage statistic, e.g. ttft_p99, latency_p99, error_rate
    limit: float  # seconds, or a fraction for rates

    def met(self, value: float | None) -> bool:
        return value is not None and value <= self.limit


@dataclass(frozen=True)
class Slo:
    terms: tuple[SloTerm, ...] = ()
    text: str = ""

    def failures(self, stats: dict) -> list[str]:
        """The terms a stage's statistics miss, as readable strings (empty: the stage meets the SLO)."""
        out = []
        for term in self.terms:
            value = stats.get(term.metric)
            if not term.met(value):
                shown = "—" if value is None else f"{value:.4g}"
                out.append(f"{term.metric} {shown} > {term.limit:g}")
        return out


@dataclass(frozen=True)
class LoadProfile:
    stages: tuple[Stage, ...]
    workload: Workload = field(default_factory=Workload)
    timeout_s: float = 120.0
    slo: Slo | None = None
    search: bool = False  # capacity search between/above the stages instead of only the list
    max_concurrency: int = 1024
    seed: int = 0


_SLO_METRICS = {
    "ttft_p50",
    "ttft_p90",
    "ttft_p95",
    "ttft_p99",
    "latency_p50",
    "latency_p90",
    "latency_p95",
    "latency_p99",
    "itl_p50",
    "itl_p90",
    "itl_p95",
    "itl_p99",
    "tpot_p50",
    "tpot_p99",
    "error_rate",
    "rate_limited_rate",
}
_TERM = re.compile(r"^\s*([a-z0-9_]+)\s*<=?\s*([0-9.]+)\s*(ms|s|%)?\s*$")


def parse_slo(text: str) -> Slo:
    """`"ttft_p99<=2s,latency_p99<=5s,error_rate<=1%"` -> Slo; a bad term is a one-line error."""
    terms = []
    for raw in text.split(","):
        if not raw.strip():
            continue
        match = _TERM.match(raw)
        if not match:
            raise HarnessError(
                f"--slo: cannot read {raw.strip()!r}; write terms like ttft_p99<=2s, "
                f"latency_p99<=5000ms, error_rate<=1%"
            )
        metric, number, unit = match.groups()
        if metric not in _SLO_METRICS:
            raise HarnessError(f"--slo: unknown metric {metric!r} (known: {', '.join(sorted(_SLO_METRICS))})")
        value = float(number)
        is_rate = metric.endswith("_rate")
        if is_rate and unit not in ("%", None) or not is_rate and unit == "%":
            raise HarnessError(f"--slo: {metric} takes {'a percentage' if is_rate else 'seconds (s or ms)'}")
        if unit == "ms":
            value /= 1000
        elif unit == "%" or (is_rate and value > 1):
            value /= 100
        terms.append(SloTerm(metric, value))
    if not terms:
        raise HarnessError("--slo: give at least one term, e.g. --slo 'ttft_p99<=2s,error_rate<=1%'")
    return Slo(tuple(terms), text)


def parse_levels(text: str, *, what: str, integer: bool) -> tuple[float, ...]:
    """`"1,8,32"` -> (1, 8, 32); every level positive."""
    levels = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = int(part) if integer else float(part)
        except ValueError:
            raise HarnessError(
                f"--{what}: {part!r} is not a {'whole ' if integer else ''}number (give a list like 1,8,32)"
            ) from None
        if value <= 0:
            raise HarnessError(f"--{what}: levels must be positive, got {part}")
        levels.append(value)
    if not levels:
        raise HarnessError(f"--{what}: give at least one level, e.g. 1,8,32")
    return tuple(levels)


def build_stages(
    *,
    concurrency: str | None,
    rate: str | None,
    requests: int | None,
    duration: float | None,
    warmup: int | None,
    ramp_up: float | None = None,
) -> tuple[Stage, ...]:
    """The CLI's stage options -> stages. Default: concurrency 1,8,32 with 50 requests each."""
    if concurrency and rate:
        raise HarnessError("give --concurrency (closed loop) or --rate (open loop), not both")
    if ramp_up is not None and (rate or ramp_up < 0):
        raise HarnessError(
            "--ramp-up: seconds >= 0 over which closed-loop (--concurrency) users start; "
            "an open loop (--rate) has no users to start"
        )
    if requests is not None and duration is not None:
        raise HarnessError("give --requests N or --duration S per stage, not both")
    if requests is not None and requests < 1 or duration is not None and duration <= 0:
        raise HarnessError("--requests and --duration must be positive")
    if requests is None and duration is None:
        requests = 50
    if rate:
        return tuple(
            Stage(rate=r, requests=requests, duration_s=duration, warmup=warmup or 0)
            for r in parse_levels(rate, what="rate", integer=False)
        )
    levels = parse_levels(concurrency or "1,8,32", what="concurrency", integer=True)
    return tuple(
        Stage(
            concurrency=int(c),
            requests=requests,
            duration_s=duration,
            warmup=int(c) if warmup is None else warmup,
            ramp_s=ramp_up or 0.0,
        )
        for c in levels
    )
