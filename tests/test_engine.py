"""The engine against a real HTTP server on 127.0.0.1 through the real openai client."""

import sqlite3

import pytest
import yaml
from support.plans import oracle_responder
from support.postgres import on_both_databases

from harness.analysis.summary import summarize_run
from harness.engine.runs import execute_plan
from harness.errors import HarnessError
from harness.plan import load_plan
from harness.store import Store

SUITES = ["math-word", "zh-mcq", "en-reasoning", "code-functions"]


def write_plan(tmp_path, server, models=None, suites=None, **extra):
    models = models or {
        "alpha": {
            "provider": "openai",
            "base_url": server.base_url,
            "model": "fake-alpha",
            "concurrency": 8,
            "price": {"input": 1.0, "output": 2.0},
        }
    }
    plan = {"name": "t", "models": models, "suites": suites or [{s: {"first": 6}} for s in SUITES], **extra}
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    return load_plan(path)


@on_both_databases
def test_every_sample_graded_and_stored(tmp_path, fake_server, db_url):
    wrong = {"math-word/1", "zh-mcq/high_school_history/0"}
    fake_server.state.responder = oracle_responder(SUITES, wrong=wrong)
    plan = write_plan(tmp_path, fake_server)
    store = Store(db_url)
    result = execute_plan(plan, store)
    assert result.status == "finished"
    samples = list(store.samples(result.run_id))
    assert len(samples) == 6 * len(SUITES)
    failed = {s.item_id for s in samples if not s.passed}
    assert failed == {i for i in wrong if any(s.item_id == i for s in samples)} and "math-word/1" in failed
    s0 = samples[0]
    assert s0.served_model == "fake-alpha" and s0.prompt_tokens > 0 and s0.completion_tokens > 0
    assert s0.latency_s > 0 and s0.cost_usd == pytest.approx((s0.prompt_tokens + 2 * s0.completion_tokens) / 1e6)
    summary = summarize_run(store, result.run_id)
    math = summary.cell("alpha", "math-word")
    assert math.mean == pytest.approx(5 / 6) and math.lo < math.mean < math.hi
    assert fake_server.state.requests == 6 * len(SUITES)


def test_rerun_resumes_without_repeating_requests(tmp_path, fake_server, db_url):
    fake_server.state.responder = oracle_responder(SUITES)
    plan = write_plan(tmp_path, fake_server)
    store = Store(db_url)
    first = execute_plan(plan, store)
    n = fake_server.state.requests
    # Simulate a crash: forget some finished samples and mark the run unfinished.
    con = sqlite3.connect(db_url.removeprefix("sqlite:///"))
    con.execute("DELETE FROM samples WHERE suite = 'zh-mcq'")
    con.execute("UPDATE runs SET status = 'running'")
    con.commit()
    con.close()
    second = execute_plan(plan, store)
    assert second.run_id == first.run_id and second.resumed
    assert fake_server.state.requests == n + 6  # only the six lost zh-mcq samples
    assert max(fake_server.state.successes.values()) <= 2
    assert store.count_samples(first.run_id) == 6 * len(SUITES)
    third = execute_plan(plan, store)  # finished run: a new run, every request again
    assert third.run_id != first.run_id


def test_errors_are_stored_as_failed_samples_and_never_stop_the_run(tmp_path, fake_server, db_url):
    fake_server.state.responder = oracle_responder(SUITES)
    fake_server.state.faults.error_500 = 1.0  # every request fails
    plan = write_plan(
        tmp_path,
        fake_server,
        suites=[{"math-word": {"limit": 3}}],
        models={"down": {"provider": "openai", "base_url": fake_server.base_url, "max_attempts": 2}},
    )
    store = Store(db_url)
    result = execute_plan(plan, store)
    samples = list(store.samples(result.run_id))
    assert len(samples) == 3
    assert all(s.error.startswith("HTTP 500") and not s.passed and s.attempts == 2 for s in samples)
    assert summarize_run(store, result.run_id).cell("down", "math-word").error_rate == 1.0


def test_unreachable_endpoint_stops_the_model_and_fails_the_run(tmp_path, db_url):
    plan_path = tmp_path / "p.yaml"
    plan_path.write_text(
        yaml.safe_dump(
            {
                "models": {
                    "gone": {
                        "provider": "openai",
                        "base_url": "http://127.0.0.1:9/v1",
                        "max_attempts": 1,
                        "timeout_s": 2,
                        "concurrency": 1,
                    }
                },
                "suites": [{"math-word": {"limit": 6}}],
            }
        )
    )
    store = Store(db_url)
    result = execute_plan(load_plan(plan_path), store)
    # Nothing answered: no sample is stored (a rerun asks them all), the model's reason is, and
    # only the first few units were ever tried.
    assert list(store.samples(result.run_id)) == []
    assert result.status == "failed" and store.run(result.run_id).status == "failed"
    assert "connection" in store.model_failures(result.run_id)["gone"].lower()
    state = result.outcome.per_model["gone"]
    assert state.requests == 3 and not result.outcome.reached()


def test_missing_api_key_variable_is_a_clear_error(tmp_path, fake_server, db_url, monkeypatch):
    monkeypatch.delenv("HARNESS_TEST_KEY", raising=False)
    plan = write_plan(
        tmp_path,
        fake_server,
        models={"m": {"provider": "openai", "base_url": fake_server.base_url, "api_key_env": "HARNESS_TEST_KEY"}},
    )
    store = Store(db_url)
    with pytest.raises(HarnessError, match="HARNESS_TEST_KEY is not set"):
        execute_plan(plan, store)
    assert store.runs() == []  # nothing recorded: no empty 'running' run left behind


