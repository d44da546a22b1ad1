"""Provider Batch APIs: a model's requests as JSONL batches against the fake server's Files and Batches API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import yaml
from support.batch import N_ITEMS, PRICE, sums_responder, write_plan, write_suite
from support.fakeserver import BatchPlan
from support.postgres import on_both_databases
from support.servers import start_litellm, stop

from harness.analysis.summary import summarize_run
from harness.engine.batch import GENERIC_LIMITS, custom_id, endpoint_for, limits_for, read_result_lines, split_lines
from harness.engine.runs import execute_plan
from harness.errors import HarnessError
from harness.plan import load_plan, parse_plan
from harness.store import Store
from harness.store.batches import list_batches


@pytest.fixture(autouse=True)
def fast_polls(monkeypatch):
    monkeypatch.setenv("HARNESS_BATCH_POLL_S", "0.02")


def test_500_items_batched_score_like_online_at_the_discount(tmp_path, fake_server, db_url):
    fake_server.state.responder = sums_responder
    store = Store(db_url)
    online = execute_plan(load_plan(write_plan(tmp_path, fake_server, batch=None, name="online")), store)
    online_requests = fake_server.state.requests
    assert online_requests == N_ITEMS
    fake_server.state.successes.clear()

    plan = load_plan(write_plan(tmp_path, fake_server, batch={"max_requests": 200}, name="batched"))
    result = execute_plan(plan, store)
    assert result.status == "finished"
    assert fake_server.state.requests == online_requests  # not one online chat request more
    b = fake_server.state.batch
    assert b.created == 3 and b.lines_answered == N_ITEMS  # 200 + 200 + 100 lines
    assert len(fake_server.state.successes) == N_ITEMS and set(fake_server.state.successes.values()) == {1}

    on, off = summarize_run(store, online.run_id), summarize_run(store, result.run_id)
    cell_on, cell_off = on.cell("m", "sums"), off.cell("m", "sums")
    assert cell_off.n_samples == N_ITEMS and cell_off.errors == 0
    assert dict(zip(cell_off.item_ids, cell_off.scores)) == dict(zip(cell_on.item_ids, cell_on.scores))
    assert cell_off.mean == pytest.approx(1 - 72 / N_ITEMS)
    assert cell_off.prompt_tokens == cell_on.prompt_tokens and cell_off.completion_tokens == cell_on.completion_tokens
    assert cell_off.cost_usd == pytest.approx(cell_on.cost_usd / 2) and cell_on.cost_usd > 0
    # Latency means nothing for a batched answer: no percentiles, and the samples say batched.
    assert cell_off.latency_p50 != cell_off.latency_p50 and cell_off.ttft_p50 != cell_off.ttft_p50
    samples = list(store.samples(result.run_id))
    assert all(s.batched for s in samples) and not any(s.batched for s in store.samples(online.run_id))
    ops = {o.model: o for o in off.ops}["m"]
    assert ops.batched == N_ITEMS and ops.batch_saved_usd == pytest.approx(cell_on.cost_usd / 2)
    batches = list_batches(store, result.run_id)
    assert [x.state for x in batches] == ["completed"] * 3 and all(x.collected for x in batches)
    assert [x.n_requests for x in batches] == [200, 200, 100]
    # Each line is the online request body, with the sample key as custom_id.
    first = json.loads(next(iter(b.files.values()))["data"].splitlines()[0])
    assert first["custom_id"] == custom_id("sums", "sums/0", 0) and first["url"] == "/v1/chat/completions"
    assert first["body"]["model"] == "fake-batch" and first["body"]["max_tokens"] == 16


def test_expired_batch_with_missing_lines_is_retried_and_completes(tmp_path, fake_server, db_url):
    fake_server.state.responder = sums_responder
    fake_server.state.batch.plans = [BatchPlan(outcome="expired", missing=0.10)]
    store = Store(db_url)
    result = execute_plan(load_plan(write_plan(tmp_path, fake_server)), store)
    assert result.status == "finished"
    batches = list_batches(store, result.run_id)
    assert [x.state for x in batches] == ["expired", "completed"]
    first_answered = batches[0].n_completed
    assert 0.85 * N_ITEMS < first_answered < 0.95 * N_ITEMS  # about 10% left out
    assert batches[1].n_requests == N_ITEMS - first_answered and batches[1].round == 2
    samples = list(store.samples(result.run_id))
    assert len(samples) == N_ITEMS and not any(s.error for s in samples)
    assert {s.attempts for s in samples} == {1, 2}
    assert set(fake_server.state.successes.values()) == {1} and len(fake_server.state.successes) == N_ITEMS


def test_lines_that_keep_failing_become_errors_and_bad_requests_are_not_retried(tmp_path, fake_server, db_url):
    fake_server.state.responder = sums_responder
    fake_server.state.batch.plans = [BatchPlan(line_errors=0.2, bad_request=0.05)] + [BatchPlan(line_errors=1.0)] * 5
    store = Store(db_url)
    result = execute_plan(load_plan(write_plan(tmp_path, fake_server, batch={"max_rounds": 2})), store)
    assert result.status == "finished"
    samples = list(store.samples(result.run_id))
    failed = [s for s in samples if s.error]
    assert len(samples) == N_ITEMS and failed
    assert {s.error.split(":")[0] for s in failed} == {"HTTP 500", "HTTP 400"}
    assert all(s.attempts == 2 for s in failed if s.error.startswith("HTTP 500"))
    assert all(s.attempts == 1 for s in failed if s.error.startswith("HTTP 400"))
    assert not any(s.passed for s in failed)
    assert len(list_batches(store, result.run_id)) == 2
    summary = summarize_run(store, result.run_id)
    assert summary.cell("m", "sums").errors == len(failed)


def test_a_batch_that_fails_validation_is_submitted_again(tmp_path, fake_server, db_url):
    fake_server.state.responder = sums_responder
    fake_server.state.batch.plans = [BatchPlan(outcome="failed")]
    store = Store(db_url)
    result = execute_plan(load_plan(write_plan(tmp_path, fake_server)), store)
    assert result.status == "finished"
    first, second = list_batches(store, result.run_id)
    assert first.state == "failed" and "injected validation failure" in first.error and second.state == "completed"
    assert store.count_samples(result.run_id) == N_ITEMS and fake_server.state.batch.created == 2
    assert not any(s.error for s in store.samples(result.run_id))


def test_retry_online_and_cancelled_batch(tmp_path, fake_server, db_url):
    fake_server.state.responder = sums_responder
    fake_server.state.batch.plans = [BatchPlan(outcome="expired", missing=0.1)]
    store = Store(db_url)
    result = execute_plan(load_plan(write_plan(tmp_path, fake_server, batch={"retry": "online"})), store)
    assert result.status == "finished" and fake_server.state.batch.created == 1
    samples = list(store.samples(result.run_id))
    online = [s for s in samples if not s.batched]
    assert online and fake_server.state.requests == len(online) and not any(s.error for s in samples)

    fake_server.state.batch.plans = [BatchPlan(outcome="cancelled")]
    result = execute_plan(load_plan(write_plan(tmp_path, fake_server, name="c")), store)
    samples = list(store.samples(result.run_id))
    cancelled = [s for s in samples if s.error]
    assert len(samples) == N_ITEMS and len(cancelled) == N_ITEMS // 2
    assert all("cancelled" in s.error for s in cancelled)
    assert [x.state for x in list_batches(store, result.run_id)] == ["cancelled"]
    assert any("cancelled at the provider" in note for note in result.outcome.notes)


def test_max_cost_limits_what_is_submitted(tmp_path, fake_server, db_url):
    fake_server.state.responder = sums_responder
    store = Store(db_url)
    plan = load_plan(write_plan(tmp_path, fake_server))
    result = execute_plan(plan, store, max_cost=0.01)
    assert result.status == "stopped"
    submitted = fake_server.state.batch.lines_answered
    # Each line is priced at its estimate (prompt from its text, 16 completion tokens) at half price.
    assert 0 < submitted < N_ITEMS
    assert sum(s.cost_usd for s in store.samples(result.run_id)) <= 0.01


# -- kill -9 and resuming ------------------------------------------------------------------


def _harness(args, db_url, cwd, **extra_env):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(cwd), os.environ.get("PYTHONPATH")])),
        "HARNESS_BATCH_POLL_S": "0.02",
        **extra_env,
    }
    return [sys.executable, "-m", "harness", *args, "--db", db_url, "--no-report"], env


@pytest.mark.slow
def test_kill_during_polling_then_rerun_submits_nothing_twice(tmp_path, fake_server, db_url):
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    fake_server.state.responder = sums_responder
    fake_server.state.batch.hold = True  # batches stay in_progress: the run polls and waits
    plan = write_plan(tmp_path, fake_server, batch={"max_requests": 250})
    cmd, env = _harness(["run", str(plan)], db_url, repo)
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        b = fake_server.state.batch
        while time.monotonic() < deadline and (b.created < 2 or b.retrieves < 10):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        assert b.created == 2, "the run never submitted its batches"
    finally:
        proc.kill()  # SIGKILL: no cleanup of any kind
        proc.wait(10)
    store = Store(db_url)
    run_id = store.resolve_run(None)
    assert store.count_samples(run_id) == 0 and {x.state for x in list_batches(store, run_id)} == {"in_progress"}

    # --resume while the batches still run: says so, exits 0, and submits nothing.
    cmd, env = _harness(["run", str(plan), "--resume", run_id], db_url, repo)
    waiting = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert waiting.returncode == 0, waiting.stderr
    assert "in_progress" in waiting.stderr and "rerun" in waiting.stderr
    shown = subprocess.run(
        _harness(["runs", "show", run_id], db_url, repo)[0][:-1],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0 and shown.stdout.count("in_progress") == 2 and "batch_0001" in shown.stdout

    b.hold = False
    cmd, env = _harness(["run", str(plan)], db_url, repo)
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert b.created == 2 and fake_server.state.requests == 0  # no second submission, nothing online
    assert set(fake_server.state.successes.values()) == {1} and len(fake_server.state.successes) == N_ITEMS
    assert store.count_samples(run_id) == N_ITEMS and store.run(run_id).status == "finished"


@on_both_databases
def test_batch_created_but_its_id_lost_is_found_again(tmp_path, fake_server, db_url):
    """A crash between 'create batch' and storing its id: the rerun adopts the provider's batch."""
    from harness.store.batches import update_batch

    fake_server.state.responder = sums_responder
    fake_server.state.batch.hold = True
    store = Store(db_url)
    plan = load_plan(write_plan(tmp_path, fake_server))
    first = execute_plan(plan, store, batch_wait=0)
    assert first.status == "waiting" and first.outcome.waiting
    row = list_batches(store, first.run_id)[0]
    update_batch(store, row.id, batch_id=None, state="uploaded")  # as if killed right after create
    fake_server.state.batch.hold = False
    second = execute_plan(plan, store)
    assert second.run_id == first.run_id and second.status == "finished"
    assert fake_server.state.batch.created == 1 and store.count_samples(first.run_id) == N_ITEMS


