"""The requests of a load test and what one of them measured.

Prompts are the plan's suites rendered as in a run (the real workload), or synthetic text of a
given length. A streamed response becomes a `RequestResult`: TTFT, inter-token gaps, end-to-end
latency, tokens, and an error class when the answer was not really received.
"""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass, field
from typing import Any

from harness.engine.units import generation_for, prepare_suites
from harness.errors import HarnessError
from harness.load.profile import Workload
from harness.load.wire import Response
from harness.plan import ModelSpec, Plan
from harness.providers.base import ProviderError
from harness.providers.http_request import chat_body, refusal_is_fatal
from harness.providers.openai_body import StreamReader, completion_from_json, event_data, json_object
from harness.providers.tokens import estimate_tokens
from harness.providers.vision import image_tokens, prompt_image_tokens, rule_for
from harness.records import Generation, Message, Prompt, TextPart

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
    """The request bodies a model's stages cycle through, built by the run's own builder (`chat_body`), with
    `workload.images` synthetic images each."""
    if workload.images:
        from harness.providers.vision import refuse_images

        refuse_images(model.name, model.provider, "harness load --images")
    bodies = []
    if workload.synthetic_input_tokens:
        gen = _synthetic_generation(plan, model, workload.output_tokens or 256)
        for i in range(count):
            prompt = Prompt((Message("user", synthetic_prompt(workload.synthetic_input_tokens, i)),))
            prompt, extra = _with_images(prompt, model, workload, i)
            bodies.append(_body(model, prompt, gen, workload, workload.synthetic_input_tokens + extra))
        return bodies
    plan_suites = prepare_suites(plan)
    wanted = set(workload.suites)
    for prepared in plan_suites:
        if wanted and prepared.suite.name not in wanted:
            continue
        gen = generation_for(plan, model, prepared.suite)
        if workload.output_tokens:
            gen = dataclasses.replace(gen, max_tokens=workload.output_tokens)
        for item in prepared.suite.items():
            prompt = prepared.builder.build(item)
            if prompt.tools:  # offered tools would come back as calls, which a load profile does not time
                raise HarnessError(
                    f"suite '{prepared.suite.name}' offers tools (or runs agent loops), which load profiles do not "
                    f"send yet; profile it with harness run, or pick a suite without tools for the workload"
                )
            prompt, extra = _with_images(prompt, model, workload, len(bodies))
            tokens = estimate_tokens(prompt.text) + prompt_image_tokens(prompt, model.api_model) + extra
            bodies.append(_body(model, prompt, gen, workload, tokens))
    return bodies


def _with_images(prompt: Prompt, model: ModelSpec, workload: Workload, index: int) -> tuple[Prompt, int]:
    """The prompt with the workload's synthetic images after the last user message's content, and
    their estimated tokens under the model family's rule."""
    if not workload.images:
        return prompt, 0
    from harness.load.images import synthetic_image

    width, height = workload.image_size
    images = tuple(synthetic_image(width, height, index * workload.images + k) for k in range(workload.images))
    messages = list(prompt.messages)
    last = max(i for i, m in enumerate(messages) if m.role == "user")
    content = messages[last].content
    parts = (TextPart(content),) if isinstance(content, str) else tuple(content)
    messages[last] = dataclasses.replace(messages[last], content=parts + images)
    rule = rule_for(model.api_model)
    return dataclasses.replace(prompt, messages=tuple(messages)), sum(image_tokens(width, height, rule) for _ in images)


def _synthetic_generation(plan: Plan, model: ModelSpec, max_tokens: int) -> Generation:
    """The plan's and the model's sampling settings (no suite here), so top_p and seed reach the server as in a run."""
    fields = {f.name for f in dataclasses.fields(Generation)}
    values: dict[str, Any] = {k: v for k, v in {**plan.generation, **model.generation}.items() if k in fields}
    values["max_tokens"] = max_tokens
    values["stop"] = tuple(values.get("stop") or ())
    if values.get("seed") is None and plan.seed:
        values["seed"] = plan.seed
    return Generation(**values)


def _body(model: ModelSpec, prompt: Prompt, gen: Generation, workload: Workload, tokens_est: int) -> Body:
    payload = chat_body(model, prompt, gen, stream=True)
    if workload.ignore_eos:
        # vLLM, llama.cpp and SGLang honour these; hosted APIs may refuse them, so only on request
        payload["ignore_eos"] = True
        payload["min_tokens"] = gen.max_tokens
    return Body(json.dumps(payload).encode(), tokens_est, gen.max_tokens)


