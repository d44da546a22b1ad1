"""`harness load` against tests/support/loadserver.py, a server in its own process whose latency model and
record of what it did are known: measured times against the server's truth, error classes,
early stopping, open-loop pacing, capacity search, the JSON contract, storage, check and join."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from support.loadserver import ServerProcess

from harness.errors import HarnessError
from harness.load.generator import StageDriver
from harness.load.profile import Stage
from harness.load.requests import Body
from harness.load.stats import StageTarget, stage_stats
from harness.load.wire import Endpoint

TESTS = Path(__file__).resolve().parent
CONTRACT = (
    "concurrency",
    "rate",
    "requests",
    "ok",
    "errors",
    "achieved_concurrency",
    "achieved_rate",
    "requests_per_s",
    "output_tokens_per_s",
    "ttft_p50",
    "ttft_p90",
    "ttft_p99",
    "latency_p50",
    "latency_p90",
    "latency_p99",
    "itl_p50",
    "itl_p99",
)


@pytest.fixture
def start_server():
    servers = []

    def start(*args: str) -> ServerProcess:
        servers.append(ServerProcess(*args))
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


def _drive(url: str, stage: Stage, tokens: int = 8, seed: int = 0):
    async def main():
        endpoint = Endpoint(url + "/chat/completions")
        body = json.dumps(
            {
                "model": "m",
                "messages": [{"role": "user", "content": "hi there"}],
                "max_tokens": tokens,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
        ).encode()
        try:
            return await StageDriver(endpoint, [Body(body, 2, tokens)], {}, timeout=30, seed=seed).run(stage)
        finally:
            endpoint.close()

    return asyncio.run(main())


def test_measured_times_match_the_servers_own_record(start_server):
    server = start_server("--ttft", "0.1", "--tokens", "4", "--token-time", "0.1", "--jitter", "0.3", "--seed", "3")
    run = _drive(server.url, Stage(concurrency=4, requests=32, warmup=4), tokens=4)
    truth = sorted(server.truth(), key=lambda t: t["arrived"])
    measured = sorted(run.results, key=lambda r: r.sent_at)
    assert len(truth) == len(measured) == 36 and all(r.ok for r in measured)
    ttft_close = 0
    for r, t in zip(measured, truth):
        assert r.sent_at <= t["arrived"] + 1e-4  # the same request: sent just before it arrived
        assert abs(r.latency - (t["done"] - t["arrived"])) < 0.005  # the stream's end is dated exactly
        ttft_close += abs(r.ttft - (t["times"][0] - t["arrived"])) < 0.005
        assert r.output_tokens == 4 and r.input_tokens == 2
    assert ttft_close >= 0.9 * len(measured)  # a first token is misdated only if the client lags 0.1 s
    st = stage_stats(run.results, StageTarget(4, None))
    assert st["requests"] == 32 and st["achieved_concurrency"] > 3.5


def test_ramp_up_starts_the_users_one_after_another(start_server):
    # Each request takes longer than the ramp, so the first eight sent are the eight users' first.
    server = start_server("--ttft", "0.5", "--tokens", "2", "--token-time", "0.02")
    run = _drive(server.url, Stage(concurrency=8, requests=16, warmup=8, ramp_s=0.4), tokens=2)
    first = sorted(r.sent_at for r in run.results if not r.measured)
    assert len(first) == 8 and all(r.ok for r in run.results)
    # User i waits 0.4 * i / 8 s before its first request: the last starts 0.35 s after the first, less the
    # few milliseconds the first user's connection took to open (the clock starts when a request is sent).
    assert first[-1] - first[0] >= 0.3
    assert len(server.truth()) == 24


def test_a_stage_split_over_worker_processes_pools_every_request(start_server):
    from harness.load.workers import drive

    server = start_server("--ttft", "0.05", "--tokens", "4", "--token-time", "0.02")

    async def main():
        url = server.url + "/chat/completions"
        endpoint = Endpoint(url)
        body = json.dumps(
            {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "stream": True}
        ).encode()
        try:
            driver = StageDriver(endpoint, [Body(body, 1, 4)], {}, timeout=60)
            return await drive(driver, url, Stage(concurrency=6, requests=30, warmup=6), processes=2)
        finally:
            endpoint.close()

    run = asyncio.run(main())
    st = stage_stats(run.results, StageTarget(6, None))
    assert st["requests"] == 30 and st["ok"] == 30 and len(run.results) == 36 == len(server.truth())
    assert st["achieved_concurrency"] > 4  # both processes' users were in flight together


def test_error_classes_match_what_the_server_did(start_server):
    server = start_server(
        "--ttft",
        "0.01",
        "--tokens",
        "6",
        "--token-time",
        "0.005",
        "--p429",
        "0.2",
        "--p500",
        "0.1",
        "--cut",
        "0.15",
        "--seed",
        "5",
    )
    run = _drive(server.url, Stage(concurrency=4, requests=80, warmup=0), tokens=6)
    truth = server.truth()
    st = stage_stats(run.results, StageTarget(4, None))
    kinds = {
        "429": sum(t["status"] == 429 for t in truth),
        "5xx": sum(t["status"] == 500 for t in truth),
        "incomplete": sum(t["status"] == "cut" for t in truth),
    }
    assert all(kinds.values())
    assert st["errors_by_kind"] == kinds
    assert st["ok"] == sum(t["status"] == 200 for t in truth) == 80 - sum(kinds.values())
    assert all(r.latency is None and r.ttft is None for r in run.results if r.error)


def test_a_provider_refusing_everything_is_not_hammered(start_server):
    server = start_server("--p429", "1.0")
    run = _drive(server.url, Stage(concurrency=2, requests=500, warmup=0))
    assert run.stopped == "20 consecutive 429/5xx answers"
    assert len(server.truth()) <= 22  # the two users' requests in flight when it stopped


def test_open_loop_keeps_to_its_poisson_schedule(start_server):
    server = start_server("--ttft", "0.02", "--tokens", "4", "--token-time", "0.01")
    run = _drive(server.url, Stage(rate=40.0, requests=80, warmup=0), seed=9)
    rng = random.Random(9)
    gaps = [rng.expovariate(40.0) for _ in range(80)]
    scheduled_rate = 79 / sum(gaps[:79])
    st = stage_stats(run.results, StageTarget(None, 40.0), lags=run.lags)
    assert st["requests"] == 80 and st["ok"] == 80
    # On schedule, or (a starved machine) it says it fell behind: never a quiet lighter load.
    on_schedule = st["achieved_rate"] == pytest.approx(scheduled_rate, rel=0.1) and st["generator_lag_p99"] < 0.05
    assert on_schedule or st["generator_behind"], st


def _plan(tmp_path: Path, *urls: str, name: str = "loadplan", price: float = 1.0) -> Path:
    models = "\n".join(
        f"  m{i}: {{provider: openai, base_url: {u}, model: api-m{i}, price: {{input: {price}, output: {2 * price}}}}}"
        for i, u in enumerate(urls)
    )
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: {name}\nmodels:\n{models}\nsuites:\n  - math-word: {{limit: 6}}\n", encoding="utf-8")
    return path


def harness(*args):
    """The command in this process (click's runner): a HarnessError is what exits 2 with one line."""
    from click.testing import CliRunner

    from harness.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args])
    result.error_text = str(result.exception) if result.exception else ""
    return result


