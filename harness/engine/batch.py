"""The batch executor: a model's units through an OpenAI-style Batch API, crash-safe across days.

For a model with `batch:` in the plan (or `harness run --batch`), `LocalExecutor` hands the model to a
`BatchDriver` instead of sending its requests one by one. The driver writes the remaining units as
Batch API JSONL lines (`custom_id` = the sample key, `body` = exactly what the online provider would
send), splits them by the provider's limits (requests and bytes per file; one model per batch),
uploads each file through the Files API, creates a batch (24 h window), polls it, downloads its output
and error files, and grades and stores each answer through the same `UnitRunner.finish` as an online
completion (at the batch price, marked batched, with no latency).

Crash safety, in the order things happen: a batch's samples are recorded (`harness.store.batches.add_batch`)
before its file is uploaded; the file id is stored before the batch is created; the batch id is stored
as soon as the provider returns it, and every batch is created with `metadata.harness_batch` so that a
batch created just before a crash (its id never stored) is found again by listing the provider's
batches rather than submitted twice. A sample carried by a batch not yet collected is in flight: no
rerun sends it again. A batch is marked collected only after its samples are committed, so a crash
while collecting downloads the files again and stores only what is missing.

Lines that failed retryably (HTTP 429/5xx, malformed bodies, expired or missing from an expired or
failed batch) are retried: in a new batch (`retry: batch`, the default) or online (`retry: online`),
until a sample has been in `max_rounds` batches; then it is stored as an error. Lines of a cancelled
batch that were not answered, and lines that failed for good (HTTP 400), are stored as errors at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Iterable, Protocol, runtime_checkable
from urllib.parse import urlparse

from harness.engine.pacing import backoff_delay
from harness.engine.runner import ModelState, UnitRunner
from harness.engine.units import PreparedSuite, WorkUnit, plan_units
from harness.plan import BatchSettings, ModelSpec, Plan
from harness.providers import ProviderError, Request
from harness.providers.registry import provider_info
from harness.providers.tokens import estimate_tokens
from harness.records import Completion
from harness.store.batches import (
    BatchInfo,
    SampleKey,
    add_batch,
    batch_keys,
    batch_rounds,
    list_batches,
    update_batch,
)

log = logging.getLogger(__name__)

TERMINAL = ("completed", "expired", "failed", "cancelled")
DEFAULT_POLL_S = 60.0
MAX_FAILED_POLLS = 5  # consecutive rounds in which the Batch API could not be reached: stop waiting


@dataclass(frozen=True)
class ProviderLimits:
    """What one batch file may hold at a provider, and where the figures come from."""

    provider: str
    max_requests: int
    max_bytes: int
    source: str


MB = 1_000_000  # the providers say "MB"; the decimal megabyte is the smaller reading
# Host -> limits. Figures from each provider's public documentation (checked 2026-12); the Moonshot
# request count is not documented and is an assumption (the OpenAI figure), as are the limits of any
# other OpenAI-compatible server.
PROVIDER_LIMITS = {
    "api.openai.com": ProviderLimits("openai", 50_000, 200 * MB, "OpenAI API reference, Create batch"),
    "dashscope.aliyuncs.com": ProviderLimits(
        "dashscope", 50_000, 100 * MB, "Alibaba Cloud Model Studio, OpenAI-compatible Batch"
    ),
    "dashscope-intl.aliyuncs.com": ProviderLimits(
        "dashscope", 50_000, 100 * MB, "Alibaba Cloud Model Studio, OpenAI-compatible Batch"
    ),
    "open.bigmodel.cn": ProviderLimits("zhipu", 50_000, 100 * MB, "docs.bigmodel.cn, Batch API FAQ"),
    "api.z.ai": ProviderLimits("zhipu", 50_000, 100 * MB, "assumed equal to open.bigmodel.cn"),
    "api.moonshot.cn": ProviderLimits(
        "moonshot", 50_000, 100 * MB, "platform.kimi.ai, Create Batch (100 MB); request count assumed"
    ),
    "api.moonshot.ai": ProviderLimits(
        "moonshot", 50_000, 100 * MB, "platform.kimi.ai, Create Batch (100 MB); request count assumed"
    ),
}
GENERIC_LIMITS = ProviderLimits("openai-compatible", 50_000, 100 * MB, "assumed: the smallest documented file size")


def limits_for(spec: ModelSpec) -> ProviderLimits:
    """The provider's limits for this model's base_url, with the plan's `batch:` overrides applied."""
    host = (urlparse(spec.base_url or "").hostname or "").lower()
    base = PROVIDER_LIMITS.get(host, GENERIC_LIMITS)
    settings = spec.batch or BatchSettings()
    return ProviderLimits(
        base.provider, settings.max_requests or base.max_requests, settings.max_bytes or base.max_bytes, base.source
    )


