"""Read-only Core queries the report and the checks need beyond Store's API (portable SQL, streamed rows)."""

from __future__ import annotations

from typing import Iterator

from sqlalchemy import and_, case, func, select

from harness.store import Store
from harness.store.tables import PromptRow, RunModelRow, RunRow, RunSuiteRow, SampleRow

SAMPLE_COLUMNS = (
    SampleRow.model,
    SampleRow.suite,
    SampleRow.item_id,
    SampleRow.item_group,
    SampleRow.sample_index,
    SampleRow.completion,
    SampleRow.reasoning,
    SampleRow.finish_reason,
    SampleRow.prompt_tokens,
    SampleRow.completion_tokens,
    SampleRow.reasoning_tokens,
    SampleRow.latency_s,
    SampleRow.ttft_s,
    SampleRow.served_model,
    SampleRow.error,
    SampleRow.attempts,
    SampleRow.cost_usd,
    SampleRow.score,
    SampleRow.passed,
    SampleRow.grade_reason,
    SampleRow.extracted,
    PromptRow.messages_json,
    PromptRow.reference,
    SampleRow.batched,
    SampleRow.tool_calls_json,
    SampleRow.tool_outcome,
    SampleRow.transcript_json,
)


def max_sample_id(store: Store, run_id: str) -> int:
    """The newest sample id of a run: pages and counts stop there, so a run that is still writing
    gives counts and pages that agree."""
    with store.engine.connect() as conn:
        return conn.execute(select(func.max(SampleRow.id)).where(SampleRow.run_id == run_id)).scalar() or 0


def cell_counts(store: Store, run_id: str, max_id: int) -> dict[tuple[str, str], tuple[int, int, float]]:
    """(model, suite) -> (samples, passed samples, sum of scores), in (model, suite) order."""
    q = (
        select(SampleRow.model, SampleRow.suite, SampleRow.passed, func.count(), func.sum(SampleRow.score))
        .where(SampleRow.run_id == run_id, SampleRow.id <= max_id)
        .group_by(SampleRow.model, SampleRow.suite, SampleRow.passed)
        .order_by(SampleRow.model, SampleRow.suite)
    )
    out: dict[tuple[str, str], list] = {}
    with store.engine.connect() as conn:
        for model, suite, passed, n, score in conn.execute(q):
            acc = out.setdefault((model, suite), [0, 0, 0.0])
            acc[0] += n
            acc[2] += float(score or 0.0)
            if passed:
                acc[1] += n
    return {k: (v[0], v[1], v[2]) for k, v in out.items()}


def stream_samples(
    store: Store, run_id: str, max_id: int, *, model: str | None = None, suite: str | None = None, batch: int = 2000
) -> Iterator:
    """A run's samples (up to sample id `max_id`) with their prompt and reference, as Core rows of
    SAMPLE_COLUMNS in the order of `Store.samples` (model, suite, insertion), `batch` rows a fetch."""
    q = (
        select(*SAMPLE_COLUMNS)
        .select_from(SampleRow)
        .outerjoin(
            PromptRow, and_(PromptRow.suite_hash == SampleRow.suite_hash, PromptRow.item_id == SampleRow.item_id)
        )
        .where(SampleRow.run_id == run_id, SampleRow.id <= max_id)
        .order_by(SampleRow.model, SampleRow.suite, SampleRow.id)
    )
    if model is not None:
        q = q.where(SampleRow.model == model)
    if suite is not None:
        q = q.where(SampleRow.suite == suite)
    with store.engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=batch).execute(q)
        yield from result


def runs_overview(store: Store) -> list[dict]:
    """Every run, newest first, with its models, suites and sample count (four queries in all)."""
    with store.engine.connect() as conn:
        runs = conn.execute(
            select(
                RunRow.id, RunRow.plan_name, RunRow.tag, RunRow.status, RunRow.started_at, RunRow.finished_at
            ).order_by(RunRow.started_at.desc(), RunRow.id.desc())
        ).all()
        models: dict[str, list[str]] = {}
        for run_id, model in conn.execute(select(RunModelRow.run_id, RunModelRow.model).order_by(RunModelRow.id)):
            models.setdefault(run_id, []).append(model)
        suites: dict[str, list[str]] = {}
        for run_id, suite in conn.execute(select(RunSuiteRow.run_id, RunSuiteRow.suite).order_by(RunSuiteRow.id)):
            suites.setdefault(run_id, []).append(suite)
        counts = dict(conn.execute(select(SampleRow.run_id, func.count()).group_by(SampleRow.run_id)).all())
    return [
        dict(
            id=r.id,
            plan=r.plan_name,
            tag=r.tag,
            status=r.status,
            started=r.started_at,
            finished=r.finished_at,
            models=models.get(r.id, []),
            suites=suites.get(r.id, []),
            samples=counts.get(r.id, 0),
        )
        for r in runs
    ]


def sample_counts(store: Store, run_ids: list[str]) -> dict[str, int]:
    if not run_ids:
        return {}
    with store.engine.connect() as conn:
        q = select(SampleRow.run_id, func.count()).where(SampleRow.run_id.in_(run_ids)).group_by(SampleRow.run_id)
        return dict(conn.execute(q).all())


def served_counts(store: Store, run_id: str) -> list[tuple[str, str, str, int, int]]:
    """(model, suite, served model, samples, failed samples) of a run, one row per served name."""
    q = (
        select(
            SampleRow.model,
            SampleRow.suite,
            SampleRow.served_model,
            func.count(),
            func.sum(case((SampleRow.error != "", 1), else_=0)),
        )
        .where(SampleRow.run_id == run_id)
        .group_by(SampleRow.model, SampleRow.suite, SampleRow.served_model)
    )
    with store.engine.connect() as conn:
        return [(m, su, sv or "", int(n or 0), int(e or 0)) for m, su, sv, n, e in conn.execute(q)]
