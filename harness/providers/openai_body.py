"""Read what an OpenAI-compatible server answered (a JSON body or an SSE stream) into a `Completion`.

Servers send anything: a stream that ends with `[DONE]` but no `finish_reason` (llama.cpp's
server when a newer request interrupts it), no `usage`, token counts as strings or absurd
numbers, content as a list of parts or as a number. Here every such body either becomes a valid
`Completion` or raises a retryable `ProviderError`; nothing else escapes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Sequence

from harness.providers.base import ProviderError
from harness.providers.chat_format import ToolCallDeltas, tool_calls_of
from harness.providers.tokens import estimate_completion_tokens, estimate_prompt_tokens, token_count
from harness.records import Completion, ToolCall

SHOWN_BODY_CHARS = 200


def malformed(why: str, body: bytes | str = b"") -> ProviderError:
    shown = f": {body[:SHOWN_BODY_CHARS]!r}" if body else ""
    return ProviderError(f"malformed response ({why}){shown}", retryable=True)


def content_text(value: Any, what: str = "content") -> str:
    """Message content as text: a string, nothing (""), or a list of text parts (joined)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        pieces = []
        for part in value:
            if isinstance(part, str):
                pieces.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                pieces.append(part["text"])
            elif isinstance(part, dict) and part.get("type") not in (None, "text", "output_text"):
                continue  # an image or audio part: no text to grade
            else:
                raise malformed(f"{what} part of type {type(part).__name__}", repr(part))
        return "".join(pieces)
    raise malformed(f"{what} of type {type(value).__name__}", repr(value))


def error_message(data: Any) -> str | None:
    """The message of an `{"error": ...}` object a server sent instead of an answer, if it is one."""
    if not isinstance(data, dict) or "error" not in data or data.get("choices"):
        return None
    err = data["error"]
    if isinstance(err, dict):
        return str(err.get("message") or err.get("type") or err)
    return str(err)


def json_object(body: bytes | str, where: str) -> dict:
    """The JSON object a body or stream event holds; not JSON, not an object, or an error object raise."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise malformed(f"not JSON in {where}", body) from None
    return checked_object(data, body, where)


def checked_object(data: Any, body: bytes | str, where: str) -> dict:
    """`data` (decoded from `body`) if it is an answer's object; not an object, or an error object, raise."""
    if not isinstance(data, dict):
        raise malformed(f"not a JSON object in {where}", body)
    message = error_message(data)
    if message is not None:
        raise ProviderError(f"error in {where}: {message[:SHOWN_BODY_CHARS]}", retryable=True)
    return data


@dataclass
class Usage:
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    estimated: bool
    cached_tokens: int | None = None  # None: the server said nothing about its prompt cache


def cached_prompt_tokens(usage: dict) -> int | None:
    """Of the prompt, the tokens the server read from its prompt cache, in either usage form:
    OpenAI's `prompt_tokens_details.cached_tokens` or DeepSeek's `prompt_cache_hit_tokens`.
    None when the usage names neither (a reported 0 is a real 0: no hit)."""
    details = usage.get("prompt_tokens_details")
    if isinstance(details, dict) and "cached_tokens" in details:
        count = token_count(details.get("cached_tokens"))
        if count is not None:
            return count
    return token_count(usage.get("prompt_cache_hit_tokens"))


def read_usage(usage: Any, prompt_contents: Sequence[str], text: str, reasoning: str) -> Usage:
    """The server's token counts where they are usable; estimated (and flagged) where not.

    A count of 0 for a non-empty prompt or answer is treated as missing: tokens are never
    silently zero.
    """
    usage = usage if isinstance(usage, dict) else {}
    prompt = token_count(usage.get("prompt_tokens"))
    cached = cached_prompt_tokens(usage)
    if not prompt and cached is not None:
        # DeepSeek splits the prompt in hits and misses; their sum is the prompt when no total is given.
        prompt = cached + (token_count(usage.get("prompt_cache_miss_tokens")) or 0) or None
    completion = token_count(usage.get("completion_tokens"))
    details = usage.get("completion_tokens_details")
    reasoning_tokens = token_count(details.get("reasoning_tokens")) if isinstance(details, dict) else None
    estimated = False
    if not prompt:
        prompt, estimated = estimate_prompt_tokens(prompt_contents), True
    if not completion and (text or reasoning or completion is None):
        completion, estimated = estimate_completion_tokens(text + reasoning), True
    if cached is not None:
        cached = min(cached, prompt)  # never more cached than the prompt it is part of
    return Usage(prompt, completion or 0, reasoning_tokens or 0, estimated, cached)


def completion_from_json(body: bytes, latency: float, prompt_contents: Sequence[str]) -> Completion:
    """A chat.completion JSON body -> Completion; anything else is a retryable malformed response."""
    data = json_object(body, "a 200 response")
    choices = data.get("choices")
    if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
        raise malformed("no choices", body)
    choice = choices[0]
    msg = choice.get("message")
    if not isinstance(msg, dict):
        raise malformed("no message", body)
    text = content_text(msg.get("content"))
    reasoning = content_text(msg.get("reasoning_content") or msg.get("reasoning"), "reasoning")
    return build_completion(
        text,
        reasoning,
        _finish_reason(choice.get("finish_reason")),
        data.get("usage"),
        prompt_contents,
        latency=latency,
        served=_text_field(data.get("model")),
        tool_calls=tool_calls_of(msg),
    )


