"""Read real public benchmarks from their original file formats, through Hugging Face `datasets`.

A benchmark suite names a loader (`loader: gsm8k` in its suite.yaml) and the user supplies the
data: a local file or folder as the benchmark ships it, or a hub dataset id when the string is
not an existing path. Each loader turns that into `LoadedData`:

- `rows`: the evaluation rows as plain dicts, in a stable order, read lazily from the
  memory-mapped Arrow tables `datasets` builds (re-iterable; nothing is copied into lists);
- `fewshot`: the benchmark's own few-shot pool in the same field format (may be empty);
- `fingerprint`: sha256 over the bytes of every file read plus the loader and its resolved
  options, so the suite hash changes when the data or the selection changes, and not when
  the same files move to another folder or `datasets` rebuilds its cache;
- `count`: the number of rows.

Loaders, one function each (`LOADERS` maps the name to it):

humaneval  HumanEval.jsonl.gz (or .jsonl, or a folder holding it). Rows unchanged:
           task_id, prompt, entry_point, canonical_solution, test.
mbpp       mbpp.jsonl (974 tasks). Option `split`: test (task_id 11-510, the default),
           validation (511-600), train (601-974), prompt (1-10) or all. Few-shot pool: tasks
           2, 3, 4 (the MBPP paper's prompt tasks), never also among the rows. Rows unchanged.
gsm8k      test.jsonl, or a folder with test.jsonl and train.jsonl. Option `split`: test|train
           (picks the file in a folder). Few-shot pool: the first `fewshot_pool` (8) rows of
           train.jsonl; when train.jsonl is also the evaluated file, those rows are left out
           of the rows. Fields question, answer.
ceval      a folder with dev/ and val/ (<subject>_<split>.csv) and, optionally,
           subject_mapping.json. Options `split` (val|dev), `subjects`, `categories`.
           Rows: id, question, A, B, C, D, answer, explanation ("" in val) + subject,
           subject_zh, category. Few-shot pool: the dev rows of the selected subjects
           (empty when dev itself is evaluated).
bbh        a folder of <task>.json files, the repo root holding bbh/ and cot-prompts/, or one
           task file. Option `tasks`. Rows: task, id "<task>/<index>", input, target. Few-shot
           pool: the 3 chain-of-thought exemplars of each task's cot-prompts/<task>.txt,
           as {task, input, rationale, target}; option `cot_prompts` points at that folder
           when it is not next to the task files.

Hub datasets (`openai/openai_humaneval`, `google-research-datasets/mbpp`, `openai/gsm8k`,
`ceval/ceval-exam`, `lukaemon/bbh`, or anything with the same fields) load through
`datasets.load_dataset`; option `config` picks the hub config for mbpp (default "full") and
gsm8k (default "main"). With no network this fails with a HarnessError saying so; local files
never touch the network and work with HF_DATASETS_OFFLINE=1.

`datasets` caches its Arrow copy under $HF_DATASETS_CACHE (read at each call, default
~/.cache/huggingface/datasets); a second load of unchanged files reuses it. Progress bars are
switched off while a loader runs.
"""

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


# -- public entry points -----------------------------------------------------------------


def available_loaders() -> list[str]:
    return sorted(LOADERS)


def load(loader: str, data: str | None, options: Mapping[str, Any] | None = None, *, suite: str | None = None) -> LoadedData:
    """Load benchmark `data` (a local path, or a hub id when not an existing path) with `loader`.

    `suite` only names the suite in error messages (default: the loader's name).
    """
    if loader not in LOADERS:
        raise HarnessError(f"unknown loader '{loader}' (known: {', '.join(available_loaders())}); set loader: in suite.yaml")
    name = suite or loader
    if data is None or not str(data).strip():
        raise HarnessError(
            f"suite '{name}' needs data: give a path to the benchmark files or a hub id in the plan "
            f"(suites: [{{{name}: {{data: PATH}}}}]) or with --data"
        )
    if options is not None and not isinstance(options, Mapping):
        raise HarnessError(f"suite '{name}': options must be a mapping, got {options!r}")
    spec = LOADERS[loader]
    opts = _resolve_options(name, loader, spec.options, dict(options or {}))
    source = _Source.of(name, str(data))
    with _quiet_datasets():
        return spec.fn(source, opts)


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
            raise HarnessError(f"suite '{suite}': data path {data} does not exist (relative paths are from {Path.cwd()})")
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
        raise HarnessError(f"suite '{suite}': unknown option(s) {', '.join(unknown)} for loader {loader} (known: {known})")
    return {key: opt.check(suite, key, given.get(key, opt.default)) for key, opt in spec.items()}


