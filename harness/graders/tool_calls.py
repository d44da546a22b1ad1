"""The `tool_calls` grader: were the right functions called with accepted arguments (BFCL's AST-checker rules).

The rules are those BFCL publishes for its AST checker (written here from its description, not copied):
the function name must match; every required parameter is present; no parameter outside the schema or
the accepted answer; types are checked (an int is accepted for a float; Java/JavaScript values arrive as
strings and are read by declared type); each value must be one of the accepted values, strings compared
after BFCL's normalisation (case, spaces and `,./-_*^` ignored); `""` among the accepted values makes a
parameter optional; parallel calls match in any order; irrelevance passes on no call, relevance on any.

An item carries its expected calls as `reference` (BFCL's `ground_truth`: a list of
`{FUNCTION: {PARAM: [accepted, ...]}}`), the offered functions in `fields["functions"]` (or `tools`), and
its category (`fields["category"]`, else the item's group), which picks the rule.
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping, Sequence

from harness.errors import HarnessError
from harness.graders import reference_view, register
from harness.graders._typed_values import (
    JAVA_TYPES,
    JS_TYPES,
    NESTED_TYPES,
    java_literal,
    java_value,
    js_literal,
    js_value,
)
from harness.providers.text_calls import TEXT_CALL_STYLES, text_call_style, text_calls
from harness.records import Grade, Item, ToolCall

PYTHON_TYPES: dict[str, type] = {
    "string": str,
    "integer": int,
    "float": float,
    "number": float,
    "boolean": bool,
    "array": list,
    "tuple": list,
    "dict": dict,
    "object": dict,
    "any": str,
}
_PYTHON_NESTED = ("array", "tuple")

_STRIP = re.compile(r"[ ,./\-_*^]")


def normalize(text: str) -> str:
    """BFCL's string normalisation: no spaces or `,./-_*^`, lower case, single quotes as double."""
    return _STRIP.sub("", text).lower().replace("'", '"')


class Mismatch(Exception):
    """The first reason an answer fails, as the grade reason says it."""


def _first_type(accepted: Sequence[Any]) -> type | None:
    for value in accepted:
        if value != "":
            return type(value)
    return None


def _check_type(param: str, value: Any, accepted: Sequence[Any], declared: str, expected: type, item: type | None):
    """Raise on a wrong type; return True when the value is a variable name (compared as a string)."""
    answer_type = _first_type(accepted)
    variable = answer_type is not None and answer_type is not expected
    if type(value) is expected:
        if item is None:
            return variable
        for option in accepted:
            if isinstance(option, list) and all(
                type(v) is item or (_first_type(option) is not None and type(v) is _first_type(option)) for v in value
            ):
                return variable
        raise Mismatch(f"wrong type of `{param}`: expected {declared} of {item.__name__}, got {_short(value)}")
    if answer_type is not None and type(value) is answer_type:
        return True  # a variable written where the schema asks for a value (BFCL accepts the name)
    raise Mismatch(f"wrong type of `{param}`: expected {declared}, got {type(value).__name__} {_short(value)}")


def _norm(value: Any) -> Any:
    return normalize(value) if isinstance(value, str) else value


def _dict_ok(value: Mapping[str, Any], options: Sequence[Any]) -> bool:
    for option in options:
        if option == "" or not isinstance(option, Mapping):
            continue
        if all(k in option and _norm(v) in [_norm(a) for a in option[k]] for k, v in value.items()) and all(
            k in value or "" in accepted for k, accepted in option.items()
        ):
            return True
    return False


def _list_of_dicts_ok(value: Sequence[Any], options: Sequence[Any]) -> bool:
    for option in options:
        if not isinstance(option, list) or len(option) != len(value):
            continue
        if all(isinstance(v, Mapping) and _dict_ok(v, [o]) for v, o in zip(value, option)):
            return True
    return False


def _check_value(param: str, value: Any, accepted: Sequence[Any], expected: type, item: type | None, variable: bool):
    if not variable:
        if expected is dict:
            ok = _dict_ok(value, accepted)
        elif expected is list and item is dict:
            ok = _list_of_dicts_ok(value, accepted)
        elif expected is str:
            ok = normalize(value) in [normalize(a) for a in accepted if isinstance(a, str)]
        elif expected is list:
            ok = [_norm(v) for v in value] in [[_norm(a) for a in opt] for opt in accepted if isinstance(opt, list)]
        else:
            ok = value in accepted
    else:
        ok = value in accepted
    if not ok:
        shown = [a for a in accepted if a != ""]
        raise Mismatch(f"value of `{param}` not accepted: got {_short(value)}, expected one of {_short(shown)}")


