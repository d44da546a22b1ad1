"""The requests of a load test and what one of them measured.

Prompts are the plan's suites rendered as in a run (the real workload), or synthetic text of a
given length. A streamed response becomes a `RequestResult`: TTFT, inter-token gaps, end-to-end
latency, tokens, and an error class when the answer was not really received.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

from harness.engine.units import generation_for, prepare_suites
from harness.errors import HarnessError
from harness.load.profile import Workload
from harness.load.wire import Response
from harness.plan import ModelSpec, Plan
from harness.providers.chat_format import openai_messages
from harness.providers.tokens import estimate_tokens

ERROR_KINDS = ("429", "5xx", "4xx", "timeout", "connection", "incomplete", "empty")


@dataclass(frozen=True)
class Body:
    """One request body, ready to send, with its estimated input tokens (for --dry-run cost)."""

    data: bytes
    input_tokens_est: int
    max_tokens: int


@dataclass
class RequestResult:
    sent_at: float  # epoch seconds, just before the request left
    latency: float | None = None  # to the end of the response
    ttft: float | None = None  # to the first content token
    itl: list[float] = field(default_factory=list)  # gaps between content chunks
    input_tokens: int | None = None
    output_tokens: int | None = None
    status: int = 0  # HTTP status; 0 when none arrived
    error: str = ""  # one of ERROR_KINDS, "" when the answer was received whole
    detail: str = ""
    measured: bool = True  # False for warm-up requests
    elapsed: float = 0.0  # seconds from sending to the end (of the answer or of the failure)

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def tpot(self) -> float | None:
        """Time per output token after the first: (latency - TTFT) / (tokens - 1)."""
        if self.latency is None or self.ttft is None or not self.output_tokens or self.output_tokens < 2:
            return None
        return (self.latency - self.ttft) / (self.output_tokens - 1)


_FILLER = (
    "time river stone light paper green window music table garden cloud bridge summer number "
    "yellow market silver forest letter orange"
).split()


def synthetic_prompt(tokens: int, seed: int) -> str:
    """About `tokens` tokens of plain words (short common words are one token in the usual BPE
    vocabularies); each prompt differs, so a server's prefix cache does not flatter it."""
    rng = random.Random(seed)
    return " ".join(rng.choice(_FILLER) for _ in range(max(1, tokens)))


def build_bodies(plan: Plan, model: ModelSpec, workload: Workload, *, count: int = 256) -> list[Body]:
    """The request bodies a model's stages cycle through."""
    bodies = []
    if workload.synthetic_input_tokens:
        max_tokens = workload.output_tokens or 256
        for i in range(count):
            text = synthetic_prompt(workload.synthetic_input_tokens, i)
            bodies.append(
                _body(model, [{"role": "user", "content": text}], max_tokens, workload, workload.synthetic_input_tokens)
            )
        return bodies
    plan_suites = prepare_suites(plan)
    wanted = set(workload.suites)
    for prepared in plan_suites:
        if wanted and prepared.suite.name not in wanted:
            continue
        gen = generation_for(plan, model, prepared.suite)
        max_tokens = workload.output_tokens or gen.max_tokens
        for item in prepared.suite.items():
            prompt = prepared.builder.build(item)
            if prompt.tools:  # a load body carries messages only: offering no tools would measure another request
                raise HarnessError(
                    f"suite '{prepared.suite.name}' offers tools (or runs agent loops), which load profiles do not "
                    f"send yet; profile it with harness run, or pick a suite without tools for the workload"
                )
            messages = openai_messages(prompt)
            bodies.append(
                _body(
                    model, messages, max_tokens, workload, estimate_tokens(prompt.text), gen.temperature, list(gen.stop)
                )
            )
    return bodies


def _body(
    model: ModelSpec,
    messages: list[dict],
    max_tokens: int,
    workload: Workload,
    tokens_est: int,
    temperature: float = 0.0,
    stop: list[str] | None = None,
) -> Body:
    payload = {
        "model": model.api_model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if stop:
        payload["stop"] = stop
    if workload.ignore_eos:
        # vLLM, llama.cpp and SGLang honour these; hosted APIs may refuse them, so only on request
        payload["ignore_eos"] = True
        payload["min_tokens"] = max_tokens
    return Body(json.dumps(payload).encode(), tokens_est, max_tokens)


def error_kind(status: int) -> str:
    if status == 429:
        return "429"
    if status >= 500:
        return "5xx"
    return "4xx"


def interpret(response: Response, result: RequestResult) -> RequestResult:
    """Fill `result` from a received response: timings from the kernel stamps of its events."""
    result.status = response.status
    if response.status != 200:
        result.error = error_kind(response.status)
        result.detail = bytes(response.body[:200]).decode("utf-8", "replace") or f"HTTP {response.status}"
        return result
    sent = result.sent_at
    if not response.events:  # a non-streamed body: only the end-to-end latency is measurable
        return _interpret_json(response, result)
    token_times: list[float] = []
    done = False
    finished = False
    usage = None
    stamped: list[tuple[float, bytes]] = []
    for at, raw in response.events:
        for line in raw.split(b"\n"):
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                done = True
            elif payload:
                stamped.append((at, payload))
    try:  # one decode for the whole stream: per-call overhead would cost more than the parsing
        chunks = json.loads(b"[" + b",".join(p for _, p in stamped) + b"]")
    except ValueError:
        bad = next((p for _, p in stamped if not _is_json(p)), b"")
        result.error, result.detail = "incomplete", f"unreadable stream event: {bad[:80]!r}"
        return result
    for (at, _), chunk in zip(stamped, chunks):
        if not isinstance(chunk, dict):
            continue
        if chunk.get("error"):
            result.error, result.detail = "5xx", str(chunk["error"])[:200]
            return result
        if isinstance(chunk.get("usage"), dict):
            usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
            if delta.get("content") or delta.get("reasoning_content") or delta.get("reasoning"):
                token_times.append(at)
            finished = finished or bool(choice.get("finish_reason"))
    end = response.events[-1][0]
    if not (done or finished) or not response.complete:
        result.error, result.detail = "incomplete", "the stream ended before the response did"
        return result
    if not token_times:
        result.error, result.detail = "empty", "the stream carried no content"
        return result
    result.ttft = token_times[0] - sent
    result.latency = end - sent
    result.itl = [b - a for a, b in zip(token_times, token_times[1:])]
    result.input_tokens = _int(usage, "prompt_tokens")
    result.output_tokens = _int(usage, "completion_tokens") or len(token_times)
    return result


def _interpret_json(response: Response, result: RequestResult) -> RequestResult:
    try:
        data = json.loads(bytes(response.body))
        text = data["choices"][0]["message"].get("content") or ""
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        result.error, result.detail = "incomplete", "no streamed events and no chat.completion body"
        return result
    if not text:
        result.error, result.detail = "empty", "the answer was empty"
        return result
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
    result.latency = (response.last_at or result.sent_at) - result.sent_at
    result.input_tokens = _int(usage, "prompt_tokens")
    result.output_tokens = _int(usage, "completion_tokens")
    return result


def _is_json(payload: bytes) -> bool:
    try:
        json.loads(payload)
        return True
    except ValueError:
        return False


def _int(usage: dict | None, key: str) -> int | None:
    value = (usage or {}).get(key)
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
