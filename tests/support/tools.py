"""Tool answers for the fake server, with the quirks real servers show (each has a test in test_tools_*.py).

`tool_answerer(decide, quirk)` returns a `ServerState.tool_answer`: `decide(payload)` says which calls to
make (a list of (name, arguments dict)), or a string to answer as text, or None for no tool answer; the
quirk changes how the calls are written:

- ""              clean OpenAI calls; streamed calls are split into argument pieces, interleaved by index
- "empty_list"    finish_reason tool_calls with an empty call list (DeepSeek)
- "empty_quoted"  `{}""` as the arguments of a call (DeepSeek, tools without parameters)
- "hermes"        the call left in the text as a Hermes <tool_call> block (GLM's forced calls)
- "qwen_xml"      the call left in the text as Qwen3-Coder XML
- "kimi_ids"      ids in Kimi's `functions.NAME:IDX` form
- "llamacpp"      llama.cpp's server: id and name repeated in every streamed delta, plus the legacy
                  `function_call` with the name `NAME:` in non-streamed answers
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Callable

from harness.records import ToolCall


def _id(quirk: str, name: str, index: int) -> str:
    return f"functions.{name}:{index}" if quirk == "kimi_ids" else f"call_{index}"


def _pieces(text: str) -> list[str]:
    step = max(1, len(text) // 3)
    return [text[i : i + step] for i in range(0, len(text), step)] or [""]


def tool_answerer(decide: Callable[[dict], object], quirk: str = "") -> Callable[[dict], dict | None]:
    def answer(payload: dict) -> dict | None:
        decided = decide(payload)
        if decided is None:
            return None
        if isinstance(decided, str):
            return {"message": {"content": decided}, "finish_reason": "stop", "deltas": [{"content": decided}]}
        calls = list(decided)
        if quirk == "empty_list":
            return {"message": {"content": None, "tool_calls": []}, "finish_reason": "tool_calls", "deltas": []}
        if quirk in ("hermes", "qwen_xml"):
            if quirk == "hermes":
                text = "\n".join(
                    f"<tool_call>\n{json.dumps({'name': n, 'arguments': a})}\n</tool_call>" for n, a in calls
                )
            else:
                text = "\n".join(
                    "<tool_call>\n<function="
                    + n
                    + ">\n"
                    + "".join(
                        f"<parameter={k}>\n{v if isinstance(v, str) else json.dumps(v)}\n</parameter>\n"
                        for k, v in a.items()
                    )
                    + "</function>\n</tool_call>"
                    for n, a in calls
                )
            return {"message": {"content": text}, "finish_reason": "stop", "deltas": [{"content": text}]}
        raw = ['{}""' if quirk == "empty_quoted" else json.dumps(a) for _, a in calls]
        whole = [
            {"id": _id(quirk, n, i), "type": "function", "function": {"name": n, "arguments": raw[i]}}
            for i, (n, _) in enumerate(calls)
        ]
        message: dict = {"content": None, "tool_calls": whole}
        if quirk == "llamacpp" and calls:
            message["function_call"] = {"name": f"{calls[0][0]}:", "arguments": raw[0]}
        # Streamed: each call's arguments in pieces, the calls' pieces interleaved by index.
        per_call = [_pieces(r) for r in raw]
        deltas = []
        for step in range(max(len(p) for p in per_call) if per_call else 0):
            for i, (name, _) in enumerate(calls):
                if step >= len(per_call[i]):
                    continue
                call = {"index": i, "function": {"arguments": per_call[i][step]}}
                if step == 0 or quirk == "llamacpp":
                    call.update(id=_id(quirk, name, i), type="function")
                    call["function"]["name"] = name
                deltas.append({"tool_calls": [call]})
        return {"message": message, "finish_reason": "tool_calls", "deltas": deltas}

    return answer


def gold_calls(reference):
    """The calls a perfect model makes for BFCL-style expected calls."""
    calls = []
    for expected in reference:
        ((name, params),) = expected.items()
        args = {k: first_accepted(acc) for k, acc in params.items() if any(v != "" for v in acc)}
        calls.append(ToolCall.parse(name, json.dumps(args, ensure_ascii=False)))
    return tuple(calls)


def scripted_agent(break_policy: set[str] = frozenset(), loop_forever: bool = False):
    """A model that plays each task's gold actions (after asking for the email when a task scripts it)."""

    def decide(payload):
        messages = payload["messages"]
        first_user = next(m["content"] for m in messages if m["role"] == "user")
        task = agent_tasks()[first_user]
        if loop_forever:
            return [("list_orders", {"customer_id": "C1"})]
        if messages[-1]["role"] == "tool":
            return " ".join(["Done: I have handled your request.", *task.fields.get("answer_contains", ())])
        users = [m for m in messages if m["role"] == "user"]
        if task.fields.get("user_turns") and len(users) == 1:
            return "Could you tell me your email address, please?"
        calls = [(a["name"], a["arguments"]) for a in task.fields["gold_actions"]]
        if first_user in break_policy:
            calls.append(("refund_order", {"order_id": "A102", "amount": 35.0, "reason": "goodwill"}))
        if task.fields.get("must_call"):
            calls.append(("list_orders", {"customer_id": "C2"}))
        if not calls:
            return "Sorry, our policy does not allow that. B201 is shipped."
        return [("find_customer", {"email": "x@example.com"})] + calls

    return decide


def oracle(wrong: set[str] = frozenset()):
    gold = gold_by_question()

    def decide(payload):
        assert all(WIRE_NAME.match(t["function"]["name"]) for t in payload["tools"])
        question = payload["messages"][-1]["content"]
        calls = gold[question]
        if question in wrong:
            return "I would rather not call anything."
        return calls or "None of these functions fits; here is my answer in text."

    return decide


def gold_by_question() -> dict[str, list]:
    from harness.suite import load_suite

    suite = load_suite("tool-calls")
    out = {}
    for item in suite.items():
        calls = []
        for expected in item.reference:
            ((name, params),) = expected.items()
            args = {k: next(v for v in acc if v != "") for k, acc in params.items() if any(v != "" for v in acc)}
            calls.append((name.replace(".", "_"), args))  # the server only ever sees names it accepts
        out[item.fields["messages"][-1]["content"]] = calls
    return out


WIRE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what OpenAI accepts as a tool name


@cache
def agent_tasks() -> dict:
    """The agent-tasks suite's items by their instruction (what a scripted model sees first)."""
    from harness.suite import load_suite

    return {it.fields["instruction"]: it for it in load_suite("agent-tasks").items()}


def _pick(value):
    """One accepted value of a nested key: its list's first non-empty entry, or the value itself."""
    return first_accepted(value) if isinstance(value, list) and any(x != "" for x in value) else value


def first_accepted(accepted):
    """The first accepted value, with BFCL's nested dicts (each key's accepted list) resolved the same way."""
    value = next(v for v in accepted if v != "")
    if isinstance(value, dict):
        return {k: _pick(v) for k, v in value.items() if v != [""]}
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return [{k: _pick(v) for k, v in d.items() if v != [""]} for d in value]
    return value
