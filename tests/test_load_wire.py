"""The load client reads what `harness run` reads (100 Continue, gzip, SSE labelled text/plain, proxies) and
refuses what would hang or exhaust it (endless headers, oversized bodies), by the run's rules of a complete answer."""

from __future__ import annotations

import asyncio
import gzip
import json
import threading

import pytest

from harness.load import wire
from harness.load.requests import RequestResult, interpret
from harness.load.wire import Endpoint, WireError
from harness.plan import parse_plan
from harness.providers.base import ProviderError, Request
from harness.providers.openai_api import OpenAIProvider
from harness.records import Generation, Item, Message, Prompt


def sse(*texts: str, finish: bool = True, done: bool = True) -> bytes:
    events = [{"choices": [{"index": 0, "delta": {"content": t}, "finish_reason": None}]} for t in texts]
    if finish:
        events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    out = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    return out + (b"data: [DONE]\n\n" if done else b"")


def response(body: bytes, *, ctype="text/event-stream", status="200 OK", extra=b"", before=b"") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n".encode()
    return before + head + extra + b"\r\n" + body


class Scripted:
    """A loopback server that answers every request with fixed bytes and records what it was sent."""

    def __init__(self, answer: bytes | None = None):
        self.answer = answer
        self.requests: list[tuple[str, dict]] = []
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def start():
            self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()

        self.thread = threading.Thread(target=lambda: (self.loop.run_until_complete(start()), self.loop.run_forever()))
        self.thread.daemon = True
        self.thread.start()
        ready.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def handle(self, reader, writer):
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                headers = {}
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b""):
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                length = int(headers.get("content-length", 0))
                if length:
                    await reader.readexactly(length)
                self.requests.append((line.decode("latin-1").strip(), headers))
                writer.write(self.answer)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def close(self):
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def scripted():
    servers = []

    def start(answer: bytes) -> Scripted:
        servers.append(Scripted(answer))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def load_once(url: str, proxy: str | None = None, timeout: float = 10) -> RequestResult:
    async def main():
        endpoint = Endpoint(url + "/chat/completions", proxy=proxy)
        try:
            r = RequestResult(sent_at=0.0)
            resp = await endpoint.send(b'{"model": "m"}', {"Authorization": "Bearer k"}, timeout)
            r.sent_at = resp.sent_at
            return interpret(resp, r)
        finally:
            endpoint.close()

    return asyncio.run(main())


def run_once(url: str, stream: bool = True) -> str:
    """What `harness run`'s provider makes of the same answer: its text, or the error it raises."""
    plan = parse_plan(
        {
            "name": "w",
            "models": {"m": {"provider": "openai", "base_url": url, "stream": stream, "max_attempts": 1}},
            "suites": ["math-word"],
        }
    )

    async def main():
        provider = OpenAIProvider(plan.models[0])
        try:
            request = Request(Prompt((Message("user", "hi"),)), Generation(max_tokens=8), Item("i", {}), "s")
            return (await provider.complete(request)).text
        except ProviderError as exc:
            return f"error: {exc}"
        finally:
            await provider.close()

    return asyncio.run(main())


@pytest.mark.parametrize(
    "answer",
    [
        response(sse("Hel", "lo"), before=b"HTTP/1.1 100 Continue\r\n\r\n"),
        response(gzip.compress(sse("Hel", "lo")), extra=b"Content-Encoding: gzip\r\n"),
        response(sse("Hel", "lo"), ctype="text/plain; charset=utf-8"),
    ],
    ids=["100-continue", "gzip", "sse-as-text-plain"],
)
def test_load_reads_what_a_run_reads(scripted, answer):
    server = scripted(answer)
    result = load_once(server.url)
    assert result.ok, result.detail
    assert result.output_tokens == 2 and result.ttft is not None
    assert run_once(server.url) == "Hello"


def test_a_stream_ending_in_done_without_finish_reason_is_incomplete_on_both_paths(scripted):
    server = scripted(response(sse("Hel", "lo", finish=False)))
    result = load_once(server.url)
    assert result.error == "incomplete" and "no finish_reason" in result.detail
    assert run_once(server.url).startswith("error: incomplete stream")


def test_load_goes_through_the_environments_proxy_like_a_run(scripted, monkeypatch):
    proxy = scripted(response(sse("via proxy")))
    monkeypatch.setenv("HTTP_PROXY", proxy.url.removesuffix("/v1"))
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.delenv("http_proxy", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    target = "http://model-host.invalid:8000/v1"  # resolvable only by the proxy
    result = load_once(target, proxy=wire._FROM_ENV)
    assert result.ok, result.detail
    assert run_once(target) == "via proxy"
    lines = [line for line, _ in proxy.requests]
    assert lines == ["POST http://model-host.invalid:8000/v1/chat/completions HTTP/1.1"] * 2
    assert all(h["host"] == "model-host.invalid:8000" for _, h in proxy.requests)


def test_an_endless_header_is_cut_off(scripted):
    server = scripted(b"HTTP/1.1 200 OK\r\n" + b"X-Filler: " + b"a" * (wire.MAX_HEAD_BYTES * 4))
    with pytest.raises(WireError, match="response head over"):
        asyncio.run(Endpoint(server.url + "/chat/completions").send(b"{}", {}, 30))


def test_a_body_over_the_cap_is_refused(scripted, monkeypatch):
    monkeypatch.setattr(wire, "MAX_BODY_BYTES", 4096)
    server = scripted(response(sse("x" * 10000)))
    with pytest.raises(WireError, match="response body of .* bytes, over 4096"):
        asyncio.run(Endpoint(server.url + "/chat/completions").send(b"{}", {}, 30))


def test_a_gzip_bomb_is_refused_while_it_is_decoded(scripted, monkeypatch):
    monkeypatch.setattr(wire, "MAX_BODY_BYTES", 1 << 20)
    bomb = gzip.compress(b"data: " + b"a" * (50 << 20))  # 50 MB of events from ~50 KB
    server = scripted(response(bomb, extra=b"Content-Encoding: gzip\r\n"))
    with pytest.raises(WireError, match="response body over"):
        asyncio.run(Endpoint(server.url + "/chat/completions").send(b"{}", {}, 30))


def test_a_large_event_is_parsed_in_one_pass():
    """An event arriving in many reads is scanned once: the parser resumes where it stopped."""
    resp = wire.Response()
    parser = wire._Parser(resp)
    body = (
        b"data: " + json.dumps({"choices": [{"delta": {"content": "a" * 300_000}, "finish_reason": "stop"}]}).encode()
    )
    body += b"\n\ndata: [DONE]\n\n"
    head = f"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    data = head + body
    scanned = []
    real_find = bytearray.find

    class Counting(bytearray):
        def find(self, sub, start=0, *rest):  # count bytes each search looks at
            scanned.append(len(self) - start)
            return real_find(self, sub, start, *rest)

    parser.sse_buf = Counting()
    for i in range(0, len(data), 1000):
        parser.feed(data[i : i + 1000], float(i))
    assert resp.complete and len(resp.events) == 2
    assert sum(scanned) < 4 * len(body)  # linear, not quadratic (~300 reads would rescan ~45 MB)
