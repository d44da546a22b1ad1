"""Persist runs and graded samples with SQLAlchemy (SQLite file by default, any SQLAlchemy URL).

Only portable SQLAlchemy constructs are used (no SQLite-only SQL), so the same code serves
PostgreSQL (tests/test_store_postgres.py runs the store on a real server). Each finished sample
is committed as soon as it is graded: a crash loses nothing that finished. API keys never reach
this module: plans hold only the names of env variables.

Every SQL statement of the project is under this package: `Store` (runs, samples, prompts, cache),
`batches` (provider batches), `leases` (who executes a plan), `loads` (`harness load` results) and
`reports` (the report's and checks' aggregate queries); the rest calls their functions.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Iterator

from sqlalchemy import String, UniqueConstraint, create_engine, event, func, insert, select
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session

from harness.errors import HarnessError, redact, redact_secrets
from harness.records import ToolCall, tool_calls_from_json, tool_calls_json

# The table classes live in tables.py; other stages import them from here.
from harness.store.tables import (  # noqa: F401  # this module's own helpers, not for other stages
    Base,
    BatchRequestRow,
    BatchRow,
    CacheRow,
    LeaseRow,
    LoadModelRow,
    LoadRequestRow,
    LoadRunRow,
    LoadStageRow,
    PromptRow,
    RunModelRow,
    RunRow,
    RunSuiteRow,
    SampleRow,
    _add_missing_columns,
    _now,
)

DEFAULT_DB = "sqlite:///harness.db"


def default_db_url() -> str:
    return os.environ.get("HARNESS_DB") or DEFAULT_DB


@dataclass(frozen=True)
class SampleRecord:
    """One graded sample, as the engine hands it to the store and the store hands it back."""

    run_id: str
    model: str
    suite: str
    suite_hash: str
    item_id: str
    item_group: str
    sample_index: int
    completion: str
    reasoning: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    latency_s: float
    ttft_s: float | None
    served_model: str
    error: str
    attempts: int
    cost_usd: float
    score: float
    passed: bool
    grade_reason: str
    extracted: str
    batched: bool | None = False
    usage_estimated: bool | None = False
    tool_calls: tuple[ToolCall, ...] = ()  # stored as JSON in samples.tool_calls_json
    cached_tokens: int | None = None  # of prompt_tokens, read from the server's prompt cache; None: not reported
    tool_outcome: str | None = None  # tool suites: call | no_call | bad_arguments | text_call | error (text_calls.py)
    transcript_json: str | None = None  # agent suites: messages, per-turn figures, stop, final/expected state


_RECORD_FIELDS = tuple(SampleRecord.__dataclass_fields__)
# Fields stored under another column name (as JSON text).
_COLUMN_OF = {"tool_calls": "tool_calls_json"}


def _sample_row(record: SampleRecord) -> dict[str, Any]:
    row = dict(record.__dict__)
    row["tool_calls_json"] = tool_calls_json(row.pop("tool_calls"))
    return row


def _sample_record(values: Any) -> SampleRecord:
    fields = dict(zip(_RECORD_FIELDS, values))
    fields["tool_calls"] = tool_calls_from_json(fields["tool_calls"])
    return SampleRecord(**fields)


@dataclass(frozen=True)
class RunInfo:
    id: str
    plan_name: str
    plan_path: str
    plan_fingerprint: str
    tag: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    plan: dict


@dataclass(frozen=True)
class RunModelInfo:
    model: str
    provider: str
    api_model: str
    base_url: str
    price_input: float
    price_output: float
    batch_price_input: float | None = None  # per million tokens through a Batch API; None: not batched
    batch_price_output: float | None = None
    price_cached_input: float | None = None  # per million cache-hit input tokens; None: none set


@dataclass(frozen=True)
class RunSuiteInfo:
    suite: str
    suite_hash: str
    family: str
    grader: str
    items: int | None


def new_run_id() -> str:
    return _now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


class Store:
    def __init__(self, url: str | None = None, *, must_exist: bool = False):
        """`must_exist`: a command that only reads refuses a missing SQLite file instead of creating one."""
        self.url = url or default_db_url()
        try:
            self.engine = create_engine(self.url)
        except (ArgumentError, ImportError, ValueError) as exc:
            raise HarnessError(f"--db {self.url!r}: not a usable SQLAlchemy URL ({exc})") from None
        self.shown_url = self.engine.url.render_as_string(hide_password=True)  # for messages and logs
        dialect = self.engine.dialect.name
        path = self.engine.url.database
        if must_exist and dialect == "sqlite" and path and path != ":memory:" and not Path(path).is_file():
            self.engine.dispose()
            raise HarnessError(
                f"--db {self.shown_url}: no database at {path}; run `harness run` first, "
                f"or give --db the database your runs are in"
            )
        if dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._text_rules = _TextRules(dialect)
        for attempt in range(3):
            try:
                Base.metadata.create_all(self.engine)
                _add_missing_columns(self.engine)
                break
            except OperationalError as exc:
                raise HarnessError(f"--db {self.shown_url}: cannot open the database ({_one_line(exc.orig)})") from None
            except (IntegrityError, ProgrammingError) as exc:
                # Another process creating the same tables at this moment (PostgreSQL reports a
                # unique violation in its catalog, or "relation already exists"): its transaction
                # has committed by now, so the next create_all finds the tables and skips them.
                if attempt == 2:
                    raise HarnessError(
                        f"--db {self.shown_url}: cannot create the tables ({_one_line(exc.orig)})"
                    ) from None

    @property
    def in_memory(self) -> bool:
        """An in-memory SQLite database: no other process can open the same data."""
        url = self.engine.url
        return url.get_backend_name() == "sqlite" and (
            url.database in (None, "", ":memory:") or "mode=memory" in str(url)
        )

    def close(self) -> None:
        self.engine.dispose()

    def check_names(self, *, models: Iterable[str] = (), suites: Iterable[str] = ()) -> None:
        """Raise HarnessError if a model or suite name cannot be stored on this back end (call it
        before a run is recorded: these names are keys, so they are never shortened)."""
        self._text_rules.fit(RunModelRow.__table__, [{"model": m} for m in models])
        self._text_rules.fit(RunSuiteRow.__table__, [{"suite": s} for s in suites])

    # -- writing --------------------------------------------------------------------

    def start_run(
        self, *, plan_name: str, plan_path: str, plan_fingerprint: str, plan: dict, tag: str = "", version: str = ""
    ) -> str:
        run_id = new_run_id()
        row = dict(
            id=run_id,
            plan_name=plan_name,
            plan_path=plan_path,
            plan_fingerprint=plan_fingerprint,
            plan_json=json.dumps(plan, default=str),
            tag=tag,
            harness_version=version,
        )
        self._text_rules.fit(RunRow.__table__, [row])
        with Session(self.engine) as s, s.begin():
            s.add(RunRow(**row))
        return run_id

    def unfinished_run(self, plan_fingerprint: str) -> str | None:
        """The newest run of this plan that did not finish: rerunning the plan resumes it."""
        with Session(self.engine) as s:
            row = s.scalars(
                select(RunRow)
                .where(RunRow.plan_fingerprint == plan_fingerprint)
                .order_by(RunRow.started_at.desc())
                .limit(1)
            ).first()
            return row.id if row is not None and row.status != "finished" else None

    def mark_run(self, run_id: str, status: str) -> None:
        with Session(self.engine) as s, s.begin():
            row = s.get_one(RunRow, run_id)
            row.status = status
            row.finished_at = _now() if status == "finished" else None

    def record_models(self, run_id: str, models: Iterable[RunModelInfo]) -> None:
        with Session(self.engine) as s, s.begin():
            existing = set(s.scalars(select(RunModelRow.model).where(RunModelRow.run_id == run_id)))
            rows = [dict(m.__dict__) for m in models]
            self._text_rules.fit(RunModelRow.__table__, rows)
            for row in rows:
                if row["model"] not in existing:
                    s.add(RunModelRow(run_id=run_id, **row))

    def mark_model_failed(self, run_id: str, model: str, reason: str | None) -> None:
        """Record why a model was stopped (None clears it, when a resumed run gets through)."""
        with Session(self.engine) as s, s.begin():
            row = s.scalars(select(RunModelRow).where(RunModelRow.run_id == run_id, RunModelRow.model == model)).first()
            if row is not None:
                row.failure = redact(reason)[:2000] if reason else None

    def model_failures(self, run_id: str) -> dict[str, str]:
        """model -> why it was stopped, for the models of the run that were."""
        with Session(self.engine) as s:
            rows = s.execute(
                select(RunModelRow.model, RunModelRow.failure).where(
                    RunModelRow.run_id == run_id, RunModelRow.failure.is_not(None)
                )
            )
            return {model: failure or "" for model, failure in rows}  # never empty: selected IS NOT NULL

    def record_suite(self, run_id: str, info: RunSuiteInfo) -> None:
        fields = dict(info.__dict__)
        self._text_rules.fit(RunSuiteRow.__table__, [fields])
        info = RunSuiteInfo(**fields)
        with Session(self.engine) as s, s.begin():
            row = s.scalars(
                select(RunSuiteRow).where(RunSuiteRow.run_id == run_id, RunSuiteRow.suite == info.suite)
            ).first()
            if row is None:
                s.add(RunSuiteRow(run_id=run_id, **info.__dict__))
            elif row.suite_hash != info.suite_hash:
                raise HarnessError(
                    f"run {run_id}: suite '{info.suite}' changed since the run started (hash {row.suite_hash} -> "
                    f"{info.suite_hash}); start a new run with --new instead of resuming"
                )

    def record_prompts(self, suite_hash: str, prompts: Iterable[tuple[str, str, str]]) -> None:
        """Store (item_id, messages_json, reference) once per suite content."""
        self.save_batch([], prompts={suite_hash: list(prompts)})

    def save_samples(self, records: Iterable[SampleRecord]) -> None:
        """Commit finished samples in one transaction (a duplicate from a race is ignored)."""
        self.save_batch(list(records))

    def suites_with_prompts(self, suite_hashes: Iterable[str]) -> set[str]:
        """Which of these suite contents already have prompts stored (by an earlier run)."""
        table = PromptRow.__table__
        with self.engine.connect() as conn:
            return set(
                conn.scalars(select(table.c.suite_hash).where(table.c.suite_hash.in_(list(suite_hashes))).distinct())
            )

    def save_batch(
        self,
        records: list[SampleRecord],
        *,
        prompts: dict[str, list[tuple[str, ...]]] | None = None,
        cache: Iterable[tuple[str, str]] | None = None,
        new_suites: frozenset[str] = frozenset(),
    ) -> bool:
        """One transaction for what the engine has ready: new prompts (suite hash -> (item_id,
        messages_json, reference)), response-cache entries (key, completion_json) and samples.

        Core executemany rather than ORM objects: this runs for every batch of a run, and the
        ORM's unit-of-work bookkeeping would cost more than the inserts. A row another process
        stored first (shards, concurrent runs) is skipped, never an error. `new_suites`: suite
        hashes the caller knew to have no stored prompts, so their prompts are inserted unchecked.
        Returns False when a conflict made it fall back to one row per transaction.
        """
        rows = [_sample_row(r) for r in records]
        now = _now()
        for row in rows:
            row["created_at"] = now
            _redact_row(row)
        self._text_rules.fit(SampleRow.__table__, rows)
        prompts = {h: list(p) for h, p in (prompts or {}).items() if p}
        entries = {key: redact_secrets(value) for key, value in (cache or ())}
        if not (rows or prompts or entries):
            return True
        try:
            with self.engine.begin() as conn:
                for suite_hash, items in prompts.items():
                    self._insert_prompts(conn, suite_hash, items, check=suite_hash not in new_suites)
                if entries:
                    self._insert_cache(conn, entries)
                if rows:
                    conn.execute(insert(SampleRow.__table__), rows)
            return True
        except IntegrityError:
            pass
        # A conflict (rare: another writer got there first): one row per transaction, skipping duplicates.
        for suite_hash, items in prompts.items():
            for item in items:
                self._insert_ignoring_duplicates(lambda conn, i=item, h=suite_hash: self._insert_prompts(conn, h, [i]))
        for key, value in entries.items():
            self._insert_ignoring_duplicates(lambda conn, k=key, v=value: self._insert_cache(conn, {k: v}))
        for row in rows:
            self._insert_ignoring_duplicates(lambda conn, r=row: conn.execute(insert(SampleRow.__table__), [r]))
        return False

    def _insert_ignoring_duplicates(self, write) -> None:
        try:
            with self.engine.begin() as conn:
                write(conn)
        except IntegrityError:
            pass

    def _insert_prompts(self, conn, suite_hash: str, items: list[tuple[str, ...]], check: bool = True) -> None:
        table = PromptRow.__table__
        have = (
            set(
                conn.scalars(
                    select(table.c.item_id).where(
                        table.c.suite_hash == suite_hash, table.c.item_id.in_([i[0] for i in items])
                    )
                )
            )
            if check
            else set()
        )
        new = {}
        for item_id, messages_json, reference, *fields_json in items:  # fields_json: optional 4th value
            if item_id not in have and item_id not in new:
                new[item_id] = {
                    "suite_hash": suite_hash,
                    "item_id": item_id,
                    "messages_json": messages_json,
                    "reference": reference,
                    "fields_json": fields_json[0] if fields_json else None,
                }
        if new:
            rows = list(new.values())
            self._text_rules.fit(table, rows)
            conn.execute(insert(table), rows)

    def _insert_cache(self, conn, entries: dict[str, str]) -> None:
        table = CacheRow.__table__
        have = set(conn.scalars(select(table.c.key).where(table.c.key.in_(list(entries)))))
        rows = [{"key": k, "completion_json": v, "created_at": _now()} for k, v in entries.items() if k not in have]
        if rows:
            self._text_rules.fit(table, rows)
            conn.execute(insert(table), rows)

    def done_keys(self, run_id: str) -> set[tuple[str, str, str, int]]:
        with Session(self.engine) as s:
            q = select(SampleRow.model, SampleRow.suite, SampleRow.item_id, SampleRow.sample_index).where(
                SampleRow.run_id == run_id
            )
            return {(model, suite, item, index) for model, suite, item, index in s.execute(q)}

    def cache_get(self, key: str) -> dict | None:
        with Session(self.engine) as s:
            row = s.get(CacheRow, key)
            return json.loads(row.completion_json) if row else None

    def cache_put(self, key: str, completion: dict) -> None:
        self.save_batch([], cache=[(key, json.dumps(completion))])

    def cache_put_many(self, entries: Iterable[tuple[str, str]]) -> None:
        """Store (key, completion_json) pairs in the response cache; keys already there are kept."""
        self.save_batch([], cache=entries)

    # -- reading --------------------------------------------------------------------

    def resolve_run(self, run_id: str | None) -> str:
        """A run id, a unique prefix of one, 'latest', or None (= the latest run that stored a sample or
        submitted a provider batch: a run that failed before its first answer has nothing to show)."""
        with Session(self.engine) as s:
            if run_id in (None, "", "latest"):
                has_samples = select(SampleRow.id).where(SampleRow.run_id == RunRow.id).exists()
                has_batches = select(BatchRow.id).where(BatchRow.run_id == RunRow.id).exists()
                newest = (RunRow.started_at.desc(), RunRow.id.desc())
                rid = s.scalars(select(RunRow.id).where(has_samples | has_batches).order_by(*newest).limit(1)).first()
                if rid is None:
                    empty = s.scalars(select(RunRow.id).order_by(*newest).limit(1)).first()
                    if empty is not None:
                        raise HarnessError(
                            f"no run in {self.shown_url} has stored a sample yet (the latest, "
                            f"{empty}, has none): name a run, or run `harness run` first"
                        )
                    raise HarnessError(f"no runs in {self.shown_url} yet: run `harness run` first (or pass --db)")
                return rid
            if s.get(RunRow, run_id) is not None:
                return run_id
            matches = list(s.scalars(select(RunRow.id).where(RunRow.id.startswith(run_id))))
            if len(matches) == 1:
                return matches[0]
            if not matches:
                raise HarnessError(f"no run '{run_id}' in {self.shown_url} (see `harness runs list`)")
            raise HarnessError(f"run '{run_id}' is ambiguous: {', '.join(matches[:5])}")

    def runs(self, plan_name: str | None = None) -> list[RunInfo]:
        with Session(self.engine) as s:
            q = select(RunRow).order_by(RunRow.started_at, RunRow.id)
            if plan_name:
                q = q.where(RunRow.plan_name == plan_name)
            return [_run_info(r) for r in s.scalars(q)]

    def run(self, run_id: str) -> RunInfo:
        with Session(self.engine) as s:
            return _run_info(s.get_one(RunRow, self.resolve_run(run_id)))

    def run_models(self, run_id: str) -> list[RunModelInfo]:
        with Session(self.engine) as s:
            rows = s.scalars(select(RunModelRow).where(RunModelRow.run_id == run_id).order_by(RunModelRow.id))
            return [
                RunModelInfo(
                    r.model,
                    r.provider,
                    r.api_model,
                    r.base_url,
                    r.price_input,
                    r.price_output,
                    r.batch_price_input,
                    r.batch_price_output,
                    r.price_cached_input,
                )
                for r in rows
            ]

    def run_suites(self, run_id: str) -> list[RunSuiteInfo]:
        with Session(self.engine) as s:
            rows = s.scalars(select(RunSuiteRow).where(RunSuiteRow.run_id == run_id).order_by(RunSuiteRow.id))
            return [RunSuiteInfo(r.suite, r.suite_hash, r.family, r.grader, r.items) for r in rows]

    def samples(
        self, run_id: str, *, model: str | None = None, suite: str | None = None, batch: int = 2000
    ) -> Iterator[SampleRecord]:
        """Stream a run's samples in a stable order (model, suite, item, sample index)."""
        q = select(*[getattr(SampleRow, _COLUMN_OF.get(f, f)) for f in _RECORD_FIELDS]).where(
            SampleRow.run_id == run_id
        )
        if model:
            q = q.where(SampleRow.model == model)
        if suite:
            q = q.where(SampleRow.suite == suite)
        q = q.order_by(SampleRow.model, SampleRow.suite, SampleRow.id)
        with Session(self.engine) as s:
            for row in s.execute(q.execution_options(yield_per=batch)):
                yield _sample_record(row)

    def prompts(self, suite_hash: str, item_ids: Iterable[str] | None = None) -> dict[str, tuple[str, str]]:
        """item_id -> (messages_json, reference) for a suite content."""
        with Session(self.engine) as s:
            q = select(PromptRow.item_id, PromptRow.messages_json, PromptRow.reference).where(
                PromptRow.suite_hash == suite_hash
            )
            if item_ids is not None:
                q = q.where(PromptRow.item_id.in_(list(item_ids)))
            return {r[0]: (r[1], r[2]) for r in s.execute(q)}

    def item_fields(self, suite_hash: str) -> dict[str, dict]:
        """item_id -> the item's fields as stored with its prompt ({} for prompts stored without them)."""
        with Session(self.engine) as s:
            q = select(PromptRow.item_id, PromptRow.fields_json).where(PromptRow.suite_hash == suite_hash)
            return {r[0]: json.loads(r[1]) if r[1] else {} for r in s.execute(q)}

    def count_samples(self, run_id: str) -> int:
        with Session(self.engine) as s:
            return s.scalar(select(func.count()).select_from(SampleRow).where(SampleRow.run_id == run_id)) or 0


