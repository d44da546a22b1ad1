"""The Ray executor on a real local Ray instance: shards on 4 workers, cluster-wide limits, a killed worker, secrets.

Ray starts once for the module (4 logical CPUs on this 2-core machine); the fake server runs in this
process and counts what the workers send; the shared store is the throwaway PostgreSQL of conftest
(SQLite where the tests say so). Variables the tests set after Ray started (HARNESS_SUITES_PATH,
API keys) reach the workers only through the executor, as on a real cluster.
"""

from __future__ import annotations

import re
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]' (it is in the test extra)")
pytestmark = [pytest.mark.ray, pytest.mark.slow]  # a local Ray instance for the module, minutes of waiting

from support.cli import assert_clean_error, harness, invoke  # noqa: E402
from support.fakeserver import echo_responder  # noqa: E402
from support.plans import echo_suite, oracle_responder  # noqa: E402
from support.servers import wait_for  # noqa: E402

from harness.engine.executors import RayOptions  # noqa: E402
from harness.engine.runs import execute_plan  # noqa: E402
from harness.errors import HarnessError  # noqa: E402
from harness.plan import load_plan  # noqa: E402
from harness.store import Store  # noqa: E402

WORKERS = 4
ITEM = re.compile(r"Item (q\d+)\.")


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance for the module; yields its session folder (logs and all)."""
    ray.init(num_cpus=WORKERS, include_dashboard=False, object_store_memory=128 << 20, logging_level="warning")
    # The sandbox test's remote function lives here, and workers cannot import a test module.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        yield Path(ray._private.worker._global_node.get_session_dir_path())
    finally:
        ray.shutdown()


@pytest.fixture
def echo_plan(tmp_path, fake_server, monkeypatch, ray_local):
    """make_plan(n, **model): a plan of one model on an echo suite of n items; answers counted per item."""
    answered: Counter = Counter()
    lock = threading.Lock()

    def respond(model, messages):
        with lock:
            answered[ITEM.search(messages[-1]["content"]).group(1)] += 1
        return echo_responder(model, messages)

    fake_server.state.responder = respond
    monkeypatch.setenv("HARNESS_SUITES_PATH", str(tmp_path / "suites"))

    def make_plan(n: int, **model):
        echo_suite(tmp_path, n)
        spec = {
            "provider": "openai",
            "base_url": fake_server.base_url,
            "model": "fake",
            "concurrency": 16,
            "max_attempts": 8,
            "price": {"input": 1.0, "output": 2.0},
            **model,
        }
        path = tmp_path / "plan.yaml"
        path.write_text(yaml.safe_dump({"name": "ray", "models": {"m": spec}, "suites": ["echo"]}))
        return load_plan(path)

    return make_plan, fake_server, answered


def stored_items(store: Store, run_id: str) -> Counter:
    return Counter(s.item_id for s in store.samples(run_id))


def test_2000_items_on_4_workers_store_every_sample_once(echo_plan, pg_url):
    make_plan, server, answered = echo_plan
    server.state.faults.latency_s = 0.01
    store = Store(pg_url)
    result = execute_plan(make_plan(2000), store, ray=RayOptions(workers=WORKERS))
    assert result.status == "finished" and result.outcome.shards == WORKERS and result.outcome.restarts == 0
    stored = stored_items(store, result.run_id)
    assert len(stored) == 2000 and set(stored.values()) == {1}
    assert all(s.passed and not s.error for s in store.samples(result.run_id))
    assert server.state.requests == 2000 and set(answered.values()) == {1} and len(answered) == 2000
    assert result.outcome.per_model["m"].done == 2000 and result.outcome.requested == 2000
    assert result.outcome.gates["m"]["granted"] == 2000


def test_concurrency_is_a_total_across_workers(echo_plan, pg_url):
    make_plan, server, _ = echo_plan
    server.state.faults.latency_s = 0.15  # long enough for every worker to want all 16 slots at once
    store = Store(pg_url)
    result = execute_plan(make_plan(400, concurrency=16), store, ray=RayOptions(workers=WORKERS))
    assert result.status == "finished" and store.count_samples(result.run_id) == 400
    # 4 workers of 16 each would reach 64; the shared window holds them to 16 together, and they use it.
    assert 12 <= server.state.max_in_flight <= 16, server.state.max_in_flight
    assert result.outcome.gates["m"]["peak_in_flight"] <= 16


def test_429s_seen_by_some_workers_cut_the_window_of_all(echo_plan, pg_url):
    make_plan, server, answered = echo_plan
    f = server.state.faults
    # The server takes 6 at once; the plan asks 32. Each answer takes 0.3 s, so even workers slowed
    # by a busy machine have far more than 6 requests out at once and 429s are no rare event (at
    # 0.05 s, starved workers once kept only 12 in flight: 9 429s in 309, rightly no cut).
    f.latency_s, f.max_concurrent, f.retry_after_s = 0.3, 6, 0.2
    store = Store(pg_url)
    result = execute_plan(make_plan(120, concurrency=32), store, ray=RayOptions(workers=2))
    assert result.status == "finished" and store.count_samples(result.run_id) == 120
    gate = result.outcome.gates["m"]
    assert gate["cuts"] >= 1 and gate["window"] < 32, (gate, dict(server.state.status_counts))
    assert set(answered.values()) == {1}  # a 429 is retried, never answered twice


def test_rpm_holds_across_workers_over_a_minute(echo_plan, pg_url):
    """600 rpm: a 10-second burst (100), then 10 a second from all 4 workers together, for a minute."""
    make_plan, server, _ = echo_plan
    store = Store(pg_url)
    rpm, burst, steady = 600, 100, 600
    result = execute_plan(make_plan(burst + steady, rpm=rpm, concurrency=16), store, ray=RayOptions(workers=WORKERS))
    assert result.status == "finished" and store.count_samples(result.run_id) == burst + steady
    times = sorted(t for t, _, outcome in server.state.log if outcome == "200")
    assert len(times) == burst + steady
    # A token bucket that starts full lets through `burst` at once and `rpm` a minute after, however
    # long the burst itself took to serve (on a busy machine the bucket refills meanwhile):
    # past the burst, the requests over the whole span came at the limit.
    span = times[-1] - times[0]
    rate = (len(times) - burst) / span * 60
    assert abs(rate - rpm) / rpm < 0.05, f"{rate:.0f} requests per minute past the burst, over {span:.1f} s"
    # No 60-second window holds more than a minute's allowance plus the bucket's burst.
    assert max(sum(1 for u in times if t <= u < t + 60) for t in times) <= rpm + burst + 1


def test_a_killed_worker_is_replaced_and_nothing_stored_is_requested_again(echo_plan, pg_url):
    make_plan, server, answered = echo_plan
    server.state.faults.latency_s = 0.05
    store = Store(pg_url)
    plan = make_plan(1000)
    results, errors = [], []

    def drive():
        try:
            results.append(execute_plan(plan, store, ray=RayOptions(workers=WORKERS)))
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    driver = threading.Thread(target=drive)
    driver.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (store.runs() and store.count_samples(store.runs()[0].id) >= 250):
        time.sleep(0.1)
    run_id = store.runs()[0].id
    stored_before = {key[2] for key in store.done_keys(run_id)}
    victim = ray.get_actor(f"harness-{run_id}-shard-1-0", namespace="harness")
    ray.kill(victim)
    driver.join(180)
    assert not driver.is_alive() and not errors, errors
    result = results[0]
    assert result.status == "finished" and result.outcome.restarts == 1
    stored = stored_items(store, run_id)
    assert len(stored) == 1000 and set(stored.values()) == {1}
    assert 250 <= len(stored_before) < 1000
    assert all(answered[item] == 1 for item in stored_before)  # nothing stored was requested again
    again = [item for item, n in answered.items() if n > 1]
    assert len(again) <= 16 + 64, again  # at most what was in flight or not yet committed when it died


def test_secrets_reach_the_workers_but_not_rays_logs(echo_plan, pg_url, ray_local, monkeypatch):
    make_plan, server, _ = echo_plan
    key, password = "sk-" + secrets.token_hex(16), "pw-" + secrets.token_hex(12)
    monkeypatch.setenv("RAY_TEST_API_KEY", key)  # set after Ray started: its workers cannot inherit it
    url = pg_url.replace("postgresql+psycopg://postgres@", f"postgresql+psycopg://postgres:{password}@")
    store = Store(url)  # trust authentication: the password is carried, never checked
    result = execute_plan(make_plan(40, api_key_env="RAY_TEST_API_KEY"), store, ray=RayOptions(workers=2))
    assert result.status == "finished" and store.count_samples(result.run_id) == 40
    assert {h.get("authorization") for h in server.state.headers_seen} == {f"Bearer {key}"}

    marker = "marker-" + secrets.token_hex(8)
    ray.get(ray.remote(lambda: print(marker, flush=True)).remote())
    wait_for(lambda: _grep(ray_local, marker), 20, "the log grep to see a worker's print (else it is blind)", 0.5)
    assert _grep(ray_local, key) == [] and _grep(ray_local, password) == []


def _grep(folder: Path, needle: str) -> list[str]:
    found = subprocess.run(["grep", "-rlaF", needle, str(folder)], capture_output=True, text=True)
    return found.stdout.split()


def test_code_is_graded_in_the_sandbox_on_the_workers(tmp_path, fake_server, pg_url, ray_local):
    fake_server.state.responder = oracle_responder(["code-functions"], wrong={"code-functions/0"})
    path = tmp_path / "plan.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "ray-code",
                "suites": ["code-functions"],
                "models": {
                    "m": {"provider": "openai", "base_url": fake_server.base_url, "model": "fake", "concurrency": 8}
                },
            }
        )
    )
    store = Store(pg_url)
    result = execute_plan(load_plan(path), store, ray=RayOptions(workers=2))
    samples = list(store.samples(result.run_id))
    assert result.status == "finished" and samples and not any(s.error for s in samples)
    assert {s.item_id for s in samples if not s.passed} == {"code-functions/0"}


def sandbox_inside_a_worker(secret: str, hunt: str, port: int) -> dict:
    """Runs in a Ray worker holding an API key, as a shard does: the sandbox's verdicts on attacks."""
    import os

    from harness.graders.sandbox import Sandbox

    os.environ["OPENAI_API_KEY"] = secret
    connect = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('CONNECTED')"
    with Sandbox(workers=1) as box:
        return {
            "hunt": box.run(hunt, "pass").output,
            "pids": box.run(
                "import os\nprint(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))", "pass"
            ).output.strip(),
            "network": box.run(connect, "pass").output,
            "write": box.run("open('/etc/harness-was-here', 'w')", "pass").passed,
            "good": box.run("def add(a, b):\n    return a + b", "assert add(2, 3) == 5").passed,
            "key_in_worker": os.environ["OPENAI_API_KEY"] == secret,
        }


