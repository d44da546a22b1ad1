"""Provider for any OpenAI-compatible chat endpoint, through the official `openai` client.

The client's own retries are switched off: the engine retries, so that every attempt is
counted, Retry-After is honoured in one place, and concurrency can adapt to 429s.
"""

from __future__ import annotations

import os
import time
from typing import Any

import openai

from harness.errors import HarnessError
from harness.plan import ModelSpec
from harness.providers.base import ProviderError, Request
from harness.records import Completion


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


class OpenAIProvider:
    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.client = openai.AsyncOpenAI(
            base_url=spec.base_url,
            api_key=resolve_api_key(spec),
            max_retries=0,
            timeout=spec.timeout_s,
        )

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

    async def complete(self, request: Request) -> Completion:
        params = self._params(request)
        start = time.perf_counter()
        try:
            if self.spec.stream:
                return await self._stream(params, start)
            response = await self.client.chat.completions.create(**params)
        except openai.APIStatusError as exc:
            raise _status_error(exc) from None
        except openai.APITimeoutError:
            raise ProviderError(f"timed out after {self.spec.timeout_s:g} s", retryable=True) from None
        except openai.APIConnectionError as exc:
            raise ProviderError(f"connection failed: {exc.__cause__ or exc}", retryable=True) from None
        except openai.APIResponseValidationError as exc:
            raise ProviderError(f"malformed response: {exc}", retryable=True) from None
        latency = time.perf_counter() - start
        return _completion_from(response, latency)

    async def _stream(self, params: dict[str, Any], start: float) -> Completion:
        stream = await self.client.chat.completions.create(
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
        return Completion(
            text="".join(parts),
            reasoning="".join(reasoning),
            finish_reason=finish,
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
            reasoning_tokens=_reasoning_tokens(usage),
            latency_s=latency,
            ttft_s=ttft,
            served_model=served,
        )

    async def close(self) -> None:
        await self.client.close()


def _extra(obj: Any, name: str) -> Any:
    value = getattr(obj, name, None)
    if value is None:
        extra = getattr(obj, "model_extra", None) or {}
        value = extra.get(name)
    return value


def _reasoning_tokens(usage: Any) -> int:
    details = getattr(usage, "completion_tokens_details", None)
    return int(getattr(details, "reasoning_tokens", 0) or 0)


def _completion_from(response: Any, latency: float) -> Completion:
    choices = getattr(response, "choices", None)
    if not choices:
        raise ProviderError(f"malformed response: no choices in {str(response)[:200]!r}", retryable=True)
    choice = choices[0]
    message = choice.message
    usage = getattr(response, "usage", None)
    return Completion(
        text=message.content or "",
        reasoning=_extra(message, "reasoning_content") or "",
        finish_reason=choice.finish_reason or "",
        prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
        completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
        reasoning_tokens=_reasoning_tokens(usage),
        latency_s=latency,
        served_model=getattr(response, "model", "") or "",
    )


def _status_error(exc: openai.APIStatusError) -> ProviderError:
    status = exc.status_code
    retry_after = None
    header = exc.response.headers.get("retry-after") if exc.response is not None else None
    if header:
        try:
            retry_after = max(0.0, float(header))
        except ValueError:
            retry_after = None
    retryable = status == 429 or status >= 500 or status == 408
    body = (exc.message or "")[:200]
    return ProviderError(f"HTTP {status}: {body}", retryable=retryable, retry_after=retry_after,
                         status=status, rate_limited=status == 429)
