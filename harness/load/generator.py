"""Drive one stage of load: closed loop (N users, each sending its next request when its last one
ends) or open loop (Poisson arrivals at a rate, whatever the server does), with early stopping.

Open loop sends on a precomputed schedule and records how late each send was: a generator that
falls behind offers less load than asked, and the stage says so instead of reporting the
flattering latency of a lighter load.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from dataclasses import dataclass, field

from harness.load.profile import Slo, Stage
from harness.load.requests import Body, RequestResult, interpret, is_fatal
from harness.load.wire import Endpoint, WireError

_PERCENT_TERMS = {"ttft": "ttft", "latency": "latency", "itl": None, "tpot": "tpot"}
_HAMMER_WINDOW = 20  # consecutive 429/5xx answers after which a stage stops hammering


@dataclass
class Budget:
    """Money spent so far against --max-cost (None: no cap)."""

    price_input: float = 0.0
    price_output: float = 0.0
    max_cost: float | None = None
    spent: float = 0.0

    def add(self, r: RequestResult) -> None:
        self.spent += ((r.input_tokens or 0) * self.price_input + (r.output_tokens or 0) * self.price_output) / 1e6

    @property
    def exhausted(self) -> bool:
        return self.max_cost is not None and self.spent >= self.max_cost


@dataclass
class StageRun:
    results: list[RequestResult] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)  # open loop: seconds each send was late
    stopped: str = ""  # why the stage ended early, "" if it ran to the end


class EarlyStop:
    """Ends a stage as soon as its outcome is certain or the provider is clearly refusing.

    With an SLO: once more requests have exceeded a percentile term's limit than that percentile
    allows over the whole stage, the stage cannot meet it; once errors exceed the error budget of
    the whole stage, the same. Always: a run of consecutive 429/5xx answers stops the stage, so a
    provider that is throttling or failing is not hammered for the rest of it.
    """

    def __init__(self, slo: Slo | None, planned: int | None):
        self.planned = planned
        self.counters: list[tuple[str, float, float, int]] = []  # (metric, limit, allowed share, exceeded)
        self.error_limit: float | None = None
        for term in slo.terms if slo else ():
            base, _, pct = term.metric.rpartition("_p")
            if term.metric == "error_rate":
                self.error_limit = term.limit
            elif base in _PERCENT_TERMS and _PERCENT_TERMS[base] and pct.isdigit():
                self.counters.append((_PERCENT_TERMS[base], term.limit, 1 - int(pct) / 100, 0))
        self.errors = 0
        self.refusals = 0

    def observe(self, r: RequestResult) -> str:
        """Account for a finished measured request; a reason to stop, or ""."""
        if r.error in ("429", "5xx"):
            self.refusals += 1
            if self.refusals >= _HAMMER_WINDOW:
                return f"{_HAMMER_WINDOW} consecutive 429/5xx answers"
        elif is_fatal(r):  # refused key or route, nothing listening: more requests only repeat it
            self.refusals += 1
            if self.refusals >= _HAMMER_WINDOW:
                return f"{_HAMMER_WINDOW} consecutive refusals (401/403/404, no connection)"
        else:
            self.refusals = 0
        planned = self.planned
        if r.error:
            self.errors += 1
            if self.error_limit is not None and planned and self.errors > max(2, self.error_limit * planned):
                return f"errors exceed the SLO's error budget ({self.errors} of {planned} planned)"
        for i, (metric, limit, share, exceeded) in enumerate(self.counters):
            value = getattr(r, metric)
            if r.error or value is None or value <= limit:
                continue
            exceeded += 1
            self.counters[i] = (metric, limit, share, exceeded)
            if planned and exceeded > share * planned + 1 and exceeded >= 3:
                return f"{exceeded} requests over {metric} {limit:g}s: the stage cannot meet the SLO"
        return ""


class StageDriver:
    """Sends a stage's requests to one endpoint, cycling through the request bodies."""

    def __init__(
        self,
        endpoint: Endpoint,
        bodies: list[Body],
        headers: dict[str, str],
        *,
        timeout: float,
        slo: Slo | None = None,
        budget: Budget | None = None,
        seed: int = 0,
        max_in_flight: int = 20000,
    ):
        self.endpoint, self.headers, self.timeout = endpoint, headers, timeout
        self.body_list = bodies
        self.bodies = itertools.cycle(bodies)
        self.slo, self.budget = slo, budget or Budget()
        self.seed, self.max_in_flight = seed, max_in_flight

    async def one(self, measured: bool) -> RequestResult:
        body = next(self.bodies)
        started = time.time()
        r = RequestResult(sent_at=started, measured=measured)
        try:
            response = await self.endpoint.send(body.data, self.headers, self.timeout)
        except WireError as exc:
            r.error, r.detail, r.elapsed = exc.kind, str(exc)[:200], time.time() - started
            return r
        r.sent_at = response.sent_at
        interpret(response, r)
        r.elapsed = (response.last_at or time.time()) - r.sent_at
        self.budget.add(r)
        return r

    async def run(self, stage: Stage) -> StageRun:
        if stage.concurrency is not None:
            return await self._closed(stage)
        return await self._open(stage)

    def _planned(self, stage: Stage) -> int | None:
        if stage.requests is not None:
            return stage.requests
        if stage.rate is not None and stage.duration_s is not None:
            return int(stage.rate * stage.duration_s)
        return None

    async def _closed(self, stage: Stage) -> StageRun:
        run = StageRun()
        stop = EarlyStop(self.slo, self._planned(stage))
        issued = 0
        measured_issued = 0
        measure_from: float | None = None

        def next_request() -> bool | None:
            """Whether the next request is measured; None when the stage has sent enough."""
            nonlocal issued, measured_issued, measure_from
            if run.stopped or self.budget.exhausted:
                return None
            if issued < stage.warmup:
                issued += 1
                return False
            if stage.requests is not None:
                if measured_issued >= stage.requests:
                    return None
            else:
                now = time.time()
                measure_from = measure_from or now
                if now - measure_from >= (stage.duration_s or 0):
                    return None
            issued += 1
            measured_issued += 1
            return True

        users = int(stage.concurrency or 1)

        async def user(index: int) -> None:
            # Users started all at once answer in waves, which a busy generator reads late; spread
            # over about one request's latency they stay out of step (their first requests are warm-ups).
            if stage.ramp_s:
                await asyncio.sleep(stage.ramp_s * index / users)
            while (measured := next_request()) is not None:
                r = await self.one(measured)
                run.results.append(r)
                if measured and not run.stopped:
                    run.stopped = stop.observe(r)
                if self.budget.exhausted and not run.stopped:
                    run.stopped = f"--max-cost ${self.budget.max_cost:g} reached"

        await asyncio.gather(*(user(i) for i in range(users)))
        return run

    async def _open(self, stage: Stage) -> StageRun:
        run = StageRun()
        stop = EarlyStop(self.slo, self._planned(stage))
        loop = asyncio.get_running_loop()
        rng = random.Random(self.seed)
        rate = float(stage.rate or 1.0)
        tasks: set[asyncio.Task] = set()
        wall0, loop0 = time.time() + 0.05, loop.time() + 0.05
        due = 0.0
        total = stage.warmup + stage.requests if stage.requests is not None else None
        horizon = (stage.warmup / rate + (stage.duration_s or 0)) if total is None else None

        async def send(measured: bool) -> None:
            r = await self.one(measured)
            run.results.append(r)
            if measured and not run.stopped:
                run.stopped = stop.observe(r)

        for index in itertools.count():
            if total is not None and index >= total or horizon is not None and due >= horizon:
                break
            if run.stopped or self.budget.exhausted:
                run.stopped = run.stopped or f"--max-cost ${self.budget.max_cost:g} reached"
                break
            delay = loop0 + due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(tasks) >= self.max_in_flight:
                run.stopped = f"{self.max_in_flight} requests in flight: the generator cannot offer this rate"
                break
            measured = index >= stage.warmup
            if measured:
                run.lags.append(max(0.0, time.time() - (wall0 + due)))
            task = asyncio.ensure_future(send(measured))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            due += rng.expovariate(rate)
        if tasks:
            await asyncio.gather(*tasks)
        return run
