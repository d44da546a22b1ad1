"""What `harness load` and `harness check --load` conclude when the server is gone, refuses, or the load run dies."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from harness.cli import cli
from harness.store import Store
from harness.store import loads as results

TESTS = Path(__file__).resolve().parent


def write_plan(tmp_path, base_url, name="verdicts"):
    model = {"provider": "openai", "base_url": base_url, "model": "load-model", "stream": True}
    plan = {"name": name, "models": {"m": model}, "suites": [{"math-word": {"limit": 3}}]}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(plan))
    return path


def load(plan, db_url, *extra):
    return CliRunner().invoke(
        cli, ["load", str(plan), "--db", db_url, "--concurrency", "1", "--requests", "4", "--json", *extra]
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("status", [401, 404])
def test_load_on_a_refused_key_or_route_names_the_cause_and_exits_2(tmp_path, fake_server, db_url, status):
    fake_server.state.faults.status = status
    fake_server.state.faults.status_message = f"refused with {status} for this test"
    result = load(write_plan(tmp_path, fake_server.base_url), db_url)
    assert isinstance(result.exception, Exception) and type(result.exception).__name__ == "HarnessError"
    message = str(result.exception)
    assert f"HTTP {status}" in message and f"refused with {status} for this test" in message
    store = Store(db_url)
    (run,) = results.load_runs(store)
    assert run.status == "failed" and not results.stages(store, run.id)
    assert f"HTTP {status}" in results.models(store, run.id)[0].note
    store.close()


def test_load_on_a_refused_connection_exits_2_through_the_cli(tmp_path, db_url):
    plan = write_plan(tmp_path, f"http://127.0.0.1:{closed_port()}/v1")
    env = {**os.environ, "PYTHONPATH": str(TESTS.parent)}
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "load", str(plan), "--db", db_url, "--concurrency", "1", "--requests", "3"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "cannot connect to 127.0.0.1" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_check_load_fails_when_the_new_load_run_answered_nothing(tmp_path, fake_server, db_url):
    plan = write_plan(tmp_path, fake_server.base_url)
    first = load(plan, db_url)
    assert first.exit_code == 0, first.output
    fake_server.state.faults.status = 500  # unavailable under load: every answer a 500
    second = load(plan, db_url)
    assert second.exit_code == 0, second.output  # a measurement of an overloaded server, not a setup error
    check = CliRunner().invoke(cli, ["check", "--load", "--db", db_url, "--fail-on-regression", "--json"])
    assert check.exit_code == 1, check.output
    doc = json.loads(check.stdout)
    assert doc["ok"] is False and doc["run"]["run"] == json.loads(second.stdout)["load_run"]
    assert any("every one of 4 requests failed" in a for a in doc["alarms"])


def test_a_killed_load_run_ends_interrupted_and_is_never_the_default(tmp_path, fake_server, db_url):
    plan = write_plan(tmp_path, fake_server.base_url)
    assert load(plan, db_url).exit_code == 0
    store = Store(db_url)
    (finished,) = results.load_runs(store)
    fake_server.state.faults.latency_s = 30  # the next load run waits on its first answer until killed
    env = {**os.environ, "PYTHONPATH": str(TESTS.parent)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "load", str(plan), "--db", db_url, "--concurrency", "1", "--requests", "3"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        sent_before = fake_server.state.requests
        deadline = time.monotonic() + 60
        while fake_server.state.requests == sent_before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert fake_server.state.requests > sent_before, "the load run never sent a request"
        running = [r for r in results.load_runs(store) if r.id != finished.id]
        assert [r.status for r in running] == ["running"]  # alive: its lease is held
        assert results.resolve_load_run(store, None).id == finished.id  # a running one is not the default
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    runs = {r.id: r.status for r in results.load_runs(store)}
    assert runs[running[0].id] == "interrupted" and runs[finished.id] == "finished"
    assert results.resolve_load_run(store, None).id == finished.id
    store.close()


def test_load_on_a_tls_failure_names_it_and_exits_2(tmp_path, fake_server, db_url):
    https_url = fake_server.base_url.replace("http://", "https://")  # the server speaks plain HTTP
    result = load(write_plan(tmp_path, https_url), db_url)
    assert type(result.exception).__name__ == "HarnessError", result.output
    assert "(TLS)" in str(result.exception) and "every request" in str(result.exception)
    store = Store(db_url)
    assert [r.status for r in results.load_runs(store)] == ["failed"]
    store.close()
