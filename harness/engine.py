"""Fan a plan's requests out across models concurrently, grade each answer, store each sample.

The only module that knows about concurrency. Its scale-out seam: `plan_units` enumerates the
work of a plan (lazily, shardable by `WorkUnit.key`), and `UnitRunner.run(unit)` turns one unit
into a stored `SampleRecord` independently of every other unit; a distributed executor can run
shards of `plan_units` through `UnitRunner`s on several machines against one shared database.
`LocalExecutor` is the in-process asyncio executor used by `harness run`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import queue
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator

from harness.errors import HarnessError
from harness.plan import ModelSpec, Plan
from harness.prompt import PromptBuilder
from harness.providers import Provider, ProviderError, Request, make_provider
from harness.reasoning import split_reasoning
from harness.records import Completion, Generation, Grade, Item, Prompt
from harness.store import SampleRecord, Store
from harness.suite import Suite

log = logging.getLogger(__name__)


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
    def key(self) -> tuple[str, str, str, int]:
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


def plan_units(plan: Plan, model: ModelSpec, suites: list[PreparedSuite],
               done: set[tuple[str, str, str, int]]) -> Iterator[WorkUnit]:
    """Lazily enumerate a model's remaining work: items stream, prompts are built one by one."""
    for prepared in suites:
        gen = generation_for(plan, model, prepared.suite)
        for item in prepared.suite.items():
            prompt = None
            for sample_index in range(plan.samples):
                if (model.name, prepared.suite.name, item.id, sample_index) in done:
                    continue
                prompt = prompt or prepared.builder.build(item)
                yield WorkUnit(model.name, prepared.suite.name, prepared.hash, item, sample_index, prompt, gen)


# -- adaptive concurrency and rate limits -----------------------------------------------


class AdaptiveLimiter:
    """AIMD concurrency window: halve on a 429, grow by one per window of successes, up to the cap."""

    def __init__(self, cap: int):
        self.cap = cap
        self.window = float(cap)
        self.in_flight = 0
        self._cond = asyncio.Condition()

    async def acquire(self) -> None:
        async with self._cond:
            await self._cond.wait_for(lambda: self.in_flight < max(1, int(self.window)))
            self.in_flight += 1

    async def release(self, *, rate_limited: bool = False, success: bool = True) -> None:
        async with self._cond:
            self.in_flight -= 1
            if rate_limited:
                self.window = max(1.0, self.window / 2)
            elif success and self.window < self.cap:
                self.window = min(float(self.cap), self.window + 1.0 / self.window)
            self._cond.notify_all()


class RateLimiter:
    """Token buckets for requests per minute and (estimated) tokens per minute."""

    def __init__(self, rpm: float | None, tpm: float | None):
        self.rpm, self.tpm = rpm, tpm
        self._req = float(rpm or 0)
        self._tok = float(tpm or 0)
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self, tokens: int) -> None:
        if not self.rpm and not self.tpm:
            return
        async with self._lock:
            while True:
                now = time.monotonic()
                elapsed, self._stamp = now - self._stamp, now
                if self.rpm:
                    self._req = min(self.rpm, self._req + elapsed * self.rpm / 60)
                if self.tpm:
                    self._tok = min(self.tpm, self._tok + elapsed * self.tpm / 60)
                need_tok = min(tokens, self.tpm) if self.tpm else 0
                waits = []
                if self.rpm and self._req < 1:
                    waits.append((1 - self._req) * 60 / self.rpm)
                if self.tpm and self._tok < need_tok:
                    waits.append((need_tok - self._tok) * 60 / self.tpm)
                if not waits:
                    if self.rpm:
                        self._req -= 1
                    if self.tpm:
                        self._tok -= need_tok
                    return
                await asyncio.sleep(max(waits))


def estimate_tokens(text: str) -> int:
    """Rough token count (about 4 characters a token for English, ~1.5 for Chinese)."""
    cjk = sum(1 for ch in text if "\u4e00" <= ch <= "\u9fff")
    return int(cjk / 1.5 + (len(text) - cjk) / 4) + 1


# -- one unit ---------------------------------------------------------------------------


@dataclass
class ModelState:
    spec: ModelSpec
    provider: Provider
    limiter: AdaptiveLimiter
    rate: RateLimiter
    done: int = 0
    errors: int = 0
    correct: float = 0.0
    cost: float = 0.0
    total: int | None = None


