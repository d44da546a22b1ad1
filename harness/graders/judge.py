"""The `judge` grader: another model of the plan grades the response against a rubric template.

The rubric is a Jinja template in the suite folder; it sees the item's fields and `response`.
The judge must end its reply with a line `VERDICT: PASS` or `VERDICT: FAIL` (or, with
`scale: N`, `SCORE: k` for 0 <= k <= N). The verdict is parsed strictly: no verdict line, or
lines that disagree, fail the sample with the reason "unparseable verdict" instead of guessing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Mapping

from harness.errors import HarnessError
from harness.graders import Needs, register
from harness.providers.reasoning import split_reasoning
from harness.records import Grade, Item, Message

_VERDICT = re.compile(r"^\W*verdict\W*:\W*(pass|fail)\W*$", re.IGNORECASE | re.MULTILINE)
_SCORE = re.compile(r"^\W*score\W*:\s*(\d+(?:\.\d+)?)\s*(?:/\s*\d+)?\W*$", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class JudgeContext:
    """What a run lends the judge grader: a way to ask a plan model, and the suite's templates."""

    ask: Callable[[str, list[Message]], str]  # (model name, messages) -> reply text
    render: Callable[[str, Mapping], str]  # (template file, fields) -> text


def parse_verdict(reply: str, scale: int | None = None) -> tuple[float | None, str]:
    """(score in [0, 1] or None when unparseable, what was read)."""
    answer, _ = split_reasoning(reply)
    if scale:
        found = {float(m) for m in _SCORE.findall(answer)}
        if len(found) != 1:
            return None, f"{len(found)} distinct SCORE lines"
        value = found.pop()
        if not 0 <= value <= scale:
            return None, f"SCORE {value:g} outside 0..{scale}"
        return value / scale, f"SCORE {value:g}/{scale}"
    found = {v.lower() for v in _VERDICT.findall(answer)}
    if len(found) != 1:
        return None, f"{len(found)} distinct VERDICT lines"
    verdict = found.pop()
    return (1.0 if verdict == "pass" else 0.0), f"VERDICT {verdict.upper()}"


@register("judge", needs=Needs(judge="model", whole_item=True))
def judge(
    response: str,
    item: Item,
    *,
    model: str = "",
    rubric: str = "judge.j2",
    system: str | None = None,
    scale: int | None = None,
    pass_threshold: float = 1.0,
    context: JudgeContext | None = None,
) -> Grade:
    if not model:
        raise HarnessError("grader 'judge' needs options.model: the name of a model in the plan to act as judge")
    if context is None:
        raise HarnessError(
            "grader 'judge' asks a model of the plan, so it only runs inside `harness run` (plan models: "
            "add the judge model to the plan's models)"
        )
    fields = {**item.fields, "response": response, "reference": item.reference}
    messages = []
    if system:
        messages.append(Message("system", context.render(system, fields)))
    messages.append(Message("user", context.render(rubric, fields)))
    reply = context.ask(model, messages)
    score, read = parse_verdict(reply, scale)
    if score is None:
        return Grade(0.0, False, f"judge {model}: unparseable verdict ({read})", reply[-200:])
    return Grade(score, score >= pass_threshold, f"judge {model}: {read}", read)