def is_fatal(r: RequestResult) -> bool:
    """A failure that says the setup is wrong, not that the server is busy: nothing answered (refused,
    unknown host, TLS failure), a refused key, model or route (the run's rule), or a redirect we would not follow."""
    if r.ok:
        return False
    if r.status == 0:
        return r.error in ("connection", "4xx")
    return refusal_is_fatal(r.status, r.detail)


def fatal_cause(results: list[RequestResult]) -> str | None:
    """Why every request of a stage failed, when they all failed for a reason load cannot change; else None.

    `harness run` stops on these with the cause and exit 2; a load test does the same rather than
    store "100% errors" as if it were a measurement of the server under load.
    """
    if not results or not all(is_fatal(r) for r in results):
        return None
    first = results[0]
    detail = " ".join(first.detail.split())[:200]
    return f"HTTP {first.status}: {detail}" if first.status else detail or "no answer"


def error_kind(status: int) -> str:
    if status == 429:
        return "429"
    if status >= 500:
        return "5xx"
    return "4xx"


def interpret(response: Response, result: RequestResult) -> RequestResult:
    """Fill `result` from a received response: timings from the kernel stamps of its events.

    What is a complete answer is decided by the run's own reader (`StreamReader`,
    `completion_from_json`): a stream that ends without a finish_reason, even with [DONE], is
    incomplete here as it is in `harness run`.
    """
    result.status = response.status
    if response.status != 200:
        result.error = error_kind(response.status)
        result.detail = bytes(response.body[:200]).decode("utf-8", "replace") or f"HTTP {response.status}"
        return result
    sent = result.sent_at
    if not response.events:  # a non-streamed body: only the end-to-end latency is measurable
        return _interpret_json(response, result)
    reader = StreamReader(())
    token_times: list[float] = []
    try:
        stamped = []
        for at, raw in response.events:
            data = event_data(raw)
            if data is None:
                continue
            if data.strip() == b"[DONE]":
                reader.done = True
            else:
                stamped.append((at, data))
        try:  # one decode for the whole stream: per-call overhead would cost more than the parsing
            chunks = json.loads(b"[" + b",".join(d for _, d in stamped) + b"]")
        except (ValueError, RecursionError):
            chunks = None
        if not isinstance(chunks, list) or len(chunks) != len(stamped):  # an event that is not one JSON value
            chunks = [json_object(d, "the stream") for _, d in stamped]  # raises on the first bad event
        for (at, data), chunk in zip(stamped, chunks):
            seen = len(reader.parts)
            reader.apply(chunk, data)
            if any(reader.parts[seen:]) or any(reader.reasoning[seen:]):
                token_times.append(at)
        if not response.complete:
            raise ProviderError("incomplete stream: the body ended before the response did", retryable=True)
        end = response.events[-1][0]
        completion = reader.completion(end - sent, None)
    except ProviderError as exc:
        return _failed(result, exc)
    if not token_times and not completion.tool_calls:
        result.error, result.detail = "empty", "the stream carried no content"
        return result
    usage = reader.usage if isinstance(reader.usage, dict) else None
    result.ttft = (token_times[0] if token_times else end) - sent
    result.latency = end - sent
    result.itl = [b - a for a, b in zip(token_times, token_times[1:])]
    result.input_tokens = _int(usage, "prompt_tokens")
    result.output_tokens = _int(usage, "completion_tokens") or len(token_times) or None
    return result


def _failed(result: RequestResult, exc: ProviderError) -> RequestResult:
    """An answer the run's reader refuses: an error the server sent in the body counts as 5xx, the rest incomplete."""
    message = str(exc)
    result.error = "5xx" if message.startswith("error in ") else "incomplete"
    result.detail = message[:200]
    return result


def _interpret_json(response: Response, result: RequestResult) -> RequestResult:
    latency = (response.last_at or result.sent_at) - result.sent_at
    try:
        completion = completion_from_json(bytes(response.body), latency, ())
    except ProviderError as exc:
        return _failed(result, exc)
    if not completion.text and not completion.tool_calls:
        result.error, result.detail = "empty", "the answer was empty"
        return result
    usage = None
    try:
        data = json.loads(bytes(response.body))
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
    except ValueError:
        pass
    result.latency = latency
    result.input_tokens = _int(usage, "prompt_tokens")
    result.output_tokens = _int(usage, "completion_tokens")
    return result


def _int(usage: dict | None, key: str) -> int | None:
    value = (usage or {}).get(key)
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
