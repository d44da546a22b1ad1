"""Whatever a server sends is a graded answer or a counted error, never a crash; keys it echoes are never kept.

Against the fake server taught what real ones do (tests/test_conformance.py): llama.cpp's
interrupted streams and missing stream usage, LiteLLM's 429s without Retry-After, a gateway's
plain-text 500, and bodies no server should send.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support.fakeserver import echo_responder
from support.plans import echo_suite

from harness.engine.runs import execute_plan
from harness.errors import redact, register_secret
from harness.plan import load_plan
from harness.providers.base import ProviderError
from harness.providers.openai_body import StreamReader, completion_from_json, content_text
from harness.providers.tokens import token_count
from harness.store import Store

KEY = "sk-test-redaction-0123456789abcdef"
HEADER_SECRET = "gw-secret-value-98765"


@pytest.fixture
def echo(tmp_path, fake_server, monkeypatch):
    """(make_plan, server) for a synthetic echo suite the echo responder answers right."""
    fake_server.state.responder = echo_responder
    fake_server.reseed(3)
    monkeypatch.setenv("HARNESS_SUITES_PATH", str(tmp_path / "suites"))

    def make_plan(n: int = 6, models: dict | None = None, **model):
        echo_suite(tmp_path, n)
        spec = {
            "provider": "openai",
            "base_url": fake_server.base_url,
            "model": "fake",
            "concurrency": 4,
            "max_attempts": 4,
            "price": {"input": 1.0, "output": 2.0},
            **model,
        }
        path = tmp_path / "plan.yaml"
        path.write_text(yaml.safe_dump({"name": "responses", "models": models or {"m": spec}, "suites": ["echo"]}))
        return path

    return make_plan, fake_server


def run(path: Path, db_url: str):
    store = Store(db_url)
    result = execute_plan(load_plan(path), store)
    return result, store, list(store.samples(result.run_id))


def test_interrupted_streams_without_usage_are_retried_and_their_tokens_estimated(echo, db_url):
    make_plan, server = echo
    server.state.faults.interrupt = 0.4
    server.state.faults.stream_usage = False
    result, _, samples = run(make_plan(8, stream=True, max_attempts=10), db_url)
    assert result.status == "finished" and server.state.status_counts["interrupted"] >= 1
    assert len(samples) == 8 and all(s.passed and not s.error for s in samples)
    for s in samples:
        assert s.finish_reason == "stop" and s.completion  # never the empty interrupted stream
        assert s.usage_estimated and s.prompt_tokens > 0 and s.completion_tokens > 0 and s.cost_usd > 0
        assert s.ttft_s is not None


def _choice(content) -> bytes:
    return json.dumps(
        {
            "model": "fake",
            "choices": [{"message": {"content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3},
        }
    ).encode()


ODD_BODIES = {
    # name: (body from the request payload, the sample ends as an answer (True) or as an error (False))
    "prompt_tokens as text": (
        lambda p: json.dumps(
            {
                "choices": [{"message": {"content": _last(p)}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": "abc", "completion_tokens": 2},
            }
        ).encode(),
        True,
    ),
    "prompt_tokens 10**30": (
        lambda p: json.dumps(
            {
                "choices": [{"message": {"content": _last(p)}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10**30, "completion_tokens": 2},
            }
        ).encode(),
        True,
    ),
    "content as list of parts": (
        lambda p: _choice([{"type": "text", "text": _last(p)[:3]}, {"type": "text", "text": _last(p)[3:]}]),
        True,
    ),
    "content as an int": (lambda p: _choice(42), False),
    "content as a dict": (lambda p: _choice({"text": "x"}), False),
    "no choices": (lambda p: b'{"model": "fake", "choices": []}', False),
    "no message": (lambda p: b'{"choices": [{"finish_reason": "stop"}]}', False),
    "choices not a list": (lambda p: b'{"choices": "yes"}', False),
    "not JSON": (lambda p: b"<html>502 Bad Gateway</html>", False),
    "empty body": (lambda p: b"", False),
    "a JSON list": (lambda p: b"[1, 2]", False),
    "deeply nested": (lambda p: b"[" * 100_000 + b"]" * 100_000, False),
    "error object in a 200": (lambda p: b'{"error": {"message": "upstream overloaded"}}', False),
    "usage not an object": (
        lambda p: json.dumps(
            {"choices": [{"message": {"content": _last(p)}, "finish_reason": "stop"}], "usage": [1, 2]}
        ).encode(),
        True,
    ),
    "finish_reason a number": (
        lambda p: json.dumps({"choices": [{"message": {"content": _last(p)}, "finish_reason": 7}]}).encode(),
        True,
    ),
}


def _last(payload: dict) -> str:
    return echo_responder("", payload["messages"])


@pytest.mark.parametrize("name", sorted(ODD_BODIES))
def test_odd_bodies_are_answers_or_counted_errors_never_a_crash(echo, db_url, name):
    make_plan, server = echo
    body, answers = ODD_BODIES[name]
    server.state.faults.body = body
    result, store, samples = run(make_plan(3, max_attempts=2), db_url)
    assert result.status == "finished" and store.run(result.run_id).status == "finished"
    assert len(samples) == 3
    if answers:
        assert all(s.passed and not s.error for s in samples), [s.error for s in samples]
        assert all(s.prompt_tokens > 0 and s.completion_tokens > 0 for s in samples)
    else:
        assert all(s.error and not s.passed and s.attempts == 2 for s in samples)  # retried, then counted


def test_a_stream_is_read_event_by_event_and_refused_without_finish_reason():
    reader = StreamReader(["hi"])
    for line in [
        ": keep-alive",
        "event: message",
        'data: {"choices": [{"delta": {"role": "assistant"}}]}',
        "",
        'data: {"choices": [{"delta": {"content": [{"type": "text", "text": "ab"}]}}]}',
        "",
        "data: [DONE]",
        "",
    ]:
        reader.feed_line(line)
    with pytest.raises(ProviderError) as info:
        reader.completion(1.0, None)
    assert info.value.retryable and info.value.congested and "no finish_reason" in str(info.value)
    for bad in (
        "data: not json",
        "data: [1]",
        'data: {"choices": [{"delta": {"content": 5}}]}',
        'data: {"choices": 3}',
        "garbage line",
        'data: {"error": {"message": "boom"}}',
    ):
        reader = StreamReader([])
        with pytest.raises(ProviderError):
            reader.feed_line(bad)
            reader.feed_line("")
    reader = StreamReader(["hello there"])
    for line in [
        'data: {"model": "m", "choices": [{"delta": {"content": "x"}}]}',
        "",
        'data: {"choices": [{"delta": {}, "finish_reason": "length"}]}',
        "",
    ]:
        reader.feed_line(line)
    c = reader.completion(1.0, 0.5)  # no [DONE], no usage: complete (it said why it ended), tokens estimated
    assert (c.text, c.finish_reason, c.served_model, c.usage_estimated) == ("x", "length", "m", True)
    assert c.prompt_tokens > 0 and c.completion_tokens > 0


def test_token_counts_and_content_are_read_defensively():
    assert [token_count(v) for v in (3, 3.0, "3", True, -1, 10**30, None, 2.5)] == [
        3,
        3,
        None,
        None,
        None,
        None,
        None,
        None,
    ]
    assert (
        content_text(None) == "" and content_text(["a", {"type": "text", "text": "b"}, {"type": "image_url"}]) == "ab"
    )
    c = completion_from_json(_choice(""), 0.1, ["q"])  # an empty answer that says it stopped: a real (wrong) answer
    assert c.text == "" and c.finish_reason == "stop" and not c.usage_estimated


def test_429s_without_retry_after_and_plain_text_500s_lose_nothing(echo, db_url):
    make_plan, server = echo
    f = server.state.faults
    f.error_429, f.no_retry_after, f.error_500, f.plain_500 = 0.3, True, 0.2, True
    # One attempt only: 429s do not use attempts up, and the 500s that hit a sample are counted.
    result, _, samples = run(make_plan(6, max_attempts=1, concurrency=2), db_url)
    assert result.status == "finished" and server.state.status_counts["429"] >= 1
    for s in samples:
        assert s.passed or s.error.startswith("HTTP 500: Internal Server Error"), s.error
    assert not any("429" in s.error for s in samples)


def test_a_rate_limit_that_never_lifts_fails_the_sample_after_its_wait_budget(echo, db_url):
    make_plan, server = echo
    server.state.faults.error_429 = 1.0
    server.state.faults.retry_after_s = 0.2
    result, _, samples = run(make_plan(2, rate_limit_wait_s=0.5), db_url)
    assert result.status == "finished" and len(samples) == 2
    assert all("still rate limited" in s.error for s in samples)


def harness_run(plan: Path, tmp_path: Path, env: dict | None = None):
    import os

    return subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "run",
            str(plan),
            "--db",
            f"sqlite:///{tmp_path / 'h.db'}",
            "--out",
            str(tmp_path / "reports"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, **(env or {})},
    )


def everything_written(tmp_path: Path) -> bytes:
    blobs = [
        p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p.suffix in (".db", ".html", ".wal", ".jsonl")
    ]
    return b"".join(blobs)


def test_a_401_only_endpoint_stops_the_model_exits_2_and_never_stores_the_echoed_key(echo, tmp_path):
    make_plan, server = echo
    server.state.faults.status, server.state.faults.echo_auth = 401, True
    plan = make_plan(20, api_key_env="HARNESS_TEST_KEY", concurrency=1)
    proc = harness_run(plan, tmp_path, {"HARNESS_TEST_KEY": KEY})
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("model 'm' failed")]
    assert len(lines) == 1 and "HTTP 401" in lines[0] and "[REDACTED]" in lines[0], proc.stderr
    assert server.state.requests == 3  # a few identical fatal errors, then the rest is not sent
    assert "Traceback" not in proc.stderr
    assert KEY not in proc.stdout + proc.stderr and KEY.encode() not in everything_written(tmp_path)


@pytest.mark.parametrize(
    "status, message",
    [(400, "No connected db."), (400, "Invalid API key provided"), (400, "Invalid model name passed in model=ghost")],
)
def test_a_400_that_refuses_the_key_or_the_model_is_fatal_too(echo, tmp_path, status, message):
    # LiteLLM's proxy answers a wrong key with 400 "No connected db." (tests/test_conformance.py meets it):
    # every request would fail the same way, so the model stops instead of storing 20 errors.
    make_plan, server = echo
    server.state.faults.status, server.state.faults.status_message = status, message
    proc = harness_run(make_plan(20, concurrency=1), tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("model 'm' failed")]
    assert len(lines) == 1 and f"HTTP {status}: {message}" in lines[0], proc.stderr
    assert server.state.requests == 3 and "Traceback" not in proc.stderr


def test_a_400_about_the_request_is_no_configuration_fault(echo, db_url):
    make_plan, server = echo
    server.state.faults.status, server.state.faults.status_message = 400, "max_tokens is too large for this model"
    result, _, samples = run(make_plan(4, max_attempts=3, concurrency=1), db_url)
    assert result.status == "finished" and server.state.requests == 4  # not retried, not fatal: stored
    assert len(samples) == 4 and all(s.error.startswith("HTTP 400: max_tokens is too large") for s in samples)


def test_a_closed_port_exits_2_naming_the_model(tmp_path):
    plan = tmp_path / "p.yaml"
    plan.write_text(
        yaml.safe_dump(
            {
                "models": {
                    "nowhere": {
                        "provider": "openai",
                        "base_url": "http://127.0.0.1:9/v1",
                        "max_attempts": 2,
                        "concurrency": 1,
                    }
                },
                "suites": [{"math-word": {"limit": 10}}],
            }
        )
    )
    proc = harness_run(plan, tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("model 'nowhere' failed")]
    assert len(lines) == 1 and "connection failed" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_one_failed_model_does_not_stop_the_others_and_exits_1(echo, tmp_path, fake_server):
    make_plan, server = echo
    good = {"provider": "openai", "base_url": server.base_url, "model": "fake", "concurrency": 2}
    plan = make_plan(4, models={"good": good, "bad": {**good, "base_url": "http://127.0.0.1:9/v1", "max_attempts": 1}})
    proc = harness_run(plan, tmp_path)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "model 'bad' failed" in proc.stderr and "model 'good'" not in proc.stderr
    store = Store(f"sqlite:///{tmp_path / 'h.db'}")
    run_id = store.resolve_run(None)
    assert store.run(run_id).status == "failed"
    assert len(list(store.samples(run_id, model="good"))) == 4 and not list(store.samples(run_id, model="bad"))


def test_echoed_keys_and_header_values_are_redacted_from_errors_reports_and_exports(echo, tmp_path, monkeypatch):
    make_plan, server = echo
    f = server.state.faults
    f.error_500, f.plain_500, f.echo_auth = 1.0, True, True
    plan = make_plan(
        3,
        api_key_env="HARNESS_TEST_KEY",
        max_attempts=1,
        extra_headers={"X-Gateway-Key": "$HARNESS_HEADER_SECRET", "X-Team": "evals"},
        extra_body={"chat_template_kwargs": {"enable_thinking": False}},
    )
    env = {"HARNESS_TEST_KEY": KEY, "HARNESS_HEADER_SECRET": HEADER_SECRET}
    proc = harness_run(plan, tmp_path, env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    store = Store(f"sqlite:///{tmp_path / 'h.db'}")
    run_id = store.resolve_run(None)
    samples = list(store.samples(run_id))
    assert len(samples) == 3 and all("HTTP 500" in s.error and "[REDACTED]" in s.error for s in samples)
    export = subprocess.run(
        [sys.executable, "-m", "harness", "export", "--db", f"sqlite:///{tmp_path / 'h.db'}", "--format", "jsonl"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    written = everything_written(tmp_path) + export.stdout.encode() + proc.stdout.encode() + proc.stderr.encode()
    assert KEY.encode() not in written and HEADER_SECRET.encode() not in written
    # The server got the knobs: the header's value from the environment, the body's extra keys as given.
    assert server.state.headers_seen[0]["x-gateway-key"] == HEADER_SECRET
    assert server.state.headers_seen[0]["x-team"] == "evals"
    assert server.state.bodies[0]["chat_template_kwargs"] == {"enable_thinking": False}


def test_redaction_covers_registered_values_and_bearer_tokens():
    register_secret("my-own-secret-123")
    text = 'denied for my-own-secret-123; Authorization: Bearer abcdefgh12345678 "authorization": "tok-12345678"'
    cleaned = redact(text)
    assert "my-own-secret-123" not in cleaned and "abcdefgh12345678" not in cleaned and "tok-12345678" not in cleaned
    assert redact("plain words stay") == "plain words stay"


def test_extra_headers_values_are_never_stored_with_the_plan(echo, tmp_path, monkeypatch, db_url):
    make_plan, server = echo
    monkeypatch.setenv("HARNESS_HEADER_SECRET", HEADER_SECRET)
    plan = make_plan(1, extra_headers={"X-Gateway-Key": "$HARNESS_HEADER_SECRET", "X-Literal": "literal-token-xyz"})
    result, store, _ = run(plan, db_url)
    stored = json.dumps(store.run(result.run_id).plan)
    assert "$HARNESS_HEADER_SECRET" in stored and HEADER_SECRET not in stored and "literal-token-xyz" not in stored


@pytest.mark.parametrize(
    "bad", [{"extra_body": "x"}, {"extra_headers": {"X": 3}}, {"extra_headers": ["a"]}, {"rate_limit_wait_s": -1}]
)
def test_bad_server_knobs_are_plan_errors(tmp_path, bad):
    from harness.errors import HarnessError
    from harness.plan import parse_plan

    with pytest.raises(HarnessError) as info:
        parse_plan({"models": {"m": {"provider": "openai", "base_url": "http://x/v1", **bad}}, "suites": ["math-word"]})
    (key,) = bad
    assert f"models.m.{key}" in str(info.value)
