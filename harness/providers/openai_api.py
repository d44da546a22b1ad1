"""Provider for any OpenAI-compatible chat endpoint, through the official `openai` client.

The client's own retries are switched off: the engine retries, so that every attempt is
counted, Retry-After is honoured in one place, and concurrency can adapt to 429s.

Cost per request matters at API scale (thousands of requests a minute on one core), so:
non-streaming requests go through the client's documented low-level `post(path, cast_to=
httpx2.Response)` and the JSON body is read here, skipping the per-request parameter transform
and pydantic response models (about half the client's CPU per request); and a model with high
concurrency gets several HTTP connection pools of at most `POOL_SIZE` connections, because the
pool scans every connection it holds on each request.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import time
from typing import Any

import httpx2
import openai

from harness.plan import ModelSpec
from harness.providers.base import ProviderError, Request
from harness.providers.context_limit import context_length_message, is_context_length
from harness.providers.http_request import (  # noqa: F401 (resolve_*: imported from here by older callers)
    chat_body,
    check_redirect,
    refusal_is_fatal,
    resolve_api_key,
    resolve_extra_headers,
    target_for,
)
from harness.providers.openai_body import SHOWN_BODY_CHARS, StreamReader, completion_from_json
from harness.providers.vision import prompt_image_tokens
from harness.records import Completion

POOL_SIZE = 8  # connections per HTTP pool; a model with concurrency 64 gets eight pools


def _aiohttp_available() -> bool:
    """The client's aiohttp backend (`pip install openai[aiohttp]`) costs half the CPU per request."""
    if os.environ.get("HARNESS_HTTP_BACKEND", "") == "httpx" or not hasattr(openai, "DefaultAioHttpClient"):
        return False
    import importlib.util

    return importlib.util.find_spec("aiohttp") is not None


def _tls_context(base_url: str) -> ssl.SSLContext:
    """One TLS context shared by all of a model's pools (loading CA certificates costs ~30 ms).

    A plain-http endpoint gets a context that trusts no certificate at all: it is never used
    unless the server redirects to https, and then the request fails instead of going unverified.
    """
    if base_url.startswith("http://"):
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return httpx2.create_ssl_context()


