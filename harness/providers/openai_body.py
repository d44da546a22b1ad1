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
from harness.providers.tokens import estimate_completion_tokens, estimate_prompt_tokens
from harness.records import Completion

# More tokens than any context window holds is not a count, it is a broken server.
MAX_PLAUSIBLE_TOKENS = 10_000_000
SHOWN_BODY_CHARS = 200


def malformed(why: str, body: bytes | str = b"") -> ProviderError:
    shown = f": {body[:SHOWN_BODY_CHARS]!r}" if body else ""
    return ProviderError(f"malformed response ({why}){shown}", retryable=True)


def token_count(value: Any) -> int | None:
    """A reported token count, or None when it is missing or not a plausible count."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and 0 <= value <= MAX_PLAUSIBLE_TOKENS:
        return value
    return None


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


@dataclass
class Usage:
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    estimated: bool


def read_usage(usage: Any, prompt_contents: Sequence[str], text: str, reasoning: str) -> Usage:
    """The server's token counts where they are usable; estimated (and flagged) where not.

    A count of 0 for a non-empty prompt or answer is treated as missing: tokens are never
    silently zero.
    """
    usage = usage if isinstance(usage, dict) else {}
    prompt = token_count(usage.get("prompt_tokens"))
    completion = token_count(usage.get("completion_tokens"))
    details = usage.get("completion_tokens_details")
    reasoning_tokens = token_count(details.get("reasoning_tokens")) if isinstance(details, dict) else None
    estimated = False
    if not prompt:
        prompt, estimated = estimate_prompt_tokens(prompt_contents), True
    if not completion and (text or reasoning or completion is None):
        completion, estimated = estimate_completion_tokens(text + reasoning), True
    return Usage(prompt, completion or 0, reasoning_tokens or 0, estimated)


def completion_from_json(body: bytes, latency: float, prompt_contents: Sequence[str]) -> Completion:
    """A chat.completion JSON body -> Completion; anything else is a retryable malformed response."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise malformed("not JSON", body) from None
    if not isinstance(data, dict):
        raise malformed("not a JSON object", body)
    message = error_message(data)
    if message is not None:
        raise ProviderError(f"error in a 200 response: {message[:SHOWN_BODY_CHARS]}", retryable=True)
    choices = data.get("choices")
    if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
        raise malformed("no choices", body)
    choice = choices[0]
    msg = choice.get("message")
    if not isinstance(msg, dict):
        raise malformed("no message", body)
    text = content_text(msg.get("content"))
    reasoning = content_text(msg.get("reasoning_content") or msg.get("reasoning"), "reasoning")
    usage = read_usage(data.get("usage"), prompt_contents, text, reasoning)
    return Completion(
        text=text, reasoning=reasoning, finish_reason=_finish_reason(choice.get("finish_reason")),
        prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
        reasoning_tokens=usage.reasoning_tokens, usage_estimated=usage.estimated,
        latency_s=latency, served_model=_text_field(data.get("model")),
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
        try:
            chunk = json.loads(data)
        except (ValueError, RecursionError):
            raise malformed("stream event is not JSON", data) from None
        if not isinstance(chunk, dict):
            raise malformed("stream event is not a JSON object", data)
        message = error_message(chunk)
        if message is not None:
            raise ProviderError(f"error in the stream: {message[:SHOWN_BODY_CHARS]}", retryable=True)
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
            self.finish = _finish_reason(choice.get("finish_reason")) or self.finish

    def completion(self, latency: float, ttft: float | None) -> Completion:
        if not self.finish:
            text = "".join(self.parts)
            ending = "[DONE]" if self.done else "the end of the body"
            # An orderly [DONE] without a finish_reason is a server that gave up on the request (llama.cpp's
            # server does so when a newer request interrupts it); a body that just ends is a cut stream.
            raise ProviderError(f"incomplete stream: {ending} after {self.events} chunks and {len(text)} "
                                f"characters, with no finish_reason (cut or interrupted by the server)",
                                retryable=True, congested=self.done)
        text, reasoning = "".join(self.parts), "".join(self.reasoning)
        usage = read_usage(self.usage, self.prompt_contents, text, reasoning)
        return Completion(
            text=text, reasoning=reasoning, finish_reason=self.finish,
            prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
            reasoning_tokens=usage.reasoning_tokens, usage_estimated=usage.estimated,
            latency_s=latency, ttft_s=ttft, served_model=self.served,
        )


def _finish_reason(value: Any) -> str:
    return value[:40] if isinstance(value, str) else ""


def _text_field(value: Any) -> str:
    return value if isinstance(value, str) else ""
