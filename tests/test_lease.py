"""The run lease and how runs end: one process per plan on a database, dead holders expire, no run left 'running'."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import insert, select
from support.cli import HARNESS
from support.fakeserver import echo_responder
from support.plans import echo_suite
from support.postgres import on_both_databases
from support.servers import wait_for

from harness.engine.lease import PlanLease
from harness.engine.runs import execute_plan
from harness.errors import HarnessError
from harness.plan import load_plan
from harness.store import LeaseRow, Store
from harness.store.tables import _now


def _plan(tmp_path: Path, server, n: int, concurrency: int = 4) -> tuple[Path, dict]:
    suites_dir = echo_suite(tmp_path, n)
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        yaml.safe_dump(
            {
                "name": "twice",
                "models": {
                    "m": {
                        "provider": "openai",
                        "base_url": server.base_url,
                        "model": "fake",
                        "concurrency": concurrency,
                    }
                },
                "suites": ["echo"],
            }
        )
    )
    env = {**os.environ, "HARNESS_SUITES_PATH": str(suites_dir)}
    env.pop("HARNESS_DB", None)
    return plan, env


def _query(db: Path, sql: str) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute(sql).fetchall()
    except sqlite3.OperationalError:  # tables not created yet
        return []
    finally:
        con.close()


def test_second_run_of_a_plan_is_refused_naming_the_holder(tmp_path, fake_server):
    fake_server.state.responder = echo_responder
    fake_server.state.faults.latency_s = 0.2
    n = 300  # 30 s at 2 at once, until the second process has been refused
    plan, env = _plan(tmp_path, fake_server, n, concurrency=2)
    db = tmp_path / "h.db"
    args = [str(HARNESS), "run", str(plan), "--db", f"sqlite:///{db}", "--no-report"]
    first = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for(lambda: _query(db, "SELECT COUNT(*) FROM samples") not in ([], [(0,)]), 120, "a first sample", 0.02, first)
    second = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert first.poll() is None, "the first run ended before the second started: nothing was tested"
    assert second.returncode == 2, second.stderr
    lines = [line for line in second.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in second.stderr
    assert f"pid {first.pid} since " in lines[0] and "already being run" in lines[0]
    assert f" by {socket.gethostname()} " in lines[0]
    fake_server.state.faults.latency_s = 0.0
    assert first.wait(timeout=300) == 0, first.stderr.read().decode()[-2000:]
    # Every sample requested exactly once, by the first process; one run; no lease left behind.
    assert fake_server.state.requests == n
    assert _query(db, "SELECT COUNT(*), COUNT(DISTINCT run_id) FROM samples") == [(n, 1)]
    assert _query(db, "SELECT status FROM runs") == [("finished",)]
    assert _query(db, "SELECT COUNT(*) FROM leases") == [(0,)]


def test_sigterm_marks_the_run_interrupted_and_gives_the_lease_back(tmp_path, fake_server):
    fake_server.state.responder = echo_responder
    fake_server.state.faults.latency_s = 0.05
    plan, env = _plan(tmp_path, fake_server, 300)
    db = tmp_path / "h.db"
    args = [str(HARNESS), "run", str(plan), "--db", f"sqlite:///{db}", "--no-report"]
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for(lambda: len(_query(db, "SELECT id FROM samples LIMIT 20")) == 20, 120, "20 samples", 0.02, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130
    assert _query(db, "SELECT status FROM runs") == [("interrupted",)]
    assert _query(db, "SELECT COUNT(*) FROM leases") == [(0,)]
    stored = _query(db, "SELECT COUNT(*) FROM samples")[0][0]
    rerun = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, timeout=300)
    assert rerun.returncode == 0 and b"resumed" in rerun.stdout, rerun.stderr.decode()[-2000:]
    assert _query(db, "SELECT COUNT(*), COUNT(DISTINCT run_id) FROM samples") == [(300, 1)]
    assert fake_server.state.requests <= 300 + 8  # at most the requests in flight at the signal, twice
    assert stored >= 20


def test_run_that_stops_on_an_error_is_marked_failed_and_latest_skips_empty_runs(tmp_path, fake_server, monkeypatch):
    fake_server.state.responder = echo_responder
    plan, env = _plan(tmp_path, fake_server, 5)
    db = f"sqlite:///{tmp_path / 'h.db'}"
    monkeypatch.setenv("HARNESS_SUITES_PATH", env["HARNESS_SUITES_PATH"])
    good = execute_plan(load_plan(plan), Store(db))
    assert good.status == "finished"
    # The plan's items file turns out not to be UTF-8 on its first line: the run stops with nothing stored.
    items = tmp_path / "suites" / "echo" / "items.jsonl"
    items.write_bytes(b'{"id": "q0", "answer": "caf\xe9"}\n' + items.read_bytes())
    bad = subprocess.run(
        [str(HARNESS), "run", str(plan), "--db", db, "--no-report", "--new"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr
    assert "items.jsonl:1: not valid UTF-8" in bad.stderr
    store = Store(db)
    runs = store.runs()
    assert [r.status for r in runs] == ["finished", "failed"] and store.count_samples(runs[1].id) == 0
    assert store.resolve_run(None) == good.run_id  # the latest run with samples, for every such command
    shown = subprocess.run([str(HARNESS), "runs", "show", "--db", db], env=env, capture_output=True, text=True)
    assert shown.returncode == 0 and f"run {good.run_id}" in shown.stdout


# -- the lease itself, on the store ------------------------------------------------------------


def _foreign(
    store: Store, fingerprint: str, *, shard: str = "*", age_s: float = 0.0, host: str = "elsewhere", pid: int = 4242
) -> None:
    """A lease row as another machine's process would have written it."""
    beat = _now() - timedelta(seconds=age_s)
    with store.engine.begin() as conn:
        conn.execute(
            insert(LeaseRow.__table__).values(
                key=f"{fingerprint} {shard}",
                plan_fingerprint=fingerprint,
                shard=shard,
                run_id="r1",
                owner="other",
                host=host,
                pid=pid,
                since=beat,
                heartbeat=beat,
            )
        )


