"""The database schema: one SQLAlchemy table class per stored thing, and bringing an older database up to it."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import ClassVar

from sqlalchemy import Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Table, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.schema import DefaultClause


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    # Every model here is mapped to a real Table (never a select or join), which Core's insert/update take.
    __table__: ClassVar[Table]


class RunRow(Base):
    __tablename__ = "runs"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    plan_name: Mapped[str] = mapped_column(String(200))
    plan_path: Mapped[str] = mapped_column(String(1000), default="")
    plan_fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    plan_json: Mapped[str] = mapped_column(Text, default="{}")
    tag: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(
        String(20), default="running"
    )  # running | finished | stopped | interrupted | failed
    started_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    harness_version: Mapped[str] = mapped_column(String(40), default="")


class RunModelRow(Base):
    __tablename__ = "run_models"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    model: Mapped[str] = mapped_column(String(200))
    provider: Mapped[str] = mapped_column(String(40))
    api_model: Mapped[str] = mapped_column(String(200))
    base_url: Mapped[str] = mapped_column(String(1000), default="")
    price_input: Mapped[float] = mapped_column(Float, default=0.0)
    price_output: Mapped[float] = mapped_column(Float, default=0.0)
    # What a batched request paid per million tokens; NULL when the model was not batched.
    batch_price_input: Mapped[float | None] = mapped_column(Float, nullable=True)
    batch_price_output: Mapped[float | None] = mapped_column(Float, nullable=True)
    # What a cache-hit input token paid per million; NULL: no cached price (billed as input, or an older run).
    price_cached_input: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Why the model was stopped (fatal errors in a row: bad key, unknown model, unreachable); NULL when not.
    failure: Mapped[str | None] = mapped_column(Text, nullable=True)
    __table_args__ = (UniqueConstraint("run_id", "model"),)


class RunSuiteRow(Base):
    __tablename__ = "run_suites"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    suite: Mapped[str] = mapped_column(String(200))
    suite_hash: Mapped[str] = mapped_column(String(64))
    family: Mapped[str] = mapped_column(String(40), default="")
    grader: Mapped[str] = mapped_column(String(80), default="")
    items: Mapped[int | None] = mapped_column(Integer, nullable=True)
    __table_args__ = (UniqueConstraint("run_id", "suite"),)


class PromptRow(Base):
    """A rendered prompt, stored once per suite content and item, shared by models and runs."""

    __tablename__ = "prompts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    suite_hash: Mapped[str] = mapped_column(String(64))
    item_id: Mapped[str] = mapped_column(String(300))
    messages_json: Mapped[str] = mapped_column(Text)
    reference: Mapped[str] = mapped_column(Text, default="")
    # The item's own fields as JSON (a needle item's length and depth...), for export; NULL in older rows.
    fields_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    __table_args__ = (UniqueConstraint("suite_hash", "item_id"),)


class SampleRow(Base):
    __tablename__ = "samples"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"))
    model: Mapped[str] = mapped_column(String(200))
    suite: Mapped[str] = mapped_column(String(200))
    suite_hash: Mapped[str] = mapped_column(String(64))
    item_id: Mapped[str] = mapped_column(String(300))
    item_group: Mapped[str] = mapped_column(String(200), default="")
    sample_index: Mapped[int] = mapped_column(Integer, default=0)
    completion: Mapped[str] = mapped_column(Text, default="")
    reasoning: Mapped[str] = mapped_column(Text, default="")
    finish_reason: Mapped[str] = mapped_column(String(40), default="")
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    reasoning_tokens: Mapped[int] = mapped_column(Integer, default=0)
    latency_s: Mapped[float] = mapped_column(Float, default=0.0)
    ttft_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    served_model: Mapped[str] = mapped_column(String(200), default="")
    error: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    score: Mapped[float] = mapped_column(Float, default=0.0)
    passed: Mapped[bool] = mapped_column(Boolean, default=False)
    grade_reason: Mapped[str] = mapped_column(Text, default="")
    extracted: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    batched: Mapped[bool | None] = mapped_column(Boolean, nullable=True)  # answered through a Batch API
    # True: the server reported no usable token counts and they (and the cost) were estimated.
    # NULL on samples stored by a harness that did not record it.
    usage_estimated: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    # The functions the model called: a JSON list of {name, arguments, raw_arguments, id?, parse_error?};
    # NULL when it called none.
    tool_calls_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Of prompt_tokens, those the server read from its prompt cache (billed at the cached-input price);
    # NULL when the server did not say.
    cached_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Tool suites: what the answer was (call, no_call, bad_arguments, text_call, error); NULL elsewhere.
    tool_outcome: Mapped[str | None] = mapped_column(String(20), nullable=True)
    # Agent suites: the loop as JSON (messages, per-turn latency and tokens, why it stopped, final and goal state).
    transcript_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    __table_args__ = (
        UniqueConstraint("run_id", "model", "suite", "item_id", "sample_index", name="uq_sample"),
        Index("ix_samples_run_model_suite", "run_id", "model", "suite"),
    )


class CacheRow(Base):
    """Opt-in response cache: identical request (model, parameters, messages, sample) -> completion."""

    __tablename__ = "response_cache"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    completion_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)


class LeaseRow(Base):
    """Who is executing a plan (or one shard of it) on this database now; see harness/engine/lease.py."""

    __tablename__ = "leases"
    key: Mapped[str] = mapped_column(String(120), primary_key=True)  # "<plan fingerprint> <shard or *>"
    plan_fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    shard: Mapped[str] = mapped_column(String(40))
    run_id: Mapped[str] = mapped_column(String(64), default="")
    owner: Mapped[str] = mapped_column(String(64))  # a random token per holding process
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    since: Mapped[datetime] = mapped_column(DateTime)
    heartbeat: Mapped[datetime] = mapped_column(DateTime)


class LoadRunRow(Base):
    """One `harness load` invocation: a plan's models under a profile of stages."""

    __tablename__ = "load_runs"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    plan_name: Mapped[str] = mapped_column(String(200), index=True)
    plan_path: Mapped[str] = mapped_column(String(1000), default="")
    tag: Mapped[str] = mapped_column(String(200), default="")
    profile_json: Mapped[str] = mapped_column(Text, default="{}")
    status: Mapped[str] = mapped_column(String(20), default="running")  # running | finished | stopped
    started_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class LoadModelRow(Base):
    """A model of a load run, with the capacity its SLO search found (null: not searched or none met)."""

    __tablename__ = "load_models"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    load_run_id: Mapped[str] = mapped_column(ForeignKey("load_runs.id"), index=True)
    model: Mapped[str] = mapped_column(String(200))
    api_model: Mapped[str] = mapped_column(String(200), default="")
    capacity_concurrency: Mapped[int | None] = mapped_column(Integer, nullable=True)
    capacity_rate: Mapped[float | None] = mapped_column(Float, nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")
    __table_args__ = (UniqueConstraint("load_run_id", "model"),)


class LoadStageRow(Base):
    """One stage of one model: its target, its statistics (JSON) and the headline figures as columns."""

    __tablename__ = "load_stages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    load_run_id: Mapped[str] = mapped_column(ForeignKey("load_runs.id"), index=True)
    model: Mapped[str] = mapped_column(String(200))
    stage_index: Mapped[int] = mapped_column(Integer)
    concurrency: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rate: Mapped[float | None] = mapped_column(Float, nullable=True)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    error_rate: Mapped[float | None] = mapped_column(Float, nullable=True)
    ttft_p99: Mapped[float | None] = mapped_column(Float, nullable=True)
    latency_p99: Mapped[float | None] = mapped_column(Float, nullable=True)
    meets_slo: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    probe: Mapped[bool] = mapped_column(Boolean, default=False)  # run by the capacity search
    stats_json: Mapped[str] = mapped_column(Text, default="{}")


class LoadRequestRow(Base):
    """One measured request of a stage (times in seconds; null when not measured)."""

    __tablename__ = "load_requests"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    stage_id: Mapped[int] = mapped_column(ForeignKey("load_stages.id"), index=True)
    sent_at: Mapped[float] = mapped_column(Float)
    latency: Mapped[float | None] = mapped_column(Float, nullable=True)
    ttft: Mapped[float | None] = mapped_column(Float, nullable=True)
    tpot: Mapped[float | None] = mapped_column(Float, nullable=True)
    input_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    output_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(String(20), default="")


class BatchRow(Base):
    """One provider batch of a run: its ids are stored before anything waits on it (engine/batch.py)."""

    __tablename__ = "batches"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    model: Mapped[str] = mapped_column(String(200))
    round: Mapped[int] = mapped_column(Integer, default=1)  # 1 = first try; 2.. = retries of failed lines
    state: Mapped[str] = mapped_column(String(20), default="preparing")  # preparing, uploaded, then the provider's
    collected: Mapped[bool] = mapped_column(Boolean, default=False)  # its results are stored
    input_file_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    batch_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    output_file_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    error_file_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    n_requests: Mapped[int] = mapped_column(Integer, default=0)
    n_completed: Mapped[int] = mapped_column(Integer, default=0)
    n_failed: Mapped[int] = mapped_column(Integer, default=0)
    estimated_cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=_now)


