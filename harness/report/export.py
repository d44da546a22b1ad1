"""Export a run's samples, one row each, as JSONL or CSV: with the prompt, the extracted answer and the reference."""

from __future__ import annotations

import csv
import json
from typing import TextIO

from harness.graders import shown_reference
from harness.providers.registry import capabilities_of
from harness.records import Prompt
from harness.store import Store

COLUMNS = (
    "run",
    "model",
    "suite",
    "suite_hash",
    "item_id",
    "sample_index",
    "prompt",
    "completion",
    "extracted",
    "reference",
    "score",
    "passed",
    "grade_reason",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "latency_s",
    "ttft_s",
    "cost_usd",
    "served_model",
    "error",
    "batched",
    "finish_reason",
    "usage_estimated",
    "tool_calls",
    "cached_tokens",
    "tool_outcome",
    "transcript",
    "item",
)


def _prompt(messages_json: str | None) -> list[dict] | None:
    """The stored chat messages as [{role, content, ...}] (None when the prompt was not stored).

    Images are named (source and sha256), never their bytes; tool calls and tool results keep their fields.
    """
    if messages_json is None:
        return None
    try:
        data = json.loads(messages_json)
    except ValueError:
        return [{"role": "prompt", "content": messages_json}]
    prompt = Prompt.from_json(data)
    out = []
    for m in prompt.messages:
        shown = m.to_json()
        out.append({"role": shown[0], "content": shown[1]} if isinstance(shown, list) else shown)
    return out


def _tool_calls(calls) -> list[dict]:
    """The calls as scripts read them: name as the suite names it, arguments parsed (or null), the raw string."""
    return [{"name": c.name, "arguments": c.arguments, "raw_arguments": c.raw_arguments} for c in calls]


def export_run(store: Store, run_id: str, fmt: str, out: TextIO) -> int:
    """Write every sample of the run to `out`; returns the number of rows.

    `reference` is what the grader compares against (the final number of a worked solution, say);
    `latency_s` / `ttft_s` are empty (null) for completions replayed from files, which were never timed.
    In CSV the prompt is its JSON text.
    """
    writer = csv.DictWriter(out, fieldnames=COLUMNS) if fmt == "csv" else None
    if writer:
        writer.writeheader()
    graders = {s.suite: s.grader for s in store.run_suites(run_id)}
    from harness.analysis.summary import unpriced_models

    unknown_cost = unpriced_models(store.run(run_id))  # no price in the plan: cost unknown (null), not 0
    untimed = {m.model for m in store.run_models(run_id) if not capabilities_of(m.provider).timed}
    prompts: dict[str, dict[str, tuple[str, str]]] = {}
    fields: dict[str, dict[str, dict]] = {}
    n = 0
    for r in store.samples(run_id):
        if r.suite_hash not in prompts:
            prompts[r.suite_hash] = store.prompts(r.suite_hash)
            fields[r.suite_hash] = store.item_fields(r.suite_hash)
        messages_json, stored_reference = prompts[r.suite_hash].get(r.item_id, (None, ""))
        computed = {
            "run": r.run_id,
            "prompt": _prompt(messages_json),
            "tool_calls": _tool_calls(r.tool_calls),
            "transcript": json.loads(r.transcript_json) if r.transcript_json else None,
            "reference": shown_reference(graders.get(r.suite, ""), stored_reference or ""),
            "item": fields[r.suite_hash].get(r.item_id, {}),  # the item's own fields ({} if stored without)
        }
        if r.model in untimed:
            computed["latency_s"] = computed["ttft_s"] = None
        if r.model in unknown_cost:
            computed["cost_usd"] = None
        row = {c: computed[c] if c in computed else getattr(r, c) for c in COLUMNS}
        if writer:
            writer.writerow(
                {
                    **row,
                    "prompt": "" if row["prompt"] is None else json.dumps(row["prompt"], ensure_ascii=False),
                    "tool_calls": json.dumps(row["tool_calls"], ensure_ascii=False) if row["tool_calls"] else "",
                    "transcript": r.transcript_json or "",
                    "item": json.dumps(row["item"], ensure_ascii=False) if row["item"] else "",
                }
            )
        else:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
        n += 1
    return n


def export_summary(store: Store, run_id: str, fmt: str, out: TextIO) -> int:
    """Write one row per model x suite (`summary_rows`) as JSONL or CSV; unknown numbers are null / empty."""
    from harness.analysis.compare import json_safe
    from harness.analysis.summary import SUMMARY_COLUMNS, summarize_run, summary_rows

    rows = [json_safe(r) for r in summary_rows(summarize_run(store, run_id))]
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "served_models": " ".join(row["served_models"])})
    else:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return len(rows)
