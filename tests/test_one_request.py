"""One plan, three paths: what `harness run`, `harness load` and the Batch API send is built once and arrives the same."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from harness.cli import cli

STREAM_KEYS = {"stream", "stream_options"}  # a batch line cannot stream; everything else must match


@pytest.fixture(autouse=True)
def fast_polls(monkeypatch):
    monkeypatch.setenv("HARNESS_BATCH_POLL_S", "0.02")


def write_suite(tmp_path, n=3):
    folder = tmp_path / "sums"
    folder.mkdir(exist_ok=True)
    (folder / "suite.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "sums",
                "version": 1,
                "data": "items.jsonl",
                "reference_field": "answer",
                "template": "prompt.j2",
                "grader": {"name": "numeric"},
                "generation": {"max_tokens": 16},
            }
        )
    )
    (folder / "prompt.j2").write_text("What is {{ a }} + {{ b }}?")
    (folder / "items.jsonl").write_text(
        "".join(json.dumps({"id": f"s{i}", "a": i, "b": 2, "answer": str(i + 2)}) + "\n" for i in range(n))
    )
    return str(folder)


def write_plan(tmp_path, server, **model_extra):
    model = {
        "provider": "openai",
        "base_url": server.base_url,
        "model": "fake-one",
        "api_key_env": "ONE_REQUEST_KEY",
        "stream": True,
        "extra_body": {"chat_template_kwargs": {"enable_thinking": False}, "repetition_penalty": 1.1},
        "extra_headers": {"X-Key": "$ONE_REQUEST_XKEY", "X-Team": "evals-team-literal"},
        "generation": {"top_p": 0.9, "seed": 7},
        "price": {"input": 1.0, "output": 2.0, "batch_discount": 0.5},
        **model_extra,
    }
    plan = {"name": "one", "models": {"m": model}, "suites": [write_suite(tmp_path)]}
    path = tmp_path / "one.yaml"
    path.write_text(yaml.safe_dump(plan))
    return path


def configured(headers: dict) -> dict:
    return {k: headers.get(k) for k in ("authorization", "x-key", "x-team")}


def test_one_plan_sends_the_same_body_and_headers_online_under_load_and_in_a_batch(
    tmp_path, fake_server, db_url, monkeypatch
):
    monkeypatch.setenv("ONE_REQUEST_KEY", "sk-one-request-key-0123456789")
    monkeypatch.setenv("ONE_REQUEST_XKEY", "gateway-secret-42")
    state = fake_server.state
    plan = write_plan(tmp_path, fake_server)
    runner = CliRunner()

    online = runner.invoke(cli, ["run", str(plan), "--db", db_url, "--no-report"])
    assert online.exit_code == 0, online.output
    online_bodies, online_headers = list(state.bodies), list(state.headers_seen)
    state.bodies.clear()
    state.headers_seen.clear()

    load = runner.invoke(cli, ["load", str(plan), "--db", db_url, "--concurrency", "1", "--requests", "3", "--json"])
    assert load.exit_code == 0, load.output
    stage = json.loads(load.stdout)["models"][0]["stages"][0]
    assert stage["ok"] == 3 and stage["errors"] == 0
    load_bodies, load_headers = list(state.bodies), list(state.headers_seen)
    state.bodies.clear()
    state.headers_seen.clear()

    batched = runner.invoke(cli, ["run", str(plan), "--batch", "--db", db_url, "--no-report"])
    assert batched.exit_code == 0, batched.output
    assert not state.bodies, "the batched run sent online requests"
    uploads = [f["data"] for f in state.batch.files.values() if f["meta"].get("purpose") == "batch"]
    batch_bodies = [json.loads(line)["body"] for data in uploads for line in data.splitlines() if line.strip()]
    batch_headers = state.batch.headers_seen

    assert len(online_bodies) == 3 and len(load_bodies) >= 3 and len(batch_bodies) == 3
    by_prompt = {}
    for path, bodies in (("run", online_bodies), ("load", load_bodies), ("batch", batch_bodies)):
        for body in bodies:
            stripped = {k: v for k, v in body.items() if k not in STREAM_KEYS}
            by_prompt.setdefault(json.dumps(body["messages"], sort_keys=True), {})[path] = stripped
    assert len(by_prompt) == 3
    for paths in by_prompt.values():
        assert paths["run"] == paths["load"] == paths["batch"]
        assert paths["run"]["top_p"] == 0.9 and paths["run"]["seed"] == 7
        assert paths["run"]["chat_template_kwargs"] == {"enable_thinking": False}
        assert paths["run"]["repetition_penalty"] == 1.1
    # streamed online and under load alike
    assert all(b.get("stream") is True for b in online_bodies + load_bodies)
    assert all("stream" not in b for b in batch_bodies)

    expected = {
        "authorization": "Bearer sk-one-request-key-0123456789",
        "x-key": "gateway-secret-42",
        "x-team": "evals-team-literal",
    }
    assert online_headers and load_headers and batch_headers
    for headers in online_headers + load_headers + batch_headers:  # every chat call and every Files/Batches call
        assert configured(headers) == expected
