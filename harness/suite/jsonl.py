"""Read JSON Lines files row by row, naming the file and line of any bad row."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Iterable, Iterator

from harness.errors import HarnessError
from harness.untrusted import bounded_lines, regular_file


class BadLine(ValueError):
    """A line that is not one JSON object: its number and what is wrong, for the caller to word."""

    def __init__(self, lineno: int, problem: str):
        super().__init__(problem)
        self.lineno, self.problem = lineno, problem


def decode_line(raw: bytes, lineno: int) -> str:
    """One line of a file as text; BadLine naming the byte and column if it is not UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadLine(lineno, _not_utf8(raw[exc.start], exc.start + 1)) from None


def utf8_problem(path: str | Path) -> str | None:
    """ "<file>, line N: not valid UTF-8 ..." for the first such line of a file (gzip'd or not), or None.

    Readers that do not say (pyarrow's JSON reader, under `datasets`, decodes bad bytes silently)
    are checked with this first: the whole file at C speed, the line found only on failure.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as fh:
        data = fh.read()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        lineno = data.count(b"\n", 0, exc.start) + 1
        return f"{path}, line {lineno}: {_not_utf8(data[exc.start], exc.start - line_start + 1)}"
    return None


def _not_utf8(byte: int, column: int) -> str:
    return f"not valid UTF-8 (byte 0x{byte:02x} at column {column}); save the file as UTF-8"


def jsonl_rows(lines: Iterable[str | bytes]) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; raises BadLine at the first bad one.

    Give it a file opened in binary mode: each line is then decoded on its own, so a byte that is
    not UTF-8 is reported with its line (a text-mode file fails somewhere in a buffered block).
    """
    for lineno, line in enumerate(lines, 1):
        if isinstance(line, bytes):
            line = decode_line(line, lineno)
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
    path = regular_file(path, what)  # a FIFO or a device is refused, not read forever
    with open(path, "rb") as fh:
        try:
            for _, row in jsonl_rows(bounded_lines(fh, str(path))):
                yield row
        except BadLine as bad:
            raise HarnessError(f"{path}:{bad.lineno}: {bad.problem}") from None
