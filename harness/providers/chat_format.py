"""The OpenAI chat format of a conversation: typed `Prompt` -> request fields, and tool calls read back.

Every path that puts a prompt on the wire (a run, a load profile, a Batch API line, a Ray worker)
builds its messages and tools here, so they cannot disagree on how a part or a call is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.providers.tool_names import wire_names
from harness.records import ImagePart, Message, Prompt, TextPart, ToolCall


def openai_message(message: Message, names: dict[str, str] | None = None) -> dict[str, Any]:
    """One message in the chat/completions form; `names` maps the suite's tool names to the ones sent."""
    out: dict[str, Any] = {"role": message.role}
    if isinstance(message.content, str):
        out["content"] = message.content
    else:
        parts: list[dict[str, Any]] = []
        for part in message.content:
            if isinstance(part, TextPart):
                parts.append({"type": "text", "text": part.text})
            elif isinstance(part, ImagePart):
                image: dict[str, Any] = {"url": part.data_url()}
                if part.detail:
                    image["detail"] = part.detail
                parts.append({"type": "image_url", "image_url": image})
        out["content"] = parts
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id or f"call_{index}",
                "type": "function",
                "function": {"name": (names or {}).get(call.name, call.name), "arguments": call.raw_arguments},
            }
            for index, call in enumerate(message.tool_calls)
        ]
        if out.get("content") == "":
            out["content"] = None  # an assistant turn that only called tools
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    if message.name:
        out["name"] = message.name
    return out


def openai_messages(prompt: Prompt) -> list[dict[str, Any]]:
    names = wire_names(prompt) if prompt.tools else None
    return [openai_message(m, names) for m in prompt.messages]


def openai_prompt_fields(prompt: Prompt) -> dict[str, Any]:
    """`messages`, and `tools` / `tool_choice` / `response_format` when the prompt has them."""
    fields: dict[str, Any] = {"messages": openai_messages(prompt)}
    names = wire_names(prompt) if prompt.tools else {}
    if prompt.tools:
        fields["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": names.get(tool.name, tool.name),
                    "description": tool.description,
                    "parameters": dict(tool.parameters) or {"type": "object", "properties": {}},
                },
            }
            for tool in prompt.tools
        ]
    if prompt.tool_choice is not None:
        fields["tool_choice"] = _mapped_choice(prompt.tool_choice, names)
    if prompt.response_format is not None:
        fields["response_format"] = prompt.response_format
    return fields


def tool_calls_of(message: dict[str, Any]) -> tuple[ToolCall, ...]:
    """The calls of a whole (non-streamed) assistant message; the legacy `function_call` when there are none."""
    calls = message.get("tool_calls")
    found: list[ToolCall] = []
    if isinstance(calls, list):
        for call in calls:
            if not isinstance(call, dict):
                continue
            function = call.get("function")
            function = function if isinstance(function, dict) else {}
            found.append(ToolCall.parse(_text(function.get("name")), function.get("arguments"), _text(call.get("id"))))
    if not found and isinstance(message.get("function_call"), dict):
        legacy = message["function_call"]
        found.append(ToolCall.parse(_text(legacy.get("name")), legacy.get("arguments")))
    return tuple(found)


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class ToolCallDeltas:
    """Tool calls assembled from streamed deltas: several calls interleave by `index`, arguments arrive in pieces.

    A call's id and name are taken from the first delta that has them: llama.cpp's server repeats both
    in every delta, and appending them would make `get_weatherget_weather...`.
    """

    calls: dict[int, _PartialCall] = field(default_factory=dict)
    legacy: _PartialCall | None = None

    def feed(self, delta: dict[str, Any]) -> None:
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            for position, call in enumerate(calls):
                if not isinstance(call, dict):
                    continue
                index = call.get("index")
                index = index if isinstance(index, int) and not isinstance(index, bool) else position
                partial = self.calls.setdefault(index, _PartialCall())
                partial.id = partial.id or _text(call.get("id"))
                function = call.get("function")
                function = function if isinstance(function, dict) else {}
                partial.name = partial.name or _text(function.get("name"))
                arguments = function.get("arguments")
                if isinstance(arguments, str):
                    partial.arguments.append(arguments)
                elif isinstance(arguments, dict):
                    partial.arguments.append(_json(arguments))
        legacy = delta.get("function_call")
        if isinstance(legacy, dict):
            self.legacy = self.legacy or _PartialCall()
            self.legacy.name = self.legacy.name or _text(legacy.get("name"))
            if isinstance(legacy.get("arguments"), str):
                self.legacy.arguments.append(legacy["arguments"])

    def result(self) -> tuple[ToolCall, ...]:
        if self.calls:
            return tuple(ToolCall.parse(c.name, "".join(c.arguments), c.id) for _, c in sorted(self.calls.items()))
        if self.legacy is not None:
            return (ToolCall.parse(self.legacy.name, "".join(self.legacy.arguments)),)
        return ()


def _mapped_choice(choice: Any, names: dict[str, str]) -> Any:
    """A forced `{"type": "function", "function": {"name": ...}}` names the function as it is sent."""
    function = choice.get("function") if isinstance(choice, dict) else None
    if isinstance(function, dict) and function.get("name") in names:
        return {**choice, "function": {**function, "name": names[function["name"]]}}
    return choice


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _json(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)
