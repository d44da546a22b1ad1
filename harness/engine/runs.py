"""Start or resume a run of a plan, execute it with the engine, and mark how it ended."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness import __version__
from harness.engine.executors import Executor, RunJob, RunOptions, RunOutcome, open_executor
from harness.engine.lease import PlanLease
from harness.engine.units import prepare_suites, samples_per_model
from harness.errors import HarnessError, install_log_redaction
from harness.plan import Plan, plan_to_dict
from harness.providers.registry import provider_info
from harness.store import RunModelInfo, RunSuiteInfo, Store

log = logging.getLogger(__name__)

DEFAULT_PLAN = "evals/smoke.yaml"


def default_plan_path() -> Path:
    """evals/smoke.yaml in the current folder, else the one next to the installed package."""
    here = Path(DEFAULT_PLAN)
    if here.is_file():
        return here
    from harness.suite import REPO_ROOT

    bundled = REPO_ROOT / DEFAULT_PLAN
    return bundled if bundled.is_file() else here


@dataclass(frozen=True)
class RunResult:
    run_id: str
    resumed: bool
    status: str
    outcome: RunOutcome


def choose_run(store: Store, plan: Plan, *, resume: str | None, new: bool, tag: str) -> tuple[str, bool]:
    """Resume the given run, else this plan's unfinished run, else start a new one."""
    if resume:
        run_id = store.resolve_run(resume)
        info = store.run(run_id)
        if info.plan_fingerprint != plan.fingerprint():
            raise HarnessError(
                f"run {run_id} was started from a different plan (or the plan changed); "
                f"run without --resume to start a new run"
            )
        return run_id, True
    if not new:
        unfinished = store.unfinished_run(plan.fingerprint())
        if unfinished:
            return unfinished, True
    run_id = store.start_run(
        plan_name=plan.name,
        plan_path=plan.path,
        plan_fingerprint=plan.fingerprint(),
        plan=plan_to_dict(plan),
        tag=tag,
        version=__version__,
    )
    return run_id, False


def expected_samples(plan: Plan, suites) -> int | None:
    """Samples a complete run of the plan stores (None when a suite cannot count its items)."""
    per_model = samples_per_model(plan, suites)
    return None if per_model is None else per_model * len(plan.models)


def finish_status(
    store: Store, run_id: str, plan: Plan, suites, outcome: RunOutcome, shard: tuple[int, int] | None
) -> str:
    """'stopped' at --max-cost, 'interrupted' when told to stop, 'waiting' while provider batches
    are still running, 'failed' when a model was stopped on fatal errors (or left samples unstored),
    else 'finished' once every expected sample is stored (a run that raises is marked 'failed' by
    `execute_plan`).

    A shard only knows its own part is done: the run is finished when the shared store holds
    every sample (the last shard to end marks it), and stays 'running' until then.
    """
    if outcome.waiting and not (outcome.stopped_for_cost or outcome.interrupted):
        return "waiting"
    if outcome.stopped_for_cost:
        return "stopped"
    if outcome.interrupted:
        return "interrupted"
    if outcome.failures():
        return "failed"  # resumable: rerunning the plan asks what the failed models did not answer
    if shard is None or shard[1] <= 1:
        return "finished"
    expected = expected_samples(plan, suites)
    if expected is not None and store.count_samples(run_id) >= expected:
        return "finished"
    return "running"


def execute_plan(plan: Plan, store: Store, options: RunOptions | None = None, **settings: Any) -> RunResult:
    """Run (or resume) the plan to the end, a cost stop or an interrupt, and mark how it ended.

    `options` (executors.RunOptions) says how: which run, which executor, cost stop, cache, shard,
    progress; keyword `settings` are RunOptions fields set on top (`execute_plan(plan, store, new=True)`).
    """
    options = replace(options or RunOptions(), **settings)
    install_log_redaction()  # a server's echo of a key must not reach a log either
    suites = prepare_suites(plan, data_override=options.data_override)  # fail on a bad suite before any request
    for m in (*plan.models, *plan.judges):  # a missing key is the user's to fix: say so before a run is recorded
        provider_info(m.provider).prepare(m)
    store.check_names(models=[m.name for m in plan.models], suites=[p.suite.name for p in suites])
    executor = open_executor(
        plan, store, options
    )  # may refuse the plan (or an unsuitable store) before a run is recorded
    try:
        return _execute(plan, store, suites, executor, options)
    finally:
        executor.close()


def _execute(plan: Plan, store: Store, suites, executor: Executor, options: RunOptions) -> RunResult:
    # Held from choosing the run to marking how it ended: a second process on the same plan and
    # database is refused before it picks (or starts) a run, so no sample is requested twice.
    with PlanLease(store, plan.fingerprint(), plan.name, options.shard) as lease:
        run_id, resumed = choose_run(store, plan, resume=options.resume, new=options.new, tag=options.tag)
        lease.attach(run_id)
        try:
            store.record_models(run_id, [_model_info(m) for m in plan.models])
            for p in suites:
                store.record_suite(
                    run_id, RunSuiteInfo(p.suite.name, p.hash, p.suite.family, p.suite.grader.name, p.suite.count())
                )
            store.mark_run(run_id, "running")
            outcome = executor.run(RunJob(plan, suites, store, run_id, options, lease))
        except BaseException as exc:
            # Never leave a run 'running' that nothing executes; rerunning the plan resumes it either way.
            _mark_ended(store, run_id, "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed")
            raise
        failures = outcome.failures()
        for m in (*plan.models, *plan.judges):
            store.mark_model_failed(run_id, m.name, failures.get(m.name))
        status = finish_status(store, run_id, plan, suites, outcome, executor.shard)
        store.mark_run(run_id, status)
    return RunResult(run_id, resumed, status, outcome)


def _mark_ended(store: Store, run_id: str, status: str) -> None:
    try:
        store.mark_run(run_id, status)
    except Exception:  # the database itself failed: keep the original error, not this one
        log.warning("could not mark run %s %s", run_id, status, exc_info=True)


def _model_info(m) -> RunModelInfo:
    """What the store keeps of a model: its identity and every price it was charged at."""
    batch_input, batch_output = m.price.batch_rates() if m.batch else (None, None)
    return RunModelInfo(
        m.name,
        m.provider,
        m.api_model,
        m.base_url or (m.path or ""),
        m.price.input,
        m.price.output,
        batch_price_input=batch_input,
        batch_price_output=batch_output,
        price_cached_input=m.price.cached_input,
    )
