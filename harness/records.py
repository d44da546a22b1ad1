"""The typed values that flow between pipeline stages (item -> prompt -> completion -> grade).

Stages exchange these frozen dataclasses, never dicts or ORM rows, so each stage can be
read and tested on its own.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from harness.formatting import money  # noqa: F401  (moved to harness.formatting; kept importable from here)


@dataclass(frozen=True)
class Item:
    """One evaluation item of a suite.

    `fields` holds the item's raw fields as the suite's data defines them (the template sees
    them by name); `reference` is the gold answer the grader compares against (a number,
    a letter, a string, or for code the test source); `group` clusters items for standard
    errors (C-Eval subject, BBH task), empty when items are independent.
    """

    id: str
    fields: Mapping[str, Any]
    reference: Any = None
    group: str = ""


@dataclass(frozen=True)
class TextPart:
    """A piece of text in a message made of parts."""

    text: str


@dataclass(frozen=True)
class ImagePart:
    """An image in a message: its bytes with a media type, or a URL the server fetches itself.

    `source` is where the suite named it (a file path relative to the suite, or the URL): reports
    and exports show that and the hash, never the bytes.
    """

    data: bytes = b""
    media_type: str = ""
    url: str = ""
    detail: str | None = None  # OpenAI's "low" | "high" | "auto"; None sends none
    source: str = ""
    width: int = 0
    height: int = 0
    digest: str = ""  # the sha256 a stored prompt recorded (its bytes are not stored)

    @property
    def sha256(self) -> str:
        if not self.data and self.digest:
            return self.digest
        return hashlib.sha256(self.data or self.url.encode()).hexdigest()

    def data_url(self) -> str:
        """What goes on the wire: the URL as given, else the bytes as a base64 data URL."""
        if self.url:
            return self.url
        cached = self.__dict__.get("_data_url")
        if cached is None:  # encoded once per part: every retry and every sample reuse it
            mime = self.media_type or "application/octet-stream"
            cached = f"data:{mime};base64,{base64.b64encode(self.data).decode()}"
            object.__setattr__(self, "_data_url", cached)
        return cached


Part = TextPart | ImagePart


@dataclass(frozen=True)
class ToolDefinition:
    """A function offered to the model (OpenAI function schema): `parameters` is a JSON schema."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ToolCall:
    """A call a model made (or an earlier assistant turn made): the arguments as sent and as parsed.

    `arguments` is None when `raw_arguments` is not a JSON object; `parse_error` then says why.
    """

    name: str
    raw_arguments: str = ""
    arguments: Mapping[str, Any] | None = None
    id: str = ""
    parse_error: str = ""

    @staticmethod
    def parse(name: str, raw_arguments: Any, id: str = "") -> "ToolCall":
        """A call read from a server: arguments arrive as a JSON string (some servers send an object)."""
        if isinstance(raw_arguments, Mapping):
            return ToolCall(name, json.dumps(raw_arguments, ensure_ascii=False), dict(raw_arguments), id)
        raw = raw_arguments if isinstance(raw_arguments, str) else ""
        if not raw.strip():
            return ToolCall(name, raw, None, id, "empty arguments")
        try:
            parsed = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            return ToolCall(name, raw, None, id, f"arguments are not JSON ({exc.__class__.__name__})")
        if not isinstance(parsed, dict):
            return ToolCall(name, raw, None, id, f"arguments are a JSON {type(parsed).__name__}, not an object")
        return ToolCall(name, raw, parsed, id)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "arguments": self.arguments, "raw_arguments": self.raw_arguments}
        if self.id:
            out["id"] = self.id
        if self.parse_error:
            out["parse_error"] = self.parse_error
        return out

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> "ToolCall":
        arguments = data.get("arguments")
        return ToolCall(
            name=str(data.get("name", "")),
            raw_arguments=str(data.get("raw_arguments", "")),
            arguments=dict(arguments) if isinstance(arguments, Mapping) else None,
            id=str(data.get("id", "")),
            parse_error=str(data.get("parse_error", "")),
        )


