"""The agent loop: model -> calls -> the environment's results -> model, with scripted user turns, a turn limit
and a per-item token budget. One item's whole conversation becomes one sample.

Every model turn is one request through the runner's `_request` (retries, pacing, cache), so a loop
behaves like any other request on every path that runs units one by one (local, Ray). The environment
is trusted code (harness.environments); the model's calls are only ever data handed to it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping

from harness.environments import ToolError, get_environment
from harness.errors import HarnessError
from harness.providers.text_calls import text_calls
from harness.providers.tool_names import map_calls_back
from harness.records import Completion, Item, Message, Prompt, ToolCall
from harness.suite import Suite

_AGENT_KEYS = {"environment", "state", "max_turns", "token_budget"}


@dataclass(frozen=True)
class AgentConfig:
    """suite.yaml `agent:`: which environment, its initial state (a JSON file in the suite), and the limits."""

    environment: str
    state: Mapping[str, Any]
    max_turns: int = 12
    token_budget: int = 30_000

    @staticmethod
    def of(suite: Suite) -> "AgentConfig":
        raw = dict(suite.agent)
        where = f"{suite.dir / 'suite.yaml'}: agent"
        unknown = sorted(set(raw) - _AGENT_KEYS)
        if unknown or "environment" not in raw:
            raise HarnessError(
                f"{where} needs environment (and optionally {', '.join(sorted(_AGENT_KEYS - {'environment'}))}); unknown: {', '.join(unknown) or 'none'}"
            )
        state: Mapping[str, Any] = {}
        if raw.get("state"):
            path = Path(suite.dir) / str(raw["state"])
            try:
                state = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise HarnessError(f"{where}.state: cannot read {path}: {exc}") from None
        for key in ("max_turns", "token_budget"):
            if key in raw and (isinstance(raw[key], bool) or not isinstance(raw[key], int) or raw[key] < 1):
                raise HarnessError(f"{where}.{key}: must be a whole number >= 1, got {raw[key]!r}")
        get_environment(str(raw["environment"]))  # an unknown environment fails before any request
        return AgentConfig(
            str(raw["environment"]),
            state,
            int(raw.get("max_turns", 12)),
            int(raw.get("token_budget", 30_000)),
        )

    def new_environment(self):
        return get_environment(self.environment)(self.state)


@dataclass
class AgentOutcome:
    """What a loop did: the transcript, per-turn figures, why it stopped, the final and the expected state."""

    messages: list[Message] = field(default_factory=list)
    turns: list[dict] = field(default_factory=list)  # per model turn: latency_s, prompt/completion tokens, calls
    stop: str = ""  # answered | max_turns | token_budget | error
    final_state: dict = field(default_factory=dict)
    expected_state: dict | None = None
    calls: list[ToolCall] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "messages": [m.to_json() for m in self.messages],
            "turns": self.turns,
            "stop": self.stop,
            "final_state": self.final_state,
            "expected_state": self.expected_state,
        }


def expected_state(config: AgentConfig, item: Item) -> dict | None:
    """The state the item's gold actions reach from the initial state (None when the item lists none)."""
    actions = item.fields.get("gold_actions")
    if actions is None:
        return None
    env = config.new_environment()
    for index, action in enumerate(actions):
        try:
            env.call(action["name"], action.get("arguments") or {})
        except (ToolError, KeyError, TypeError) as exc:
            raise HarnessError(f"item '{item.id}': gold action {index} fails: {exc}") from None
    return env.snapshot()


def _result_text(env, call: ToolCall) -> str:
    if call.arguments is None:
        return json.dumps({"error": f"arguments are not a JSON object ({call.parse_error})"})
    try:
        result = env.call(call.name, call.arguments)
    except ToolError as exc:
        return json.dumps({"error": str(exc)}, ensure_ascii=False)
    except TypeError as exc:  # arguments of the wrong shape for the method
        return json.dumps({"error": f"bad arguments: {exc}"}, ensure_ascii=False)
    return json.dumps(result, ensure_ascii=False, default=str)


Request = Callable[[Prompt], Awaitable[tuple[Completion, int, bool]]]


async def run_agent(config: AgentConfig, item: Item, first: Prompt, request: Request, text_style: str | None = None):
    """Run one item's loop; returns (the task's completion, attempts, fatal, AgentOutcome).

    The completion sums tokens and latency over turns, carries every call made, and the last answer's
    text; a turn that failed after its retries fails the task with that error.
    """
    env = config.new_environment()
    outcome = AgentOutcome(messages=list(first.messages))
    user_turns = [str(t) for t in item.fields.get("user_turns") or ()]
    totals = {"prompt": 0, "completion": 0, "latency": 0.0, "attempts": 0}
    last = Completion()
    ttft = None
    estimated = False
    for _ in range(config.max_turns):
        prompt = replace(first, messages=tuple(outcome.messages))
        completion, attempts, fatal = await request(prompt)
        totals["attempts"] += attempts
        if completion.error:
            outcome.stop = "error"
            outcome.final_state = env.snapshot()
            # The turns already answered were paid for: their tokens stay on the failed task.
            failed = Completion(
                error=completion.error,
                prompt_tokens=int(totals["prompt"]),
                completion_tokens=int(totals["completion"]),
                latency_s=totals["latency"],
                usage_estimated=estimated,
                tool_calls=tuple(outcome.calls),
            )
            return failed, totals["attempts"], fatal, outcome
        completion = map_calls_back(prompt, completion)
        if text_style and not completion.tool_calls:  # the model's plan asks to read calls written in its text
            parsed = text_calls(completion.text, text_style)
            if parsed:
                completion = replace(
                    completion, tool_calls=map_calls_back(prompt, replace(completion, tool_calls=parsed)).tool_calls
                )
        last = completion
        ttft = ttft if ttft is not None else completion.ttft_s
        estimated = estimated or completion.usage_estimated
        totals["prompt"] += completion.prompt_tokens
        totals["completion"] += completion.completion_tokens
        totals["latency"] += completion.latency_s
        turn = len(outcome.turns)
        calls = tuple(replace(c, id=c.id or f"call_{turn}_{i}") for i, c in enumerate(completion.tool_calls))
        outcome.turns.append(
            {
                "latency_s": round(completion.latency_s, 4),
                "prompt_tokens": completion.prompt_tokens,
                "completion_tokens": completion.completion_tokens,
                "calls": len(calls),
            }
        )
        outcome.messages.append(Message("assistant", completion.text, tool_calls=calls))
        if calls:
            outcome.calls.extend(calls)
            for call in calls:
                outcome.messages.append(Message("tool", _result_text(env, call), tool_call_id=call.id, name=call.name))
        elif user_turns:
            outcome.messages.append(Message("user", user_turns.pop(0)))
        else:
            outcome.stop = "answered"
            break
        if totals["prompt"] + totals["completion"] >= config.token_budget:
            outcome.stop = "token_budget"
            break
    else:
        outcome.stop = "max_turns"
    outcome.final_state = env.snapshot()
    outcome.expected_state = expected_state(config, item)
    task = Completion(
        text=last.text,
        finish_reason=last.finish_reason,
        prompt_tokens=int(totals["prompt"]),
        completion_tokens=int(totals["completion"]),
        latency_s=totals["latency"],
        ttft_s=ttft,
        served_model=last.served_model,
        usage_estimated=estimated,
        tool_calls=tuple(outcome.calls),
    )
    return task, totals["attempts"], False, outcome
