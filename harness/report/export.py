"""Export a run's samples, one row each, as JSONL or CSV."""

from __future__ import annotations

import csv
import json
from typing import TextIO

from harness.store import Store

COLUMNS = ("run", "model", "suite", "suite_hash", "item_id", "sample_index", "completion", "score", "passed",
           "grade_reason", "prompt_tokens", "completion_tokens", "reasoning_tokens", "latency_s", "ttft_s",
           "cost_usd", "served_model", "error", "batched", "finish_reason", "usage_estimated")


def export_run(store: Store, run_id: str, fmt: str, out: TextIO) -> int:
    """Write every sample of the run to `out`; returns the number of rows."""
    writer = csv.DictWriter(out, fieldnames=COLUMNS) if fmt == "csv" else None
    if writer:
        writer.writeheader()
    n = 0
    for r in store.samples(run_id):
        row = {"run": r.run_id, **{c: getattr(r, c) for c in COLUMNS if c != "run"}}
        if writer:
            writer.writerow(row)
        else:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
        n += 1
    return n
