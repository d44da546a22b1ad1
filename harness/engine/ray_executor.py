"""The Ray executor: a run's remaining work as shards on a Ray cluster, each model's limits shared cluster-wide.

The driver (`harness run --executor ray`) creates or resumes the run once, as a local run does
(`harness.engine.runs.execute_plan`), then splits what is left into one shard per worker
(`units.in_shard`). Each shard runs in a `ShardWorker` actor: the local asyncio engine
(`LocalExecutor`), reading the stored samples first and writing through its own `StoreWriter`
to the shared database. What makes the shards one run:

* Limits: each model has one `ModelGate` actor holding the `pacing` AIMD window and rpm/tpm
  buckets. A worker asks it for a slot and a rate token (one call) before each request and hands
  the slot back with the outcome (a call it does not wait for), so `concurrency`, `rpm` and `tpm`
  are cluster totals, and 429s seen by any worker cut the window, and pause, for all of them.
* Faults: a shard whose worker dies (killed, out of memory, node lost) starts again on a new
  worker, which reads the stored samples first and so requests none of them again; the slots
  the dead worker held go back to the gates.
* Secrets: the database URL and the plan's API keys reach a worker as an argument of the call
  that starts its shard, sent from the driver straight to the worker process. They are never in
  an actor's constructor, a `runtime_env` or the job's settings, which Ray keeps in its control
  store and shows in its logs and dashboard; their `repr` withholds the values.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import NodeDiedError, OwnerDiedError, RayActorError, RayTaskError, WorkerCrashedError
from sqlalchemy.engine import make_url

from harness.engine.executors import RayOptions, RunJob, RunOptions, RunOutcome
from harness.engine.local import LocalExecutor
from harness.engine.pacing import AdaptiveLimiter, RateLimiter
from harness.engine.units import PreparedSuite, prepare_suites, remaining_samples
from harness.errors import HarnessError
from harness.plan import ModelSpec, Plan
from harness.store import Store

log = logging.getLogger(__name__)

NAMESPACE = "harness"
POLL_S = 0.5  # how often the driver gathers the workers' counts for the progress bar
SHARD_ATTEMPTS = 4  # a shard whose worker died this many times fails the run (finished samples stay stored)
LOST_WORKER = (RayActorError, WorkerCrashedError, NodeDiedError, OwnerDiedError)


@dataclass(frozen=True)
class Secrets:
    """What a worker needs that Ray must never record: the database URL, API keys, harness settings."""

    db_url: str
    env: dict[str, str]

    def __repr__(self) -> str:
        return f"Secrets(<{len(self.env) + 1} values withheld>)"

    __str__ = __repr__


@dataclass
class ModelCounts:
    """A model's running totals in one worker (what the driver's progress bar adds up)."""

    done: int = 0
    errors: int = 0
    correct: float = 0.0
    cost: float = 0.0
    retries: int = 0
    requests: int = 0
    answered: int = 0
    unstored: int = 0  # samples a fatal stop left unstored (see runner.ModelState)
    failed: str = ""  # why a worker stopped this model (fatal errors in a row)
    last_fatal: str = ""

    def add(self, other: "ModelCounts") -> None:
        for name in ("done", "errors", "correct", "cost", "retries", "requests", "answered", "unstored"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failed = self.failed or other.failed
        self.last_fatal = self.last_fatal or other.last_fatal


@dataclass
class ModelTotals(ModelCounts):
    """A model's totals across the cluster, shaped like `ModelState` for `RunProgress`."""

    spec: ModelSpec | None = None
    total: int | None = None


@dataclass(frozen=True)
class ShardJob:
    plan: Plan
    run_id: str
    shard: tuple[int, int]
    holder: str  # names this attempt at the gates, so a dead worker's slots can be handed back
    gates: dict  # model name -> ModelGate handle
    suite_hashes: dict[str, str]  # what the driver prepared: a worker whose suites differ refuses
    data_override: dict[str, str] | None = None
    max_cost: float | None = None
    use_cache: bool = False


@dataclass
class ShardReport:
    shard: tuple[int, int]
    requested: int
    counts: dict[str, ModelCounts]
    stopped_for_cost: bool
    interrupted: bool


@dataclass
class RayOutcome(RunOutcome):
    shards: int = 0
    restarts: int = 0  # shards started again after their worker died
    gates: dict[str, dict] = field(default_factory=dict)  # model -> its ModelGate's stats at the end


