"""A loopback OpenAI-compatible chat server for tests and benchmarks: real HTTP, injectable faults.

Hand-written on asyncio streams (HTTP/1.1 keep-alive, JSON and SSE) so it has no dependency
and costs little CPU. It answers from a `responder(model, messages) -> text` callable, counts
every request per (model, prompt) so tests can prove nothing was requested twice, and can
inject latency, HTTP 500s, 429s with Retry-After, malformed bodies and dropped connections.

It also speaks the Files and Batches API (`/v1/files`, `/v1/batches`): a batch moves validating ->
in_progress -> finalizing -> completed one step per `polls_per_state` retrieves (or is held
in_progress with `state.batch.hold`), and `state.batch.plans` makes batches expire, fail, be
cancelled, or answer some lines with errors or leave them out. Batch lines are answered by the same
responder and counted in the same `successes`, so a test sees a request answered twice either way.

Run standalone (for benchmarks, in its own process):
    python tests/fakeserver.py --port 0 --latency 0.5   # prints "listening on http://127.0.0.1:PORT/v1"
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable


def default_responder(model: str, messages: list[dict]) -> str:
    return "The answer is 42."


def echo_responder(model: str, messages: list[dict]) -> str:
    """Answer with the last line of the last message (benchmarks: a suite whose prompt ends with its answer)."""
    content = messages[-1].get("content", "") if messages else ""
    if isinstance(content, list):  # content parts (text and images): the text, as a server reads it
        content = "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return str(content).rsplit("\n", 1)[-1]


def prompt_words(messages: list[dict]) -> list[str]:
    """The fake's tokens of a prompt: the words of its messages' text (text parts of a list), in order."""
    words = []
    for m in messages:
        content = m.get("content", "")
        if isinstance(content, list):
            words += [
                w
                for p in content
                if isinstance(p, dict) and p.get("type") == "text"
                for w in str(p.get("text", "")).split()
            ]
        else:
            words += str(content or "").split()
    return words


def _text_words(message: dict) -> int:
    return len(prompt_words([message]))


def _common_prefix(a: list[str], b: list[str]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


@dataclass
class Faults:
    latency_s: float = 0.0
    error_500: float = 0.0  # probability per request
    error_429: float = 0.0
    retry_after_s: float = 0.05
    malformed: float = 0.0  # 200 with a body that is not JSON
    drop: float = 0.0  # close the connection without answering
    hang: float = 0.0  # never answer (client timeout)
    max_concurrent: int | None = None  # 429 (with Retry-After) for requests beyond this many at once
    unauthorized_models: frozenset = frozenset()  # API model names always answered 401 (a revoked key)
    # Only these API model names get the random faults (None: all). The others draw no roll, so the
    # faulty models' rolls come in their own request order and do not depend on how models interleave.
    fault_models: frozenset | None = None
    seed: int = 0
    # What real servers do (see tests/test_conformance.py):
    interrupt: float = (
        0.0  # stream only the role chunk, then [DONE]: llama.cpp's server when a newer request interrupts
    )
    stream_usage: bool = True  # False: no usage chunk in streams (llama.cpp's server never sends one)
    plain_500: bool = False  # 500s as text/plain "Internal Server Error" (a gateway's own failure page)
    # 429s without Retry-After (LiteLLM's router: "No deployments available for selected model")
    no_retry_after: bool = False
    status: int | None = None  # answer every chat request with this status and an error body
    status_message: str = "request refused"  # that error body's message
    echo_auth: bool = False  # error bodies quote the request's Authorization header (a careless server)
    body: Callable[[dict], bytes] | None = None  # the raw body of every 200 answer, from the request payload
    # Answer chat requests whose path lacks "/moved/" with 307 Location: this URL (a relative one stays on this server)
    redirect_to: str | None = None
    # Report prompt-cache hits in usage: "openai" (prompt_tokens_details.cached_tokens) or "deepseek"
    # (prompt_cache_hit_tokens / prompt_cache_miss_tokens). A hit is the longest run of leading prompt
    # tokens (words here) shared with an earlier prompt to the same model, in whole `cache_block`s.
    prompt_cache: str | None = None
    cache_block: int = 1
    # Refuse prompts of more tokens (words) than this with llama-cpp-python's 400 context_length_exceeded.
    context_window: int | None = None


TERMINAL_BATCH_STATES = ("completed", "expired", "failed", "cancelled")


@dataclass
class BatchPlan:
    """How one batch submitted to the fake server ends. Batches take these in order; later ones complete."""

    outcome: str = "completed"  # completed | expired | failed | cancelled
    missing: float = 0.0  # share of lines that appear in neither output nor error file (expired batches)
    expired_errors: float = 0.0  # share of lines reported in the error file as batch_expired
    line_errors: float = 0.0  # share of lines answered with an HTTP 500 in the error file
    bad_request: float = 0.0  # share of lines answered with an HTTP 400 (not retryable)


@dataclass
class BatchState:
    """The fake Files and Batches API: files, batches and counters, advanced by polls or by tests."""

    polls_per_state: int = 1  # retrieves a batch stays validating, in_progress and finalizing
    hold: bool = False  # keep every batch in_progress until a test sets this back to False
    plans: list = field(default_factory=list)  # BatchPlan per new batch, consumed in order
    files: dict = field(default_factory=dict)  # id -> {"meta": {...}, "data": bytes}
    batches: dict = field(default_factory=dict)  # id -> batch object (dict)
    created: int = 0  # batches created (a second submission shows here)
    uploads: int = 0
    retrieves: int = 0
    lines_answered: int = 0
    ticks: Counter = field(default_factory=Counter)  # batch id -> retrieves in its current state
    headers_seen: list = field(default_factory=list)  # request headers of Files/Batches calls (bounded)


@dataclass
class ServerState:
    responder: Callable[[str, list[dict]], str] = default_responder
    faults: Faults = field(default_factory=Faults)
    served_model: Callable[[str], str] | None = None  # the `model` reported back
    requests: int = 0
    successes: Counter = field(default_factory=Counter)  # prompt key -> 200 answers sent
    attempts: Counter = field(default_factory=Counter)  # prompt key -> requests received
    status_counts: Counter = field(default_factory=Counter)
    bodies: list = field(default_factory=list)  # last raw request bodies (bounded) for inspection
    headers_seen: list = field(default_factory=list)
    first_request_at: float | None = None  # time.time() of the first chat request (benchmarks: start-up)
    last_response_at: float | None = None  # time.time() of the last chat answer sent (benchmarks: the tail)
    in_flight: int = 0
    max_in_flight: int = 0  # the most chat requests being answered at once
    log: list = field(default_factory=list)  # (time.monotonic(), prompt key, outcome) per chat request, bounded
    batch: BatchState = field(default_factory=BatchState)
    # Requests offering tools: payload -> {"message": {...}, "finish_reason": str, "deltas": [...]} or None
    # (None: answer as text). See tests/support/tools.py for the tool-call quirks of real servers.
    tool_answer: Callable[[dict], dict | None] | None = None
    prompts_seen: dict = field(default_factory=dict)  # model -> earlier prompts' token (word) lists

    def snapshot(self) -> dict:
        """Counters as plain JSON (served at GET /_stats for a server run in another process)."""
        return {
            "requests": self.requests,
            "successes": dict(self.successes),
            "attempts": dict(self.attempts),
            "status_counts": dict(self.status_counts),
            "first_request_at": self.first_request_at,
            "last_response_at": self.last_response_at,
            "max_in_flight": self.max_in_flight,
            "batches_created": self.batch.created,
            "batch_lines_answered": self.batch.lines_answered,
        }


# What a vision server counts for an image part (OpenAI's low-detail figure); real servers count them too.
IMAGE_TOKENS = 85


def _content_tokens(content) -> int:
    """Words of a message's text, plus IMAGE_TOKENS per image part (the base64 is not words)."""
    if isinstance(content, list):
        parts = [p for p in content if isinstance(p, dict)]
        words = sum(len(str(p.get("text", "")).split()) for p in parts if p.get("type") == "text")
        return words + IMAGE_TOKENS * sum(1 for p in parts if p.get("type") == "image_url")
    return len(str(content).split())


