"""The `mcq` grader: read which option letter a response chose and compare it to the reference letter.

Rules, strongest first; within a rule the last statement in the text wins (a model that
corrects itself means its last word), and the weak rules count only when they point at a
single letter:

1. the whole reply is a label: "B", "(B)", "B.", "**B**", "B、";
2. the whole reply is exactly one option's text (item.fields["A"], ...), checked before any
   letter rule because option texts hold letters of their own ("B超检查", "DAG");
3. an explicit answer statement: "答案：B", "答案是 B", "正确答案是（B）", "The answer is B",
   "Answer: (B)", "\\boxed{B}" (the answer-pattern lists of OpenCompass's first_option_postprocess
   and simple-evals' multilingual MMLU answer regex);
4. a choice: "选B", "故选：B", "B项正确", "I'd choose B", "B is correct";
5. lines that start with a label ("B. …", "(B) …"): one letter only, none other labelled;
6. the reply contains one option's text and no other's;
7. a label anywhere ("(B)", "**B**", "B、"): one letter only;
8. a standalone capital letter ("B 是对的"): one letter only.

An English article is never read as an answer: "A cat …" at a sentence start is the word "a"
(rule 8 skips "A"/"I" followed by a lower-case word; rules 1 and 5 need a separator after the
letter), so replies in English that state no letter fall through to "no answer".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping

from harness.errors import HarnessError
from harness.graders import Needs, register
from harness.graders._text import answer_text, clean_answer, short
from harness.records import Grade, Item


@dataclass(frozen=True)
class _Patterns:
    label_only: re.Pattern[str]
    explicit: tuple[re.Pattern[str], ...]
    choice: tuple[re.Pattern[str], ...]
    line_label: re.Pattern[str]
    label_anywhere: tuple[re.Pattern[str], ...]
    bare: re.Pattern[str]


@lru_cache(maxsize=32)
def _patterns(letters: str) -> _Patterns:
    up = "[" + re.escape(letters.upper()) + "]"
    low = "[" + re.escape(letters.lower()) + "]"
    anycase = "[" + re.escape(letters.upper() + letters.lower()) + "]"
    no_word = r"(?![A-Za-z0-9_])"
    open_, close = r"[(（\[【]", r"[)）\]】]"
    # A letter right after an answer marker: "(b)" in brackets in any case, else a capital letter.
    stated = rf"[*_\s]*(?:{open_}\s*(?P<L1>{anycase})\s*{close}|(?P<L2>{up}){no_word})"
    # After a Chinese marker: a capital letter; lower case only in brackets or before the end of a
    # clause ("答案是b。"), never "a" of a formula ("正确的是：a=2").
    zh_stated = (
        rf"[*_\s]*(?:{open_}\s*(?P<L1>{anycase})\s*{close}|{open_}?\s*(?P<L2>{up})(?![A-Za-z])"
        rf"|(?P<L3>{low})(?=\s*(?:$|[。，,.；;！!])))"
    )
    return _Patterns(
        label_only=re.compile(rf"^{open_}?\s*(?P<L1>{anycase})\s*{close}?\s*[.．。、:：]?$"),
        explicit=(
            re.compile(
                rf"(?:正确|最终|最佳)?答案\s*(?:应该是|应该选|应当是|应是|应为|应选|选择|是|为|选)?\s*[:：]?{zh_stated}"
            ),
            re.compile(rf"正确(?:的)?(?:选项|答案|选择|的是|项)\s*(?:是|为|[:：])?{zh_stated}"),
            re.compile(
                rf"(?i:answer)[*_]*\s*(?:(?i:is|would\s+be|should\s+be|will\s+be)\b|[:：])\s*[:：]?"
                rf"(?:\s*(?i:option|choice))?{stated}"
            ),
            re.compile(
                rf"(?i:(?:correct|right|best|final)\s+(?:option|choice)|(?:option|choice)\s+is\b)"
                rf"[*_]*\s*(?:(?i:is)\b|[:：])?\s*(?:(?i:option|choice))?{stated}"
            ),
            re.compile(rf"\\boxed\{{\s*(?:\\text(?:bf)?\{{)?\s*\(?(?P<L1>{anycase})\)?\s*\}}"),
        ),
        choice=(
            re.compile(rf"选(?:择)?(?!项)\s*[:：]?{zh_stated}"),
            re.compile(
                rf"(?<![A-Za-z0-9_]){open_}?(?P<L1>{up}){close}?\s*[.．、:：]?\s*(?:项|选项)?\s*(?:正确|是正确的|符合题意|当选)"
            ),
            re.compile(rf"(?<![A-Za-z0-9_]){open_}?(?P<L1>{up}){close}?\s+is\s+(?:the\s+)?(?:correct|right)\b"),
            re.compile(
                rf"(?i:\bI(?:'d|\s+would|\s+will)?\s+(?:choose|pick|select|go\s+with))\s+(?:(?i:option|choice)\s+)?"
                rf"(?:{open_}\s*(?P<L1>{anycase})\s*{close}|(?P<L2>{up}){no_word})"
            ),
        ),
        line_label=re.compile(
            rf"^[\s*_#>-]*(?:{open_}\s*(?P<L1>{anycase})\s*{close}|(?P<L2>{up})(?:[*_]*\s*[.．。、:：)）](?![A-Za-z])|[*_]*\s*$))",
            re.MULTILINE,
        ),
        label_anywhere=(
            re.compile(rf"(?<![A-Za-z0-9_]){open_}\s*(?P<L1>{up})\s*{close}"),
            re.compile(rf"\*\*\s*(?P<L1>{up})\s*\*\*"),
            re.compile(rf"(?<![A-Za-z0-9_])(?P<L1>{up})\s*[、)）]"),
        ),
        bare=re.compile(rf"(?<![A-Za-z0-9_'’-])(?P<L1>{up})(?![A-Za-z0-9_'’-])(?!(?<=[AI])\s+[a-z])"),
    )


def _letter(m: re.Match[str]) -> str:
    groups = m.groupdict()
    return (groups.get("L1") or groups.get("L2") or groups.get("L3") or "").upper()


def _last_of(patterns: tuple[re.Pattern[str], ...], text: str) -> re.Match[str] | None:
    best = None
    for pattern in patterns:
        for m in pattern.finditer(text):
            if best is None or m.end() > best.end():
                best = m
    return best


def _single(matches: list[re.Match[str]]) -> re.Match[str] | None:
    """The last match if all matches name the same letter, else None (ambiguous)."""
    letters = {_letter(m) for m in matches}
    return matches[-1] if len(letters) == 1 else None


def _norm_option(text: str, clean: bool, fold: bool) -> str:
    """Whitespace collapsed; `clean`: without a trailing period, quotes, markdown; `fold`: any case."""
    text = " ".join((clean_answer(text) if clean else text).split())
    return text.casefold() if fold else text


def _option_texts(item: Item, letters: str) -> dict[str, str]:
    fields: Mapping = item.fields or {}
    out = {}
    for letter in letters:
        value = fields.get(letter)
        if value is not None and str(value).strip():
            out[letter] = str(value)
    return out


def _by_option_text(text: str, options: dict[str, str], whole: bool) -> str | None:
    """The letter whose option text the reply is (whole) or uniquely contains."""
    if whole:
        # As written first ("λD/d" vs "λd/D", "cd ." vs "cd"), then looser: the reply without its
        # trailing period or markdown, then the options too, then in any case.
        levels = (
            (False, False, False),
            (True, False, False),
            (True, True, False),
            (True, False, True),
            (True, True, True),
        )
        for clean_reply, clean_option, fold in levels:
            reply = _norm_option(text, clean_reply, fold)
            hits = [letter for letter, t in options.items() if _norm_option(t, clean_option, fold) == reply]
            if hits:
                return hits[0] if len(hits) == 1 else None
        return None
    reply = _norm_option(text, True, True)
    norm = {letter: _norm_option(t, True, True) for letter, t in options.items()}
    hits = [letter for letter, t in norm.items() if len(t) >= 2 and t in reply]
    # An option that is part of a longer found option ("SYN" in "SYN和ACK") is not a separate hit.
    hits = [h for h in hits if not any(h != o and norm[h] in norm[o] for o in hits)]
    return hits[0] if len(hits) == 1 else None


def read_choice(response: str, item: Item, letters: str = "ABCD") -> tuple[str, str] | None:
    """(letter, how it was found) for the option a response chose, or None."""
    text = answer_text(response).strip()
    if not text:
        return None
    p = _patterns(letters)
    options = _option_texts(item, letters)

    m = p.label_only.match(clean_answer(text))
    if m:
        return _letter(m), "the whole reply"
    if options:
        letter = _by_option_text(text, options, whole=True)
        if letter:
            return letter, "the option text"
    for rule, patterns in (("answer statement", p.explicit), ("choice", p.choice)):
        m = _last_of(patterns, text)
        if m:
            return _letter(m), f"{rule} {short(m.group(0).strip(), 30)!r}"
    anywhere = sorted((m for pat in p.label_anywhere for m in pat.finditer(text)), key=lambda m: m.end())
    line_labels = list(p.line_label.finditer(text))
    # "B. …" at a line start counts unless another letter is labelled somewhere ("(A) or (C)").
    m = _single(line_labels + anywhere) if line_labels else None
    if m:
        return _letter(line_labels[-1]), f"label {short(line_labels[-1].group(0).strip(), 30)!r}"
    if options:
        letter = _by_option_text(text, options, whole=False)
        if letter:
            return letter, "the option text in the reply"
    m = _single(anywhere)
    if m:
        return _letter(m), f"label {short(m.group(0).strip(), 30)!r}"
    m = _single(list(p.bare.finditer(text)))
    if m:
        return _letter(m), "a lone letter"
    return None


@register("mcq", needs=Needs(inline=True, whole_item=True))
def mcq(response: str, item: Item, options: str = "ABCD") -> Grade:
    """Pass when the option letter the response chose equals `item.reference` (a letter, "(B)" allowed)."""
    letters = options.upper() if isinstance(options, str) else ""
    if not letters or not letters.isalpha() or not letters.isascii() or len(set(letters)) != len(letters):
        raise HarnessError(f"mcq grader: options must be distinct letters like 'ABCD', got {options!r}")
    gold = str(item.reference if item.reference is not None else "").strip().strip("()（）").upper()
    if gold not in letters or len(gold) != 1:
        raise HarnessError(
            f"item '{item.id}': reference {item.reference!r} is not one of the option letters {letters}; "
            "check reference_field and grader.options.options in suite.yaml"
        )
    found = read_choice(response, item, letters)
    if found is None:
        return Grade.of(False, f"no option letter found (expected {gold})")
    letter, how = found
    if letter == gold:
        return Grade.of(True, f"chose {letter} (from {how})", letter)
    return Grade.of(False, f"expected {gold}, got {letter} (from {how})", letter)
