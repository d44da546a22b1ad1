"""Read JSON Lines files row by row, naming the file and line of any bad row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator

from harness.errors import HarnessError


class BadLine(ValueError):
    """A line that is not one JSON object: its number and what is wrong, for the caller to word."""

    def __init__(self, lineno: int, problem: str):
        super().__init__(problem)
        self.lineno, self.problem = lineno, problem


def jsonl_rows(lines: Iterable[str]) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; raises BadLine at the first bad one."""
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadLine(lineno, f"not valid JSON ({exc.msg}); each line must be one JSON object") from None
        if not isinstance(row, dict):
            raise BadLine(lineno, f"expected a JSON object, got {type(row).__name__}")
        yield lineno, row


def read_jsonl(path: str | Path, *, what: str = "data file") -> Iterator[dict]:
    """Yield each non-blank line's JSON object; a missing file or bad line is a HarnessError."""
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"{what} not found: {path}")
    with open(path, encoding="utf-8") as fh:
        try:
            for _, row in jsonl_rows(fh):
                yield row
        except BadLine as bad:
            raise HarnessError(f"{path}:{bad.lineno}: {bad.problem}") from None
