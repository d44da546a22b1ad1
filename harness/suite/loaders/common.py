"""What every benchmark loader shares: LoadedData, lazy Rows, the data source, option checks, fingerprints, reading through `datasets`, error location, the registry."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from harness.errors import HarnessError
from harness.suite.jsonl import BadLine, jsonl_rows, utf8_problem

# Bump when a loader changes the rows it produces from the same files: part of the fingerprint.
FORMAT_VERSION = 1


@dataclass(frozen=True)
class LoadedData:
    rows: Iterable[dict]  # evaluation rows, lazy and re-iterable
    fewshot: list[dict]  # few-shot pool rows, same field format (may be empty)
    fingerprint: str  # sha256 hex over the data files' bytes + loader + resolved options
    count: int | None  # number of rows, when known


Shape = Callable[[int, dict], dict]


class Rows:
    """A lazy, re-iterable view over one or more `datasets.Dataset` parts.

    Each part is read row by row from its memory-mapped Arrow table and passed through its
    `shape(index_in_part, row)` function, which adds the loader's extra fields (subject, id).
    """

    def __init__(self, parts: Sequence[tuple[Any, Shape]]):
        self._parts = list(parts)

    def __iter__(self) -> Iterator[dict]:
        for dataset, shape in self._parts:
            for index, row in enumerate(dataset):
                yield shape(index, row)

    def __len__(self) -> int:
        return sum(len(dataset) for dataset, _ in self._parts)

    def __repr__(self) -> str:
        return f"Rows({len(self)} rows in {len(self._parts)} part(s))"


def _as_is(index: int, row: dict) -> dict:
    return row


# -- where the data is -------------------------------------------------------------------

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_FILE_SUFFIXES = (".json", ".jsonl", ".gz", ".csv", ".txt", ".parquet", ".zip")


@dataclass(frozen=True)
class _Source:
    suite: str
    path: Path | None  # an existing local file or folder
    hub_id: str | None  # otherwise a hub dataset id

    @classmethod
    def of(cls, suite: str, data: str) -> "_Source":
        path = Path(data).expanduser()
        if path.exists():
            return cls(suite, path.resolve(), None)
        looks_like_path = data.startswith((".", "/", "~")) or "\\" in data or data.lower().endswith(_FILE_SUFFIXES)
        if looks_like_path or not _HUB_ID.match(data):
            raise HarnessError(
                f"suite '{suite}': data path {data} does not exist (relative paths are from {Path.cwd()})"
            )
        return cls(suite, None, data)

    def need(self, *candidates: str, what: str) -> Path:
        """The first of `candidates` inside the data folder; the data itself when it is a file."""
        assert self.path is not None
        if self.path.is_file():
            return self.path
        for name in candidates:
            if (self.path / name).is_file():
                return self.path / name
        raise HarnessError(f"suite '{self.suite}': {self.path} holds no {what} (looked for {', '.join(candidates)})")


def _cache_dir() -> str | None:
    return os.environ.get("HF_DATASETS_CACHE") or None


class _quiet_datasets:
    """While a loader runs: no `datasets` progress bars, and no log lines for errors this module
    reports itself as a HarnessError. The previous settings are restored afterwards."""

    def __enter__(self):
        from datasets import utils as ds_utils
        from datasets.utils import logging as ds_logging

        self._bars_were_off = ds_utils.are_progress_bars_disabled()
        self._verbosity = ds_logging.get_verbosity()
        ds_utils.disable_progress_bars()
        ds_logging.set_verbosity(ds_logging.CRITICAL)
        return self

    def __exit__(self, *exc):
        from datasets import utils as ds_utils
        from datasets.utils import logging as ds_logging

        ds_logging.set_verbosity(self._verbosity)
        if not self._bars_were_off:
            ds_utils.enable_progress_bars()
        return False


# -- options -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Opt:
    default: Any
    check: Callable[[str, str, Any], Any]  # (suite, key, value) -> normalised value


def _choice(*allowed: str) -> Callable[[str, str, Any], Any]:
    def check(suite: str, key: str, value: Any) -> str:
        if value not in allowed:
            raise HarnessError(f"suite '{suite}': option {key}={value!r} is not one of {', '.join(allowed)}")
        return value

    return check


def _names(suite: str, key: str, value: Any) -> list[str] | None:
    """A list of names (a single string is one name); sorted and de-duplicated so order never matters."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) and v for v in value):
        raise HarnessError(f"suite '{suite}': option {key} must be a non-empty list of names, got {value!r}")
    return sorted(set(value))