@dataclass(frozen=True)
class Message:
    """One chat message. `content` is text, or a sequence of parts (text and images).

    An assistant message may carry `tool_calls`; a `tool` message answers the call `tool_call_id`.
    """

    role: str  # "system" | "user" | "assistant" | "tool"
    content: str | tuple[Part, ...] = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""
    name: str = ""

    @property
    def text(self) -> str:
        """The message's text (text parts joined; images have none)."""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    @property
    def images(self) -> tuple[ImagePart, ...]:
        if isinstance(self.content, str):
            return ()
        return tuple(p for p in self.content if isinstance(p, ImagePart))

    @property
    def plain(self) -> bool:
        """Text only, no tool calls: stored and hashed in the original [role, content] form."""
        return isinstance(self.content, str) and not self.tool_calls and not self.tool_call_id and not self.name

    def to_json(self) -> Any:
        """The portable stored form: [role, content] for a plain message, else an object (no image bytes)."""
        if self.plain:
            return [self.role, self.content]
        out: dict[str, Any] = {"role": self.role}
        if isinstance(self.content, str):
            out["content"] = self.content
        else:
            out["content"] = [_part_json(p) for p in self.content]
        if self.tool_calls:
            out["tool_calls"] = [c.to_json() for c in self.tool_calls]
        if self.tool_call_id:
            out["tool_call_id"] = self.tool_call_id
        if self.name:
            out["name"] = self.name
        return out

    @staticmethod
    def from_json(data: Any) -> "Message":
        if isinstance(data, (list, tuple)) and len(data) == 2:
            return Message(str(data[0]), data[1] if isinstance(data[1], str) else json.dumps(data[1]))
        if not isinstance(data, Mapping):
            return Message("prompt", str(data))
        content = data.get("content", "")
        if isinstance(content, list):
            parts: tuple[Part, ...] = tuple(_part_from_json(p) for p in content)
            content = parts
        elif not isinstance(content, str):
            content = "" if content is None else str(content)
        return Message(
            role=str(data.get("role", "")),
            content=content,
            tool_calls=tuple(ToolCall.from_json(c) for c in data.get("tool_calls") or () if isinstance(c, Mapping)),
            tool_call_id=str(data.get("tool_call_id", "")),
            name=str(data.get("name", "")),
        )


def _part_json(part: Part) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    out: dict[str, Any] = {"type": "image", "source": part.source or part.url, "sha256": part.sha256}
    for key in ("media_type", "detail", "width", "height"):
        value = getattr(part, key)
        if value:
            out[key] = value
    return out


def _part_from_json(data: Any) -> Part:
    if isinstance(data, Mapping) and data.get("type") == "image":
        source = str(data.get("source", ""))
        return ImagePart(
            media_type=str(data.get("media_type", "")),
            url=source if source.startswith(("http://", "https://", "data:")) else "",
            detail=data.get("detail"),
            source=source,
            width=int(data.get("width") or 0),
            height=int(data.get("height") or 0),
            digest=str(data.get("sha256") or ""),
        )
    if isinstance(data, Mapping):
        return TextPart(str(data.get("text", "")))
    return TextPart(str(data))


