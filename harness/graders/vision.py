"""Graders vision benchmarks score with: `relaxed` (ChartQA's relaxed accuracy) and `anls` (DocVQA's ANLS).

relaxed: ChartQA (Masry et al., 2022) counts a numeric answer correct when it is within 5% of the
gold value (|pred - gold| / |gold| <= 0.05), and any other answer when it equals the gold text
ignoring case; "12%" reads as 0.12 on both sides; a gold value of 0 falls back to the text match,
as the published scorer (pix2struct's `relaxed_correctness`) does. Several gold answers: the best.

anls: DocVQA (Mathew et al., 2021) scores each question max over its gold answers of
1 - NL(pred, gold) when NL < 0.5 else 0, where NL is the Levenshtein distance of the lower-cased,
whitespace-collapsed strings divided by the longer one's length. The benchmark's ANLS is the mean
of these scores: the sample score here is that per-question value, `passed` means score >= 0.5.

Models answer in sentences: by default the answer is the text after the last "answer:"/"answer is"
marker, else the last non-empty line, cleaned of wrapping markdown and quotes (option `extract:
none` grades the whole response, as the published scorers do with their one-phrase prompts).
"""

from __future__ import annotations

import re
from typing import Any

from harness.graders import register
from harness.graders._text import answer_text, clean_answer
from harness.records import Grade, Item

_MARKER = re.compile(r"(?i)(?:final answer|answer is|answer)\s*[:：]?\s*")
ANLS_THRESHOLD = 0.5
RELAXED_TOLERANCE = 0.05


def _references(item: Item) -> list[str]:
    ref = item.reference
    if ref is None:
        return []
    if isinstance(ref, (list, tuple)):
        return [str(r) for r in ref if r is not None]
    return [str(ref)]


def _answer(response: str, extract: str | None) -> str:
    text = answer_text(response).strip()
    if extract == "none":
        return clean_answer(text)
    matches = list(_MARKER.finditer(text))
    if matches:
        rest = text[matches[-1].end() :]
        line = next((ln for ln in rest.split("\n") if ln.strip()), "")
        return clean_answer(line)
    lines = [ln for ln in text.split("\n") if ln.strip()]
    return clean_answer(lines[-1]) if lines else ""


def to_number(text: str) -> float | None:
    """A number as ChartQA's scorer reads one ("12%" -> 0.12), also with thousands separators or a
    currency sign ("$1,200"); None for anything else."""
    s = text.strip().replace(",", "").replace("$", "").replace("€", "").replace("£", "").strip()
    percent = s.endswith("%")
    if percent:
        s = s[:-1].strip()
    try:
        value = float(s)
    except ValueError:
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return None
    return value / 100.0 if percent else value


def relaxed_match(prediction: str, target: str, tolerance: float = RELAXED_TOLERANCE) -> bool:
    """ChartQA's relaxed correctness of one prediction against one gold answer."""
    pred, gold = to_number(prediction), to_number(target)
    if pred is not None and gold:
        return abs(pred - gold) / abs(gold) <= tolerance
    return prediction.strip().lower() == target.strip().lower()


@register("relaxed")
def relaxed(response: str, item: Item, tolerance: float = RELAXED_TOLERANCE, extract: str | None = None) -> Grade:
    refs = _references(item)
    if not refs:
        return Grade.of(False, "item has no reference answer")
    answer = _answer(response, extract)
    if not answer:
        return Grade.of(False, "no answer found", "")
    hit = next((r for r in refs if relaxed_match(answer, r, float(tolerance))), None)
    if hit is not None:
        return Grade.of(True, f"matches {hit!r} within {float(tolerance):.0%}", answer)
    return Grade.of(False, f"expected {' or '.join(repr(r) for r in refs)}", answer)


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions each cost 1), two rows of the DP table."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _anls_norm(text: str) -> str:
    return " ".join(text.strip().lower().split())


def nls(prediction: str, target: str, threshold: float = ANLS_THRESHOLD) -> float:
    """One gold answer's normalised Levenshtein similarity, 0 from the threshold on (DocVQA's rule)."""
    p, g = _anls_norm(prediction), _anls_norm(target)
    longest = max(len(p), len(g))
    if longest == 0:
        return 1.0
    distance = levenshtein(p, g) / longest
    return 1.0 - distance if distance < threshold else 0.0


@register("anls")
def anls(response: str, item: Item, threshold: float = ANLS_THRESHOLD, extract: Any = None) -> Grade:
    refs = _references(item)
    if not refs:
        return Grade.of(False, "item has no reference answer")
    answer = _answer(response, extract)
    scores = [(nls(answer, r, float(threshold)), r) for r in refs]
    best, ref = max(scores, key=lambda s: s[0])
    return Grade(best, best >= float(threshold), f"ANLS {best:.3f} against {ref!r}", answer)
