"""What a run lends the `pairwise` grader: the plan's judges, and the incumbent's answer to each item.

The incumbent's answer is the item's logged one, or (plan `incumbent: MODEL`) that model's answer
in this run. A candidate's grade and the incumbent's own unit share one request per item and
sample: whichever asks first sends it, the other waits for the same completion, so the incumbent
is never asked twice for the same thing.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from harness.engine.units import WorkUnit, cache_key, generation_for, replayed_generation
from harness.errors import HarnessError
from harness.graders.pairwise import JudgeReply, PairwiseContext
from harness.records import Completion, Generation, Item, Message, Prompt
from harness.suite import Suite

JUDGE_GENERATION = Generation(max_tokens=1024, temperature=0.0)


class PairwiseRun:
    """One pairwise suite's judging inside a run (grading threads call `ask`; requests run on the loop)."""

    def __init__(self, runner, suite: Suite, options: dict):  # runner: the UnitRunner that owns this suite
        from harness.suite.prompt import template_environment

        self.runner, self.suite = runner, suite
        plan = runner.plan
        named = options.get("judges")
        self.judges = tuple(named) if named else tuple(j.name for j in plan.judges)
        if not self.judges:
            raise HarnessError(
                f"suite '{suite.name}': grader 'pairwise' needs judge models; list them under 'judges:' in the plan"
            )
        for judge in self.judges:
            if judge not in runner.models:
                raise HarnessError(f"suite '{suite.name}': judge {judge!r} is not in the plan; add it under 'judges:'")
        self.incumbent = plan.incumbent
        if self.incumbent is not None and plan.model(self.incumbent).batch is not None:
            raise HarnessError(
                f"suite '{suite.name}': the incumbent {self.incumbent} is sent through a Batch API, but pairwise "
                f"judging needs its answers during the run; drop batch from that model (or --batch), or judge "
                f"against logged answers"
            )
        self.incumbent_field = options.get("incumbent_field", "incumbent")
        self._env = template_environment(suite.dir)
        self._shared: dict[tuple[str, int], asyncio.Task] = {}

    # -- the incumbent -----------------------------------------------------------------

    def incumbent_unit(self, unit: WorkUnit) -> WorkUnit:
        """The incumbent model's unit for the same item and sample as `unit`."""
        plan = self.runner.plan
        spec = plan.model(self.incumbent)
        gen = replayed_generation(plan, spec, self.suite, unit.item, generation_for(plan, spec, self.suite))
        return WorkUnit(spec.name, unit.suite, unit.suite_hash, unit.item, unit.sample_index, unit.prompt, gen)

    async def shared_request(self, unit: WorkUnit, ticket: int | None) -> tuple[Completion, int, bool]:
        """The incumbent's completion for this item and sample, requested once whoever asks first."""
        key = (unit.item.id, unit.sample_index)
        task = self._shared.get(key)
        state = self.runner.models[self.incumbent]
        if task is None:
            task = asyncio.ensure_future(self.runner._request(state, unit, ticket))
            self._shared[key] = task
            return await asyncio.shield(task)
        if ticket is not None:  # someone else's request is already under way: the slot taken is not needed
            state.limiter.release(ticket, success=False)
        completion, sent, fatal = await asyncio.shield(task)
        return completion, 0, fatal

    # -- one sample's context ----------------------------------------------------------

    def context(self, unit: WorkUnit, loop: asyncio.AbstractEventLoop) -> PairwiseContext:
        def incumbent() -> tuple[str | None, str]:
            if self.incumbent is None:
                answer = unit.item.fields.get(self.incumbent_field)
                if not isinstance(answer, str):
                    return (
                        None,
                        f"the item has no logged incumbent answer ({self.incumbent_field}) and the plan names no incumbent",
                    )
                return answer, ""
            future = asyncio.run_coroutine_threadsafe(self.shared_request(self.incumbent_unit(unit), None), loop)
            completion, _, _ = future.result()
            if completion.error:
                return None, f"the incumbent {self.incumbent} failed: {completion.error[:200]}"
            from harness.providers.reasoning import split_reasoning

            return split_reasoning(completion.text)[0], ""

        def ask(judge: str, messages: list[Message]) -> JudgeReply:
            state = self.runner.models[judge]
            judge_unit = WorkUnit(
                judge,
                self.suite.name,
                "",
                Item(id=f"pairwise:{self.suite.name}", fields={}),
                0,
                Prompt(tuple(messages)),
                JUDGE_GENERATION,
            )
            # Verdicts are always cached, whatever the plan's `cache:` says: a judge at temperature 0 shown
            # the same rubric and answers is asked once; a rerun or a new run re-reads its verdict for free.
            key = None if self.runner.use_cache else cache_key(state.spec, judge_unit)
            hit = self.runner.store.cache_get(key) if key else None
            if hit is not None:
                return JudgeReply(Completion.from_json(hit).text, 0.0, 0)
            future = asyncio.run_coroutine_threadsafe(self.runner._request(state, judge_unit, None), loop)
            completion, sent, _ = future.result()
            if key and not completion.error and self.runner.cache_sink is not None:
                self.runner.cache_sink(key, completion)
            if completion.error:
                return JudgeReply("", 0.0, sent, completion.error)
            cost = 0.0
            if sent:  # a cached verdict costs nothing this time
                cost = state.spec.price.cost(
                    completion.prompt_tokens, completion.completion_tokens, at=datetime.now(timezone.utc)
                )
                state.cost += cost
            return JudgeReply(completion.text, cost, sent)

        def render(template: str, fields) -> str:
            try:
                return self._env.get_template(template).render(**fields).strip()
            except Exception as exc:  # a missing or broken rubric is the suite author's to fix
                raise HarnessError(f"suite '{self.suite.name}': pairwise template {template}: {exc}") from None

        return PairwiseContext(
            judges=self.judges, ask=ask, render=render, incumbent=incumbent, is_incumbent=unit.model == self.incumbent
        )
