"""Tool suites end to end against the fake server: calls sent and read back (whole and streamed), names
mapped, outcomes stored, export rows; and each tool-call quirk of real servers (tests/tool_fakes.py)."""

from __future__ import annotations

import io
import json

import pytest
import yaml
from support.tools import oracle, tool_answerer

from harness.engine.runs import execute_plan
from harness.errors import HarnessError
from harness.plan import load_plan
from harness.report.export import export_run
from harness.store import Store
from harness.suite import load_suite


def write_plan(tmp_path, server, suites, stream=False, **model):
    models = {
        "alpha": {
            "provider": "openai",
            "base_url": server.base_url,
            "model": "fake-alpha",
            "concurrency": 4,
            "stream": stream,
            "max_attempts": 2,
            "price": {"input": 1.0, "output": 2.0},
            **model,
        }
    }
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump({"name": "tools", "models": models, "suites": suites}))
    return load_plan(path)


@pytest.mark.parametrize("stream", [False, True])
def test_the_tool_calls_suite_scores_an_oracle_fully_whole_and_streamed(tmp_path, fake_server, db_url, stream):
    fake_server.state.tool_answer = tool_answerer(oracle())
    store = Store(db_url)
    result = execute_plan(write_plan(tmp_path, fake_server, ["tool-calls"], stream=stream), store)
    samples = list(store.samples(result.run_id))
    assert len(samples) == 50
    assert all(s.passed for s in samples), [(s.item_id, s.grade_reason) for s in samples if not s.passed]
    outcomes = {s.tool_outcome for s in samples}
    assert outcomes == {"call", "no_call"}
    weather = next(s for s in samples if s.tool_calls and s.tool_calls[0].name.startswith("crm."))
    assert weather.tool_calls[0].name == "crm.get_weather"  # mapped back to the suite's name
    assert all(s.prompt_tokens > 0 and s.completion_tokens > 0 for s in samples)
    out = io.StringIO()
    export_run(store, result.run_id, "jsonl", out)
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    parallel = next(r for r in rows if r["item_id"] == "tool-calls/029")
    assert [c["name"] for c in parallel["tool_calls"]] == ["get_order_status"] * 3
    assert parallel["tool_calls"][0]["arguments"] == {"order_id": "A1001"}
    assert parallel["tool_calls"][0]["raw_arguments"] == '{"order_id": "A1001"}'
    assert all(r["score"] in (0, 1) for r in rows)
    assert next(r for r in rows if r["item_id"] == "tool-calls/039")["tool_calls"] == []
    assert {r["tool_outcome"] for r in rows} == {"call", "no_call"} and all(r["transcript"] is None for r in rows)


def test_wrong_answers_fail_with_the_reason(tmp_path, fake_server, db_url):
    fake_server.state.tool_answer = tool_answerer(oracle(wrong={"What's the status of order A1001?"}))
    store = Store(db_url)
    result = execute_plan(write_plan(tmp_path, fake_server, [{"tool-calls": {"first": 3}}]), store)
    samples = {s.item_id: s for s in store.samples(result.run_id)}
    assert not samples["tool-calls/001"].passed and samples["tool-calls/001"].grade_reason == "no call"
    assert samples["tool-calls/001"].tool_outcome == "no_call"
    assert samples["tool-calls/002"].passed


def _one_item_run(tmp_path, server, db_url, quirk, stream, first=1):
    server.state.tool_answer = tool_answerer(oracle(), quirk)
    store = Store(db_url)
    result = execute_plan(write_plan(tmp_path, server, [{"tool-calls": {"first": first}}], stream=stream), store)
    return list(store.samples(result.run_id)), server


@pytest.mark.parametrize("stream", [False, True])
def test_quirk_finish_reason_tool_calls_with_an_empty_list_is_incomplete_and_retried(
    tmp_path, fake_server, db_url, stream
):
    samples, server = _one_item_run(tmp_path, fake_server, db_url, "empty_list", stream)
    (s,) = samples
    assert s.error and "finish_reason tool_calls with no call" in s.error and s.attempts == 2
    assert s.tool_outcome == "error" and not s.passed
    assert server.state.requests == 2


