"""The GSM8K loader: test.jsonl or train.jsonl, the first train rows as the few-shot pool."""

from __future__ import annotations

from harness.errors import HarnessError
from harness.suite.loaders.common import (
    LoadedData,
    Rows,
    _as_is,
    _choice,
    _count,
    _fingerprint,
    _Opt,
    _read_jsonl,
    _Source,
    _text_or_none,
    register,
)
from harness.suite.loaders.hub import _hub, _hub_columns, _hub_parts

GSM8K_FIELDS = {"question": str, "answer": str}


@register(
    "gsm8k",
    {
        "split": _Opt("test", _choice("test", "train")),
        "fewshot_pool": _Opt(8, _count),
        "config": _Opt(None, _text_or_none),
    },
)
def load_gsm8k(source: _Source, opts: dict) -> LoadedData:
    split, pool = opts["split"], opts["fewshot_pool"]
    if source.hub_id:
        config = opts["config"] or "main"
        loaded = _hub(source, config)
        if split not in loaded:
            raise HarnessError(
                f"suite '{source.suite}': hub dataset '{source.hub_id}' has no split '{split}' (has: {', '.join(loaded)})"
            )
        evaluated = loaded[split]
        train = loaded["train"] if "train" in loaded else None
        for part in (evaluated, train):
            if part is not None:
                _hub_columns(source, part, GSM8K_FIELDS, f"config {config}")
        same = split == "train"
        fingerprint = _fingerprint(
            "gsm8k",
            opts,
            hub=[source.hub_id, config, *_hub_parts(evaluated), *(_hub_parts(train) if train is not None else [])],
        )
    else:
        if source.path.is_file():
            eval_path = source.path
        else:
            eval_path = source.need(f"{split}.jsonl", what=f"GSM8K {split} file")
        train_path = eval_path.parent / "train.jsonl"
        train_path = train_path if train_path.is_file() else None
        same = train_path is not None and train_path.resolve() == eval_path.resolve()
        files = {"evaluated": eval_path}
        if train_path is not None and not same:
            files["train"] = train_path
        parts = _read_jsonl(source, files, GSM8K_FIELDS)
        evaluated = parts["evaluated"]
        train = evaluated if same else parts.get("train")
        fingerprint = _fingerprint("gsm8k", opts, list(files.items()))
    fewshot = [dict(row) for row in train.select(range(min(pool, len(train))))] if train is not None and pool else []
    if same and fewshot:
        evaluated = evaluated.select(range(len(fewshot), len(evaluated)))
    return LoadedData(rows=Rows([(evaluated, _as_is)]), fewshot=fewshot, fingerprint=fingerprint, count=len(evaluated))
