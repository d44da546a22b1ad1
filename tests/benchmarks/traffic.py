"""Traffic benchmarks: importing a large log, and judging candidates against the incumbent.

    python tests/benchmarks/traffic.py [--import-lines 1000000] [--items 500] [--latency 0.05]

1. `harness import` of a generated log of N logged requests (OpenAI JSONL, ~0.4 kB a line, 10% exact
   duplicates, 5 routes): wall time and the import process's peak RSS (os.wait4), with and without
   `--sample 1000 --by group`.
2. A traffic suite of `--items` items (imported from a log with the incumbent's answers), 3 candidates,
   2 judges, both orders, `cache: true`, against the fake server in its own process (answers after
   `--latency` s): wall time of `harness run` and the requests the server saw; then a second run of the
   same plan (`--new`), which must send no request at all (candidates and judges from the cache).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HARNESS = Path(sys.executable).with_name("harness")

SERVER = """
import asyncio, sys
sys.path.insert(0, {tests!r})
from support.fakeserver import FakeOpenAIServer, Faults, ServerState
from support.judges import answer, traffic_responder
n = {n}
# Each candidate's answers differ from the incumbent's and from each other's, so no judge prompt repeats.
answers = {{
    "cand-a": {{i: answer(i, 6 if i % 3 == 0 else 5) + " (a)" for i in range(n)}},
    "cand-b": {{i: answer(i, 5, padding=(i % 5) * 60) + " (b)" for i in range(n)}},
    "cand-c": {{i: answer(i, 4 if i % 4 == 0 else 5) + " (c)" for i in range(n)}},
}}
state = ServerState(faults=Faults(latency_s={latency}), responder=traffic_responder(answers, {{"judge-1": "truthful", "judge-2": "length"}}))
server = FakeOpenAIServer(state)
async def serve():
    await server.start_async()
    print(f"listening on {{server.base_url}}", flush=True)
    await asyncio.Event().wait()
asyncio.run(serve())
"""


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, int, str]:
    """(wall seconds, peak RSS in MB, stdout) of a subprocess."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out}")
    return wall, usage.ru_maxrss // 1024, out


def write_log(path: Path, n: int) -> None:
    rng = random.Random(0)
    routes = ["support", "billing", "summaries", "spam", "review"]
    with open(path, "w") as fh:
        for i in range(n):
            k = rng.randrange(n) if i % 10 == 9 else i  # 10% repeat an earlier request
            row = {
                "messages": [
                    {"role": "system", "content": "You are a helpful support assistant for ACME."},
                    {
                        "role": "user",
                        "content": f"Ticket #{k}: my order {k * 7919 % 100000} has not arrived, what now?",
                    },
                ],
                "model": "gpt-4o-mini",
                "temperature": 0.2,
                "max_tokens": 256,
                "response": {"choices": [{"message": {"role": "assistant", "content": f"Answer to #{k} quality:5"}}]},
                "metadata": {"route": routes[k % 5], "user": f"u{k % 977}"},
            }
            fh.write(json.dumps(row) + "\n")


def bench_import(tmp: Path, n: int) -> None:
    log = tmp / "big.jsonl"
    t0 = time.perf_counter()
    write_log(log, n)
    print(f"log: {n:,} lines, {log.stat().st_size / 1e6:.0f} MB (written in {time.perf_counter() - t0:.0f} s)")
    for extra in ([], ["--sample", "1000", "--by", "group"]):
        wall, rss, out = timed(
            [str(HARNESS), "import", str(log), "--suite", "big", "--out", str(tmp / "suites"), "--force", *extra]
        )
        print(f"import {' '.join(extra) or '(all)'}: {wall:.1f} s, {n / wall:,.0f} lines/s, peak RSS {rss} MB")
        print("   ", out.strip())


def bench_pairwise(tmp: Path, n: int, latency: float) -> None:
    log = tmp / "traffic.jsonl"
    with open(log, "w") as fh:
        for i in range(n):
            row = {
                "messages": [{"role": "user", "content": f"Ticket #{i}: summarise the incident"}],
                "max_tokens": 64,
                "response": f"Answer to #{i} quality:5",
                "metadata": {"route": ["support", "billing"][i % 2]},
            }
            fh.write(json.dumps(row) + "\n")
    subprocess.run(
        [str(HARNESS), "import", str(log), "--suite", "traffic", "--out", str(tmp / "suites"), "--force"], check=True
    )
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER.format(tests=str(REPO / "tests"), n=n, latency=latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = server.stdout.readline().split()[-1]
        endpoint = {"provider": "openai", "base_url": url, "concurrency": 32, "price": {"input": 0.1, "output": 0.2}}
        plan = {
            "models": {m: endpoint for m in ("cand-a", "cand-b", "cand-c")},
            "judges": {j: {**endpoint, "concurrency": 64} for j in ("judge-1", "judge-2")},
            "suites": ["traffic"],
            "cache": True,
        }
        (tmp / "plan.yaml").write_text(json.dumps(plan))
        env = {**os.environ, "HARNESS_SUITES_PATH": str(tmp / "suites")}
        db = f"sqlite:///{tmp / 'bench.db'}"

        def requests() -> int:
            with urllib.request.urlopen(url.rsplit("/v1", 1)[0] + "/_stats") as r:
                return json.loads(r.read())["requests"]

        expected = 3 * n + 3 * 2 * 2 * n
        for label in ("first run", "second run (cache)"):
            before = requests()
            wall, rss, _ = timed(
                [str(HARNESS), "run", str(tmp / "plan.yaml"), "--db", db, "--no-report", "--new"], env=env
            )
            sent = requests() - before
            print(
                f"{label}: {n} items x 3 candidates x 2 judges x 2 orders: {wall:.1f} s, {sent:,} requests "
                f"(a full first run sends {expected:,}), peak RSS {rss} MB"
            )
            out = subprocess.run(
                [str(HARNESS), "pairwise", "--db", db], capture_output=True, text=True, env=env, check=True
            ).stdout
            print(out)
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--import-lines", type=int, default=1_000_000)
    ap.add_argument("--items", type=int, default=500)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--skip-import", action="store_true")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores (shared with other work: figures are indicative)")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if not args.skip_import:
            bench_import(tmp, args.import_lines)
        bench_pairwise(tmp, args.items, args.latency)


if __name__ == "__main__":
    main()
