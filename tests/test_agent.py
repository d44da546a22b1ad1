"""Agent loops against the fake server: model -> calls -> the orders backend -> model, scripted user turns,
the turn limit and token budget, goal-state grading, the transcript stored, pass^k; and the environment."""

from __future__ import annotations

import json

import pytest
import yaml
from support.tools import scripted_agent, tool_answerer

from harness.engine.agent import AgentConfig, expected_state
from harness.engine.runs import execute_plan
from harness.environments import ToolError, get_environment
from harness.errors import HarnessError
from harness.plan import load_plan
from harness.store import Store
from harness.suite import load_suite

TASKS = {it.fields["instruction"]: it for it in load_suite("agent-tasks").items()}


def plan_for(tmp_path, server, suites, samples=1, stream=False):
    models = {"alpha": {"provider": "openai", "base_url": server.base_url, "model": "m", "stream": stream}}
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump({"name": "agents", "models": models, "suites": suites, "samples": samples}))
    return load_plan(path)


@pytest.mark.parametrize("stream", [False, True])
def test_a_policy_following_agent_passes_every_task(tmp_path, fake_server, db_url, stream):
    fake_server.state.tool_answer = tool_answerer(scripted_agent())
    store = Store(db_url)
    result = execute_plan(plan_for(tmp_path, fake_server, ["agent-tasks"], stream=stream), store)
    samples = list(store.samples(result.run_id))
    assert len(samples) == 30
    assert all(s.passed for s in samples), [(s.item_id, s.grade_reason) for s in samples if not s.passed]
    ask_first = next(s for s in samples if s.item_id == "agent-tasks/15")
    transcript = json.loads(ask_first.transcript_json)
    roles = [m["role"] if isinstance(m, dict) else m[0] for m in transcript["messages"]]
    assert roles == ["system", "user", "assistant", "user", "assistant", "tool", "tool", "assistant"]
    assert transcript["stop"] == "answered" and len(transcript["turns"]) == 3
    assert transcript["final_state"]["orders"]["A100"]["status"] == "cancelled"
    assert ask_first.prompt_tokens == sum(t["prompt_tokens"] for t in transcript["turns"])
    five = next(s for s in samples if s.item_id == "agent-tasks/13")
    assert [c.name for c in five.tool_calls] == ["find_customer", "cancel_order", "refund_order"]


def test_a_policy_breach_fails_on_the_final_state(tmp_path, fake_server, db_url):
    breach = next(k for k, v in TASKS.items() if v.id == "agent-tasks/01")
    fake_server.state.tool_answer = tool_answerer(scripted_agent(break_policy={breach}))
    store = Store(db_url)
    result = execute_plan(plan_for(tmp_path, fake_server, [{"agent-tasks": {"first": 2}}]), store)
    samples = {s.item_id: s for s in store.samples(result.run_id)}
    assert not samples["agent-tasks/01"].passed
    assert "final state differs: orders.A102.refunded is 35.0, expected 0.0" in samples["agent-tasks/01"].grade_reason
    assert samples["agent-tasks/02"].passed


def test_the_turn_limit_stops_a_model_that_never_answers(tmp_path, fake_server, db_url):
    fake_server.state.tool_answer = tool_answerer(scripted_agent(loop_forever=True))
    store = Store(db_url)
    result = execute_plan(plan_for(tmp_path, fake_server, [{"agent-tasks": {"first": 1}}]), store)
    (s,) = store.samples(result.run_id)
    transcript = json.loads(s.transcript_json)
    assert transcript["stop"] == "max_turns" and len(transcript["turns"]) == 12
    assert not s.passed and fake_server.state.requests == 12


def test_pass_hat_k_is_reported_from_repeated_samples(tmp_path, fake_server, db_url):
    from harness.analysis.tools import pass_hat_k

    fake_server.state.tool_answer = tool_answerer(scripted_agent())
    store = Store(db_url)
    result = execute_plan(plan_for(tmp_path, fake_server, [{"agent-tasks": {"first": 3}}], samples=2), store)
    samples = list(store.samples(result.run_id))
    assert len(samples) == 6
    assert pass_hat_k([2, 2, 2], [2, 2, 2], 2) == 1.0


