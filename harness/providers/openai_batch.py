"""The OpenAI Batch API (Files + Batches endpoints) of an `OpenAIProvider`, as the engine's `BatchAPI`.

Registered as the openai provider's `batch_api` (builtin.py).

The engine's batch driver (engine/batch.py) calls these methods and never the `openai` client:
each call's failure comes back as a `ProviderError` (retryable or not) by the online rules.
"""

from __future__ import annotations

from typing import Any, Callable

import openai

from harness.providers.base import ProviderError, Request
from harness.providers.openai_api import OpenAIProvider, _connection_error, _status_error  # one set of rules

# Batches listed at most when looking for one whose id was lost in a crash.
LIST_LIMIT = 1000


class OpenAIBatchAPI:
    def __init__(self, provider: OpenAIProvider):
        self.provider = provider
        self.client = provider.client

    def line_body(self, request: Request) -> dict[str, Any]:
        """A batch line's `body`: exactly what the online request would send."""
        return self.provider.request_body(request)

    async def upload(self, filename: str, data: bytes) -> str:
        """Upload a JSONL batch file; its file id."""
        upload = await _mapped(self.client.files.create(file=(filename, data), purpose="batch"))
        return upload.id

    async def create(self, input_file_id: str, endpoint: str, window: str, metadata: dict[str, str]) -> Any:
        """Create a batch; the provider's batch object (id, status, request_counts, errors, file ids)."""
        return await _mapped(
            self.client.batches.create(
                input_file_id=input_file_id,
                # Other providers' paths (/v4/chat/completions) and windows are not in the SDK's literals.
                endpoint=endpoint,  # type: ignore[arg-type]  # other providers' paths are not in the SDK's literals
                completion_window=window,  # type: ignore[arg-type]  # nor their windows
                metadata=metadata,
            )
        )

    async def retrieve(self, batch_id: str) -> Any:
        return await _mapped(self.client.batches.retrieve(batch_id))

    async def find(self, match: Callable[[Any], bool]) -> Any | None:
        """The first of the latest LIST_LIMIT batches that `match` accepts, else None."""

        async def scan():
            seen = 0
            async for batch in self.client.batches.list(limit=100):
                if match(batch):
                    return batch
                seen += 1
                if seen >= LIST_LIMIT:
                    return None
            return None

        return await _mapped(scan())

    async def download(self, file_id: str) -> bytes:
        """A result file's bytes."""
        content = await _mapped(self.client.files.content(file_id))
        return content.content


async def _mapped(call):
    """Await a client call, its failures as ProviderError (4xx other than 408/429: not retryable)."""
    try:
        return await call
    except openai.APIStatusError as exc:
        raise _status_error(exc) from None
    except (openai.APIConnectionError, openai.APITimeoutError) as exc:
        raise _connection_error(exc) from None
    except (openai.APIResponseValidationError, OSError) as exc:  # a body the client could not read
        raise ProviderError(f"{type(exc).__name__}: {exc}", retryable=True) from None
