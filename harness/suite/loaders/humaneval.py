"""The HumanEval loader: HumanEval.jsonl.gz (or .jsonl) read as is, or a hub copy."""

from __future__ import annotations

from harness.suite.loaders.common import LoadedData, Rows, _as_is, _fingerprint, _read_jsonl, _Source, register
from harness.suite.loaders.hub import _hub, _hub_columns, _hub_parts

HUMANEVAL_FIELDS = {"task_id": str, "prompt": str, "entry_point": str, "canonical_solution": str, "test": str}


@register("humaneval")
def load_humaneval(source: _Source, opts: dict) -> LoadedData:
    if source.hub_id:
        dataset = _hub(source, split="test")
        _hub_columns(source, dataset, HUMANEVAL_FIELDS, "split test")
        dataset = dataset.select_columns(list(HUMANEVAL_FIELDS))
        fingerprint = _fingerprint("humaneval", opts, hub=[source.hub_id, *_hub_parts(dataset)])
    else:
        path = source.need("HumanEval.jsonl.gz", "HumanEval.jsonl", what="HumanEval file")
        dataset = _read_jsonl(source, {"data": path}, HUMANEVAL_FIELDS)["data"]
        fingerprint = _fingerprint("humaneval", opts, [("data", path)])
    return LoadedData(rows=Rows([(dataset, _as_is)]), fewshot=[], fingerprint=fingerprint, count=len(dataset))
