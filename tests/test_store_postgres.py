"""The store on a real PostgreSQL server: what SQLite does not show (an empty database, the CLI end to end,
resume after a crash, duplicate rows, and text PostgreSQL is stricter about than SQLite).

A throwaway server (initdb + pg_ctl, listening only on a unix socket in a temporary folder) serves
the whole session; each test gets an empty database of its own. The SQLite tests that must hold on
PostgreSQL too (a graded run, the response cache, a batch whose id a crash lost, `harness compare`
across runs, report pagination, the run lease) are parametrized over both databases where they are
written (`support.postgres.on_both_databases`), so their assertions are reused, not copied.

Needs the PostgreSQL server binaries (Debian: apt-get install postgresql) and the psycopg driver
(pip install -e '.[test]'); without them every test here is skipped, saying which is missing.
"""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest
import yaml
from support.cli import harness, invoke
from support.plans import oracle_responder
from support.report_data import make_load_run

from harness.analysis.summary import summarize_run
from harness.engine.runs import execute_plan
from harness.errors import HarnessError
from harness.plan import load_plan
from harness.store import RunModelInfo, RunSuiteInfo, SampleRecord, Store

TABLES = {
    "runs",
    "run_models",
    "run_suites",
    "prompts",
    "samples",
    "response_cache",
    "batches",
    "batch_requests",
    "leases",
    "load_runs",
    "load_models",
    "load_stages",
    "load_requests",
}


pytestmark = pytest.mark.postgres  # the throwaway server (`pg_server`, `pg_url`) is conftest's


def record(run_id: str, item: str, **fields) -> SampleRecord:
    values = dict(
        run_id=run_id,
        model="m",
        suite="s",
        suite_hash="h",
        item_id=item,
        item_group="",
        sample_index=0,
        completion="x",
        reasoning="",
        finish_reason="stop",
        prompt_tokens=1,
        completion_tokens=1,
        reasoning_tokens=0,
        latency_s=0.1,
        ttft_s=None,
        served_model="m",
        error="",
        attempts=1,
        cost_usd=0.0,
        score=1.0,
        passed=True,
        grade_reason="",
        extracted="x",
    )
    return SampleRecord(**{**values, **fields})


# -- schema --------------------------------------------------------------------------------------


def test_schema_is_created_on_an_empty_database(pg_url):
    from sqlalchemy import inspect

    store = Store(pg_url)
    try:
        assert store.engine.dialect.name == "postgresql"
        inspector = inspect(store.engine)
        assert set(inspector.get_table_names()) == TABLES
        uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints("samples")}
        assert ("run_id", "model", "suite", "item_id", "sample_index") in uniques
        assert store.runs() == [] and store.suites_with_prompts(["h"]) == set()
        with pytest.raises(HarnessError, match="no runs in"):
            store.resolve_run(None)
    finally:
        store.close()
    again = Store(pg_url)  # a second open finds the tables and leaves them be
    assert set(inspect(again.engine).get_table_names()) == TABLES
    again.close()


def test_processes_opening_an_empty_database_at_once_all_succeed(pg_url):
    """Shards started together on a new database all create the tables: PostgreSQL makes all but
    one fail with a unique violation in its catalog, and the store tries again."""
    errors, barrier = [], threading.Barrier(4)

    def open_store():
        barrier.wait()
        try:
            Store(pg_url).close()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []


