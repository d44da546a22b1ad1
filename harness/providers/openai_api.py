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
import ssl
import time
from typing import Any

import httpx2
import openai

from harness.errors import HarnessError
from harness.plan import ModelSpec
from harness.providers.base import ProviderError, Request
from harness.records import Completion

POOL_SIZE = 8  # connections per HTTP pool; a model with concurrency 64 gets eight pools


def resolve_api_key(spec: ModelSpec) -> str:
    """The key named by api_key_env; local servers often need none, so no variable means 'none'."""
    if not spec.api_key_env:
        return "not-needed"
    key = os.environ.get(spec.api_key_env)
    if not key:
        raise HarnessError(
            f"model '{spec.name}': environment variable {spec.api_key_env} is not set "
            f"(export {spec.api_key_env}=... with the API key for {spec.base_url})"
        )
    return key


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
        api_key = resolve_api_key(spec)
        aio = _aiohttp_available()
        pools = 1 if aio else max(1, -(-int(spec.concurrency) // POOL_SIZE))
        per_pool = -(-int(spec.concurrency) // pools)
        tls = _tls_context(spec.base_url or "")
        # The engine enforces the whole-request deadline; the client's own timeout is a backstop.
        timeout = spec.timeout_s + 5.0
        limits = httpx2.Limits(max_connections=per_pool + 4, max_keepalive_connections=per_pool + 4)
        http_client = openai.DefaultAioHttpClient if aio else openai.DefaultAsyncHttpxClient
        self.clients = [
            openai.AsyncOpenAI(
                base_url=spec.base_url, api_key=api_key, max_retries=0, timeout=timeout,
                http_client=http_client(verify=tls, timeout=timeout, limits=limits),
            )
            for _ in range(pools)
        ]
        for client in self.clients:
            _settle_platform(client)
        self._busy = [0] * pools
        self.client = self.clients[0]

    def _params(self, request: Request) -> dict[str, Any]:
        gen = request.generation
        params: dict[str, Any] = {
            "model": self.spec.api_model,
            "messages": [{"role": m.role, "content": m.content} for m in request.prompt.messages],
            "max_tokens": gen.max_tokens,
            "temperature": gen.temperature,
        }
        if gen.top_p is not None:
            params["top_p"] = gen.top_p
        if gen.stop:
            params["stop"] = list(gen.stop)
        if gen.seed is not None:
            params["seed"] = gen.seed + request.sample_index
        return params

    def request_body(self, request: Request) -> dict[str, Any]:
        """The chat/completions body sent for a request (a Batch API line carries the same body)."""
        return self._params(request)

    async def complete(self, request: Request) -> Completion:
        params = self._params(request)
        busy = self._busy
        index = busy.index(min(busy)) if len(busy) > 1 else 0
        client = self.clients[index]
        busy[index] += 1
        start = time.perf_counter()
        try:
            async with asyncio.timeout(self.spec.timeout_s):
                if self.spec.stream:
                    return await self._stream(client, params, start)
                response = await client.post("/chat/completions", body=params, cast_to=httpx2.Response)
                body = response.content
        except openai.APIStatusError as exc:
            raise _status_error(exc) from None
        except (openai.APITimeoutError, TimeoutError) as exc:
            if time.perf_counter() - start < 0.9 * self.spec.timeout_s:
                # The aiohttp backend reports a refused connection as a connect "timeout".
                raise ProviderError(f"connection failed: {exc.__cause__ or exc}", retryable=True) from None
            raise ProviderError(f"timed out after {self.spec.timeout_s:g} s", retryable=True) from None
        except openai.APIConnectionError as exc:
            raise ProviderError(f"connection failed: {exc.__cause__ or exc}", retryable=True) from None
        except openai.APIResponseValidationError as exc:
            raise ProviderError(f"malformed response: {exc}", retryable=True) from None
        except (httpx2.HTTPError, OSError) as exc:  # a body cut short while being read
            raise ProviderError(f"connection failed: {exc}", retryable=True) from None
        finally:
            busy[index] -= 1
        latency = time.perf_counter() - start
        return _completion_from_json(body, latency)

    async def _stream(self, client, params: dict[str, Any], start: float) -> Completion:
        stream = await client.chat.completions.create(
            **params, stream=True, stream_options={"include_usage": True}
        )
        parts: list[str] = []
        reasoning: list[str] = []
        ttft = None
        finish = ""
        served = ""
        usage = None
        async for chunk in stream:
            served = served or getattr(chunk, "model", "") or ""
            if getattr(chunk, "usage", None):
                usage = chunk.usage
            for choice in chunk.choices or []:
                delta = choice.delta
                text = getattr(delta, "content", None) or ""
                think = _extra(delta, "reasoning_content") or ""
                if (text or think) and ttft is None:
                    ttft = time.perf_counter() - start
                parts.append(text)
                reasoning.append(think)
                finish = choice.finish_reason or finish
        latency = time.perf_counter() - start
        details = getattr(usage, "completion_tokens_details", None)
        return Completion(
            text="".join(parts),
            reasoning="".join(reasoning),
            finish_reason=finish,
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
            reasoning_tokens=int(getattr(details, "reasoning_tokens", 0) or 0),
            latency_s=latency,
            ttft_s=ttft,
            served_model=served,
        )

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
            client._platform = header


def _extra(obj: Any, name: str) -> Any:
    value = getattr(obj, name, None)
    if value is None:
        extra = getattr(obj, "model_extra", None) or {}
        value = extra.get(name)
    return value


def _malformed(body: bytes, why: str) -> ProviderError:
    return ProviderError(f"malformed response ({why}): {body[:200]!r}", retryable=True)


def _completion_from_json(body: bytes, latency: float) -> Completion:
    """A chat.completion JSON body -> Completion; anything else is a retryable malformed response."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise _malformed(body, "not JSON") from None
    if not isinstance(data, dict):
        raise _malformed(body, "not a JSON object")
    choices = data.get("choices")
    if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
        raise _malformed(body, "no choices")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise _malformed(body, "no message")
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    details = usage.get("completion_tokens_details")
    reasoning_tokens = details.get("reasoning_tokens") if isinstance(details, dict) else 0
    return Completion(
        text=message.get("content") or "",
        reasoning=message.get("reasoning_content") or message.get("reasoning") or "",
        finish_reason=choice.get("finish_reason") or "",
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        reasoning_tokens=int(reasoning_tokens or 0),
        latency_s=latency,
        served_model=str(data.get("model") or ""),
    )


def completion_from_body(body: Any) -> Completion:
    """A chat.completion body that arrived some other way (a Batch API output line), read by the
    same rules as an online answer; anything else raises a retryable ProviderError."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return _completion_from_json(raw, 0.0)


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
    header = headers.get("retry-after")
    if header and retry_after is None:
        retry_after = _parse_retry_after(header)
    retryable = status == 429 or status >= 500 or status == 408
    body = (exc.message or "")[:200]
    return ProviderError(f"HTTP {status}: {body}", retryable=retryable, retry_after=retry_after,
                         status=status, rate_limited=status == 429)


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
