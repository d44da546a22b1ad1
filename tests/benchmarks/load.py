"""Benchmark of `harness load`: fidelity against a server's own record, the generator's ceiling,
and evalscope perf side by side on the same server and profile.

    python tests/benchmarks/load.py [--levels 1,64,500] [--rounds 6] [--skip-peers]

The server (tests/support/loadserver.py) runs in its own process: TTFT 0.3 s and 20 tokens 20 ms apart,
each delay with +-20% jitter. It records when each request arrived (the kernel's receive time)
and when it wrote each token and the end; "truth" below is that record. Fidelity: p50/p99 of
TTFT and end-to-end latency as measured, against the same percentiles of the truth, over the same
requests. Ceiling: the server answers at once with 200 tokens (one write), and the generator runs
a closed loop; requests/s completed and the generator's CPU per request. Peers: evalscope perf
(`pip install 'evalscope[perf]'` into /work/venv-peers-16) on the same server and profile;
guidellm needs torch (its PyPI wheels pull CUDA) and is skipped with that reason.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from support.loadserver import ServerProcess  # noqa: E402

from harness.load.generator import StageDriver  # noqa: E402
from harness.load.profile import Stage  # noqa: E402
from harness.load.requests import Body  # noqa: E402
from harness.load.stats import StageTarget, stage_stats  # noqa: E402
from harness.load.wire import Endpoint  # noqa: E402
from harness.load.workers import drive  # noqa: E402

PEERS = Path(os.environ.get("HARNESS_PEERS_VENV", "/work/venv-peers-16"))
PROFILE = ["--ttft", "0.3", "--tokens", "20", "--token-time", "0.02", "--jitter", "0.2"]
CEILING = ["--ttft", "0", "--tokens", "200", "--token-time", "0"]


def Server(args: list[str]) -> ServerProcess:
    return ServerProcess(*args)


def truth_times(truth: dict) -> tuple[list[float], list[float]]:
    done = [t for t in truth["requests"] if t.get("status") == 200 and t.get("done") and t.get("times")]
    return [t["times"][0] - t["arrived"] for t in done], [t["done"] - t["arrived"] for t in done]


def body(tokens: int) -> Body:
    data = json.dumps(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "Tell me about load."}],
            "max_tokens": tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    ).encode()
    return Body(data, 5, tokens)


def ours(
    url: str, concurrency: int, requests: int, tokens: int, processes: int | None = None, ramp: float = 0.0
) -> dict:
    async def main():
        endpoint = Endpoint(url + "/chat/completions")
        try:
            driver = StageDriver(endpoint, [body(tokens)], {}, timeout=300)
            stage = Stage(concurrency=concurrency, requests=requests, warmup=concurrency, ramp_s=ramp)
            return await drive(driver, url + "/chat/completions", stage, processes=processes)
        finally:
            endpoint.close()

    own0, kids0 = time.process_time(), resource.getrusage(resource.RUSAGE_CHILDREN)
    wall0 = time.perf_counter()
    run = asyncio.run(main())
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time() - own0 + (kids.ru_utime + kids.ru_stime) - (kids0.ru_utime + kids0.ru_stime)
    wall = time.perf_counter() - wall0
    ok = [r for r in run.results if r.ok]
    stats = stage_stats(run.results, StageTarget(concurrency, None))
    return {
        "ttft": [r.ttft for r in ok],
        "latency": [r.latency for r in ok],
        "n": len(run.results),
        "errors": len(run.results) - len(ok),
        "cpu": cpu,
        "wall": wall,
        "achieved_concurrency": stats["achieved_concurrency"],
    }


def evalscope(url: str, concurrency: int, number: int, tokens: int, work: Path) -> dict | None:
    exe = PEERS / "bin" / "evalscope"
    if not exe.exists():
        return None
    prompts = work / "prompts.txt"
    prompts.write_text("".join(f"Tell me about load, part {i}.\n" for i in range(200)), encoding="utf-8")
    out = work / f"es-{concurrency}-{number}"
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall0 = time.perf_counter()
    proc = subprocess.run(
        [
            str(exe),
            "perf",
            "--url",
            url + "/chat/completions",
            "--api",
            "openai",
            "--model",
            "m",
            "--dataset",
            "line_by_line",
            "--dataset-path",
            str(prompts),
            "--stream",
            "--parallel",
            str(concurrency),
            "--number",
            str(number),
            "--max-tokens",
            str(tokens),
            "--outputs-dir",
            str(out),
            "--no-timestamp",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    wall = time.perf_counter() - wall0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    dbs = list(out.rglob("benchmark_data.db"))
    if proc.returncode != 0 or not dbs:
        print(f"  evalscope failed (exit {proc.returncode}): {proc.stderr[-400:]}")
        return None
    with sqlite3.connect(dbs[0]) as conn:
        rows = conn.execute("select first_chunk_latency, latency, success from result").fetchall()
    summary = json.loads(next(out.rglob("benchmark_summary.json")).read_text())
    ok = [r for r in rows if r[2]]
    return {
        "ttft": [r[0] for r in ok],
        "latency": [r[1] for r in ok],
        "n": len(rows),
        "errors": len(rows) - len(ok),
        "cpu": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        "wall": wall,
        "req_per_s": summary.get("Req Throughput (req/s)"),
    }


def pct(values, q) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def fidelity_rows(name: str, measured: dict, ttft_truth: list[float], lat_truth: list[float]) -> list[str]:
    rows = []
    for metric, truth in (("ttft", ttft_truth), ("latency", lat_truth)):
        for q in (50, 99):
            m, t = pct(measured[metric], q), pct(truth, q)
            rows.append(
                f"    {name:<10} {metric:<8} p{q:<3} measured {1000 * m:8.1f} ms   truth {1000 * t:8.1f} ms   "
                f"error {100 * (m / t - 1):+6.2f}%"
            )
    return rows


def uptime() -> str:
    return Path("/proc/loadavg").read_text().split(" ")[0:3].__str__()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,64,500")
    parser.add_argument("--rounds", type=int, default=6, help="measured requests per stage = rounds x concurrency")
    parser.add_argument("--ceiling-requests", type=int, default=3000)
    parser.add_argument("--ceiling-concurrency", default="32,128")
    parser.add_argument("--skip-peers", action="store_true")
    parser.add_argument(
        "--processes",
        type=int,
        default=None,
        help="generator processes (default: harness's own choice, one per 64 users up to a core each)",
    )
    parser.add_argument(
        "--ramp-up",
        type=float,
        default=0.8,
        help="closed-loop users start evenly over this many seconds (harness load --ramp-up); "
        "0.8 s is about one request's latency here",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="harness-load-bench-"))
    print(f"load average at start: {uptime()} (2 cores, shared)")
    print(
        "guidellm: skipped: `pip install --dry-run guidellm` pulls torch 2.14 and its CUDA 13 wheels "
        "(nvidia-cublas, nvidia-cudnn, ...), which this CPU-only machine does not take"
    )

    server = Server(PROFILE)
    try:
        print(
            "\n== fidelity: server TTFT 0.3 s, 20 tokens at 20 ms, +-20% jitter (truth = the server's record); "
            f"users ramped up over {args.ramp_up:g} s"
        )
        for level in (int(x) for x in args.levels.split(",")):
            requests = max(50, args.rounds * level)
            server.reset()
            cpu0 = server.cpu_seconds()
            mine = ours(server.url, level, requests, 20, args.processes, args.ramp_up)
            truth = server.record()
            tt, tl = truth_times(truth)
            print(
                f"  concurrency {level}: {mine['n']} requests ({mine['errors']} errors), achieved concurrency "
                f"{mine['achieved_concurrency']:.1f}, server peak in flight {truth['peak_active']}, "
                f"generator CPU {mine['cpu']:.2f} s, server CPU {server.cpu_seconds() - cpu0:.2f} s, "
                f"load {uptime()}"
            )
            for row in fidelity_rows("harness", mine, tt, tl):
                print(row)
            if not args.skip_peers:
                server.reset()
                peer = evalscope(server.url, level, requests + level, 20, work)
                if peer is None:
                    print("    evalscope: not available (no /work/venv-peers-16/bin/evalscope) or failed")
                else:
                    tt, tl = truth_times(server.record())
                    print(f"    evalscope: {peer['n']} requests ({peer['errors']} errors)")
                    for row in fidelity_rows("evalscope", peer, tt, tl):
                        print(row)
    finally:
        server.stop()

    server = Server(CEILING)
    try:
        print("\n== ceiling: 200-token streamed responses at latency 0 (one write each), closed loop")
        for c in (int(x) for x in args.ceiling_concurrency.split(",")):
            server.reset()
            cpu0 = server.cpu_seconds()
            mine = ours(server.url, c, args.ceiling_requests, 200, args.processes)
            server_cpu = server.cpu_seconds() - cpu0
            print(
                f"  harness   c={c:<4} {mine['n'] / mine['wall']:8.0f} req/s  {1000 * mine['cpu'] / mine['n']:.2f} ms "
                f"CPU/request (generator), server {1000 * server_cpu / mine['n']:.2f} ms CPU/request, "
                f"errors {mine['errors']}, load {uptime()}"
            )
            if not args.skip_peers:
                small = evalscope(server.url, c, max(c, args.ceiling_requests // 10), 200, work)
                big = evalscope(server.url, c, args.ceiling_requests, 200, work)
                if small and big:
                    marginal = (big["cpu"] - small["cpu"]) / max(1, big["n"] - small["n"])
                    print(
                        f"  evalscope c={c:<4} {big['req_per_s']:8.0f} req/s (its own figure)  "
                        f"{1000 * marginal:.2f} ms CPU/request (marginal: {big['n']} minus {small['n']} requests), "
                        f"errors {big['errors']}, load {uptime()}"
                    )
    finally:
        server.stop()
    shutil.rmtree(work, ignore_errors=True)
    print(f"\nload average at end: {uptime()}")


if __name__ == "__main__":
    main()