# -- pieces ------------------------------------------------------------------------------------


def test_plan_batch_settings_and_prices():
    plan = parse_plan(
        {
            "models": {
                "q": {
                    "provider": "openai",
                    "base_url": "https://dashscope.aliyuncs.com/compatible-mode/v1",
                    "batch": True,
                    "price": {"input": 1, "output": 4, "batch_discount": 0.5},
                },
                "g": {
                    "provider": "openai",
                    "base_url": "https://open.bigmodel.cn/api/paas/v4",
                    "batch": {"max_requests": 10},
                    "price": {"input": 1, "output": 4, "batch_input": 0.3, "batch_output": 1},
                },
            },
            "suites": ["math-word"],
        }
    )
    q, g = plan.models
    assert q.price.cost(1_000_000, 1_000_000, batched=True) == pytest.approx(2.5)
    assert g.price.cost(1_000_000, 1_000_000, batched=True) == pytest.approx(1.3)
    assert q.price.cost(1_000_000, 0) == pytest.approx(1.0)
    assert limits_for(q).provider == "dashscope" and limits_for(q).max_requests == 50_000
    assert limits_for(g).max_requests == 10 and limits_for(g).max_bytes == 100_000_000
    assert endpoint_for(q) == "/v1/chat/completions" and endpoint_for(g) == "/v4/chat/completions"
    for bad, why in [
        ({"batch": {"retry": "never"}}, "retry"),
        ({"batch": {"max_requests": 0}}, "max_requests"),
        ({"batch": {"colour": 1}}, "unknown"),
        ({"price": {"batch_discount": 1.5}}, "batch_discount"),
    ]:
        with pytest.raises(HarnessError, match=why):
            parse_plan({"models": {"x": {"provider": "openai", "base_url": "http://h/v1", **bad}}, "suites": ["s"]})
    with pytest.raises(HarnessError, match="provider openai"):
        parse_plan({"models": {"x": {"provider": "llamacpp", "batch": True}}, "suites": ["s"]})
    # A plan without batch keys keeps its fingerprint (an unfinished run from before still resumes).
    plain = parse_plan({"models": {"x": {"provider": "openai", "base_url": "http://h/v1"}}, "suites": ["s"]})
    assert "batch" not in json.dumps(__import__("harness.plan", fromlist=["x"]).plan_to_dict(plain))


