"""Tool calls written in the answer text instead of `tool_calls`, and what a tool answer was (its outcome).

Servers whose tool parser misses a model's format leave the call in the text: Hermes-style
`<tool_call>{json}</tool_call>` blocks, Qwen3-Coder's XML (`<function=NAME><parameter=P>v</parameter>`),
or a bare JSON object `{"name": ..., "arguments": {...}}`. Such an answer is counted as its own
outcome (`text_call`), and turned into calls only where a suite or model asks (`text_tool_calls`).
"""

from __future__ import annotations

import json
import re
from typing import Any, Sequence

from harness.records import ToolCall

TEXT_CALL_STYLES = ("hermes", "qwen_xml", "json")

# What a tool answer was, per sample; the summary and the report count these per model.
OUTCOMES = ("call", "no_call", "bad_arguments", "text_call", "error")

_HERMES = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.DOTALL)
_QWEN_FUNCTION = re.compile(r"<function=([^>\s]+)>(.*?)</function>", re.DOTALL)
_QWEN_PARAMETER = re.compile(r"<parameter=([^>\s]+)>\n?(.*?)\n?</parameter>", re.DOTALL)
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def _call_from_object(data: Any) -> ToolCall | None:
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return None
    arguments = data.get("arguments", data.get("parameters"))
    if arguments is None:
        arguments = {}
    return ToolCall.parse(data["name"], arguments)


def _hermes(text: str) -> tuple[ToolCall, ...]:
    calls = []
    for block in _HERMES.findall(text):
        try:
            call = _call_from_object(json.loads(block))
        except (ValueError, RecursionError):
            call = ToolCall("", block, None, "", "a <tool_call> block that is not JSON")
        if call is not None:
            calls.append(call)
    return tuple(calls)


def _qwen_value(raw: str) -> Any:
    """Qwen's XML gives every value as text: JSON where it parses (numbers, lists), else the string."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return raw


def _qwen_xml(text: str) -> tuple[ToolCall, ...]:
    calls = []
    for name, body in _QWEN_FUNCTION.findall(text):
        arguments = {key: _qwen_value(value) for key, value in _QWEN_PARAMETER.findall(body)}
        calls.append(ToolCall.parse(name, arguments))
    return tuple(calls)


def _bare_json(text: str) -> tuple[ToolCall, ...]:
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    if fenced:
        stripped = fenced.group(1)
    if not stripped.startswith(("{", "[")):
        return ()
    try:
        data = json.loads(stripped)
    except (ValueError, RecursionError):
        return ()
    objects = data if isinstance(data, list) else [data]
    # Only an object that names its arguments is a call: `{"name": "Paris"}` is an answer, not a call.
    if not all(isinstance(o, dict) and ("arguments" in o or "parameters" in o) for o in objects):
        return ()
    calls = [_call_from_object(o) for o in objects]
    return tuple(c for c in calls if c is not None) if calls and all(calls) else ()


_PARSERS = {"hermes": _hermes, "qwen_xml": _qwen_xml, "json": _bare_json}


def text_calls(text: str, style: str) -> tuple[ToolCall, ...]:
    """The calls written in `text` in one style (empty when there are none)."""
    return _PARSERS[style](text or "")


def text_call_style(text: str) -> str:
    """The style of a call written in the text, or "" when the text holds none."""
    if not text:
        return ""
    for style in TEXT_CALL_STYLES:
        if text_calls(text, style):
            return style
    return ""


def tool_outcome(text: str, calls: Sequence[ToolCall], error: str = "") -> str:
    """What a tool answer was: an error, a call with unparseable arguments, a call, a call in text, no call."""
    if error:
        return "error"
    if calls:
        return "bad_arguments" if any(c.arguments is None for c in calls) else "call"
    return "text_call" if text_call_style(text) else "no_call"
