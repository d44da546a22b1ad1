"""`harness load` against real servers: llama-cpp-python's server on the embedded GGUF, and LiteLLM's proxy
in front of it, both started here on 127.0.0.1. The plan's body fields and headers go through the run's
builder; the answers are judged complete by the run's reader; a refused key is a setup error (exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support.servers import LLAMA_ALIAS as ALIAS
from support.servers import litellm_executable, missing_server_deps, start_litellm, start_llama_server, stop

from harness.store import Store
from harness.store import loads as results

missing = missing_server_deps()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.realserver,
    pytest.mark.skipif(bool(missing), reason=f"llama-cpp-python[server] is not installed (missing: {missing})"),
]

MASTER_KEY = "sk-harness-load-conformance-0123"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    proc, url = start_llama_server(tmp_path_factory.mktemp("llama"), "--interrupt_requests", "False")
    yield url
    stop(proc)


@pytest.fixture(scope="module")
def gateway(llama, tmp_path_factory):
    litellm_executable()  # skips, saying why, when .ci/run has not prepared LiteLLM's environment
    folder = tmp_path_factory.mktemp("litellm")
    backend = {"model": f"openai/{ALIAS}", "api_base": llama, "api_key": "none"}
    config = {
        "model_list": [{"model_name": "smollm2", "litellm_params": backend}],
        "litellm_settings": {"num_retries": 0},
        "general_settings": {"master_key": MASTER_KEY},
    }
    (folder / "cfg.yaml").write_text(yaml.safe_dump(config))
    proc, url = start_litellm(folder / "cfg.yaml")
    yield url
    stop(proc)


def load(tmp_path, model: dict, env: dict | None = None) -> subprocess.CompletedProcess:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        yaml.safe_dump(
            {
                "name": "load-conformance",
                "models": {"m": {"provider": "openai", "timeout_s": 120, **model}},
                "suites": [{"math-word": {"limit": 3, "fewshot": 0}}],
                "generation": {"max_tokens": 8, "top_p": 0.9, "seed": 3},
            }
        )
    )
    args = ["load", str(plan), "--db", f"sqlite:///{tmp_path / 'l.db'}", "--concurrency", "1", "--requests", "3"]
    return subprocess.run(
        [sys.executable, "-m", "harness", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )


def test_load_sends_the_plans_body_to_llama_cpp_and_reads_its_streams(llama, tmp_path):
    proc = load(tmp_path, {"base_url": llama, "model": ALIAS, "extra_body": {"top_k": 1, "repeat_penalty": 1.1}})
    assert proc.returncode == 0, proc.stderr[-2000:]
    stage = json.loads(proc.stdout)["models"][0]["stages"][0]
    assert stage["ok"] == 3 and stage["errors"] == 0 and stage["ttft_p50"] is not None


def test_load_through_litellm_with_key_and_header(gateway, tmp_path):
    model = {
        "base_url": gateway,
        "model": "smollm2",
        "api_key_env": "LOAD_GATEWAY_KEY",
        "extra_headers": {"X-Team": "$LOAD_TEAM"},
        "extra_body": {"top_k": 1},
    }
    proc = load(tmp_path, model, {"LOAD_GATEWAY_KEY": MASTER_KEY, "LOAD_TEAM": "evals-load-team"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    stage = json.loads(proc.stdout)["models"][0]["stages"][0]
    assert stage["ok"] == 3 and stage["errors"] == 0


def test_a_wrong_key_at_the_gateway_is_a_setup_error_for_load_as_for_run(gateway, tmp_path):
    wrong = "sk-not-the-master-key-77"
    model = {"base_url": gateway, "model": "smollm2", "api_key_env": "LOAD_GATEWAY_KEY"}
    proc = load(tmp_path, model, {"LOAD_GATEWAY_KEY": wrong})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "HTTP 400" in proc.stderr and "No connected db" in proc.stderr and "Traceback" not in proc.stderr
    assert wrong not in proc.stderr + proc.stdout
    store = Store(f"sqlite:///{tmp_path / 'l.db'}")
    (run,) = results.load_runs(store)
    assert run.status == "failed" and "No connected db" in results.models(store, run.id)[0].note
    store.close()