def test_the_orders_backend_enforces_only_what_a_backend_would():
    env = AgentConfig.of(load_suite("agent-tasks")).new_environment()
    with pytest.raises(ToolError, match="only placed orders"):
        env.call("cancel_order", {"order_id": "A101", "reason": "x"})
    with pytest.raises(ToolError, match="at most 120.0"):
        env.call("refund_order", {"order_id": "A101", "amount": 500, "reason": "x"})
    with pytest.raises(ToolError, match="missing argument"):
        env.call("get_order", {})
    env.call("refund_order", {"order_id": "A102", "amount": 35, "reason": "policy is the model's job"})
    assert env.snapshot()["orders"]["A102"]["status"] == "refunded"


def test_every_task_has_a_reachable_goal_and_some_need_five_calls():
    suite = load_suite("agent-tasks")
    config = AgentConfig.of(suite)
    items = list(suite.items())
    assert len(items) == 30 and {i.group for i in items} == {"act", "refuse"}
    for it in items:
        expected_state(config, it)
    assert sum(1 for i in items if i.group == "refuse") >= 8
    assert any(len(i.fields["gold_actions"]) >= 2 for i in items)


def test_an_unknown_environment_is_one_line(tmp_path):
    with pytest.raises(HarnessError, match="unknown tool environment 'bank'"):
        get_environment("bank")


def test_an_agent_suite_refuses_a_batch_model(tmp_path, db_url, fake_server):
    models = {"alpha": {"provider": "openai", "base_url": fake_server.base_url, "model": "m", "batch": True}}
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump({"models": models, "suites": ["agent-tasks"]}))
    with pytest.raises(HarnessError, match="runs agent loops"):
        execute_plan(load_plan(path), Store(db_url))


def test_the_report_and_summary_show_outcomes_calls_and_transcripts(tmp_path, fake_server, db_url):
    """Two models on both tool suites: one clean, one whose calls stay in the text (hermes)."""
    from harness.analysis.summary import summarize_run
    from harness.report import write_report

    answerer = tool_answerer

    clean = scripted_agent()

    def decide(payload):
        if payload["model"] == "leaky" and payload["messages"][0]["content"].startswith("You are a back-office"):
            return [("get_order_status", {"order_id": "<A1001>"})]
        return clean(payload) if payload["messages"][0]["content"].startswith("You are the customer") else None

    plain = answerer(decide)
    leaky = answerer(decide, "hermes")
    fake_server.state.tool_answer = lambda p: (leaky if p["model"] == "leaky" else plain)(p)
    models = {
        name: {"provider": "openai", "base_url": fake_server.base_url, "model": name} for name in ("clean", "leaky")
    }
    path = tmp_path / "plan.yaml"
    suites = [{"agent-tasks": {"first": 2}}, {"tool-calls": {"first": 2}}]
    path.write_text(yaml.safe_dump({"name": "r", "models": models, "suites": suites, "samples": 2}))
    store = Store(db_url)
    result = execute_plan(load_plan(path), store)
    summary = summarize_run(store, result.run_id)
    leaky_tools = summary.cell("leaky", "tool-calls")
    assert dict(leaky_tools.tool_outcomes) == {"text_call": 4}
    agent = summary.cell("clean", "agent-tasks")
    assert agent.pass_hat_k == ((1, 1.0), (2, 1.0))
    assert agent.turns_per_task == 2.0 and agent.seconds_per_turn > 0  # calls, then the answer
    assert summary.cell("clean", "tool-calls").turns_per_task != summary.cell("clean", "tool-calls").turns_per_task
    index = write_report(store, [result.run_id], tmp_path / "site")
    html = index.read_text()
    assert 'id="tools"' in html and "tool_outcomes.png" in html and "text_call" in html
    pages = list((index.parent).glob("**/all-1.html"))
    text = "\n".join(p.read_text() for p in pages)
    assert "Tools offered" in text and "Calls made" in text and "Transcript" in text
    assert "goal state (reached by" in text  # the leaky model changed nothing: its goal state is shown
    assert "&lt;tool_call&gt;" in text and "<tool_call>" not in text  # what the model wrote is escaped
    assert "[turn 1] assistant" in text and "&lt;- find_customer" in text
    assert "get_order_status(order_id=" in text  # the expected calls, as the grader reads them