@pytest.mark.parametrize("stream", [False, True])
def test_quirk_empty_object_then_quotes_is_unparseable_arguments(tmp_path, fake_server, db_url, stream):
    (s,), _ = _one_item_run(tmp_path, fake_server, db_url, "empty_quoted", stream)
    assert s.tool_outcome == "bad_arguments" and not s.passed
    assert s.grade_reason.startswith("unparseable arguments of get_order_status")
    assert s.tool_calls[0].raw_arguments == '{}""' and s.tool_calls[0].arguments is None


@pytest.mark.parametrize("quirk, style", [("hermes", "hermes"), ("qwen_xml", "qwen_xml")])
def test_quirk_a_call_left_in_the_text_is_its_own_outcome(tmp_path, fake_server, db_url, quirk, style):
    (s,), _ = _one_item_run(tmp_path, fake_server, db_url, quirk, False)
    assert s.tool_outcome == "text_call" and not s.passed and s.tool_calls == ()
    assert s.grade_reason == f"call in text ({style}), not in tool_calls"


@pytest.mark.parametrize("quirk", ["hermes", "qwen_xml"])
def test_a_model_that_asks_for_text_calls_is_graded_on_them_and_still_counted(tmp_path, fake_server, db_url, quirk):
    fake_server.state.tool_answer = tool_answerer(oracle(), quirk)
    store = Store(db_url)
    plan = write_plan(tmp_path, fake_server, [{"tool-calls": {"first": 33}}], text_tool_calls=quirk)
    samples = {s.item_id: s for s in store.samples(execute_plan(plan, store).run_id)}
    assert all(s.passed for s in samples.values()), [
        (s.item_id, s.grade_reason) for s in samples.values() if not s.passed
    ]
    weather = samples["tool-calls/016"]  # crm.get_weather, written in the text as crm_get_weather
    assert weather.tool_outcome == "text_call" and weather.tool_calls[0].name == "crm.get_weather"
    assert samples["tool-calls/029"].tool_calls[2].arguments == {"order_id": "C3300"}


@pytest.mark.parametrize("stream", [False, True])
def test_quirk_kimi_style_ids_are_kept_and_calls_graded(tmp_path, fake_server, db_url, stream):
    samples, _ = _one_item_run(tmp_path, fake_server, db_url, "kimi_ids", stream, first=30)
    parallel = next(s for s in samples if s.item_id == "tool-calls/029")
    assert [c.id for c in parallel.tool_calls] == [f"functions.get_order_status:{i}" for i in range(3)]
    assert all(s.passed for s in samples)


def test_quirk_interleaved_parallel_deltas_and_llamacpp_repeating_id_and_name(tmp_path, fake_server, db_url):
    samples, _ = _one_item_run(tmp_path, fake_server, db_url, "llamacpp", True, first=30)
    parallel = next(s for s in samples if s.item_id == "tool-calls/029")
    assert [c.name for c in parallel.tool_calls] == ["get_order_status"] * 3  # never get_order_statusget_...
    assert [c.arguments["order_id"] for c in parallel.tool_calls] == ["A1001", "B2040", "C3300"]
    assert all(s.passed for s in samples)


def test_llamacpp_legacy_function_call_beside_tool_calls_is_ignored(tmp_path, fake_server, db_url):
    (s,), _ = _one_item_run(tmp_path, fake_server, db_url, "llamacpp", False)
    assert [c.name for c in s.tool_calls] == ["get_order_status"] and s.passed


def test_the_samples_provider_refuses_a_tool_suite(tmp_path, db_url):
    samples = tmp_path / "s.jsonl"
    samples.write_text(json.dumps({"task_id": "tool-calls/001", "completion": "x"}) + "\n")
    path = tmp_path / "plan.yaml"
    plan = {"models": {"replay": {"provider": "samples", "path": str(samples)}}, "suites": ["tool-calls"]}
    path.write_text(yaml.safe_dump(plan))
    with pytest.raises(HarnessError, match="provider samples cannot offer tools"):
        execute_plan(load_plan(path), Store(db_url))


