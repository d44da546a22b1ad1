"""Images on the Ray executor: each worker prepares the suites (checks the images) and sends the same parts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from support.vision import seeing_responder

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]' (it is in the test extra)")

from harness.engine.executors import RayOptions  # noqa: E402
from harness.engine.runs import execute_plan  # noqa: E402
from harness.plan import load_plan  # noqa: E402
from harness.store import Store  # noqa: E402


def test_image_suites_on_two_ray_workers(ray_two_cpus, tmp_path: Path, fake_server):
    fake_server.state.responder = seeing_responder
    path = tmp_path / "plan.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "ray-vision",
                "suites": [{"chart-read": {"first": 6}}, {"diagram-mcq": {"first": 4}}],
                "models": {"vl": {"provider": "openai", "base_url": fake_server.base_url, "model": "qwen3-vl-plus"}},
            }
        )
    )
    store = Store(f"sqlite:///{tmp_path / 'h.db'}")  # SQLite: fine for a Ray instance on this machine
    try:
        result = execute_plan(load_plan(path), store, ray=RayOptions(workers=2))
        samples = list(store.samples(result.run_id))
    finally:
        store.close()
    assert result.status == "finished" and len(samples) == 10
    assert all(s.passed and not s.error for s in samples)  # every image arrived whole at the server
    assert fake_server.state.requests == 10
