"""Reading files someone else wrote (plans, suite folders, items): regular files only, inside their folder, bounded.

A suite or plan from a stranger must not hang the harness (a FIFO), exhaust memory (`/dev/zero`,
a YAML alias bomb, a 10 GB line), crash it (nesting deep enough for a RecursionError) or read
files it was not given (a template symlinked to ~/.ssh/id_rsa). Each of these is one line and
exit 2, found before the expensive part starts.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import yaml

from harness.errors import HarnessError

MAX_CONFIG_BYTES = 4 * 1024 * 1024  # a plan, a suite.yaml, a template: text written by hand
MAX_LINE_BYTES = 64 * 1024 * 1024  # one JSONL item
MAX_YAML_NODES = 200_000  # values in a YAML document with its aliases expanded
MAX_YAML_DEPTH = 64  # nesting of mappings and sequences


def regular_file(path: str | Path, what: str) -> Path:
    """`path` if it is a regular file (after symlinks); a FIFO, device, socket or directory is refused
    without being opened (opening a FIFO blocks until someone writes to it)."""
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise HarnessError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise HarnessError(f"{what} {path}: cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file (a FIFO, device or socket)"
        raise HarnessError(f"{what} {path} is {kind}; give a regular file")
    return path


def inside(path: str | Path, folder: str | Path, what: str) -> Path:
    """`path` resolved (symlinks followed) if it lies inside `folder`; else a one-line error naming both."""
    resolved = Path(path).resolve()
    base = Path(folder).resolve()
    if resolved != base and not resolved.is_relative_to(base):
        raise HarnessError(
            f"{what} {path} resolves to {resolved}, outside {base}; a suite reads only files inside its folder "
            f"(copy the file in, or name the data folder in the plan)"
        )
    return resolved


def read_bytes(path: str | Path, what: str, limit: int = MAX_CONFIG_BYTES) -> bytes:
    """A regular file's bytes, refusing one larger than `limit` (read at most limit + 1 bytes)."""
    path = regular_file(path, what)
    with open(path, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise HarnessError(f"{what} {path} is larger than {limit // (1024 * 1024)} MB; is it the right file?")
    return data


def read_text(path: str | Path, what: str, limit: int = MAX_CONFIG_BYTES) -> str:
    data = read_bytes(path, what, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise HarnessError(f"{what} {path}: line {line} is not valid UTF-8; save it as UTF-8") from None


def bounded_lines(fh: BinaryIO, where: str, limit: int | None = None) -> Iterator[bytes]:
    """The lines of a binary file, each at most `limit` bytes (a file with no newline is not one huge line)."""
    limit = MAX_LINE_BYTES if limit is None else limit
    lineno = 0
    while True:
        line = fh.readline(limit + 1)
        if not line:
            return
        lineno += 1
        if len(line) > limit and not line.endswith(b"\n"):
            raise HarnessError(f"{where}:{lineno}: line longer than {limit // (1024 * 1024)} MB; is it the right file?")
        yield line


def file_digest(path: str | Path, what: str) -> bytes:
    """sha256 of a regular file, read in blocks (a large items file is hashed, not held in memory)."""
    path = regular_file(path, what)
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.digest()


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader; documents are measured before they are built (see `load_yaml`)."""


def _measure(root: yaml.Node, where: str) -> None:
    """Refuse a document whose aliases expand to too many values, or that nests too deeply.

    Aliases share one node, so a 600-byte "billion laughs" composes quickly but expands when
    anything walks it (hashing, validation, JSON). Sizes are counted per distinct node (memoised),
    so measuring costs the document's size, not its expansion.
    """
    sizes: dict[int, int] = {}
    depths: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    on_path: set[int] = set()
    while stack:
        node, done = stack.pop()
        key = id(node)
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        if done:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            depths[key] = 1 + max((depths[id(c)] for c in children), default=0)
            if sizes[key] > MAX_YAML_NODES:
                raise HarnessError(
                    f"{where}: YAML aliases expand to more than {MAX_YAML_NODES} values; write the values out "
                    f"instead of nesting aliases"
                )
            if depths[key] > MAX_YAML_DEPTH:
                raise HarnessError(f"{where}: YAML nested more than {MAX_YAML_DEPTH} levels deep")
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise HarnessError(f"{where}: a YAML alias refers to a value that contains it")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)


def load_yaml(text: str, where: str) -> Any:
    """Parse one YAML document safely: no Python objects, no alias bombs, no nesting deep enough to crash.

    yaml.YAMLError is left to the caller, which knows how to name the file's position.
    """
    loader = _Loader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise HarnessError(f"{where}: YAML nested too deeply") from None
        if node is None:
            return None
        _measure(node, where)
        return loader.construct_document(node)
    finally:
        loader.dispose()
