"""One unit's whole life: request with retries, grade, record; safe to run concurrently."""

from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from functools import partial
from typing import Callable

from harness.engine.pacing import AdaptiveLimiter, RateLimiter, backoff_delay, rate_limit_delay
from harness.engine.units import PreparedSuite, WorkUnit, cache_key
from harness.errors import HarnessError
from harness.graders.grading import SuiteGrader
from harness.graders.pairwise import NOT_JUDGED
from harness.plan import ModelSpec, Plan
from harness.providers import Provider, ProviderError, Request
from harness.providers.reasoning import split_reasoning
from harness.providers.text_calls import text_calls, tool_outcome
from harness.providers.tokens import estimate_tokens
from harness.providers.tool_names import map_calls_back
from harness.providers.vision import prompt_image_tokens
from harness.records import Completion, Generation, Grade, Item, Prompt
from harness.store import SampleRecord, Store
from harness.suite import Suite

log = logging.getLogger(__name__)


def agent_configs(suites: dict[str, PreparedSuite]) -> dict:
    """Suite name -> AgentConfig for the suites that run agent loops (suite.yaml `agent:`)."""
    from harness.engine.agent import AgentConfig

    return {name: AgentConfig.of(p.suite) for name, p in suites.items() if p.suite.agent}


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
    answered: int = 0  # requests the server answered with a usable completion
    estimated: int = 0  # samples whose token counts were estimated (the server reported none)
    failed: str = ""  # why the model was stopped (fatal errors in a row); its remaining units are not sent
    fatal_streak: int = 0  # samples in a row that ended with a fatal or unreachable error
    unstored: int = 0  # samples left unstored (fatal errors, or not sent once stopped): a rerun asks them
    last_fatal: str = ""

    def note_outcome(self, completion: Completion, fatal: bool) -> None:
        """Count a sample's ending; FATAL_STREAK fatal endings in a row stop the model."""
        if not fatal:
            self.fatal_streak = 0
            return
        self.fatal_streak += 1
        self.last_fatal = completion.error
        if self.fatal_streak >= FATAL_STREAK and not self.failed:
            self.failed = completion.error
            log.warning(
                "%s: stopped after %d fatal errors in a row: %s", self.spec.name, self.fatal_streak, completion.error
            )


# Identical fatal endings (bad key, unknown model, nothing listening) in a row that stop a model.
FATAL_STREAK = 3


