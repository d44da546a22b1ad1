"""Tool and agent suites on the Ray executor: the same calls, names mapped back, agent loops run on the workers."""

from __future__ import annotations

import pytest
import yaml

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]' (it is in the test extra)")

from support.tools import oracle, scripted_agent, tool_answerer  # noqa: E402

from harness.engine.executors import RayOptions  # noqa: E402
from harness.engine.runs import execute_plan  # noqa: E402
from harness.plan import load_plan  # noqa: E402
from harness.store import Store  # noqa: E402

pytestmark = pytest.mark.slow


def test_tool_and_agent_suites_run_on_ray_workers(tmp_path, fake_server, pg_url, ray_two_cpus):
    tools, agent = oracle(), scripted_agent()

    def decide(payload):
        first = payload["messages"][0]["content"]
        return agent(payload) if first.startswith("You are the customer") else tools(payload)

    fake_server.state.tool_answer = tool_answerer(decide)
    model = {"provider": "openai", "base_url": fake_server.base_url, "model": "fake", "concurrency": 4}
    plan = {
        "name": "ray-tools",
        "models": {"m": model},
        "suites": [{"tool-calls": {"first": 20}}, {"agent-tasks": {"first": 4}}],
    }
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    store = Store(pg_url)
    result = execute_plan(load_plan(path), store, ray=RayOptions(workers=2))
    samples = list(store.samples(result.run_id))
    assert result.status == "finished" and len(samples) == 24
    assert all(s.passed for s in samples), [(s.item_id, s.grade_reason) for s in samples if not s.passed]
    assert next(s for s in samples if s.item_id == "tool-calls/016").tool_calls[0].name == "crm.get_weather"
    assert all(s.transcript_json for s in samples if s.suite == "agent-tasks")
