"""Benchmark the HTML report over 100k graded samples: wall time, CPU, peak RSS, largest HTML file."""

from __future__ import annotations

# Run: python tests/benchmarks/report_100k.py [--samples 100000] [--db PATH] [--out DIR]
# The synthetic database is built through the Store API; the report runs in a child process so
# that its peak RSS is measured alone (not the build's).
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

N_MODELS, N_SUITES = 5, 4


def build(db: Path, samples: int) -> str:
    from support.report_data import make_run

    from harness.store import Store

    store = Store(f"sqlite:///{db}")
    models = {f"model-{i}": (0.55 + 0.07 * i, 0.15 * (i + 1), 0.6 * (i + 1), 0.4 + 0.5 * i) for i in range(N_MODELS)}
    suites = tuple(f"suite-{chr(97 + i)}" for i in range(N_SUITES))
    run_id = make_run(
        store,
        plan_name="bench",
        models=models,
        suites=suites,
        n_items=samples // (N_MODELS * N_SUITES),
        long_prompt=600,
        seed=1,
        batch=5000,
    )
    store.close()
    return run_id


def child(db: str, out: str) -> None:
    from harness.report import write_report
    from harness.store import Store

    store = Store(f"sqlite:///{db}")
    t0, c0 = time.perf_counter(), time.process_time()
    index = write_report(store, None, out)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        json.dumps(
            {
                "wall_s": wall,
                "cpu_s": cpu,
                "worker_cpu_s": kids.ru_utime + kids.ru_stime,
                "peak_rss_mib": me.ru_maxrss / 1024,
                "worker_peak_rss_mib": kids.ru_maxrss / 1024,
                "index": str(index),
            }
        )
    )  # ru_maxrss is in KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--db", help="reuse or create this SQLite file (default: a temporary one)")
    ap.add_argument("--out", help="report folder (default: a temporary one)")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    tmp = tempfile.TemporaryDirectory(prefix="report-bench-")
    db = Path(args.db or Path(tmp.name) / "bench.db")
    out = Path(args.out or Path(tmp.name) / "site")
    if not db.exists():
        t0 = time.perf_counter()
        build(db, args.samples)
        print(f"built {args.samples:,} samples in {time.perf_counter() - t0:.1f} s -> {db}")
    load = os.getloadavg()[0]
    proc = subprocess.run([sys.executable, __file__, "--child", str(db), str(out)], capture_output=True, text=True)
    if proc.returncode:
        sys.exit(proc.stderr)
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    html = [p for p in out.rglob("*.html")]
    sizes = sorted(((p.stat().st_size, p) for p in html), reverse=True)
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wall time        {res['wall_s']:.2f} s  (load average before: {load:.1f} on {os.cpu_count()} CPUs)")
    print(f"CPU time         {res['cpu_s']:.2f} s report process + {res['worker_cpu_s']:.2f} s worker process")
    print(f"peak RSS         {res['peak_rss_mib']:.0f} MiB report process, {res['worker_peak_rss_mib']:.0f} MiB worker")
    print(f"largest HTML     {sizes[0][0] / 1e6:.2f} MB  ({sizes[0][1].relative_to(out)})")
    print(f"HTML files       {len(html):,}, site total {total / 1e6:.0f} MB")
    print(f"index            {res['index']}")


if __name__ == "__main__":
    main()
