"""The local executor: every model's units on one asyncio loop in this process, within each model's limits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable

from harness.engine.executors import RunJob, RunOptions, RunOutcome
from harness.engine.pacing import AdaptiveLimiter, RateLimiter
from harness.engine.runner import ModelState, UnitRunner
from harness.engine.tuning import tuned_for_run
from harness.engine.units import PreparedSuite, plan_units, remaining_samples
from harness.engine.writer import StoreWriter
from harness.errors import HarnessError
from harness.plan import ModelSpec, Plan
from harness.providers import make_provider
from harness.providers.tokens import estimate_tokens
from harness.providers.vision import prompt_image_tokens
from harness.store import Store

log = logging.getLogger(__name__)


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
        options: RunOptions | None = None,
        *,
        limits: Callable[[ModelSpec], tuple[AdaptiveLimiter, RateLimiter]] | None = None,
    ):
        """`options`: the run's options (executors.RunOptions); with `own_process` the process is tuned
        for the run while it lasts (tuning.py). `limits`: a model's concurrency window and rate
        buckets (default: this process's own; a distributed executor passes ones shared cluster-wide)."""
        self.plan, self.suites, self.store, self.run_id = plan, suites, store, run_id
        options = options or RunOptions()
        self.own_process = options.own_process
        self.max_cost = options.max_cost
        self.use_cache = options.use_cache or plan.cache
        self.progress = options.progress
        self.shard = options.shard
        self.warm = tuple(options.warm)
        self.limits = limits or _own_limits
        self.batch_wait = options.batch_wait  # batches still running then are left for a rerun to collect
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
        tuning = contextlib.ExitStack()
        if self.own_process:
            tuning.enter_context(tuned_for_run())  # after the providers' imports: what they built is frozen
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
                tuning.close()
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
        """The per-model seam: a `batch:` model's units go through its provider's Batch API, the rest online.

        Batch is chosen per model, not as an executor of its own: a plan mixes batched and online
        models, its judges answer online while they grade batched answers, and all of them share
        this run's runner, store writer and --max-cost budget.
        """
        if state.spec.batch is not None:
            await self._run_batched(runner, state, outcome)
        else:
            await self._run_online(runner, state, done, outcome)

    async def _run_batched(self, runner: UnitRunner, state: ModelState, outcome: RunOutcome) -> None:
        from harness.engine.batch import BatchDriver

        stop, writer = self._stop, self._writer
        assert stop is not None and writer is not None  # both made by run() before any model starts
        driver = BatchDriver(
            self.plan,
            self.suites,
            runner,
            state,
            outcome,
            writer.flush,
            shard=self.shard,
            max_cost=self.max_cost,
            wait_s=self.batch_wait,
        )
        try:
            await driver.run(stop)
        finally:
            self._dispatched(state.spec.name)

    async def _run_online(self, runner: UnitRunner, state: ModelState, done: set, outcome: RunOutcome) -> None:
        """Dispatch a model's units: a slot, then the next unit, then its task.

        Items and prompts are pulled from a lazy iterator only as slots free up, and at most
        about twice the window of units are alive at once (in flight or waiting to retry),
        so memory stays flat however large the suite.
        """
        stop = self._stop
        assert stop is not None  # made by run() before any model starts
        units = plan_units(self.plan, state.spec, self.suites, done, self.shard)
        limiter, rate = state.limiter, state.rate
        live = asyncio.Semaphore(2 * limiter.cap + 16)
        tasks: set[asyncio.Task] = set()
        failure: list[BaseException] = []
        loop = asyncio.get_running_loop()

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


class LocalRun:
    """The `local` executor (executors.py): the run's units on one asyncio loop in this process."""

    def __init__(self, plan: Plan, store: Store, options: RunOptions):
        if options.shard is not None and options.shard[1] > 1 and any(m.batch for m in plan.models):
            # One process follows a model's batches: a shard would collect batches holding other shards' samples.
            raise HarnessError("--shard: models with batch: true run in one process; run the plan without --shard")
        self.options = options
        self.shard = options.shard

    def run(self, job: RunJob) -> RunOutcome:
        executor = LocalExecutor(job.plan, job.suites, job.store, job.run_id, job.options)
        job.lease.on_lost = executor.stop_soon
        return asyncio.run(executor.run())

    def close(self) -> None:
        pass