class BatchRequestRow(Base):
    """Which samples a batch carries: a sample in an uncollected batch is in flight, never sent again."""

    __tablename__ = "batch_requests"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch: Mapped[int] = mapped_column(ForeignKey("batches.id"), index=True)
    suite: Mapped[str] = mapped_column(String(200))
    item_id: Mapped[str] = mapped_column(String(300))
    sample_index: Mapped[int] = mapped_column(Integer, default=0)


def _add_missing_columns(engine) -> None:
    """Bring a database written by an older harness up to the current schema.

    New tables are made by `create_all`; a column added to an existing table is added here with
    ALTER TABLE ... ADD COLUMN (portable SQL), so an old database keeps its runs. Every column added
    after the first release must therefore be nullable or carry a `server_default`.
    """
    from sqlalchemy import inspect, text

    inspector = inspect(engine)
    existing_tables = set(inspector.get_table_names())
    statements = []
    for table in Base.metadata.sorted_tables:
        if table.name not in existing_tables:
            continue
        present = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            kind = column.type.compile(dialect=engine.dialect)
            default = ""
            if isinstance(column.server_default, DefaultClause):  # every server_default here is one
                arg = column.server_default.arg
                default = " DEFAULT " + (f"'{arg}'" if isinstance(arg, str) else str(getattr(arg, "text", arg)))
            statements.append(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}{default}")
    if statements:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
