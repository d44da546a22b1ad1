"""What every provider accepts and raises: the `Request` value and the retryable `ProviderError`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

from harness.records import Completion, Generation, Item, Prompt


@dataclass(frozen=True)
class Request:
    prompt: Prompt
    generation: Generation
    item: Item
    suite: str
    sample_index: int = 0


class ProviderError(Exception):
    """A failed request. `retryable` errors (429, 5xx, timeouts, dropped connections) are retried.

    `rate_limited` (429): retried within a time budget rather than an attempt count. `fatal`
    (401/403 bad key, 404 unknown model or route): retrying cannot help, and a few of them in a
    row stop the model. `unreachable` (connection refused, unknown host): retried, but a few
    samples in a row that end unreachable stop the model too. `congested`: the server ended the
    request early because another one arrived (llama.cpp's server interrupts a stream for a
    newer request): it serves fewer requests at once than it was sent.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        status: int | None = None,
        rate_limited: bool = False,
        fatal: bool = False,
        unreachable: bool = False,
        congested: bool = False,
    ):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status
        self.rate_limited = rate_limited
        self.fatal = fatal
        self.unreachable = unreachable
        self.congested = congested


class Provider(Protocol):
    async def complete(self, request: Request) -> Completion: ...

    async def close(self) -> None: ...


class BatchAPI(Protocol):
    """A provider's Batch API in OpenAI's shape: a JSONL file of request lines in, a batch, result files out.

    Batch objects are the provider's own (OpenAI's fields: id, status, request_counts, errors,
    metadata, input_file_id, output_file_id, error_file_id). Every call raises `ProviderError` on
    failure, retryable or not by the online rules; the engine's batch driver retries.
    """

    def line_body(self, request: Request) -> dict[str, Any]: ...

    async def upload(self, filename: str, data: bytes) -> str: ...

    async def create(self, input_file_id: str, endpoint: str, window: str, metadata: dict[str, str]) -> Any: ...

    async def retrieve(self, batch_id: str) -> Any: ...

    async def find(self, match: Callable[[Any], bool]) -> Any | None: ...

    async def download(self, file_id: str) -> bytes: ...
