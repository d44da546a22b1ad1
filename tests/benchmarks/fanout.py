"""Fan-out benchmark: `harness run` against the loopback fake server in its own process.

    python tests/benchmarks/fanout.py [--scenarios a,b,c] [--repeat N] [--no-faults]

Scenarios (a synthetic suite of N items written to a temp dir, exact grader, one model):
  a: N=500,  server latency 0.5 s, concurrency 32   (the peers were measured here)
  b: N=2000, server latency 0.5 s, concurrency 64
  c: N=2000, server latency 0,     concurrency 64   (pure harness CPU)
Each runs fault-free, then with 5% HTTP 500 + 5% HTTP 429 (Retry-After 0.2 s).

Printed per run: wall time of the `harness run` subprocess from spawn to exit (start-up and the
summary table included; `--no-report`), ideal = N x latency / concurrency and the ratio,
start-up (spawn to the server's first request), tail (the server's last answer to exit), the harness process's CPU (user+sys from
os.wait4, the server's CPU is not counted: it is another process) per item, its peak RSS, the
most requests the server saw at once, and a check that every sample is stored and graded correct.
With faults, the ratio of the wall time to the fault-free wall time of the same scenario.

Bytecode: an installed harness has its .pyc files; a checkout run under PYTHONDONTWRITEBYTECODE
would compile every module on each start. The harness subprocess therefore gets its own
PYTHONPYCACHEPREFIX (a temp folder kept across runs) and one small warm-up run fills it.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FAKESERVER = REPO / "tests" / "support" / "fakeserver.py"
HARNESS = Path(sys.executable).with_name("harness")
PYCACHE = Path(tempfile.gettempdir()) / "harness-bench-pycache"

SCENARIOS = {
    "a": dict(n=500, latency=0.5, concurrency=32),
    "b": dict(n=2000, latency=0.5, concurrency=64),
    "c": dict(n=2000, latency=0.0, concurrency=64),
}
FAULTS = ["--error-500", "0.05", "--error-429", "0.05", "--retry-after", "0.2"]


def write_suite(root: Path, n: int) -> None:
    folder = root / "suites" / "bench-echo"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "suite.yaml").write_text(
        "name: bench-echo\ndescription: synthetic items for the fan-out benchmark\nfamily: reasoning\nversion: 1\n"
        'data: items.jsonl\nid_field: id\nreference_field: answer\nreference_response: "{{ answer }}"\n'
        "template: prompt.j2\ngrader: {name: exact}\ngeneration: {max_tokens: 16, temperature: 0.0}\n"
    )
    (folder / "prompt.j2").write_text("Item {{ id }}: {{ question }}\nRepeat the last line exactly.\n{{ answer }}\n")
    with open(folder / "items.jsonl", "w") as fh:
        for i in range(n):
            fh.write(
                json.dumps(
                    {
                        "id": f"q{i}",
                        "question": f"What is the code word of item {i}?",
                        "answer": f"word-{i * 7919 % 100003}",
                    }
                )
                + "\n"
            )


def write_plan(root: Path, base_url: str, concurrency: int) -> Path:
    plan = root / "plan.yaml"
    plan.write_text(
        "name: fanout-bench\nmodels:\n"
        f"  fake: {{provider: openai, base_url: '{base_url}', model: fake-model, concurrency: {concurrency},\n"
        "         max_attempts: 10, timeout_s: 30, price: {input: 1.0, output: 2.0}}\n"
        "suites: [bench-echo]\n"
    )
    return plan


def start_server(latency: float, faults: bool) -> tuple[subprocess.Popen, str]:
    args = [sys.executable, str(FAKESERVER), "--port", "0", "--latency", str(latency), "--echo"]
    if faults:
        args += FAULTS
    return spawn_server(args)


def spawn_server(args: list[str], env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """Start a fake server process and read its base URL from its first line."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    if not line.startswith("listening on "):
        proc.kill()
        raise SystemExit(f"fake server did not start: {line!r}")
    return proc, line.split("listening on ", 1)[1].strip()


def server_stats(base_url: str) -> dict:
    with urllib.request.urlopen(base_url + "/_stats", timeout=10) as resp:
        return json.loads(resp.read())


