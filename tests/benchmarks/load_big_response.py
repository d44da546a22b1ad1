"""Benchmark: one very large streamed answer, and an endless header, read by the load client.

    python tests/benchmarks/load_big_response.py [--mb 48]

A loopback server (a thread in this process, answering with prepared bytes) sends one SSE event
of `--mb` megabytes, then a response whose header never ends. Printed: seconds and peak RSS growth
of the load client (`harness load`'s Endpoint + interpret) for the big event, and how long it
takes to give up on the endless header. Run it with PYTHONPATH pointing at another checkout to
compare (the machine is shared: repeat and take the lower figures).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from harness.load.requests import RequestResult, interpret  # noqa: E402
from harness.load.wire import Endpoint, WireError  # noqa: E402


def serve(answer: bytes, endless: bool = False) -> tuple[int, threading.Event]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    stop = threading.Event()

    def run() -> None:
        conn, _ = sock.accept()
        conn.recv(65536)
        try:
            conn.sendall(answer)
            while endless and not stop.is_set():
                conn.sendall(b"a" * 65536)
        except OSError:
            pass
        conn.close()
        sock.close()

    threading.Thread(target=run, daemon=True).start()
    return sock.getsockname()[1], stop


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def fetch(port: int) -> tuple[float, str]:
    endpoint = Endpoint(f"http://127.0.0.1:{port}/v1/chat/completions", proxy=None)
    start = time.perf_counter()
    try:
        response = await endpoint.send(b"{}", {}, 600)
        result = interpret(response, RequestResult(sent_at=response.sent_at))
        outcome = "ok" if result.ok else f"{result.error}: {result.detail[:60]}"
    except WireError as exc:
        outcome = f"refused: {str(exc)[:80]}"
    finally:
        endpoint.close()
    return time.perf_counter() - start, outcome


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=48)
    args = parser.parse_args()
    chunk = {"choices": [{"index": 0, "delta": {"content": "a" * (args.mb << 20)}, "finish_reason": "stop"}]}
    body = b"data: " + json.dumps(chunk).encode() + b"\n\ndata: [DONE]\n\n"
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunked = b"".join(
        f"{len(body[i : i + 16384]):x}\r\n".encode() + body[i : i + 16384] + b"\r\n" for i in range(0, len(body), 16384)
    )
    before = rss_mb()
    port, _ = serve(head + chunked + b"0\r\n\r\n")
    seconds, outcome = asyncio.run(fetch(port))
    print(
        f"one {args.mb} MB SSE event in 16 KB chunks: {seconds:.2f} s, peak RSS +{rss_mb() - before:.0f} MB, {outcome}"
    )

    before = rss_mb()
    port, stop = serve(b"HTTP/1.1 200 OK\r\nX-Endless: ", endless=True)
    try:
        seconds, outcome = asyncio.run(asyncio.wait_for(fetch(port), 120))
    except TimeoutError:
        seconds, outcome = 120.0, "still reading after 120 s"
    stop.set()
    print(f"endless header: {seconds:.2f} s, peak RSS +{rss_mb() - before:.0f} MB, {outcome}")


if __name__ == "__main__":
    main()
