"""Deciding on traffic: recommend routes a pairwise suite to the cheapest model not losing to the incumbent, and
`recommend --export litellm` is a config LiteLLM's proxy runs: each route answers with the recommended model and,
with that model's server stopped, with the fallback."""

import json
import subprocess
import sys
import urllib.request

import pytest
import yaml
from support.fakeserver import FakeOpenAIServer, Faults, ServerState
from support.judges import answer, traffic_responder

N = 30


def _answers():
    # cheap: as good as the incumbent; mid: better on a third; big: better on two thirds; bad: worse on two thirds.
    def tagged(model, q, i):
        return answer(i, q) + f" from {model}"

    return {
        "glm-cheap": {i: tagged("glm-cheap", 5, i) for i in range(N)},
        "qwen-mid": {i: tagged("qwen-mid", 6 if i % 3 == 0 else 5, i) for i in range(N)},
        "big": {i: tagged("big", 6 if i % 3 else 5, i) for i in range(N)},
        "bad": {i: tagged("bad", 4 if i % 3 else 5, i) for i in range(N)},
    }


def _traffic_run(tmp_path, monkeypatch, cheap_server, other_server):
    from harness.engine.runs import execute_plan
    from harness.plan import load_plan
    from harness.store import Store
    from harness.traffic.importer import import_log

    with open(tmp_path / "log.jsonl", "w") as fh:
        for i in range(N):
            row = {
                "messages": [{"role": "user", "content": f"Ticket #{i}: summarise the incident"}],
                "max_tokens": 64,
                "response": answer(i, 5) + " from the incumbent",
            }
            fh.write(json.dumps(row) + "\n")
    import_log(tmp_path / "log.jsonl", "summaries", tmp_path / "suites")
    monkeypatch.setenv("HARNESS_SUITES_PATH", str(tmp_path / "suites"))
    responder = traffic_responder(_answers(), {"judge": "truthful"})
    cheap_server.state.responder = other_server.state.responder = responder

    def model(url, price, **extra):
        return {"provider": "openai", "base_url": url, "api_key_env": "TRAFFIC_KEY", "price": price, **extra}

    plan = {
        "models": {
            "glm-cheap": model(cheap_server.base_url, {"input": 0.01, "output": 0.01}, rpm=600, tpm=100000),
            "qwen-mid": model(other_server.base_url, {"input": 0.5, "output": 1.0}, rpm=300),
            "big": model(other_server.base_url, {"input": 5.0, "output": 15.0}),
            "bad": model(other_server.base_url, {"input": 0.001, "output": 0.001}),
        },
        "judges": {"judge": model(other_server.base_url, {"input": 1.0, "output": 1.0})},
        "suites": ["summaries"],
        "noninferiority_margin": 0.05,
    }
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    monkeypatch.setenv("TRAFFIC_KEY", "test-key-value-123")
    db = f"sqlite:///{tmp_path / 'h.db'}"
    store = Store(db)
    execute_plan(load_plan(tmp_path / "plan.yaml"), store)
    return store, db


@pytest.fixture
def servers():
    a, b = FakeOpenAIServer(ServerState(faults=Faults())), FakeOpenAIServer(ServerState(faults=Faults()))
    a.start()
    b.start()
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


def test_recommend_routes_to_the_cheapest_model_not_losing_to_the_incumbent(tmp_path, monkeypatch, servers):
    from harness.analysis.recommend import recommend
    from harness.traffic.litellm import router_yaml

    store, db = _traffic_run(tmp_path, monkeypatch, *servers)
    rec = recommend(store)
    (s,) = rec.suites
    assert s.model == "glm-cheap", s.reason  # all ties with the incumbent: not worse, and cheapest
    bad = s.candidate("bad")
    assert not bad.noninferior and "may lose to the logged incumbent" in bad.rejected
    text = router_yaml(rec)
    assert "test-key-value-123" not in text and "os.environ/TRAFFIC_KEY" in text
    config = yaml.safe_load(text)
    groups = [m["model_name"] for m in config["model_list"]]
    assert groups[0] == "summaries"
    assert config["model_list"][0]["litellm_params"]["rpm"] == 600
    assert config["router_settings"]["fallbacks"] == [{"summaries": ["summaries--qwen-mid", "summaries--big"]}]
    assert "# route summaries -> glm-cheap" in text
    assert config["general_settings"] == {"master_key": "os.environ/LITELLM_MASTER_KEY"}
    out = subprocess.run(
        [sys.executable, "-m", "harness", "recommend", "--db", db, "--export", "litellm"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert yaml.safe_load(out) == config


def _ask(url, route):
    body = json.dumps({"model": route, "messages": [{"role": "user", "content": "Ticket #4: hello"}]}).encode()
    req = urllib.request.Request(
        f"{url}/chat/completions", body, {"Content-Type": "application/json", "Authorization": "Bearer sk-master"}
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())["choices"][0]["message"]["content"]


@pytest.mark.slow
def test_litellm_runs_the_exported_config_and_falls_back_when_the_route_model_is_down(tmp_path, monkeypatch, servers):
    from support.servers import start_litellm, stop

    from harness.analysis.recommend import recommend
    from harness.traffic.litellm import router_yaml

    store, _ = _traffic_run(tmp_path, monkeypatch, *servers)
    (tmp_path / "router.yaml").write_text(router_yaml(recommend(store)))
    proc, url = start_litellm(
        tmp_path / "router.yaml",
        {"LITELLM_MASTER_KEY": "sk-master"},  # what the exported config reads its key from
    )
    try:
        assert _ask(url, "summaries").endswith("from glm-cheap")
        servers[0].stop()  # the recommended model's server goes away: the route falls back
        assert _ask(url, "summaries").endswith("from qwen-mid")
    finally:
        stop(proc)