def wait_child_usage(proc: subprocess.Popen):
    """Reap the child ourselves to read its own rusage (user+sys CPU, peak RSS)."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage


def run_measured(name: str, faults: bool, repeat: int) -> dict:
    cfg = SCENARIOS[name]
    runs = [run_once(name, faults=faults, **cfg) for _ in range(repeat)]
    runs.sort(key=lambda r: r["wall"])
    med = runs[len(runs) // 2]
    med["walls"] = [r["wall"] for r in runs]
    return med


def run_once(name: str, n: int, latency: float, concurrency: int, faults: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="fanout-") as tmp:
        root = Path(tmp)
        write_suite(root, n)
        server, base_url = start_server(latency, faults)
        try:
            plan = write_plan(root, base_url, concurrency)
            db = root / "bench.db"
            env = {
                **os.environ,
                "HARNESS_SUITES_PATH": str(root / "suites"),
                "COLUMNS": "120",
                "PYTHONPYCACHEPREFIX": str(PYCACHE),
            }
            env.pop("HARNESS_DB", None)
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            out_path, err_path = root / "stdout.txt", root / "stderr.txt"
            with open(out_path, "wb") as out, open(err_path, "wb") as err:
                spawned_wall = time.time()
                t0 = time.perf_counter()
                child = subprocess.Popen(
                    [str(HARNESS), "run", str(plan), "--db", f"sqlite:///{db}", "--no-report"],
                    cwd=root,
                    env=env,
                    stdout=out,
                    stderr=err,
                )
                usage = wait_child_usage(child)
                wall = time.perf_counter() - t0
                exited_wall = time.time()
            stats = server_stats(base_url)
        finally:
            server.terminate()
            server.wait()
        if child.returncode != 0:
            raise SystemExit(f"harness run failed ({child.returncode}):\n{err_path.read_text()[-3000:]}")
        con = sqlite3.connect(db)
        stored, passed, errors = con.execute("SELECT COUNT(*), SUM(passed), SUM(error != '') FROM samples").fetchone()
        con.close()
        summary_out = out_path.read_text()
    return {
        "scenario": name,
        "faults": faults,
        "n": n,
        "wall": wall,
        "ideal": n * latency / concurrency,
        "startup": (stats["first_request_at"] or spawned_wall) - spawned_wall,
        "tail": exited_wall - (stats["last_response_at"] or exited_wall),
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss_mb": usage.ru_maxrss / 1024,
        "stored": stored,
        "passed": passed or 0,
        "errors": errors or 0,
        "server_requests": stats["requests"],
        "max_in_flight": stats["max_in_flight"],
        "max_successes_per_prompt": max(stats["successes"].values() or [0]),
        "status_counts": stats["status_counts"],
        "summary_printed": "run " in summary_out,
    }


def report(r: dict, base: dict | None) -> str:
    ok = r["stored"] == r["n"] and r["passed"] == r["n"] and r["max_successes_per_prompt"] <= 1
    line = (
        f"{r['scenario']} {'faults' if r['faults'] else 'clean '} N={r['n']:<5} wall {r['wall']:6.2f} s"
        f" (runs {', '.join(f'{w:.2f}' for w in r['walls'])})"
    )
    if r["ideal"]:
        line += f"  ideal {r['ideal']:5.2f} s  ratio {r['wall'] / r['ideal']:.3f}"
    line += (
        f"  start-up {r['startup']:.2f} s  tail {r['tail']:.2f} s  CPU {1000 * r['cpu'] / r['n']:.2f} ms/item ({r['cpu']:.2f} s)"
        f"  peak RSS {r['rss_mb']:.0f} MB  max in flight {r['max_in_flight']}"
        f"  requests {r['server_requests']} {json.dumps(r['status_counts'], sort_keys=True)}"
        f"  stored {r['stored']} passed {r['passed']}  {'OK' if ok else 'INCOMPLETE'}"
    )
    if base is not None:
        line += f"  faults/fault-free {r['wall'] / base['wall']:.3f}"
    return line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", default="a,b,c")
    ap.add_argument("--repeat", type=int, default=1, help="runs per case; the median wall time is reported")
    ap.add_argument("--no-faults", action="store_true")
    args = ap.parse_args()
    print(
        f"harness: {HARNESS}  cpus: {os.cpu_count()}  python {sys.version.split()[0]}  "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    run_once("warm-up", n=20, latency=0.0, concurrency=4, faults=False)  # fills the bytecode cache
    for name in args.scenarios.split(","):
        clean = run_measured(name, False, args.repeat)
        print(report(clean, None), flush=True)
        if not args.no_faults:
            faulty = run_measured(name, True, args.repeat)
            print(report(faulty, clean), flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
