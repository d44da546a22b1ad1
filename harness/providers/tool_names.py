"""Tool names a server accepts: a suite's names (BFCL's `math.factorial`) mapped out to the wire and back.

OpenAI-style APIs accept only `^[A-Za-z0-9_-]{1,64}$` as a function name. The mapping is computed from
the prompt alone (its tools, in order), so the request builder and the reader of the answer agree
without sharing state, and grading and reports only ever see the suite's names.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Mapping

from harness.records import Completion, Prompt, ToolCall

_ALLOWED = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_BAD = re.compile(r"[^A-Za-z0-9_-]")


def wire_names(prompt: Prompt) -> dict[str, str]:
    """The suite's name -> the name sent, for every offered tool whose name a server would refuse."""
    names = [t.name for t in prompt.tools]
    taken = {n for n in names if _ALLOWED.match(n)}
    out: dict[str, str] = {}
    for name in names:
        if _ALLOWED.match(name) or name in out:
            continue
        base = (_BAD.sub("_", name) or "tool")[:60]
        candidate, n = base, 2
        while candidate in taken:  # `a.b` beside an offered `a_b`: both must stay distinct
            candidate, n = f"{base}_{n}", n + 1
        taken.add(candidate)
        out[name] = candidate
    return out


def suite_names(prompt: Prompt) -> dict[str, str]:
    """The inverse of `wire_names`: a name the server sent -> the suite's name."""
    return {wire: name for name, wire in wire_names(prompt).items()}


def map_calls_back(prompt: Prompt, completion: Completion) -> Completion:
    """The completion with its calls named as the suite names them (unchanged when nothing was mapped)."""
    back = suite_names(prompt)
    if not back or not completion.tool_calls:
        return completion
    return replace(completion, tool_calls=rename(completion.tool_calls, back))


def rename(calls: tuple[ToolCall, ...], names: Mapping[str, str]) -> tuple[ToolCall, ...]:
    return tuple(replace(c, name=names.get(c.name, c.name)) for c in calls)
