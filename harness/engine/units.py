"""Work units: a model's remaining requests, enumerated lazily from the plan's prepared suites."""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import asdict, dataclass
from typing import Any, Container, Iterator

from harness.graders.grading import check_needs
from harness.plan import ModelSpec, Plan
from harness.records import Generation, Item, Prompt
from harness.suite import Suite
from harness.suite.prompt import PromptBuilder

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


def replayed_generation(plan: Plan, model: ModelSpec, suite: Suite, item: Item, gen: Generation) -> Generation:
    """A replayed request's own sampling settings, under whatever the plan or the model sets explicitly."""
    if not suite.request_field:
        return gen
    request = item.fields.get(suite.request_field) or {}
    from harness.traffic.request import replay_settings

    own = replay_settings(request) if isinstance(request, dict) else {}
    entry: dict[str, Any] = next((dict(ref.generation) for ref in plan.suites if ref.name == suite.name), {})
    fixed = {**entry, **plan.generation, **model.generation}
    values = asdict(gen)
    for key, value in own.items():
        if key in values and key not in fixed:
            values[key] = value
    stop = values.get("stop")
    values["stop"] = (stop,) if isinstance(stop, str) else tuple(stop or ())
    try:
        values["max_tokens"] = int(values["max_tokens"])
        values["temperature"] = float(values["temperature"])
    except (TypeError, ValueError):
        from harness.errors import HarnessError

        raise HarnessError(f"suite '{suite.name}': item {item.id}: max_tokens/temperature are not numbers") from None
    return Generation(**values)


def in_shard(suite: str, item_id: str, shard: tuple[int, int] | None) -> bool:
    """Whether an item belongs to shard i of n: a stable hash, the same on every machine."""
    if shard is None or shard[1] <= 1:
        return True
    index, count = shard
    return zlib.crc32(f"{suite}\0{item_id}".encode()) % count == index


def plan_units(
    plan: Plan,
    model: ModelSpec,
    suites: list[PreparedSuite],
    done: Container[Key],
    shard: tuple[int, int] | None = None,
) -> Iterator[WorkUnit]:
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
                item_gen = replayed_generation(plan, model, prepared.suite, item, gen)
                yield WorkUnit(model.name, name, prepared.hash, item, sample_index, prompt, item_gen)


def samples_per_model(plan: Plan, suites: list[PreparedSuite]) -> int | None:
    """Samples a complete run stores for each model (None when a suite cannot count its items)."""
    total = 0
    for prepared in suites:
        n = prepared.suite.count()
        if n is None:
            return None
        total += n * plan.samples
    return total


def remaining_samples(plan: Plan, suites: list[PreparedSuite], done: set[Key] | frozenset, model: str) -> int | None:
    """How many of a model's samples are still to do (None when a suite cannot count its items)."""
    total = samples_per_model(plan, suites)
    return None if total is None else total - sum(1 for k in done if k[0] == model)


def cache_key(spec: ModelSpec, unit: WorkUnit) -> str:
    """Identical request = same model endpoint, parameters, messages and sample index."""
    blob = json.dumps(
        [
            spec.provider,
            spec.base_url,
            spec.api_model,
            spec.path,
            asdict(unit.generation),
            unit.prompt.to_json(),  # a plain prompt keeps its [[role, content], ...] form: old keys still hit
            unit.sample_index,
        ],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def prepare_suites(plan: Plan, *, data_override: dict[str, str] | None = None) -> list[PreparedSuite]:
    from harness.suite import load_suite

    prepared = []
    for ref in plan.suites:
        suite = load_suite(ref, data=(data_override or {}).get(ref.name))
        check_needs(suite)  # e.g. where the sandbox refuses model-written code, say so before any request
        if suite.images_field:  # every image read and checked, and every model able to take them, before a request
            from harness.providers.vision import refuse_images

            for model in plan.models:
                refuse_images(model.name, model.provider, suite.name)
            suite.check_images()
        if suite.tools or suite.agent:
            refuse_tools(plan, suite.name, agent=bool(suite.agent))
        prepared.append(PreparedSuite(suite, PromptBuilder(suite), suite.content_hash))
    return prepared


def refuse_tools(plan: Plan, suite: str, agent: bool = False) -> None:
    """A tool suite with a model whose provider cannot do tool calls is refused before any request;
    so is an agent suite with a model sent through a Batch API (one request per item, no turns)."""
    from harness.errors import HarnessError
    from harness.providers.registry import capabilities_of

    for spec in plan.models:
        if agent and spec.batch is not None:
            raise HarnessError(
                f"model '{spec.name}': suite '{suite}' runs agent loops (many turns per item), which a Batch "
                f"API cannot; run that model online (drop batch) or leave the suite out"
            )
        if not capabilities_of(spec.provider).tools:  # e.g. replayed samples cannot offer tools or read calls
            raise HarnessError(
                f"model '{spec.name}': provider {spec.provider} cannot offer tools, and suite '{suite}' "
                f"grades tool calls; run that suite with a provider that has tools (openai, llamacpp)"
            )
