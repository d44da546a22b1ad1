"""Run a load profile against each model of a plan, store every stage, search capacity on request."""

from __future__ import annotations

import asyncio
import dataclasses
import resource
from dataclasses import dataclass
from typing import Callable

from harness.engine.lease import PlanLease
from harness.errors import HarnessError
from harness.load import capacity
from harness.load.generator import Budget, StageDriver
from harness.load.profile import LoadProfile, Stage
from harness.load.requests import Body, build_bodies, fatal_cause
from harness.load.stats import StageTarget, stage_stats
from harness.load.wire import Endpoint
from harness.load.workers import drive
from harness.plan import ModelSpec, Plan
from harness.providers.http_request import target_for
from harness.providers.registry import provider_info
from harness.store import Store, new_run_id
from harness.store.loads import finish_load_run, load_lease_key, save_model, save_stage, start_load_run

ASSUMED_LATENCY_S = 1.0  # for estimating a closed-loop stage held for a duration


def loadable(plan: Plan) -> tuple[list[ModelSpec], list[str]]:
    """The models with an HTTP endpoint, and a note for each that has none."""
    models, notes = [], []
    for m in plan.models:
        if provider_info(m.provider).capabilities.endpoint:
            models.append(m)
        else:
            notes.append(f"model '{m.name}': provider {m.provider} has no endpoint to load; skipped")
    if not models:
        raise HarnessError(
            f"plan {plan.path or plan.name}: no model with provider openai; harness load measures "
            f"OpenAI-compatible servers (give a model base_url)"
        )
    return models, notes


def requests_in_stage(stage: Stage) -> int:
    """Requests a stage sends, warm-up included (an estimate for duration-held stages)."""
    if stage.requests is not None:
        return stage.warmup + stage.requests
    if stage.rate is not None:
        return stage.warmup + int(stage.rate * (stage.duration_s or 0))
    return stage.warmup + int((stage.concurrency or 1) * (stage.duration_s or 0) / ASSUMED_LATENCY_S)


def estimate(plan: Plan, profile: LoadProfile, models: list[ModelSpec]) -> dict[str, dict]:
    """Requests and an upper-bound cost per model (completions at max_tokens), sending nothing."""
    out = {}
    for m in models:
        bodies = build_bodies(plan, m, profile.workload, count=64)
        if not bodies:
            raise HarnessError(
                f"model '{m.name}': the workload has no prompts (check the plan's suites or "
                f"give --input-tokens for synthetic prompts)"
            )
        per_in = sum(b.input_tokens_est for b in bodies) / len(bodies)
        per_out = sum(b.max_tokens for b in bodies) / len(bodies)
        requests = sum(requests_in_stage(s) for s in profile.stages)
        searched = 0
        if profile.search:
            searched = 12 * max(requests_in_stage(s) for s in profile.stages)
        cost = m.price.cost(int(per_in * (requests + searched)), int(per_out * (requests + searched)))
        out[m.name] = {
            "requests": requests,
            "search_requests_at_most": searched,
            "input_tokens_per_request": per_in,
            "max_tokens": per_out,
            "estimated_cost_usd": cost,
            "priced": bool(m.price.input or m.price.output),
        }
    return out


def _raise_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need + 64:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, need + 256)), hard))
        except (ValueError, OSError):
            pass


@dataclass
class ModelOutcome:
    model: str
    stages: list[dict]
    capacity: capacity.Capacity | None = None
    notes: list[str] = dataclasses.field(default_factory=list)


