"""The engine at API scale against the loopback fake server: faults, kill -9 and resume, limits, cost.

Every test counts at the server, which sees each request the harness sends.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from support.cli import HARNESS
from support.fakeserver import echo_responder, prompt_key
from support.plans import echo_suite
from support.postgres import on_both_databases

from harness.engine.pacing import AdaptiveLimiter
from harness.engine.runs import execute_plan
from harness.engine.units import in_shard, plan_units, prepare_suites
from harness.plan import load_plan
from harness.providers.openai_api import OpenAIProvider
from harness.providers.openai_body import completion_from_json
from harness.store import Store
from harness.suite.prompt import PromptBuilder


@pytest.fixture
def echo(tmp_path, fake_server, monkeypatch):
    """(make_plan, server): a synthetic echo suite on the suite path and a plan writer."""
    fake_server.state.responder = echo_responder
    fake_server.reseed(1)
    suites_dir = tmp_path / "suites"
    monkeypatch.setenv("HARNESS_SUITES_PATH", str(suites_dir))

    def make_plan(n: int = 40, plan_name: str = "plan.yaml", suite: str = "echo", _plan=None, **model):
        echo_suite(tmp_path, n, suite)
        spec = {
            "provider": "openai",
            "base_url": fake_server.base_url,
            "model": "fake",
            "concurrency": 8,
            "max_attempts": 8,
            "price": {"input": 1.0, "output": 2.0},
            **model,
        }
        extra = _plan or {}
        path = tmp_path / plan_name
        path.write_text(yaml.safe_dump({"name": "faults", "models": {"m": spec}, "suites": [suite], **extra}))
        return load_plan(path)

    return make_plan, fake_server


def all_correct(store: Store, run_id: str, n: int) -> bool:
    samples = list(store.samples(run_id))
    return len(samples) == n and all(s.passed and not s.error for s in samples)


def test_5pct_500_and_5pct_429_every_sample_completes_and_grades(echo, db_url):
    make_plan, server = echo
    f = server.state.faults
    f.error_500, f.error_429, f.retry_after_s = 0.05, 0.05, 0.05
    server.reseed(7)
    plan = make_plan(200, concurrency=16)
    store = Store(db_url)
    result = execute_plan(plan, store)
    assert result.status == "finished"
    assert all_correct(store, result.run_id, 200)
    counts = server.state.status_counts
    assert counts["500"] > 0 and counts["429"] > 0 and counts["200"] == 200
    assert max(server.state.successes.values()) == 1  # never paid twice
    assert sum(s.attempts - 1 for s in store.samples(result.run_id)) == counts["500"] + counts["429"]


def test_retry_after_is_honoured(echo, db_url):
    make_plan, server = echo
    f = server.state.faults
    f.error_429, f.retry_after_s = 0.3, 0.4
    plan = make_plan(20, concurrency=4)
    store = Store(db_url)
    result = execute_plan(plan, store)
    assert all_correct(store, result.run_id, 20)
    last: dict[str, tuple[float, str]] = {}
    gaps = []
    for t, key, outcome in server.state.log:
        if key in last and last[key][1] == "429":
            gaps.append(t - last[key][0])
        last[key] = (t, outcome)
    assert gaps and min(gaps) >= 0.4


def test_timeouts_are_retried(echo, db_url):
    make_plan, server = echo
    server.state.faults.hang = 0.25
    plan = make_plan(24, timeout_s=0.5, max_attempts=10)
    store = Store(db_url)
    result = execute_plan(plan, store)
    assert server.state.status_counts["hang"] > 0
    assert all_correct(store, result.run_id, 24)


def test_a_timeout_that_persists_is_stored_as_the_samples_error(echo, db_url):
    make_plan, server = echo
    server.state.faults.hang = 1.0
    plan = make_plan(3, timeout_s=0.3, max_attempts=2)
    store = Store(db_url)
    result = execute_plan(plan, store)
    samples = list(store.samples(result.run_id))
    assert result.status == "finished" and len(samples) == 3
    assert all("timed out" in s.error and s.attempts == 2 and not s.passed for s in samples)


@pytest.mark.parametrize("fault", ["malformed", "drop"])  # 200 with a broken JSON body; a closed connection
def test_malformed_bodies_and_dropped_connections_are_retried(echo, db_url, fault):
    make_plan, server = echo
    setattr(server.state.faults, fault, 0.3)
    plan = make_plan(40)
    store = Store(db_url)
    result = execute_plan(plan, store)
    assert server.state.status_counts[fault] > 0
    assert all_correct(store, result.run_id, 40)


def test_concurrency_backs_off_on_sustained_429s(echo, db_url):
    make_plan, server = echo
    server.state.faults.max_concurrent = 3
    server.state.faults.retry_after_s = 0.05
    server.state.faults.latency_s = 0.05
    plan = make_plan(60, concurrency=16, max_attempts=20)
    store = Store(db_url)
    result = execute_plan(plan, store)
    assert all_correct(store, result.run_id, 60)
    limiter = result.outcome.per_model["m"].limiter
    assert limiter.cuts >= 1 and limiter.min_window <= 8


def test_adaptive_limiter_cuts_once_per_generation_and_recovers():
    asyncio.run(_cuts_once_and_recovers())


async def _cuts_once_and_recovers():
    lim = AdaptiveLimiter(16)
    tickets = [await lim.acquire() for _ in range(16)]
    for t in tickets[:8]:  # half of a generation answered 429: one cut, not eight
        lim.release(t, rate_limited=True, success=False)
    assert lim.limit == 8 and lim.cuts == 1
    for t in tickets[8:]:
        lim.release(t)
    for _ in range(400):  # successes grow the window back to the cap, about +1 per window
        lim.release(await lim.acquire())
    assert lim.limit == 16


def test_isolated_429s_do_not_shrink_the_window():
    asyncio.run(_isolated_429s())


async def _isolated_429s():
    lim = AdaptiveLimiter(32)
    for i in range(400):
        t = await lim.acquire()
        lim.release(t, rate_limited=(i % 20 == 0), success=(i % 20 != 0))  # 5% 429s
    assert lim.cuts == 0 and lim.limit == 32


def test_rpm_limit_spaces_requests(echo, db_url):
    make_plan, server = echo
    plan = make_plan(24, rpm=120)  # a burst of 20 (ten seconds' worth), then one every 0.5 s
    store = Store(db_url)
    execute_plan(plan, store)
    times = sorted(t for t, _, _ in server.state.log)
    assert len(times) == 24 and times[-1] - times[0] >= 1.5


def test_samples_per_item_carry_seed_plus_index(echo, db_url):
    make_plan, server = echo
    plan = make_plan(3, _plan={"samples": 3, "seed": 11, "generation": {"temperature": 0.7}})
    store = Store(db_url)
    result = execute_plan(plan, store)
    samples = list(store.samples(result.run_id))
    assert len(samples) == 9 and sorted({s.sample_index for s in samples}) == [0, 1, 2]
    seeds = sorted(b["seed"] for b in server.state.bodies)
    assert seeds == [11, 11, 11, 12, 12, 12, 13, 13, 13]
    assert all(b["temperature"] == 0.7 for b in server.state.bodies)


@on_both_databases
def test_response_cache_reuses_identical_requests_across_runs(echo, db_url):
    make_plan, server = echo
    plan = make_plan(10, _plan={"cache": True})
    store = Store(db_url)
    first = execute_plan(plan, store)
    second = execute_plan(plan, store, new=True)
    assert second.run_id != first.run_id and server.state.requests == 10
    assert all_correct(store, second.run_id, 10)


def test_max_cost_stops_cleanly_and_a_rerun_continues(echo, db_url):
    make_plan, server = echo
    server.state.faults.latency_s = 0.02
    plan = make_plan(60, concurrency=2, price={"input": 10000.0, "output": 10000.0})
    store = Store(db_url)
    stopped = execute_plan(plan, store, max_cost=0.5)
    assert stopped.status == "stopped" and stopped.outcome.stopped_for_cost
    stored = store.count_samples(stopped.run_id)
    assert 0 < stored < 60 and server.state.requests == stored  # in-flight requests finished and stored
    store_cost = sum(s.cost_usd for s in store.samples(stopped.run_id))
    assert store_cost >= 0.5
    resumed = execute_plan(plan, store)
    assert resumed.run_id == stopped.run_id and resumed.status == "finished"
    assert all_correct(store, stopped.run_id, 60) and server.state.requests == 60


def test_dry_run_sends_nothing(echo, tmp_path, db_url):
    from click.testing import CliRunner

    from harness.cli import cli

    make_plan, server = echo
    plan = make_plan(12)
    out = CliRunner().invoke(cli, ["run", plan.path, "--dry-run", "--db", db_url])
    assert out.exit_code == 0, out.output
    assert "Repeat the last line" in out.output and "12 requests" in out.output and "~$" in out.output
    assert server.state.requests == 0


def test_shards_split_a_run_and_the_last_one_finishes_it(echo, db_url):
    make_plan, server = echo
    plan = make_plan(30)
    store = Store(db_url)
    first = execute_plan(plan, store, shard=(0, 2))
    assert first.status == "running"
    second = execute_plan(plan, store, resume=first.run_id, shard=(1, 2))
    assert second.status == "finished" and all_correct(store, first.run_id, 30)
    assert server.state.requests == 30
    assert sum(in_shard("echo", f"q{i}", (0, 2)) for i in range(30)) == store.count_samples(first.run_id) - sum(
        in_shard("echo", f"q{i}", (1, 2)) for i in range(30)
    )


def test_units_are_built_lazily(echo):
    make_plan, _ = echo
    plan = make_plan(5000)
    suites = prepare_suites(plan)
    built = []
    builder = suites[0].builder
    original = builder.build
    builder.build = lambda item: built.append(item.id) or original(item)
    units = plan_units(plan, plan.models[0], suites, set())
    first = [next(units) for _ in range(3)]
    assert [u.item.id for u in first] == ["q0", "q1", "q2"] and len(built) == 3


def test_each_request_starts_before_the_next_unit_is_built(echo, db_url, monkeypatch):
    """The dispatcher lets a new request reach the client before it builds the next unit: asyncio
    runs ready tasks breadth-first, so otherwise a wave of 8 would all be built before any is sent."""
    make_plan, _ = echo
    plan = make_plan(8, concurrency=8)
    events = []
    original_build = PromptBuilder.build
    monkeypatch.setattr(
        PromptBuilder, "build", lambda self, item: events.append(("built", item.id)) or original_build(self, item)
    )
    original_complete = OpenAIProvider.complete

    async def complete(self, request):
        events.append(("sent", request.item.id))
        return await original_complete(self, request)

    monkeypatch.setattr(OpenAIProvider, "complete", complete)
    result = execute_plan(plan, Store(db_url))
    assert result.status == "finished"
    expected = [(what, f"q{i}") for i in range(8) for what in ("built", "sent")]
    assert events == expected


def test_completion_accounting_from_the_json_body():
    body = json.dumps(
        {
            "model": "served-7b",
            "choices": [{"message": {"content": "hi", "reasoning_content": "hmm"}, "finish_reason": "length"}],
            "usage": {
                "prompt_tokens": 12,
                "completion_tokens": 30,
                "completion_tokens_details": {"reasoning_tokens": 25},
            },
        }
    ).encode()
    c = completion_from_json(body, 0.5, ["hello"])
    assert (c.text, c.reasoning, c.finish_reason, c.served_model) == ("hi", "hmm", "length", "served-7b")
    assert (c.prompt_tokens, c.completion_tokens, c.reasoning_tokens, c.latency_s) == (12, 30, 25, 0.5)


def test_served_model_and_cost_are_recorded(echo, db_url):
    make_plan, server = echo
    server.state.served_model = lambda m: m + "-2025-01-01"
    plan = make_plan(4)
    store = Store(db_url)
    result = execute_plan(plan, store)
    for s in store.samples(result.run_id):
        assert s.served_model == "fake-2025-01-01"
        assert s.cost_usd == pytest.approx((s.prompt_tokens * 1.0 + s.completion_tokens * 2.0) / 1e6)


# -- kill -9 and resume, with the harness as a real subprocess ----------------------------------


def _stored_keys(db: Path) -> set[tuple[str, int]]:
    con = sqlite3.connect(db)
    try:
        return set(con.execute("SELECT item_id, sample_index FROM samples"))
    except sqlite3.OperationalError:  # tables not created yet
        return set()
    finally:
        con.close()


def _prompt_keys(db: Path, model: str) -> dict[str, str]:
    """item id -> the fake server's key for its prompt (as the harness sent it)."""
    con = sqlite3.connect(db)
    rows = con.execute("SELECT item_id, messages_json FROM prompts").fetchall()
    con.close()
    return {item: prompt_key(model, [{"role": r, "content": c} for r, c in json.loads(msgs)]) for item, msgs in rows}


