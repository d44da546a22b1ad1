"""Vision benchmark: `harness run` with one 1024x1024 image per item against text-only items, concurrency 32.

    python tests/benchmarks/vision.py [--n 320] [--latency 0.2] [--repeat 1] [--format PNG|JPEG]

For each of text-only and one-image items (a synthetic suite written to a temp dir; the images are
seeded drawings of blocks and numbers, distinct per item), fault-free and with 5% HTTP 500s (so a
retry would re-encode if encoding were per attempt), against the loopback fake server in its own
process (latency as given). Printed: wall time of the `harness run` subprocess (spawn to exit, no
report), requests/s = N / wall and while serving (the server's first request to its last answer), the harness process's CPU (user+sys, os.wait4) per request and its
peak RSS, the request bytes the server received per request, and a check that every sample is stored.
The machine is shared: run it when it is quiet and read the CPU figures more than the wall times.
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
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "benchmarks"))
sys.path.insert(0, str(REPO))

from fanout import FAKESERVER, PYCACHE, server_stats, spawn_server, wait_child_usage  # noqa: E402


def write_suite(root: Path, n: int, images: bool, fmt: str) -> None:
    from harness.load.images import synthetic_image

    folder = root / "suites" / "bench-vision"
    (folder / "img").mkdir(parents=True, exist_ok=True)
    config = (
        "name: bench-vision\ndescription: synthetic items for the vision benchmark\nversion: 1\n"
        'data: items.jsonl\nid_field: id\nreference_field: answer\nreference_response: "{{ answer }}"\n'
        "template: prompt.j2\ngrader: {name: exact}\ngeneration: {max_tokens: 16, temperature: 0.0}\n"
    )
    if images:
        config += "images_field: images\n"
    (folder / "suite.yaml").write_text(config)
    (folder / "prompt.j2").write_text("Item {{ id }}: {{ question }}\nRepeat the last line exactly.\n{{ answer }}\n")
    with open(folder / "items.jsonl", "w") as fh:
        for i in range(n):
            row = {"id": f"q{i}", "question": f"What is the code word of item {i}?", "answer": f"word-{i}"}
            if images:
                name = f"img/{i}.{fmt.lower()}"
                part = synthetic_image(1024, 1024, i)
                if fmt == "PNG":
                    import io

                    from PIL import Image

                    out = io.BytesIO()
                    Image.open(io.BytesIO(part.data)).save(out, format="PNG")
                    (folder / name).write_bytes(out.getvalue())
                else:
                    (folder / name).write_bytes(part.data)
                row["images"] = [name]
            fh.write(json.dumps(row) + "\n")


def run_once(n: int, latency: float, images: bool, faults: bool, fmt: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="vision-bench-") as tmp:
        root = Path(tmp)
        write_suite(root, n, images, fmt)
        size = sum(p.stat().st_size for p in (root / "suites" / "bench-vision" / "img").iterdir()) / n if images else 0
        args = [sys.executable, str(FAKESERVER), "--port", "0", "--latency", str(latency), "--echo"]
        if faults:
            args += ["--error-500", "0.05"]
        server, base_url = spawn_server(args)
        try:
            plan = root / "plan.yaml"
            plan.write_text(
                "name: vision-bench\nmodels:\n"
                f"  fake: {{provider: openai, base_url: '{base_url}', model: fake-model, concurrency: 32,\n"
                "         max_attempts: 10, timeout_s: 60, price: {input: 1.0, output: 2.0}}\n"
                "suites: [bench-vision]\n"
            )
            env = {
                **os.environ,
                "PYTHONPATH": str(REPO),
                "HARNESS_SUITES_PATH": str(root / "suites"),
                "COLUMNS": "120",
                "PYTHONPYCACHEPREFIX": str(PYCACHE),
            }
            env.pop("HARNESS_DB", None)
            db = root / "bench.db"
            with open(root / "out.txt", "wb") as out, open(root / "err.txt", "wb") as err:
                t0 = time.perf_counter()
                child = subprocess.Popen(
                    [sys.executable, "-m", "harness", "run", str(plan), "--db", f"sqlite:///{db}", "--no-report"],
                    cwd=root,
                    env=env,
                    stdout=out,
                    stderr=err,
                )
                usage = wait_child_usage(child)
                wall = time.perf_counter() - t0
            stats = server_stats(base_url)
            if child.returncode != 0:
                raise SystemExit((root / "err.txt").read_text()[-2000:])
            with sqlite3.connect(db) as conn:
                stored, errors = conn.execute("select count(*), sum(error != '') from samples").fetchone()
        finally:
            server.terminate()
            server.wait()
    cpu = usage.ru_utime + usage.ru_stime
    return {
        "wall": wall,
        "rps": n / wall,
        # From the server's first request to its last answer: start-up and the summary left out.
        "serving_rps": n / max(1e-9, (stats["last_response_at"] or 0) - (stats["first_request_at"] or 0)),
        "cpu_ms": 1000 * cpu / n,
        "rss_mb": usage.ru_maxrss / 1024,
        "image_kb": size / 1024,
        "stored": stored,
        "errors": errors or 0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=320)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--format", default="PNG", choices=["PNG", "JPEG"])
    args = ap.parse_args()
    # Warm the bytecode cache once so start-up is not counted against the first scenario.
    run_once(8, 0.0, False, False, args.format)
    print(f"N={args.n} items, concurrency 32, server latency {args.latency} s, {args.format} 1024x1024 images")
    print(
        f"{'items':<12} {'faults':<8} {'wall s':>8} {'req/s':>8} {'serving':>8} {'CPU ms/req':>11} {'RSS MB':>8} {'img KB':>8} stored"
    )
    for images in (False, True):
        for faults in (False, True):
            runs = sorted(
                (run_once(args.n, args.latency, images, faults, args.format) for _ in range(args.repeat)),
                key=lambda r: r["wall"],
            )
            r = runs[len(runs) // 2]
            print(
                f"{'one image' if images else 'text only':<12} {'5% 500' if faults else 'none':<8} {r['wall']:>8.2f} {r['rps']:>8.1f} {r['serving_rps']:>8.1f} "
                f"{r['cpu_ms']:>11.2f} {r['rss_mb']:>8.0f} {r['image_kb']:>8.0f} {r['stored']} ({r['errors']} errors)",
                flush=True,
            )


if __name__ == "__main__":
    main()
