"""Split a heavy stage over worker processes, up to two per core, so the generator keeps up.

A closed loop of 500 users reads ~15k stream events a second; one Python process that falls
behind reads two tokens at once, and the first is then dated late (the kernel merges segments
waiting in a socket's queue and keeps the newer time). Each worker drives its share of the users
(or an independent Poisson process at its share of the rate: their sum is Poisson at the whole
rate) from a common start time; all clocks are the same wall clock, so the parent pools the
requests and computes the stage's figures as if one process had sent them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

from harness.load.generator import Budget, StageDriver, StageRun
from harness.load.profile import Slo, Stage
from harness.load.requests import Body
from harness.load.wire import Endpoint

MIN_USERS_PER_WORKER = 64  # below this one process keeps up and a worker's start-up is not worth it


def worker_count(stage: Stage) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    load = stage.concurrency if stage.concurrency is not None else int((stage.rate or 0) * 0.5)
    # Up to two per core: on a shared machine each process gets its own share of the scheduler,
    # and one with fewer streams reads each sooner (measured: 500 users on 2 busy cores, TTFT p99
    # off by +71% with 2 processes and 0% with 4).
    return max(1, min(2 * cores, load // MIN_USERS_PER_WORKER))


def _ready(hold: float) -> int:
    time.sleep(hold)
    return os.getpid()


async def drive(driver: StageDriver, url: str, stage: Stage, *, processes: int | None = None) -> StageRun:
    """Run a stage in this process, or over worker processes when it is heavy enough to need them."""
    n = worker_count(stage) if processes is None else processes
    if n <= 1:
        return await driver.run(stage)
    return await run_in_workers(
        url,
        driver.endpoint.proxy,
        driver.body_list,
        driver.headers,
        stage,
        n,
        timeout=driver.timeout,
        slo=driver.slo,
        budget=driver.budget,
        seed=driver.seed,
    )


def _share(total: int, parts: int, index: int) -> int:
    return total // parts + (1 if index < total % parts else 0)


def _run_share(
    url: str,
    proxy: str | None,
    bodies: list[Body],
    headers: dict[str, str],
    timeout: float,
    slo: Slo | None,
    budget: Budget,
    seed: int,
    stage: Stage,
    start_at: float,
) -> tuple[StageRun, float]:
    async def main() -> StageRun:
        endpoint = Endpoint(url, proxy=proxy)
        driver = StageDriver(endpoint, bodies, headers, timeout=timeout, slo=slo, budget=budget, seed=seed)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        try:
            return await driver.run(stage)
        finally:
            endpoint.close()

    run = asyncio.run(main())
    return run, budget.spent


async def run_in_workers(
    url: str,
    proxy: str | None,
    bodies: list[Body],
    headers: dict[str, str],
    stage: Stage,
    workers: int,
    *,
    timeout: float,
    slo: Slo | None,
    budget: Budget,
    seed: int,
) -> StageRun:
    """The stage, its users (or rate), requests and warm-up divided over `workers` processes."""
    shares = []
    for i in range(workers):
        part = dataclasses.replace(
            stage,
            concurrency=None if stage.concurrency is None else _share(stage.concurrency, workers, i),
            rate=None if stage.rate is None else stage.rate / workers,
            requests=None if stage.requests is None else _share(stage.requests, workers, i),
            warmup=_share(stage.warmup, workers, i),
        )
        share_budget = Budget(
            budget.price_input,
            budget.price_output,
            None if budget.max_cost is None else max(0.0, budget.max_cost - budget.spent) / workers,
        )
        shares.append((part, share_budget))
    loop = asyncio.get_running_loop()
    # spawn, not fork: the parent has a running event loop and open sockets a child must not inherit
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        # Every worker imports harness first (each readiness task holds its worker a moment, so
        # each lands on its own process); then all start together.
        await asyncio.gather(*(loop.run_in_executor(pool, _ready, 0.3) for _ in range(workers)))
        start_at = time.time() + 0.2
        outcomes = await asyncio.gather(
            *(
                loop.run_in_executor(
                    pool, _run_share, url, proxy, bodies, headers, timeout, slo, share_budget, seed + i, part, start_at
                )
                for i, (part, share_budget) in enumerate(shares)
            )
        )
    merged = StageRun()
    for run, spent in outcomes:
        merged.results += run.results
        merged.lags += run.lags
        merged.stopped = merged.stopped or run.stopped
        budget.spent += spent
    merged.results.sort(key=lambda r: r.sent_at)
    return merged