def check_call(function: Mapping[str, Any], call: Mapping[str, Any], expected: Mapping[str, Any], language: str):
    """One call against one expected call (its function's description); raise Mismatch on the first failure."""
    name = str(function.get("name", ""))
    wanted_name, accepted = next(iter(expected.items()))
    if call["name"] != wanted_name:
        raise Mismatch(f"wrong function: expected {wanted_name}, got {call['name']}")
    arguments = call["arguments"]
    schema = function.get("parameters") or {}
    properties = schema.get("properties") or {}
    for param in schema.get("required") or ():
        if param not in arguments:
            raise Mismatch(f"missing `{param}` in {name}")
    for param, value in arguments.items():
        if param not in properties or param not in accepted:
            raise Mismatch(f"unexpected `{param}` in {name}")
        details = properties[param] if isinstance(properties[param], Mapping) else {}
        declared = str(details.get("type", "any"))
        item_declared = (details.get("items") or {}).get("type") if isinstance(details.get("items"), Mapping) else None
        item_type = None
        if language in ("java", "javascript"):
            table = JAVA_TYPES if language == "java" else JS_TYPES
            expected_type = table.get(declared, str)
            if not isinstance(value, str):
                raise Mismatch(
                    f"wrong type of `{param}`: a {language} value is written as a string, got {type(value).__name__}"
                )
            convert = java_value if language == "java" else js_value
            if declared in NESTED_TYPES and item_declared:
                item_type = table.get(str(item_declared), str)
                value = convert(value, declared, str(item_declared))
            else:
                value = convert(value, declared)
        else:
            expected_type = PYTHON_TYPES.get(declared, str)
            if declared in _PYTHON_NESTED and item_declared:
                item_type = PYTHON_TYPES.get(str(item_declared), str)
            if expected_type is float and type(value) is int:
                value = float(value)  # an integer is a valid float
        variable = _check_type(param, value, accepted[param], declared, expected_type, item_type)
        _check_value(param, value, accepted[param], expected_type, item_type, variable)
    for param, options in accepted.items():
        if param not in arguments and "" not in options:
            raise Mismatch(f"missing `{param}` in {name}")


def _describe(functions: Sequence[Mapping[str, Any]], name: str) -> Mapping[str, Any]:
    for function in functions:
        if function.get("name") == name:
            return function
    return {"name": name, "parameters": {}}


def check_calls(
    functions: Sequence[Mapping[str, Any]],
    calls: Sequence[Mapping[str, Any]],
    expected: Sequence[Mapping[str, Any]],
    category: str,
    language: str = "python",
) -> None:
    """All calls against the expected ones by BFCL's rule for `category`; raise Mismatch on the first failure."""
    if len(calls) != len(expected):
        raise Mismatch(f"{len(calls)} call{'s' * (len(calls) != 1)} for {len(expected)} expected")
    if "parallel" not in category:
        wanted = next(iter(expected[0]))
        check_call(_describe(functions, wanted), calls[0], expected[0], language)
        return
    unmatched = list(range(len(calls)))
    for want in expected:
        function = _describe(functions, next(iter(want)))
        first_error = None
        for index in unmatched:
            try:
                check_call(function, calls[index], want, language)
            except Mismatch as exc:
                first_error = first_error or exc
                continue
            unmatched.remove(index)
            break
        else:
            raise Mismatch(f"no call matches expected {next(iter(want))}: {first_error}")


def _accepted(options: Any) -> Any:
    """One accepted value: a list's first non-optional entry, nested dicts resolved key by key."""
    if (
        isinstance(options, list)
        and options
        and not isinstance(options[0], (dict, list))
        or (isinstance(options, list) and any(o == "" for o in options))
    ):
        options = next((o for o in options if o != ""), None)
    elif isinstance(options, list) and options:
        options = options[0]
    if isinstance(options, Mapping):
        return {k: _accepted(v) for k, v in options.items() if v != [""]}
    if isinstance(options, list) and options and isinstance(options[0], Mapping):
        return [_accepted(d) for d in options]
    return options


