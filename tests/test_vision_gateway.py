"""Images through LiteLLM's proxy: content parts must reach the server unchanged, streamed and not.

The fake server behind the proxy decodes every image and answers from what it holds (the answer
the bundled suites' generator wrote into each PNG), so a full score proves the bytes arrived intact.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from support.servers import litellm_executable, start_litellm, stop
from support.vision import REPO, request_images, seeing_responder, write_mmmu

MASTER_KEY = "sk-harness-vision-gateway-0123456789"


@pytest.fixture(scope="module")
def vision_gateway(tmp_path_factory):
    from support.fakeserver import FakeOpenAIServer, Faults, ServerState

    litellm_executable()  # skips, saying why, when .ci/run has not prepared LiteLLM's environment
    backend = FakeOpenAIServer(ServerState(responder=seeing_responder, faults=Faults()))
    backend.start()
    folder = tmp_path_factory.mktemp("litellm-vision")
    config = {
        "model_list": [
            {
                "model_name": "qwen3-vl",
                "litellm_params": {"model": "openai/qwen3-vl-plus", "api_base": backend.base_url, "api_key": "none"},
            }
        ],
        "litellm_settings": {"num_retries": 0},
        "general_settings": {"master_key": MASTER_KEY},
    }
    (folder / "cfg.yaml").write_text(yaml.safe_dump(config))
    proc, url = start_litellm(folder / "cfg.yaml")
    try:
        yield url, backend
    finally:
        stop(proc)
        backend.stop()


@pytest.mark.parametrize("stream", [False, True])
def test_image_suites_through_litellm_score_as_direct(vision_gateway, tmp_path, stream):
    url, backend = vision_gateway
    seen = []
    backend.state.responder = lambda model, messages: (
        seen.append(request_images(messages)),
        seeing_responder(model, messages),
    )[1]
    write_mmmu(tmp_path / "MMMU" / "Art" / "validation-0.parquet", n=4)
    plan = {
        "name": "vision-gateway",
        "models": {
            "vl": {
                "provider": "openai",
                "model": "qwen3-vl",
                "base_url": url,
                "api_key_env": "VISION_GATEWAY_KEY",
                "stream": stream,
            }
        },
        "suites": [
            {"chart-read": {"first": 4}},
            {"doc-read": {"limit": 4}},
            {"diagram-mcq": {"first": 4}},
            {"mmmu": {"data": str(tmp_path / "MMMU")}},
        ],
    }
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(plan))
    env = {**os.environ, "PYTHONPATH": str(REPO), "VISION_GATEWAY_KEY": MASTER_KEY}
    db = f"sqlite:///{tmp_path}/h.db"
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "run", "p.yaml", "--db", db],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    out = subprocess.run(
        [sys.executable, "-m", "harness", "export", "--db", db],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    rows = [json.loads(x) for x in out.stdout.splitlines()]
    assert len(rows) == 4 + 4 + 4 + 3
    assert all(not r["error"] and r["score"] == 1.0 for r in rows), [
        (r["item_id"], r["completion"], r["error"]) for r in rows if r["score"] != 1.0
    ]
    assert len(seen) == len(rows) and all(len(s) == 1 and s[0]["position"] == 1 for s in seen)  # after the text part