class OpenAIProvider:
    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.target = target_for(spec)
        self.headers = self.target.extra_headers
        aio = _aiohttp_available()
        pools = 1 if aio else max(1, -(-int(spec.concurrency) // POOL_SIZE))
        per_pool = -(-int(spec.concurrency) // pools)
        tls = _tls_context(spec.base_url or "")
        # The engine enforces the whole-request deadline; the client's own timeout is a backstop.
        timeout = spec.timeout_s + 5.0
        limits = httpx2.Limits(max_connections=per_pool + 4, max_keepalive_connections=per_pool + 4)
        http_client = openai.DefaultAioHttpClient if aio else openai.DefaultAsyncHttpxClient
        base_url = self.target.base_url

        async def same_origin(request: httpx2.Request) -> None:
            # Called for every request of a redirect chain: a redirect elsewhere never gets the key or headers.
            check_redirect(base_url, str(request.url))

        # Every call of this client (chat, and the Files and Batches calls of a batch) carries the
        # plan's headers, goes through the plan's proxy and follows redirects only within the origin.
        self.clients = [
            openai.AsyncOpenAI(
                base_url=spec.base_url,
                api_key=self.target.api_key,
                max_retries=0,
                timeout=timeout,
                default_headers=self.target.extra_headers or None,
                http_client=http_client(
                    verify=tls,
                    timeout=timeout,
                    limits=limits,
                    proxy=self.target.proxy,
                    trust_env=False,
                    event_hooks={"request": [same_origin]},
                ),
            )
            for _ in range(pools)
        ]
        for client in self.clients:
            _settle_platform(client)
        self._busy = [0] * pools
        self.client = self.clients[0]

    def request_body(self, request: Request, *, stream: bool = False) -> dict[str, Any]:
        """The chat/completions body sent for a request (a Batch API line carries the same body)."""
        return chat_body(
            self.spec, request.prompt, request.generation, sample_index=request.sample_index, stream=stream
        )

    async def complete(self, request: Request) -> Completion:
        body = self.request_body(request, stream=self.spec.stream)
        contents: list[Any] = [m.text for m in request.prompt.messages]
        images = prompt_image_tokens(request.prompt, self.spec.api_model)
        if images:  # only used when the server reports no usage: then images are estimated too
            contents.append(images)
        busy = self._busy
        index = busy.index(min(busy)) if len(busy) > 1 else 0
        client = self.clients[index]
        busy[index] += 1
        start = time.perf_counter()
        try:
            async with asyncio.timeout(self.spec.timeout_s):
                if self.spec.stream:
                    return await self._stream(client, body, contents, start)
                response = await client.post("/chat/completions", body=body, cast_to=httpx2.Response)
                answer = response.content
        except ProviderError:
            raise
        except openai.APIStatusError as exc:
            raise _status_error(exc) from None
        except (openai.APITimeoutError, TimeoutError) as exc:
            if time.perf_counter() - start < 0.9 * self.spec.timeout_s:
                # The aiohttp backend reports a refused connection as a connect "timeout".
                raise _connection_error(exc) from None
            raise ProviderError(f"timed out after {self.spec.timeout_s:g} s", retryable=True) from None
        except openai.APIConnectionError as exc:
            if isinstance(exc.__cause__, ProviderError):  # refused by our own redirect policy
                raise exc.__cause__ from None
            raise _connection_error(exc) from None
        except (
            openai.APIResponseValidationError,
            ValueError,
            TypeError,
            KeyError,
            AttributeError,
            IndexError,
            UnicodeError,
        ) as exc:
            # Whatever else a body can make the client trip over is the server's fault, not a crash.
            raise ProviderError(
                f"malformed response: {exc.__class__.__name__}: {str(exc)[:SHOWN_BODY_CHARS]}", retryable=True
            ) from None
        except (httpx2.HTTPError, OSError) as exc:  # a body cut short while being read
            raise ProviderError(f"connection failed: {exc}", retryable=True) from None
        finally:
            busy[index] -= 1
        latency = time.perf_counter() - start
        return completion_from_json(answer, latency, contents)

    async def _stream(self, client, body: dict[str, Any], contents: list[str], start: float) -> Completion:
        """Read the SSE stream line by line: the completion is whatever the events say, checked whole."""
        reader = StreamReader(contents)
        ttft = None
        rest = {k: v for k, v in body.items() if k not in ("model", "messages", "stream")}
        # The body is chat_body's: the client's typed arguments get only what they require, the rest
        # goes as extra_body, so nothing is added, renamed or dropped on the way.
        async with client.chat.completions.with_streaming_response.create(
            model=body["model"], messages=body["messages"], stream=True, extra_body=rest
        ) as response:
            async for line in response.iter_lines():
                reader.feed_line(line)
                if ttft is None and reader.first_text:
                    ttft = time.perf_counter() - start
                if reader.done:
                    break
            reader.close()
        return reader.completion(time.perf_counter() - start, ttft)

    async def close(self) -> None:
        for client in self.clients:
            await client.close()


def _settle_platform(client: openai.AsyncOpenAI) -> None:
    """Give the client its OS header value now rather than on its first request.

    The async client works it out on first use in a worker thread, and every request that starts
    before the first one has it does the same: a first wave of 64 requests queues 64 thread hops
    on the default executor (~35 ms before the first byte is sent). `platform_headers()` reads the
    same value synchronously, once per process (Python caches `platform.platform()`, ~13 ms here).
    Guarded so that a client without that attribute is left alone.
    """
    if getattr(client, "_platform", "") is None:
        header = client.platform_headers().get("X-Stainless-OS")
        if header:
            setattr(client, "_platform", header)  # noqa: B010  (private, typed for the client's own values)


def completion_from_body(body: Any) -> Completion:
    """A chat.completion body that arrived some other way (a Batch API output line), read by the
    same rules as an online answer; anything else raises a retryable ProviderError."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return completion_from_json(raw, 0.0, ())  # no prompt here: missing usage is estimated from the answer alone


def _status_error(exc: openai.APIStatusError) -> ProviderError:
    status = exc.status_code
    retry_after = None
    headers = exc.response.headers if exc.response is not None else {}
    header = headers.get("retry-after-ms")
    if header:
        try:
            retry_after = max(0.0, float(header) / 1000)
        except ValueError:
            retry_after = None
    # LiteLLM's proxy names its cooldown `llm_provider-retry-after` (seconds) and sends no Retry-After.
    for name in ("retry-after", "llm_provider-retry-after"):
        header = headers.get(name)
        if header and retry_after is None:
            retry_after = _parse_retry_after(header)
    detail = _error_detail(exc)
    if is_context_length(status, detail, _error_code(exc)):
        # The item is over the model's window: the same request fails the same way every time, and the
        # model's other items are fine, so it is neither retried nor counted towards stopping the model.
        return ProviderError(context_length_message(f"HTTP {status}: {detail}"), retryable=False, status=status)
    retryable = status == 429 or status >= 500 or status == 408
    fatal = refusal_is_fatal(status, detail)
    return ProviderError(
        f"HTTP {status}: {detail}",
        retryable=retryable,
        retry_after=retry_after,
        status=status,
        rate_limited=status == 429,
        fatal=fatal,
    )


def _error_code(exc: openai.APIStatusError) -> str:
    body = exc.body
    err = body.get("error", body) if isinstance(body, dict) else None
    code = err.get("code") or err.get("type") if isinstance(err, dict) else ""
    return code if isinstance(code, str) else ""


def _error_detail(exc: openai.APIStatusError) -> str:
    """The server's own words: `error.message` of a JSON body, else the start of the body's text."""
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error", body)
        message = err.get("message") or err.get("detail") or err if isinstance(err, dict) else err
        text = message if isinstance(message, str) else json.dumps(message, default=str)
    elif isinstance(body, str):
        text = body
    else:
        try:
            text = exc.response.text if exc.response is not None else ""
        except Exception:  # a streamed error body that could not be read
            text = ""
        text = text or exc.message or ""
    return " ".join(text.split())[:SHOWN_BODY_CHARS] or "(empty body)"


def _connection_error(exc: BaseException) -> ProviderError:
    """A failed connection; `unreachable` when nothing answered at all (refused, unknown host)."""
    cause = exc.__cause__ or exc
    unreachable = False
    seen = 0
    link: BaseException | None = exc
    while link is not None and seen < 10:
        if isinstance(link, (ConnectionRefusedError, socket.gaierror)) or type(link).__name__ in (
            "ClientConnectorError",
            "ClientConnectorDNSError",
            "ConnectError",
        ):
            unreachable = True
            break
        link, seen = link.__cause__ or link.__context__, seen + 1
    return ProviderError(f"connection failed: {cause}", retryable=True, unreachable=unreachable)


def _parse_retry_after(value: str) -> float | None:
    """Retry-After is seconds or an HTTP date."""
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())