@pytest.mark.slow
def test_kill_9_mid_run_then_rerun_requests_nothing_stored_twice(tmp_path, fake_server):
    fake_server.state.responder = echo_responder
    fake_server.state.faults.latency_s = 0.05
    n = 400
    suites_dir = echo_suite(tmp_path, n)
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        yaml.safe_dump(
            {
                "name": "kill",
                "models": {
                    "m": {"provider": "openai", "base_url": fake_server.base_url, "model": "fake", "concurrency": 8}
                },
                "suites": ["echo"],
            }
        )
    )
    db = tmp_path / "kill.db"
    env = {**os.environ, "HARNESS_SUITES_PATH": str(suites_dir)}
    env.pop("HARNESS_DB", None)
    args = [str(HARNESS), "run", str(plan), "--db", f"sqlite:///{db}", "--no-report"]
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(_stored_keys(db)) < 60:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no samples stored in time"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _stored_keys(db)
    assert 60 <= len(before) < n, "the kill came too late to test anything"
    rerun = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr.decode()[-2000:]
    assert b"resumed" in rerun.stdout
    after = _stored_keys(db)
    assert len(after) == n
    keys = _prompt_keys(db, "fake")
    successes = fake_server.state.successes
    for item_id, _ in before:
        assert successes[keys[item_id]] <= 1, f"{item_id} was stored before the kill and requested again"
    con = sqlite3.connect(db)
    passed, runs = con.execute("SELECT SUM(passed), COUNT(DISTINCT run_id) FROM samples").fetchone()
    status = con.execute("SELECT status FROM runs").fetchall()
    con.close()
    assert passed == n and runs == 1 and status == [("finished",)]


