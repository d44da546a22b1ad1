"""The same plan online and through the Batch API, against the loopback fake server: scores, cost,
requests the server answered, batches submitted, and what an expired batch costs in extra rounds.

    python tests/benchmarks/batch_vs_online.py [--items 500] [--max-requests 200]

Prints one line per mode. The fake server steps a batch through validating, in_progress and
finalizing one poll at a time, so wall times are the engine's own overhead, not a provider's queue.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

from support.batch import sums_responder, write_plan  # noqa: E402
from support.fakeserver import BatchPlan, FakeOpenAIServer, ServerState  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=500)
    ap.add_argument("--max-requests", type=int, default=200)
    args = ap.parse_args()
    os.environ.setdefault("HARNESS_BATCH_POLL_S", "0.05")
    from harness.analysis.summary import summarize_run
    from harness.engine.runs import execute_plan
    from harness.plan import load_plan
    from harness.store import Store
    from harness.store.batches import list_batches

    with tempfile.TemporaryDirectory() as tmp, FakeOpenAIServer(ServerState(responder=sums_responder)) as server:
        tmp_path = Path(tmp)
        store = Store(f"sqlite:///{tmp_path / 'h.db'}")
        modes = [
            ("online", None, []),
            ("batch", {"max_requests": args.max_requests}, []),
            (
                "batch, first expired with 10% missing",
                {"max_requests": args.max_requests},
                [BatchPlan(outcome="expired", missing=0.10)],
            ),
        ]
        for label, batch, plans in modes:
            st = server.state
            st.requests, st.batch.created, st.batch.lines_answered = 0, 0, 0
            st.successes.clear()
            st.batch.plans = list(plans)
            plan = load_plan(
                write_plan(
                    tmp_path,
                    server,
                    n=args.items,
                    batch=batch,
                    name=label.split(",")[0].replace(" ", "-") + str(len(plans)),
                )
            )
            started = time.perf_counter()
            result = execute_plan(plan, store, new=True)
            wall = time.perf_counter() - started
            cell = summarize_run(store, result.run_id).cell("m", "sums")
            batches = list_batches(store, result.run_id)
            print(
                f"{label:<40} status {result.status:<8} score {cell.mean:.4f}  cost ${cell.cost_usd:.6f}  "
                f"online requests {st.requests:>5}  batch lines answered {st.batch.lines_answered:>5}  "
                f"batches {len(batches)} ({', '.join(b.state for b in batches) or '-'})  "
                f"most answers per prompt {max(st.successes.values())}  wall {wall:.2f} s"
            )


if __name__ == "__main__":
    main()