def test_split_lines_by_requests_and_bytes():
    from harness.engine.batch import ProviderLimits

    lines = [(i, b"x" * 10) for i in range(25)]
    assert [len(g) for g in split_lines(lines, ProviderLimits("t", 10, 10_000, ""))] == [10, 10, 5]
    assert [len(g) for g in split_lines(lines, ProviderLimits("t", 100, 35, ""))] == [3] * 8 + [1]
    assert GENERIC_LIMITS.max_requests == 50_000


def test_result_lines_are_read_like_online_answers():
    ok = {
        "custom_id": "a",
        "response": {
            "status_code": 200,
            "body": {
                "model": "m",
                "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1},
            },
        },
    }
    empty = {"custom_id": "b", "response": {"status_code": 200, "body": {"choices": []}}}
    limited = {"custom_id": "c", "response": {"status_code": 429, "body": {"error": {"message": "slow down"}}}}
    bad = {"custom_id": "d", "response": {"status_code": 400, "body": {"error": {"message": "too long"}}}}
    expired = {"custom_id": "e", "response": None, "error": {"code": "batch_expired", "message": "late"}}
    data = b"\n".join(json.dumps(x).encode() for x in (ok, empty, limited, bad, expired)) + b"\nnot json\n"
    r = read_result_lines(data)
    assert r["a"].completion.text == "hi" and r["a"].completion.prompt_tokens == 3
    assert r["b"].completion is None and r["b"].retryable and "malformed" in r["b"].error
    assert r["c"].retryable and r["c"].error == "HTTP 429: slow down"
    assert not r["d"].retryable and r["e"].retryable and "batch_expired" in r["e"].error
    assert set(r) == {"a", "b", "c", "d", "e"}