# -- the cluster ----------------------------------------------------------------------------------


@dataclass
class RayCluster:
    """A connection to Ray for one run: `workers` shards; a local instance started here is shut down by `close`."""

    workers: int
    started_here: bool = False

    def close(self) -> None:
        if self.started_here and ray.is_initialized():
            ray.shutdown()


def connect(address: str | None, workers: int | None, db_url: str, runtime_env: dict | None = None) -> RayCluster:
    """Join the cluster at `address` (None: the instance this process joined, else a new local one),
    and check the store suits it. `workers`: shards to run (default: one per CPU of the cluster).
    `runtime_env`: the job's Ray runtime environment (what the workers install; never secrets)."""
    sqlite = make_url(db_url).get_backend_name() == "sqlite"
    refusal = HarnessError(
        f"--db {db_url}: SQLite serves only a Ray instance on this machine; give a cluster a "
        f"PostgreSQL database every node can reach, e.g. --db postgresql+psycopg://user@dbhost/harness"
    )
    if sqlite and address and address.startswith("ray://"):
        raise refusal  # a Ray client's driver is not on the cluster: no node could open the file
    started = False
    if not ray.is_initialized():
        try:
            if address:
                ray.init(address=address, runtime_env=runtime_env, logging_level=logging.WARNING)
            else:
                ray.init(
                    num_cpus=max(os.cpu_count() or 1, workers or 0),
                    include_dashboard=False,
                    object_store_memory=128 << 20,
                    runtime_env=runtime_env,
                    logging_level=logging.WARNING,
                )
                started = True
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise HarnessError(
                f"--address: cannot connect to {where} ({_first_line(exc)}); "
                f"start one with `ray start --head` or check the address"
            ) from None
    cluster = RayCluster(workers or max(1, int(ray.cluster_resources().get("CPU", 1))), started)
    if sqlite and not _one_machine():
        cluster.close()
        raise refusal
    return cluster


def _one_machine() -> bool:
    here = ray.util.get_node_ip_address()
    return all(node["NodeManagerAddress"] == here for node in ray.nodes() if node.get("Alive"))


def gather_secrets(plan: Plan, db_url: str) -> Secrets:
    """The database URL (a SQLite path made absolute), the plan's API keys and `$VAR` header values, HARNESS_* settings."""
    url = make_url(db_url)
    if (
        url.get_backend_name() == "sqlite"
        and url.database not in (None, "", ":memory:")
        and not os.path.isabs(url.database)
    ):
        url = url.set(database=os.path.abspath(url.database))
    models = (*plan.models, *plan.judges)
    names = {m.api_key_env for m in models if m.api_key_env}
    names |= {v[1:] for m in models for v in (m.extra_headers or {}).values() if v.startswith("$")}
    env = {name: os.environ[name] for name in names if name in os.environ}
    # e.g. HARNESS_SUITES_PATH: a worker started by a raylet has the raylet's environment, not ours.
    env.update({k: v for k, v in os.environ.items() if k.startswith("HARNESS_") and k != "HARNESS_DB"})
    return Secrets(url.render_as_string(hide_password=False), env)


# -- limits shared by every worker ----------------------------------------------------------------


@ray.remote(num_cpus=0, max_concurrency=10_000)  # type: ignore[call-overload]  # Ray's stubs lack max_concurrency
class ModelGate:
    """One model's concurrency window and rate buckets for the whole cluster (an async actor)."""

    def __init__(self, concurrency: int, rpm: float | None, tpm: float | None):
        self.limiter = AdaptiveLimiter(concurrency)
        self.rate = RateLimiter(rpm, tpm)
        self.held: dict[str, set[int]] = {}
        self.forgotten: set[str] = set()
        self.granted = 0
        self.peak = 0

    async def acquire(self, holder: str, tokens: int | None, priority: bool) -> int:
        if self.rate.active:
            await self.rate.acquire(tokens or 0)
        ticket = await self.limiter.acquire(priority=priority)
        if holder in self.forgotten:  # its worker died while this call waited
            self.limiter.release(ticket, success=False)
            return -1
        self.held.setdefault(holder, set()).add(ticket)
        self.granted += 1
        self.peak = max(self.peak, self.limiter.in_flight)
        return ticket

    async def release(self, holder: str, outcomes: list[tuple[int, bool, bool, float | None]]) -> None:
        """Slots back with their outcomes: (ticket, rate_limited, success, retry_after) each."""
        held = self.held.get(holder)
        for ticket, rate_limited, success, retry_after in outcomes:
            if held is None or ticket not in held:
                continue  # handed back already by `forget`
            held.discard(ticket)
            self.limiter.release(ticket, rate_limited=rate_limited, success=success, retry_after=retry_after)

    async def forget(self, holder: str) -> int:
        """A worker died: give back every slot it held (they count as neither success nor 429)."""
        self.forgotten.add(holder)
        held = self.held.pop(holder, set())
        for ticket in held:
            self.limiter.release(ticket, success=False)
        return len(held)

    async def stats(self) -> dict:
        return {
            "granted": self.granted,
            "peak_in_flight": self.peak,
            "in_flight": self.limiter.in_flight,
            "window": self.limiter.limit,
            "cuts": self.limiter.cuts,
        }


