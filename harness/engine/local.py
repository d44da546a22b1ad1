"""The local executor: every model's units on one asyncio loop in this process, within each model's limits."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable

from harness.engine.pacing import AdaptiveLimiter, RateLimiter
from harness.engine.runner import ModelState, UnitRunner
from harness.engine.units import PreparedSuite, plan_units, remaining_samples
from harness.engine.writer import StoreWriter
from harness.plan import ModelSpec, Plan
from harness.providers import make_provider
from harness.providers.tokens import estimate_tokens
from harness.providers.vision import prompt_image_tokens
from harness.store import Store

log = logging.getLogger(__name__)


@dataclass
class RunOutcome:
    run_id: str
    stopped_for_cost: bool = False
    interrupted: bool = False
    requested: int = 0  # units started in this process
    per_model: dict[str, ModelState] = field(default_factory=dict)
    waiting: list[str] = field(default_factory=list)  # provider batches still running when this process stopped waiting
    notes: list[str] = field(default_factory=list)  # what the user should hear about (e.g. a cancelled batch)

    @property
    def complete(self) -> bool:
        return not self.stopped_for_cost and not self.interrupted and not self.waiting

    def failures(self) -> dict[str, str]:
        """model -> why some of its samples are missing: stopped on fatal errors, or samples left unstored."""
        out = {}
        for name, st in self.per_model.items():
            if st.failed:
                out[name] = st.failed
            elif st.unstored:
                out[name] = f"{st.unstored} sample(s) not stored after: {st.last_fatal}"
        return out

    def reached(self) -> bool:
        """Some model's server answered at least once (or nothing needed asking)."""
        return any(st.answered or not st.failed for st in self.per_model.values())


def warm_imports(modules: Iterable[str]) -> threading.Thread | None:
    """Import modules on a background thread while requests are in flight (the run's idle time)."""
    modules = [m for m in modules]
    if not modules:
        return None

    def work() -> None:
        import importlib

        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:  # the real import later reports it properly
                log.debug("warming %s failed", name, exc_info=True)

    thread = threading.Thread(target=work, name="harness-warm", daemon=True)
    thread.start()
    return thread


