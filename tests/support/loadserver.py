"""A loopback OpenAI-compatible streaming server with a latency model whose truth is known.

Each chat request waits for one of `capacity` slots (FIFO queue beyond it), then streams its
tokens: the first after TTFT, each next after the per-token time, both with uniform jitter.
The server keeps its own record of what it did: when each request arrived (the kernel's receive
time of its last byte), when it got a slot, when each token and the end were written. Load tests
and tests/benchmarks/load.py compare what the generator measured with this record
(`GET /truth`, `POST /reset`). Faults for tests: 429s, 500s, streams cut midway.

Runs in its own process, so its CPU is never the generator's:
    python tests/loadserver.py --ttft 0.3 --tokens 20 --token-time 0.02 --jitter 0.2 --capacity 1000
    # prints "listening on http://127.0.0.1:PORT/v1"
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from harness.load.wire import enable_rx_timestamps, recv_stamped  # noqa: E402


class Model:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.rng = random.Random(args.seed)
        self.active = 0
        self.queue: collections.deque = collections.deque()
        self.truth: list[dict] = []
        self.peak_active = 0

    def jittered(self, value: float) -> float:
        j = self.args.jitter
        return max(0.0, value * (1 + self.rng.uniform(-j, j))) if j else value


class Conn:
    def __init__(self, server: "Server", sock: socket.socket):
        self.server, self.sock = server, sock
        self.buf = bytearray()
        self.out = bytearray()
        self.loop = server.loop
        self.open = True
        self.loop.add_reader(sock.fileno(), self.readable)

    def readable(self) -> None:
        try:
            data, at = recv_stamped(self.sock)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, at = b"", time.time()
        if not data:
            self.close()
            return
        self.buf += data
        while self.open:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
            length = 0
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if len(self.buf) < end + 4 + length:
                return
            body = bytes(self.buf[end + 4 : end + 4 + length])
            del self.buf[: end + 4 + length]
            self.server.handle(self, head[0], body, at)

    def write(self, data: bytes) -> None:
        if not self.open:
            return
        if self.out:
            self.out += data
            return
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self.close()
            return
        if sent < len(data):
            self.out += data[sent:]
            self.loop.add_writer(self.sock.fileno(), self.writable)

    def writable(self) -> None:
        try:
            sent = self.sock.send(self.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        del self.out[:sent]
        if not self.out:
            self.loop.remove_writer(self.sock.fileno())

    def close(self) -> None:
        if self.open:
            self.open = False
            self.loop.remove_reader(self.sock.fileno())
            if self.out:
                self.loop.remove_writer(self.sock.fileno())
            self.sock.close()


def _json_response(status: int, payload: object, extra: str = "") -> bytes:
    body = json.dumps(payload).encode()
    reason = {200: "OK", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error"}.get(status, "OK")
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class Server:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.model = Model(args)
        self.events: dict[tuple[str, int], bytes] = {}
        self.chunks: dict[bytes, bytes] = {}
        self.loop = asyncio.get_running_loop()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", args.port))
        self.listener.listen(4096)
        self.listener.setblocking(False)
        self.loop.add_reader(self.listener.fileno(), self.accept)

    def chunk(self, data: bytes) -> bytes:
        found = self.chunks.get(data)
        if found is None:
            found = self.chunks[data] = _chunk(data)
        return found

    def accept(self) -> None:
        for _ in range(64):
            try:
                sock, _addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            enable_rx_timestamps(sock)
            Conn(self, sock)

    def handle(self, conn: Conn, request_line: str, body: bytes, arrived: float) -> None:
        path = request_line.split(" ")[1] if " " in request_line else "/"
        m = self.model
        if path.endswith("/truth"):
            conn.write(_json_response(200, {"requests": m.truth, "peak_active": m.peak_active}))
            return
        if path.endswith("/reset"):
            m.truth, m.peak_active = [], m.active
            conn.write(_json_response(200, {"ok": True}))
            return
        if not path.endswith("/chat/completions"):
            conn.write(_json_response(404, {"error": {"message": "not found"}}))
            return
        try:
            req = json.loads(body)
        except ValueError:
            conn.write(_json_response(400, {"error": {"message": "bad json"}}))
            return
        record = {"arrived": arrived, "status": 200}
        m.truth.append(record)
        roll = m.rng.random()
        if roll < self.args.p429 or (self.args.limit and m.active + len(m.queue) >= self.args.limit):
            record["status"] = 429
            conn.write(_json_response(429, {"error": {"message": "rate limited"}}, "Retry-After: 1\r\n"))
            return
        if roll < self.args.p429 + self.args.p500:
            record["status"] = 500
            conn.write(_json_response(500, {"error": {"message": "boom"}}))
            return
        words = sum(len(str(msg.get("content", "")).split()) for msg in req.get("messages", []))
        tokens = (
            min(int(req.get("max_tokens") or self.args.tokens), self.args.tokens)
            if not req.get("ignore_eos")
            else int(req.get("max_tokens") or self.args.tokens)
        )
        job = (conn, req, record, max(1, tokens), words)
        if m.active < self.args.capacity:
            self.start(job)
        else:
            m.queue.append(job)

    def start(self, job) -> None:
        conn, req, record, tokens, words = job
        m = self.model
        m.active += 1
        m.peak_active = max(m.peak_active, m.active)
        record["started"] = time.time()
        record["tokens"] = tokens
        record["times"] = []
        cut = m.rng.random() < self.args.cut
        stream = bool(req.get("stream"))
        name = str(req.get("model", "load"))
        if stream:
            conn.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        due = self.loop.time() + m.jittered(self.args.ttft)
        gaps = [m.jittered(self.args.token_time) for _ in range(tokens - 1)]
        usage = {"prompt_tokens": words, "completion_tokens": tokens, "total_tokens": words + tokens}

        def event(payload: dict) -> bytes:
            return b"data: " + json.dumps(payload).encode() + b"\n\n"

        def token_event(i: int) -> bytes:
            # the same bytes for every request of a model: built once, so the server stays cheap
            key = (name, i)
            found = self.events.get(key)
            if found is None:
                found = self.events[key] = event(
                    {
                        "id": "x",
                        "object": "chat.completion.chunk",
                        "model": name,
                        "choices": [{"index": 0, "delta": {"content": f"t{i} "}, "finish_reason": None}],
                    }
                )
            return found

        def finish() -> None:
            record["done"] = time.time()
            m.active -= 1
            if m.queue:
                self.start(m.queue.popleft())

        def burst() -> None:
            # latency 0: all tokens in one write, so the server costs little per request
            data = b"".join(token_event(i) for i in range(tokens))
            tail = (
                event(
                    {
                        "id": "x",
                        "model": name,
                        "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}],
                        "usage": usage,
                    }
                )
                + b"data: [DONE]\n\n"
            )
            now = time.time()
            record["times"] = [now] * tokens
            conn.write(_chunk(data + tail) + b"0\r\n\r\n")
            finish()

        def send(i: int, when: float) -> None:
            if cut and i == tokens // 2:
                record["status"] = "cut"
                conn.close()
                finish()
                return
            if i < tokens:
                record["times"].append(time.time())
                conn.write(self.chunk(token_event(i)))
                if i + 1 < tokens:
                    nxt = when + gaps[i]
                    self.loop.call_at(nxt, send, i + 1, nxt)
                else:
                    send(tokens, when)
                return
            tail = (
                event(
                    {
                        "id": "x",
                        "model": name,
                        "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}],
                        "usage": usage,
                    }
                )
                + b"data: [DONE]\n\n"
            )
            record["times_done"] = time.time()
            conn.write(_chunk(tail) + b"0\r\n\r\n")
            finish()

        def whole() -> None:
            text = "".join(f"t{i} " for i in range(tokens))
            record["times"] = [time.time()]
            conn.write(
                _json_response(
                    200,
                    {
                        "id": "x",
                        "object": "chat.completion",
                        "model": name,
                        "usage": usage,
                        "choices": [
                            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}
                        ],
                    },
                )
            )
            finish()

        if not stream:
            self.loop.call_at(due + sum(gaps), whole)
        elif self.args.ttft == 0 and self.args.token_time == 0:
            self.loop.call_soon(burst)
        else:
            self.loop.call_at(due, send, 0, due)


class ServerProcess:
    """This server started in its own process (for tests and benchmarks), with its record at hand."""

    def __init__(self, *args: str):
        import subprocess

        self.proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"tests/loadserver.py did not start: {line!r}")
        self.url = line.split()[-1]

    def _call(self, path: str, data: bytes | None = None) -> dict:
        import urllib.request

        with urllib.request.urlopen(urllib.request.Request(self.url + path, data=data), timeout=120) as resp:
            return json.loads(resp.read())

    def record(self) -> dict:
        """{"requests": [{arrived, started, times, done, status, tokens}, ...], "peak_active": N}"""
        return self._call("/truth")

    def truth(self) -> list[dict]:
        return self.record()["requests"]

    def reset(self) -> None:
        self._call("/reset", b"{}")

    def cpu_seconds(self) -> float:
        import os

        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it is still there 10 s later (only this server's own pid)."""
        import signal
        import subprocess

        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is not None:
                return
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                continue


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ttft", type=float, default=0.3, help="seconds to the first token")
    parser.add_argument("--tokens", type=int, default=20, help="tokens per response (capped by max_tokens)")
    parser.add_argument("--token-time", type=float, default=0.02, help="seconds between tokens")
    parser.add_argument("--jitter", type=float, default=0.0, help="uniform +-fraction on every delay")
    parser.add_argument("--capacity", type=int, default=100000, help="requests served at once; the rest queue")
    parser.add_argument("--limit", type=int, default=0, help="429 when this many are in flight or queued")
    parser.add_argument("--p429", type=float, default=0.0)
    parser.add_argument("--p500", type=float, default=0.0)
    parser.add_argument("--cut", type=float, default=0.0, help="probability to drop a stream halfway")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    server = Server(args)
    print(f"listening on http://127.0.0.1:{server.listener.getsockname()[1]}/v1", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
