"""The bundled agent-tasks suite on the embedded model through llama-cpp-python's server (chatml-function-calling).

    python tests/benchmarks/agent_llamacpp.py [--limit 30] [--threads 1]

Starts the server on a free 127.0.0.1 port, runs the suite (one sample per task), stops the server, and
prints per task: turns, calls, tokens, seconds, the loop's ending and the grade; then the totals and
means (turns per task, tokens per task, seconds per task and per turn), and the tool outcome classes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    class Factory:  # what start_llama_server needs from pytest's tmp_path_factory
        def mktemp(self, name):
            return Path(tempfile.mkdtemp(prefix=name))

    from support.servers import start_llama_server, stop

    from harness.engine.runs import execute_plan
    from harness.plan import load_plan
    from harness.store import Store

    proc, url = start_llama_server(
        Factory().mktemp("llama"), "--chat_format", "chatml-function-calling", "--interrupt_requests", "False"
    )
    folder = Path(tempfile.mkdtemp(prefix="agent-bench"))
    try:
        model = {"provider": "openai", "base_url": url, "model": "smollm2-135m", "concurrency": 1, "timeout_s": 300}
        plan = {"name": "agent-bench", "models": {"smollm2": model}, "suites": [{"agent-tasks": {"first": args.limit}}]}
        (folder / "plan.yaml").write_text(yaml.safe_dump(plan))
        store = Store(f"sqlite:///{folder / 'h.db'}")
        start = time.perf_counter()
        result = execute_plan(load_plan(folder / "plan.yaml"), store)
        wall = time.perf_counter() - start
    finally:
        stop(proc)
    samples = list(store.samples(result.run_id))
    turns, tokens, seconds, outcomes = [], [], [], {}
    print(f"{'task':<16}{'turns':>6}{'calls':>6}{'tokens':>8}{'s':>7}  {'stop':<12} grade")
    for s in samples:
        transcript = json.loads(s.transcript_json) if s.transcript_json else {"turns": [], "stop": "error"}
        n = len(transcript["turns"])
        turns.append(n)
        tokens.append(s.prompt_tokens + s.completion_tokens)
        seconds.append(s.latency_s)
        outcomes[s.tool_outcome] = outcomes.get(s.tool_outcome, 0) + 1
        grade = "pass" if s.passed else f"fail: {s.grade_reason[:60]}"
        print(
            f"{s.item_id:<16}{n:>6}{len(s.tool_calls):>6}{tokens[-1]:>8}{s.latency_s:>7.2f}  {transcript['stop']:<12} {grade}"
        )
    n = len(samples)
    print(
        f"\n{n} tasks in {wall:.1f} s wall; passed {sum(s.passed for s in samples)}; "
        f"turns/task mean {statistics.mean(turns):.2f} (max {max(turns)}); "
        f"tokens/task mean {statistics.mean(tokens):,.0f}; s/task mean {statistics.mean(seconds):.2f}; "
        f"s/turn {sum(seconds) / max(1, sum(turns)):.2f}; outcomes {outcomes}"
    )


if __name__ == "__main__":
    main()
