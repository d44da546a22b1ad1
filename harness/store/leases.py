"""The `leases` table's statements: take, tag, beat, drop a plan's lease, and list the live ones.

The policy (who overlaps whom, when a holder is presumed dead, the heartbeat thread) is
`harness.engine.lease`'s; this module only runs the portable SQL. A unique primary key makes taking a
lease atomic on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Callable, Mapping, cast

from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from harness.store import Store
from harness.store.tables import LeaseRow, _now

log = logging.getLogger(__name__)

_TABLE: Table = LeaseRow.__table__


def insert_lease(store: Store, *, key: str, fingerprint: str, shard: str, owner: str, host: str, pid: int) -> bool:
    """Take the lease row `key`; False when a row of that key already exists (someone holds it)."""
    now = _now()
    try:
        with store.engine.begin() as conn:
            conn.execute(
                insert(_TABLE).values(
                    key=key,
                    plan_fingerprint=fingerprint,
                    shard=shard,
                    run_id="",
                    owner=owner,
                    host=host[:200],
                    pid=pid,
                    since=now,
                    heartbeat=now,
                )
            )
    except IntegrityError:
        return False
    return True


def set_lease_run(store: Store, key: str, owner: str, run_id: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(update(_TABLE).where(_TABLE.c.key == key, _TABLE.c.owner == owner).values(run_id=run_id))


def delete_lease(store: Store, key: str, owner: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(delete(_TABLE).where(_TABLE.c.key == key, _TABLE.c.owner == owner))


def beat_lease(store: Store, key: str, owner: str) -> bool:
    """Refresh the holder's heartbeat; False when the row is gone (another process took it over)."""
    with store.engine.begin() as conn:
        kept = conn.execute(
            update(_TABLE).where(_TABLE.c.key == key, _TABLE.c.owner == owner).values(heartbeat=_now())
        ).rowcount
    return bool(kept)


def others_live(
    store: Store, fingerprint: str, owner: str, expired: Callable[[Mapping[str, Any], datetime], bool]
) -> list[Mapping[str, Any]]:
    """The other holders' leases on a plan, oldest first, after removing those `expired(row, now)` judges
    dead, in one transaction."""
    with store.engine.begin() as conn:
        rows = (
            conn.execute(select(_TABLE).where(_TABLE.c.plan_fingerprint == fingerprint).order_by(_TABLE.c.since))
            .mappings()
            .all()
        )
        now = _now()
        live: list[Mapping[str, Any]] = []
        for row in rows:
            if row["owner"] == owner:
                continue
            if expired(cast(Mapping[str, Any], row), now):
                # Only if it is still the row we judged: a holder that just beat keeps its lease.
                conn.execute(
                    delete(_TABLE).where(
                        _TABLE.c.key == row["key"],
                        _TABLE.c.owner == row["owner"],
                        _TABLE.c.heartbeat == row["heartbeat"],
                    )
                )
                log.info("took over the expired lease of %s pid %s", row["host"], row["pid"])
            else:
                live.append(cast(Mapping[str, Any], row))
    return live
