"""The `label` grader: a classification answer, one of a fixed set of labels, against the item's label.

Plain answers match after normalisation (case, whitespace, wrapping quotes/markdown, a trailing
period). When the item's request asked for JSON (`response_format`), the answer must be a JSON
object and the label is read from `json_key`; an answer that is not valid JSON fails and says so
in its reason ("json invalid: ..."), so the classification page can count JSON validity.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from harness.errors import HarnessError
from harness.graders import Needs, register
from harness.graders._text import answer_text, clean_answer, normalize_text
from harness.records import Grade, Item

JSON_VALID, JSON_INVALID = "json valid", "json invalid"
_FENCE = ("```json", "```")


def _wants_json(item: Item, request_field: str) -> bool:
    request = item.fields.get(request_field)
    fmt = request.get("response_format") if isinstance(request, dict) else None
    return isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema")


def _json_label(text: str, key: str) -> tuple[Any, str]:
    """(the value under `key`, "") or (None, why it could not be read)."""
    body = text.strip()
    for fence in _FENCE:  # models wrap JSON in a markdown fence even in JSON mode
        if body.startswith(fence) and body.endswith("```") and len(body) > len(fence) + 3:
            body = body[len(fence) : -3].strip()
            break
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        return None, f"not JSON ({exc.__class__.__name__})"
    if not isinstance(data, dict):
        return None, f"a JSON {type(data).__name__}, not an object"
    if key not in data:
        return None, f"no {key!r} key"
    return data[key], ""


@register("label", needs=Needs(inline=True))
def label(
    response: str,
    item: Item,
    *,
    labels: Sequence[str] = (),
    json_key: str = "label",
    json_mode: bool | None = None,
    request_field: str = "request",
) -> Grade:
    if item.reference is None or str(item.reference).strip() == "":
        raise HarnessError(
            f"grader 'label': item {item.id} has no label; set reference_field in suite.yaml to the field holding it"
        )
    known = {normalize_text(str(x)): str(x) for x in labels}
    gold = str(item.reference)
    wants_json = _wants_json(item, request_field) if json_mode is None else json_mode
    prefix = ""
    if wants_json:
        value, problem = _json_label(answer_text(response), json_key)
        if problem:
            return Grade.of(False, f"{JSON_INVALID}: {problem}; expected {gold}", "")
        prefix = f"{JSON_VALID}; "
        said = clean_answer(str(value))
    else:
        said = clean_answer(answer_text(response))
    canonical = known.get(normalize_text(said)) if known else said
    if canonical is None:
        return Grade.of(False, f"{prefix}not one of the labels: {said[:60]!r}; expected {gold}", "")
    ok = normalize_text(canonical) == normalize_text(gold)
    return Grade.of(ok, f"{prefix}predicted {canonical}, expected {gold}", canonical)
