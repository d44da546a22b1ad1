"""A scheduled run never waits past its bound on a stuck provider batch: it leaves the batch waiting,
gives back the lease and exits; the next scheduled start collects it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml
from sqlalchemy import func, select

from harness import schedule as sch
from harness.store import LeaseRow, Store
from harness.store.batches import list_batches

REPO = Path(__file__).resolve().parent.parent


def write_plan(tmp_path, server) -> Path:
    folder = tmp_path / "sums"
    folder.mkdir()
    (folder / "suite.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "sums",
                "version": 1,
                "data": "items.jsonl",
                "reference_field": "answer",
                "template": "prompt.j2",
                "grader": {"name": "numeric"},
            }
        )
    )
    (folder / "prompt.j2").write_text("What is {{ a }} + 1?")
    (folder / "items.jsonl").write_text("".join(f'{{"id": "s{i}", "a": {i}, "answer": "{i + 1}"}}\n' for i in range(4)))
    plan = {
        "name": "scheduled-batches",
        "models": {"m": {"provider": "openai", "base_url": server.base_url, "model": "b", "batch": True}},
        "suites": [str(folder)],
    }
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    return path


def test_a_scheduled_run_leaves_a_stuck_batch_waiting_releases_the_lease_and_exits(tmp_path, fake_server):
    fake_server.state.batch.hold = True  # the provider never finishes the batch
    db_url = f"sqlite:///{tmp_path / 'h.db'}"
    schedule = sch.build_schedule(
        str(write_plan(tmp_path, fake_server)),
        every="daily",
        db_url=db_url,
        out_dir=str(tmp_path / "reports"),
        workdir=str(tmp_path),
        batch_wait_s=1,
    )
    argv = schedule.argv()
    assert argv[-2:] == ["--batch-wait", "1"] and "--batch-wait 1" in schedule.command()
    env = {**os.environ, "PYTHONPATH": str(REPO), "HARNESS_BATCH_POLL_S": "0.05"}

    first = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert first.returncode in (0, 1), first.stderr  # exits (1 only if the check found something)
    assert "Traceback" not in first.stderr
    store = Store(db_url)
    run_id = store.resolve_run(None)
    assert store.run(run_id).status == "waiting"
    assert {b.state for b in list_batches(store, run_id)} == {"in_progress"}
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(LeaseRow)).scalar() == 0  # the lease is given back
    assert fake_server.state.batch.created == 1

    fake_server.state.batch.hold = False
    second = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert second.returncode in (0, 1), second.stderr
    assert store.resolve_run(None) == run_id and store.run(run_id).status == "finished"
    assert fake_server.state.batch.created == 1 and store.count_samples(run_id) == 4
    store.close()
