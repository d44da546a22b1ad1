"""The BFCL loader: the Berkeley Function Calling Leaderboard's single-turn files (v4), questions joined to answers.

A folder holds `BFCL_v4_<category>.json` (JSON Lines: id, question, function) and
`possible_answer/BFCL_v4_<category>.json` (id, ground_truth). Option `categories` picks some (default:
every single-turn category present). Rows: id (BFCL's), category, language, messages (the first turn),
functions (BFCL's descriptions, which the grader reads), tools (the same as OpenAI JSON schemas, what is
sent) and ground_truth (the accepted calls; [] where a category has no answers: irrelevance, relevance).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Mapping

from harness.errors import HarnessError
from harness.suite.loaders.common import LoadedData, _fingerprint, _names, _Opt, _Source, register

SINGLE_TURN = (
    "simple_python",
    "simple_java",
    "simple_javascript",
    "multiple",
    "parallel",
    "parallel_multiple",
    "irrelevance",
    "live_simple",
    "live_multiple",
    "live_parallel",
    "live_parallel_multiple",
    "live_irrelevance",
    "live_relevance",
)
_NO_ANSWERS = ("irrelevance", "live_irrelevance", "live_relevance")

# BFCL's parameter types as JSON-schema types (what a server's tool schema accepts).
_SCHEMA_TYPE = {"dict": "object", "float": "number", "tuple": "array", "any": "string"}


def language_of(category: str) -> str:
    return "java" if category.endswith("_java") else "javascript" if category.endswith("_javascript") else "python"


def schema_of(node: Any, language: str) -> Any:
    """A BFCL parameter schema as a JSON schema; Java/JavaScript values are asked for as strings, as BFCL does."""
    if not isinstance(node, Mapping):
        return node
    out = {}
    for key, value in node.items():
        if key == "properties" and isinstance(value, Mapping):
            out[key] = {name: schema_of(sub, language) for name, sub in value.items()}
        elif key == "items":
            out[key] = schema_of(value, language)
        elif key == "type" and isinstance(value, str):
            out[key] = value
        else:
            out[key] = value
    kind = node.get("type")
    if isinstance(kind, str):
        if language != "python" and kind not in ("dict", "object"):
            out["type"] = "string"
            out["description"] = (
                f"{node.get('description', '')} This is {language.capitalize()} {kind} type parameter "
                f"in string representation."
            ).strip()
            out.pop("items", None)
            out.pop("properties", None)
        else:
            out["type"] = _SCHEMA_TYPE.get(kind, kind)
    return out


def tools_of(functions: list[dict], language: str) -> list[dict]:
    return [
        {
            "name": f.get("name", ""),
            "description": f.get("description", ""),
            "parameters": schema_of(f.get("parameters") or {"type": "dict", "properties": {}}, language),
        }
        for f in functions
    ]


def _read_lines(path: Path, suite: str) -> Iterator[dict]:
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise HarnessError(f"suite '{suite}': {path}:{number}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict) or not isinstance(row.get("id"), str):
                raise HarnessError(f"suite '{suite}': {path}:{number}: a BFCL row needs a string 'id'")
            yield row


class _BfclRows:
    """The selected categories' rows, read lazily (re-iterable) from the question and answer files."""

    def __init__(self, suite: str, files: list[tuple[str, Path, Path | None]]):
        self.suite, self.files = suite, files

    def __iter__(self) -> Iterator[dict]:
        for category, questions, answers in self.files:
            truth = {r["id"]: r.get("ground_truth") for r in _read_lines(answers, self.suite)} if answers else {}
            language = language_of(category)
            for row in _read_lines(questions, self.suite):
                turns = row.get("question") or [[]]
                functions = row.get("function") or []
                if not isinstance(turns, list) or not turns or not isinstance(functions, list):
                    raise HarnessError(f"suite '{self.suite}': {questions}: row {row['id']} has no question/function")
                if answers and row["id"] not in truth:
                    raise HarnessError(f"suite '{self.suite}': {answers} has no answer for {row['id']}")
                yield {
                    "id": row["id"],
                    "category": category,
                    "language": language,
                    "messages": turns[0],
                    "functions": functions,
                    "tools": tools_of(functions, language),
                    "ground_truth": truth.get(row["id"], []),
                }

    def __len__(self) -> int:
        total = 0
        for _, questions, _ in self.files:
            with open(questions, "rb") as fh:
                total += sum(1 for line in fh if line.strip())
        return total


@register("bfcl", {"categories": _Opt(None, _names)})
def load_bfcl(source: _Source, opts: dict) -> LoadedData:
    if source.path is None or not source.path.is_dir():
        raise HarnessError(
            f"suite '{source.suite}': BFCL data is a folder of BFCL_v4_<category>.json files with "
            f"possible_answer/ beside them (e.g. ../shared/datasets/bfcl), got {source.hub_id or source.path}"
        )
    wanted = opts["categories"]
    unknown = sorted(set(wanted or ()) - set(SINGLE_TURN))
    if unknown:
        raise HarnessError(
            f"suite '{source.suite}': option categories: unknown {', '.join(unknown)} "
            f"(single-turn categories: {', '.join(SINGLE_TURN)})"
        )
    files: list[tuple[str, Path, Path | None]] = []
    for category in SINGLE_TURN:
        if wanted is not None and category not in wanted:
            continue
        questions = source.path / f"BFCL_v4_{category}.json"
        answers = source.path / "possible_answer" / f"BFCL_v4_{category}.json"
        if not questions.is_file():
            if wanted is not None:
                raise HarnessError(f"suite '{source.suite}': {questions} not found (category {category})")
            continue
        if category not in _NO_ANSWERS and not answers.is_file():
            raise HarnessError(f"suite '{source.suite}': {answers} not found (the answers of {category})")
        files.append((category, questions, answers if category not in _NO_ANSWERS else None))
    if not files:
        raise HarnessError(f"suite '{source.suite}': {source.path} holds no BFCL_v4_<category>.json file")
    roles = [(f"q:{c}", q) for c, q, _ in files] + [(f"a:{c}", a) for c, _, a in files if a]
    rows = _BfclRows(source.suite, files)
    return LoadedData(rows=rows, fewshot=[], fingerprint=_fingerprint("bfcl", opts, roles), count=len(rows))