@dataclass(frozen=True)
class Prompt:
    """A rendered request: chat messages, the tools offered (if any), and the raw text form.

    `tool_choice` is OpenAI's: "auto" | "none" | "required" | {"type": "function", "function": {"name": ...}}.
    `response_format` is sent as given (a JSON-mode or JSON-schema request), None sends none.
    """

    messages: tuple[Message, ...]
    tools: tuple[ToolDefinition, ...] = ()
    tool_choice: str | Mapping[str, Any] | None = None
    response_format: Mapping[str, Any] | None = None

    @property
    def text(self) -> str:
        return "\n\n".join(m.text for m in self.messages)

    @property
    def plain(self) -> bool:
        """Text messages only, nothing else asked: the form every stored prompt had before tools and images."""
        return (
            not self.tools
            and self.tool_choice is None
            and self.response_format is None
            and all(m.plain for m in self.messages)
        )

    def to_json(self) -> Any:
        """The stored form: a list of messages for a plain prompt (as always), else an object."""
        messages = [m.to_json() for m in self.messages]
        if self.plain:
            return messages
        out: dict[str, Any] = {"messages": messages}
        if self.tools:
            out["tools"] = [
                {"name": t.name, "description": t.description, "parameters": dict(t.parameters)} for t in self.tools
            ]
        if self.tool_choice is not None:
            out["tool_choice"] = self.tool_choice
        if self.response_format is not None:
            out["response_format"] = self.response_format
        return out

    @staticmethod
    def from_json(data: Any) -> "Prompt":
        if isinstance(data, list):
            return Prompt(tuple(Message.from_json(m) for m in data))
        if not isinstance(data, Mapping):
            return Prompt((Message("prompt", str(data)),))
        tools = tuple(
            ToolDefinition(str(t.get("name", "")), str(t.get("description", "")), dict(t.get("parameters") or {}))
            for t in data.get("tools") or ()
            if isinstance(t, Mapping)
        )
        return Prompt(
            tuple(Message.from_json(m) for m in data.get("messages") or ()),
            tools,
            data.get("tool_choice"),
            data.get("response_format"),
        )


def tool_calls_json(calls: Sequence[ToolCall]) -> str | None:
    """A completion's tool calls as stored with its sample (None when it made none)."""
    return json.dumps([c.to_json() for c in calls], ensure_ascii=False) if calls else None


def tool_calls_from_json(text: str | None) -> tuple[ToolCall, ...]:
    if not text:
        return ()
    try:
        data = json.loads(text)
    except ValueError:
        return ()
    return tuple(ToolCall.from_json(c) for c in data if isinstance(c, Mapping)) if isinstance(data, list) else ()


@dataclass(frozen=True)
class Generation:
    """Sampling settings sent with every request of a suite (plan overrides suite)."""

    max_tokens: int = 512
    temperature: float = 0.0
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True)
class Completion:
    """What a provider returned for one request, successful or not."""

    text: str = ""
    finish_reason: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    reasoning: str = ""  # reasoning_content / <think> text: stored, never graded
    latency_s: float = 0.0
    ttft_s: float | None = None
    served_model: str = ""
    error: str = ""  # empty when the request succeeded
    usage_estimated: bool = False  # the server reported no usable token counts: they were estimated
    tool_calls: tuple[ToolCall, ...] = ()  # the functions the model called, in the order it sent them
    # Of prompt_tokens, how many the server read from its prompt cache; None: it reported nothing about
    # a cache (most servers), 0: it reported that nothing was cached.
    cached_tokens: int | None = None

    @property
    def ok(self) -> bool:
        return not self.error

    def to_json(self) -> dict[str, Any]:
        """The response cache's stored form."""
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["tool_calls"] = [c.to_json() for c in self.tool_calls]
        return out

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> "Completion":
        """A cached completion back (fields an older harness did not store keep their defaults)."""
        known = {k: v for k, v in data.items() if k in Completion.__dataclass_fields__}
        known["tool_calls"] = tuple(ToolCall.from_json(c) for c in known.get("tool_calls") or ())
        return Completion(**known)


@dataclass(frozen=True)
class Grade:
    """A grader's verdict: score in [0, 1], pass/fail, and a short human-readable reason."""

    score: float
    passed: bool
    reason: str = ""
    extracted: str = ""  # what the grader read as the answer, shown in reports

    @staticmethod
    def of(passed: bool, reason: str = "", extracted: str = "") -> "Grade":
        return Grade(1.0 if passed else 0.0, passed, reason, extracted)


@dataclass(frozen=True)
class GraderSpec:
    name: str
    options: Mapping[str, Any] = field(default_factory=dict)


# The error class of an item whose prompt does not fit the model's window: an answer about the model
# (it cannot read this much), not a failure of the service. Stored errors of that class start with it.
CONTEXT_LENGTH = "context_length"


def error_class(error: str) -> str:
    """A stored sample error's class: "" (no error), "context_length" (over the window) or "error"."""
    if not error:
        return ""
    return CONTEXT_LENGTH if error.startswith(CONTEXT_LENGTH + ":") else "error"