def reference_calls(reference: Any, language: str = "python") -> tuple[ToolCall, ...]:
    """The calls a perfect answer makes for BFCL-style expected calls (first accepted value of each parameter;
    Java/JavaScript values written as source strings, as BFCL asks for them)."""
    if isinstance(reference, str):
        reference = json.loads(reference) if reference.strip() else []
    write = {"java": java_literal, "javascript": js_literal}.get(language)
    calls = []
    for expected in reference or ():
        ((name, params),) = expected.items()
        arguments = {k: _accepted(v) for k, v in params.items() if any(x != "" for x in v)}
        if write is not None:
            arguments = {k: v if isinstance(v, str) else write(v) for k, v in arguments.items()}
        calls.append(ToolCall.parse(name, json.dumps(arguments, ensure_ascii=False)))
    return tuple(calls)


def render_calls(calls: Sequence[ToolCall]) -> str:
    """Calls as people read them: `name(a=1, b="x")`; unparseable arguments shown as sent."""
    out = []
    for call in calls:
        if call.arguments is None:
            out.append(f"{call.name}(<{call.raw_arguments!r}>)")
        else:
            args = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in call.arguments.items())
            out.append(f"{call.name}({args})")
    return "; ".join(out)


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@register("tool_calls")
def tool_calls(
    response: str,
    item: Item,
    calls: Sequence[ToolCall] = (),
    text_tool_calls: str | None = None,
    category: str | None = None,
    language: str | None = None,
) -> Grade:
    """Pass when the calls made match the item's expected calls under BFCL's rules for its category.

    `calls` are the model's calls (the engine passes them). `text_tool_calls` (hermes | qwen_xml | json)
    reads calls written in the text as calls; without it such an answer fails as "call in text".
    """
    if text_tool_calls is not None and text_tool_calls not in TEXT_CALL_STYLES:
        raise HarnessError(
            f"tool_calls grader: text_tool_calls {text_tool_calls!r} is not one of {', '.join(TEXT_CALL_STYLES)}"
        )
    category = category or str(item.fields.get("category") or item.group or "simple")
    language = language or str(item.fields.get("language") or "python")
    calls = tuple(calls)
    note = ""
    if not calls:
        style = text_call_style(response)
        if style and text_tool_calls:
            calls = text_calls(response, text_tool_calls)
            note = f" (read from the text as {text_tool_calls})"
        elif style:
            if "irrelevance" in category:
                return Grade.of(True, f"no call (a {style} call written in the text is not a call)")
            return Grade.of(False, f"call in text ({style}), not in tool_calls", response[:200])
    shown = render_calls(calls)
    if any(c.arguments is None for c in calls):
        bad = next(c for c in calls if c.arguments is None)
        return Grade.of(False, f"unparseable arguments of {bad.name}: {bad.parse_error}{note}", shown)
    if "irrelevance" in category:
        passed = not calls
        return Grade.of(passed, "no call" if passed else f"called {len(calls)} function(s) where none fits", shown)
    if "relevance" in category:
        return Grade.of(bool(calls), f"called {calls[0].name}{note}" if calls else "no call", shown)
    if not calls:
        return Grade.of(False, "no call", "")
    expected = item.reference
    if isinstance(expected, str):
        expected = json.loads(expected)
    if not isinstance(expected, list) or not all(isinstance(e, Mapping) and len(e) == 1 for e in expected):
        raise HarnessError(
            f"item '{item.id}': the tool_calls grader needs the expected calls as a list of "
            f"{{FUNCTION: {{PARAM: [accepted values]}}}} in its reference field"
        )
    functions = item.fields.get("functions") or item.fields.get("tools") or []
    made = [{"name": c.name, "arguments": dict(c.arguments or {})} for c in calls]
    try:
        check_calls(functions, made, expected, category, language)
    except Mismatch as exc:
        return Grade.of(False, f"{exc}{note}", shown)
    return Grade.of(True, f"{len(calls)} call{'s' * (len(calls) != 1)} as expected{note}", shown)


def _options_text(options: Any) -> str:
    shown = [json.dumps(o, ensure_ascii=False) for o in options if o != ""] if isinstance(options, list) else []
    text = " | ".join(shown) if shown else json.dumps(options, ensure_ascii=False)
    return f"{text} | omitted" if isinstance(options, list) and "" in options else text


@reference_view("tool_calls")
def expected_calls_text(reference: str) -> str:
    """The expected calls as people read them: `f(a=1 | 2, unit="cm" | omitted)`, one call a line."""
    data = json.loads(reference)
    if not data:
        return "no expected call (irrelevance: any call fails; relevance: any call passes)"
    lines = []
    for expected in data:
        ((name, params),) = expected.items()
        lines.append(f"{name}(" + ", ".join(f"{k}={_options_text(v)}" for k, v in params.items()) + ")")
    return "\n".join(lines)
