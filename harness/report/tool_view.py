"""Tool samples as people read them: the tools offered, the calls made (with parsed and raw arguments), the
outcome class, and for agent loops the turn-by-turn transcript (results, per-turn figures, final state)."""

from __future__ import annotations

import json
from typing import Any

from harness.records import Message, Prompt, tool_calls_from_json


def _call_line(name: str, arguments: Any, raw: str, parse_error: str = "") -> str:
    if arguments is None:
        return f"{name}  <arguments not JSON: {parse_error}>  raw: {raw}"
    return f"{name}({json.dumps(arguments, ensure_ascii=False)})"


def _tools_offered(messages_json: str | None) -> str:
    if not messages_json:
        return ""
    try:
        prompt = Prompt.from_json(json.loads(messages_json))
    except ValueError:
        return ""
    lines = []
    for tool in prompt.tools:
        params = (tool.parameters or {}).get("properties") or {}
        required = set((tool.parameters or {}).get("required") or ())
        shown = ", ".join(
            f"{p}{'' if p in required else '?'}: {(d or {}).get('type', 'any')}" for p, d in params.items()
        )
        lines.append(f"{tool.name}({shown}) — {tool.description}")
    if prompt.tool_choice is not None:
        lines.append(f"tool_choice: {json.dumps(prompt.tool_choice, ensure_ascii=False)}")
    return "\n".join(lines)


def _transcript(data: dict) -> str:
    lines = []
    turns = data.get("turns") or []
    turn = 0
    for raw in data.get("messages") or []:
        m = Message.from_json(raw)
        if m.role == "assistant":
            figures = turns[turn] if turn < len(turns) else {}
            turn += 1
            lines.append(
                f"[turn {turn}] assistant · {figures.get('latency_s', '—')} s · "
                f"{figures.get('prompt_tokens', '—')} → {figures.get('completion_tokens', '—')} tokens"
            )
            if m.text:
                lines.append(f"  {m.text}")
            lines += [f"  -> {_call_line(c.name, c.arguments, c.raw_arguments, c.parse_error)}" for c in m.tool_calls]
        elif m.role == "tool":
            lines.append(f"  <- {m.name or m.tool_call_id}: {m.text}")
        else:
            lines.append(f"{m.role}: {m.text}")
    lines.append(f"stopped: {data.get('stop', '')}")
    return "\n".join(lines)


def _state_lines(data: dict) -> str:
    final, expected = data.get("final_state"), data.get("expected_state")
    out = ["final state:", json.dumps(final, ensure_ascii=False, indent=1, sort_keys=True)]
    if expected is not None and expected != final:
        out += [
            "goal state (reached by the task's gold actions):",
            json.dumps(expected, ensure_ascii=False, indent=1, sort_keys=True),
        ]
    return "\n".join(out)


def sections(messages_json, calls_json, outcome, transcript_json, cap: int) -> list[tuple[str, str]]:
    """(label, text) sections, each cut to `cap` characters; empty for samples of suites without tools."""
    out: list[tuple[str, str]] = []
    offered = _tools_offered(messages_json)
    if not offered and not outcome:
        return out
    if offered:
        out.append(("Tools offered", offered))
    calls = tool_calls_from_json(calls_json)
    shown = "\n".join(_call_line(c.name, c.arguments, c.raw_arguments, c.parse_error) for c in calls)
    out.append((f"Calls made · {len(calls)} · outcome {outcome or '—'}", shown or "(no call)"))
    if transcript_json:
        try:
            data = json.loads(transcript_json)
        except ValueError:
            data = {}
        out.append(("Transcript", _transcript(data)))
        out.append(("State", _state_lines(data)))
    return [(label, text if len(text) <= cap else text[:cap] + " …") for label, text in out]