class GateRate:
    """A worker's stand-in for `RateLimiter`: it notes the next request's tokens, which the gate
    charges together with that request's slot (one round trip instead of two)."""

    def __init__(self, active: bool):
        self.active = active
        self.pending: int | None = None

    async def acquire(self, tokens: int) -> None:
        self.pending = tokens


class GateSlots:
    """A worker's stand-in for `AdaptiveLimiter`: every slot comes from the model's `ModelGate`."""

    def __init__(self, gate, holder: str, cap: int, rate: GateRate):
        self.gate, self.holder, self.cap, self.rate = gate, holder, cap, rate
        self._returned: list[tuple[int, bool, bool, float | None]] = []

    async def acquire(self, *, priority: bool = False) -> int:
        # The engine awaits rate.acquire(tokens) right before this, in the same task, and neither
        # coroutine suspends before this line: the pending tokens are this request's.
        tokens, self.rate.pending = self.rate.pending, None
        return await self.gate.acquire.remote(self.holder, tokens, priority)

    def release(
        self, ticket: int, *, rate_limited: bool = False, success: bool = True, retry_after: float | None = None
    ) -> None:
        """Hand the slot back, together with every other slot freed in this turn of the loop (one call,
        sent when the turn ends): answers arriving together cost the gate one call, not one each."""
        if ticket < 0:
            return
        self._returned.append((ticket, rate_limited, success, retry_after))
        if len(self._returned) == 1:
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        outcomes, self._returned = self._returned, []
        self.gate.release.remote(self.holder, outcomes)


def gate_limits(gates: dict, holder: str):
    """`LocalExecutor`'s `limits`: each model's slots and rate tokens from its gate."""

    def limits(spec: ModelSpec):
        rate = GateRate(bool(spec.rpm or spec.tpm))
        return GateSlots(gates[spec.name], holder, spec.concurrency, rate), rate

    return limits


# -- a worker -------------------------------------------------------------------------------------


class ShardProgress:
    """The `progress` of a worker's engine: keeps its models' states for the driver to read."""

    def __init__(self):
        self.states: dict = {}

    def start(self, states) -> None:
        self.states = states

    def advance(self, record) -> None:
        pass

    def stop(self) -> None:
        pass

    def counts(self) -> dict[str, ModelCounts]:
        return {
            name: ModelCounts(
                st.done,
                st.errors,
                st.correct,
                st.cost,
                st.retries,
                st.requests,
                st.answered,
                st.unstored,
                st.failed,
                st.last_fatal,
            )
            for name, st in self.states.items()
        }


@ray.remote(num_cpus=1, max_restarts=0)
class ShardWorker:
    """Runs one shard of a run with the local engine (an async actor: counts are read while it runs)."""

    def __init__(self):
        self.progress = ShardProgress()
        self.executor: LocalExecutor | None = None

    async def run_shard(self, job: ShardJob, secrets: Secrets) -> ShardReport:
        os.environ.update(secrets.env)  # API keys, read by the providers as in a local run
        store = Store(secrets.db_url)
        try:
            suites = prepare_suites(job.plan, data_override=job.data_override)
            _check_same_suites(suites, job.suite_hashes)
            self.executor = LocalExecutor(
                job.plan,
                suites,
                store,
                job.run_id,
                RunOptions(max_cost=job.max_cost, use_cache=job.use_cache, progress=self.progress, shard=job.shard),
                limits=gate_limits(job.gates, job.holder),
            )
            outcome = await self.executor.run()
        finally:
            store.close()
        return ShardReport(
            job.shard, outcome.requested, self.progress.counts(), outcome.stopped_for_cost, outcome.interrupted
        )

    async def counts(self) -> dict[str, ModelCounts]:
        return self.progress.counts()

    async def stop(self) -> None:
        if self.executor is not None:
            self.executor.stop()