def endpoint_for(spec: ModelSpec) -> str:
    """Each line's `url`: the base_url's version part + /chat/completions (/v1 at OpenAI, /v4 at Zhipu)."""
    if spec.batch and spec.batch.endpoint:
        return spec.batch.endpoint
    parts = [p for p in urlparse(spec.base_url or "").path.split("/") if p]
    return f"/{parts[-1] if parts else 'v1'}/chat/completions"


def poll_interval() -> float:
    """Seconds between polls: $HARNESS_BATCH_POLL_S (tests shorten it), else a minute."""
    try:
        return max(0.01, float(os.environ.get("HARNESS_BATCH_POLL_S", DEFAULT_POLL_S)))
    except ValueError:
        return DEFAULT_POLL_S


def custom_id(suite: str, item_id: str, sample_index: int) -> str:
    """The sample key (the model is the batch's) as the line's custom_id, unambiguous whatever the names."""
    return json.dumps([suite, item_id, sample_index], ensure_ascii=False, separators=(",", ":"))


def estimated_cost(spec: ModelSpec, unit: WorkUnit) -> float:
    """An upper bound at the batch price: the prompt estimated from its text, the completion at max_tokens."""
    return spec.price.cost(estimate_tokens(unit.prompt.text), unit.generation.max_tokens, batched=True)


@dataclass(frozen=True)
class LineResult:
    """One line of an output or error file: a completion, or why there is none."""

    completion: Completion | None
    error: str = ""
    retryable: bool = True


def read_result_lines(data: bytes) -> dict[str, LineResult]:
    """custom_id -> result for every readable line; a line that cannot be read is skipped (then
    its sample counts as missing and is retried)."""
    from harness.providers.context_limit import context_length_message, is_context_length
    from harness.providers.openai_api import completion_from_body

    results: dict[str, LineResult] = {}
    for raw in data.splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
            continue
        response = line.get("response") if isinstance(line.get("response"), dict) else None
        error = line.get("error") if isinstance(line.get("error"), dict) else None
        status = response.get("status_code") if response else None
        if response is not None and status == 200:
            try:
                results[line["custom_id"]] = LineResult(completion_from_body(response.get("body")))
            except ProviderError as exc:
                results[line["custom_id"]] = LineResult(None, str(exc), exc.retryable)
            continue
        if response is not None and isinstance(status, int):
            body = response.get("body")
            body = body if isinstance(body, dict) else {}
            detail = body.get("error")
            detail = detail if isinstance(detail, dict) else {}
            message = str(detail.get("message") or body)[:200]
            text = f"HTTP {status}: {message}"
            if is_context_length(status, message, str(detail.get("code") or "")):
                text = context_length_message(text)  # over the window: the item's answer, as online
            results[line["custom_id"]] = LineResult(None, text, status in (408, 409, 429) or status >= 500)
        elif error is not None:
            code = str(error.get("code") or "error")
            results[line["custom_id"]] = LineResult(None, f"batch {code}: {str(error.get('message') or '')[:200]}")
    return results


def split_lines(lines: list[tuple[WorkUnit, bytes]], limits: ProviderLimits) -> list[list[tuple[WorkUnit, bytes]]]:
    """Consecutive groups within the provider's request and byte limits per file."""
    groups: list[list[tuple[WorkUnit, bytes]]] = []
    size = 0
    for unit, line in lines:
        if not groups or len(groups[-1]) >= limits.max_requests or size + len(line) > limits.max_bytes:
            groups.append([])
            size = 0
        groups[-1].append((unit, line))
        size += len(line)
    return groups


