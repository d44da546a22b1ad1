"""The stored side of provider batches: which batch carries which samples, its ids, state and counts.

Portable SQLAlchemy Core on the store's engine (the tables are `BatchRow` and `BatchRequestRow` in
`tables.py`), kept apart from `Store` so that the store class stays about runs and samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import func, insert, select, update

from harness.store import Store
from harness.store.tables import BatchRequestRow, BatchRow

SampleKey = tuple[str, str, int]  # (suite, item id, sample index): one model per batch


@dataclass(frozen=True)
class BatchInfo:
    id: int
    run_id: str
    model: str
    round: int
    state: str
    collected: bool
    input_file_id: str | None
    batch_id: str | None
    output_file_id: str | None
    error_file_id: str | None
    n_requests: int
    n_completed: int
    n_failed: int
    estimated_cost_usd: float
    error: str
    created_at: datetime
    updated_at: datetime

    @property
    def label(self) -> str:
        return self.batch_id or f"(local #{self.id}, not submitted)"


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


_FIELDS = tuple(BatchInfo.__dataclass_fields__)
_TABLE = BatchRow.__table__


def add_batch(
    store: Store, run_id: str, model: str, keys: list[SampleKey], *, round: int = 1, estimated_cost_usd: float = 0.0
) -> int:
    """Record a batch about to be uploaded, with its samples, in one transaction; returns its local id."""
    now = _now()
    with store.engine.begin() as conn:
        inserted = conn.execute(
            insert(_TABLE).values(
                run_id=run_id,
                model=model,
                round=round,
                state="preparing",
                collected=False,
                n_requests=len(keys),
                n_completed=0,
                n_failed=0,
                estimated_cost_usd=estimated_cost_usd,
                error="",
                created_at=now,
                updated_at=now,
            )
        ).inserted_primary_key
        assert inserted is not None  # a one-row INSERT always reports its key
        batch = inserted[0]
        conn.execute(
            insert(BatchRequestRow.__table__),
            [{"batch": batch, "suite": s, "item_id": i, "sample_index": k} for s, i, k in keys],
        )
    return int(batch)


def update_batch(store: Store, batch: int, **values: Any) -> None:
    if "error" in values:
        values["error"] = str(values["error"] or "")[:2000]
    store._text_rules.fit(_TABLE, [values])
    with store.engine.begin() as conn:
        conn.execute(update(_TABLE).where(_TABLE.c.id == batch).values(**values, updated_at=_now()))


def list_batches(store: Store, run_id: str, model: str | None = None) -> list[BatchInfo]:
    q = select(*[_TABLE.c[f] for f in _FIELDS]).where(_TABLE.c.run_id == run_id)
    if model is not None:
        q = q.where(_TABLE.c.model == model)
    with store.engine.connect() as conn:
        return [BatchInfo(*row) for row in conn.execute(q.order_by(_TABLE.c.id))]


def batch_keys(store: Store, batch: int) -> list[SampleKey]:
    t = BatchRequestRow.__table__
    q = select(t.c.suite, t.c.item_id, t.c.sample_index).where(t.c.batch == batch).order_by(t.c.id)
    with store.engine.connect() as conn:
        return [(r[0], r[1], r[2]) for r in conn.execute(q)]


def batch_rounds(store: Store, run_id: str, model: str, *, collected: bool) -> dict[SampleKey, int]:
    """(suite, item, sample) -> how many of the model's collected (or uncollected) batches carried it."""
    t = BatchRequestRow.__table__
    q = (
        select(t.c.suite, t.c.item_id, t.c.sample_index, func.count())
        .join(_TABLE, _TABLE.c.id == t.c.batch)
        .where(_TABLE.c.run_id == run_id, _TABLE.c.model == model, _TABLE.c.collected == collected)
        .group_by(t.c.suite, t.c.item_id, t.c.sample_index)
    )
    with store.engine.connect() as conn:
        return {(r[0], r[1], r[2]): r[3] for r in conn.execute(q)}
