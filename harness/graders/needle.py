"""The `needle` grader: exact recall of the codes hidden in a needle item (harness/suite/needle.py)."""

from __future__ import annotations

import re

from harness.graders import register
from harness.graders._text import answer_text
from harness.records import Grade, Item


def _states(text: str, value: str) -> bool:
    """Whether `text` states `value` as a number of its own, digits written apart ("4 812 937") or not."""
    if not value.isdigit():
        return value in text
    pattern = "[ ,\u00a0\u202f']?".join(re.escape(d) for d in value)
    return re.search(rf"(?<!\d){pattern}(?!\d)", text) is not None


@register("needle")
def needle(response: str, item: Item) -> Grade:
    """Score: the share of the item's `values` the answer states; an answer that states a distractor's
    value (a near-miss fact about another key) scores 0, since it did not tell the two apart."""
    fields = item.fields
    values = [str(v) for v in fields.get("values") or ()]
    if not values:
        return Grade.of(False, "item has no needle values (not a needle suite item?)")
    text = answer_text(response)
    found = [v for v in values if _states(text, v)]
    traps = [str(v) for v in fields.get("distractor_values") or () if _states(text, str(v))]
    shown = ", ".join(found) if found else "none"
    if traps:
        return Grade(0.0, False, f"gave a distractor's code ({', '.join(traps)}) instead of telling them apart", shown)
    score = len(found) / len(values)
    return Grade(score, score == 1.0, f"recalled {len(found)} of {len(values)} code(s)", shown)