def harness_process(*args, timeout=300):
    env = {**os.environ, "PYTHONPATH": str(TESTS.parent) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def test_json_contract_and_storage(start_server, tmp_path):
    fast = start_server("--ttft", "0.02", "--tokens", "5", "--token-time", "0.01")
    slow = start_server("--ttft", "0.08", "--tokens", "5", "--token-time", "0.02")
    plan = _plan(tmp_path, fast.url, slow.url)
    db = f"sqlite:///{tmp_path / 'h.db'}"
    proc = harness("load", str(plan), "--db", db, "--concurrency", "1,4", "--requests", "12", "--json")
    assert proc.exit_code == 0, proc.stdout
    doc = json.loads(proc.stdout)
    assert [m["model"] for m in doc["models"]] == ["m0", "m1"]
    for m in doc["models"]:
        assert [s["concurrency"] for s in m["stages"]] == [1, 4]
        for s in m["stages"]:
            assert list(s)[: len(CONTRACT)] == list(CONTRACT)
            assert s["rate"] is None and s["requests"] == 12 and s["ok"] == 12 and s["errors"] == 0
            assert all(isinstance(s[k], float) for k in CONTRACT if k.endswith(("_p50", "_p90", "_p99")))
    fast_p50 = doc["models"][0]["stages"][0]["ttft_p50"]
    slow_p50 = doc["models"][1]["stages"][0]["ttft_p50"]
    assert 0.015 < fast_p50 < 0.05 and 0.07 < slow_p50 < 0.12
    from harness.store import Store
    from harness.store import loads as results

    store = Store(db)
    run = results.resolve_load_run(store, doc["load_run"])
    stored = results.stages(store, run.id)
    assert run.status == "finished" and len(stored) == 4
    assert len(results.stage_requests(store, stored[0].id)) == 12  # measured requests only, no warm-up
    store.close()


def test_dry_run_confirmation_and_bad_input(start_server, tmp_path):
    server = start_server()
    plan = _plan(tmp_path, server.url, price=50.0)
    dry = harness(
        "load",
        str(plan),
        "--concurrency",
        "1,8",
        "--requests",
        "10",
        "--dry-run",
        "--db",
        f"sqlite:///{tmp_path / 'h.db'}",
    )
    assert dry.exit_code == 0, dry.stdout
    assert "c=1" in dry.stdout and "c=8" in dry.stdout and "requests" in dry.stdout and "$" in dry.stdout
    assert server.truth() == []  # nothing was sent
    pricey = harness_process(
        "load", str(plan), "--requests", "200", "--confirm-above", "0.01", "--db", f"sqlite:///{tmp_path / 'h.db'}"
    )
    assert pricey.returncode == 2 and "--yes" in pricey.stderr and "Traceback" not in pricey.stderr
    assert len(pricey.stderr.strip().splitlines()) == 1
    for args, needle in (
        (["--slo", "ttft_p99 < soon"], "--slo"),
        (["--rate", "1", "--concurrency", "2"], "not both"),
        (["--search"], "--slo"),
        (["--model", "nope"], "nope"),
    ):
        proc = harness("load", str(plan), *args, "--db", f"sqlite:///{tmp_path / 'h.db'}")
        assert isinstance(proc.exception, HarnessError) and needle in proc.error_text, proc.error_text
    assert server.truth() == []


def test_capacity_search_finds_the_servers_capacity(start_server, tmp_path):
    # 6 requests are served at once; beyond that they queue, and latency doubles.
    server = start_server("--ttft", "0.05", "--tokens", "4", "--token-time", "0.05", "--capacity", "6")
    plan = _plan(tmp_path, server.url)
    proc = harness(
        "load",
        str(plan),
        "--db",
        f"sqlite:///{tmp_path / 'h.db'}",
        "--concurrency",
        "2",
        "--requests",
        "24",
        "--slo",
        "latency_p99<=0.3s,error_rate<=1%",
        "--search",
        "--json",
        "--max-concurrency",
        "32",
    )
    assert proc.exit_code == 0, proc.stdout
    model = json.loads(proc.stdout)["models"][0]
    assert model["capacity"]["concurrency"] == 6 and model["capacity"]["first_failure"] == 7
    levels = {s["concurrency"]: s["meets_slo"] for s in model["stages"]}
    assert levels[2] and levels[4] and levels[6] and not levels[7] and not levels[8]


def test_check_flags_a_slower_p99_and_recommend_and_report_join_the_load(start_server, tmp_path):
    fast = start_server("--ttft", "0.03", "--tokens", "4", "--token-time", "0.01", "--jitter", "0.2")
    slow = start_server("--ttft", "0.09", "--tokens", "4", "--token-time", "0.01", "--jitter", "0.2")
    db = f"sqlite:///{tmp_path / 'h.db'}"
    args = ("--db", db, "--concurrency", "2", "--requests", "40")
    assert harness("load", str(_plan(tmp_path, fast.url)), *args).exit_code == 0
    assert harness("load", str(_plan(tmp_path, fast.url)), *args).exit_code == 0
    same = harness("check", "--load", "--db", db, "--json", "--fail-on-regression")
    assert same.exit_code == 0, same.stdout
    assert json.loads(same.stdout)["ok"] is True
    assert harness("load", str(_plan(tmp_path, slow.url)), *args).exit_code == 0
    worse = harness("check", "--load", "--db", db, "--json", "--fail-on-regression")
    assert worse.exit_code == 1
    regressions = json.loads(worse.stdout)["regressions"]
    assert {r["metric"] for r in regressions} == {"latency_p99", "ttft_p99"}
    assert all(r["model"] == "m0" and r["concurrency"] == 2 and r["lo"] > 0 for r in regressions)

    # a quality run of the same plan, then the joined views
    run = harness("run", str(_plan(tmp_path, slow.url)), "--db", db, "--out", str(tmp_path / "site"))
    assert run.exit_code == 0, run.stdout
    rec = harness("recommend", "--db", db, "--at", "2", "--slo", "latency_p99<=5s", "--json")
    assert rec.exit_code == 0, rec.stdout
    doc = json.loads(rec.stdout)
    load = doc["suites"][0]["candidates"][0]["load"]
    assert load["meets_slo"] is True and load["latency_p99"] > 0.09 and doc["load"]["level"]["concurrency"] == 2
    text = harness("recommend", "--db", db, "--at", "2").stdout
    assert "at 2 concurrent users, p99" in text and "on math-word" in text
    report = harness("report", "--db", db, "--out", str(tmp_path / "site"))
    assert report.exit_code == 0, report.stdout
    page = Path(report.stdout.split("report: ")[-1].strip())
    html = page.read_text(encoding="utf-8")
    assert "Under load" in html and "at 2 concurrent users" in html
    load_pages = list((tmp_path / "site" / "load").glob("*.html"))
    assert len(load_pages) == 1 and "TTFT p50" in load_pages[0].read_text(encoding="utf-8")