def test_api_key_is_sent_but_never_stored(tmp_path, fake_server, db_url, monkeypatch):
    secret = "sk-test-SECRET-9f8e7d"
    monkeypatch.setenv("HARNESS_TEST_KEY", secret)
    fake_server.state.responder = oracle_responder(["math-word"])
    plan = write_plan(
        tmp_path,
        fake_server,
        suites=[{"math-word": {"limit": 2}}],
        models={"m": {"provider": "openai", "base_url": fake_server.base_url, "api_key_env": "HARNESS_TEST_KEY"}},
    )
    execute_plan(plan, Store(db_url))
    assert fake_server.state.headers_seen[0]["authorization"] == f"Bearer {secret}"
    raw = (tmp_path / "harness.db").read_bytes()
    for extra in ("harness.db-wal",):
        if (tmp_path / extra).exists():
            raw += (tmp_path / extra).read_bytes()
    assert secret.encode() not in raw


def test_reasoning_is_stored_but_not_graded(tmp_path, fake_server, db_url):
    answers = oracle_responder(["math-word"])
    fake_server.state.responder = lambda m, msgs: "<think>maybe the answer is 999999</think>" + answers(m, msgs)
    plan = write_plan(tmp_path, fake_server, suites=[{"math-word": {"limit": 3}}])
    store = Store(db_url)
    result = execute_plan(plan, store)
    samples = list(store.samples(result.run_id))
    assert all(s.passed for s in samples)
    assert all("999999" in s.reasoning and "999999" not in s.completion for s in samples)


def test_streaming_measures_time_to_first_token(tmp_path, fake_server, db_url):
    fake_server.state.responder = oracle_responder(["en-reasoning"])
    plan = write_plan(
        tmp_path,
        fake_server,
        suites=[{"en-reasoning": {"limit": 3}}],
        models={"s": {"provider": "openai", "base_url": fake_server.base_url, "stream": True}},
    )
    store = Store(db_url)
    result = execute_plan(plan, store)
    samples = list(store.samples(result.run_id))
    assert all(s.passed and s.ttft_s is not None and 0 < s.ttft_s <= s.latency_s for s in samples)
    assert all(s.completion_tokens > 0 for s in samples)


def test_samples_provider_grades_external_completions(tmp_path, db_url):
    from harness.suite import load_suite
    from harness.suite.prompt import PromptBuilder

    suite = load_suite("code-functions")
    builder = PromptBuilder(suite)
    items = list(suite.items())[:4]
    import json

    rows = [
        {"task_id": items[0].id, "completion": builder.reference_response(items[0])},
        {"task_id": items[1].id, "completion": "    return None\n"},
        {"task_id": items[2].id, "completion": builder.reference_response(items[2])},
    ]
    path = tmp_path / "samples.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    plan_path = tmp_path / "p.yaml"
    plan_path.write_text(
        yaml.safe_dump(
            {
                "models": {"ext": {"provider": "samples", "path": str(path)}},
                "suites": [{"code-functions": {"first": 4}}],
            }
        )
    )
    store = Store(db_url)
    result = execute_plan(load_plan(plan_path), store)
    by_id = {s.item_id: s for s in store.samples(result.run_id)}
    assert by_id[items[0].id].passed and by_id[items[2].id].passed
    assert not by_id[items[1].id].passed and not by_id[items[1].id].error
    assert "no completion" in by_id[items[3].id].error


def test_several_models_run_concurrently_and_are_kept_apart(tmp_path, fake_server, db_url):
    good = oracle_responder(["zh-mcq"])
    fake_server.state.responder = lambda model, msgs: good(model, msgs) if model == "good" else "答案：Z"
    models = {
        name: {"provider": "openai", "base_url": fake_server.base_url, "model": name, "concurrency": 4}
        for name in ("good", "bad")
    }
    plan = write_plan(tmp_path, fake_server, models=models, suites=[{"zh-mcq": {"limit": 10}}])
    store = Store(db_url)
    result = execute_plan(plan, store)
    summary = summarize_run(store, result.run_id)
    assert summary.cell("good", "zh-mcq").mean == 1.0
    assert summary.cell("bad", "zh-mcq").mean == 0.0


def test_an_answer_with_a_lone_surrogate_is_stored_not_fatal(tmp_path, fake_server, db_url):
    """JSON may carry "\\ud800" alone (an emoji cut in half); UTF-8 cannot encode it, so no driver can
    store it as is: it becomes U+FFFD rather than ending the run after its requests were paid for."""
    fake_server.state.responder = lambda model, messages: "half an emoji \ud83d here"
    plan = write_plan(tmp_path, fake_server, suites=[{"math-word": {"limit": 2}}])
    store = Store(db_url)
    result = execute_plan(plan, store)
    assert result.status == "finished"
    assert [s.completion for s in store.samples(result.run_id)] == ["half an emoji \ufffd here"] * 2


def test_a_model_name_with_a_lone_surrogate_is_a_clear_error_before_the_run(db_url):
    store = Store(db_url)
    with pytest.raises(HarnessError, match="lone UTF-16 surrogate"):
        store.check_names(models=["half \udc00 name"])
    assert store.runs() == []