def test_a_plan_with_bfcl_categories_tool_calls_and_agent_tasks_runs_end_to_end(tmp_path, fake_server, db_url):
    """BFCL through the loader with a model that answers each item's gold calls (any call for relevance)."""
    from support.datasets import shared_dataset
    from support.tools import gold_calls

    from harness.plan import SuiteRef

    data = shared_dataset("bfcl")
    categories = ["simple_python", "simple_java", "parallel_multiple", "live_irrelevance", "live_relevance"]
    options = {"categories": categories}
    gold = {}
    for item in load_suite(SuiteRef(name="bfcl", data=str(data), options=options)).items():
        text = item.fields["messages"][-1]["content"]
        calls = [(c.name, dict(c.arguments)) for c in gold_calls(item.reference)]
        if item.group == "simple_java":
            calls = [
                (n, {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in a.items()}) for n, a in calls
            ]
        if item.group == "live_relevance":
            calls = [(item.fields["functions"][0]["name"], {})]
        gold[text] = [(n.replace(".", "_"), a) for n, a in calls] or "No function fits."

    fake_server.state.tool_answer = tool_answerer(lambda p: gold.get(p["messages"][-1]["content"], "?"))
    suites = [
        {"bfcl": {"data": str(data), "options": options, "limit": 25}},
        {"tool-calls": {"first": 2}},
        {"agent-tasks": {"first": 2}},
    ]
    store = Store(db_url)
    result = execute_plan(write_plan(tmp_path, fake_server, suites), store)
    samples = [s for s in store.samples(result.run_id) if s.suite == "bfcl"]
    assert len(samples) == 25 and {s.item_group for s in samples} == set(categories)
    failed = [(s.item_id, s.grade_reason) for s in samples if not s.passed and s.item_group != "simple_java"]
    assert not failed
    ids = {s.item_id for s in samples}
    assert all(i.startswith(tuple(categories)) for i in ids)  # BFCL's own ids
    agent = [s for s in store.samples(result.run_id) if s.suite == "agent-tasks"]
    assert len(agent) == 2 and all(s.transcript_json and s.tool_outcome == "no_call" for s in agent)


def test_a_load_profile_refuses_a_tool_suite_in_one_line(tmp_path, fake_server):
    from harness.load.profile import Workload
    from harness.load.requests import build_bodies

    plan = write_plan(tmp_path, fake_server, [{"tool-calls": {"first": 2}}])
    with pytest.raises(HarnessError, match="suite 'tool-calls' offers tools"):
        build_bodies(plan, plan.models[0], Workload())


def test_a_tool_suite_through_the_batch_api_scores_like_online(tmp_path, fake_server, db_url, monkeypatch):
    """The same request body in a batch line: tools sent with wire names, calls mapped back, graded."""
    monkeypatch.setenv("HARNESS_BATCH_POLL_S", "0.02")
    fake_server.state.tool_answer = tool_answerer(oracle())
    store = Store(db_url)
    result = execute_plan(write_plan(tmp_path, fake_server, [{"tool-calls": {"first": 20}}], batch=True), store)
    samples = list(store.samples(result.run_id))
    assert len(samples) == 20 and all(s.batched for s in samples)
    assert all(s.passed for s in samples), [(s.item_id, s.grade_reason) for s in samples if not s.passed]
    assert next(s for s in samples if s.item_id == "tool-calls/016").tool_calls[0].name == "crm.get_weather"
    assert fake_server.state.batch.created >= 1


def test_a_wrong_text_tool_calls_style_is_one_line_naming_the_field(tmp_path, fake_server):
    with pytest.raises(HarnessError, match=r"models.alpha.text_tool_calls: must be 'hermes', 'qwen_xml' or 'json'"):
        write_plan(tmp_path, fake_server, ["tool-calls"], text_tool_calls="yaml")
