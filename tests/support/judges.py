"""The fake server plays a traffic world: candidates whose answers carry a planted quality, and judges with known biases.

Every answer reads "Answer to #I quality:Q" plus optional padding. The truth is "higher Q is better".
Judges read the two answers out of the pairwise rubric (`[Answer A]` ... `[Answer B]` ... `Reply`):
- `position`: names the better answer; when they are equally good it says A (prefers whatever is first);
- `length`: with probability |diff| / LENGTH_SCALE (drawn from the item number, the same in both
  orders) prefers the longer answer, otherwise names the better one;
- `truthful`: names the better one, TIE when equal;
- `mute`: reads both answers and never says a verdict line.
"""

from __future__ import annotations

import hashlib
import json
import re

LENGTH_SCALE = 500
_ANSWER = re.compile(r"\[Answer A\]\n(.*?)\n\n\[Answer B\]\n(.*?)\n\nReply", re.S)
_QUALITY = re.compile(r"quality:(\d+)")
_TICKET = re.compile(r"#(\d+)")


def answer(item: int, quality: int, padding: int = 0) -> str:
    return f"Answer to #{item} quality:{quality}" + (" " + "x" * (padding - 1) if padding else "")


def _draw(item: int) -> int:
    return int(hashlib.sha256(str(item).encode()).hexdigest()[:8], 16) % LENGTH_SCALE


def judge_reply(kind: str, prompt: str) -> str:
    m = _ANSWER.search(prompt)
    if m is None:
        return "I cannot find the two answers."
    a, b = m.group(1), m.group(2)
    qa, qb = int(_QUALITY.search(a).group(1)), int(_QUALITY.search(b).group(1))
    item = int(_TICKET.search(a).group(1))
    better = "A" if qa > qb else "B" if qb > qa else "TIE"
    if kind == "mute":
        return "Both answers have merit; I would rather not choose."
    if kind == "position" and better == "TIE":
        better = "A"
    if kind == "length" and _draw(item) < abs(len(a) - len(b)):
        better = "A" if len(a) > len(b) else "B"
    return f"Both answers read.\nVERDICT: {better}"


def traffic_responder(answers: dict[str, dict[int, str]], judges: dict[str, str]):
    """answers: model -> item -> text; judges: judge model -> kind."""

    def respond(model: str, messages: list[dict]) -> str:
        text = str(messages[-1].get("content", ""))
        if model in judges:
            return judge_reply(judges[model], text)
        return answers[model][int(_TICKET.search(text).group(1))]

    return respond


def write_traffic_log(path, n, quality=5):
    with open(path, "w") as fh:
        for i in range(n):
            fh.write(
                json.dumps(
                    {
                        "messages": [{"role": "user", "content": f"Ticket #{i}: my invoice is wrong"}],
                        "temperature": 0.2,
                        "max_tokens": 64,
                        "model": "incumbent-model",
                        "response": {"choices": [{"message": {"role": "assistant", "content": answer(i, quality)}}]},
                        "metadata": {"route": "billing" if i % 2 else "support"},
                    }
                )
                + "\n"
            )