def test_the_sandbox_keeps_its_isolation_inside_a_ray_worker(ray_local):
    from support.sandbox import secret_hunt

    secret = "sk-" + secrets.token_hex(16)
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        checks = ray.get(
            ray.remote(sandbox_inside_a_worker).remote(secret, secret_hunt(secret), listener.getsockname()[1]),
            timeout=120,
        )
    finally:
        listener.close()
    if checks["pids"] != "[1]":
        pytest.skip(f"the sandbox has only weak isolation here (sees pids {checks['pids']})")
    assert checks["key_in_worker"] and checks["good"]
    assert "found=[]" in checks["hunt"] and secret not in checks["hunt"]
    assert "CONNECTED" not in checks["network"] and not checks["write"]


def test_sqlite_is_refused_for_a_cluster_before_anything_is_stored(tmp_path):
    from harness.engine.ray_executor import connect

    db = tmp_path / "h.db"
    with pytest.raises(HarnessError, match="SQLite serves only a Ray instance on this machine"):
        connect("ray://127.0.0.1:1", 4, f"sqlite:///{db}")
    assert not db.exists()


def test_cli_runs_on_ray_with_one_progress_and_the_local_summary(echo_plan, tmp_path):
    make_plan, server, answered = echo_plan
    plan = make_plan(60)
    db = f"sqlite:///{tmp_path / 'h.db'}"  # SQLite: fine for a Ray instance on this machine
    result = invoke("run", plan.path, "--executor", "ray", "--workers", 2, "--db", db, "--no-report")
    assert "m: 60/60" in result.output  # the plain progress line adds up both workers
    assert re.search(r"run \S+ finished in", result.output)
    assert "echo" in result.output and "100.0" in result.output  # the summary table: every answer right
    assert len(answered) == 60 and set(answered.values()) == {1}


