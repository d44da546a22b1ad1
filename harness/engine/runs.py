"""Start or resume a run of a plan, execute it with the engine, and mark how it ended."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from harness import __version__
from harness.engine.lease import PlanLease
from harness.engine.local import LocalExecutor, RunOutcome
from harness.engine.units import prepare_suites, samples_per_model
from harness.errors import HarnessError, install_log_redaction
from harness.plan import Plan, plan_to_dict
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
class RayOptions:
    """`harness run --executor ray`: the cluster to join (None: a local instance) and how many shards."""

    address: str | None = None
    workers: int | None = None  # None: one per CPU of the cluster
    runtime_env: dict | None = None  # Ray's runtime_env for the job (packages, working_dir; never secrets)


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


def execute_plan(
    plan: Plan,
    store: Store,
    *,
    resume: str | None = None,
    new: bool = False,
    tag: str = "",
    max_cost: float | None = None,
    use_cache: bool = False,
    progress=None,
    data_override: dict[str, str] | None = None,
    shard: tuple[int, int] | None = None,
    warm: tuple[str, ...] = (),
    own_process: bool = False,
    batch_wait: float | None = None,
    ray: RayOptions | None = None,
) -> RunResult:
    """Run (or resume) the plan to the end, a cost stop or an interrupt, and mark how it ended.

    `warm`: modules to import on a background thread while requests are in flight, so that
    what runs after the requests (the summary's statistics) does not add to the user's wait.
    `own_process`: the caller is the CLI, whose process exists for this run (see LocalExecutor).
    `batch_wait`: how long to wait for provider batches (None: until they end; see engine/batch.py).
    `ray`: `RayOptions` to run the shards on a Ray cluster instead.
    """
    install_log_redaction()  # a server's echo of a key must not reach a log either
    if shard is not None and shard[1] > 1 and any(m.batch for m in plan.models):
        # One process follows a model's batches: a shard would collect batches holding other shards' samples.
        raise HarnessError("--shard: models with batch: true run in one process; run the plan without --shard")
    suites = prepare_suites(plan, data_override=data_override)  # fail on a bad suite before any request
    api_models = [m for m in (*plan.models, *plan.judges) if m.provider == "openai"]
    if api_models:  # a missing key is the user's to fix: say so before a run is recorded
        from harness.providers.openai_api import resolve_api_key, resolve_extra_headers

        for m in api_models:
            resolve_api_key(m)
            resolve_extra_headers(m)
    store.check_names(models=[m.name for m in plan.models], suites=[p.suite.name for p in suites])
    cluster = (
        _join_ray(ray, plan, store) if ray is not None else None
    )  # refuses an unsuitable store before a run is recorded
    try:
        return _execute(
            plan,
            store,
            suites,
            cluster,
            resume=resume,
            new=new,
            tag=tag,
            max_cost=max_cost,
            use_cache=use_cache,
            progress=progress,
            data_override=data_override,
            shard=shard,
            warm=warm,
            own_process=own_process,
            batch_wait=batch_wait,
        )
    finally:
        if cluster is not None:
            cluster.close()


def _join_ray(options: RayOptions, plan: Plan, store: Store):
    batched = [m.name for m in (*plan.models, *plan.judges) if m.batch is not None]
    if batched:  # the provider runs a batch for the whole model: nothing there to shard
        raise HarnessError(
            f"model '{batched[0]}' goes through its provider's Batch API: run the plan "
            f"without --executor ray (or without --batch / batch:)"
        )
    try:
        from harness.engine import ray_executor
    except ImportError as exc:
        raise HarnessError(f"--executor ray needs Ray ({exc}): pip install 'harness[ray]'") from None
    return ray_executor.connect(options.address, options.workers, store.url, options.runtime_env)


def _execute(
    plan: Plan,
    store: Store,
    suites,
    cluster,
    *,
    resume,
    new,
    tag,
    max_cost,
    use_cache,
    progress,
    data_override,
    shard,
    warm,
    own_process,
    batch_wait,
) -> RunResult:
    # Held from choosing the run to marking how it ended: a second process on the same plan and
    # database is refused before it picks (or starts) a run, so no sample is requested twice.
    with PlanLease(store, plan.fingerprint(), plan.name, shard) as lease:
        run_id, resumed = choose_run(store, plan, resume=resume, new=new, tag=tag)
        lease.attach(run_id)
        try:
            store.record_models(
                run_id,
                [
                    RunModelInfo(
                        m.name,
                        m.provider,
                        m.api_model,
                        m.base_url or (m.path or ""),
                        m.price.input,
                        m.price.output,
                        *(m.price.batch_rates() if m.batch else (None, None)),
                        m.price.cached_input,
                    )
                    for m in plan.models
                ],
            )
            for p in suites:
                store.record_suite(
                    run_id, RunSuiteInfo(p.suite.name, p.hash, p.suite.family, p.suite.grader.name, p.suite.count())
                )
            store.mark_run(run_id, "running")
            if cluster is not None:
                from harness.engine.ray_executor import RayExecutor, gather_secrets

                executor = RayExecutor(
                    cluster,
                    plan,
                    suites,
                    store,
                    run_id,
                    secrets=gather_secrets(plan, store.url),
                    max_cost=max_cost,
                    use_cache=use_cache,
                    progress=progress,
                    data_override=data_override,
                )
                outcome = executor.run()
                shard = (0, executor.shards)  # finished only once the store holds every expected sample
            else:
                executor = LocalExecutor(
                    plan,
                    suites,
                    store,
                    run_id,
                    max_cost=max_cost,
                    use_cache=use_cache,
                    progress=progress,
                    shard=shard,
                    warm=warm,
                    own_process=own_process,
                    batch_wait=batch_wait,
                )
                lease.on_lost = executor.stop_soon
                outcome = asyncio.run(executor.run())
        except BaseException as exc:
            # Never leave a run 'running' that nothing executes; rerunning the plan resumes it either way.
            _mark_ended(store, run_id, "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed")
            raise
        failures = outcome.failures()
        for m in (*plan.models, *plan.judges):
            store.mark_model_failed(run_id, m.name, failures.get(m.name))
        status = finish_status(store, run_id, plan, suites, outcome, shard)
        store.mark_run(run_id, status)
    return RunResult(run_id, resumed, status, outcome)


def _mark_ended(store: Store, run_id: str, status: str) -> None:
    try:
        store.mark_run(run_id, status)
    except Exception:  # the database itself failed: keep the original error, not this one
        log.warning("could not mark run %s %s", run_id, status, exc_info=True)
