"""The real benchmark files in ../shared/datasets (next to the repository), read in place, never copied."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"


def shared_dataset(name: str) -> Path:
    """Path to a real benchmark in ../shared/datasets, or skip the test saying why."""
    path = SHARED_DATASETS / name
    if not path.exists():
        pytest.skip(f"../shared/datasets/{name} is absent: the real benchmark files are not available here")
    return path