class _AllExcept:
    """A `done` set that holds every key but the wanted ones, so `plan_units` yields just those."""

    def __init__(self, wanted: set):
        self.wanted = wanted

    def __bool__(self) -> bool:
        return True

    def __contains__(self, key) -> bool:
        return key not in self.wanted


class BatchUnavailable(Exception):
    """The Batch API could not be reached after the model's attempts; the next poll tries again."""


@runtime_checkable
class BatchProvider(Protocol):
    """What the driver needs of a provider with a Batch API: its OpenAI client and a request's JSON body."""

    client: Any

    def request_body(self, request: Request) -> dict[str, Any]: ...


class BatchDriver:
    """Runs one model's units through the provider's Batch API, resuming whatever the store records."""

    def __init__(
        self,
        plan: Plan,
        suites: list[PreparedSuite],
        runner: UnitRunner,
        state: ModelState,
        outcome: Any,
        flush,
        *,
        shard: tuple[int, int] | None = None,
        max_cost: float | None = None,
        wait_s: float | None = None,
    ):
        """`outcome`: the executor's RunOutcome (its per-model spend, `waiting` and cost stop);
        `flush`: blocks until the store writer has committed what it was handed."""
        self.plan, self.suites, self.shard, self.max_cost = plan, suites, shard, max_cost
        self.runner, self.state, self.outcome = runner, state, outcome
        self.store, self.run_id = runner.store, runner.run_id
        self.spec = state.spec
        self.settings = self.spec.batch or BatchSettings()
        self.limits = limits_for(self.spec)
        self.endpoint = endpoint_for(self.spec)
        self.flush = flush
        self.wait_s = wait_s
        self.api = provider_info(self.spec.provider).open_batch_api(state.provider)  # a BatchAPI (providers/base.py)
        self._plan_again = True  # units may be unplanned: at the start, and after a batch is collected

    # -- the loop -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        deadline = None if self.wait_s is None else time.monotonic() + self.wait_s
        failed_polls = 0
        last_failure = ""
        while True:
            try:
                for row in self._open():
                    await self._advance(row)
                if not stop.is_set() and self._plan_again:
                    self._plan_again = False
                    await self._submit_remaining(stop)
                failed_polls = 0
            except BatchUnavailable as exc:
                self._plan_again = True
                failed_polls += 1
                last_failure = str(exc)
                log.warning("%s: %s", self.spec.name, exc)
                if failed_polls >= MAX_FAILED_POLLS:
                    self._waiting(f"the Batch API at {self.spec.base_url} could not be reached ({exc})")
                    return
            open_rows = self._open()
            if not open_rows and failed_polls == 0:
                return
            # After a cost stop the batches already submitted are paid for: keep collecting them (as
            # the local executor lets in-flight requests finish). Any other stop ends the waiting.
            aborted = stop.is_set() and not self.outcome.stopped_for_cost
            if aborted or (deadline is not None and time.monotonic() >= deadline):
                for row in open_rows:
                    self._waiting(
                        f"batch {row.label} is {row.state} "
                        f"({row.n_completed + row.n_failed}/{row.n_requests} lines done)"
                    )
                if failed_polls and not open_rows:
                    self._waiting(f"requests not submitted yet ({last_failure})")
                return
            if stop.is_set():
                await asyncio.sleep(poll_interval())
                continue
            try:
                await asyncio.wait_for(stop.wait(), poll_interval())
            except TimeoutError:
                pass

    def _waiting(self, why: str) -> None:
        self.outcome.waiting.append(f"model '{self.spec.name}': {why}")

    def _open(self) -> list[BatchInfo]:
        return [b for b in list_batches(self.store, self.run_id, self.spec.name) if not b.collected]

    def _units(self, keys: Iterable[SampleKey]) -> list[WorkUnit]:
        wanted = {(self.spec.name, *k) for k in keys}
        return list(plan_units(self.plan, self.spec, self.suites, _AllExcept(wanted), self.shard))

    # -- submitting -----------------------------------------------------------------------

    async def _submit_remaining(self, stop: asyncio.Event) -> None:
        """Put every unit that is neither stored nor in flight into new batches (or online, for retries)."""
        name = self.spec.name
        in_flight = {(name, *k) for k in batch_rounds(self.store, self.run_id, name, collected=False)}
        skip = self.store.done_keys(self.run_id) | in_flight
        units = list(plan_units(self.plan, self.spec, self.suites, skip, self.shard))
        if not units:
            return
        rounds = batch_rounds(self.store, self.run_id, name, collected=True)
        if self.settings.retry == "online":
            again = [u for u in units if rounds.get(u.key[1:])]
            if again:
                log.info("%s: %d failed batch lines retried online", name, len(again))
                await asyncio.gather(*(self.runner.run(u) for u in again))
                units = [u for u in units if not rounds.get(u.key[1:])]
        lines = [(u, self._line(u)) for u in units]
        budget = self._budget()
        for group in split_lines(lines, self.limits):
            costs = [estimated_cost(self.spec, u) for u, _ in group]
            if budget is not None:
                fits = 0
                while fits < len(group) and costs[fits] <= budget:
                    budget -= costs[fits]
                    fits += 1
                if fits < len(group):
                    self.outcome.stopped_for_cost = True
                    stop.set()
                    group, costs = group[:fits], costs[:fits]
            if not group:
                break
            keys = [u.key[1:] for u, _ in group]
            row = add_batch(
                self.store,
                self.run_id,
                name,
                keys,
                estimated_cost_usd=sum(costs),
                round=1 + max(rounds.get(k, 0) for k in keys),
            )
            self.state.requests += len(group)
            self.outcome.requested += len(group)
            await self._upload_and_create(row, b"".join(line for _, line in group))
            if stop.is_set():
                break

    def _budget(self) -> float | None:
        """What --max-cost leaves for new batches: minus what was spent and what open batches may cost."""
        if self.max_cost is None:
            return None
        spent = sum(s.cost for s in self.outcome.per_model.values())
        committed = sum(b.estimated_cost_usd for b in list_batches(self.store, self.run_id) if not b.collected)
        return self.max_cost - spent - committed

    def _line(self, unit: WorkUnit) -> bytes:
        request = Request(unit.prompt, unit.generation, unit.item, unit.suite, unit.sample_index)
        line = {
            "custom_id": custom_id(unit.suite, unit.item.id, unit.sample_index),
            "method": "POST",
            "url": self.endpoint,
            "body": self.api.line_body(request),
        }
        return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"

    async def _upload_and_create(self, row: int, data: bytes) -> None:
        try:
            file_id = await self._call(
                "upload the batch file", lambda: self.api.upload(f"harness-{self.run_id}-{row}.jsonl", data)
            )
        except ProviderError as exc:
            await self._refused(row, exc)
            return
        update_batch(self.store, row, input_file_id=file_id, state="uploaded")
        await self._create(row, file_id)

    async def _create(self, row: int, input_file_id: str) -> None:
        try:
            batch = await self._call(
                "create the batch",
                lambda: self.api.create(
                    input_file_id,
                    self.endpoint,
                    self.settings.window,
                    {"harness_run": self.run_id, "harness_batch": str(row)},
                ),
            )
        except ProviderError as exc:
            await self._refused(row, exc)
            return
        self._record(row, batch)

    async def _refused(self, row: int, exc: ProviderError) -> None:
        """The provider refused the file or the batch for good (e.g. no batch support for the model):
        the batch counts as failed, so its lines are retried up to max_rounds, then stored as errors."""
        log.warning("%s: %s", self.spec.name, exc)
        update_batch(self.store, row, state="failed", error=str(exc))
        await self._collect(self._row(row), None)

    def _row(self, row: int) -> BatchInfo:
        return next(b for b in list_batches(self.store, self.run_id, self.spec.name) if b.id == row)

    # -- following a batch ----------------------------------------------------------------

    async def _advance(self, row: BatchInfo) -> None:
        """One step for a batch the store knows: finish submitting it, or poll it and collect it when done."""
        if row.state == "failed" and row.batch_id is None:
            await self._collect(row, None)
            return
        if row.input_file_id is None:  # recorded, then the upload did not finish: send the same lines again
            data = b"".join(self._line(u) for u in self._units(batch_keys(self.store, row.id)))
            await self._upload_and_create(row.id, data)
            return
        if row.batch_id is None:  # uploaded; created or not? the provider's list says
            found = await self._find_created(row)
            if found is None:
                await self._create(row.id, row.input_file_id)
            else:
                self._record(row.id, found)
            return
        try:
            batch = await self._call("poll the batch", lambda: self.api.retrieve(row.batch_id))
        except ProviderError as exc:  # the provider no longer knows the batch
            await self._refused(row.id, exc)
            return
        self._record(row.id, batch)
        if batch.status in TERMINAL:
            await self._collect(self._row(row.id), batch)

    async def _find_created(self, row: BatchInfo):
        """A batch created for this row before a crash lost its id: by metadata or by input file."""

        def created_for_row(batch) -> bool:
            meta = batch.metadata or {}
            return (
                meta.get("harness_run") == self.run_id and meta.get("harness_batch") == str(row.id)
            ) or batch.input_file_id == row.input_file_id

        return await self._call("list batches", lambda: self.api.find(created_for_row))

    def _record(self, row: int, batch: Any) -> None:
        counts = batch.request_counts
        errors = getattr(batch, "errors", None)
        messages = [e.message for e in (getattr(errors, "data", None) or []) if getattr(e, "message", None)]
        update_batch(
            self.store,
            row,
            batch_id=batch.id,
            state=str(batch.status),
            output_file_id=batch.output_file_id,
            error_file_id=batch.error_file_id,
            n_completed=int(getattr(counts, "completed", 0) or 0),
            n_failed=int(getattr(counts, "failed", 0) or 0),
            **({"error": "; ".join(messages)} if messages else {}),
        )

    async def _collect(self, row: BatchInfo, batch: Any) -> None:
        """Store the answers of a finished batch; leave retryable failures for a new batch, or store them
        as errors once they have been in `max_rounds` batches."""
        name = self.spec.name
        done = self.store.done_keys(self.run_id)
        keys = [k for k in batch_keys(self.store, row.id) if (name, *k) not in done]
        results: dict[str, LineResult] = {}
        for file_id in (getattr(batch, "output_file_id", None), getattr(batch, "error_file_id", None)):
            if file_id and keys:
                try:
                    content = await self._call("download results", lambda f=file_id: self.api.download(f))
                except ProviderError as exc:  # its lines count as missing
                    log.warning("%s: %s", name, exc)
                    continue
                results.update(read_result_lines(content))
        rounds = batch_rounds(self.store, self.run_id, name, collected=True)
        cancelled = row.state == "cancelled"
        missing = {
            "cancelled": "not answered before the batch was cancelled",
            "expired": "missing from the expired batch",
            "failed": f"the batch failed: {row.error or 'no reason given'}",
        }.get(row.state, "missing from the batch's output")
        retried = 0
        for unit in self._units(keys):
            result = results.get(custom_id(unit.suite, unit.item.id, unit.sample_index))
            if result is not None and result.completion is not None:
                await self.runner.finish(unit, result.completion, row.round, batched=True)
                continue
            error, retryable = (result.error, result.retryable) if result else (missing, not cancelled)
            if retryable and rounds.get(unit.key[1:], 0) + 1 < self.settings.max_rounds:
                retried += 1
                continue
            await self.runner.finish(unit, Completion(error=error), row.round, batched=True)
        await asyncio.to_thread(self.flush)  # committed before the batch stops counting as in flight
        update_batch(self.store, row.id, collected=True)
        self._plan_again = True
        if cancelled:
            self.outcome.notes.append(
                f"model '{name}': batch {row.label} was cancelled at the provider; "
                f"its unanswered lines are stored as errors"
            )
        if retried:
            log.info("%s: batch %s ended %s; %d lines go into a new batch", name, row.label, row.state, retried)

    async def _call(self, what: str, make):
        """A Files/Batches API call with the model's attempts and backoff. A refusal (4xx) raises
        ProviderError; an endpoint still unreachable after the attempts raises BatchUnavailable."""
        last: Exception | None = None
        for attempt in range(1, self.spec.max_attempts + 1):
            try:
                return await make()
            except ProviderError as error:  # the BatchAPI maps its client's failures by the online rules
                if not error.retryable:
                    raise ProviderError(f"{what}: {error}", retryable=False, status=error.status) from None
                last, retry_after = error, error.retry_after
            if attempt < self.spec.max_attempts:
                await asyncio.sleep(min(backoff_delay(attempt, retry_after), 30.0))
        raise BatchUnavailable(f"could not {what}: {last}")
