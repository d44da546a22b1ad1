"""A logged OpenAI chat request (wire JSON) read back into a typed `Prompt` and its own sampling settings."""

from __future__ import annotations

import json
from typing import Any, Mapping

from harness.records import ImagePart, Message, Part, Prompt, TextPart, ToolCall, ToolDefinition

# Sampling settings a logged request may carry that a replay sends again (the plan may override them).
REPLAYED_SETTINGS = ("temperature", "max_tokens", "top_p", "stop", "seed")


class RequestError(ValueError):
    """A logged request that cannot be replayed: what is wrong with it, for the caller to place."""


def _content(raw: Any) -> str | tuple[Part, ...]:
    if raw is None:
        return ""
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, list):
        raise RequestError(f"message content is a JSON {type(raw).__name__}, not text or a list of parts")
    parts: list[Part] = []
    for part in raw:
        if isinstance(part, str):
            parts.append(TextPart(part))
        elif isinstance(part, dict) and part.get("type") in ("text", "input_text"):
            parts.append(TextPart(str(part.get("text", ""))))
        elif isinstance(part, dict) and part.get("type") == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            detail = image.get("detail") if isinstance(image, dict) else None
            if not isinstance(url, str) or not url:
                raise RequestError("an image_url part has no url")
            parts.append(ImagePart(url=url, detail=detail, source=url if not url.startswith("data:") else "data URL"))
        else:
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise RequestError(f"message part of type {kind!r} is not supported (text and image_url are)")
    return tuple(parts)


def message_from_openai(raw: Any) -> Message:
    """One chat/completions message (as a gateway logged it) as a `Message`."""
    if not isinstance(raw, dict) or not isinstance(raw.get("role"), str):
        raise RequestError("a message is not an object with a role")
    calls = []
    for call in raw.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            raise RequestError("a tool call has no function")
        calls.append(ToolCall.parse(str(function.get("name", "")), function.get("arguments"), str(call.get("id", ""))))
    return Message(
        role=raw["role"],
        content=_content(raw.get("content")),
        tool_calls=tuple(calls),
        tool_call_id=str(raw.get("tool_call_id") or ""),
        name=str(raw.get("name") or ""),
    )


def prompt_from_openai(request: Mapping[str, Any]) -> Prompt:
    """The request's messages, tools, tool_choice and response_format as a `Prompt`."""
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("no messages")
    tools = []
    for tool in request.get("tools") or ():
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not function.get("name"):
            raise RequestError("a tool is not {type: function, function: {name, ...}}")
        tools.append(
            ToolDefinition(
                str(function["name"]), str(function.get("description") or ""), dict(function.get("parameters") or {})
            )
        )
    response_format = request.get("response_format")
    if response_format is not None and not isinstance(response_format, dict):
        raise RequestError("response_format is not an object")
    return Prompt(
        tuple(message_from_openai(m) for m in messages),
        tuple(tools),
        request.get("tool_choice"),
        dict(response_format) if response_format is not None else None,
    )


def replay_settings(request: Mapping[str, Any]) -> dict[str, Any]:
    """The sampling settings the logged request was sent with (only those it set)."""
    out: dict[str, Any] = {}
    for key in REPLAYED_SETTINGS:
        value = request.get(key)
        if key == "max_tokens" and value is None:
            value = request.get("max_completion_tokens")
        if value is not None:
            out[key] = value
    return out


def canonical(request: Mapping[str, Any]) -> str:
    """The request as one canonical JSON string: two logs of the same request compare equal."""
    return json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
