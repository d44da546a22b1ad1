"""The `numeric` grader: read one number from a response and compare it to the reference within a tolerance.

Practice followed: GSM8K's own "#### N" answer line (the format of its solutions and of
lm-evaluation-harness's "strict-match" filter); the last `\\boxed{…}` (MATH/Minerva answer
extraction, used by most math graders); an explicit "The answer is N" (the chain-of-thought
few-shot format of lm-evaluation-harness's gsm8k-cot, also "答案是 N" as in OpenCompass's Chinese
prompts); else the last number in the text (lm-evaluation-harness's "flexible-extract" filter).
Numbers are read the way a reader would: "1,234" and "$1,250.00", "45%", "3.5 km", "-3", "3/4".
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from harness.errors import HarnessError
from harness.graders import Needs, reference_view, register
from harness.graders._text import answer_text, short
from harness.records import Grade, Item

# One number as written in prose. Not inside a word ("x2", "CO2") or after a digit ("10-15"
# is a range, not minus 15). Thousands need groups of exactly three ("1,234", not "1,23").
# A fraction "3/4" counts only when written with digits on both sides of the slash.
_NUMBER = re.compile(
    r"""
    (?<![A-Za-z0-9_])(?<!\d\.)
    (?P<sign>[-−])?
    (?:[$¥€£￥]\s?)?
    (?P<num>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)
    (?:/(?P<den>\d+)(?![\d,]|\.\d))?
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Found:
    value: float
    text: str  # the number as written
    via: str  # which rule found it


def _to_value(m: re.Match[str]) -> float:
    value = float(m.group("num").replace(",", ""))
    if m.group("den"):
        den = float(m.group("den"))
        if den == 0:
            raise ValueError("zero denominator")
        value /= den
    return -value if m.group("sign") else value


def _numbers(text: str) -> list[tuple[float, re.Match[str]]]:
    out = []
    for m in _NUMBER.finditer(text):
        try:
            out.append((_to_value(m), m))
        except ValueError:
            continue
    return out


def _first(text: str) -> tuple[float, str] | None:
    found = _numbers(text)
    return (found[0][0], found[0][1].group(0).strip()) if found else None


def _last(text: str) -> tuple[float, str] | None:
    found = _numbers(text)
    return (found[-1][0], found[-1][1].group(0).strip()) if found else None


# "#### 18" as GSM8K writes it: the line holds the number and at most a short unit; a markdown
# h4 heading such as "#### 2. Compute the cost" is not an answer line.
_HASHES = re.compile(
    r"^[ \t]*####[ \t]*(?P<body>[-−]?[$¥€£￥]?[ \t]?(?:\d[\d,]*(?:\.\d+)?(?:/\d+)?|\.\d+))[ \t]*(?:%|[^\W\d_]+(?:[ \t]+[^\W\d_]+)?)?[ \t]*[.。]?[ \t*]*$",
    re.MULTILINE,
)

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_LATEX_FRAC = re.compile(r"\\[dt]?frac\s*\{\s*([^{}]*?)\s*\}\s*\{\s*([^{}]*?)\s*\}")
_LATEX_TEXT = re.compile(r"\\(?:text|textbf|mathrm|mbox)\s*\{([^{}]*)\}")

# Explicit answer statements; the last one in the text wins.
_MARKERS = [
    re.compile(r"answer[*_\s]*(?:(?:is|would\s+be|should\s+be|will\s+be)\b|[:：=])", re.IGNORECASE),
    re.compile(r"答案\s*(?:应该是|应为|是|为|[:：])"),
]


def _boxed_contents(text: str) -> list[str]:
    """Contents of every \\boxed{…}, braces matched (\\boxed{\\frac{3}{4}} -> \\frac{3}{4})."""
    out = []
    for m in _BOXED.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            out.append(text[m.end() : i - 1])
    return out


def _untex(s: str) -> str:
    s = _LATEX_FRAC.sub(r"\1/\2", s)
    s = _LATEX_TEXT.sub(r" \1 ", s)
    s = s.replace("{,}", ",").replace("\\,", "").replace("\\!", "").replace("\\ ", " ")
    return s.replace("\\$", "$").replace("\\%", "%").replace("\\left", "").replace("\\right", "")


def _after_marker(text: str) -> tuple[tuple[float, str], str] | None:
    """The number stated after the last answer marker: first number on the rest of its line (after
    the last '=' if the line works a sum out), else on the next non-empty line."""
    last = None
    for pattern in _MARKERS:
        for m in pattern.finditer(text):
            if last is None or m.end() > last.end():
                last = m
    if last is None:
        return None
    lines = [line for line in text[last.end() :].split("\n")]
    candidates = [lines[0]] + [next((line for line in lines[1:] if line.strip()), "")]
    for line in candidates:
        line = _untex(line)
        if "=" in line:
            tail = _first(line.rsplit("=", 1)[1])
            if tail:
                return tail, last.group(0)
        found = _first(line)
        if found:
            return found, last.group(0)
    return None


def read_number(text: str) -> _Found | None:
    """The number a response commits to: '#### N' > '\\boxed{N}' > 'the answer is N' > the last number."""
    hashes = list(_HASHES.finditer(text))
    if hashes:
        found = _first(hashes[-1].group("body"))
        if found:
            return _Found(found[0], found[1], "'#### N'")
    for content in reversed(_boxed_contents(text)):
        found = _last(_untex(content))
        if found:
            return _Found(found[0], found[1], "\\boxed{}")
    stated = _after_marker(text)
    if stated:
        (value, written), marker = stated
        return _Found(value, written, repr(marker.strip()))
    found = _last(_untex(text))
    if found:
        return _Found(found[0], found[1], "last number")
    return None


def reference_number(item: Item) -> float:
    """The gold number: a number, or a text whose '#### N' (GSM8K solutions) or else last number counts."""
    ref = item.reference
    if isinstance(ref, bool) or ref is None:
        raise HarnessError(f"item '{item.id}': reference {ref!r} is not a number; check reference_field in suite.yaml")
    if isinstance(ref, (int, float)):
        return float(ref)
    text = str(ref)
    if "####" in text:
        found = _first(text.rsplit("####", 1)[1])
    else:
        found = _last(text)
    if found is None:
        raise HarnessError(
            f"item '{item.id}': reference {short(text)!r} holds no number; check reference_field in suite.yaml"
        )
    return found[0]


def _fmt(value: float) -> str:
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return format(value, ".12g")


@reference_view("numeric")
def gold_text(reference: str) -> str:
    """The number a stored reference (a number, or a worked solution ending in '#### N') stands for."""
    return _fmt(reference_number(Item(id="", fields={}, reference=reference)))


@register("numeric", needs=Needs(inline=True))
def numeric(response: str, item: Item, tolerance: float = 1e-6, relative: bool = False) -> Grade:
    """Pass when the response's number is within `tolerance` of the reference's (relative: of |reference|)."""
    if not isinstance(tolerance, (int, float)) or isinstance(tolerance, bool) or tolerance < 0:
        raise HarnessError(f"numeric grader: tolerance must be a number >= 0, got {tolerance!r}")
    gold = reference_number(item)
    found = read_number(answer_text(response))
    if found is None:
        return Grade.of(False, f"no number in response (expected {_fmt(gold)})")
    allowed = tolerance * abs(gold) if relative else tolerance
    ok = math.isfinite(found.value) and abs(found.value - gold) <= allowed
    got = _fmt(found.value)
    if ok:
        return Grade.of(True, f"{got} == {_fmt(gold)} (from {found.via})", got)
    return Grade.of(False, f"expected {_fmt(gold)}, got {got} (from {found.via})", got)