def cache_key(spec: ModelSpec, unit: WorkUnit) -> str:
    blob = json.dumps([spec.provider, spec.base_url, spec.api_model, spec.path, asdict(unit.generation),
                       [[m.role, m.content] for m in unit.prompt.messages], unit.sample_index],
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class UnitRunner:
    """Request (with retries), grade and record one unit; safe to call concurrently."""

    def __init__(self, plan: Plan, suites: dict[str, PreparedSuite], models: dict[str, ModelState],
                 run_id: str, store: Store, sink: Callable[[SampleRecord, WorkUnit], None],
                 grade_pool: ThreadPoolExecutor, use_cache: bool = False):
        self.plan, self.suites, self.models = plan, suites, models
        self.run_id, self.store, self.sink = run_id, store, sink
        self.grade_pool = grade_pool
        self.use_cache = use_cache

    async def request(self, state: ModelState, unit: WorkUnit) -> tuple[Completion, int]:
        spec = state.spec
        key = cache_key(spec, unit) if self.use_cache else None
        if key:
            hit = await asyncio.to_thread(self.store.cache_get, key)
            if hit is not None:
                return Completion(**hit), 0
        req = Request(unit.prompt, unit.generation, unit.item, unit.suite, unit.sample_index)
        est = estimate_tokens(unit.prompt.text) + unit.generation.max_tokens
        attempt = 0
        while True:
            attempt += 1
            await state.rate.acquire(est)
            await state.limiter.acquire()
            rate_limited = False
            try:
                completion = await state.provider.complete(req)
            except ProviderError as exc:
                rate_limited = exc.rate_limited
                if not exc.retryable or attempt >= spec.max_attempts:
                    return Completion(error=str(exc) or exc.__class__.__name__), attempt
                delay = backoff_delay(attempt, exc.retry_after)
                log.debug("%s: %s; retry %d in %.2fs", spec.name, exc, attempt, delay)
            else:
                if key:
                    await asyncio.to_thread(self.store.cache_put, key, asdict(completion))
                return completion, attempt
            finally:
                await state.limiter.release(rate_limited=rate_limited, success=not rate_limited)
            await asyncio.sleep(delay)

    async def run(self, unit: WorkUnit) -> SampleRecord:
        state = self.models[unit.model]
        prepared = self.suites[unit.suite]
        completion, attempts = await self.request(state, unit)
        answer, think = split_reasoning(completion.text)
        reasoning = "\n\n".join(t for t in (completion.reasoning, think) if t)
        if completion.ok:
            grade = await asyncio.get_running_loop().run_in_executor(
                self.grade_pool, grade_answer, prepared.suite, answer, unit.item)
        else:
            grade = Grade.of(False, f"request failed: {completion.error}")
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
        state.errors += 0 if completion.ok else 1
        state.correct += grade.score
        state.cost += cost
        self.sink(record, unit)
        return record


def grade_answer(suite: Suite, answer: str, item: Item) -> Grade:
    from harness.graders import grade

    options = dict(suite.grader.options)
    if suite.grader.name == "code":
        for key, value in suite.sandbox.items():  # per-suite sandbox limits, e.g. wall_s
            options.setdefault(key, value)
    return grade(suite.grader.name, answer, item, options)


def backoff_delay(attempt: int, retry_after: float | None, base: float = 0.5, cap: float = 30.0) -> float:
    """Exponential backoff with full jitter; a server's Retry-After is a floor, never ignored."""
    delay = random.uniform(0, min(cap, base * 2 ** (attempt - 1)))
    if retry_after is not None:
        delay = max(delay, min(retry_after, 120.0))
    return delay


# -- storing ----------------------------------------------------------------------------


class StoreWriter:
    """Commits samples from a background thread as they finish (each batch is what is ready now)."""

    def __init__(self, store: Store):
        self.store = store
        self._queue: queue.Queue = queue.Queue()
        self._prompted: set[tuple[str, str]] = set()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="harness-store", daemon=True)
        self._thread.start()

    def put(self, record: SampleRecord, unit: WorkUnit) -> None:
        if self._error:
            raise self._error
        self._queue.put((record, unit))

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < 1000:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            try:
                self._write(batch)
            except BaseException as exc:  # surfaced to the engine on the next put/close
                self._error = exc
                log.exception("storing samples failed")
            if stop:
                return

    def _write(self, batch: list[tuple[SampleRecord, WorkUnit]]) -> None:
        by_suite: dict[str, list[tuple[str, str, str]]] = {}
        for record, unit in batch:
            key = (unit.suite_hash, unit.item.id)
            if key not in self._prompted:
                self._prompted.add(key)
                messages = json.dumps([[m.role, m.content] for m in unit.prompt.messages], ensure_ascii=False)
                ref = unit.item.reference
                ref_text = ref if isinstance(ref, str) else json.dumps(ref, ensure_ascii=False, default=str)
                by_suite.setdefault(unit.suite_hash, []).append((unit.item.id, messages, ref_text or ""))
        for suite_hash, prompts in by_suite.items():
            self.store.record_prompts(suite_hash, prompts)
        self.store.save_samples(record for record, _ in batch)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error:
            raise self._error