# -- the CLI end to end --------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_run_resume_and_every_reader_on_postgres(tmp_path, fake_server, pg_url, monkeypatch):
    """`harness run --db postgresql+psycopg://...` as a user runs it, a crash and the resume that
    requests only what was lost, then runs/export/compare/check/report reading the same database."""
    good = oracle_responder(["math-word", "zh-mcq"], wrong={"math-word/0"})
    poor = oracle_responder(["math-word", "zh-mcq"], wrong={"math-word/0", "math-word/1", "math-word/2"})
    fake_server.state.responder = lambda model, msgs: (good if model == "good" else poor)(model, msgs)
    models = {
        name: {"provider": "openai", "base_url": fake_server.base_url, "model": name, "concurrency": 4}
        for name in ("good", "poor")
    }
    plan = {"name": "pg-cli", "models": models, "suites": [{"math-word": {"first": 4}}, {"zh-mcq": {"limit": 2}}]}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(plan))
    total = 2 * (4 + 2)

    proc = harness("run", "p.yaml", "--db", pg_url, "--no-report", cwd=tmp_path)  # the report: below
    assert proc.returncode == 0, proc.stderr
    assert "75.0" in proc.stdout and "25.0" in proc.stdout  # math-word: good 3 of 4, poor 1 of 4
    assert f"stored in {pg_url.split('?')[0]}" in proc.stdout
    assert fake_server.state.requests == total

    # A crash before these samples were committed: the rerun resumes the run and asks for them alone.
    store = Store(pg_url)
    run_id = store.resolve_run(None)
    from sqlalchemy import delete, update

    from harness.store import RunRow, SampleRow

    with store.engine.begin() as conn:
        lost = conn.execute(delete(SampleRow).where(SampleRow.suite == "zh-mcq")).rowcount
        conn.execute(update(RunRow).values(status="running", finished_at=None))
    assert lost == 4
    resumed = invoke("run", tmp_path / "p.yaml", "--db", pg_url, "--no-report")
    assert f"run {run_id} resumed" in resumed.output
    assert fake_server.state.requests == total + lost
    assert sorted(Counter(fake_server.state.successes.values()).items()) == [(1, total - lost), (2, lost)]
    assert store.count_samples(run_id) == total and store.run(run_id).status == "finished"
    store.close()

    # Every reader, with the database named by HARNESS_DB instead of --db.
    monkeypatch.setenv("HARNESS_DB", pg_url)
    (listed,) = json.loads(invoke("runs", "list", "--json").output)
    assert (listed["run"], listed["samples"], listed["status"], listed["plan"]) == (run_id, total, "finished", "pg-cli")
    assert "zh-mcq" in invoke("runs", "show").output
    rows = [json.loads(line) for line in invoke("export", run_id[:15]).output.splitlines()]
    assert len(rows) == total and sum(r["score"] for r in rows if r["model"] == "good") == 5
    summary = summarize_run(Store(pg_url), run_id)
    assert summary.cell("good", "math-word").mean == 0.75 and summary.cell("poor", "zh-mcq").mean == 1.0
    (math,) = [c for c in json.loads(invoke("compare", "--json", "--suite", "math-word").output)["comparisons"]]
    assert (math["a"]["model"], math["b"]["model"], math["discordant_a"], math["discordant_b"]) == (
        "good",
        "poor",
        2,
        0,
    )
    assert json.loads(invoke("check", "--json").output)["run"]["run"] == run_id
    report = invoke("report", run_id, "--out", tmp_path / "site").output
    page = tmp_path / "site" / run_id / "index.html"
    assert str(page) in report
    html = page.read_text("utf-8")
    assert "leaderboard" in html and "good" in html and "poor" in html and "zh-mcq" in html


def test_errors_name_the_database_on_one_line_without_its_password(pg_url):
    bad = pg_url.replace("postgres@", "postgres:s3cret-pw@").replace("/harness_", "/nosuchdb_")
    proc = harness("runs", "list", "--db", bad)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot open the database" in lines[0] and "does not exist" in lines[0], proc.stderr
    assert "s3cret-pw" not in proc.stderr and "postgres:***@" in lines[0]


# -- unique keys ---------------------------------------------------------------------------------


def test_storing_the_same_rows_twice_is_harmless(pg_url):
    store = Store(pg_url)
    run_id = store.start_run(plan_name="p", plan_path="", plan_fingerprint="f", plan={})
    models = [RunModelInfo("m", "openai", "m", "", 1.0, 2.0)]
    suite = RunSuiteInfo("s", "h", "math", "exact", 2)
    for _ in range(2):
        store.record_models(run_id, models)
        store.record_suite(run_id, suite)
        store.record_prompts("h", [("a", "[]", "1"), ("b", "[]", "2")])
        store.cache_put("k", {"text": "x"})
        store.save_samples([record(run_id, "a")])
    store.save_samples([record(run_id, "b"), record(run_id, "b", completion="a later copy")])  # within one batch
    assert store.run_models(run_id) == models and store.run_suites(run_id) == [suite]
    assert store.prompts("h") == {"a": ("[]", "1"), "b": ("[]", "2")}
    assert store.cache_get("k") == {"text": "x"}
    assert store.done_keys(run_id) == {("m", "s", "a", 0), ("m", "s", "b", 0)}
    assert [s.completion for s in store.samples(run_id)] == ["x", "x"]
    with pytest.raises(HarnessError, match="changed since the run started"):
        store.record_suite(run_id, RunSuiteInfo("s", "h2", "math", "exact", 2))
    store.close()