def _count(suite: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise HarnessError(f"suite '{suite}': option {key} must be a whole number >= 0, got {value!r}")
    return value


def _text_or_none(suite: str, key: str, value: Any) -> str | None:
    if value is not None and not (isinstance(value, str) and value):
        raise HarnessError(f"suite '{suite}': option {key} must be a string, got {value!r}")
    return value


def _resolve_options(suite: str, loader: str, spec: Mapping[str, _Opt], given: dict) -> dict:
    unknown = sorted(set(given) - set(spec))
    if unknown:
        known = ", ".join(sorted(spec)) or "none"
        raise HarnessError(
            f"suite '{suite}': unknown option(s) {', '.join(unknown)} for loader {loader} (known: {known})"
        )
    return {key: opt.check(suite, key, given.get(key, opt.default)) for key, opt in spec.items()}


# -- fingerprint -------------------------------------------------------------------------


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_LOCATION_OPTIONS = {"cot_prompts"}


def _fingerprint(
    loader: str, opts: Mapping[str, Any], files: Iterable[tuple[str, Path]] = (), hub: Sequence[str] = ()
) -> str:
    """sha256 over loader, format version, resolved options and each file's role + content digest."""
    h = hashlib.sha256()
    # Where a folder option points is not content: the files it names are hashed below.
    options = {k: v for k, v in opts.items() if k not in _LOCATION_OPTIONS}
    h.update(
        json.dumps(
            {"loader": loader, "format": FORMAT_VERSION, "options": options}, sort_keys=True, default=str
        ).encode()
    )
    for role, path in sorted(files, key=lambda f: f[0]):
        h.update(f"\0{role}\0{_file_digest(path)}".encode())
    for part in hub:
        h.update(f"\0hub\0{part}".encode())
    return h.hexdigest()


# -- row checks (used to name the file and row when something is wrong) ---------------------


_TYPE_NAMES = {str: "a string", int: "an integer", list: "a list of strings"}


def _field_problem(row: Mapping[str, Any], fields: Mapping[str, type], optional: Iterable[str] = ()) -> str | None:
    for name, kind in fields.items():
        value = row.get(name)
        if value is None:
            if name in optional:
                continue
            return f"field '{name}' is missing"
        ok = isinstance(value, kind) and not isinstance(value, bool)
        if kind is list:
            ok = ok and all(isinstance(v, str) for v in value)
        if kind is str and isinstance(value, (int, float)) and not isinstance(value, bool):
            ok = True  # numbers in text fields are read as their text
        if not ok:
            return f"field '{name}' should be {_TYPE_NAMES[kind]}, got {type(value).__name__} {str(value)[:40]!r}"
    return None


def _jsonl_problem(path: Path, fields: Mapping[str, type], optional: Iterable[str] = ()) -> str | None:
    """The first bad line of a JSON Lines file (optionally gzip'd), as "<file>, line N: ...", or None."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            for lineno, row in jsonl_rows(fh):
                problem = _field_problem(row, fields, optional)
                if problem:
                    return f"{path}, line {lineno}: {problem}"
    except BadLine as bad:
        return f"{path}, line {bad.lineno}: {bad.problem}"
    except (OSError, EOFError) as exc:
        return f"{path}: cannot be read ({exc})"
    return None


def _csv_problem(path: Path, columns: Sequence[str], int_columns: Sequence[str] = ()) -> str | None:
    """The first bad record of a CSV file with a header row, as "<file>, row N: ...", or None."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if not header:
                return f"{path}: empty file, expected a header row {','.join(columns)}"
            missing = [c for c in columns if c not in header]
            if missing:
                return f"{path}: the header row lacks column(s) {', '.join(missing)} (has: {','.join(header)})"
            number = 0
            for record in reader:
                if not record:
                    continue
                number += 1
                if len(record) != len(header):
                    return f"{path}, row {number} (line {reader.line_num}): {len(record)} fields, the header has {len(header)}"
                for name in int_columns:
                    value = record[header.index(name)]
                    try:
                        int(value)
                    except ValueError:
                        return f"{path}, row {number} (line {reader.line_num}): {name} {value!r} is not an integer"
    except UnicodeDecodeError:
        return utf8_problem(path)
    except csv.Error as exc:
        return f"{path}: not valid CSV ({exc})"
    except OSError as exc:
        return f"{path}: cannot be read ({exc})"
    return None


def _first_null(dataset: Any, columns: Iterable[str]) -> tuple[str, int] | None:
    """(column, row index) of the first null among `columns`, read from the Arrow table."""
    import pyarrow.compute as pc

    for name in columns:
        column = dataset.data.column(name)
        if column.null_count:
            return name, pc.index(pc.is_null(column), True).as_py()
    return None


# -- reading files through `datasets` ----------------------------------------------------


def _read(
    builder: str,
    files: Mapping[str, Path],
    features: Any,
    diagnose: Callable[[Path], str | None],
    suite: str,
    **config: Any,
) -> dict[str, Any]:
    """`datasets.load_dataset(builder, data_files=files)`: one Dataset per key of `files`.

    Keys become split names, so one call (one cache entry) reads every file of a benchmark.
    When `datasets` fails, `diagnose` re-reads the file with the standard library to name the
    file and row; the underlying error is kept in the message when it cannot.
    """
    import datasets

    try:
        loaded = datasets.load_dataset(
            builder,
            data_files={key: str(path) for key, path in files.items()},
            features=features,
            cache_dir=_cache_dir(),
            **config,
        )
    except Exception as exc:  # datasets wraps parser errors in several types; each is a data problem here
        for path in files.values():
            problem = diagnose(path)
            if problem:
                raise HarnessError(f"suite '{suite}': {problem}") from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = (
            ", ".join(str(p) for p in files.values())
            if len(files) <= 3
            else f"{len(files)} files in {next(iter(files.values())).parent}"
        )
        raise HarnessError(f"suite '{suite}': cannot read {where}: {first}") from None
    return {key: loaded[key] for key in files}


def _check_complete(
    parts: Mapping[str, Any],
    files: Mapping[str, Path],
    required: Iterable[str],
    diagnose: Callable[[Path], str | None],
    suite: str,
    unit: str,
) -> None:
    """A required field left empty (null) by `datasets` is a missing field in the file: name the row."""
    required = list(required)
    for key, dataset in parts.items():
        found = _first_null(dataset, required)
        if found:
            problem = diagnose(files[key])
            column, index = found
            raise HarnessError(
                f"suite '{suite}': {problem or f'{files[key]}, {unit} {index + 1}: field {column!r} is missing'}"
            )


def _json_features(fields: Mapping[str, type]):
    from datasets import Features, List, Value

    kinds = {str: Value("string"), int: Value("int64"), list: List(Value("string"))}
    return Features({name: kinds[kind] for name, kind in fields.items()})


# -- JSON Lines files (HumanEval, MBPP, GSM8K) ---------------------------------------------


def _read_jsonl(
    source: _Source, files: Mapping[str, Path], fields: Mapping[str, type], optional: Iterable[str] = ()
) -> dict[str, Any]:
    optional = tuple(optional)

    def diagnose(path: Path) -> str | None:
        return _jsonl_problem(path, fields, optional)

    for path in files.values():
        problem = utf8_problem(path)
        if problem:
            raise HarnessError(f"suite '{source.suite}': {problem}")
    parts = _read("json", files, _json_features(fields), diagnose, source.suite)
    _check_complete(parts, files, [f for f in fields if f not in optional], diagnose, source.suite, "row")
    for key, dataset in parts.items():
        if len(dataset) == 0:
            raise HarnessError(f"suite '{source.suite}': {files[key]} holds no rows")
    return parts


# -- registry ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Loader:
    fn: Callable[[_Source, dict], LoadedData]
    options: Mapping[str, _Opt]


LOADERS: dict[str, _Loader] = {}


def register(
    name: str, options: Mapping[str, _Opt] | None = None
) -> Callable[[Callable[[_Source, dict], LoadedData]], Callable[[_Source, dict], LoadedData]]:
    """Decorator: add the loader function under `name` to LOADERS, with its options (name -> _Opt)."""

    def add(fn: Callable[[_Source, dict], LoadedData]) -> Callable[[_Source, dict], LoadedData]:
        if name in LOADERS:
            raise ValueError(f"loader {name!r} is registered twice")
        LOADERS[name] = _Loader(fn, dict(options or {}))
        return fn

    return add
