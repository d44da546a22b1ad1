"""Hugging Face hub datasets for the loaders: load a config or split, list configs, check columns, explain failures."""

from __future__ import annotations

import os
from typing import Any, Iterable

from harness.errors import HarnessError
from harness.suite.loaders.common import _cache_dir, _Source


def _hub(source: _Source, config: str | None = None, split: str | None = None):
    import datasets

    try:
        return datasets.load_dataset(source.hub_id, config, split=split, cache_dir=_cache_dir())
    except Exception as exc:
        raise _hub_error(source, exc, config) from None


def _hub_configs(source: _Source) -> list[str]:
    import datasets

    try:
        return list(datasets.get_dataset_config_names(source.hub_id))
    except Exception as exc:
        raise _hub_error(source, exc) from None


def _hub_error(source: _Source, exc: Exception, config: str | None = None) -> HarnessError:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    which = f"'{source.hub_id}'" + (f" (config '{config}')" if config else "")
    offline = os.environ.get("HF_DATASETS_OFFLINE", "") or os.environ.get("HF_HUB_OFFLINE", "")
    hint = (
        "offline mode is on (HF_DATASETS_OFFLINE/HF_HUB_OFFLINE), so only a copy already in the datasets cache can be used"
        if offline.upper() in {"1", "ON", "YES", "TRUE"}
        else "is the network reachable and the id spelt right?"
    )
    return HarnessError(
        f"suite '{source.suite}': data {which} is not an existing path, and loading it as a Hugging Face hub "
        f"dataset failed: {reason}; {hint}. Give the path to the downloaded benchmark files instead."
    )


def _hub_columns(source: _Source, dataset: Any, fields: Iterable[str], what: str) -> None:
    missing = [f for f in fields if f not in dataset.column_names]
    if missing:
        raise HarnessError(
            f"suite '{source.suite}': hub dataset '{source.hub_id}' ({what}) has no column(s) {', '.join(missing)} "
            f"(has: {', '.join(dataset.column_names)}); it is not in this loader's format"
        )


def _hub_parts(dataset: Any) -> list[str]:
    return [getattr(dataset, "_fingerprint", "") or ""]