def test_dry_run_report_and_export_show_batching(tmp_path, fake_server, db_url):
    from click.testing import CliRunner

    from harness.cli import cli

    fake_server.state.responder = sums_responder
    plan = write_plan(tmp_path, fake_server, batch=None, price={**PRICE, "batch_discount": 0.5})
    runner = CliRunner()
    online = runner.invoke(cli, ["run", str(plan), "--dry-run", "--db", db_url])
    batched = runner.invoke(cli, ["run", str(plan), "--dry-run", "--batch", "--db", db_url])
    assert online.exit_code == 0 and batched.exit_code == 0, batched.output
    cost = {out: float(out.output.split("~$")[1].split()[0]) for out in (online, batched)}
    assert cost[batched] == pytest.approx(cost[online] / 2, rel=1e-3) and "batched: at least 1 batch" in batched.output
    assert fake_server.state.requests == 0 and fake_server.state.batch.created == 0

    out = tmp_path / "reports"
    result = runner.invoke(cli, ["run", str(plan), "--batch", "--db", db_url, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "samples through the provider's Batch API" in result.output and "saved" in result.output
    run_id = Store(db_url).resolve_run(None)
    page = (out / run_id / "index.html").read_text()
    assert '<th class="num">Batched</th>' in page and "500" in page
    sample_page = next((out / run_id).rglob("all-1.html")).read_text()
    assert "batched (no latency)" in sample_page
    exported = runner.invoke(cli, ["export", run_id, "--format", "jsonl", "--db", db_url])
    assert all(json.loads(line)["batched"] is True for line in exported.output.splitlines())


def test_check_alarms_on_a_changed_batch_price_not_on_moving_to_batches(tmp_path, fake_server, db_url):
    from harness.analysis.checks import check_run

    fake_server.state.responder = sums_responder
    store = Store(db_url)
    # Week 1 online, week 2 batched at the same list price: how it is paid changed, not the price.
    execute_plan(load_plan(write_plan(tmp_path, fake_server, batch=None, n=20)), store)
    week2 = execute_plan(load_plan(write_plan(tmp_path, fake_server, n=20)), store).run_id
    assert [a for a in check_run(store, week2).alarms if a.kind == "price"] == []
    # Week 3: the provider's batch discount went from 50% to 40%; the online price did not move.
    week3 = execute_plan(
        load_plan(write_plan(tmp_path, fake_server, n=20, price={**PRICE, "batch_discount": 0.4})), store
    ).run_id
    (alarm,) = [a for a in check_run(store, week3).alarms if a.kind == "price"]
    assert (
        alarm.model == "m" and alarm.detail == "batch price per million tokens in/out changed from $1/$4 to $1.2/$4.8"
    )
    # An explicit batch price is what is compared, too.
    week4 = execute_plan(
        load_plan(write_plan(tmp_path, fake_server, n=20, price={**PRICE, "batch_input": 1.2, "batch_output": 4.8})),
        store,
    ).run_id
    assert [a for a in check_run(store, week4).alarms if a.kind == "price"] == []


def test_batch_models_refuse_shards(tmp_path, fake_server, db_url):
    plan = load_plan(write_plan(tmp_path, fake_server))
    with pytest.raises(HarnessError, match="--shard"):
        execute_plan(plan, Store(db_url), shard=(0, 2))
    assert fake_server.state.batch.created == 0


# -- a real gateway in between ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.realserver
def test_batches_through_litellms_proxy(tmp_path, fake_server, db_url, monkeypatch):
    """harness -> LiteLLM proxy (files_settings, openai provider) -> the fake server's Batch API."""
    import secrets

    fake_server.state.responder = sums_responder
    fake_server.state.batch.plans = [BatchPlan(outcome="expired", missing=0.1)]
    key = "sk-" + secrets.token_hex(24)
    (tmp_path / "litellm.yaml").write_text(
        yaml.safe_dump(
            {
                "model_list": [
                    {
                        "model_name": "fake-batch",
                        "litellm_params": {
                            "model": "openai/fake-batch",
                            "api_base": fake_server.base_url,
                            "api_key": "upstream",
                        },
                    }
                ],
                "files_settings": [
                    {"custom_llm_provider": "openai", "api_base": fake_server.base_url, "api_key": "upstream"}
                ],
            }
        )
    )
    env = {
        "LITELLM_MASTER_KEY": key,
        "OPENAI_API_BASE": fake_server.base_url,
        "OPENAI_API_KEY": "upstream",
        "LITELLM_LOG": "ERROR",
    }
    proxy, proxy_url = start_litellm(tmp_path / "litellm.yaml", env)
    try:
        monkeypatch.setenv("LITELLM_TEST_KEY", key)
        plan = tmp_path / "via-litellm.yaml"
        plan.write_text(
            yaml.safe_dump(
                {
                    "name": "via-litellm",
                    "suites": [write_suite(tmp_path)],
                    "models": {
                        "m": {
                            "provider": "openai",
                            "base_url": proxy_url,
                            "api_key_env": "LITELLM_TEST_KEY",
                            "model": "fake-batch",
                            "max_attempts": 3,
                            "batch": True,
                            "price": {**PRICE, "batch_discount": 0.5},
                        }
                    },
                }
            )
        )
        store = Store(db_url)
        result = execute_plan(load_plan(plan), store)
    finally:
        stop(proxy)
    assert result.status == "finished"
    assert [b.state for b in list_batches(store, result.run_id)] == ["expired", "completed"]
    samples = list(store.samples(result.run_id))
    assert len(samples) == N_ITEMS and not any(s.error for s in samples) and all(s.batched for s in samples)
    assert set(fake_server.state.successes.values()) == {1} and fake_server.state.requests == 0
    assert summarize_run(store, result.run_id).cell("m", "sums").mean == pytest.approx(1 - 72 / N_ITEMS)