# -- text PostgreSQL is stricter about than SQLite -----------------------------------------------


def test_nul_characters_and_overlong_names_from_a_provider_are_stored(tmp_path, fake_server, pg_url):
    """SQLite stores any string; PostgreSQL rejects NUL in text and values longer than a VARCHAR.
    A model that answers with a NUL and a provider reporting a very long served-model name must
    not stop a run: the answer keeps everything but the NUL, the name its start and a digest."""
    answers = oracle_responder(["math-word"])
    fake_server.state.responder = lambda model, msgs: answers(model, msgs) + "\x00"
    fake_server.state.served_model = lambda model: "provider/" + "x" * 300
    (tmp_path / "p.yaml").write_text(
        yaml.safe_dump(
            {
                "models": {"m": {"provider": "openai", "base_url": fake_server.base_url, "model": "m"}},
                "suites": [{"math-word": {"limit": 3}}],
            }
        )
    )
    store = Store(pg_url)
    result = execute_plan(load_plan(tmp_path / "p.yaml"), store)
    assert result.status == "finished"
    samples = list(store.samples(result.run_id))
    assert len(samples) == 3 and all(s.passed for s in samples)
    assert all(s.completion.endswith("\ufffd") and "\x00" not in s.completion for s in samples)
    served = {s.served_model for s in samples}
    assert len(served) == 1 and len(next(iter(served))) == 200 and next(iter(served)).startswith("provider/xxx")
    store.close()


def test_group_labels_too_long_for_their_column_stay_distinct(pg_url):
    store = Store(pg_url)
    run_id = store.start_run(plan_name="p" * 300, plan_path="", plan_fingerprint="f", plan={}, tag="t" * 250)
    passage = "A long shared passage. " * 20
    store.save_samples(
        [
            record(run_id, "a", item_group=passage + "one"),
            record(run_id, "b", item_group=passage + "two"),
            record(run_id, "c", item_group=passage + "one"),
        ]
    )
    groups = [s.item_group for s in store.samples(run_id)]
    assert all(len(g) == 200 for g in groups) and groups[0] == groups[2] != groups[1]
    info = store.run(run_id)
    assert len(info.plan_name) == 200 and len(info.tag) == 200
    store.close()


def test_names_too_long_for_a_key_are_refused_before_anything_is_recorded(tmp_path, fake_server, pg_url):
    long_name = "m" * 201  # model names are keys of every sample: shortening one would merge two models
    (tmp_path / "p.yaml").write_text(
        yaml.safe_dump(
            {
                "models": {long_name: {"provider": "openai", "base_url": fake_server.base_url}},
                "suites": [{"math-word": {"limit": 2}}],
            }
        )
    )
    store = Store(pg_url)
    with pytest.raises(
        HarnessError, match=r"model name 'm+\.\.\.' is 201 characters long; postgresql stores at most 200"
    ):
        execute_plan(load_plan(tmp_path / "p.yaml"), store)
    assert store.runs() == [] and fake_server.state.requests == 0
    run_id = store.start_run(plan_name="p", plan_path="", plan_fingerprint="f", plan={})
    with pytest.raises(HarnessError, match="item id .* is 301 characters long"):
        store.save_samples([record(run_id, "i" * 301)])
    with pytest.raises(HarnessError, match="NUL character"):
        store.save_samples([record(run_id, "a\x00b")])
    assert store.count_samples(run_id) == 0
    store.close()


def test_load_runs_are_stored_read_back_and_checked(pg_url):
    """`harness load` results on PostgreSQL: stages, per-request rows, the p99 check across runs."""
    from harness.load import check
    from harness.store import loads as results

    store = Store(pg_url)
    try:
        first, second = make_load_run(store), make_load_run(store)
        stored = results.stages(store, second)
        assert len(stored) == 8 and len(results.stage_requests(store, stored[0].id)) == 120
        assert {m.model for m in results.models(store, first)} == {s.model for s in stored}
        result = check.check_load(store, None)
        assert result.previous.id == first and len(result.comparisons) == 16 and not result.regressions
    finally:
        store.close()
