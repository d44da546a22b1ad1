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
from typing import Callable


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
