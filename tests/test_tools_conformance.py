"""Tool calls against real servers: llama-cpp-python's server with `--chat_format chatml-function-calling` on
the embedded GGUF, streamed and not, and LiteLLM's proxy in front of it.

Found here and taught to the fake server (tests/tool_fakes.py, quirk "llamacpp"): in streams the server
repeats the call's id and name in every delta, and it sends the legacy `function_call` beside `tool_calls`.
The embedded model calls a function reliably only when `tool_choice` forces it, so the items here do.
"""

from __future__ import annotations

import json

import pytest
import yaml
from support.servers import litellm_executable, missing_server_deps, start_litellm, start_llama_server, stop

from harness.engine.runs import execute_plan
from harness.plan import load_plan
from harness.store import Store

MASTER_KEY = "sk-harness-tools-conformance-0123456789"
missing = missing_server_deps()

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(missing), reason=f"llama-cpp-python[server] is not installed (missing: {missing})"),
]

CITIES = ["Paris", "Tokyo", "Berlin"]


def weather_suite(folder):
    """A three-item tool suite: the function's name has a dot (mapped on the wire), the call is forced."""
    suite = folder / "weather-tools"
    suite.mkdir()
    tool = {
        "name": "weather.current",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
    rows = [
        {
            "id": f"w{i}",
            "category": "simple",
            "messages": [{"role": "user", "content": f"What is the weather in {city}?"}],
            "tools": [tool],
            "tool_choice": {"type": "function", "function": {"name": "weather.current"}},
            "ground_truth": [{"weather.current": {"city": [city]}}],
        }
        for i, city in enumerate(CITIES)
    ]
    (suite / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (suite / "prompt.j2").write_text("{{ messages[-1].content }}\n")
    config = {
        "name": "weather-tools",
        "data": "items.jsonl",
        "id_field": "id",
        "group_field": "category",
        "reference_field": "ground_truth",
        "template": "prompt.j2",
        "tools": {"field": "tools", "messages_field": "messages"},
        "grader": {"name": "tool_calls"},
        "generation": {"max_tokens": 48, "temperature": 0.0},
    }
    (suite / "suite.yaml").write_text(yaml.safe_dump(config))


@pytest.fixture(scope="module")
def llama_tools(tmp_path_factory):
    proc, url = start_llama_server(
        tmp_path_factory.mktemp("llama"), "--chat_format", "chatml-function-calling", "--interrupt_requests", "False"
    )
    yield url
    stop(proc)


@pytest.fixture
def suites_path(tmp_path, monkeypatch):
    weather_suite(tmp_path)
    monkeypatch.setenv("HARNESS_SUITES_PATH", str(tmp_path))


def run(tmp_path, models, suites=("weather-tools",)):
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump({"name": "tools-real", "models": models, "suites": list(suites)}))
    store = Store(f"sqlite:///{tmp_path / 'h.db'}")
    result = execute_plan(load_plan(path), store)
    return {m: {s.item_id: s for s in store.samples(result.run_id, model=m)} for m in models}


def test_llama_server_calls_read_whole_and_streamed_names_mapped_back(llama_tools, suites_path, tmp_path):
    base = {"provider": "openai", "base_url": llama_tools, "model": "smollm2-135m", "concurrency": 1}
    got = run(tmp_path, {"whole": {**base, "stream": False}, "streamed": {**base, "stream": True}})
    whole, streamed = got["whole"], got["streamed"]
    assert set(whole) == set(streamed) == {"w0", "w1", "w2"}
    for item in whole:
        a, b = whole[item], streamed[item]
        assert not a.error and not b.error
        assert [c.name for c in a.tool_calls] == ["weather.current"]  # sent as weather_current, read back
        assert [c.name for c in b.tool_calls] == ["weather.current"]  # never weather_currentweather_current
        assert a.tool_calls[0].arguments is not None and a.tool_calls[0].arguments == b.tool_calls[0].arguments
        assert a.score == b.score and a.tool_outcome == b.tool_outcome == "call"
        assert a.completion_tokens > 0 and b.completion_tokens > 0
    assert sum(s.passed for s in whole.values()) >= 2  # "weather in Paris?" -> weather.current(city="Paris")


def test_through_litellm_the_scores_equal_the_direct_run(llama_tools, suites_path, tmp_path, monkeypatch):

    litellm_executable()  # skips, saying why, when .ci/run has not prepared LiteLLM's environment
    backend = {"model": "openai/smollm2-135m", "api_base": llama_tools, "api_key": "none"}
    config = {
        "model_list": [{"model_name": "smollm2", "litellm_params": backend}],
        "litellm_settings": {"num_retries": 0},
        "general_settings": {"master_key": MASTER_KEY},
    }
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(config))
    proc, url = start_litellm(tmp_path / "cfg.yaml")
    try:
        monkeypatch.setenv("HARNESS_GATEWAY_KEY", MASTER_KEY)
        gateway = {
            "provider": "openai",
            "base_url": url,
            "api_key_env": "HARNESS_GATEWAY_KEY",
            "model": "smollm2",
            "concurrency": 1,
        }
        direct = {"provider": "openai", "base_url": llama_tools, "model": "smollm2-135m", "concurrency": 1}
        got = run(tmp_path, {"direct": direct, "gateway": gateway, "gateway-stream": {**gateway, "stream": True}})
    finally:
        stop(proc)
    for item, sample in got["direct"].items():
        for other in ("gateway", "gateway-stream"):
            via = got[other][item]
            assert not via.error, via.error
            assert [c.name for c in via.tool_calls] == ["weather.current"]
            assert via.tool_calls[0].arguments == sample.tool_calls[0].arguments
            assert via.score == sample.score


def test_the_embedded_provider_offers_tools_through_the_chatml_function_calling_handler(suites_path, tmp_path):
    """SmolLM2's own chat template ignores tools; the provider offers them the way the server's handler does."""
    got = run(tmp_path, {"local": {"provider": "llamacpp"}})["local"]
    assert set(got) == {"w0", "w1", "w2"}
    for sample in got.values():
        assert sample.tool_outcome == "call" and [c.name for c in sample.tool_calls] == ["weather.current"]
    assert sum(s.passed for s in got.values()) >= 2