def test_cli_refuses_what_a_cluster_cannot_do_in_one_line(tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        yaml.safe_dump(
            {
                "name": "p",
                "suites": ["math-word"],
                "models": {"m": {"provider": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "fake"}},
            }
        )
    )
    db = tmp_path / "h.db"
    # Refused before Ray is contacted: a Ray client's driver is not on the cluster, nor is its file.
    assert_clean_error(
        harness(
            "run", plan, "--executor", "ray", "--address", "ray://127.0.0.1:1", "--db", f"sqlite:///{db}", "--no-report"
        ),
        "SQLite serves only a Ray instance",
    )
    assert_clean_error(
        harness("run", plan, "--executor", "ray", "--shard", "0/2", "--db", f"sqlite:///{db}"),
        "--shard and --executor ray exclude each other",
    )
    assert_clean_error(harness("run", plan, "--workers", "2", "--db", f"sqlite:///{db}"), "--executor ray")
    # Ray records the driver's command line in its job table: a password belongs in $HARNESS_DB.
    with_password = "postgresql+psycopg://u:hunter2-secret@127.0.0.1:9/h"
    refused = harness("run", plan, "--executor", "ray", "--db", with_password)
    assert_clean_error(refused, "export HARNESS_DB=URL")
    assert "hunter2-secret" not in refused.stderr
    assert not db.exists() or Store(f"sqlite:///{db}").runs() == []