def _holders(store: Store, fingerprint: str) -> list[tuple[str, str]]:
    table = LeaseRow.__table__
    with store.engine.connect() as conn:
        return sorted(
            conn.execute(select(table.c.shard, table.c.owner).where(table.c.plan_fingerprint == fingerprint)).all()
        )


def test_lease_rules(db_url):
    """Who may take a lease (run on SQLite here, and on PostgreSQL by test_store_postgres)."""
    store = Store(db_url)
    _foreign(store, "fp1", age_s=5)
    with pytest.raises(HarnessError, match=r"plan p is already being run on .* by elsewhere pid 4242 since .* run r1"):
        PlanLease(store, "fp1", "p").acquire()
    with pytest.raises(HarnessError, match="elsewhere pid 4242"):
        PlanLease(store, "fp1", "p", (0, 2)).acquire()  # a shard overlaps the whole plan

    _foreign(store, "fp2", age_s=3600)  # its holder stopped beating an hour ago
    with PlanLease(store, "fp2", "p") as lease:
        assert _holders(store, "fp2") == [("*", lease.owner)]

    _foreign(store, "fp3", host=socket.gethostname(), pid=_dead_pid())  # this host, killed
    with PlanLease(store, "fp3", "p"):
        pass

    with PlanLease(store, "fp4", "p", (0, 2)), PlanLease(store, "fp4", "p", (1, 2)):
        for other in ((0, 2), (0, 3), None):  # the same shard, another split, the whole plan
            with pytest.raises(HarnessError, match=r"already being run"):
                PlanLease(store, "fp4", "p", other).acquire()
    with PlanLease(store, "fp4", "p"):  # both released
        pass
    assert _holders(store, "fp4") == [] and _holders(store, "fp1") == [("*", "other")]


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@on_both_databases
def test_heartbeat_keeps_the_lease_and_a_lost_lease_stops_the_holder(db_url):
    store = Store(db_url)
    lost = []
    with PlanLease(store, "fp", "p", heartbeat_s=0.05, on_lost=lambda: lost.append(True)) as lease:
        table = LeaseRow.__table__

        def beat():
            with store.engine.connect() as conn:
                return conn.execute(select(table.c.heartbeat).where(table.c.owner == lease.owner)).scalar()

        first = beat()
        deadline = time.monotonic() + 30
        while beat() == first:
            assert time.monotonic() < deadline, "the heartbeat never advanced"
            time.sleep(0.02)
        with store.engine.begin() as conn:  # another process took the lease over
            conn.execute(table.update().values(owner="thief"))
        assert lease.lost.wait(30) and lost == [True]


def test_a_run_whose_lease_is_taken_over_stops_sending_and_ends_interrupted(tmp_path, fake_server, monkeypatch):
    import threading

    from harness.engine import lease as lease_module

    fake_server.state.responder = echo_responder
    fake_server.state.faults.latency_s = 0.05
    plan, env = _plan(tmp_path, fake_server, 400, concurrency=2)
    monkeypatch.setenv("HARNESS_SUITES_PATH", env["HARNESS_SUITES_PATH"])
    monkeypatch.setattr(lease_module, "HEARTBEAT_S", 0.05)
    store = Store(f"sqlite:///{tmp_path / 'h.db'}")

    def take_over():  # as a process would after this one was silent for longer than the TTL
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if _query(tmp_path / "h.db", "SELECT COUNT(*) FROM samples") not in ([], [(0,)]):
                with store.engine.begin() as conn:
                    conn.execute(LeaseRow.__table__.update().values(owner="taken-over"))
                return
            time.sleep(0.02)

    thief = threading.Thread(target=take_over)
    thief.start()
    result = execute_plan(load_plan(plan), store)
    thief.join()
    assert result.status == "interrupted" and store.run(result.run_id).status == "interrupted"
    assert store.count_samples(result.run_id) < 400
