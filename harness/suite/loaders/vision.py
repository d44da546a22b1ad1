"""Loaders for image benchmarks from their published files: MMMU (parquet), ChartQA (JSON + PNGs), DocVQA (JSON + images).

mmmu     a parquet file or a folder of them (MMMU/MMMU on the hub: <Subject>/<split>-*.parquet). Rows
         keep id, question, answer, question_type, subfield, explanation; `options` (a Python-literal
         list in the files) becomes `options` (a list) and fields A, B, C, ... ; `images` lists the
         image_1..image_7 structs that are present (their bytes are embedded: nothing else is read);
         `subject` comes from the id ("validation_Art_Theory_3" -> "Art_Theory"). Options `split`
         (validation|dev|test: which parquet files, by name) and `question_type` (multiple-choice,
         open, all; default multiple-choice, the part the mcq grader can score).
chartqa  a split folder of ChartQA's release (test/ with test_human.json, test_augmented.json and
         png/), or one of its JSON files (png/ beside it). Rows: id "<part>/<index>", question (the
         file's `query`), answer (`label`), part, images ["png/<imgname>"]. Option `parts`
         (human, augmented).
docvqa   DocVQA task 1's JSON (val_v1.0.json, ...; {"data": [...]}) or a folder holding one. Rows:
         id (questionId), question, answers (all gold answers, for ANLS), question_types, doc_id,
         images [the `image` path, relative to the JSON's folder]. Option `split` picks the file
         in a folder (val, test, train).

Images named by path are fingerprinted by name and size (reading every page of DocVQA on each
load would cost more than the run); embedded bytes are covered by the parquet files' digest.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any, Callable, Iterator

from harness.errors import HarnessError
from harness.suite.loaders.common import LoadedData, _choice, _fingerprint, _names, _Opt, _Source, register


class ListRows:
    """Rows built by a function on each iteration (re-iterable; the loader's files are read again)."""

    def __init__(self, make: Callable[[], Iterator[dict]], count: int):
        self._make, self._count = make, count

    def __iter__(self) -> Iterator[dict]:
        return self._make()

    def __len__(self) -> int:
        return self._count


def _local(source: _Source, loader: str) -> Path:
    if source.path is None:
        raise HarnessError(
            f"suite '{source.suite}': the {loader} loader reads local files only; download the benchmark and "
            f"point data: at its folder (got '{source.hub_id}')"
        )
    return source.path


def _bad(source: _Source, where: Path, what: str) -> HarnessError:
    return HarnessError(f"suite '{source.suite}': {where}: {what}")


# -- MMMU ----------------------------------------------------------------------------------

MMMU_COLUMNS = ("id", "question", "options", "answer")
_LETTERS = "ABCDEFGHIJ"


def _mmmu_files(source: _Source, root: Path, split: str) -> list[Path]:
    if root.is_file():
        return [root]
    files = sorted(p for p in root.rglob("*.parquet") if p.name.startswith(split))
    if not files:
        raise HarnessError(f"suite '{source.suite}': {root} holds no {split}-*.parquet files (MMMU's layout)")
    return files


def _mmmu_options(source: _Source, path: Path, row_id: str, raw: Any) -> list[str]:
    if isinstance(raw, list):
        return [str(o) for o in raw]
    try:
        value = ast.literal_eval(raw) if isinstance(raw, str) else None
    except (ValueError, SyntaxError):
        value = None
    if not isinstance(value, list):
        raise _bad(source, path, f"row {row_id}: options is not a list literal ({str(raw)[:60]!r})")
    return [str(o) for o in value]


def _mmmu_row(source: _Source, path: Path, row: dict) -> dict:
    row_id = str(row["id"])
    options = _mmmu_options(source, path, row_id, row.get("options"))
    images = [row[f"image_{n}"] for n in range(1, 8) if row.get(f"image_{n}")]
    parts = row_id.split("_")
    subject = "_".join(parts[1:-1]) if len(parts) > 2 else ""
    out = {
        "id": row_id,
        "subject": subject,
        "question": str(row.get("question") or ""),
        "options": options,
        "answer": str(row.get("answer") or ""),
        "question_type": str(row.get("question_type") or ""),
        "subfield": str(row.get("subfield") or ""),
        "explanation": str(row.get("explanation") or ""),
        "images": images,
    }
    for letter, text in zip(_LETTERS, options):
        out[letter] = text
    return out


@register(
    "mmmu",
    {
        "split": _Opt("validation", _choice("validation", "dev", "test")),
        "question_type": _Opt("multiple-choice", _choice("multiple-choice", "open", "all")),
    },
)
def load_mmmu(source: _Source, opts: dict) -> LoadedData:
    import pyarrow.parquet as pq

    root = _local(source, "mmmu")
    files = _mmmu_files(source, root, opts["split"])
    wanted = opts["question_type"]
    count = 0
    for path in files:
        try:
            schema = pq.read_schema(path)
        except Exception as exc:  # pyarrow raises several types for a file that is not parquet
            raise _bad(source, path, f"not a parquet file ({exc.__class__.__name__})") from None
        missing = [c for c in MMMU_COLUMNS if c not in schema.names]
        if missing:
            raise _bad(source, path, f"missing column(s) {', '.join(missing)}; expected MMMU's parquet layout")
        types = pq.read_table(path, columns=["question_type"]) if "question_type" in schema.names else None
        n = pq.ParquetFile(path).metadata.num_rows
        if wanted != "all" and types is not None:
            n = sum(1 for t in types.column("question_type").to_pylist() if t == wanted)
        count += n

    def rows() -> Iterator[dict]:
        for path in files:
            table = pq.ParquetFile(path)
            for batch in table.iter_batches(batch_size=64):
                for row in batch.to_pylist():
                    if wanted != "all" and row.get("question_type", wanted) != wanted:
                        continue
                    yield _mmmu_row(source, path, row)

    fingerprint = _fingerprint("mmmu", opts, [(f"file{i}", p) for i, p in enumerate(files)])
    return LoadedData(rows=ListRows(rows, count), fewshot=[], fingerprint=fingerprint, count=count)


# -- ChartQA / DocVQA -----------------------------------------------------------------------


def _read_json(source: _Source, path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(source, path, f"not valid JSON ({exc})") from None


def _images_fingerprint(opts: dict, loader: str, files: list[tuple[str, Path]], images: list[Path]) -> str:
    listing = sorted(f"{p.name}:{p.stat().st_size if p.is_file() else -1}" for p in images)
    return _fingerprint(loader, {**opts, "_images": listing}, files)


@register("chartqa", {"parts": _Opt(None, _names)})
def load_chartqa(source: _Source, opts: dict) -> LoadedData:
    root = _local(source, "chartqa")
    parts = opts["parts"] or ["human", "augmented"]
    if root.is_file():
        files = {root.stem.split("_")[-1]: root}
        folder = root.parent
    else:
        folder = root
        files = {p.stem.split("_")[-1]: p for p in sorted(root.glob("*_*.json"))}
        files = {k: v for k, v in files.items() if k in parts}
        if not files:
            raise HarnessError(
                f"suite '{source.suite}': {root} holds no <split>_{{{','.join(parts)}}}.json (ChartQA's layout)"
            )
    rows: list[dict] = []
    for part, path in sorted(files.items()):
        data = _read_json(source, path)
        if not isinstance(data, list):
            raise _bad(source, path, "expected a JSON list of {imgname, query, label}")
        for index, entry in enumerate(data):
            if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("imgname", "query")):
                raise _bad(source, path, f"entry {index}: needs imgname and query strings")
            if entry.get("label") is None:
                raise _bad(source, path, f"entry {index}: no label")
            rows.append(
                {
                    "id": f"{part}/{index}",
                    "part": part,
                    "question": entry["query"],
                    "answer": str(entry["label"]),
                    "images": [f"png/{entry['imgname']}"],
                }
            )
    images = [folder / r["images"][0] for r in rows]
    fingerprint = _images_fingerprint(opts, "chartqa", sorted(files.items()), images)
    return LoadedData(
        rows=ListRows(lambda: iter(rows), len(rows)), fewshot=[], fingerprint=fingerprint, count=len(rows)
    )


@register("docvqa", {"split": _Opt("val", _choice("val", "test", "train"))})
def load_docvqa(source: _Source, opts: dict) -> LoadedData:
    root = _local(source, "docvqa")
    if root.is_file():
        path = root
    else:
        found = sorted(root.glob(f"{opts['split']}_v*.json"))
        found = [p for p in found if "withQT" not in p.name] or found
        if not found:
            raise HarnessError(f"suite '{source.suite}': {root} holds no {opts['split']}_v*.json (DocVQA's layout)")
        path = found[-1]
    data = _read_json(source, path)
    entries = data.get("data") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise _bad(source, path, 'expected {"data": [...]} as DocVQA ships it')
    rows = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("question"), str) or not entry.get("image"):
            raise _bad(source, path, f"data[{index}]: needs question and image")
        answers = entry.get("answers")
        if answers is not None and not (isinstance(answers, list) and all(isinstance(a, str) for a in answers)):
            raise _bad(source, path, f"data[{index}]: answers must be a list of strings")
        rows.append(
            {
                "id": str(entry.get("questionId", index)),
                "question": entry["question"],
                "answers": answers or [],
                "question_types": entry.get("question_types") or [],
                "doc_id": str(entry.get("docId", "")),
                "images": [str(entry["image"])],
            }
        )
    images = [path.parent / r["images"][0] for r in rows]
    fingerprint = _images_fingerprint(opts, "docvqa", [("questions", path)], images)
    return LoadedData(
        rows=ListRows(lambda: iter(rows), len(rows)), fewshot=[], fingerprint=fingerprint, count=len(rows)
    )
