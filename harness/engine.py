"""Fan a plan's requests out across models concurrently, grade each answer, store each sample.

The only module that knows about concurrency.

The scale-out seam is two small pieces:

* `plan_units(plan, model, suites, done, shard=(i, n))` lazily enumerates a model's remaining work
  as `WorkUnit`s (items stream from disk, prompts are built one at a time); `shard` keeps the
  units whose stable hash falls in shard i of n, so n workers split a plan without talking.
* `UnitRunner.run(unit) -> SampleRecord` requests (with retries), grades and hands one unit to
  a sink, independently of every other unit.

`LocalExecutor` drives both on one asyncio loop (what `harness run` uses). A distributed
executor (e.g. Ray) would: create or resume the run once (`harness.runs.choose_run`), then on
each of n machines build the `PreparedSuite`s, read `store.done_keys(run_id)`, and run
`plan_units(..., shard=(i, n))` through a `UnitRunner` whose sink is that machine's
`StoreWriter` on the shared database. The store's unique key (run, model, suite, item,
sample index) makes a unit finished twice harmless; `harness.runs.finish_status` marks the run
finished once every expected sample is stored. `harness run --shard I/N --resume RUN` does
exactly this from the command line.

Scheduling, per model: a dispatcher takes a concurrency slot (an AIMD window, see
`AdaptiveLimiter`) and a request-rate/token-rate token (`RateLimiter`), then pulls the next unit
and starts it. A unit that must retry gives its slot back while it waits out its backoff, so
other units keep every connection busy; its retry goes to the front of the queue for the next
free slot. Graders known to be cheap run inline on the loop; any other grader (code in the
sandbox, plugins) runs on a thread pool. Finished samples go to `StoreWriter`, a thread that
commits whatever is ready in one transaction each time, so a sample is durable milliseconds
after it is graded and a kill -9 loses only what was in flight.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import logging
import sys
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Iterator

from harness.errors import HarnessError
from harness.pacing import AdaptiveLimiter, RateLimiter, backoff_delay, estimate_tokens  # noqa: F401
from harness.plan import ModelSpec, Plan
from harness.prompt import PromptBuilder
from harness.providers import Provider, ProviderError, Request, make_provider
from harness.reasoning import split_reasoning
from harness.records import Completion, Generation, Grade, Item, Prompt
from harness.store import SampleRecord, Store
from harness.suite import Suite
from harness.writer import StoreWriter

log = logging.getLogger(__name__)

Key = tuple[str, str, str, int]  # (model, suite, item id, sample index)


@dataclass(frozen=True)
class WorkUnit:
    """One request to make: a model, an item of a suite, and which of its samples."""

    model: str
    suite: str
    suite_hash: str
    item: Item
    sample_index: int
    prompt: Prompt
    generation: Generation

    @property
    def key(self) -> Key:
        return (self.model, self.suite, self.item.id, self.sample_index)


@dataclass
class PreparedSuite:
    suite: Suite
    builder: PromptBuilder
    hash: str


def generation_for(plan: Plan, model: ModelSpec, suite: Suite) -> Generation:
    """Suite defaults, then the plan's, then the model's overrides (the suite's own plan entry already applied)."""
    overrides = {**plan.generation, **model.generation}
    gen = suite.generation
    values = asdict(gen)
    values.update({k: v for k, v in overrides.items() if k in values})
    if values.get("seed") is None and plan.seed:
        values["seed"] = plan.seed
    values["stop"] = tuple(values.get("stop") or ())
    return Generation(**values)


def in_shard(suite: str, item_id: str, shard: tuple[int, int] | None) -> bool:
    """Whether an item belongs to shard i of n: a stable hash, the same on every machine."""
    if shard is None or shard[1] <= 1:
        return True
    index, count = shard
    return zlib.crc32(f"{suite}\0{item_id}".encode()) % count == index


def plan_units(plan: Plan, model: ModelSpec, suites: list[PreparedSuite], done: set[Key] | frozenset,
               shard: tuple[int, int] | None = None) -> Iterator[WorkUnit]:
    """Lazily enumerate a model's remaining work: items stream, prompts are built one by one."""
    for prepared in suites:
        gen = generation_for(plan, model, prepared.suite)
        name = prepared.suite.name
        for item in prepared.suite.items():
            if shard is not None and not in_shard(name, item.id, shard):
                continue
            prompt = None
            for sample_index in range(plan.samples):
                if done and (model.name, name, item.id, sample_index) in done:
                    continue
                prompt = prompt or prepared.builder.build(item)
                yield WorkUnit(model.name, name, prepared.hash, item, sample_index, prompt, gen)


# -- grading ----------------------------------------------------------------------------

# Built-in graders that only read text: cheaper to run inline than to hand to a thread.
INLINE_GRADERS = frozenset({"exact", "regex", "numeric", "mcq"})


class SuiteGrader:
    """A suite's grader resolved once: options checked before any request is sent."""

    def __init__(self, suite: Suite):
        from harness.graders import call_grader, check_options, get_grader

        self._call = call_grader  # the registry's contract: HarnessError propagates, the rest fails the grade
        self.name = suite.grader.name
        options = dict(suite.grader.options)
        if self.name == "code":
            for key, value in suite.sandbox.items():  # per-suite sandbox limits, e.g. wall_s
                options.setdefault(key, value)
        self.fn = get_grader(self.name)
        check_options(self.name, options)
        self.options = options
        self.inline = self.name in INLINE_GRADERS

    def __call__(self, answer: str, item: Item) -> Grade:
        return self._call(self.name, self.fn, answer, item, self.options)


def grade_answer(suite: Suite, answer: str, item: Item) -> Grade:
    """Grade one answer with the suite's grader (kept for callers outside the engine)."""
    return SuiteGrader(suite)(answer, item)


# -- one unit ---------------------------------------------------------------------------


@dataclass
class ModelState:
    """One model's scheduling state and running totals (what the progress bar shows)."""

    spec: ModelSpec
    provider: Provider
    limiter: AdaptiveLimiter
    rate: RateLimiter
    done: int = 0
    errors: int = 0
    correct: float = 0.0
    cost: float = 0.0
    retries: int = 0
    total: int | None = None
    requests: int = 0  # requests actually sent (cache hits and retries aside)


def cache_key(spec: ModelSpec, unit: WorkUnit) -> str:
    """Identical request = same model endpoint, parameters, messages and sample index."""
    blob = json.dumps([spec.provider, spec.base_url, spec.api_model, spec.path, asdict(unit.generation),
                       [[m.role, m.content] for m in unit.prompt.messages], unit.sample_index],
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class UnitRunner:
    """Request (with retries), grade and record one unit; safe to call concurrently.

    `run(unit)` is the whole life of a unit and the engine's scale-out seam: it needs only the
    unit, the model's `ModelState` and a sink, never the rest of the plan.
    """

    def __init__(self, plan: Plan, suites: dict[str, PreparedSuite], models: dict[str, ModelState],
                 run_id: str, store: Store, sink: Callable[[SampleRecord, WorkUnit], None],
                 grade_pool: ThreadPoolExecutor, use_cache: bool = False,
                 cache_sink: Callable[[str, Completion], None] | None = None):
        self.plan, self.suites, self.models = plan, suites, models
        self.run_id, self.store, self.sink = run_id, store, sink
        self.grade_pool = grade_pool
        self.use_cache = use_cache
        self.cache_sink = cache_sink
        self.graders = {name: SuiteGrader(p.suite) for name, p in suites.items()}
        self._loop: asyncio.AbstractEventLoop | None = None
        for name, p in suites.items():
            if self.graders[name].name == "judge":
                self.graders[name].options["context"] = self._judge_context(p.suite)

    def _judge_context(self, suite: Suite):
        """Lend the judge grader (running on a grading thread) the plan's models and the suite's templates."""
        from harness.graders.judge import JudgeContext
        from harness.prompt import template_environment

        judge = self.graders[suite.name].options.get("model")
        if judge not in self.models:
            raise HarnessError(
                f"suite '{suite.name}': its judge model {judge!r} is not in the plan; add it under "
                f"'judges:' (it then grades without answering) or under 'models:'"
            )
        env = template_environment(suite.dir)

        def render(template: str, fields) -> str:
            try:
                return env.get_template(template).render(**fields).strip()
            except Exception as exc:  # a missing or broken rubric is the suite author's to fix
                raise HarnessError(f"suite '{suite.name}': judge template {template}: {exc}") from None

        def ask(model: str, messages) -> str:
            state = self.models[model]
            unit = WorkUnit(model, suite.name, "", Item(id=f"judge:{suite.name}", fields={}), 0,
                            Prompt(tuple(messages)), Generation(max_tokens=1024, temperature=0.0))
            completion, _ = asyncio.run_coroutine_threadsafe(self.request(state, unit), self._loop).result()
            if completion.error:
                raise RuntimeError(f"judge request failed: {completion.error}")
            state.cost += state.spec.price.cost(completion.prompt_tokens, completion.completion_tokens)
            return completion.text

        return JudgeContext(ask=ask, render=render)

    async def request(self, state: ModelState, unit: WorkUnit, ticket: int | None = None) -> tuple[Completion, int]:
        """The unit's completion and the attempts it took. `ticket`: a slot already taken for it."""
        spec = state.spec
        key = None
        if self.use_cache:
            key = cache_key(spec, unit)
            hit = await asyncio.to_thread(self.store.cache_get, key)
            if hit is not None:
                if ticket is not None:
                    state.limiter.release(ticket, success=False)
                return Completion(**hit), 0
        req = Request(unit.prompt, unit.generation, unit.item, unit.suite, unit.sample_index)
        attempt = 0
        while True:
            attempt += 1
            if ticket is None:
                if state.rate.active:
                    await state.rate.acquire(estimate_tokens(unit.prompt.text) + unit.generation.max_tokens)
                ticket = await state.limiter.acquire(priority=True)
            state.requests += 1
            try:
                completion = await state.provider.complete(req)
            except ProviderError as exc:
                state.limiter.release(ticket, rate_limited=exc.rate_limited, success=False,
                                      retry_after=exc.retry_after)
                ticket = None
                if not exc.retryable or attempt >= spec.max_attempts:
                    return Completion(error=str(exc) or exc.__class__.__name__), attempt
                state.retries += 1
                delay = backoff_delay(attempt, exc.retry_after)
                log.debug("%s: %s; retry %d in %.2fs", spec.name, exc, attempt, delay)
                await asyncio.sleep(delay)
                continue
            except BaseException:
                state.limiter.release(ticket, success=False)
                raise
            state.limiter.release(ticket)
            if key is not None and self.cache_sink is not None:
                self.cache_sink(key, completion)
            return completion, attempt

    async def run(self, unit: WorkUnit, ticket: int | None = None) -> SampleRecord:
        self._loop = self._loop or asyncio.get_running_loop()
        state = self.models[unit.model]
        completion, attempts = await self.request(state, unit, ticket)
        answer, think = split_reasoning(completion.text)
        reasoning = f"{completion.reasoning}\n\n{think}" if completion.reasoning and think else completion.reasoning or think
        if completion.error:
            grade = Grade.of(False, f"request failed: {completion.error}")
        else:
            grader = self.graders[unit.suite]
            if grader.inline:
                grade = grader(answer, unit.item)
            else:
                grade = await asyncio.get_running_loop().run_in_executor(self.grade_pool, grader, answer, unit.item)
        cost = state.spec.price.cost(completion.prompt_tokens, completion.completion_tokens)
        record = SampleRecord(
            run_id=self.run_id, model=unit.model, suite=unit.suite, suite_hash=unit.suite_hash,
            item_id=unit.item.id, item_group=unit.item.group, sample_index=unit.sample_index,
            completion=answer, reasoning=reasoning, finish_reason=completion.finish_reason,
            prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens,
            reasoning_tokens=completion.reasoning_tokens, latency_s=completion.latency_s,
            ttft_s=completion.ttft_s, served_model=completion.served_model, error=completion.error,
            attempts=attempts, cost_usd=cost, score=grade.score, passed=grade.passed,
            grade_reason=grade.reason, extracted=grade.extracted,
        )
        state.done += 1
        if completion.error:
            state.errors += 1
        state.correct += grade.score
        state.cost += cost
        self.sink(record, unit)
        return record


# -- the local executor -------------------------------------------------------------------


@dataclass
class RunOutcome:
    run_id: str
    stopped_for_cost: bool = False
    interrupted: bool = False
    requested: int = 0  # units started in this process
    per_model: dict[str, ModelState] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not self.stopped_for_cost and not self.interrupted


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

    def __init__(self, plan: Plan, suites: list[PreparedSuite], store: Store, run_id: str, *,
                 max_cost: float | None = None, use_cache: bool = False, progress=None,
                 shard: tuple[int, int] | None = None, warm: Iterable[str] = (), own_process: bool = False):
        """`own_process`: this process exists for the run (the CLI), so the engine may tune it
        process-wide: after the providers' imports it moves every object alive into the garbage
        collector's permanent generation (and enables the collector, which the CLI disables while
        it imports), so full collections during the run stop re-walking the hundreds of thousands
        of objects that importing the openai client creates; and it shortens the GIL switch
        interval while the run lasts."""
        self.plan, self.suites, self.store, self.run_id = plan, suites, store, run_id
        self.own_process = own_process
        self.max_cost = max_cost
        self.use_cache = use_cache or plan.cache
        self.progress = progress
        self.shard = shard
        self.warm = tuple(warm)
        self._stop: asyncio.Event | None = None  # created inside the loop
        self._dispatching: set[str] = set()  # models with units still to send

    async def run(self) -> RunOutcome:
        self._stop = asyncio.Event()
        outcome = RunOutcome(self.run_id)
        done = self.store.done_keys(self.run_id)
        states: dict[str, ModelState] = {}
        try:
            for spec in (*self.plan.models, *self.plan.judges):
                states[spec.name] = ModelState(spec, make_provider(spec), AdaptiveLimiter(spec.concurrency),
                                               RateLimiter(spec.rpm, spec.tpm))
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
        writer = StoreWriter(self.store, [p.hash for p in self.suites])
        grade_pool = ThreadPoolExecutor(max_workers=max(2, min(32, sum(s.spec.concurrency for s in states.values()))),
                                        thread_name_prefix="harness-grade")
        def sink_with_progress(record, unit, _put=writer.put, _advance=self.progress and self.progress.advance):
            _put(record, unit)
            _advance(record)

        sink = writer.put if self.progress is None else sink_with_progress
        try:
            runner = UnitRunner(self.plan, {p.suite.name: p for p in self.suites}, states, self.run_id,
                                self.store, sink, grade_pool, self.use_cache, cache_sink=writer.put_cache)
            if self.progress is not None:
                for st in answering.values():
                    st.total = self._remaining(done, st.spec.name)
                self.progress.start(answering)
            # Every model's in-flight requests finish before a failure in one of them propagates.
            results = await asyncio.gather(*(self._run_model(runner, st, done, outcome) for st in answering.values()),
                                           return_exceptions=True)
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
        return outcome

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
        total = 0
        for p in self.suites:
            n = p.suite.count()
            if n is None:
                return None
            total += n * self.plan.samples
        return total - sum(1 for k in done if k[0] == model)

    async def _run_model(self, runner: UnitRunner, state: ModelState, done: set, outcome: RunOutcome) -> None:
        """Dispatch a model's units: a slot, then the next unit, then its task.

        Items and prompts are pulled from a lazy iterator only as slots free up, and at most
        about twice the window of units are alive at once (in flight or waiting to retry),
        so memory stays flat however large the suite.
        """
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
            while not stop.is_set():
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
                    await rate.acquire(estimate_tokens(unit.prompt.text) + unit.generation.max_tokens)
                ticket = await limiter.acquire()
                if stop.is_set():
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


def prepare_suites(plan: Plan, *, data_override: dict[str, str] | None = None) -> list[PreparedSuite]:
    from harness.suite import load_suite

    prepared = []
    for ref in plan.suites:
        suite = load_suite(ref, data=(data_override or {}).get(ref.name))
        prepared.append(PreparedSuite(suite, PromptBuilder(suite), suite.content_hash))
    return prepared


def run_sync(coro):
    return asyncio.run(coro)