def test_heavy_libraries_are_not_imported_by_a_run(tmp_path, fake_server):
    """`harness run` against an API imports neither datasets, matplotlib, scipy nor llama_cpp before
    its requests are done (the summary's statistics are warmed on a side thread only once answers flow)."""
    fake_server.state.responder = echo_responder
    suites_dir = echo_suite(tmp_path, 5)
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        yaml.safe_dump({"models": {"m": {"provider": "openai", "base_url": fake_server.base_url}}, "suites": ["echo"]})
    )
    code = (
        "import sys\n"
        "from harness.plan import load_plan\nfrom harness.engine.runs import execute_plan\nfrom harness.store import Store\n"
        f"execute_plan(load_plan({str(plan)!r}), Store({'sqlite:///' + str(tmp_path / 'x.db')!r}))\n"
        "heavy = {'datasets', 'matplotlib', 'scipy', 'llama_cpp', 'numpy', 'rich'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    env = {**os.environ, "HARNESS_SUITES_PATH": str(suites_dir)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_progress_prints_plain_lines_off_a_terminal():
    import io
    from types import SimpleNamespace

    from harness.engine.progress import RunProgress

    out = io.StringIO()
    progress = RunProgress(stream=out, interval_s=3600)
    assert progress.plain  # a StringIO is not a terminal: no rich bars
    st = SimpleNamespace(total=2, done=0, errors=0, correct=0.0, cost=0.0)
    progress.start({"m": st})
    for i in range(2):
        st.done, st.correct, st.cost, st.errors = i + 1, 1.0, 0.5 * (i + 1), i
        progress.advance(SimpleNamespace(model="m"))
    progress.stop()
    lines = out.getvalue().splitlines()
    assert lines[0] == "requests to make: m: 2"
    assert lines[-1] == "m: 2/2  acc 50.0%  errors 1  $1.00"
    # A cheap model's cost is shown, not rounded to $0.0000.
    assert RunProgress._stats(SimpleNamespace(done=1, correct=1.0, errors=0, cost=4e-5)).endswith("$0.0000400")


def test_store_batch_skips_rows_stored_by_another_writer(db_url):
    from harness.store import SampleRecord

    store = Store(db_url)
    run_id = store.start_run(plan_name="p", plan_path="", plan_fingerprint="f", plan={})

    def record(item):
        return SampleRecord(
            run_id, "m", "s", "h", item, "", 0, "x", "", "stop", 1, 1, 0, 0.1, None, "m", "", 1, 0.0, 1.0, True, "", "x"
        )

    assert store.save_batch([record("a")], prompts={"h": [("a", "[]", "")]}, new_suites=frozenset({"h"}))
    # "a" again (as a second shard would): the batch falls back row by row and keeps "b".
    ok = store.save_batch(
        [record("a"), record("b")], prompts={"h": [("a", "[]", ""), ("b", "[]", "")]}, new_suites=frozenset({"h"})
    )
    assert not ok
    assert sorted(s.item_id for s in store.samples(run_id)) == ["a", "b"]
    assert sorted(store.prompts("h")) == ["a", "b"]


def test_a_template_error_mid_run_stops_sending_but_keeps_what_was_paid_for(echo, db_url, tmp_path):
    from harness.errors import HarnessError

    make_plan, server = echo
    plan = make_plan(30, concurrency=4)
    items = tmp_path / "suites" / "echo" / "items.jsonl"
    rows = items.read_text().splitlines()
    rows[20] = json.dumps({"id": "q20"})  # no 'answer': the template fails on this item only
    items.write_text("\n".join(rows) + "\n")
    store = Store(db_url)
    with pytest.raises(HarnessError, match="undefined"):
        execute_plan(plan, store)
    run_id = store.resolve_run(None)
    assert store.count_samples(run_id) == server.state.requests == 20  # every request sent was stored


def test_client_knows_its_platform_before_the_first_request(echo):
    """Else every request of the first wave hops to a thread to work it out (see _settle_platform)."""
    make_plan, _ = echo
    provider = OpenAIProvider(make_plan(1).models[0])
    try:
        assert all(getattr(c, "_platform", None) for c in provider.clients)
    finally:
        asyncio.run(provider.close())
