"""The `agent_state` grader: did an agent loop leave its environment in the goal state (and make the calls asked)?

The goal state is what the item's gold actions reach from the same initial state (tau-bench's method):
the final state must equal it, so an extra refund or a cancelled order the policy forbade fails the task
as surely as a missing one. `must_call` / `must_not_call` (item fields) name functions that must / must
not appear among the calls; `answer_contains` strings the final answer must include (e.g. an amount).
"""

from __future__ import annotations

from typing import Any, Sequence

from harness.graders import register
from harness.records import Grade, Item, ToolCall


def _first_difference(got: Any, want: Any, path: str = "") -> str | None:
    if isinstance(got, dict) and isinstance(want, dict):
        for key in sorted(set(got) | set(want), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in got:
                return f"{where} missing"
            if key not in want:
                return f"{where} unexpected ({got[key]!r})"
            diff = _first_difference(got[key], want[key], where)
            if diff:
                return diff
        return None
    if isinstance(got, list) and isinstance(want, list):
        if len(got) != len(want):
            return f"{path}: {len(got)} entries, expected {len(want)}"
        for index, (g, w) in enumerate(zip(got, want)):
            diff = _first_difference(g, w, f"{path}[{index}]")
            if diff:
                return diff
        return None
    if isinstance(got, float) or isinstance(want, float):
        if isinstance(got, (int, float)) and isinstance(want, (int, float)) and abs(got - want) < 1e-6:
            return None
    return None if got == want else f"{path} is {got!r}, expected {want!r}"


@register("agent_state")
def agent_state(
    response: str,
    item: Item,
    calls: Sequence[ToolCall] = (),
    agent: Any = None,
    ignore: Sequence[str] = ("messages",),
) -> Grade:
    """Pass when the final state equals the goal state (keys in `ignore` aside) and the call rules hold."""
    if agent is None:
        return Grade.of(False, "no agent loop ran for this item (the suite needs agent: in suite.yaml)")
    names = [c.name for c in calls]
    for name in item.fields.get("must_call") or ():
        if name not in names:
            return Grade.of(False, f"never called {name}", ", ".join(names))
    for name in item.fields.get("must_not_call") or ():
        if name in names:
            return Grade.of(False, f"called {name}, which the policy forbids here", ", ".join(names))
    if agent.expected_state is not None:
        got = {k: v for k, v in agent.final_state.items() if k not in ignore}
        want = {k: v for k, v in agent.expected_state.items() if k not in ignore}
        diff = _first_difference(got, want)
        if diff:
            return Grade.of(False, f"final state differs: {diff}", ", ".join(names))
    for text in item.fields.get("answer_contains") or ():
        if str(text).lower() not in (response or "").lower():
            return Grade.of(False, f"the final answer does not say {text!r}", ", ".join(names))
    if agent.stop not in ("answered",):
        return Grade.of(False, f"the loop ended by {agent.stop} before a final answer", ", ".join(names))
    return Grade.of(True, f"goal state reached in {len(agent.turns)} turns, {len(names)} calls", ", ".join(names))
