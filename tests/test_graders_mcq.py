"""`mcq`: which option a reply chose (Chinese and English answer forms, option text), on all of C-Eval val."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.graders.mcq import mcq, read_choice
from harness.records import Item

SHARED = Path(__file__).resolve().parents[2] / "shared"
CEVAL_VAL = SHARED / "datasets" / "ceval" / "val"

# A made-up question (not from any dataset): options with letters inside their text on purpose.
OPTIONS = {"A": "维生素A缺乏导致夜盲症", "B": "B超检查", "C": "DAG", "D": "以上都不对"}


def item(gold: str, **fields) -> Item:
    return Item(id="t/1", fields={"question": "下列哪项正确？", **OPTIONS, **fields}, reference=gold)


@pytest.mark.parametrize(
    "reply",
    [
        "答案：B",
        "答案: B",
        "答案是 B",
        "答案为B",
        "答案选B。",
        "正确答案是（B）",
        "正确答案是 B。",
        "正确选项为B",
        "选B",
        "故选：B",
        "(B)",
        "（B）",
        "B.",
        "B、",
        "B)",
        "B",
        "b",
        "**B**",
        "The answer is B",
        "The answer is (B).",
        "The correct answer is **B**.",
        "Answer: B",
        "**Answer:** (B)",
        "ANSWER: B",
        "Final answer: \\boxed{B}",
        "I would choose option B.",
        "B is correct because the others are false.",
        "B. B超检查",
        "B超检查",
        "经过逐项分析：\nA项错误，夜盲症与维生素A有关但表述不全；\nC项错误。\n因此答案是B。",
        "Let me think.\nOption A is about vitamins, option C is a molecule.\nThe answer is B.",
        "答案：A\n\n等等，我再检查一下……\n答案：B",  # the last statement wins
        "答案：B。\n\n解析：A项错误，C项错误，D项错误。",
        "<think>The answer is A. Hmm, no.</think>\n答案：B",
    ],
)
def test_answer_forms_read_as_b(reply):
    result = mcq(reply, item("B"))
    assert result.passed, result.reason
    assert result.extracted == "B"


@pytest.mark.parametrize(
    "reply, expected",
    [
        # An English article is not an answer: nothing better exists, so no letter at all.
        ("A cat is a mammal.", None),
        ("A good question. I am not sure.", None),
        # ... but the same letter as a label is.
        ("A. 维生素A缺乏导致夜盲症", "A"),
        ("(A) is the only true statement.", "A"),
        # Letters inside words or formulas are not options.
        ("Both are wrong.", None),
        ("DNA and RNA differ.", None),
        # Several labels and no statement: ambiguous, not guessed.
        ("A. 错误\nB. 错误\nC. 错误", None),
        ("(A) or (C), I cannot decide.", None),
        # A whole reply that is one option's text.
        ("DAG", "C"),
        ("以上都不对。", "D"),
        # The option text inside a sentence, when exactly one option's text appears.
        ("我认为正确的是：以上都不对", "D"),
        # An unclosed think block is never read.
        ("<think>The answer is B", None),
        ("", None),
    ],
)
def test_reading_rules(reply, expected):
    found = read_choice(reply, item("B"))
    assert (found[0] if found else None) == expected


def test_wrong_letter_fails_with_reason():
    result = mcq("答案：C", item("B"))
    assert not result.passed
    assert result.extracted == "C"
    assert "expected B, got C" in result.reason


def test_no_letter_fails_with_reason():
    result = mcq("I cannot tell.", item("B"))
    assert not result.passed and "no option letter" in result.reason


def test_more_options_and_parenthesised_reference():
    it = Item(id="t/2", fields={}, reference="(E)")
    assert mcq("The answer is E.", it, options="ABCDE").passed
    assert not mcq("The answer is E.", Item(id="t/3", fields={}, reference="D"), options="ABCDE").passed


def test_bad_reference_or_options_are_user_errors():
    with pytest.raises(HarnessError, match="not one of the option letters"):
        mcq("A", Item(id="t/1", fields={}, reference="E"))
    with pytest.raises(HarnessError, match="distinct letters"):
        mcq("A", item("A"), options="AAB")


# --- all of C-Eval val -----------------------------------------------------------------------

FORMS = ["答案：{}", "答案是{}", "({})", "{}.", "The answer is {}", "正确答案是 {}。", "选{}", "**{}**", "Answer: {}"]


def _ceval_rows() -> list[dict]:
    if not CEVAL_VAL.is_dir():
        pytest.skip(f"C-Eval data not found at {CEVAL_VAL} (expected ../shared next to the repo)")
    rows = []
    for path in sorted(CEVAL_VAL.glob("*_val.csv")):
        with path.open(encoding="utf-8", newline="") as fh:
            rows += [dict(row, subject=path.stem[: -len("_val")]) for row in csv.DictReader(fh)]
    return rows


def test_ceval_val_letter_forms():
    rows = _ceval_rows()
    assert len(rows) == 1346
    assert len({r["subject"] for r in rows}) == 52
    failures = []
    for row in rows:
        it = Item(id=f"{row['subject']}/{row['id']}", fields=row, reference=row["answer"], group=row["subject"])
        for form in FORMS:
            for letter in "ABCD":
                if mcq(form.format(letter), it).passed != (letter == row["answer"]):
                    failures.append((it.id, form, letter))
    assert not failures, failures[:10]


def test_ceval_val_option_text_form():
    rows = _ceval_rows()
    failures, skipped = [], 0
    for row in rows:
        it = Item(id=f"{row['subject']}/{row['id']}", fields=row, reference=row["answer"])
        texts = [row[k].strip() for k in "ABCD"]
        for letter in "ABCD":
            if texts.count(row[letter].strip()) > 1:  # two options with the same text: no way to tell
                skipped += 1
                continue
            for form in ("{}", "{}。"):
                if mcq(form.format(row[letter]), it).passed != (letter == row["answer"]):
                    failures.append((it.id, form, letter))
    assert not failures, failures[:10]
    assert skipped == 6  # three items in C-Eval val have two options with the same text