class LocalExecutor:
    """Runs every model's units concurrently in this process, each model within its own limits."""

    def __init__(
        self,
        plan: Plan,
        suites: list[PreparedSuite],
        store: Store,
        run_id: str,
        *,
        max_cost: float | None = None,
        use_cache: bool = False,
        progress=None,
        shard: tuple[int, int] | None = None,
        warm: Iterable[str] = (),
        own_process: bool = False,
        batch_wait: float | None = None,
        limits: Callable[[ModelSpec], tuple[AdaptiveLimiter, RateLimiter]] | None = None,
    ):
        """`own_process`: this process exists for the run (the CLI), so the engine may tune it
        process-wide: after the providers' imports it moves every object alive into the garbage
        collector's permanent generation (and enables the collector, which the CLI disables while
        it imports), so full collections during the run stop re-walking the hundreds of thousands
        of objects that importing the openai client creates; and it shortens the GIL switch
        interval while the run lasts. `batch_wait`: seconds to keep polling provider batches
        (None: until they end); batches still running then are left for a rerun to collect.
        `limits`: a model's concurrency window and rate buckets (default: this process's own; a
        distributed executor passes ones shared cluster-wide)."""
        self.plan, self.suites, self.store, self.run_id = plan, suites, store, run_id
        self.own_process = own_process
        self.max_cost = max_cost
        self.use_cache = use_cache or plan.cache
        self.progress = progress
        self.shard = shard
        self.warm = tuple(warm)
        self.limits = limits or _own_limits
        self.batch_wait = batch_wait
        self._writer: StoreWriter | None = None
        self._stop: asyncio.Event | None = None  # created inside the loop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_asked = False
        self._dispatching: set[str] = set()  # models with units still to send

    def stop_soon(self) -> None:
        """Stop sending new requests, from any thread (the run lease's heartbeat found it lost):
        requests in flight finish and are stored, and the run ends as interrupted."""
        self._stop_asked = True
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    async def run(self) -> RunOutcome:
        self._stop = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        if self._stop_asked:
            self._stop.set()
        outcome = RunOutcome(self.run_id)
        done = self.store.done_keys(self.run_id)
        states: dict[str, ModelState] = {}
        try:
            for spec in (*self.plan.models, *self.plan.judges):
                states[spec.name] = ModelState(spec, make_provider(spec), *self.limits(spec))
        except BaseException:
            for st in states.values():
                await st.provider.close()
            raise
        answering = {name: st for name, st in states.items() if name not in {j.name for j in self.plan.judges}}
        self._dispatching = set(answering)
        outcome.per_model = states
        switch_interval = sys.getswitchinterval()
        if self.own_process:
            gc.freeze()
            gc.enable()  # the CLI turned it off for the start-up imports
            # The store writer and the import-warming thread share the GIL with the event loop:
            # hand it back to the loop within 1 ms instead of 5 when a response is waiting.
            sys.setswitchinterval(min(switch_interval, 0.001))
        if self.max_cost is not None and self.max_cost <= 0:
            outcome.stopped_for_cost = True
            self._stop.set()
        writer = self._writer = StoreWriter(self.store, [p.hash for p in self.suites])
        grade_pool = ThreadPoolExecutor(
            max_workers=max(2, min(32, sum(s.spec.concurrency for s in states.values()))),
            thread_name_prefix="harness-grade",
        )

        def sink_with_progress(record, unit, _put=writer.put, _advance=self.progress and self.progress.advance):
            _put(record, unit)
            _advance(record)

        sink = writer.put if self.progress is None else sink_with_progress
        try:
            runner = UnitRunner(
                self.plan,
                {p.suite.name: p for p in self.suites},
                states,
                self.run_id,
                self.store,
                sink,
                grade_pool,
                self.use_cache,
                cache_sink=writer.put_cache,
            )
            if self.progress is not None:
                for st in answering.values():
                    st.total = self._remaining(done, st.spec.name)
                self.progress.start(answering)
            # Every model's in-flight requests finish before a failure in one of them propagates.
            results = await asyncio.gather(
                *(self._run_model(runner, st, done, outcome) for st in answering.values()), return_exceptions=True
            )
            for result in results:
                if isinstance(result, BaseException):
                    raise result
        except (KeyboardInterrupt, asyncio.CancelledError):
            outcome.interrupted = True
            raise
        finally:
            for st in states.values():
                try:
                    await st.provider.close()
                except Exception:
                    log.debug("closing provider failed", exc_info=True)
            grade_pool.shutdown(wait=True)
            try:
                writer.close()
            finally:
                sys.setswitchinterval(switch_interval)
                if self.progress is not None:
                    self.progress.stop()
        outcome.interrupted = outcome.interrupted or self._stop_asked
        return outcome

    def stop(self) -> None:
        """Send nothing more; what is in flight finishes and is stored (called on the loop's thread)."""
        if self._stop is not None:
            self._stop.set()

    def _dispatched(self, model: str) -> None:
        """A model has sent its last unit. Once every model has, the loop has little left to do but
        wait for the last answers: the time to import what the summary needs, without slowing a
        dispatch (an importing thread holds the GIL the loop needs to answer and send)."""
        if model in self._dispatching:
            self._dispatching.discard(model)
            if not self._dispatching:
                warm_imports(self.warm)

    def _remaining(self, done: set, model: str) -> int | None:
        if self.shard is not None and self.shard[1] > 1:
            return None
        return remaining_samples(self.plan, self.suites, done, model)

    async def _run_model(self, runner: UnitRunner, state: ModelState, done: set, outcome: RunOutcome) -> None:
        """Dispatch a model's units: a slot, then the next unit, then its task.

        Items and prompts are pulled from a lazy iterator only as slots free up, and at most
        about twice the window of units are alive at once (in flight or waiting to retry),
        so memory stays flat however large the suite.
        """
        if state.spec.batch is not None:
            from harness.engine.batch import BatchDriver

            driver = BatchDriver(
                self.plan,
                self.suites,
                runner,
                state,
                outcome,
                self._writer.flush,
                shard=self.shard,
                max_cost=self.max_cost,
                wait_s=self.batch_wait,
            )
            try:
                await driver.run(self._stop)
            finally:
                self._dispatched(state.spec.name)
            return
        units = plan_units(self.plan, state.spec, self.suites, done, self.shard)
        limiter, rate = state.limiter, state.rate
        live = asyncio.Semaphore(2 * limiter.cap + 16)
        tasks: set[asyncio.Task] = set()
        failure: list[BaseException] = []
        loop = asyncio.get_running_loop()
        stop = self._stop

        def finished(task: asyncio.Task) -> None:
            tasks.discard(task)
            live.release()
            if task.cancelled():
                return
            exc = task.exception()
            if exc is not None:
                failure.append(exc)
                stop.set()
                return
            if self.max_cost is not None and self._spent(outcome) >= self.max_cost:
                outcome.stopped_for_cost = True
                stop.set()

        try:
            while not stop.is_set() and not state.failed:
                await live.acquire()
                try:
                    unit = next(units, None)
                except Exception as exc:  # e.g. a template error on one item: stop sending, keep what is paid for
                    live.release()
                    failure.append(exc)
                    stop.set()
                    break
                if unit is None or stop.is_set():
                    live.release()
                    break
                if rate.active:
                    images = prompt_image_tokens(unit.prompt, state.spec.api_model)  # tpm counts images too
                    await rate.acquire(estimate_tokens(unit.prompt.text) + images + unit.generation.max_tokens)
                ticket = await limiter.acquire()
                if stop.is_set() or state.failed:
                    limiter.release(ticket, success=False)
                    live.release()
                    break
                outcome.requested += 1
                task = loop.create_task(runner.run(unit, ticket))
                tasks.add(task)
                task.add_done_callback(finished)
                # Let the new task build and send its request before the next unit is taken: asyncio
                # runs ready tasks breadth-first, so a burst of 64 new tasks would otherwise each
                # build their request before any of them sent one (~40 ms on the first wave), and
                # every wave's earliest requests, the run's critical path, would wait for the rest.
                await asyncio.sleep(0)
            self._dispatched(state.spec.name)
            # In-flight requests are paid for: let them finish even when stopping.
            while tasks:
                await asyncio.wait(set(tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            raise
        if failure:
            raise failure[0]

    @staticmethod
    def _spent(outcome: RunOutcome) -> float:
        return sum(s.cost for s in outcome.per_model.values())


def _own_limits(spec: ModelSpec) -> tuple[AdaptiveLimiter, RateLimiter]:
    return AdaptiveLimiter(spec.concurrency), RateLimiter(spec.rpm, spec.tpm)


def run_sync(coro):
    return asyncio.run(coro)
