"""Ray executor scaling: samples per second with 1, 2 and 4 Ray workers against the local executor,
on CPU-bound work, and the per-request cost of the cluster-wide limiter.

    python tests/benchmarks/ray_scale.py [--workers 1,2,4] [--echo-items 4000] [--humaneval-samples 10]
                                         [--gate-requests 3000] [--only echo,humaneval,gate]

Workloads (the fake server in its own process, latency 0, so the harness's own CPU is what is measured):
  echo:      N synthetic items, exact grader: request, parse, grade, store.
  humaneval: HumanEval's 164 problems x `samples` (pass@k style), answered with the canonical
             solution, each graded in the sandbox (needs shared/datasets/humaneval/HumanEval.jsonl.gz).
Each workload runs as `harness run` in a subprocess, once with the local executor and once per worker
count with `--executor ray` (which starts its own local Ray instance, SQLite store). Printed: samples
per second between the server's first request and its last answer (the steady part; Ray's start-up
and worker imports are excluded), the subprocess's wall time (start-up included), the CPU (user+sys)
per sample of the subprocess and every process it reaped (the local executor's sandbox zygotes
included; for Ray only the driver's: its workers are the raylet's children, not counted; the fake
server's CPU is never counted), and the load average around the run: the machine is shared, so read
every figure with its load.

gate: one ModelGate actor; a probe actor acquires and releases N slots, one at a time (the round
trip a request waits for) and from 64 coroutines at once (the gate's throughput), against the
in-process AdaptiveLimiter.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
HUMANEVAL = REPO.parent / "shared" / "datasets" / "humaneval" / "HumanEval.jsonl.gz"
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(TESTS / "benchmarks"))

from fanout import server_stats as stats  # noqa: E402
from fanout import spawn_server, wait_child_usage  # noqa: E402
from fanout import write_suite as write_echo_suite  # noqa: E402

# -- the server (run as `ray_scale.py --serve KIND PLAN`, in its own process) ---------------------


def serve(kind: str, plan_path: str) -> None:
    from support.fakeserver import FakeOpenAIServer, ServerState, echo_responder

    responder = echo_responder
    if kind == "humaneval":
        from harness.engine.units import prepare_suites
        from harness.plan import load_plan

        answers = {}
        for prepared in prepare_suites(load_plan(Path(plan_path))):
            for item in prepared.suite.items():
                prompt = prepared.builder.build(item)
                answers[prompt.messages[-1].content] = prepared.builder.reference_response(item)

        def responder(model, messages):
            return answers.get(messages[-1]["content"], "pass")

    server = FakeOpenAIServer(ServerState(responder=responder), port=0)

    async def run() -> None:
        await server.start_async()
        print(f"listening on {server.base_url}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(run())


@contextlib.contextmanager
def serving(kind: str, plan: Path, env: dict):
    """The fake server for `kind` in its own process while the block runs; yields its base URL."""
    server, base_url = spawn_server([sys.executable, __file__, "--serve", kind, str(plan)], env)
    try:
        yield base_url
    finally:
        server.kill()
        server.wait()


# -- workloads -------------------------------------------------------------------------------------


def write_plan(root: Path, kind: str, base_url: str, samples: int) -> Path:
    suite = "bench-echo" if kind == "echo" else f"{{humaneval: {{data: '{HUMANEVAL}'}}}}"
    plan = root / f"{kind}.yaml"
    plan.write_text(
        f"name: ray-scale-{kind}\nsamples: {samples}\nmodels:\n"
        f"  fake: {{provider: openai, base_url: '{base_url}', model: fake, concurrency: 64, max_attempts: 10,"
        f" timeout_s: 60}}\nsuites: [{suite}]\n"
    )
    return plan


def run_once(kind: str, root: Path, env: dict, samples: int, expected: int, workers: int | None) -> dict:
    # The plan names the server's URL, and the server reads the plan for its answers: write it twice.
    plan = write_plan(root, kind, "http://127.0.0.1:9/v1", samples)
    db = root / f"{kind}-{workers or 'local'}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    with serving(kind, plan, env) as base_url:
        plan = write_plan(root, kind, base_url, samples)
        args = [sys.executable, "-m", "harness", "run", str(plan), "--db", f"sqlite:///{db}", "--no-report", "--new"]
        if workers:
            args += ["--executor", "ray", "--workers", str(workers)]
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        with open(root / "stderr.txt", "wb") as err:
            child = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err, env=env)
            usage = wait_child_usage(child)  # its CPU and that of every process it reaped (Ray's, zygotes)
        wall = time.perf_counter() - started
        figures = stats(base_url)
    if child.returncode != 0:
        raise SystemExit(f"harness run failed ({child.returncode}): {(root / 'stderr.txt').read_text()[-2000:]}")
    import sqlite3

    with sqlite3.connect(db) as conn:
        stored, passed = conn.execute("SELECT count(*), sum(passed) FROM samples").fetchone()
    span = figures["last_response_at"] - figures["first_request_at"]
    return {
        "executor": f"ray x{workers}" if workers else "local",
        "samples": stored,
        "passed": passed,
        "expected": expected,
        "requests": figures["requests"],
        "span": span,
        "rate": stored / span,
        "wall": wall,
        "cpu_ms": (usage.ru_utime + usage.ru_stime) / stored * 1e3,
        "load": (load_before, os.getloadavg()[0]),
    }


def workload(kind: str, worker_counts: list[int], n_echo: int, samples: int) -> list[dict]:
    root = Path(tempfile.mkdtemp(prefix=f"ray-scale-{kind}-"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    if kind == "echo":
        write_echo_suite(root, n_echo)
        env["HARNESS_SUITES_PATH"] = str(root / "suites")
        samples, expected = 1, n_echo
    else:
        expected = 164 * samples
    rows = []
    for workers in [None, *worker_counts]:
        row = run_once(kind, root, env, samples, expected, workers)
        rows.append(row)
        print(
            f"  {kind:9s} {row['executor']:8s} {row['samples']:6d}/{row['expected']} stored "
            f"({row['passed']} passed, {row['requests']} requests)  {row['rate']:7.1f} samples/s over "
            f"{row['span']:6.1f} s   wall {row['wall']:6.1f} s   {'driver ' if workers else ''}CPU {row['cpu_ms']:5.1f} ms/sample   load {row['load'][0]:.1f} -> {row['load'][1]:.1f}",
            flush=True,
        )
    return rows


# -- the gate's overhead -----------------------------------------------------------------------------


def gate_overhead(n: int) -> dict:
    import ray

    from harness.engine.pacing import AdaptiveLimiter
    from harness.engine.ray_executor import GateRate, GateSlots, ModelGate

    async def local_cycles() -> float:
        limiter = AdaptiveLimiter(64)
        started = time.perf_counter()
        for _ in range(n):
            limiter.release(await limiter.acquire())
        return (time.perf_counter() - started) / n

    local = asyncio.run(local_cycles())

    @ray.remote(num_cpus=0)
    class Probe:
        """Takes and hands back slots through GateSlots/GateRate, as a worker's engine does."""

        async def sequential(self, gate, count: int, paced: bool = False) -> float:
            rate = GateRate(paced)
            slots = GateSlots(gate, "probe", 64, rate)
            started = time.perf_counter()
            for _ in range(count):
                if paced:
                    await rate.acquire(50)
                slots.release(await slots.acquire())
            return (time.perf_counter() - started) / count

        async def concurrent(self, gate, count: int, width: int) -> float:
            slots = GateSlots(gate, "probe", 64, GateRate(False))

            async def loop() -> None:
                for _ in range(count // width):
                    slots.release(await slots.acquire())

            started = time.perf_counter()
            await asyncio.gather(*(loop() for _ in range(width)))
            return (count // width * width) / (time.perf_counter() - started)

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 << 20, logging_level="warning")
    try:
        probe = Probe.remote()
        plain = ModelGate.remote(64, None, None)
        paced = ModelGate.remote(64, 10**9, 10**12)  # rate buckets charged on every acquire, never binding
        ray.get(probe.sequential.remote(plain, 200))  # warm both actors up
        load = os.getloadavg()[0]
        figures = {
            "local_us": local * 1e6,
            "round_trip_us": ray.get(probe.sequential.remote(plain, n)) * 1e6,
            "round_trip_rate_us": ray.get(probe.sequential.remote(paced, n, True)) * 1e6,
            "throughput_per_s": ray.get(probe.concurrent.remote(plain, n, 64)),
            "load": (load, os.getloadavg()[0]),
        }
    finally:
        ray.shutdown()
    print(
        f"  gate: one acquire+release {figures['round_trip_us']:.0f} us round trip "
        f"({figures['round_trip_rate_us']:.0f} us with rpm/tpm buckets); {figures['throughput_per_s']:.0f} "
        f"grants/s from 64 concurrent callers; in-process AdaptiveLimiter {figures['local_us']:.1f} us   "
        f"load {figures['load'][0]:.1f} -> {figures['load'][1]:.1f}",
        flush=True,
    )
    return figures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--serve", nargs=2, metavar=("KIND", "PLAN"), help=argparse.SUPPRESS)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--echo-items", type=int, default=4000)
    ap.add_argument("--humaneval-samples", type=int, default=10)
    ap.add_argument("--gate-requests", type=int, default=3000)
    ap.add_argument("--only", default="gate,echo,humaneval")
    args = ap.parse_args()
    if args.serve:
        serve(*args.serve)
        return 0
    counts = [int(x) for x in args.workers.split(",") if x]
    only = set(args.only.split(","))
    print(f"{os.cpu_count()} cores; load average at start {os.getloadavg()[0]:.1f}", flush=True)
    if "gate" in only:
        gate_overhead(args.gate_requests)
    if "echo" in only:
        workload("echo", counts, args.echo_items, 1)
    if "humaneval" in only:
        if not HUMANEVAL.exists():
            print(f"  humaneval: skipped, {HUMANEVAL} is absent")
        else:
            workload("humaneval", counts, 0, args.humaneval_samples)
    return 0


if __name__ == "__main__":
    sys.exit(main())