def _redact_row(row: dict) -> None:
    """No credential a server echoed reaches the database (nor, through it, reports and exports).

    Error texts lose bearer-looking tokens too; model-written text only the known key values,
    since a token-shaped string there may be what the model was asked to write.
    """
    for name in ("error", "grade_reason"):
        if row.get(name):
            row[name] = redact(row[name])
    for name in ("completion", "reasoning", "extracted", "tool_calls_json", "transcript_json"):
        if row.get(name):
            row[name] = redact_secrets(row[name])


def _run_info(r: RunRow) -> RunInfo:
    return RunInfo(
        r.id,
        r.plan_name,
        r.plan_path,
        r.plan_fingerprint,
        r.tag,
        r.status,
        r.started_at,
        r.finished_at,
        json.loads(r.plan_json or "{}"),
    )


def _one_line(err: Any) -> str:
    """A driver's message on one line (psycopg's connection errors span several)."""
    return " ".join(str(err).split())


# Names of key columns in messages about values a back end cannot store.
_KEY_NAMES = {"model": "model name", "suite": "suite name", "item_id": "item id"}


# A str from json.loads holds a valid surrogate pair as one code point, so any surrogate left is lone.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class _TextRules:
    """Make text storable on back ends stricter than SQLite, which stores any string in any column.

    PostgreSQL (like most servers) enforces VARCHAR lengths and cannot store NUL characters in text;
    a model's answer or a provider's served-model name can carry either. Free text (answers, served
    names, item groups, run labels) is adapted: NUL becomes U+FFFD and a value longer than its column
    keeps its start plus a digest of the whole, so distinct values stay distinct. Key columns (model,
    suite, item id) identify samples for resume and comparisons, so they are never altered: a value
    that does not fit is a HarnessError naming it.

    On every back end, including SQLite: a lone UTF-16 surrogate (JSON allows "\\ud800" on its own,
    e.g. an emoji cut in half by a server) cannot be encoded as UTF-8, so no driver can store it; in
    free text it becomes U+FFFD.
    """

    def __init__(self, dialect: str):
        self.dialect = dialect
        self.no_nul = dialect == "postgresql"
        self.limits = dialect != "sqlite"
        self._columns: dict[str, tuple[tuple[str, int | None, bool], ...]] = {}

    def _string_columns(self, table) -> tuple[tuple[str, int | None, bool], ...]:
        cols = self._columns.get(table.name)
        if cols is None:
            keyed = {c.name for c in table.primary_key.columns}
            for constraint in table.constraints:
                if isinstance(constraint, UniqueConstraint):
                    keyed |= {c.name for c in constraint.columns}
            cols = tuple((c.name, c.type.length, c.name in keyed) for c in table.columns if isinstance(c.type, String))
            self._columns[table.name] = cols
        return cols

    def fit(self, table, rows: list[dict]) -> None:
        """Adapt the rows' text values in place, or raise HarnessError for a key that does not fit."""
        if not rows:
            return
        no_nul, limits = self.no_nul, self.limits
        for name, length, key in self._string_columns(table):
            if not limits:
                length = None
            for row in rows:
                value = row.get(name)
                if isinstance(value, str) and (
                    (no_nul and "\x00" in value)
                    or (length and len(value) > length)
                    or (not value.isascii() and _LONE_SURROGATE.search(value))
                ):
                    row[name] = self._fitted(table.name, name, value, length, key)

    def _fitted(self, table: str, column: str, value: str, length: int | None, key: bool) -> str:
        if key:
            what = _KEY_NAMES.get(column, f"{table}.{column}")
            shown = value if len(value) <= 60 else value[:57] + "..."
            if self.no_nul and "\x00" in value:
                raise HarnessError(f"{what} {shown!r} contains a NUL character, which {self.dialect} cannot store")
            if _LONE_SURROGATE.search(value):
                raise HarnessError(
                    f"{what} {shown!r} contains a lone UTF-16 surrogate, which is not text "
                    f"any database stores: fix it in the source file"
                )
            raise HarnessError(
                f"{what} {shown!r} is {len(value)} characters long; {self.dialect} stores at most "
                f"{length} in {table}.{column}: shorten it"
            )
        if self.no_nul:
            value = value.replace("\x00", "\ufffd")
        value = _LONE_SURROGATE.sub("\ufffd", value)
        if length and len(value) > length:
            digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]
            value = value[: length - len(digest) - 1] + "~" + digest
        return value


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets the report read while a run writes; NORMAL sync keeps per-sample commits cheap
    # while still never corrupting the file on a crash (the last commits may roll back).
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()