def prompt_key(model: str, messages: list[dict]) -> str:
    blob = json.dumps([model, messages], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class FakeOpenAIServer:
    def __init__(self, state: ServerState | None = None, host: str = "127.0.0.1", port: int = 0):
        self.state = state or ServerState()
        self.host, self.port = host, port
        self._rng = random.Random(self.state.faults.seed)
        self._server: asyncio.base_events.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._clients: set = set()  # open connections: a stopped server closes them, as a real one does

    def reseed(self, seed: int) -> None:
        """Restart the fault rolls from `seed` (tests set faults after the fixture built the server)."""
        self.state.faults.seed = seed
        self._rng = random.Random(seed)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    # -- lifecycle ------------------------------------------------------------------

    async def start_async(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    def start(self) -> "FakeOpenAIServer":
        """Serve from a background thread with its own event loop."""
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self.start_async())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-openai", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop and self._server:

            async def close():
                self._server.close()
                for client in list(self._clients):  # keep-alive clients (a gateway's pool) see the server go
                    client.close()

            asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- HTTP -----------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    break
                method, path, _ = request_line.decode("latin-1").split(" ", 2)
                headers = {}
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = line.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                if headers.get("transfer-encoding", "").lower() == "chunked":
                    body = await _read_chunked(reader)
                else:
                    length = int(headers.get("content-length", "0") or 0)
                    body = await reader.readexactly(length) if length else b""
                keep = await self._respond(method, path, headers, body, writer)
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            self._clients.discard(writer)
            try:
                writer.close()
            except Exception:
                pass

    async def _respond(self, method, path, headers, body, writer) -> bool:
        st = self.state
        if method == "GET" and path.rstrip("/").endswith("/_stats"):
            self._send(writer, 200, st.snapshot())
            return True
        if method == "GET" and path.rstrip("/").endswith("/_log"):
            self._send(writer, 200, st.log)  # (time.monotonic(), prompt key, outcome) per chat request
            return True
        if method == "GET" and path.rstrip("/").endswith("/models"):
            self._send(writer, 200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})
            return True
        route = path.split("?", 1)[0].rstrip("/")
        if "/files" in route or "/batches" in route:
            self._batch_api(method, path, headers, body, writer)
            return True
        if self.state.faults.redirect_to and method == "POST" and "/moved/" not in path:
            st.requests += 1
            if len(st.headers_seen) < 50:
                st.headers_seen.append(headers)
            self._send_raw(writer, 307, b"", "text/plain", {"Location": self.state.faults.redirect_to})
            return True
        if method != "POST" or not path.rstrip("/").endswith("/chat/completions"):
            self._send(writer, 404, {"error": {"message": f"no route {method} {path}"}})
            return True
        st.in_flight += 1
        st.max_in_flight = max(st.max_in_flight, st.in_flight)
        try:
            return await self._chat(headers, body, writer)
        finally:
            st.in_flight -= 1

    async def _chat(self, headers, body, writer) -> bool:
        try:
            return await self._answer_chat(headers, body, writer)
        finally:
            self.state.last_response_at = time.time()

    async def _answer_chat(self, headers, body, writer) -> bool:
        st = self.state
        st.requests += 1
        if st.first_request_at is None:
            st.first_request_at = time.time()
        if len(st.headers_seen) < 50:
            st.headers_seen.append(headers)
        try:
            payload = json.loads(body)
        except json.JSONDecodeError:
            self._send(writer, 400, {"error": {"message": "invalid JSON body"}})
            return True
        model = payload.get("model", "")
        messages = payload.get("messages", [])
        key = prompt_key(model, messages)
        st.attempts[key] += 1
        if len(st.bodies) < 200:
            st.bodies.append(payload)
        f = self.state.faults
        if model in f.unauthorized_models:
            self._log(key, "401")
            st.status_counts["401"] += 1
            self._send(
                writer,
                401,
                {
                    "error": {
                        "message": "Incorrect API key provided",
                        "type": "invalid_request_error",
                        "code": "invalid_api_key",
                    }
                },
            )
            return True
        roll = self._rng.random() if f.fault_models is None or model in f.fault_models else 1.0
        if f.status is not None:
            self._log(key, str(f.status))
            st.status_counts[str(f.status)] += 1
            said = f" (you sent Authorization: {headers.get('authorization', '')})" if f.echo_auth else ""
            self._send(writer, f.status, {"error": {"message": f"{f.status_message}{said}", "type": "error"}})
            return True
        if f.context_window is not None and len(prompt_words(messages)) > f.context_window:
            # llama-cpp-python's server, word for word (its errors.py), streamed or not.
            n, out = len(prompt_words(messages)), int(payload.get("max_tokens") or 16)
            self._log(key, "context_length")
            st.status_counts["context_length"] += 1
            message = (
                f"This model's maximum context length is {f.context_window} tokens. However, you requested "
                f"{n + out} tokens ({n} in the messages, {out} in the completion). "
                f"Please reduce the length of the messages or completion."
            )
            error = {"message": message, "type": "invalid_request_error", "param": "messages"}
            self._send(writer, 400, {"error": {**error, "code": "context_length_exceeded"}})
            return True
        if f.max_concurrent is not None and st.in_flight > f.max_concurrent:
            self._log(key, "429")
            st.status_counts["429"] += 1
            self._send(
                writer,
                429,
                {"error": {"message": "too many concurrent requests", "type": "rate_limit"}},
                extra={"Retry-After": f"{f.retry_after_s:g}"},
            )
            return True
        if f.latency_s:
            await asyncio.sleep(f.latency_s)
        # One roll picks at most one fault, so the rates add up as configured.
        edges = [
            ("500", f.error_500),
            ("429", f.error_429),
            ("malformed", f.malformed),
            ("drop", f.drop),
            ("hang", f.hang),
        ]
        acc = 0.0
        for name, p in edges:
            acc += p
            if roll < acc:
                st.status_counts[name] += 1
                self._log(key, name)
                if name == "500" and f.plain_500:
                    said = f" {headers.get('authorization', '')}" if f.echo_auth else ""
                    self._send_raw(writer, 500, f"Internal Server Error{said}".encode(), "text/plain; charset=utf-8")
                    return True
                if name == "500":
                    self._send(writer, 500, {"error": {"message": "injected server error", "type": "server_error"}})
                    return True
                if name == "429":
                    self._send(
                        writer,
                        429,
                        {"error": {"message": "injected rate limit", "type": "rate_limit"}},
                        extra=None if f.no_retry_after else {"Retry-After": f"{f.retry_after_s:g}"},
                    )
                    return True
                if name == "malformed":
                    self._send_raw(writer, 200, b'{"id": "x", "choices": [ {"message": ', "application/json")
                    return True
                if name == "drop":
                    return False
                if name == "hang":
                    await asyncio.sleep(3600)
                    return False
        self._log(key, "200")
        st.status_counts["200"] += 1
        tool_reply = st.tool_answer(payload) if st.tool_answer is not None and payload.get("tools") else None
        if tool_reply is not None:
            st.successes[key] += 1
            await self._tool_reply(writer, model, payload, tool_reply)
            return True
        answer = self._answer(model, messages)
        if payload.get("stream"):
            usage = answer["usage"]
            interrupted = f.interrupt and self._rng.random() < f.interrupt
            if interrupted:
                st.status_counts["interrupted"] += 1
            text = "" if interrupted else answer["choices"][0]["message"]["content"]
            await self._stream(
                writer,
                answer["model"],
                text,
                usage["prompt_tokens"],
                usage["completion_tokens"],
                interrupted=bool(interrupted),
                usage=f.stream_usage,
                extra_usage={k: v for k, v in usage.items() if k.startswith("prompt_")},
            )
            return True
        if f.body is not None:
            self._send_raw(writer, 200, f.body(payload), "application/json")
            return True
        self._send(writer, 200, answer)
        return True

    def _line_answer(self, body: dict) -> dict:
        """A batch line's answer: a tool answer when the line offers tools and the state has a tool_answer."""
        reply = self.state.tool_answer(body) if self.state.tool_answer is not None and body.get("tools") else None
        if reply is None:
            return self._answer(body.get("model", ""), body.get("messages", []))
        self.state.successes[prompt_key(body.get("model", ""), body.get("messages", []))] += 1
        choice = {
            "index": 0,
            "message": {"role": "assistant", **reply["message"]},
            "finish_reason": reply.get("finish_reason", "tool_calls"),
        }
        usage = {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70}
        return {
            "id": "chatcmpl-b",
            "object": "chat.completion",
            "model": body.get("model", ""),
            "choices": [choice],
            "usage": usage,
        }

    def _answer(self, model: str, messages: list[dict]) -> dict:
        """A chat.completion for these messages, counted as answered (online or in a batch)."""
        st = self.state
        text = st.responder(model, messages)
        st.successes[prompt_key(model, messages)] += 1
        served = st.served_model(model) if st.served_model else model
        words = prompt_words(messages)
        # Image parts count IMAGE_TOKENS each (their base64 is not words), as a vision server counts them.
        prompt_tokens = len(words) + sum(_content_tokens(m.get("content", "")) - _text_words(m) for m in messages)
        completion_tokens = max(1, len(text.split()))
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
        if st.faults.prompt_cache:
            seen = st.prompts_seen.setdefault(model, [])
            shared = max((_common_prefix(words, earlier) for earlier in seen), default=0)
            hit = shared - shared % max(1, st.faults.cache_block)
            seen.append(words)
            if st.faults.prompt_cache == "deepseek":
                usage.update(prompt_cache_hit_tokens=hit, prompt_cache_miss_tokens=prompt_tokens - hit)
            else:
                usage["prompt_tokens_details"] = {"cached_tokens": hit}
        return {
            "id": f"chatcmpl-{st.requests}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": served,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {**usage, "total_tokens": prompt_tokens + completion_tokens},
        }

    # -- Files and Batches API ----------------------------------------------------------

    def _batch_api(self, method: str, path: str, headers: dict, body: bytes, writer) -> None:
        route, _, query = path.partition("?")
        parts = [p for p in route.split("/") if p]
        kind = "files" if "files" in parts else "batches"
        rest = parts[parts.index(kind) + 1 :]
        b = self.state.batch
        if len(b.headers_seen) < 50:
            b.headers_seen.append(headers)
        if kind == "files" and method == "POST" and not rest:
            return self._send(writer, *self._upload(headers, body))
        if kind == "files" and method == "GET" and rest and rest[0] in b.files:
            f = b.files[rest[0]]
            if rest[1:] == ["content"]:
                return self._send_raw(writer, 200, f["data"], "application/octet-stream")
            return self._send(writer, 200, f["meta"])
        if kind == "batches" and method == "POST" and not rest:
            return self._send(writer, *self._create_batch(body))
        if kind == "batches" and method == "GET" and not rest:
            params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
            ordered = sorted(b.batches.values(), key=lambda x: x["_seq"], reverse=True)
            if params.get("after"):
                ids = [x["id"] for x in ordered]
                ordered = ordered[ids.index(params["after"]) + 1 :] if params["after"] in ids else []
            limit = int(params.get("limit", 20))
            page = [self._public(x) for x in ordered[:limit]]
            return self._send(
                writer,
                200,
                {
                    "object": "list",
                    "data": page,
                    "has_more": len(ordered) > limit,
                    "first_id": page[0]["id"] if page else None,
                    "last_id": page[-1]["id"] if page else None,
                },
            )
        if kind == "batches" and rest and rest[0] in b.batches:
            batch = b.batches[rest[0]]
            if method == "POST" and rest[1:] == ["cancel"]:
                if batch["status"] not in TERMINAL_BATCH_STATES:
                    batch.update(status="cancelling", cancelling_at=int(time.time()))
                return self._send(writer, 200, self._public(batch))
            if method == "GET" and not rest[1:]:
                b.retrieves += 1
                self.tick_batch(batch["id"])
                return self._send(writer, 200, self._public(batch))
        self._send(
            writer, 404, {"error": {"message": f"no such object: {method} {route}", "type": "invalid_request_error"}}
        )

    def _upload(self, headers: dict, body: bytes) -> tuple[int, dict]:
        from email.parser import BytesParser
        from email.policy import HTTP

        message = BytesParser(policy=HTTP).parsebytes(
            b"Content-Type: " + headers.get("content-type", "").encode("latin-1") + b"\r\n\r\n" + body
        )
        fields, data, filename = {}, None, "upload.jsonl"
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name == "file":
                data = part.get_payload(decode=True) or b""
                filename = part.get_filename() or filename
            elif name:
                fields[name] = part.get_content().strip()
        if data is None or fields.get("purpose") != "batch":
            return 400, {"error": {"message": "upload a file with purpose=batch", "type": "invalid_request_error"}}
        b = self.state.batch
        b.uploads += 1
        file_id = f"file-{b.uploads:04d}"
        meta = {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": "batch",
            "status": "processed",
        }
        b.files[file_id] = {"meta": meta, "data": data}
        return 200, meta

    def _create_batch(self, body: bytes) -> tuple[int, dict]:
        b = self.state.batch
        try:
            payload = json.loads(body)
        except ValueError:
            return 400, {"error": {"message": "invalid JSON body"}}
        file_id = payload.get("input_file_id")
        if file_id not in b.files or payload.get("completion_window") != "24h" or not payload.get("endpoint"):
            return 400, {
                "error": {
                    "message": "need input_file_id of an uploaded file, endpoint and completion_window 24h",
                    "type": "invalid_request_error",
                }
            }
        b.created += 1
        batch_id = f"batch_{b.created:04d}"
        lines = [line for line in b.files[file_id]["data"].splitlines() if line.strip()]
        now = int(time.time())
        b.batches[batch_id] = {
            "id": batch_id,
            "object": "batch",
            "endpoint": payload["endpoint"],
            "errors": None,
            "input_file_id": file_id,
            "completion_window": "24h",
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": now,
            "in_progress_at": None,
            "expires_at": now + 86400,
            "finalizing_at": None,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "cancelling_at": None,
            "cancelled_at": None,
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "metadata": payload.get("metadata") or {},
        }
        b.batches[batch_id].update(_plan=b.plans.pop(0) if b.plans else BatchPlan(), _seq=b.created)
        return 200, self._public(b.batches[batch_id])

    @staticmethod
    def _public(batch: dict) -> dict:
        return {k: v for k, v in batch.items() if not k.startswith("_")}

    def tick_batch(self, batch_id: str) -> None:
        """One step of a batch's clock: after `polls_per_state` retrieves it moves to its next state."""
        b = self.state.batch
        batch = b.batches[batch_id]
        status = batch["status"]
        if status in TERMINAL_BATCH_STATES or (status == "in_progress" and b.hold):
            return
        b.ticks[batch_id] += 1
        if b.ticks[batch_id] < b.polls_per_state:
            return
        b.ticks[batch_id] = 0
        plan: BatchPlan = batch["_plan"]
        now = int(time.time())
        if status == "cancelling":
            self._finish_batch(batch, "cancelled", answered_share=0.5)
        elif status == "validating":
            if plan.outcome == "failed":
                batch.update(
                    status="failed",
                    failed_at=now,
                    errors={
                        "object": "list",
                        "data": [{"code": "invalid_request", "message": "injected validation failure", "line": 1}],
                    },
                )
            else:
                batch.update(status="in_progress", in_progress_at=now)
        elif status == "in_progress":
            if plan.outcome in ("expired", "cancelled"):
                self._finish_batch(batch, plan.outcome, answered_share=0.5 if plan.outcome == "cancelled" else 1.0)
            else:
                batch.update(status="finalizing", finalizing_at=now)
        elif status == "finalizing":
            self._finish_batch(batch, "completed")

    def _finish_batch(self, batch: dict, status: str, answered_share: float = 1.0) -> None:
        """Answer the batch's lines (some left out or failed as its plan says) and write its files."""
        b = self.state.batch
        plan: BatchPlan = batch["_plan"]
        lines = [json.loads(line) for line in b.files[batch["input_file_id"]]["data"].splitlines() if line.strip()]
        rng = random.Random(f"{batch['id']}:{self.state.faults.seed}")
        out, err = [], []
        for n, line in enumerate(lines):
            cid = line.get("custom_id")
            roll = rng.random()
            if status in ("expired", "cancelled") and (roll < plan.missing or n >= answered_share * len(lines)):
                continue
            body = line.get("body") or {}
            roll -= plan.missing if status == "expired" else 0.0
            if status == "expired" and roll < plan.expired_errors:
                err.append(
                    {
                        "id": f"batch_req_{n}",
                        "custom_id": cid,
                        "response": None,
                        "error": {
                            "code": "batch_expired",
                            "message": "This request could not be executed before the completion window expired.",
                        },
                    }
                )
                continue
            roll -= plan.expired_errors if status == "expired" else 0.0
            if roll < plan.line_errors + plan.bad_request:
                code = 500 if roll < plan.line_errors else 400
                err.append(
                    {
                        "id": f"batch_req_{n}",
                        "custom_id": cid,
                        "error": None,
                        "response": {
                            "status_code": code,
                            "request_id": f"req_{n}",
                            "body": {
                                "error": {
                                    "message": f"injected {code}",
                                    "type": "server_error" if code == 500 else "invalid_request_error",
                                }
                            },
                        },
                    }
                )
                continue
            self.state.attempts[prompt_key(body.get("model", ""), body.get("messages", []))] += 1
            b.lines_answered += 1
            out.append(
                {
                    "id": f"batch_req_{n}",
                    "custom_id": cid,
                    "error": None,
                    "response": {
                        "status_code": 200,
                        "request_id": f"req_{n}",
                        "body": self._line_answer(body),
                    },
                }
            )
        now = int(time.time())
        for name, rows in (("output_file_id", out), ("error_file_id", err)):
            if rows:
                b.uploads += 1
                file_id = f"file-{b.uploads:04d}"
                data = "".join(json.dumps(r) + "\n" for r in rows).encode()
                b.files[file_id] = {
                    "data": data,
                    "meta": {
                        "id": file_id,
                        "object": "file",
                        "bytes": len(data),
                        "created_at": now,
                        "filename": f"{batch['id']}_{name}.jsonl",
                        "purpose": "batch_output",
                        "status": "processed",
                    },
                }
                batch[name] = file_id
        batch["request_counts"] = {"total": len(lines), "completed": len(out), "failed": len(err)}
        batch.update(status=status, **{f"{status}_at": now})

    def _log(self, key: str, outcome: str) -> None:
        if len(self.state.log) < 100_000:
            self.state.log.append((time.monotonic(), key, outcome))

    async def _stream(
        self,
        writer,
        served,
        text,
        prompt_tokens,
        completion_tokens,
        *,
        interrupted: bool = False,
        usage: bool = True,
        extra_usage: dict | None = None,
    ) -> None:
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            "Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
        )
        writer.write(head.encode())

        def event(obj) -> None:
            data = f"data: {json.dumps(obj)}\n\n".encode() if obj is not None else b"data: [DONE]\n\n"
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

        base = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": int(time.time()), "model": served}
        # Real servers (llama.cpp's, vLLM, OpenAI) open with a chunk that carries only the role.
        event({**base, "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]})
        if interrupted:  # llama.cpp's server: the role chunk, then [DONE], no finish_reason
            event(None)
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return
        words = text.split(" ")
        for i, w in enumerate(words):
            piece = w if i == 0 else " " + w
            event({**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
            await writer.drain()
        event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if usage:
            event(
                {
                    **base,
                    "choices": [],
                    "usage": {
                        **(extra_usage or {}),
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": completion_tokens,
                        "total_tokens": prompt_tokens + completion_tokens,
                    },
                }
            )
        event(None)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def _tool_reply(self, writer, model: str, payload: dict, reply: dict) -> None:
        """A tool answer, whole or as the given stream deltas (after the role chunk), then usage."""
        usage = {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70}
        finish = reply.get("finish_reason", "tool_calls")
        if not payload.get("stream"):
            message = {"role": "assistant", **reply["message"]}
            body = {"id": "chatcmpl-t", "object": "chat.completion", "created": int(time.time()), "model": model}
            choices = [{"index": 0, "message": message, "finish_reason": finish}]
            self._send(writer, 200, {**body, "choices": choices, "usage": usage})
            return
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            "Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
        )
        writer.write(head.encode())
        base = {"id": "chatcmpl-t", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
        deltas = [{"role": "assistant"}, *reply["deltas"]]
        for index, delta in enumerate(deltas):
            last = index == len(deltas) - 1
            chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish if last else None}]}
            data = f"data: {json.dumps(chunk)}\n\n".encode()
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        for obj in ({**base, "choices": [], "usage": usage}, None):
            data = f"data: {json.dumps(obj)}\n\n".encode() if obj is not None else b"data: [DONE]\n\n"
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    def _send(self, writer, status: int, obj, extra: dict | None = None) -> None:
        self._send_raw(writer, status, json.dumps(obj).encode(), "application/json", extra)

    @staticmethod
    def _send_raw(writer, status: int, body: bytes, ctype: str, extra: dict | None = None) -> None:
        reason = {
            200: "OK",
            400: "Bad Request",
            401: "Unauthorized",
            403: "Forbidden",
            404: "Not Found",
            429: "Too Many Requests",
            500: "Internal Server Error",
        }.get(status, "OK")
        head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
        for k, v in (extra or {}).items():
            head += f"{k}: {v}\r\n"
        writer.write((head + "\r\n").encode() + body)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    """A request body sent with Transfer-Encoding: chunked (what some clients use for uploads)."""
    parts = []
    while True:
        size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
        if size == 0:
            await reader.readline()
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readline()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--error-500", type=float, default=0.0)
    ap.add_argument("--error-429", type=float, default=0.0)
    ap.add_argument("--retry-after", type=float, default=0.05)
    ap.add_argument("--malformed", type=float, default=0.0)
    ap.add_argument("--drop", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--echo", action="store_true", help="answer with the last line of the last message")
    args = ap.parse_args()
    state = ServerState(
        faults=Faults(
            latency_s=args.latency,
            error_500=args.error_500,
            error_429=args.error_429,
            retry_after_s=args.retry_after,
            malformed=args.malformed,
            drop=args.drop,
            seed=args.seed,
        ),
        responder=echo_responder if args.echo else default_responder,
    )
    server = FakeOpenAIServer(state, port=args.port)

    async def serve():
        await server.start_async()
        print(f"listening on {server.base_url}", flush=True)
        await asyncio.Event().wait()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
