"""Load results in the store (tables `load_runs`, `load_models`, `load_stages`, `load_requests`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from harness.errors import HarnessError
from harness.store import Store, new_run_id
from harness.store.tables import LoadModelRow, LoadRequestRow, LoadRunRow, LoadStageRow, _now


@dataclass
class LoadRunInfo:
    id: str
    plan_name: str
    tag: str
    status: str
    started_at: datetime
    profile: dict = field(default_factory=dict)


@dataclass
class StoredStage:
    id: int
    model: str
    index: int
    stats: dict
    probe: bool
    meets_slo: bool | None


@dataclass
class StoredModel:
    model: str
    capacity_concurrency: int | None
    capacity_rate: float | None
    note: str


def start_load_run(
    store: Store, *, plan_name: str, plan_path: str, tag: str, profile: dict, run_id: str | None = None
) -> str:
    run_id = run_id or new_run_id()
    with Session(store.engine) as s, s.begin():
        s.add(
            LoadRunRow(
                id=run_id,
                plan_name=plan_name,
                plan_path=plan_path,
                tag=tag,
                profile_json=json.dumps(profile, default=str),
            )
        )
    return run_id


def save_stage(
    store: Store,
    run_id: str,
    model: str,
    index: int,
    stats: dict,
    results: Iterable[Any],  # harness.load.requests.RequestResult
    *,
    meets_slo: bool | None,
    probe: bool,
) -> int:
    """One stage and its measured requests, in one transaction."""
    row = {
        "load_run_id": run_id,
        "model": model,
        "stage_index": index,
        "concurrency": stats.get("concurrency"),
        "rate": stats.get("rate"),
        "requests": stats.get("requests") or 0,
        "error_rate": stats.get("error_rate"),
        "ttft_p99": stats.get("ttft_p99"),
        "latency_p99": stats.get("latency_p99"),
        "meets_slo": meets_slo,
        "probe": probe,
        "stats_json": json.dumps(stats),
    }
    store._text_rules.fit(LoadStageRow.__table__, [row])
    with store.engine.begin() as conn:
        key = conn.execute(insert(LoadStageRow).values(**row)).inserted_primary_key
        assert key is not None  # an INSERT of one row always has its key
        stage_id = key[0]
        rows = [
            {
                "stage_id": stage_id,
                "sent_at": r.sent_at,
                "latency": r.latency,
                "ttft": r.ttft,
                "tpot": r.tpot,
                "input_tokens": r.input_tokens,
                "output_tokens": r.output_tokens,
                "status": r.status,
                "error": r.error,
            }
            for r in results
            if r.measured
        ]
        if rows:
            conn.execute(insert(LoadRequestRow), rows)
    return int(stage_id)


def save_model(
    store: Store,
    run_id: str,
    model: str,
    api_model: str,
    *,
    capacity_concurrency: int | None = None,
    capacity_rate: float | None = None,
    note: str = "",
) -> None:
    row = {
        "load_run_id": run_id,
        "model": model,
        "api_model": api_model,
        "capacity_concurrency": capacity_concurrency,
        "capacity_rate": capacity_rate,
        "note": note,
    }
    store._text_rules.fit(LoadModelRow.__table__, [row])
    with store.engine.begin() as conn:
        conn.execute(insert(LoadModelRow).values(**row))


def finish_load_run(store: Store, run_id: str, status: str = "finished") -> None:
    with store.engine.begin() as conn:
        conn.execute(update(LoadRunRow).where(LoadRunRow.id == run_id).values(status=status, finished_at=_now()))


def load_lease_key(run_id: str) -> str:
    """The lease a load run holds while its process lives (engine/lease.py)."""
    return f"load {run_id}"


def _settle_dead_runs(store: Store) -> None:
    """A load run still `running` whose process holds no live lease (killed, machine off) ends as interrupted."""
    from harness.engine.lease import PlanLease  # lease imports the store; imported here to keep this module light

    with Session(store.engine) as s:
        running = [(r.id, r.plan_name) for r in s.scalars(select(LoadRunRow).where(LoadRunRow.status == "running"))]
    for run_id, plan_name in running:
        if PlanLease(store, load_lease_key(run_id), plan_name)._live_overlapping() is None:
            with store.engine.begin() as conn:
                conn.execute(
                    update(LoadRunRow)
                    .where(LoadRunRow.id == run_id, LoadRunRow.status == "running")
                    .values(status="interrupted", finished_at=_now())
                )


def load_runs(store: Store, plan_name: str | None = None) -> list[LoadRunInfo]:
    """Load runs, oldest first (those whose process died are marked interrupted first)."""
    _settle_dead_runs(store)
    query = select(LoadRunRow).order_by(LoadRunRow.started_at, LoadRunRow.id)
    if plan_name:
        query = query.where(LoadRunRow.plan_name == plan_name)
    with Session(store.engine) as s:
        return [
            LoadRunInfo(r.id, r.plan_name, r.tag, r.status, r.started_at, json.loads(r.profile_json or "{}"))
            for r in s.scalars(query)
        ]


COMPLETE_STATUSES = ("finished", "stopped")  # a run that ended by itself (stopped: at --max-cost)


def resolve_load_run(store: Store, run_id: str | None, plan_name: str | None = None) -> LoadRunInfo:
    """A load run by id (or prefix); by default the latest that ended by itself, never a running,
    interrupted or failed one."""
    runs = load_runs(store, plan_name)
    if not runs:
        where = f" of plan {plan_name!r}" if plan_name else ""
        raise HarnessError(f"no load runs{where} in {store.shown_url} (run `harness load PLAN` first)")
    if run_id is None:
        complete = [r for r in runs if r.status in COMPLETE_STATUSES]
        if not complete:
            raise HarnessError(
                f"no finished load run in {store.shown_url} (the latest, {runs[-1].id}, is {runs[-1].status}); "
                f"name one explicitly or run `harness load PLAN` again"
            )
        return complete[-1]
    matches = [r for r in runs if r.id == run_id or r.id.startswith(run_id)]
    if len(matches) != 1:
        raise HarnessError(f"load run {run_id!r}: {'not found' if not matches else 'ambiguous'} in {store.shown_url}")
    return matches[0]


def stages(store: Store, run_id: str) -> list[StoredStage]:
    query = (
        select(LoadStageRow)
        .where(LoadStageRow.load_run_id == run_id)
        .order_by(LoadStageRow.model, LoadStageRow.stage_index)
    )
    with Session(store.engine) as s:
        return [
            StoredStage(r.id, r.model, r.stage_index, json.loads(r.stats_json or "{}"), bool(r.probe), r.meets_slo)
            for r in s.scalars(query)
        ]


def models(store: Store, run_id: str) -> list[StoredModel]:
    query = select(LoadModelRow).where(LoadModelRow.load_run_id == run_id).order_by(LoadModelRow.id)
    with Session(store.engine) as s:
        return [StoredModel(r.model, r.capacity_concurrency, r.capacity_rate, r.note) for r in s.scalars(query)]


def stage_requests(store: Store, stage_id: int) -> list[dict]:
    """A stage's measured requests as plain rows (for distributions and the p99 check)."""
    cols = (LoadRequestRow.latency, LoadRequestRow.ttft, LoadRequestRow.error)
    with store.engine.connect() as conn:
        rows = conn.execute(select(*cols).where(LoadRequestRow.stage_id == stage_id)).all()
    return [{"latency": r[0], "ttft": r[1], "error": r[2]} for r in rows]
