"""The C-Eval loader: per-subject CSVs of val/ or dev/, with subject names and categories, dev rows as the few-shot pool."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from harness.errors import HarnessError
from harness.suite.loaders.common import (
    LoadedData,
    Rows,
    Shape,
    _check_complete,
    _choice,
    _csv_problem,
    _fingerprint,
    _names,
    _Opt,
    _read,
    _Source,
    register,
)
from harness.suite.loaders.hub import _hub, _hub_columns, _hub_configs, _hub_parts

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
        raise HarnessError(
            f"suite '{source.suite}': no C-Eval {split} files: expected {folder}/<subject>{suffix} (the folder holding dev/ and val/)"
        )
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
        raise HarnessError(
            f"suite '{source.suite}': {path}: expected {{subject: [English name, Chinese name, category]}} ({exc})"
        ) from None
    return mapping, path


def _ceval_select(
    source: _Source, available: Iterable[str], mapping: Mapping[str, tuple[str, str]], opts: dict
) -> list[str]:
    available = sorted(available)
    subjects = opts["subjects"] or available
    unknown = [s for s in subjects if s not in available]
    if unknown:
        raise HarnessError(
            f"suite '{source.suite}': unknown C-Eval subject(s) {', '.join(unknown)} (available: {', '.join(available)})"
        )
    if opts["categories"]:
        bad = [c for c in opts["categories"] if c not in CEVAL_CATEGORIES]
        if bad:
            raise HarnessError(
                f"suite '{source.suite}': unknown C-Eval categor(y/ies) {', '.join(bad)} (use: {', '.join(CEVAL_CATEGORIES)})"
            )
        subjects = [s for s in subjects if mapping.get(s, (s, "Other"))[1] in opts["categories"]]
        if not subjects:
            raise HarnessError(
                f"suite '{source.suite}': no C-Eval subject is in categories {', '.join(opts['categories'])}"
            )
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
            raise HarnessError(
                f"suite '{source.suite}': {files[key]}, row {index + 1}: answer {column[index].as_py()!r} is not one of A, B, C, D"
            )


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


@register(
    "ceval",
    {
        "split": _Opt("val", _choice("val", "dev")),
        "subjects": _Opt(None, _names),
        "categories": _Opt(None, _names),
    },
)
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
    return LoadedData(
        rows=rows, fewshot=fewshot, fingerprint=_fingerprint("ceval", opts, fingerprint_files), count=len(rows)
    )


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
            raise HarnessError(
                f"suite '{source.suite}': hub dataset '{source.hub_id}' config {subject} has no split '{split}'"
            )
        _hub_columns(source, loaded[split], CEVAL_COLUMNS, f"config {subject}")
        shape = _ceval_shape(subject, {})
        parts.append((loaded[split], shape))
        hub_parts += _hub_parts(loaded[split])
        if split != "dev" and "dev" in loaded:
            fewshot.extend(shape(i, row) for i, row in enumerate(loaded["dev"]))
            hub_parts += _hub_parts(loaded["dev"])
    rows = Rows(parts)
    return LoadedData(
        rows=rows, fewshot=fewshot, fingerprint=_fingerprint("ceval", opts, hub=hub_parts), count=len(rows)
    )
