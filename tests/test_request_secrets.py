"""Credentials stay with the server the plan names: redirects elsewhere are refused, literal header values redacted."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner
from support.fakeserver import FakeOpenAIServer, ServerState

from harness.cli import cli
from harness.errors import REDACTED, redact
from harness.plan import parse_plan
from harness.providers.http_request import target_for

SECRET = "header-secret-value-77"


@pytest.fixture
def other_server():
    server = FakeOpenAIServer(ServerState())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def write_plan(tmp_path, server, name="redir"):
    model = {
        "provider": "openai",
        "base_url": server.base_url,
        "model": "redir-model",
        "max_attempts": 2,
        "stream": True,
        "extra_headers": {"X-Key": "$REDIR_XKEY"},
    }
    plan = {"name": name, "models": {"m": model}, "suites": [{"math-word": {"limit": 2}}]}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(plan))
    return path


def test_a_run_never_follows_a_redirect_to_another_origin(tmp_path, fake_server, other_server, db_url, monkeypatch):
    monkeypatch.setenv("REDIR_XKEY", SECRET)
    fake_server.state.faults.redirect_to = other_server.base_url + "/moved/chat/completions"
    result = CliRunner().invoke(cli, ["run", str(write_plan(tmp_path, fake_server)), "--db", db_url, "--no-report"])
    assert other_server.state.requests == 0 and not other_server.state.headers_seen
    assert fake_server.state.requests >= 1
    assert "redirected to another origin" in result.output and other_server.base_url in result.output


def test_a_run_follows_a_redirect_within_the_origin_with_its_headers(tmp_path, fake_server, db_url, monkeypatch):
    monkeypatch.setenv("REDIR_XKEY", SECRET)
    fake_server.state.faults.redirect_to = "/v1/moved/chat/completions"
    result = CliRunner().invoke(cli, ["run", str(write_plan(tmp_path, fake_server)), "--db", db_url, "--no-report"])
    assert result.exit_code == 0, result.output
    assert sum(fake_server.state.successes.values()) == 2
    assert all(h.get("x-key") == SECRET for h in fake_server.state.headers_seen)


def test_load_follows_a_307_within_the_origin_and_refuses_one_elsewhere(
    tmp_path, fake_server, other_server, db_url, monkeypatch
):
    monkeypatch.setenv("REDIR_XKEY", SECRET)
    plan = write_plan(tmp_path, fake_server)
    fake_server.state.faults.redirect_to = "/v1/moved/chat/completions"
    args = ["load", str(plan), "--db", db_url, "--concurrency", "1", "--requests", "3", "--json"]
    ok = CliRunner().invoke(cli, args)
    assert ok.exit_code == 0, ok.output
    stage = json.loads(ok.stdout)["models"][0]["stages"][0]
    assert stage["ok"] == 3 and stage["errors"] == 0  # a 307 is not a 4xx

    fake_server.state.faults.redirect_to = other_server.base_url + "/moved/chat/completions"
    refused = CliRunner().invoke(cli, args)
    assert other_server.state.requests == 0
    assert refused.exception is not None and "redirected to another origin" in str(refused.exception)


def test_literal_extra_header_values_are_redacted_like_variables(monkeypatch):
    monkeypatch.setenv("REDACT_VAR", "from-the-environment-1")
    plan = parse_plan(
        {
            "name": "lit",
            "models": {
                "m": {
                    "provider": "openai",
                    "base_url": "http://127.0.0.1:9/v1",
                    "extra_headers": {"X-Literal": "literal-gateway-token-9", "X-Var": "$REDACT_VAR"},
                }
            },
            "suites": ["math-word"],
        },
        source="lit.yaml",
    )
    target = target_for(plan.models[0])
    assert target.headers["X-Literal"] == "literal-gateway-token-9"
    echoed = "the gateway says: literal-gateway-token-9 and from-the-environment-1"
    assert redact(echoed) == f"the gateway says: {REDACTED} and {REDACTED}"
