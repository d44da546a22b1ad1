"""An item with tools as a `Prompt`: the offered functions, `tool_choice` and the conversation it carries.

A suite says where they are with suite.yaml's `tools:` (`field`: the item field holding OpenAI-style
function definitions, default `tools`; `messages_field`: a field holding the conversation as
`[{role, content}]`, else the template renders the user turn; `choice`: the default `tool_choice`,
which an item's own `tool_choice` field overrides).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from harness.errors import HarnessError
from harness.records import Item, Message, Prompt, ToolDefinition
from harness.suite import Suite

_ROLES = ("system", "user", "assistant")


def tool_definitions(suite: Suite, item: Item, field: str) -> tuple[ToolDefinition, ...]:
    raw = item.fields.get(field)
    if not isinstance(raw, list):
        raise HarnessError(f"suite '{suite.name}': item {item.id}: field '{field}' must be a list of functions")
    tools = []
    for index, tool in enumerate(raw):
        function = tool.get("function", tool) if isinstance(tool, Mapping) else None  # {type, function} or bare
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str) or not function["name"]:
            raise HarnessError(f"suite '{suite.name}': item {item.id}: {field}[{index}] has no name")
        parameters = function.get("parameters") or {}
        if not isinstance(parameters, Mapping):
            raise HarnessError(f"suite '{suite.name}': item {item.id}: {field}[{index}].parameters is not an object")
        tools.append(ToolDefinition(function["name"], str(function.get("description") or ""), dict(parameters)))
    return tuple(tools)


def conversation(suite: Suite, item: Item, field: str) -> list[Message]:
    raw = item.fields.get(field)
    if not isinstance(raw, list) or not raw:
        raise HarnessError(
            f"suite '{suite.name}': item {item.id}: field '{field}' must be a non-empty list of messages"
        )
    out = []
    for index, message in enumerate(raw):
        if not isinstance(message, Mapping) or message.get("role") not in _ROLES:
            raise HarnessError(
                f"suite '{suite.name}': item {item.id}: {field}[{index}] needs a role among {', '.join(_ROLES)}"
            )
        content = message.get("content")
        out.append(Message(message["role"], content if isinstance(content, str) else str(content or "")))
    return out


def tool_prompt(suite: Suite, item: Item, head: list[Message], render_user: Callable[[], str]) -> Prompt:
    """The item's Prompt: `head` (system prompt, shots) + its conversation, with its tools offered."""
    config = suite.tools
    if suite.agent and not config.get("field"):  # an agent suite offers its environment's tools
        from harness.environments import get_environment

        tools = get_environment(str(suite.agent.get("environment")))({}).tools()
    else:
        tools = tool_definitions(suite, item, str(config.get("field") or "tools"))
    messages = list(head)
    messages_field = config.get("messages_field")
    if messages_field:
        turns = conversation(suite, item, str(messages_field))
        if turns[0].role == "system" and messages and messages[0].role == "system":
            messages = messages[1:]  # the item's own system message wins over the suite's
        messages += turns
    else:
        messages.append(Message("user", render_user()))
    choice: Any = item.fields.get("tool_choice") or config.get("choice")
    return Prompt(tuple(messages), tools=tools, tool_choice=choice)
