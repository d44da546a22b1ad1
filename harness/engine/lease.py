"""The lease on executing a plan: one live process per plan (or per shard of it) on a database.

Two `harness run` of one plan on one database would otherwise each request every sample. The
process that executes a plan holds a row in `leases` (owner, host, pid, since, heartbeat); a second
process refuses with one line naming the holder. The holder refreshes its heartbeat on a thread;
a lease whose heartbeat is older than the TTL, or whose holder is a process of this host that no
longer exists (kill -9), has expired and is taken over, so resuming after a crash works. Shards of
one split (`--shard 0/4`, `--shard 1/4`) hold separate leases; anything else on the plan overlaps.
The statements are in `harness.store.leases`; a unique primary key makes taking a lease atomic.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from datetime import datetime, timedelta
from typing import Any, Callable, Mapping

from harness.errors import HarnessError
from harness.store import Store, leases

log = logging.getLogger(__name__)

LEASE_TTL_S = 60.0  # a holder silent this long is presumed dead (clocks of the hosts must agree to within it)
HEARTBEAT_S = 10.0


def shard_label(shard: tuple[int, int] | None) -> str:
    return "*" if shard is None or shard[1] <= 1 else f"{shard[0]}/{shard[1]}"


def _overlaps(a: str, b: str) -> bool:
    """Whether two leases' shards can share an item: only distinct shards of one split cannot."""
    if "*" in (a, b) or a == b:
        return True
    return a.split("/")[1] != b.split("/")[1]


def _pid_gone(pid: int) -> bool:
    """Whether no process `pid` runs on this host (a zombie, killed but not yet reaped, is gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's process: it exists
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


class PlanLease:
    """Hold the lease on (plan, shard) for the life of a `with` block, with a heartbeat thread."""

    def __init__(
        self,
        store: Store,
        fingerprint: str,
        plan_name: str,
        shard: tuple[int, int] | None = None,
        *,
        ttl_s: float | None = None,
        heartbeat_s: float | None = None,
        on_lost: Callable[[], None] | None = None,
    ):
        self.store, self.fingerprint, self.plan_name = store, fingerprint, plan_name
        self.shard = shard_label(shard)
        self.key = f"{fingerprint} {self.shard}"
        self.owner = secrets.token_hex(8)
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.ttl_s = LEASE_TTL_S if ttl_s is None else ttl_s
        self.heartbeat_s = HEARTBEAT_S if heartbeat_s is None else heartbeat_s
        self.on_lost = on_lost  # called on the heartbeat thread if another process took the lease over
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PlanLease:
        self.acquire()
        self._thread = threading.Thread(target=self._beat, name="harness-lease", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    # -- taking and giving back ------------------------------------------------------

    def acquire(self) -> None:
        """Take the lease, or raise HarnessError naming the live holder of an overlapping one."""
        for _ in range(3):
            holder = self._live_overlapping()
            if holder is not None:
                raise HarnessError(self._busy(holder))
            taken = leases.insert_lease(
                self.store,
                key=self.key,
                fingerprint=self.fingerprint,
                shard=self.shard,
                owner=self.owner,
                host=self.host,
                pid=self.pid,
            )
            if not taken:
                continue  # taken between our look and our insert: look again, and name who has it
            # Two overlapping shards (say * and 0/2) may insert at the same moment under different
            # keys: each then sees the other, and both give way rather than both run.
            holder = self._live_overlapping()
            if holder is None:
                return
            self._delete_own()
            raise HarnessError(self._busy(holder))
        raise HarnessError(f"plan {self.plan_name}: could not take the run lease in {self.store.shown_url}; try again")

    def attach(self, run_id: str) -> None:
        """Record which run the holder is executing (shown to a process that is refused)."""
        leases.set_lease_run(self.store, self.key, self.owner, run_id)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self._delete_own()
        except Exception:  # the database went away: the lease expires by itself
            log.warning("could not release the run lease %s", self.key, exc_info=True)

    def _delete_own(self) -> None:
        leases.delete_lease(self.store, self.key, self.owner)

    # -- who else holds it -------------------------------------------------------------

    def _live_overlapping(self) -> Mapping[str, Any] | None:
        """The first live lease on this plan that overlaps ours (not ours); expired ones are removed."""
        live = leases.others_live(self.store, self.fingerprint, self.owner, self._expired)
        return next((row for row in live if _overlaps(row["shard"], self.shard)), None)

    def _expired(self, row: Mapping[str, Any], now: datetime) -> bool:
        if now - row["heartbeat"] > timedelta(seconds=self.ttl_s):
            return True
        return row["host"] == self.host[:200] and row["pid"] != self.pid and _pid_gone(row["pid"])

    def _busy(self, holder: Mapping[str, Any]) -> str:
        part = "" if holder["shard"] == "*" else f" (shard {holder['shard']})"
        run = f", run {holder['run_id']}" if holder["run_id"] else ""
        return (
            f"plan {self.plan_name}{part} is already being run on {self.store.shown_url} by {holder['host']} "
            f"pid {holder['pid']} since {holder['since']:%Y-%m-%d %H:%M:%S} UTC{run}; wait for it to end "
            f"(its lease expires {self.ttl_s:g} s after its last heartbeat if it died)"
        )

    # -- heartbeat ------------------------------------------------------------------------

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                kept = leases.beat_lease(self.store, self.key, self.owner)
            except Exception:  # a database hiccup: beat again next time; the TTL is several beats long
                log.warning("run lease heartbeat failed", exc_info=True)
                continue
            if not kept:
                # Silent for longer than the TTL (suspended, cut off): another process may now run the plan.
                log.error("the run lease on plan %s was taken over by another process; stopping", self.plan_name)
                self.lost.set()
                if self.on_lost is not None:
                    self.on_lost()
                return
