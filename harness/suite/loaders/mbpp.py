"""The MBPP loader: mbpp.jsonl cut into its task_id splits, tasks 2-4 as the few-shot pool."""

from __future__ import annotations

from harness.suite.loaders.common import (
    LoadedData,
    Rows,
    _choice,
    _fingerprint,
    _Opt,
    _read_jsonl,
    _Source,
    _text_or_none,
    register,
)
from harness.suite.loaders.hub import _hub, _hub_columns, _hub_parts

MBPP_FIELDS = {
    "task_id": int,
    "text": str,
    "code": str,
    "test_list": list,
    "test_setup_code": str,
    "challenge_test_list": list,
}
MBPP_OPTIONAL = ("test_setup_code", "challenge_test_list")
# task_id ranges of the MBPP splits (google-research/mbpp README; the HF `full` config uses the same).
MBPP_SPLITS = {"test": (11, 510), "validation": (511, 600), "train": (601, 974), "prompt": (1, 10), "all": (1, 10**9)}
MBPP_FEWSHOT_IDS = (2, 3, 4)


def _mbpp_row(index: int, row: dict) -> dict:
    if row.get("test_setup_code") is None:
        row["test_setup_code"] = ""
    if row.get("challenge_test_list") is None:
        row["challenge_test_list"] = []
    return row


@register(
    "mbpp",
    {
        "split": _Opt("test", _choice(*MBPP_SPLITS)),
        "config": _Opt(None, _text_or_none),
    },
)
def load_mbpp(source: _Source, opts: dict) -> LoadedData:
    if source.hub_id:
        import datasets

        config = opts["config"] or "full"
        loaded = _hub(source, config)
        splits = [loaded[name] for name in loaded]
        for part in splits:
            _hub_columns(source, part, ["task_id", "text", "code", "test_list"], f"config {config}")
        dataset = datasets.concatenate_datasets(splits) if len(splits) > 1 else splits[0]
        fingerprint = _fingerprint("mbpp", opts, hub=[source.hub_id, *(p for s in splits for p in _hub_parts(s))])
    else:
        path = source.need("mbpp.jsonl", what="mbpp.jsonl")
        dataset = _read_jsonl(source, {"data": path}, MBPP_FIELDS, MBPP_OPTIONAL)["data"]
        fingerprint = _fingerprint("mbpp", opts, [("data", path)])
    low, high = MBPP_SPLITS[opts["split"]]
    task_ids = dataset["task_id"]
    keep = [i for i, t in enumerate(task_ids) if low <= t <= high and t not in MBPP_FEWSHOT_IDS]
    position = {t: i for i, t in enumerate(task_ids)}
    fewshot = [_mbpp_row(0, dataset[position[t]]) for t in MBPP_FEWSHOT_IDS if t in position]
    rows = dataset.select(keep)
    return LoadedData(rows=Rows([(rows, _mbpp_row)]), fewshot=fewshot, fingerprint=fingerprint, count=len(rows))
