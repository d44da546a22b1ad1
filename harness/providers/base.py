"""What every provider accepts and raises: the `Request` value and the retryable `ProviderError`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from harness.records import Completion, Generation, Item, Prompt


@dataclass(frozen=True)
class Request:
    prompt: Prompt
    generation: Generation
    item: Item
    suite: str
    sample_index: int = 0


class ProviderError(Exception):
    """A failed request. `retryable` errors (429, 5xx, timeouts, dropped connections) are retried."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None,
                 status: int | None = None, rate_limited: bool = False):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status
        self.rate_limited = rate_limited


class Provider(Protocol):
    async def complete(self, request: Request) -> Completion: ...

    async def close(self) -> None: ...