def build_completion(
    text: str,
    reasoning: str,
    finish: str,
    usage: Any,
    prompt_contents: Sequence[str],
    *,
    latency: float,
    served: str,
    ttft: float | None = None,
    tool_calls: tuple[ToolCall, ...] = (),
) -> Completion:
    """The Completion of an answer read whole, with the server's token counts or estimated ones."""
    if finish == "tool_calls" and not tool_calls and not text.strip():
        # DeepSeek sometimes ends with finish_reason tool_calls and an empty call list: no answer was given.
        raise ProviderError("incomplete answer: finish_reason tool_calls with no call", retryable=True)
    # A call's name and arguments are output tokens too: an estimate must count them.
    called = "".join(f"{c.name}({c.raw_arguments})" for c in tool_calls)
    counts = read_usage(usage, prompt_contents, text, reasoning + called)
    return Completion(
        text=text,
        reasoning=reasoning,
        finish_reason=finish,
        prompt_tokens=counts.prompt_tokens,
        completion_tokens=counts.completion_tokens,
        reasoning_tokens=counts.reasoning_tokens,
        usage_estimated=counts.estimated,
        cached_tokens=counts.cached_tokens,
        latency_s=latency,
        ttft_s=ttft,
        served_model=served,
        tool_calls=tool_calls,
    )


@dataclass
class StreamReader:
    """Accumulates a chat.completion.chunk SSE stream, event by event.

    Feed it the stream's lines (`feed_line`); `ttft_s` is set by the caller's clock when the
    first text arrives (`first_text` turns True). `completion()` refuses a stream that never
    said why it ended (no `finish_reason`): a cut or interrupted stream is not an answer.
    """

    prompt_contents: Sequence[str]
    parts: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    finish: str = ""
    served: str = ""
    usage: Any = None
    done: bool = False
    events: int = 0
    calls: ToolCallDeltas = field(default_factory=ToolCallDeltas)
    _data: list[str] = field(default_factory=list)

    @property
    def first_text(self) -> bool:
        return any(self.parts) or any(self.reasoning)

    def feed_line(self, line: str) -> None:
        """One line of the event stream (without its line ending)."""
        if not line:
            self._dispatch()
        elif line.startswith("data:"):
            self._data.append(line[5:].removeprefix(" "))
        elif line.startswith(":") or line.startswith(("event:", "id:", "retry:")):
            return  # comments (keep-alives) and fields that do not carry data
        else:
            raise malformed("not a server-sent event", line)

    def close(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        if not self._data:
            return
        data, self._data = "\n".join(self._data), []
        if data.strip() == "[DONE]":
            self.done = True
            return
        self.apply(json_object(data, "the stream"), data)

    def apply(self, chunk: dict, data: bytes | str) -> None:
        """One event's chunk, already decoded from `data` (a caller may decode many events at once)."""
        chunk = checked_object(chunk, data, "the stream")
        self.events += 1
        self.served = self.served or _text_field(chunk.get("model"))
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        choices = chunk.get("choices") or []
        if not isinstance(choices, list):
            raise malformed("choices is not a list", data)
        for choice in choices:
            if not isinstance(choice, dict):
                raise malformed("a choice is not an object", data)
            delta = choice.get("delta") or {}
            if not isinstance(delta, dict):
                raise malformed("delta is not an object", data)
            self.parts.append(content_text(delta.get("content")))
            self.reasoning.append(content_text(delta.get("reasoning_content") or delta.get("reasoning"), "reasoning"))
            if "tool_calls" in delta or "function_call" in delta:
                self.calls.feed(delta)
            self.finish = _finish_reason(choice.get("finish_reason")) or self.finish

    def completion(self, latency: float, ttft: float | None) -> Completion:
        if not self.finish:
            text = "".join(self.parts)
            ending = "[DONE]" if self.done else "the end of the body"
            # An orderly [DONE] without a finish_reason is a server that gave up on the request (llama.cpp's
            # server does so when a newer request interrupts it); a body that just ends is a cut stream.
            raise ProviderError(
                f"incomplete stream: {ending} after {self.events} chunks and {len(text)} "
                f"characters, with no finish_reason (cut or interrupted by the server)",
                retryable=True,
                congested=self.done,
            )
        return build_completion(
            "".join(self.parts),
            "".join(self.reasoning),
            self.finish,
            self.usage,
            self.prompt_contents,
            latency=latency,
            served=self.served,
            ttft=ttft,
            tool_calls=self.calls.result(),
        )


_NO_DATA_FIELDS = (b":", b"event:", b"id:", b"retry:")


def event_data(raw: bytes) -> bytes | None:
    """The data of one server-sent event (its `data:` lines joined), by `StreamReader.feed_line`'s rules:
    comments and other fields carry none, any other line is not SSE and raises."""
    lines = []
    for line in raw.split(b"\n"):
        line = line.removesuffix(b"\r")
        if line.startswith(b"data:"):
            lines.append(line[5:].removeprefix(b" "))
        elif line and not line.startswith(_NO_DATA_FIELDS):
            raise malformed("not a server-sent event", line)
    return b"\n".join(lines) if lines else None


def _finish_reason(value: Any) -> str:
    return value[:40] if isinstance(value, str) else ""


def _text_field(value: Any) -> str:
    return value if isinstance(value, str) else ""