def _check_same_suites(suites: list[PreparedSuite], expected: dict[str, str]) -> None:
    for p in suites:
        if expected.get(p.suite.name) != p.hash:
            raise HarnessError(
                f"suite '{p.suite.name}' on Ray node {ray.util.get_node_ip_address()} has content hash {p.hash}, "
                f"the driver's has {expected.get(p.suite.name)}: install the same harness, suites and data "
                f"files on every node (e.g. one image, or a runtime_env with the project)"
            )


# -- the driver -----------------------------------------------------------------------------------


class RayExecutor:
    """Drives a run's shards on Ray: starts a worker per shard, restarts the lost, adds up their counts."""

    def __init__(
        self,
        cluster: RayCluster,
        plan: Plan,
        suites: list[PreparedSuite],
        store: Store,
        run_id: str,
        *,
        secrets: Secrets,
        max_cost: float | None = None,
        use_cache: bool = False,
        progress=None,
        data_override: dict[str, str] | None = None,
    ):
        self.cluster, self.plan, self.suites, self.store, self.run_id = cluster, plan, suites, store, run_id
        self.secrets, self.max_cost, self.use_cache = secrets, max_cost, use_cache or plan.cache
        self.progress, self.data_override = progress, data_override
        self.shards = cluster.workers
        self.gates: dict = {}
        # shard -> (actor, result ref, holder); Ray's handles are dynamic (their methods are the actor's)
        self.workers: dict[int, tuple[Any, Any, str]] = {}
        self.attempts = [0] * self.shards
        self.seen: dict[int, dict[str, ModelCounts]] = {}  # the running attempt's counts, per shard
        self.carried: dict[str, ModelCounts] = {}  # finished shards and lost attempts

    def run(self) -> RayOutcome:
        outcome = RayOutcome(self.run_id, shards=self.shards)
        done = self.store.done_keys(self.run_id)
        totals = {
            m.name: ModelTotals(spec=m, total=remaining_samples(self.plan, self.suites, done, m.name))
            for m in self.plan.models
        }
        outcome.per_model = totals
        if self.max_cost is not None and self.max_cost <= 0:
            outcome.stopped_for_cost = True
            return outcome
        self.gates = {
            # @ray.remote made it an actor class; mypy does not apply class decorators
            spec.name: ModelGate.remote(spec.concurrency, spec.rpm, spec.tpm)  # type: ignore[attr-defined]
            for spec in (*self.plan.models, *self.plan.judges)
        }
        if self.progress is not None:
            self.progress.start(totals)
        try:
            for index in range(self.shards):
                self._start(index)
            while self.workers:
                refs = {ref: index for index, (_, ref, _) in self.workers.items()}
                ready, _ = ray.wait(list(refs), num_returns=1, timeout=POLL_S)
                for ref in ready:
                    self._finished(refs[ref], ref, outcome)
                self._gather(totals, outcome)
            names = list(self.gates)
            outcome.gates = dict(zip(names, ray.get([self.gates[n].stats.remote() for n in names], timeout=30)))
        except BaseException:
            for actor, _, _ in self.workers.values():
                ray.kill(actor)
            raise
        finally:
            for gate in self.gates.values():
                ray.kill(gate)
            if self.progress is not None:
                self.progress.stop()
        return outcome

    def _name(self, index: int) -> str:
        """The worker's actor name in namespace `harness` (`ray.get_actor` finds it, e.g. to kill it)."""
        return f"harness-{self.run_id}-shard-{index}-{self.attempts[index]}"

    def _start(self, index: int) -> None:
        holder = self._name(index)
        actor = ShardWorker.options(name=holder, namespace=NAMESPACE).remote()  # type: ignore[attr-defined]  # as above
        job = ShardJob(
            self.plan,
            self.run_id,
            (index, self.shards),
            holder,
            self.gates,
            {p.suite.name: p.hash for p in self.suites},
            self.data_override,
            self.max_cost,
            self.use_cache,
        )
        self.workers[index] = (actor, actor.run_shard.remote(job, self.secrets), holder)
        self.seen[index] = {}

    def _carry(self, counts: dict[str, ModelCounts]) -> None:
        for model, c in counts.items():
            self.carried.setdefault(model, ModelCounts()).add(c)

    def _finished(self, index: int, ref, outcome: RayOutcome) -> None:
        actor, _, holder = self.workers.pop(index)
        try:
            report: ShardReport = ray.get(ref)
        except RayTaskError as exc:  # the shard's own error (a bad data file on a node, a bug): stop all
            self._stop_all()
            cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else exc
            raise cause from None
        except LOST_WORKER as exc:
            ray.kill(actor)  # an unreachable worker may yet be running: it must not run the shard twice
            released = sum(ray.get([gate.forget.remote(holder) for gate in self.gates.values()]))
            self._carry(self.seen.pop(index, {}))
            self.attempts[index] += 1
            if self.attempts[index] >= SHARD_ATTEMPTS:
                self._stop_all()
                raise HarnessError(
                    f"shard {index + 1}/{self.shards}: its Ray worker died {self.attempts[index]} times "
                    f"(last: {_first_line(exc)}); finished samples are stored: run again to resume"
                ) from None
            log.warning(
                "shard %d/%d: worker lost (%s); %d slots handed back; starting it again",
                index + 1,
                self.shards,
                _first_line(exc),
                released,
            )
            outcome.restarts += 1
            self._start(index)
            return
        self.seen.pop(index, None)
        self._carry(report.counts)
        outcome.requested += report.requested
        outcome.stopped_for_cost |= report.stopped_for_cost
        outcome.interrupted |= report.interrupted

    def _gather(self, totals: dict[str, ModelTotals], outcome: RayOutcome) -> None:
        """Read every running worker's counts, add them up, stop all at --max-cost, redraw."""
        asked = {actor.counts.remote(): index for index, (actor, _, _) in self.workers.items()}
        if asked:
            ready, _ = ray.wait(list(asked), num_returns=len(asked), timeout=POLL_S / 2)
            for ref in ready:
                try:
                    self.seen[asked[ref]] = ray.get(ref)
                except LOST_WORKER:
                    pass  # its shard result says so too, and is handled there
        for model, t in totals.items():
            fresh = ModelCounts()
            for counts in (self.carried, *self.seen.values()):
                if model in counts:
                    fresh.add(counts[model])
            t.done, t.errors, t.correct, t.cost, t.retries, t.requests = (
                fresh.done,
                fresh.errors,
                fresh.correct,
                fresh.cost,
                fresh.retries,
                fresh.requests,
            )
        if (
            self.max_cost is not None
            and not outcome.stopped_for_cost
            and sum(t.cost for t in totals.values()) >= self.max_cost
        ):
            outcome.stopped_for_cost = True
            self._stop_all()
        if self.progress is not None:
            self.progress.refresh()

    def _stop_all(self) -> None:
        for actor, _, _ in self.workers.values():
            actor.stop.remote()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return text.splitlines()[0][:300]


class RayRun:
    """The `ray` executor (executors.py): joins the cluster when built, before the run is recorded."""

    def __init__(self, plan: Plan, store: Store, options: RunOptions):
        batched = [m.name for m in (*plan.models, *plan.judges) if m.batch is not None]
        if batched:  # the provider runs a batch for the whole model: nothing there to shard
            raise HarnessError(
                f"model '{batched[0]}' goes through its provider's Batch API: run the plan "
                f"without --executor ray (or without --batch / batch:)"
            )
        ray_options = options.ray or RayOptions()
        self.cluster = connect(ray_options.address, ray_options.workers, store.url, ray_options.runtime_env)
        self.shard: tuple[int, int] | None = None

    def run(self, job: RunJob) -> RunOutcome:
        options = job.options
        executor = RayExecutor(
            self.cluster,
            job.plan,
            job.suites,
            job.store,
            job.run_id,
            secrets=gather_secrets(job.plan, job.store.url),
            max_cost=options.max_cost,
            use_cache=options.use_cache,
            progress=options.progress,
            data_override=options.data_override,
        )
        outcome = executor.run()
        self.shard = (0, executor.shards)  # finished only once the store holds every expected sample
        return outcome

    def close(self) -> None:
        self.cluster.close()