class UnitRunner:
    """Request (with retries), grade and record one unit; safe to call concurrently.

    `run(unit)` is the whole life of a unit and the engine's scale-out seam: it needs only the
    unit, the model's `ModelState` and a sink, never the rest of the plan.
    """

    def __init__(
        self,
        plan: Plan,
        suites: dict[str, PreparedSuite],
        models: dict[str, ModelState],
        run_id: str,
        store: Store,
        sink: Callable[[SampleRecord, WorkUnit], None],
        grade_pool: ThreadPoolExecutor,
        use_cache: bool = False,
        cache_sink: Callable[[str, Completion], None] | None = None,
    ):
        self.plan, self.suites, self.models = plan, suites, models
        self.run_id, self.store, self.sink = run_id, store, sink
        self.grade_pool = grade_pool
        self.use_cache = use_cache
        self.cache_sink = cache_sink
        self.graders = {name: SuiteGrader(p.suite) for name, p in suites.items()}
        self.agents = agent_configs(suites)
        self._loop: asyncio.AbstractEventLoop | None = None
        for name, p in suites.items():
            if self.graders[name].needs.judge is not None:
                self.graders[name].options["context"] = self._judge_context(p.suite)
        from harness.engine.pairwise_run import PairwiseRun

        self.pairwise = {
            name: PairwiseRun(self, p.suite, self.graders[name].options)
            for name, p in suites.items()
            if self.graders[name].needs.incumbent
        }

    def _judge_context(self, suite: Suite):
        """Lend the judge grader (running on a grading thread) the plan's models and the suite's templates."""
        from harness.graders.judge import JudgeContext
        from harness.suite.prompt import template_environment

        for judge in self.graders[suite.name].judges():
            if judge not in self.models:
                raise HarnessError(
                    f"suite '{suite.name}': its judge model {judge!r} is not in the plan; add it under "
                    f"'judges:' (it then grades without answering) or under 'models:'"
                )
        env = template_environment(suite.dir)

        def render(template: str, fields) -> str:
            try:
                return env.render(env.get_template(template), fields).strip()  # bounded in time and size
            except Exception as exc:  # a missing or broken rubric is the suite author's to fix
                raise HarnessError(f"suite '{suite.name}': judge template {template}: {exc}") from None

        def ask(model: str, messages) -> str:
            state = self.models[model]
            unit = WorkUnit(
                model,
                suite.name,
                "",
                Item(id=f"judge:{suite.name}", fields={}),
                0,
                Prompt(tuple(messages)),
                Generation(max_tokens=1024, temperature=0.0),
            )
            assert self._loop is not None  # judges run from worker threads of a running engine
            completion, _ = asyncio.run_coroutine_threadsafe(self.request(state, unit), self._loop).result()
            if completion.error:
                raise RuntimeError(f"judge request failed: {completion.error}")
            state.cost += state.spec.price.cost(
                completion.prompt_tokens,
                completion.completion_tokens,
                at=datetime.now(timezone.utc),
                cached_tokens=completion.cached_tokens,
            )
            return completion.text

        return JudgeContext(ask=ask, render=render)

    async def request(self, state: ModelState, unit: WorkUnit, ticket: int | None = None) -> tuple[Completion, int]:
        """The unit's completion and the attempts it took. `ticket`: a slot already taken for it.

        Errors are retried up to `max_attempts` attempts; 429s do not use attempts up: they
        wait (Retry-After, else a backoff that reaches a rate window's length) for as long as
        `rate_limit_wait_s` allows. Fatal errors are not retried. A failed completion carries
        the error in `error`.
        """
        completion, attempts, _ = await self._request(state, unit, ticket)
        return completion, attempts

    async def _request(self, state: ModelState, unit: WorkUnit, ticket: int | None) -> tuple[Completion, int, bool]:
        spec = state.spec
        key = None
        if self.use_cache:
            key = cache_key(spec, unit)
            hit = await asyncio.to_thread(self.store.cache_get, key)
            if hit is not None:
                if ticket is not None:
                    state.limiter.release(ticket, success=False)
                return Completion.from_json(hit), 0, False
        req = Request(unit.prompt, unit.generation, unit.item, unit.suite, unit.sample_index)
        attempt = 0  # attempts that count against max_attempts (429s do not)
        sent = 0
        limited = 0  # 429s this unit got
        rate_limited_since: float | None = None
        loop = asyncio.get_running_loop()
        while True:
            if state.failed:
                if ticket is not None:
                    state.limiter.release(ticket, success=False)
                return Completion(error=f"not sent: the model was stopped ({state.failed})"), sent, True
            if ticket is None:
                if state.rate.active:
                    images = prompt_image_tokens(unit.prompt, spec.api_model)  # tpm counts images too
                    await state.rate.acquire(estimate_tokens(unit.prompt.text) + images + unit.generation.max_tokens)
                ticket = await state.limiter.acquire(priority=True)
                if state.failed:
                    continue
            state.requests += 1
            sent += 1
            try:
                completion = await state.provider.complete(req)
            except ProviderError as exc:
                error = exc
            except Exception as exc:  # noqa: BLE001 - a provider bug reading a body must not end the run
                log.debug("%s: unexpected provider error", spec.name, exc_info=True)
                error = ProviderError(f"unreadable response: {exc.__class__.__name__}: {exc}", retryable=True)
            except BaseException:
                state.limiter.release(ticket, success=False)
                raise
            else:
                state.limiter.release(ticket)
                state.answered += 1
                if key is not None and self.cache_sink is not None:
                    self.cache_sink(key, completion)
                return completion, sent, False
            state.limiter.release(ticket, rate_limited=error.rate_limited, success=False, retry_after=error.retry_after)
            ticket = None
            if error.congested:
                state.limiter.lower_cap()
            message = str(error) or error.__class__.__name__
            if error.rate_limited:
                limited += 1
                now = loop.time()
                rate_limited_since = now if rate_limited_since is None else rate_limited_since
                waited = now - rate_limited_since
                if waited >= spec.rate_limit_wait_s:
                    return (
                        Completion(
                            error=f"{message} (still rate limited after waiting {waited:.0f} s; "
                            f"rate_limit_wait_s is {spec.rate_limit_wait_s:g})"
                        ),
                        sent,
                        False,
                    )
                delay = min(rate_limit_delay(error.retry_after, limited), spec.rate_limit_wait_s - waited + 0.1)
            else:
                attempt += 1
                if not error.retryable or attempt >= spec.max_attempts:
                    return Completion(error=message), sent, error.fatal or error.unreachable
                delay = backoff_delay(attempt, error.retry_after)
            state.retries += 1
            log.debug("%s: %s; retry in %.2fs", spec.name, message, delay)
            await asyncio.sleep(delay)

    async def run(self, unit: WorkUnit, ticket: int | None = None) -> SampleRecord | None:
        """Request, grade and hand the sample to the sink; None when it is left unstored.

        A sample that ended with a fatal error (bad key, unknown model, nothing listening) or
        was not sent because its model was stopped measures the configuration, not the model:
        it is not stored, so that rerunning the plan once the cause is fixed asks it again.
        """
        state = self.models[unit.model]
        self._loop = self._loop or asyncio.get_running_loop()
        agent = None
        shared = self.pairwise.get(unit.suite)
        if unit.suite in self.agents:
            completion, attempts, fatal, agent = await self._agent_loop(state, unit, ticket)
        elif shared is not None and unit.model == shared.incumbent:  # candidates' grades may have asked it already
            completion, attempts, fatal = await shared.shared_request(unit, ticket)
        else:
            completion, attempts, fatal = await self._request(state, unit, ticket)
        state.note_outcome(completion, fatal)
        if fatal:
            state.unstored += 1
            return None
        return await self.finish(unit, completion, attempts, agent=agent)

    async def _agent_loop(self, state: ModelState, unit: WorkUnit, ticket: int | None):
        """An agent suite's item: many requests (harness.engine.agent), the first on the slot already taken."""
        from harness.engine.agent import run_agent

        tickets = [ticket]

        async def request(prompt: Prompt):
            return await self._request(state, replace(unit, prompt=prompt), tickets.pop() if tickets else None)

        return await run_agent(
            self.agents[unit.suite], unit.item, unit.prompt, request, text_style=state.spec.text_tool_calls
        )

    async def finish(
        self, unit: WorkUnit, completion: Completion, attempts: int, batched: bool = False, agent=None
    ) -> SampleRecord:
        """Grade a unit's completion (however it was obtained), record it and hand it to the sink."""
        self._loop = self._loop or asyncio.get_running_loop()
        state = self.models[unit.model]
        answer, think = split_reasoning(completion.text)
        reasoning = (
            f"{completion.reasoning}\n\n{think}" if completion.reasoning and think else completion.reasoning or think
        )
        completion = map_calls_back(unit.prompt, completion)  # grading and reports see the suite's tool names
        outcome = tool_outcome(answer, completion.tool_calls, completion.error) if unit.prompt.tools else None
        if outcome == "text_call" and state.spec.text_tool_calls and agent is None:
            # The model asked for its text calls to be read: graded as calls, still counted as text_call.
            parsed = replace(completion, tool_calls=text_calls(answer, state.spec.text_tool_calls))
            completion = map_calls_back(unit.prompt, parsed)
        if completion.error:
            grade = Grade.of(False, f"request failed: {completion.error}")
        else:
            grader = self.graders[unit.suite]
            if unit.suite in self.pairwise:
                context = self.pairwise[unit.suite].context(unit, self._loop)
                with_context = partial(grader.with_context, context)
                grade = await asyncio.get_running_loop().run_in_executor(
                    self.grade_pool, with_context, answer, unit.item
                )
            elif grader.inline:
                grade = grader(answer, unit.item)
            else:
                grade = await asyncio.get_running_loop().run_in_executor(
                    self.grade_pool, grader, answer, unit.item, completion.tool_calls, agent
                )
        cost = state.spec.price.cost(
            completion.prompt_tokens,
            completion.completion_tokens,
            batched=batched,
            at=datetime.now(timezone.utc),
            cached_tokens=completion.cached_tokens,
        )
        error = completion.error
        if not error and unit.suite in self.pairwise and grade.reason.startswith(NOT_JUDGED):
            error = grade.reason  # no comparison was received: an error, counted and shown, not a loss
        record = SampleRecord(
            run_id=self.run_id,
            model=unit.model,
            suite=unit.suite,
            suite_hash=unit.suite_hash,
            item_id=unit.item.id,
            item_group=unit.item.group,
            sample_index=unit.sample_index,
            completion=answer,
            reasoning=reasoning,
            finish_reason=completion.finish_reason,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            reasoning_tokens=completion.reasoning_tokens,
            latency_s=completion.latency_s,
            ttft_s=completion.ttft_s,
            served_model=completion.served_model,
            error=error,
            attempts=attempts,
            cost_usd=cost,
            score=grade.score,
            passed=grade.passed,
            grade_reason=grade.reason,
            extracted=grade.extracted,
            batched=batched,
            usage_estimated=completion.usage_estimated,
            tool_calls=completion.tool_calls,
            cached_tokens=completion.cached_tokens,
            tool_outcome=outcome,
            transcript_json=json.dumps(agent.to_json(), ensure_ascii=False, default=str) if agent else None,
        )
        state.done += 1
        if error:
            state.errors += 1
        if completion.usage_estimated:
            state.estimated += 1
        state.correct += grade.score
        state.cost += cost
        self.sink(record, unit)
        return record