# -- fingerprint -------------------------------------------------------------------------


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_LOCATION_OPTIONS = {"cot_prompts"}


def _fingerprint(loader: str, opts: Mapping[str, Any], files: Iterable[tuple[str, Path]] = (), hub: Sequence[str] = ()) -> str:
    """sha256 over loader, format version, resolved options and each file's role + content digest."""
    h = hashlib.sha256()
    # Where a folder option points is not content: the files it names are hashed below.
    options = {k: v for k, v in opts.items() if k not in _LOCATION_OPTIONS}
    h.update(json.dumps({"loader": loader, "format": FORMAT_VERSION, "options": options}, sort_keys=True, default=str).encode())
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
        with opener(path, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    return f"{path}, line {lineno}: not valid JSON ({exc.msg}); each line must be one JSON object"
                if not isinstance(row, dict):
                    return f"{path}, line {lineno}: expected a JSON object, got {type(row).__name__}"
                problem = _field_problem(row, fields, optional)
                if problem:
                    return f"{path}, line {lineno}: {problem}"
    except UnicodeDecodeError as exc:
        return f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"
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
    except UnicodeDecodeError as exc:
        return f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"
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
        where = ", ".join(str(p) for p in files.values()) if len(files) <= 3 else f"{len(files)} files in {next(iter(files.values())).parent}"
        raise HarnessError(f"suite '{suite}': cannot read {where}: {first}") from None
    return {key: loaded[key] for key in files}


def _check_complete(parts: Mapping[str, Any], files: Mapping[str, Path], required: Iterable[str], diagnose: Callable[[Path], str | None], suite: str, unit: str) -> None:
    """A required field left empty (null) by `datasets` is a missing field in the file: name the row."""
    required = list(required)
    for key, dataset in parts.items():
        found = _first_null(dataset, required)
        if found:
            problem = diagnose(files[key])
            column, index = found
            raise HarnessError(f"suite '{suite}': {problem or f'{files[key]}, {unit} {index + 1}: field {column!r} is missing'}")


def _json_features(fields: Mapping[str, type]):
    from datasets import Features, List, Value

    kinds = {str: Value("string"), int: Value("int64"), list: List(Value("string"))}
    return Features({name: kinds[kind] for name, kind in fields.items()})


# -- the hub -------------------------------------------------------------------------------


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


# -- JSON Lines benchmarks (HumanEval, MBPP, GSM8K) ----------------------------------------


def _read_jsonl(source: _Source, files: Mapping[str, Path], fields: Mapping[str, type], optional: Iterable[str] = ()) -> dict[str, Any]:
    optional = tuple(optional)

    def diagnose(path: Path) -> str | None:
        return _jsonl_problem(path, fields, optional)

    parts = _read("json", files, _json_features(fields), diagnose, source.suite)
    _check_complete(parts, files, [f for f in fields if f not in optional], diagnose, source.suite, "row")
    for key, dataset in parts.items():
        if len(dataset) == 0:
            raise HarnessError(f"suite '{source.suite}': {files[key]} holds no rows")
    return parts


HUMANEVAL_FIELDS = {"task_id": str, "prompt": str, "entry_point": str, "canonical_solution": str, "test": str}


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


MBPP_FIELDS = {"task_id": int, "text": str, "code": str, "test_list": list, "test_setup_code": str, "challenge_test_list": list}
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


GSM8K_FIELDS = {"question": str, "answer": str}


def load_gsm8k(source: _Source, opts: dict) -> LoadedData:
    split, pool = opts["split"], opts["fewshot_pool"]
    if source.hub_id:
        config = opts["config"] or "main"
        loaded = _hub(source, config)
        if split not in loaded:
            raise HarnessError(f"suite '{source.suite}': hub dataset '{source.hub_id}' has no split '{split}' (has: {', '.join(loaded)})")
        evaluated = loaded[split]
        train = loaded["train"] if "train" in loaded else None
        for part in (evaluated, train):
            if part is not None:
                _hub_columns(source, part, GSM8K_FIELDS, f"config {config}")
        same = split == "train"
        fingerprint = _fingerprint("gsm8k", opts, hub=[source.hub_id, config, *_hub_parts(evaluated), *(_hub_parts(train) if train is not None else [])])
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


# -- C-Eval (CSV per subject) --------------------------------------------------------------

CEVAL_CATEGORIES = ("STEM", "Social Science", "Humanities", "Other")
CEVAL_COLUMNS = ("id", "question", "A", "B", "C", "D", "answer")


def _ceval_features(with_explanation: bool):
    from datasets import Features, Value

    columns = {"id": Value("int64"), **{c: Value("string") for c in CEVAL_COLUMNS[1:]}}
    if with_explanation:
        columns["explanation"] = Value("string")
    return Features(columns)


def _ceval_files(source: _Source, split: str) -> dict[str, Path]:
    folder = source.path / split
    suffix = f"_{split}.csv"
    files = {p.name[: -len(suffix)]: p for p in sorted(folder.glob(f"*{suffix}"))} if folder.is_dir() else {}
    if not files:
        raise HarnessError(f"suite '{source.suite}': no C-Eval {split} files: expected {folder}/<subject>{suffix} (the folder holding dev/ and val/)")
    return files


def _ceval_mapping(source: _Source) -> tuple[dict[str, tuple[str, str]], Path | None]:
    """subject -> (Chinese name, category) from subject_mapping.json ({subject: [en, zh, category]})."""
    path = source.path / "subject_mapping.json"
    if not path.is_file():
        return {}, None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        mapping = {subject: (str(v[1]), str(v[2])) for subject, v in raw.items()}
    except (ValueError, TypeError, IndexError, AttributeError, KeyError) as exc:
        raise HarnessError(f"suite '{source.suite}': {path}: expected {{subject: [English name, Chinese name, category]}} ({exc})") from None
    return mapping, path


def _ceval_select(source: _Source, available: Iterable[str], mapping: Mapping[str, tuple[str, str]], opts: dict) -> list[str]:
    available = sorted(available)
    subjects = opts["subjects"] or available
    unknown = [s for s in subjects if s not in available]
    if unknown:
        raise HarnessError(f"suite '{source.suite}': unknown C-Eval subject(s) {', '.join(unknown)} (available: {', '.join(available)})")
    if opts["categories"]:
        bad = [c for c in opts["categories"] if c not in CEVAL_CATEGORIES]
        if bad:
            raise HarnessError(f"suite '{source.suite}': unknown C-Eval categor(y/ies) {', '.join(bad)} (use: {', '.join(CEVAL_CATEGORIES)})")
        subjects = [s for s in subjects if mapping.get(s, (s, "Other"))[1] in opts["categories"]]
        if not subjects:
            raise HarnessError(f"suite '{source.suite}': no C-Eval subject is in categories {', '.join(opts['categories'])}")
    return subjects


def _ceval_shape(subject: str, mapping: Mapping[str, tuple[str, str]]) -> Shape:
    subject_zh, category = mapping.get(subject, (subject, "Other"))
    extra = {"subject": subject, "subject_zh": subject_zh, "category": category}

    def shape(index: int, row: dict) -> dict:
        row.setdefault("explanation", "")
        if row["explanation"] is None:
            row["explanation"] = ""
        row.update(extra)
        return row

    return shape


def _ceval_check_answers(source: _Source, parts: Mapping[str, Any], files: Mapping[str, Path]) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    letters = pa.array(list("ABCD"))
    for key, dataset in parts.items():
        column = dataset.data.column("answer")
        bad = pc.invert(pc.fill_null(pc.is_in(column, value_set=letters), False))
        if pc.any(bad).as_py():
            index = pc.index(bad, True).as_py()
            raise HarnessError(f"suite '{source.suite}': {files[key]}, row {index + 1}: answer {column[index].as_py()!r} is not one of A, B, C, D")


def _read_ceval(source: _Source, files: Mapping[str, Path], with_explanation: bool) -> dict[str, Any]:
    columns = list(CEVAL_COLUMNS) + (["explanation"] if with_explanation else [])

    def diagnose(path: Path) -> str | None:
        return _csv_problem(path, columns, int_columns=["id"])

    # na_filter=False: pandas would otherwise turn cells such as "NA", "None" or "" into nulls;
    # the explicit string features keep numeric options ("0.5", "1") and answers as text.
    parts = _read("csv", files, _ceval_features(with_explanation), diagnose, source.suite, na_filter=False)
    _check_complete(parts, files, columns, diagnose, source.suite, "row")
    _ceval_check_answers(source, parts, files)
    return parts


def load_ceval(source: _Source, opts: dict) -> LoadedData:
    """C-Eval from its per-subject CSVs.

    The CSVs are read with `datasets`' csv builder (pandas underneath) with explicit features:
    id int64, every other column string, and na_filter off. Without them pandas infers
    types per column: 383 options of the val/dev files are numbers ("0.5", "1"), which would
    come back as floats/ints, and cells like "NA" would become nulls. The CRLF line endings
    and the CRLFs inside quoted cells come through byte for byte (checked against the
    csv module). One `load_dataset` call per split reads all subjects, each file as its own
    split named after the subject, so rows carry their subject without a per-file pass.
    """
    split = opts["split"]
    if source.hub_id:
        return _load_ceval_hub(source, opts)
    mapping, mapping_path = _ceval_mapping(source)
    eval_files = _ceval_files(source, split)
    subjects = _ceval_select(source, eval_files, mapping, opts)
    files = {s: eval_files[s] for s in subjects}
    parts = _read_ceval(source, files, with_explanation=split == "dev")
    fingerprint_files = [(f"{split}/{s}", p) for s, p in files.items()]
    fewshot: list[dict] = []
    if split != "dev" and (source.path / "dev").is_dir():
        dev_files = _ceval_files(source, "dev")
        dev_files = {s: dev_files[s] for s in subjects if s in dev_files}
        if dev_files:
            dev = _read_ceval(source, dev_files, with_explanation=True)
            for subject, dataset in dev.items():
                shape = _ceval_shape(subject, mapping)
                fewshot.extend(shape(i, row) for i, row in enumerate(dataset))
            fingerprint_files += [(f"dev/{s}", p) for s, p in dev_files.items()]
    if mapping_path:
        fingerprint_files.append(("subject_mapping.json", mapping_path))
    rows = Rows([(parts[s], _ceval_shape(s, mapping)) for s in subjects])
    return LoadedData(rows=rows, fewshot=fewshot, fingerprint=_fingerprint("ceval", opts, fingerprint_files), count=len(rows))


def _load_ceval_hub(source: _Source, opts: dict) -> LoadedData:
    """`ceval/ceval-exam`: one hub config per subject with dev/val/test splits; no category mapping
    on the hub, so subject_zh is the subject and every category "Other" unless a local
    subject_mapping.json is given instead."""
    split = opts["split"]
    available = opts["subjects"] or [c for c in _hub_configs(source) if c != "default"]
    subjects = _ceval_select(source, available, {}, opts)
    parts, fewshot, hub_parts = [], [], [source.hub_id]
    for subject in subjects:
        loaded = _hub(source, subject)
        if split not in loaded:
            raise HarnessError(f"suite '{source.suite}': hub dataset '{source.hub_id}' config {subject} has no split '{split}'")
        _hub_columns(source, loaded[split], CEVAL_COLUMNS, f"config {subject}")
        shape = _ceval_shape(subject, {})
        parts.append((loaded[split], shape))
        hub_parts += _hub_parts(loaded[split])
        if split != "dev" and "dev" in loaded:
            fewshot.extend(shape(i, row) for i, row in enumerate(loaded["dev"]))
            hub_parts += _hub_parts(loaded["dev"])
    rows = Rows(parts)
    return LoadedData(rows=rows, fewshot=fewshot, fingerprint=_fingerprint("ceval", opts, hub=hub_parts), count=len(rows))


# -- BIG-Bench Hard (JSON per task + chain-of-thought prompts) ------------------------------

BBH_FIELDS = {"input": str, "target": str}


def _bbh_problem(path: Path) -> str | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        return f"{path}, line {exc.lineno}: not valid JSON ({exc.msg})"
    except UnicodeDecodeError as exc:
        return f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"
    except OSError as exc:
        return f"{path}: cannot be read ({exc})"
    examples = doc.get("examples") if isinstance(doc, dict) else None
    if not isinstance(examples, list):
        return f'{path}: expected a JSON object {{"examples": [{{"input": ..., "target": ...}}, ...]}}'
    if not examples:
        return f"{path}: 'examples' is empty"
    for index, example in enumerate(examples):
        if not isinstance(example, dict):
            return f"{path}, examples[{index}]: expected an object with input and target"
        problem = _field_problem(example, BBH_FIELDS)
        if problem:
            return f"{path}, examples[{index}]: {problem}"
    return None


def _bbh_folders(source: _Source, cot_option: str | None) -> tuple[dict[str, Path], Path | None]:
    """Task files and the cot-prompts folder (None when there is none)."""
    path = source.path
    if path.is_file():
        tasks, near = {path.stem: path}, path.parent
    else:
        folder = path / "bbh" if (path / "bbh").is_dir() else path
        tasks = {p.stem: p for p in sorted(folder.glob("*.json"))}
        near = folder
        if not tasks:
            raise HarnessError(f"suite '{source.suite}': {path} holds no BBH task files (<task>.json, or bbh/<task>.json)")
    if cot_option:
        cot = Path(cot_option).expanduser()
        if not cot.is_dir():
            raise HarnessError(f"suite '{source.suite}': option cot_prompts: folder {cot} does not exist")
        return tasks, cot.resolve()
    for candidate in (near / "cot-prompts", near.parent / "cot-prompts"):
        if candidate.is_dir():
            return tasks, candidate
    return tasks, None


_COT_MARK = "A: Let's think step by step."
_ANSWER_MARK = "So the answer is "


def parse_cot_prompt(text: str, task: str, where: str) -> list[dict]:
    """The Q/A exemplars of a BBH cot-prompts/<task>.txt as {task, input, rationale, target}.

    Layout: canary line, a `-----` line, the task description, then blocks
    "Q: <input>\\nA: Let's think step by step.\\n<reasoning> So the answer is <target>."
    separated by blank lines. The rationale is the reasoning without the lead-in and without
    the final sentence; the target loses the closing period.
    """
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and "canary" in lines[0].lower():
        lines = lines[1:]
    if lines and set(lines[0].strip()) == {"-"}:
        lines = lines[1:]
    body = "\n".join(lines)
    starts = [m.start() for m in re.finditer(r"(?m)^Q: ", body)]
    if not starts:
        raise HarnessError(f"{where}: no 'Q: ' exemplar found; expected BBH chain-of-thought prompt blocks")
    shots = []
    for number, start in enumerate(starts, 1):
        end = starts[number] if number < len(starts) else len(body)
        block = body[start:end].strip()
        cut = block.rfind("\n" + _COT_MARK)
        answer_at = block.rfind(_ANSWER_MARK)
        if cut < 0 or answer_at < cut:
            raise HarnessError(f"{where}, exemplar {number}: expected 'Q: ...', then '{_COT_MARK}' and a final '{_ANSWER_MARK}X.'")
        question = block[len("Q: "):cut].strip()
        reasoning = block[cut + 1 + len(_COT_MARK):answer_at].strip()
        target = block[answer_at + len(_ANSWER_MARK):].strip()
        if target.endswith("."):
            target = target[:-1].rstrip()
        shots.append({"task": task, "input": question, "rationale": reasoning, "target": target})
    return shots


def _bbh_shape(task: str) -> Shape:
    def shape(index: int, row: dict) -> dict:
        return {"task": task, "id": f"{task}/{index}", "input": row["input"], "target": row["target"]}

    return shape


def load_bbh(source: _Source, opts: dict) -> LoadedData:
    if source.hub_id:
        return _load_bbh_hub(source, opts)
    all_tasks, cot_dir = _bbh_folders(source, opts["cot_prompts"])
    tasks = _bbh_pick(source, all_tasks, opts)
    files = {t: all_tasks[t] for t in tasks}
    parts = _read("json", files, _json_features(BBH_FIELDS), _bbh_problem, source.suite, field="examples")
    _check_complete(parts, files, BBH_FIELDS, _bbh_problem, source.suite, "example")
    fingerprint_files = [(f"bbh/{t}", p) for t, p in files.items()]
    fewshot, cot_files = _bbh_fewshot(source, tasks, cot_dir)
    fingerprint_files += cot_files
    rows = Rows([(parts[t], _bbh_shape(t)) for t in tasks])
    return LoadedData(rows=rows, fewshot=fewshot, fingerprint=_fingerprint("bbh", opts, fingerprint_files), count=len(rows))


def _bbh_pick(source: _Source, available: Iterable[str], opts: dict) -> list[str]:
    available = sorted(available)
    tasks = opts["tasks"] or available
    unknown = [t for t in tasks if t not in available]
    if unknown:
        raise HarnessError(f"suite '{source.suite}': unknown BBH task(s) {', '.join(unknown)} (available: {', '.join(available)})")
    return tasks


def _bbh_fewshot(source: _Source, tasks: Iterable[str], cot_dir: Path | None) -> tuple[list[dict], list[tuple[str, Path]]]:
    fewshot: list[dict] = []
    files: list[tuple[str, Path]] = []
    if cot_dir is None:
        return fewshot, files
    for task in tasks:
        path = cot_dir / f"{task}.txt"
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise HarnessError(f"suite '{source.suite}': {path}: cannot be read ({exc})") from None
        fewshot.extend(parse_cot_prompt(text, task, str(path)))
        files.append((f"cot-prompts/{task}", path))
    return fewshot, files


def _load_bbh_hub(source: _Source, opts: dict) -> LoadedData:
    """`lukaemon/bbh`-style: one hub config per task, split "test", fields input/target.
    The hub copies carry no chain-of-thought prompts: give option cot_prompts for few-shot."""
    available = opts["tasks"] or [c for c in _hub_configs(source) if c != "default"]
    tasks = _bbh_pick(source, available, opts)
    parts, hub_parts = [], [source.hub_id]
    for task in tasks:
        dataset = _hub(source, task, split="test")
        _hub_columns(source, dataset, BBH_FIELDS, f"config {task}")
        parts.append((dataset, _bbh_shape(task)))
        hub_parts += _hub_parts(dataset)
    cot_dir = Path(opts["cot_prompts"]).expanduser() if opts["cot_prompts"] else None
    if cot_dir is not None and not cot_dir.is_dir():
        raise HarnessError(f"suite '{source.suite}': option cot_prompts: folder {cot_dir} does not exist")
    fewshot, cot_files = _bbh_fewshot(source, tasks, cot_dir)
    rows = Rows(parts)
    return LoadedData(rows=rows, fewshot=fewshot, fingerprint=_fingerprint("bbh", opts, cot_files, hub=hub_parts), count=len(rows))


# -- registry ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Loader:
    fn: Callable[[_Source, dict], LoadedData]
    options: Mapping[str, _Opt]


LOADERS: dict[str, _Loader] = {
    "humaneval": _Loader(load_humaneval, {}),
    "mbpp": _Loader(load_mbpp, {
        "split": _Opt("test", _choice(*MBPP_SPLITS)),
        "config": _Opt(None, _text_or_none),
    }),
    "gsm8k": _Loader(load_gsm8k, {
        "split": _Opt("test", _choice("test", "train")),
        "fewshot_pool": _Opt(8, _count),
        "config": _Opt(None, _text_or_none),
    }),
    "ceval": _Loader(load_ceval, {
        "split": _Opt("val", _choice("val", "dev")),
        "subjects": _Opt(None, _names),
        "categories": _Opt(None, _names),
    }),
    "bbh": _Loader(load_bbh, {
        "tasks": _Opt(None, _names),
        "cot_prompts": _Opt(None, _text_or_none),
    }),
}
