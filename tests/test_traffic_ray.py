"""Pairwise judging on Ray: each worker's shard judges its items, the incumbent is asked once per item, verdicts stored once."""

from __future__ import annotations

import pytest
import yaml

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]' (it is in the test extra)")

from support.judges import answer, traffic_responder  # noqa: E402
from support.judges import write_traffic_log as _log  # noqa: E402


@pytest.mark.slow
def test_pairwise_on_two_ray_workers(tmp_path, fake_server, pg_url, monkeypatch, ray_two_cpus):
    from harness.engine.executors import RayOptions
    from harness.engine.runs import execute_plan
    from harness.plan import load_plan
    from harness.store import Store
    from harness.traffic.importer import import_log
    from harness.traffic.pairwise import pairwise_report

    n = 24
    _log(tmp_path / "log.jsonl", n)
    import_log(tmp_path / "log.jsonl", "tickets", tmp_path / "suites")
    monkeypatch.setenv("HARNESS_SUITES_PATH", str(tmp_path / "suites"))
    answers = {
        "inc": {i: answer(i, 5) + " (inc)" for i in range(n)},
        "cand": {i: answer(i, 6 if i % 2 else 4) for i in range(n)},
    }
    fake_server.state.responder = traffic_responder(answers, {"judge": "truthful"})
    endpoint = {"provider": "openai", "base_url": fake_server.base_url, "price": {"input": 1.0, "output": 1.0}}
    plan = {
        "models": {"inc": endpoint, "cand": endpoint},
        "judges": {"judge": endpoint},
        "incumbent": "inc",
        "suites": ["tickets"],
    }
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    store = Store(pg_url)
    result = execute_plan(load_plan(tmp_path / "plan.yaml"), store, ray=RayOptions(workers=2))
    assert result.status == "finished"
    assert fake_server.state.requests == 2 * n + 2 * n  # each model once per item, the judge twice per pair
    (r,) = pairwise_report(store, result.run_id).results
    assert (r.n, r.wins, r.losses, r.errors) == (n, n // 2, n // 2, 0)
