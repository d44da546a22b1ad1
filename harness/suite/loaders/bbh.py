"""The BIG-Bench Hard loader: one JSON file per task, few-shot exemplars parsed from cot-prompts/<task>.txt."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable

from harness.errors import HarnessError
from harness.suite.jsonl import utf8_problem
from harness.suite.loaders.common import (
    LoadedData,
    Rows,
    Shape,
    _check_complete,
    _field_problem,
    _fingerprint,
    _json_features,
    _names,
    _Opt,
    _read,
    _Source,
    _text_or_none,
    register,
)
from harness.suite.loaders.hub import _hub, _hub_columns, _hub_configs, _hub_parts

BBH_FIELDS = {"input": str, "target": str}


def _bbh_problem(path: Path) -> str | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        return f"{path}, line {exc.lineno}: not valid JSON ({exc.msg})"
    except UnicodeDecodeError:
        return utf8_problem(path)
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
            raise HarnessError(
                f"suite '{source.suite}': {path} holds no BBH task files (<task>.json, or bbh/<task>.json)"
            )
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
            raise HarnessError(
                f"{where}, exemplar {number}: expected 'Q: ...', then '{_COT_MARK}' and a final '{_ANSWER_MARK}X.'"
            )
        question = block[len("Q: ") : cut].strip()
        reasoning = block[cut + 1 + len(_COT_MARK) : answer_at].strip()
        target = block[answer_at + len(_ANSWER_MARK) :].strip()
        if target.endswith("."):
            target = target[:-1].rstrip()
        shots.append({"task": task, "input": question, "rationale": reasoning, "target": target})
    return shots


def _bbh_shape(task: str) -> Shape:
    def shape(index: int, row: dict) -> dict:
        return {"task": task, "id": f"{task}/{index}", "input": row["input"], "target": row["target"]}

    return shape


@register(
    "bbh",
    {
        "tasks": _Opt(None, _names),
        "cot_prompts": _Opt(None, _text_or_none),
    },
)
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
    return LoadedData(
        rows=rows, fewshot=fewshot, fingerprint=_fingerprint("bbh", opts, fingerprint_files), count=len(rows)
    )


def _bbh_pick(source: _Source, available: Iterable[str], opts: dict) -> list[str]:
    available = sorted(available)
    tasks = opts["tasks"] or available
    unknown = [t for t in tasks if t not in available]
    if unknown:
        raise HarnessError(
            f"suite '{source.suite}': unknown BBH task(s) {', '.join(unknown)} (available: {', '.join(available)})"
        )
    return tasks


def _bbh_fewshot(
    source: _Source, tasks: Iterable[str], cot_dir: Path | None
) -> tuple[list[dict], list[tuple[str, Path]]]:
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
        except UnicodeDecodeError:
            raise HarnessError(f"suite '{source.suite}': {utf8_problem(path)}") from None
        except OSError as exc:
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
    return LoadedData(
        rows=rows, fewshot=fewshot, fingerprint=_fingerprint("bbh", opts, cot_files, hub=hub_parts), count=len(rows)
    )
