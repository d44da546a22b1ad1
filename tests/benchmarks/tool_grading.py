"""Grading throughput of the `tool_calls` grader over every BFCL v4 single-turn category, answers replayed from a file.

    python tests/benchmarks/tool_grading.py [--data ../shared/datasets/bfcl] [--answers FILE] [--repeat 3]

Without --answers, writes one: for each item the gold calls (first accepted value of each parameter;
Java/JavaScript values written as strings), with every 5th answer's first value changed and every 7th
answer left without a call, so right and wrong paths are both timed. Prints items/s per category and
overall (best of --repeat passes; loading and prompt building are not timed).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

from support.tools import first_accepted as _first  # noqa: E402


def _java(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return (
            "new ArrayList<>(Arrays.asList("
            + ", ".join(json.dumps(x) if isinstance(x, str) else _java(x) for x in v)
            + "))"
        )
    if isinstance(v, dict):
        return (
            "new HashMap<String, String>() {{ "
            + " ".join(f"put({json.dumps(k)}, {json.dumps(x)});" for k, x in v.items())
            + " }}"
        )
    return str(v)


def write_answers(items, path: Path) -> None:
    with open(path, "w", encoding="utf-8") as out:
        for index, item in enumerate(items):
            calls = []
            for expected in item.reference or ():
                ((name, params),) = expected.items()
                args = {k: _first(acc) for k, acc in params.items() if any(v != "" for v in acc)}
                if index % 5 == 0 and args:
                    key = next(iter(args))
                    args[key] = "__wrong__"
                lang = item.fields["language"]
                if lang == "java":
                    args = {k: _java(v) for k, v in args.items()}
                elif lang == "javascript":
                    args = {k: v if isinstance(v, str) else json.dumps(v) for k, v in args.items()}
                calls.append({"name": name, "arguments": json.dumps(args, ensure_ascii=False)})
            if index % 7 == 0:
                calls = []
            out.write(json.dumps({"id": item.id, "tool_calls": calls}, ensure_ascii=False) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(TESTS.parents[1] / "shared" / "datasets" / "bfcl"))
    ap.add_argument("--answers")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if not Path(args.data).is_dir():
        sys.exit(f"no BFCL data at {args.data}: pass --data DIR")
    from harness.graders.grading import SuiteGrader
    from harness.plan import SuiteRef
    from harness.records import ToolCall
    from harness.suite import load_suite

    suite = load_suite(SuiteRef(name="bfcl", data=args.data))
    items = list(suite.items())
    answers = Path(args.answers) if args.answers else Path(tempfile.mkdtemp()) / "bfcl_answers.jsonl"
    if not args.answers:
        write_answers(items, answers)
    replay = {}
    with open(answers, encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            replay[row["id"]] = tuple(ToolCall.parse(c["name"], c["arguments"]) for c in row["tool_calls"])
    grader = SuiteGrader(suite)
    best = float("inf")
    per_category: dict[str, list] = defaultdict(lambda: [0, 0, 0.0])
    for _ in range(args.repeat):
        per_category.clear()
        start = time.perf_counter()
        for item in items:
            t0 = time.perf_counter()
            grade = grader("", item, replay.get(item.id, ()))
            cell = per_category[item.group]
            cell[0] += 1
            cell[1] += grade.passed
            cell[2] += time.perf_counter() - t0
        best = min(best, time.perf_counter() - start)
    print(f"{'category':<24}{'items':>7}{'passed':>8}{'items/s':>11}")
    for category, (n, passed, spent) in per_category.items():
        print(f"{category:<24}{n:>7}{passed:>8}{n / spent:>11,.0f}")
    print(f"{'all':<24}{len(items):>7}{sum(c[1] for c in per_category.values()):>8}{len(items) / best:>11,.0f}")
    print(f"best of {args.repeat} passes: {best:.3f} s for {len(items)} items; answers from {answers}")


if __name__ == "__main__":
    main()
