"""Separate a reasoning model's thinking from its answer: thinking is stored, never graded."""

from __future__ import annotations

import re

_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL | re.IGNORECASE)
_OPEN = re.compile(r"<think>", re.IGNORECASE)


def split_reasoning(text: str) -> tuple[str, str]:
    """Return (answer, reasoning) for a completion that may hold <think>...</think> blocks.

    An unclosed <think> (the model ran out of tokens while thinking) leaves no answer at all:
    grading half a thought would credit guesses the model never committed to.
    """
    if "<think" not in text.lower():
        return text, ""
    thoughts = [m.group(1).strip() for m in _THINK.finditer(text)]
    answer = _THINK.sub("", text)
    opened = _OPEN.search(answer)
    if opened:
        thoughts.append(answer[opened.end() :].strip())
        answer = answer[: opened.start()]
    # Some servers strip the opening tag but keep the closing one.
    if "</think>" in answer.lower():
        head, _, answer = answer.rpartition("</think>")
        thoughts.insert(0, head.strip())
    return answer.strip(), "\n\n".join(t for t in thoughts if t)
