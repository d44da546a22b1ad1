"""A loopback OpenAI-compatible chat server for tests and benchmarks: real HTTP, injectable faults.

Hand-written on asyncio streams (HTTP/1.1 keep-alive, JSON and SSE) so it has no dependency
and costs little CPU. It answers from a `responder(model, messages) -> text` callable, counts
every request per (model, prompt) so tests can prove nothing was requested twice, and can
inject latency, HTTP 500s, 429s with Retry-After, malformed bodies and dropped connections.

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
    content = str(messages[-1].get("content", "")) if messages else ""
    return content.rsplit("\n", 1)[-1]


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
    seed: int = 0


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

    def snapshot(self) -> dict:
        """Counters as plain JSON (served at GET /_stats for a server run in another process)."""
        return {"requests": self.requests, "successes": dict(self.successes), "attempts": dict(self.attempts),
                "status_counts": dict(self.status_counts), "first_request_at": self.first_request_at,
                "last_response_at": self.last_response_at,
                "max_in_flight": self.max_in_flight}


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
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- HTTP -----------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
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
                length = int(headers.get("content-length", "0") or 0)
                body = await reader.readexactly(length) if length else b""
                keep = await self._respond(method, path, headers, body, writer)
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
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
            self._send(writer, 401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                                               "code": "invalid_api_key"}})
            return True
        roll = self._rng.random()
        if f.max_concurrent is not None and st.in_flight > f.max_concurrent:
            self._log(key, "429")
            st.status_counts["429"] += 1
            self._send(writer, 429, {"error": {"message": "too many concurrent requests", "type": "rate_limit"}},
                       extra={"Retry-After": f"{f.retry_after_s:g}"})
            return True
        if f.latency_s:
            await asyncio.sleep(f.latency_s)
        # One roll picks at most one fault, so the rates add up as configured.
        edges = [("500", f.error_500), ("429", f.error_429), ("malformed", f.malformed), ("drop", f.drop),
                 ("hang", f.hang)]
        acc = 0.0
        for name, p in edges:
            acc += p
            if roll < acc:
                st.status_counts[name] += 1
                self._log(key, name)
                if name == "500":
                    self._send(writer, 500, {"error": {"message": "injected server error", "type": "server_error"}})
                    return True
                if name == "429":
                    self._send(writer, 429, {"error": {"message": "injected rate limit", "type": "rate_limit"}},
                               extra={"Retry-After": f"{f.retry_after_s:g}"})
                    return True
                if name == "malformed":
                    self._send_raw(writer, 200, b'{"id": "x", "choices": [ {"message": ', "application/json")
                    return True
                if name == "drop":
                    return False
                if name == "hang":
                    await asyncio.sleep(3600)
                    return False
        text = st.responder(model, messages)
        self._log(key, "200")
        st.successes[key] += 1
        st.status_counts["200"] += 1
        served = st.served_model(model) if st.served_model else model
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
        completion_tokens = max(1, len(text.split()))
        if payload.get("stream"):
            await self._stream(writer, served, text, prompt_tokens, completion_tokens)
            return True
        self._send(writer, 200, {
            "id": f"chatcmpl-{st.requests}", "object": "chat.completion", "created": int(time.time()),
            "model": served,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        })
        return True

    def _log(self, key: str, outcome: str) -> None:
        if len(self.state.log) < 100_000:
            self.state.log.append((time.monotonic(), key, outcome))

    async def _stream(self, writer, served, text, prompt_tokens, completion_tokens) -> None:
        head = ("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                "Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n")
        writer.write(head.encode())

        def event(obj) -> None:
            data = f"data: {json.dumps(obj)}\n\n".encode() if obj is not None else b"data: [DONE]\n\n"
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

        base = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": int(time.time()), "model": served}
        words = text.split(" ")
        for i, w in enumerate(words):
            piece = w if i == 0 else " " + w
            event({**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
            await writer.drain()
        event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        event({**base, "choices": [], "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                                "total_tokens": prompt_tokens + completion_tokens}})
        event(None)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    def _send(self, writer, status: int, obj, extra: dict | None = None) -> None:
        self._send_raw(writer, status, json.dumps(obj).encode(), "application/json", extra)

    @staticmethod
    def _send_raw(writer, status: int, body: bytes, ctype: str, extra: dict | None = None) -> None:
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests",
                  500: "Internal Server Error", 401: "Unauthorized"}.get(status, "OK")
        head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
        for k, v in (extra or {}).items():
            head += f"{k}: {v}\r\n"
        writer.write((head + "\r\n").encode() + body)


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
    state = ServerState(faults=Faults(latency_s=args.latency, error_500=args.error_500, error_429=args.error_429,
                                      retry_after_s=args.retry_after, malformed=args.malformed, drop=args.drop,
                                      seed=args.seed),
                        responder=echo_responder if args.echo else default_responder)
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
