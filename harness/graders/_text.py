"""Text helpers shared by the graders: the answer part of a response, and answer clean-up."""

from __future__ import annotations

import re

from harness.providers.reasoning import split_reasoning


def answer_text(response: str) -> str:
    """The part of `response` a grader may read: newlines unified, reasoning blocks removed.

    The engine already strips `<think>…</think>`; this repeats it so a block that slipped
    through is never graded. An unclosed `<think>` leaves nothing after it: numbers or letters
    inside half a thought are not the model's answer.
    """
    text = (response or "").replace("\r\n", "\n").replace("\r", "\n")
    answer, _ = split_reasoning(text)
    return answer


_WRAPPERS = (
    ("**", "**"),
    ("__", "__"),
    ("*", "*"),
    ("`", "`"),
    ('"', '"'),
    ("'", "'"),
    ("“", "”"),
    ("‘", "’"),
    ("「", "」"),
    ("$", "$"),
)


def clean_answer(text: str) -> str:
    """Strip what models wrap a short answer in: whitespace, one trailing period, `**`, quotes,
    backticks, `$…$`; wrappers repeatedly ("**(A)**." -> "(A)", "**`x`**" -> "x")."""
    prev = None
    s = text
    period_stripped = False  # one period only: "cd .." and "cd ." stay different answers
    while s != prev:
        prev = s
        s = s.strip()
        if not period_stripped and s.endswith((".", "。")) and not s.endswith(".."):
            s = s[:-1].rstrip()
            period_stripped = True
        for left, right in _WRAPPERS:
            if len(s) >= len(left) + len(right) + 1 and s.startswith(left) and s.endswith(right):
                s = s[len(left) : len(s) - len(right)]
                break
    return s


_SPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Case-insensitive, whitespace-collapsed form for comparing short answers."""
    return _SPACE.sub(" ", text).strip().casefold()


def short(text: str, limit: int = 60) -> str:
    """A one-line excerpt for reasons."""
    one = _SPACE.sub(" ", text).strip()
    return one if len(one) <= limit else one[: limit - 1] + "…"