def test_the_token_budget_stops_a_loop(tmp_path, fake_server, db_url, monkeypatch):
    import shutil

    folder = tmp_path / "suites" / "agent-tasks"
    shutil.copytree(load_suite("agent-tasks").dir, folder)
    config = yaml.safe_load((folder / "suite.yaml").read_text())
    config["agent"]["token_budget"] = 150  # the fake server reports 70 tokens a turn: the third turn crosses it
    (folder / "suite.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("HARNESS_SUITES_PATH", str(tmp_path / "suites"))
    fake_server.state.tool_answer = tool_answerer(scripted_agent(loop_forever=True))
    store = Store(db_url)
    result = execute_plan(plan_for(tmp_path, fake_server, [{"agent-tasks": {"first": 1}}]), store)
    (s,) = store.samples(result.run_id)
    transcript = json.loads(s.transcript_json)
    assert transcript["stop"] == "token_budget" and len(transcript["turns"]) == 3
    assert s.prompt_tokens + s.completion_tokens == 210 and not s.passed


def test_pass_hat_k_matches_brute_force_over_every_k_subset():
    """The unbiased estimator equals the share of all k-subsets of a task's samples that are all passes."""
    import itertools
    import math
    import random

    from harness.analysis.tools import pass_hat_k

    rng = random.Random(7)
    for _ in range(50):
        tasks = [[rng.random() < 0.6 for _ in range(rng.randint(1, 7))] for _ in range(rng.randint(1, 6))]
        for k in range(1, 5):
            eligible = [t for t in tasks if len(t) >= k]
            if not eligible:
                assert math.isnan(pass_hat_k([len(t) for t in tasks], [sum(t) for t in tasks], k))
                continue
            brute = sum(
                sum(all(c) for c in itertools.combinations(t, k)) / math.comb(len(t), k) for t in eligible
            ) / len(eligible)
            got = pass_hat_k([len(t) for t in tasks], [sum(t) for t in tasks], k)
            assert got == pytest.approx(brute, abs=1e-12)
    assert pass_hat_k([4], [2], 1) == 0.5 and pass_hat_k([4], [2], 2) == pytest.approx(1 / 6)


def test_the_dry_run_counts_an_agent_item_as_its_turn_limit_and_budget(tmp_path, fake_server):
    from harness.engine.estimate import dry_run

    models = {
        "alpha": {
            "provider": "openai",
            "base_url": fake_server.base_url,
            "model": "m",
            "price": {"input": 1.0, "output": 1.0},
        }
    }
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump({"name": "d", "models": models, "suites": [{"agent-tasks": {"first": 2}}]}))
    figures = dry_run(load_plan(path))["alpha"]
    assert figures["requests"] == 2 * 12
    assert figures["estimated_cost_usd"] == pytest.approx((2 * 40_000 + 2 * 12 * 384) / 1e6)
    assert fake_server.state.requests == 0


def test_kimi_style_call_ids_go_back_unchanged_in_the_next_turn(tmp_path, fake_server, db_url):
    fake_server.state.tool_answer = tool_answerer(scripted_agent(), "kimi_ids")
    store = Store(db_url)
    result = execute_plan(plan_for(tmp_path, fake_server, [{"agent-tasks": {"first": 1}}]), store)
    (s,) = store.samples(result.run_id)
    assert s.passed
    second = next(b for b in fake_server.state.bodies if any(m["role"] == "tool" for m in b["messages"]))
    sent = [m for m in second["messages"] if m["role"] in ("assistant", "tool")]
    ids = [c["id"] for c in sent[0]["tool_calls"]]
    assert ids == ["functions.find_customer:0", "functions.cancel_order:1"]
    assert [m["tool_call_id"] for m in sent[1:]] == ids  # each result answers its call by the id the server gave


def test_a_turn_that_fails_fails_the_task_but_keeps_the_tokens_already_spent(tmp_path, fake_server, db_url):
    agent = scripted_agent()
    turns = []

    def decide(payload):
        turns.append(1)
        if len(turns) > 1:
            return {"empty": True}  # not a valid decision: the fake answers finish_reason tool_calls, no call
        return agent(payload)

    def answer(payload):
        decided = decide(payload)
        if isinstance(decided, dict):
            return {"message": {"content": None, "tool_calls": []}, "finish_reason": "tool_calls", "deltas": []}
        return tool_answerer(lambda p: decided)(payload)

    fake_server.state.tool_answer = answer
    models = {"alpha": {"provider": "openai", "base_url": fake_server.base_url, "model": "m", "max_attempts": 2}}
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump({"name": "f", "models": models, "suites": [{"agent-tasks": {"first": 1}}]}))
    store = Store(db_url)
    (s,) = store.samples(execute_plan(load_plan(path), store).run_id)
    assert s.error and "finish_reason tool_calls with no call" in s.error and not s.passed
    assert s.prompt_tokens == 50 and s.completion_tokens == 20  # the first turn's usage, not zero
    assert json.loads(s.transcript_json)["stop"] == "error" and s.tool_outcome == "error"
