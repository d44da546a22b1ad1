"""The executor seam: how a recorded run's remaining units get executed, chosen by name, one options value.

`execute_plan` (runs.py) records or resumes the run, then hands it to an executor: `local` (every
model on one asyncio loop in this process, local.py) or `ray` (shards on a Ray cluster,
ray_executor.py). An executor is one module plus one `register_executor` line (or, from another
package, an entry point in the `harness.executors` group naming its factory). A model with
`batch:` is not an executor of its own: inside a local run its units go through the provider's
Batch API (batch.py) on the same loop, runner, store writer and cost stop as the online models and
judges beside it, chosen per model by `LocalExecutor` (see `model_driver` in local.py).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol

from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.engine.lease import PlanLease
    from harness.engine.units import PreparedSuite
    from harness.plan import Plan
    from harness.store import Store


@dataclass(frozen=True)
class RayOptions:
    """`harness run --executor ray`: the cluster to join (None: a local instance) and how many shards."""

    address: str | None = None
    workers: int | None = None  # None: one per CPU of the cluster
    runtime_env: dict | None = None  # Ray's runtime_env for the job (packages, working_dir; never secrets)


@dataclass(frozen=True)
class RunOptions:
    """Everything about executing a plan that is not in the plan: the CLI builds one, the engine passes it on.

    `warm`: modules to import on a background thread once every request is sent. `own_process`:
    the process exists for this run (the CLI), so it may be tuned process-wide (tuning.py).
    `batch_wait`: seconds to keep polling provider batches (None: until they end). `executor`:
    a registered executor's name (None: `ray` when `ray` options are given, else `local`).
    """

    resume: str | None = None
    new: bool = False
    tag: str = ""
    max_cost: float | None = None
    use_cache: bool = False
    progress: Any = None  # engine.progress.RunProgress or anything with start/advance/stop
    data_override: dict[str, str] | None = None
    shard: tuple[int, int] | None = None
    warm: tuple[str, ...] = ()
    own_process: bool = False
    batch_wait: float | None = None
    executor: str | None = None
    ray: RayOptions | None = None

    @property
    def executor_name(self) -> str:
        return self.executor or ("ray" if self.ray is not None else "local")


class ModelTally(Protocol):
    """What an outcome reads of each model: the local engine's `ModelState` or the Ray driver's totals."""

    @property
    def cost(self) -> float: ...
    @property
    def answered(self) -> int: ...
    @property
    def failed(self) -> str: ...
    @property
    def unstored(self) -> int: ...
    @property
    def last_fatal(self) -> str: ...


@dataclass
class RunOutcome:
    """How an execution ended, and each model's counts (what `finish_status` and the CLI read)."""

    run_id: str
    stopped_for_cost: bool = False
    interrupted: bool = False
    requested: int = 0  # units started in this process
    per_model: Mapping[str, ModelTally] = field(default_factory=dict)
    waiting: list[str] = field(default_factory=list)  # provider batches still running when this process stopped waiting
    notes: list[str] = field(default_factory=list)  # what the user should hear about (e.g. a cancelled batch)

    @property
    def complete(self) -> bool:
        return not self.stopped_for_cost and not self.interrupted and not self.waiting

    def failures(self) -> dict[str, str]:
        """model -> why some of its samples are missing: stopped on fatal errors, or samples left unstored."""
        out = {}
        for name, st in self.per_model.items():
            if st.failed:
                out[name] = st.failed
            elif st.unstored:
                out[name] = f"{st.unstored} sample(s) not stored after: {st.last_fatal}"
        return out

    def reached(self) -> bool:
        """Some model's server answered at least once (or nothing needed asking)."""
        return any(st.answered or not st.failed for st in self.per_model.values())


@dataclass(frozen=True)
class RunJob:
    """A recorded run for an executor to execute: its plan, prepared suites, store, id and lease."""

    plan: Plan
    suites: list[PreparedSuite]
    store: Store
    run_id: str
    options: RunOptions
    lease: PlanLease


class Executor(Protocol):
    """Executes what a run has left. Built before the run is recorded, so refusing there costs nothing.

    `shard`: the part of the run this execution covers ((i, n), or None for all of it): a run is
    marked finished after a partial execution only once the store holds every expected sample.
    """

    shard: tuple[int, int] | None

    def run(self, job: RunJob) -> RunOutcome: ...

    def close(self) -> None: ...


# (plan, store, options) -> Executor; raises HarnessError for what the user must change first.
ExecutorFactory = Callable[["Plan", "Store", RunOptions], Executor]


@dataclass(frozen=True)
class ExecutorInfo:
    name: str
    factory: str | ExecutorFactory  # "module:attribute", imported when chosen
    install: str = ""  # what to install when its module's imports are missing


_executors: dict[str, ExecutorInfo] = {}

ENTRY_POINT_GROUP = "harness.executors"


def register_executor(name: str, factory: str | ExecutorFactory, *, install: str = "") -> None:
    """Make `factory` the executor called `name` (`harness run --executor NAME`)."""
    existing = _executors.get(name)
    if existing is not None and existing.factory != factory:
        raise ValueError(f"executor name '{name}' is already registered ({existing.factory})")
    _executors[name] = ExecutorInfo(name, factory, install)


def executor_names() -> list[str]:
    """Registered executors, then plugins' (not imported)."""
    names = list(_executors)
    return names + sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)} - set(names))


def _plugin(name: str) -> ExecutorInfo | None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ExecutorInfo(name, ep.value)  # "module:attribute", imported like a built-in's
    return None


def open_executor(plan: Plan, store: Store, options: RunOptions) -> Executor:
    """The executor the options name, built for this plan (it may refuse the plan with one line)."""
    name = options.executor_name
    info = _executors.get(name) or _plugin(name)
    if info is None:
        raise HarnessError(f"unknown executor {name!r} (known: {', '.join(executor_names())})")
    factory = info.factory
    if isinstance(factory, str):
        module, _, attribute = factory.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attribute)
        except ImportError as exc:
            hint = f": {info.install}" if info.install else ""
            raise HarnessError(f"--executor {name} needs {exc.name or 'a missing package'} ({exc}){hint}") from None
    return factory(plan, store, options)


register_executor("local", "harness.engine.local:LocalRun")
register_executor("ray", "harness.engine.ray_executor:RayRun", install="pip install 'harness[ray]'")
