"""The typed values that flow between pipeline stages (item -> prompt -> completion -> grade).

Stages exchange these frozen dataclasses, never dicts or ORM rows, so each stage can be
read and tested on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class Item:
    """One evaluation item of a suite.

    `fields` holds the item's raw fields as the suite's data defines them (the template sees
    them by name); `reference` is the gold answer the grader compares against (a number,
    a letter, a string, or for code the test source); `group` clusters items for standard
    errors (C-Eval subject, BBH task), empty when items are independent.
    """

    id: str
    fields: Mapping[str, Any]
    reference: Any = None
    group: str = ""


@dataclass(frozen=True)
class Message:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True)
class Prompt:
    """A rendered request: chat messages plus the raw text form for completion-style models."""

    messages: tuple[Message, ...]

    @property
    def text(self) -> str:
        return "\n\n".join(m.content for m in self.messages)


@dataclass(frozen=True)
class Generation:
    """Sampling settings sent with every request of a suite (plan overrides suite)."""

    max_tokens: int = 512
    temperature: float = 0.0
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True)
class Completion:
    """What a provider returned for one request, successful or not."""

    text: str = ""
    finish_reason: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    reasoning: str = ""  # reasoning_content / <think> text: stored, never graded
    latency_s: float = 0.0
    ttft_s: float | None = None
    served_model: str = ""
    error: str = ""  # empty when the request succeeded
    usage_estimated: bool = False  # the server reported no usable token counts: they were estimated

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass(frozen=True)
class Grade:
    """A grader's verdict: score in [0, 1], pass/fail, and a short human-readable reason."""

    score: float
    passed: bool
    reason: str = ""
    extracted: str = ""  # what the grader read as the answer, shown in reports

    @staticmethod
    def of(passed: bool, reason: str = "", extracted: str = "") -> "Grade":
        return Grade(1.0 if passed else 0.0, passed, reason, extracted)


@dataclass(frozen=True)
class GraderSpec:
    name: str
    options: Mapping[str, Any] = field(default_factory=dict)


def money(x: float) -> str:
    """A cost in US dollars as every command and report shows it: "—" when unknown, "$0" only for a true
    zero, cents from $1 up, else three significant digits (never exponent notation, never a tiny cost as 0)."""
    if not isinstance(x, (int, float)) or not math.isfinite(x):
        return "—"
    if x == 0:
        return "$0"
    if abs(x) >= 1:
        return f"${x:,.2f}"
    decimals = min(10, 2 - math.floor(math.log10(abs(x))))
    return f"${x:.{decimals}f}"
