"""The `pairwise` grader: judge models compare a candidate's answer with the incumbent's, in both orders.

Each judge sees the suite's rubric (a Jinja template with `request`, `answer_a`, `answer_b`) twice:
the candidate as A, then as B. A judge's verdict on the pair is the candidate's win or loss only
when both orders agree; a verdict that flips with the order, or a tie in either, is a tie
(MT-Bench's rule, which cancels a judge's preference for a position). The sample's score is the
mean over judges (win 1, tie 0.5, loss 0); every judge's two verdicts, their cost and the answer
lengths are kept in `extracted` as JSON for the pairwise statistics (`harness.traffic.pairwise`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from harness.errors import HarnessError
from harness.graders import Needs, register
from harness.providers.reasoning import split_reasoning
from harness.records import Grade, Item, Message

MARK = "pairwise"  # first key of the extracted JSON: how readers recognise a pairwise grade
NOT_JUDGED = "pairwise: not judged"  # the reason's start when no comparison came back (the run stores an error)
_VERDICT = re.compile(r"^\W*verdict\W*:\W*(a|b|tie)\W*$", re.IGNORECASE | re.MULTILINE)
OUTCOME_SCORE = {"win": 1.0, "tie": 0.5, "loss": 0.0}


@dataclass(frozen=True)
class JudgeReply:
    text: str
    cost_usd: float
    requests: int  # requests sent for it (0: answered from the cache)
    error: str = ""


@dataclass(frozen=True)
class PairwiseContext:
    """What a run lends the pairwise grader for one sample."""

    judges: tuple[str, ...]
    ask: Callable[[str, list[Message]], JudgeReply]  # (judge, messages) -> reply
    render: Callable[[str, Mapping], str]  # (template file, fields) -> text
    incumbent: Callable[[], tuple[str | None, str]]  # () -> (the incumbent's answer, why there is none)
    is_incumbent: bool = False  # the sample being graded is the incumbent's own


def parse_choice(reply: str) -> str | None:
    """ "A", "B" or "TIE" from the reply's last verdict line; None when there is none or they disagree."""
    answer, _ = split_reasoning(reply)
    found = {v.upper() for v in _VERDICT.findall(answer)}
    return found.pop() if len(found) == 1 else None


def outcome(candidate_first: str | None, candidate_second: str | None) -> str | None:
    """The candidate's result from the verdicts with it as A, then as B (None: a verdict is missing)."""
    if candidate_first is None or candidate_second is None:
        return None
    first = {"A": "win", "B": "loss", "TIE": "tie"}[candidate_first]
    second = {"B": "win", "A": "loss", "TIE": "tie"}[candidate_second]
    return first if first == second else "tie"


def request_text(request: Any) -> str:
    """The logged conversation as the judge reads it: one "role: text" block per message."""
    if not isinstance(request, Mapping):
        return str(request or "")
    blocks = []
    for m in request.get("messages") or ():
        if not isinstance(m, Mapping):
            continue
        content = m.get("content")
        if isinstance(content, list):
            content = " ".join(str(p.get("text", "[image]")) for p in content if isinstance(p, Mapping))
        blocks.append(f"{m.get('role', '')}: {content or ''}")
    return "\n\n".join(blocks)


@register("pairwise", needs=Needs(incumbent=True, whole_item=True))
def pairwise(
    response: str,
    item: Item,
    *,
    rubric: str = "pairwise.j2",
    system: str | None = None,
    judges: list[str] | None = None,
    request_field: str = "request",
    incumbent_field: str = "incumbent",
    context: PairwiseContext | None = None,
) -> Grade:
    if context is None:
        raise HarnessError(
            "grader 'pairwise' asks the plan's judges, so it only runs inside `harness run` "
            "(list the judge models under 'judges:' in the plan)"
        )
    if context.is_incumbent:
        return Grade(0.5, False, "pairwise: the incumbent's own answer (the baseline)", "")
    baseline, why = context.incumbent()
    if baseline is None:
        detail = {MARK: 1, "judges": [], "unjudged": why}
        return Grade(0.0, False, f"{NOT_JUDGED}: {why}", json.dumps(detail))
    fields = {**item.fields, "request": request_text(item.fields.get(request_field)), "reference": item.reference}
    rows = []
    for judge in context.judges:
        row: dict[str, Any] = {"judge": judge, "cost": 0.0, "requests": 0}
        for order, (a, b) in (("ab", (response, baseline)), ("ba", (baseline, response))):
            messages = []
            values = {**fields, "answer_a": a, "answer_b": b}
            if system:
                messages.append(Message("system", context.render(system, values)))
            messages.append(Message("user", context.render(rubric, values)))
            reply = context.ask(judge, messages)
            row["cost"] += reply.cost_usd
            row["requests"] += reply.requests
            row[order] = None if reply.error else parse_choice(reply.text)
            if reply.error:
                row["error"] = reply.error[:200]
        row["outcome"] = outcome(row["ab"], row["ba"])
        rows.append(row)
    judged = [r["outcome"] for r in rows if r["outcome"] is not None]
    detail = {MARK: 1, "judges": rows, "len_candidate": len(response), "len_incumbent": len(baseline)}
    if not judged:
        detail["unjudged"] = "no judge gave a readable verdict in both orders"
        return Grade(0.0, False, f"{NOT_JUDGED}: no readable verdict in both orders", json.dumps(detail))
    score = sum(OUTCOME_SCORE[o] for o in judged) / len(judged)
    summary = ", ".join(f"{r['judge']}: {r['outcome'] or 'unreadable'}" for r in rows)
    return Grade(score, score > 0.5, f"pairwise vs incumbent: {summary}", json.dumps(detail))