async def _run_model(
    plan: Plan,
    spec: ModelSpec,
    profile: LoadProfile,
    bodies: list[Body],
    store: Store,
    run_id: str,
    budget: Budget,
    say: Callable[[str], None],
) -> ModelOutcome:
    target = target_for(spec)  # the run's key, headers and proxy
    endpoint_url = target.url("chat/completions")
    endpoint = Endpoint(endpoint_url, proxy=target.proxy)
    headers = target.headers
    driver = StageDriver(
        endpoint, bodies, headers, timeout=spec.timeout_s, slo=profile.slo, budget=budget, seed=profile.seed
    )
    outcome = ModelOutcome(spec.name, [])
    limits = _per_request_limits(profile)
    index = 0

    async def run_stage(stage: Stage, probe: bool) -> bool:
        nonlocal index
        run = await drive(driver, endpoint_url, stage)
        stats = stage_stats(
            run.results,
            StageTarget(stage.concurrency, stage.rate),
            slo_limits=limits,
            lags=run.lags,
            stopped=run.stopped,
        )
        failures = profile.slo.failures(stats) if profile.slo else []
        meets = None if profile.slo is None else (not failures and not run.stopped)
        stats["meets_slo"] = meets
        stats["slo_failures"] = failures + ([run.stopped] if run.stopped and profile.slo else [])
        stats["probe"] = probe
        cause = fatal_cause(run.results)
        if cause is not None:
            # Nothing was measured: the setup is wrong. Stored as the model's note, the run ends failed.
            save_model(store, run_id, spec.name, spec.api_model, note=f"every request failed: {cause}")
            raise HarnessError(
                f"model '{spec.name}': every request to {endpoint_url} failed: {cause} (fix the plan's "
                f"base_url, key or headers; nothing was measured)"
            )
        save_stage(store, run_id, spec.name, index, stats, run.results, meets_slo=meets, probe=probe)
        index += 1
        outcome.stages.append(stats)
        say(_stage_line(spec.name, stats))
        return bool(meets)

    try:
        if profile.search and profile.slo is not None:
            template = profile.stages[0]
            closed = template.concurrency is not None

            async def probe(level: float) -> bool:
                if budget.exhausted:
                    return False
                listed = [s for s in profile.stages if (s.concurrency if closed else s.rate) == level]
                if listed:
                    return await run_stage(listed[0], False)
                if closed:  # the default warm-up is one request per user: keep it so at the new level
                    warmup = int(level) if template.warmup == template.concurrency else template.warmup
                    stage = dataclasses.replace(template, concurrency=int(level), warmup=warmup)
                else:
                    stage = dataclasses.replace(template, rate=level)
                return await run_stage(stage, True)

            levels = tuple(float(s.concurrency if closed else s.rate) for s in profile.stages)
            _raise_fd_limit(profile.max_concurrency)
            outcome.capacity = await capacity.search(
                probe, levels, integer=closed, ceiling=float(profile.max_concurrency) if closed else 1e6
            )
        else:
            _raise_fd_limit(max(s.concurrency or 0 for s in profile.stages))
            for stage in profile.stages:
                if budget.exhausted:
                    outcome.notes.append(f"--max-cost ${budget.max_cost:g} reached: later stages not run")
                    break
                await run_stage(stage, False)
    finally:
        endpoint.close()
    outcome.stages.sort(key=lambda st: (st["concurrency"] or 0, st["rate"] or 0))
    cap = outcome.capacity
    save_model(
        store,
        run_id,
        spec.name,
        spec.api_model,
        capacity_concurrency=int(cap.best) if cap and cap.best is not None and profile.stages[0].concurrency else None,
        capacity_rate=cap.best if cap and cap.best is not None and profile.stages[0].rate else None,
        note=(cap.note if cap else "") or "; ".join(outcome.notes),
    )
    return outcome


def _per_request_limits(profile: LoadProfile) -> dict[str, float] | None:
    """Goodput counts requests within the SLO's TTFT and latency limits (each request on its own)."""
    if profile.slo is None:
        return None
    limits: dict[str, float] = {}
    for term in profile.slo.terms:
        base = term.metric.split("_p")[0]
        if base in ("ttft", "latency") and "_p" in term.metric:
            limits[base] = min(limits.get(base, term.limit), term.limit)
    return limits


def _fmt(value: float | None, unit: str = "s") -> str:
    return "—" if value is None else f"{value:.3f}{unit}"


def _stage_line(model: str, st: dict) -> str:
    level = f"c={st['concurrency']}" if st["concurrency"] is not None else f"rate={st['rate']:g}/s"
    err = "—" if st["error_rate"] is None else f"{100 * st['error_rate']:.1f}%"
    extra = f"  stopped: {st['stopped_early']}" if st.get("stopped_early") else ""
    if st.get("generator_behind"):
        extra += "  GENERATOR BEHIND: offered load below target"
    return (
        f"{model:<20} {level:<12} n={st['requests']:<5} ttft p50 {_fmt(st['ttft_p50'])} p99 {_fmt(st['ttft_p99'])}"
        f"  latency p50 {_fmt(st['latency_p50'])} p99 {_fmt(st['latency_p99'])}  errors {err}{extra}"
    )


def run_load(
    plan: Plan,
    profile: LoadProfile,
    store: Store,
    *,
    tag: str = "",
    max_cost: float | None = None,
    say: Callable[[str], None] = print,
) -> tuple[str, list[ModelOutcome]]:
    """Run the profile model by model (one at a time: models do not share the machine's CPU)."""
    models, notes = loadable(plan)
    for note in notes:
        say(note)
    for m in models:
        target_for(m)  # a missing key or header variable is an error before anything is stored or sent
    bodies = {m.name: build_bodies(plan, m, profile.workload) for m in models}
    for name, b in bodies.items():
        if not b:
            raise HarnessError(f"model '{name}': the workload has no prompts (check the plan's suites)")
    profile_doc = dataclasses.asdict(profile)
    run_id = new_run_id()
    outcomes = []
    status = "failed"
    # The run's lease, taken before the run is stored: a load run whose process died (kill -9) has
    # none alive, and is then shown as interrupted and never taken as the default (store/loads.py).
    with PlanLease(store, load_lease_key(run_id), plan.name):
        start_load_run(store, plan_name=plan.name, plan_path=plan.path, tag=tag, profile=profile_doc, run_id=run_id)
        try:
            for m in models:
                budget = Budget(m.price.input, m.price.output, max_cost)
                outcomes.append(asyncio.run(_run_model(plan, m, profile, bodies[m.name], store, run_id, budget, say)))
                if max_cost is not None:
                    max_cost = max(0.0, max_cost - budget.spent)
            status = "finished"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            finish_load_run(store, run_id, status)
    return run_id, outcomes
