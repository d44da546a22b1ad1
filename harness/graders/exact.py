"""String-match graders: `exact` (the answer equals the reference) and `regex` (a pattern's last match does).

Practice followed: the answer after the last "answer is" marker, as in the BBH chain-of-thought
prompts ("So the answer is (A).") and lm-evaluation-harness's BBH answer filter; light
normalisation (case, whitespace, wrapping markdown/quotes, a trailing period) as in
inspect_ai's `match`/`exact` scorers; "last match wins" for regexes, as lm-evaluation-harness's
regex filter does with `group_select: -1`.
"""

from __future__ import annotations

import re

from harness.errors import HarnessError
from harness.graders import Needs, register
from harness.graders._text import answer_text, clean_answer, normalize_text, short
from harness.records import Grade, Item

# An option label as BBH writes its targets, "(A)", and as models answer it: "A", "(A)", "A)",
# and "(A) <option text>". A bare "A" followed by more words ("A cat …") is not a label.
_LABEL_ONLY = re.compile(r"^\(?([A-Za-z])\)?$")
_LABEL_LEAD = re.compile(r"^\(([A-Za-z])\)\s+\S")


_ANY_LABEL = re.compile(r"\([A-Za-z]\)")


def _option_letter(text: str) -> str | None:
    m = _LABEL_ONLY.match(text)
    if m is None and len(_ANY_LABEL.findall(text)) == 1:  # "(A) or (B)" names no single option
        m = _LABEL_LEAD.match(text)
    return m.group(1) if m else None


def _after_marker(text: str, marker: str) -> str | None:
    """The text after the last `marker` (case-insensitive) up to the end of its line; if that
    line is empty (marker ends the line), the next non-empty line."""
    idx = text.lower().rfind(marker.lower())
    if idx < 0:
        return None
    rest = text[idx + len(marker) :].lstrip(" \t:：")  # "answer is: …"
    line = next((line for line in rest.split("\n") if line.strip()), "")
    return _balance_bold(line.strip())


def _balance_bold(line: str) -> str:
    """Drop a `**` left over from bold that began before the marker ("**Answer is:** X",
    "**So the answer is (A)**.")."""
    for mark in ("**", "__"):
        if line.count(mark) % 2 == 1:
            if line.startswith(mark):
                line = line[len(mark) :].lstrip()
            else:
                head, _, tail = line.rpartition(mark)
                line = (head + tail).strip()
    return line


def _same(answer: str, reference: str, normalize: bool) -> bool:
    a, r = clean_answer(answer), clean_answer(reference)
    if normalize:
        a, r = normalize_text(a), normalize_text(r)
    if a == r:
        return True
    # A letter-option reference "(A)" (or "A") is matched by the letter in any label form.
    ref_letter = _LABEL_ONLY.match(r)
    if ref_letter:
        got = _option_letter(a)
        return got is not None and got == ref_letter.group(1)
    return False


def _reference(item: Item) -> str:
    if item.reference is None:
        raise HarnessError(f"item '{item.id}' has no reference answer; set reference_field in suite.yaml")
    return str(item.reference)


@register("exact", needs=Needs(inline=True))
def exact(response: str, item: Item, extract: str | None = None, normalize: bool = True) -> Grade:
    """Pass when the answer equals `item.reference`.

    The answer is the whole response, or with `extract` (e.g. "answer is") the rest of the line
    after the last occurrence of that marker. With `normalize` the comparison ignores case and
    runs of whitespace; a letter-option reference "(A)" also accepts "A" and "(A) <text>".
    """
    reference = _reference(item)
    text = answer_text(response)
    answer = text
    note = ""
    if extract:
        found = _after_marker(text, extract)
        if found is None:
            note = f" (no '{extract}' in response: compared it whole)"
        else:
            answer = found
    answer = clean_answer(answer)
    if _same(answer, reference, normalize):
        return Grade.of(True, f"matched {short(reference)!r}{note}", answer)
    return Grade.of(False, f"expected {short(reference)!r}, got {short(answer)!r}{note}", answer)


_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE, "a": re.ASCII}


def _compile(pattern: str, flags: str, group: int | str) -> re.Pattern[str]:
    bits = 0
    for ch in flags:
        if ch not in _FLAGS:
            raise HarnessError(f"regex grader: unknown flag {ch!r} in flags={flags!r} (use any of: {''.join(_FLAGS)})")
        bits |= _FLAGS[ch]
    try:
        compiled = re.compile(pattern, bits)
    except re.error as exc:
        raise HarnessError(f"regex grader: pattern {pattern!r} does not compile: {exc}") from None
    if isinstance(group, int) and not 0 <= group <= compiled.groups:
        raise HarnessError(f"regex grader: pattern {pattern!r} has {compiled.groups} group(s), group={group} asked")
    if isinstance(group, str) and group not in compiled.groupindex:
        raise HarnessError(f"regex grader: pattern {pattern!r} has no group named {group!r}")
    return compiled


@register("regex", needs=Needs(inline=True))
def regex(response: str, item: Item, pattern: str, group: int | str = 1, flags: str = "") -> Grade:
    """Pass when `group` of the last match of `pattern` equals `item.reference` (normalised as in `exact`).

    `flags` is a string of letters: i (ignore case), m (multiline), s (dot matches newline), x, a.
    """
    compiled = _compile(pattern, flags, group)
    reference = _reference(item)
    text = answer_text(response)
    matches = list(compiled.finditer(text))
    last = matches[-1] if matches else None
    if last is None or last.group(group) is None:
        return Grade.of(False, f"pattern {short(pattern, 40)!r} not found in response")
    answer = clean_answer(last.group(group))
    if _same(answer, reference, normalize=True):
        return Grade.of(True, f"matched {short(reference)!r}", answer)
    return Grade.of(False, f"expected {short(reference)!r}, got {short(answer)!r}", answer)
