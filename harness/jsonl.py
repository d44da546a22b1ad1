"""Read JSON Lines files row by row, naming the file and line of any bad row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from harness.errors import HarnessError


def read_jsonl(path: str | Path, *, what: str = "data file") -> Iterator[dict]:
    """Yield each non-blank line's JSON object; a missing file or bad line is a HarnessError."""
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"{what} not found: {path}")
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise HarnessError(f"{path}:{lineno}: not valid JSON ({exc.msg}); each line must be one JSON object") from None
            if not isinstance(row, dict):
                raise HarnessError(f"{path}:{lineno}: each line must be a JSON object")
            yield row