# -- the local executor -------------------------------------------------------------------


@dataclass
class RunOutcome:
    run_id: str
    stopped_for_cost: bool = False
    interrupted: bool = False
    requested: int = 0
    per_model: dict[str, ModelState] = field(default_factory=dict)


class LocalExecutor:
    """Runs every model's units concurrently in this process, each model within its own limits."""

    def __init__(self, plan: Plan, suites: list[PreparedSuite], store: Store, run_id: str, *,
                 max_cost: float | None = None, use_cache: bool = False, progress=None):
        self.plan, self.suites, self.store, self.run_id = plan, suites, store, run_id
        self.max_cost = max_cost
        self.use_cache = use_cache or plan.cache
        self.progress = progress
        self._stop = asyncio.Event() if False else None  # created inside the loop

    async def run(self) -> RunOutcome:
        self._stop = asyncio.Event()
        outcome = RunOutcome(self.run_id)
        done = await asyncio.to_thread(self.store.done_keys, self.run_id)
        states: dict[str, ModelState] = {}
        try:
            for spec in self.plan.models:
                states[spec.name] = ModelState(spec, make_provider(spec), AdaptiveLimiter(spec.concurrency),
                                               RateLimiter(spec.rpm, spec.tpm))
        except BaseException:
            for st in states.values():
                await st.provider.close()
            raise
        outcome.per_model = states
        for st in states.values():
            st.total = self._remaining(done, st.spec.name)
        writer = StoreWriter(self.store)
        workers = max(4, min(32, (sum(s.spec.concurrency for s in states.values()) or 4)))
        grade_pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="harness-grade")
        sink = writer.put
        if self.progress is not None:
            self.progress.start(states)

            def sink(record, unit, _put=writer.put):
                _put(record, unit)
                self.progress.advance(record)
        runner = UnitRunner(self.plan, {p.suite.name: p for p in self.suites}, states, self.run_id,
                            self.store, sink, grade_pool, self.use_cache)
        try:
            await asyncio.gather(*(self._run_model(runner, st, done, outcome) for st in states.values()))
        finally:
            for st in states.values():
                await st.provider.close()
            grade_pool.shutdown(wait=True)
            writer.close()
            if self.progress is not None:
                self.progress.stop()
        return outcome

    def _remaining(self, done: set, model: str) -> int | None:
        total = 0
        for p in self.suites:
            n = p.suite.count()
            if n is None:
                return None
            total += n * self.plan.samples
        return total - sum(1 for k in done if k[0] == model)

    async def _run_model(self, runner: UnitRunner, state: ModelState, done: set, outcome: RunOutcome) -> None:
        units = plan_units(self.plan, state.spec, self.suites, done)
        # Workers pull from one shared iterator: items and prompts are built only as fast as
        # requests go out, so memory stays flat however large the suite.
        cap = state.spec.concurrency

        async def worker() -> None:
            while not self._stop.is_set():
                try:
                    unit = next(units)
                except StopIteration:
                    return
                outcome.requested += 1
                await runner.run(unit)
                if self.max_cost is not None and self._spent(outcome) >= self.max_cost:
                    outcome.stopped_for_cost = True
                    self._stop.set()

        await asyncio.gather(*(worker() for _ in range(cap)))

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
    try:
        return asyncio.run(coro)
    except KeyboardInterrupt:
        raise
    except HarnessError:
        raise