def test_a_workers_own_error_stops_the_run_with_one_line(echo_plan, pg_url, monkeypatch):
    """A node whose suite differs from the driver's (here: edited after the driver prepared it) refuses."""
    from harness.engine import ray_executor

    make_plan, _, _ = echo_plan
    plan = make_plan(20)
    template = Path(plan.path).parent / "suites" / "echo" / "prompt.j2"
    original = ray_executor.RayExecutor.run

    def run_after_edit(self):
        template.write_text("Changed {{ id }}.\n{{ answer }}\n")
        return original(self)

    monkeypatch.setattr(ray_executor.RayExecutor, "run", run_after_edit)
    with pytest.raises(HarnessError, match="has content hash .* install the same harness"):
        execute_plan(plan, Store(pg_url), ray=RayOptions(workers=2))


def test_max_cost_is_a_total_across_workers(echo_plan, pg_url):
    make_plan, server, _ = echo_plan
    server.state.faults.latency_s = 0.05
    store = Store(pg_url)
    plan = make_plan(600, concurrency=8)
    per_sample = plan.models[0].price.cost(8, 1)  # the fake server's token counts for an echo prompt
    result = execute_plan(plan, store, max_cost=150 * per_sample, ray=RayOptions(workers=2))
    stored = store.count_samples(result.run_id)
    assert result.status == "stopped" and result.outcome.stopped_for_cost
    assert 150 <= stored < 600  # spent at least the budget, then stopped: not 2 budgets, not the whole run
