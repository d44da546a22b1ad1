"""Load-test building blocks without a server: the HTTP/SSE parser, SLO terms, statistics, early
stopping, the capacity search and the p99 bootstrap test."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.load import capacity
from harness.load.generator import EarlyStop
from harness.load.profile import build_stages, parse_slo
from harness.load.requests import RequestResult, interpret
from harness.load.stats import StageTarget, p99_change, stage_stats, time_in_flight
from harness.load.wire import Response, _Parser


def _sse_response(tokens: int, *, crlf: bool = False) -> tuple[bytes, list[int]]:
    """A chunked SSE response; also the offset of the last byte of each event."""
    sep = b"\r\n\r\n" if crlf else b"\n\n"
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    out, ends = bytearray(head), []
    events = [
        b"data: " + json.dumps({"choices": [{"delta": {"content": f"w{i} "}, "finish_reason": None}]}).encode()
        for i in range(tokens)
    ]
    events.append(
        b"data: "
        + json.dumps(
            {
                "choices": [{"delta": {}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 7, "completion_tokens": tokens},
            }
        ).encode()
    )
    events.append(b"data: [DONE]")
    for e in events:
        data = e + sep
        out += b"%x\r\n" % len(data)
        ends.append(len(out) + len(data) - 1)
        out += data + b"\r\n"
    out += b"0\r\n\r\n"
    return bytes(out), ends


@pytest.mark.parametrize("piece", [1, 2, 7, 50, 10_000])
@pytest.mark.parametrize("crlf", [False, True])
def test_parser_dates_each_event_by_the_read_that_brought_its_last_byte_whatever_the_read_sizes(piece, crlf):
    raw, ends = _sse_response(5, crlf=crlf)
    response = Response(sent_at=0.0)
    parser = _Parser(response)
    done = False
    for start in range(0, len(raw), piece):
        chunk = raw[start : start + piece]
        done = parser.feed(chunk, float(start + len(chunk) - 1))  # a read arrives with its last byte
    assert done and response.complete and response.status == 200
    # The read holding byte e ended at offset min(len - 1, e // piece * piece + piece - 1).
    dated = [float(min(len(raw) - 1, e // piece * piece + piece - 1)) for e in ends]
    assert [at for at, _ in response.events] == dated
    if piece == 1:
        assert dated == [float(e) for e in ends]
    r = interpret(response, RequestResult(sent_at=0.0))
    assert r.ok and r.output_tokens == 5 and r.input_tokens == 7
    assert r.ttft == dated[0] and r.latency == dated[-1]
    assert r.itl == [b - a for a, b in zip(dated[:4], dated[1:5])]


def test_cut_stream_and_error_status_and_empty_stream_are_errors_never_answers():
    raw, ends = _sse_response(4)
    cut = Response()
    parser = _Parser(cut)
    parser.feed(raw[: ends[2] + 1], float(ends[2]))
    parser.closed()
    assert not cut.complete
    assert interpret(cut, RequestResult(sent_at=0.0)).error == "incomplete"

    limited = Response()
    body = b'{"error": "slow down"}'
    _Parser(limited).feed(b"HTTP/1.1 429 Too Many\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body), 100.0)
    r = interpret(limited, RequestResult(sent_at=0.0))
    assert r.error == "429" and "slow down" in r.detail and r.ttft is None and r.latency is None

    empty = Response()
    events = (
        b"data: " + json.dumps({"choices": [{"delta": {}, "finish_reason": "stop"}]}).encode() + b"\n\ndata: [DONE]\n\n"
    )
    _Parser(empty).feed(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n%s" % (len(events), events),
        500.0,
    )
    assert interpret(empty, RequestResult(sent_at=0.0)).error == "empty"


def test_slo_terms_parse_units_and_reject_nonsense():
    slo = parse_slo("ttft_p99<=2s, latency_p99<=5000ms,error_rate<=1%")
    assert [(t.metric, t.limit) for t in slo.terms] == [("ttft_p99", 2.0), ("latency_p99", 5.0), ("error_rate", 0.01)]
    assert slo.failures({"ttft_p99": 1.0, "latency_p99": 5.0, "error_rate": 0.0}) == []
    assert slo.failures({"ttft_p99": None, "latency_p99": 6.0, "error_rate": 0.02}) == [
        "ttft_p99 — > 2",
        "latency_p99 6 > 5",
        "error_rate 0.02 > 0.01",
    ]
    for bad in ("ttft_p99 < two", "speed_p99<=1s", "error_rate<=2s", "ttft_p99<=5%", ""):
        with pytest.raises(HarnessError):
            parse_slo(bad)


def test_stages_from_options():
    stages = build_stages(concurrency="1,8", rate=None, requests=10, duration=None, warmup=None)
    assert [(s.concurrency, s.requests, s.warmup) for s in stages] == [(1, 10, 1), (8, 10, 8)]
    assert (
        build_stages(concurrency="64", rate=None, requests=10, duration=None, warmup=None, ramp_up=0.8)[0].ramp_s == 0.8
    )
    for bad in ({"rate": "2", "ramp_up": 1.0}, {"concurrency": "4", "ramp_up": -1.0}):
        with pytest.raises(HarnessError, match="--ramp-up"):
            build_stages(**{"concurrency": None, "rate": None, "requests": 5, "duration": None, "warmup": None, **bad})
    stages = build_stages(concurrency=None, rate="2.5", requests=None, duration=30, warmup=None)
    assert stages[0].rate == 2.5 and stages[0].duration_s == 30 and stages[0].warmup == 0
    for kwargs in (
        {"concurrency": "1", "rate": "2"},
        {"concurrency": "0"},
        {"concurrency": "a"},
        {"concurrency": "1", "requests": 5, "duration": 3},
    ):
        with pytest.raises(HarnessError):
            build_stages(
                **{"concurrency": None, "rate": None, "requests": None, "duration": None, "warmup": None, **kwargs}
            )


def _result(sent, latency, ttft=None, error="", tokens=10, measured=True):
    return RequestResult(
        sent_at=sent,
        latency=None if error else latency,
        ttft=None if error else ttft,
        output_tokens=None if error else tokens,
        error=error,
        elapsed=latency,
        measured=measured,
        itl=[] if error else [0.01] * (tokens - 1),
    )


def test_stage_statistics_match_numpy_and_count_errors_apart():
    rng = np.random.default_rng(1)
    lat = rng.gamma(4, 0.25, 400)
    results = [_result(i * 0.01, float(v), float(v) / 3) for i, v in enumerate(lat)]
    results += [_result(4.0 + i * 0.01, 0.5, error="429") for i in range(10)]
    results += [_result(-1.0, 9.0, 3.0, measured=False)]  # warm-up: never in the figures
    st = stage_stats(results, StageTarget(8, None))
    assert st["requests"] == 410 and st["ok"] == 400 and st["errors"] == 10
    assert st["error_rate"] == pytest.approx(10 / 410) and st["rate_limited_rate"] == pytest.approx(10 / 410)
    assert st["errors_by_kind"] == {"429": 10}
    for q in (50, 90, 99):
        assert st[f"latency_p{q}"] == pytest.approx(np.percentile(lat, q))
        assert st[f"ttft_p{q}"] == pytest.approx(np.percentile(lat / 3, q))
    assert st["itl_p50"] == pytest.approx(0.01)
    assert st["output_tokens_per_s"] == pytest.approx(4000 / st["duration_s"])
    assert stage_stats([], StageTarget(1, None))["latency_p99"] is None


def test_time_in_flight_is_the_mean_number_of_open_requests():
    rs = [RequestResult(sent_at=0.0, elapsed=10.0), RequestResult(sent_at=5.0, elapsed=10.0)]
    assert time_in_flight(rs, 0.0, 10.0) == pytest.approx(1.5)


def test_open_loop_that_sends_late_says_it_is_behind():
    results = [_result(i * 0.1, 0.2) for i in range(50)]  # 10/s achieved
    assert stage_stats(results, StageTarget(None, 20.0), lags=[0.2] * 50)["generator_behind"] is True
    assert stage_stats(results, StageTarget(None, 10.0), lags=[0.001] * 50)["generator_behind"] is False


def test_early_stop_once_the_slo_cannot_be_met_or_the_provider_keeps_refusing():
    stop = EarlyStop(parse_slo("latency_p99<=1s"), planned=200)
    reasons = [stop.observe(_result(0, 2.0, 0.1)) for _ in range(5)]
    assert reasons[:3] == ["", "", ""] and "cannot meet" in reasons[3]  # 2% > 1% of 200 allowed
    stop = EarlyStop(None, planned=1000)
    reasons = [stop.observe(_result(0, 0.1, error="5xx")) for _ in range(20)]
    assert reasons[-1] == "20 consecutive 429/5xx answers" and not any(reasons[:-1])
    stop = EarlyStop(parse_slo("error_rate<=1%"), planned=300)
    assert [stop.observe(_result(0, 0.1, error="timeout")) for _ in range(4)][-1].startswith("errors exceed")


def test_capacity_search_finds_the_last_passing_level_by_doubling_and_bisection():
    tried = []

    async def probe(level):
        tried.append(level)
        return level <= 37

    cap = asyncio.run(capacity.search(probe, (1.0, 8.0), integer=True, ceiling=1024))
    assert 0.9 * 37 <= cap.best <= 37 < cap.first_failure  # to the search's 10% resolution
    assert cap.first_failure - cap.best <= 0.1 * cap.best + 1
    assert tried[:4] == [1, 8, 16, 32] and len(tried) <= 12

    async def never(level):
        return False

    cap = asyncio.run(capacity.search(never, (4.0,), integer=True, ceiling=64))
    assert cap.best is None and "no level" in cap.note

    async def always(level):
        return True

    cap = asyncio.run(capacity.search(always, (4.0,), integer=True, ceiling=64))
    assert cap.best == 64 and "ceiling" in cap.note


def test_p99_change_flags_a_slower_tail_and_rarely_flags_noise():
    rng = np.random.default_rng(7)
    false_alarms = 0
    for i in range(60):  # same distribution on both sides: a regression flag is a false alarm
        false_alarms += p99_change(
            rng.lognormal(0, 0.3, 300), rng.lognormal(0, 0.3, 300), resamples=500, seed=i
        ).significant
    assert false_alarms <= 6  # one-sided 2.5% expected: 1.5 of 60; 6 or more has probability < 0.5%
    old = rng.lognormal(0, 0.3, 600)
    slower = rng.lognormal(0, 0.3, 600) * np.where(rng.random(600) < 0.05, 2.0, 1.0)
    worse = p99_change(old, slower)
    assert worse.significant and worse.lo > 0
    assert worse.diff == pytest.approx(np.percentile(slower, 99) - np.percentile(old, 99))
    assert p99_change(old[:10], slower) is None


def test_p99_bootstrap_interval_agrees_with_a_plain_resampling_loop():
    """An independent reference: resample both sides by hand, take the 2.5/97.5% points."""
    rng = np.random.default_rng(3)
    a, b = rng.exponential(1.0, 300), rng.exponential(1.2, 300)
    ours = p99_change(a, b, resamples=4000, seed=11)
    draws = [np.percentile(rng.choice(b, len(b)), 99) - np.percentile(rng.choice(a, len(a)), 99) for _ in range(4000)]
    lo, hi = np.percentile(draws, [2.5, 97.5])
    width = hi - lo
    assert abs(ours.lo - lo) < 0.15 * width and abs(ours.hi - hi) < 0.15 * width


def test_streams_over_tls_through_memory_bios_and_reuses_the_connection(tmp_path):
    """TLS goes through ssl.MemoryBIO (so the raw socket's kernel timestamps stay readable)."""
    import shutil
    import ssl
    import subprocess
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from harness.load.wire import Endpoint

    if not shutil.which("openssl"):
        pytest.skip("needs the openssl command to make a throwaway certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    raw, _ = _sse_response(3)
    head, body = raw.split(b"\r\n\r\n", 1)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.wfile.write(head + b"\r\n\r\n" + body)
            self.wfile.flush()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    async def main():
        endpoint = Endpoint(f"https://localhost:{server.server_address[1]}/v1/chat/completions")
        endpoint.tls_context.load_verify_locations(str(cert))
        try:
            out = []
            for _ in range(2):
                response = await endpoint.send(b"{}", {}, 10)
                out.append((interpret(response, RequestResult(sent_at=response.sent_at)), len(endpoint.idle)))
            return out
        finally:
            endpoint.close()

    try:
        for result, idle in asyncio.run(main()):
            assert result.ok and result.output_tokens == 3 and result.ttft is not None and idle == 1
    finally:
        server.shutdown()
        server.server_close()
