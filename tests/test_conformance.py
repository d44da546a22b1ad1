"""Conformance: the same runs against real servers, started here on 127.0.0.1.

llama-cpp-python's own server (`python -m llama_cpp.server`) on the embedded GGUF, with its
default interruption of a stream by a newer request and with `--interrupt_requests False`, and
LiteLLM's proxy in front of it (two model names, one with a requests-per-minute limit that makes
it answer real 429s). What these servers do that our fake server did not is taught to
tests/support/fakeserver.py, so the fast tests keep catching it.

Kept small (a few items, few tokens): the embedded model writes ~25-40 tokens a second here.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml
from support.servers import LLAMA_ALIAS as ALIAS
from support.servers import litellm_executable, missing_server_deps, start_litellm, start_llama_server, stop

from harness.engine.runs import execute_plan
from harness.plan import load_plan
from harness.store import Store

missing = missing_server_deps()
pytestmark = [
    pytest.mark.skipif(
        bool(missing),
        reason=f"llama-cpp-python[server] is not installed (missing: {', '.join(missing)}); pip install -e '.[local,test]'",
    ),
    pytest.mark.realserver,
    pytest.mark.slow,
]

SUITES = [{"math-word": {"limit": 2, "fewshot": 0}}, {"zh-mcq": {"limit": 2, "fewshot": 0}}]
GENERATION = {"max_tokens": 24, "temperature": 0.0}
PRICE = {"input": 1.0, "output": 2.0}
MASTER_KEY = "sk-harness-conformance-0123456789"


@pytest.fixture(scope="module")
def llama_interrupting(tmp_path_factory):
    """The server as it starts by default: a newer request interrupts a running stream."""
    proc, url = start_llama_server(tmp_path_factory.mktemp("llama"))
    yield url
    stop(proc)


@pytest.fixture(scope="module")
def llama_queueing(tmp_path_factory):
    """The server with `--interrupt_requests False`: requests wait their turn."""
    proc, url = start_llama_server(tmp_path_factory.mktemp("llama"), "--interrupt_requests", "False")
    yield url
    stop(proc)


def run_plan(tmp_path, name: str, models: dict, suites=SUITES):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "models": models, "suites": suites, "generation": GENERATION}))
    store = Store(f"sqlite:///{tmp_path / (name + '.db')}")
    result = execute_plan(load_plan(path), store)
    return result, {m: list(store.samples(result.run_id, model=m)) for m in models}


def llama_model(url: str, *, stream: bool, concurrency: int, **more) -> dict:
    return {
        "provider": "openai",
        "base_url": url,
        "model": ALIAS,
        "stream": stream,
        "concurrency": concurrency,
        "price": PRICE,
        "max_attempts": 8,
        "timeout_s": 120,
        **more,
    }


def scores(samples) -> dict:
    return {(s.suite, s.item_id): (s.score, s.completion) for s in samples}


DIRECT_TOKENS: dict = {}  # (suite, item) -> the prompt tokens llama.cpp's server reported for it


def assert_sound(samples, *, streamed: bool) -> None:
    """Every sample a graded answer or a counted error; tokens and cost counted; TTFT on every stream."""
    assert samples
    for s in samples:
        assert s.error == "", s.error  # these servers answer every request in the end
        assert s.finish_reason in ("stop", "length"), (s.finish_reason, s.completion)
        assert s.prompt_tokens > 0 and s.completion_tokens > 0 and s.cost_usd > 0
        if streamed:
            assert s.ttft_s is not None and 0 < s.ttft_s <= s.latency_s
            assert s.usage_estimated  # llama.cpp's server sends no usage chunk in streams
        else:
            assert not s.usage_estimated


@pytest.fixture(scope="module")
def direct_answers(llama_interrupting, tmp_path_factory):
    """The non-streamed answers, one request at a time: the reference every other run must match."""
    tmp = tmp_path_factory.mktemp("direct")
    result, samples = run_plan(tmp, "direct", {"plain": llama_model(llama_interrupting, stream=False, concurrency=1)})
    assert result.status == "finished"
    assert_sound(samples["plain"], streamed=False)
    DIRECT_TOKENS.update({(s.suite, s.item_id): s.prompt_tokens for s in samples["plain"]})
    return scores(samples["plain"])


def test_interrupted_streams_are_retried_not_graded(llama_interrupting, direct_answers, tmp_path):
    # The plan: streamed, concurrency above what the server serves. Its default interruption
    # ends older streams with the role chunk and [DONE]: those attempts are errors, retried with the
    # window lowered, never stored as empty answers.
    result, samples = run_plan(tmp_path, "streamed", {"s": llama_model(llama_interrupting, stream=True, concurrency=4)})
    assert result.status == "finished"
    assert_sound(samples["s"], streamed=True)
    assert scores(samples["s"]) == direct_answers
    state = result.outcome.per_model["s"]
    assert state.retries >= 1 and state.limiter.cap < 4  # the interruptions happened, and were learned from


@pytest.mark.parametrize("stream, concurrency", [(True, 1), (False, 4)])
def test_the_rest_of_the_matrix_matches_direct(llama_interrupting, direct_answers, tmp_path, stream, concurrency):
    # Streamed one at a time (nothing to interrupt it) and non-streamed four at once (the server queues
    # them: interruption only ends streams): the same answers as direct, nothing retried.
    result, samples = run_plan(
        tmp_path, "matrix", {"m": llama_model(llama_interrupting, stream=stream, concurrency=concurrency)}
    )
    assert result.status == "finished"
    assert_sound(samples["m"], streamed=stream)
    assert scores(samples["m"]) == direct_answers
    assert result.outcome.per_model["m"].retries == 0


def test_queueing_server_streams_match_direct_with_estimated_tokens(llama_queueing, direct_answers, tmp_path):
    result, samples = run_plan(tmp_path, "queueing", {"s4": llama_model(llama_queueing, stream=True, concurrency=4)})
    assert result.status == "finished"
    assert_sound(samples["s4"], streamed=True)
    assert scores(samples["s4"]) == direct_answers
    assert result.outcome.per_model["s4"].retries == 0  # nothing interrupted: every request waited its turn
    # The streamed counts are estimated (a documented approximation); the non-streamed run has the
    # server's own. English: within a factor of two. Chinese: SmolLM2's English-centred vocabulary
    # spends 2-3 tokens a character where the estimate (made for the large models runs pay for)
    # assumes one, so it reads about half (measured 0.48 here): counted, never zero, and low.
    for s in samples["s4"]:
        real = DIRECT_TOKENS[(s.suite, s.item_id)]
        low = 0.5 if s.suite == "math-word" else 0.3
        assert low <= s.prompt_tokens / real <= 2.0, (s.suite, s.prompt_tokens, real)


# -- LiteLLM's proxy in front of the llama.cpp server ------------------------------------------


@pytest.fixture(scope="module")
def gateway(llama_queueing, tmp_path_factory):
    litellm_executable()  # skips, saying why, when .ci/run has not prepared LiteLLM's environment
    folder = tmp_path_factory.mktemp("litellm")
    backend = {"model": f"openai/{ALIAS}", "api_base": llama_queueing, "api_key": "none"}
    config = {
        "model_list": [
            {"model_name": "smollm2", "litellm_params": backend},
            {"model_name": "smollm2-limited", "litellm_params": {**backend, "rpm": 2}},
        ],
        # The router enforces a deployment's rpm with usage-based routing; LiteLLM's own retries are off
        # so that every 429 reaches the harness.
        "router_settings": {"routing_strategy": "usage-based-routing-v2"},
        "litellm_settings": {"num_retries": 0},
        "general_settings": {"master_key": MASTER_KEY},
    }
    (folder / "cfg.yaml").write_text(yaml.safe_dump(config))
    proc, url = start_litellm(folder / "cfg.yaml")
    yield url
    stop(proc)


def test_through_the_gateway_scores_match_and_429s_are_waited_out(gateway, direct_answers, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_GATEWAY_KEY", MASTER_KEY)
    common = {
        "provider": "openai",
        "base_url": gateway,
        "api_key_env": "HARNESS_GATEWAY_KEY",
        "price": PRICE,
        "timeout_s": 120,
    }
    suites = [{"math-word": {"limit": 2, "fewshot": 0}}]
    models = {
        "gw": {**common, "model": "smollm2", "stream": True, "concurrency": 2},
        "gw-limited": {**common, "model": "smollm2-limited", "concurrency": 2},
    }
    result, samples = run_plan(tmp_path, "gateway", models, suites)
    assert result.status == "finished"
    direct = {k: v for k, v in direct_answers.items() if k[0] == "math-word"}
    for name, asked in (("gw", "smollm2"), ("gw-limited", "smollm2-limited")):
        assert [s.error for s in samples[name]] == [""] * 2  # nothing lost to the 429s
        assert scores(samples[name]) == direct
        assert {s.served_model for s in samples[name]} == {asked}  # LiteLLM reports its own model name
        assert all(s.prompt_tokens > 0 and s.completion_tokens > 0 for s in samples[name])
    limited = result.outcome.per_model["gw-limited"]
    assert limited.retries >= 1  # real 429s were answered, and waited out
    for name in models:  # what the gateway did, for whoever reads the output (pytest -s)
        print(name, [(s.attempts, s.usage_estimated, s.prompt_tokens, s.completion_tokens) for s in samples[name]])


def test_gateway_error_body_names_the_unknown_model(gateway, tmp_path):
    plan = tmp_path / "unknown.yaml"
    plan.write_text(
        yaml.safe_dump(
            {
                "models": {
                    "ghost": {
                        "provider": "openai",
                        "base_url": gateway,
                        "api_key_env": "HARNESS_GATEWAY_KEY",
                        "model": "no-such-model",
                    }
                },
                "suites": [{"math-word": {"limit": 4}}],
            }
        )
    )
    env = {**os.environ, "HARNESS_GATEWAY_KEY": MASTER_KEY}
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "run", str(plan), "--db", f"sqlite:///{tmp_path / 'u.db'}", "--no-report"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("model 'ghost' failed")]
    assert line and "Invalid model name" in line[0] and "HTTP 400" in line[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and MASTER_KEY not in proc.stderr + proc.stdout


def test_a_wrong_key_at_the_gateway_stops_the_model(gateway, tmp_path):
    # LiteLLM's proxy, with a master key and no key database, answers any other key with
    # 400 "No connected db.": a configuration fault, so the model stops and nothing is stored.
    plan = tmp_path / "wrong-key.yaml"
    plan.write_text(
        yaml.safe_dump(
            {
                "models": {
                    "locked": {
                        "provider": "openai",
                        "base_url": gateway,
                        "model": "smollm2",
                        "api_key_env": "HARNESS_GATEWAY_KEY",
                        "concurrency": 1,
                    }
                },
                "suites": [{"math-word": {"limit": 4}}],
            }
        )
    )
    wrong = "sk-not-the-master-key-42"
    db = tmp_path / "w.db"
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "run", str(plan), "--db", f"sqlite:///{db}", "--no-report"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "HARNESS_GATEWAY_KEY": wrong},
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("model 'locked' failed")]
    assert line and "HTTP 400" in line[0] and "No connected db" in line[0], proc.stderr[-2000:]
    store = Store(f"sqlite:///{db}")
    (run,) = store.runs()
    assert run.status == "failed" and store.count_samples(run.id) == 0  # rerun with the right key: all asked
    assert wrong not in proc.stderr + proc.stdout and "Traceback" not in proc.stderr
