"""`numeric`: which number a reply commits to, how it is read, and the real GSM8K test split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.graders.numeric import numeric, read_number, reference_number
from harness.records import Item

SHARED = Path(__file__).resolve().parents[2] / "shared"
GSM8K_TEST = SHARED / "datasets" / "gsm8k" / "test.jsonl"


def item(reference) -> Item:
    return Item(id="t/1", fields={}, reference=reference)


# Replies in the styles chat models use for word problems (written for these tests).
MODEL_REPLIES = [
    ("Janet has 16 - 3 - 4 = 9 eggs left.\nShe sells them at $2 each: 9 * 2 = $18.\n#### 18", 18),
    ("**Answer:** 42 apples", 42),
    ("Let's compute step by step.\n1. 3 boxes of 14 apples: 3 * 14 = 42\n\n**Final Answer:** 42", 42),
    ("The total cost is $1,250.00.", 1250),
    ("Adding everything up: $800 + $450 = **$1,250.00**", 1250),
    ("So the final answer is $\\boxed{18}$.", 18),
    ("The ducks give 16 eggs, she uses 7.\n\n\\[\n\\boxed{18}\n\\]", 18),
    ("The answer is: \\$\\boxed{1,600}", 1600),
    ("The answer is 18.\n\nCheck: 9 eggs * $2 = $18, and 2 eggs per box.", 18),
    ("The answer is 18 dollars, which is 2 more than yesterday.", 18),
    ("So she makes 9 × 2 = 18 dollars per day.\nThe answer is 9 * 2 = 18", 18),
    ("Therefore, Janet makes **$18** every day at the farmers' market.", 18),
    ("The temperature dropped to -3 degrees.", -3),
    ("He lost −12 dollars overall, so the answer is −12.", -12),
    ("The discount is 45%.", 45),
    ("She ran 3.5 km.", 3.5),
    ("She ate 3/4 of the pie.", 0.75),
    ("The answer is \\(\\boxed{\\frac{3}{4}}\\)", 0.75),
    ("The population grew to 1,450,000 people.", 1450000),
    ("It costs £7.50 in total.", 7.5),
    ("总共需要 25 元。答案是 25", 25),
    ("解：16-3-4=9，9×2=18\n答案：18元", 18),
    ("#### 1. Eggs left\n16 - 3 - 4 = 9\n#### 2. Money\n9 * 2 = 18\nShe makes 18 dollars.", 18),
    ("Between 10-15 people came; exactly 12 stayed.", 12),
    ("<think>Maybe 20? No: 9 * 2 = 18.</think>The answer is 18.", 18),
    ("The answer is 18.", 18.0),
]


@pytest.mark.parametrize("reply, gold", MODEL_REPLIES)
def test_model_style_replies_are_read_correctly(reply, gold):
    result = numeric(reply, item(gold))
    assert result.passed, result.reason


@pytest.mark.parametrize("reply, gold", MODEL_REPLIES)
def test_model_style_replies_with_a_wrong_gold_fail(reply, gold):
    assert not numeric(reply, item(gold + 1)).passed


def test_priority_hashes_then_boxed_then_statement_then_last_number():
    assert read_number("The answer is 5. \\boxed{6} 7\n#### 8").value == 8
    assert read_number("The answer is 5. \\boxed{6} 7").value == 6
    assert read_number("The answer is 5. Then 7").value == 5
    assert read_number("5 then 7").value == 7
    assert read_number("The answer is 5. The answer is 9.").value == 9  # the last statement wins


def test_numbers_inside_words_and_ranges_are_not_read():
    assert read_number("CO2 and x2") is None
    assert read_number("pages 10-15").value == 15


def test_no_number_fails_with_reason():
    result = numeric("I don't know.", item(3))
    assert not result.passed and "no number" in result.reason


def test_unclosed_think_block_leaves_no_answer():
    assert not numeric("<think>The answer is 18, I think", item(18)).passed


def test_tolerance_absolute_and_relative():
    assert numeric("3.14", item(3.14159), tolerance=0.01).passed
    assert not numeric("3.14", item(3.14159)).passed
    assert numeric("1010", item(1000), tolerance=0.02, relative=True).passed
    assert not numeric("1030", item(1000), tolerance=0.02, relative=True).passed


def test_reference_forms():
    assert reference_number(item(18)) == 18
    assert reference_number(item("1,234")) == 1234
    assert reference_number(item("She makes 9 * 2 = $18.\n#### 18")) == 18
    assert reference_number(item("9 eggs at $2 make 18")) == 18
    with pytest.raises(HarnessError, match="holds no number"):
        reference_number(item("eighteen"))
    with pytest.raises(HarnessError, match="not a number"):
        reference_number(item(None))


def test_bad_tolerance_is_a_user_error():
    with pytest.raises(HarnessError, match="tolerance"):
        numeric("1", item(1), tolerance=-1)


def test_reason_and_extracted_say_what_was_read():
    result = numeric("The total is $1,250.00.", item(1250))
    assert result.extracted == "1250"
    assert "1250" in result.reason
    wrong = numeric("#### 17", item(18))
    assert wrong.extracted == "17" and "expected 18" in wrong.reason


# --- the real GSM8K test split ---------------------------------------------------------------


def _gsm8k_rows() -> list[dict]:
    if not GSM8K_TEST.is_file():
        pytest.skip(f"GSM8K data not found at {GSM8K_TEST} (expected ../shared next to the repo)")
    return [json.loads(line) for line in GSM8K_TEST.read_text(encoding="utf-8").splitlines() if line.strip()]


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def test_gsm8k_solution_texts_and_answer_statements():
    rows = _gsm8k_rows()
    assert len(rows) == 1319
    failures = []
    for i, row in enumerate(rows):
        it = Item(id=f"gsm8k/{i}", fields=row, reference=row["answer"])
        gold = reference_number(it)
        worked = row["answer"].rsplit("####", 1)[0]
        right = [
            row["answer"],  # the gold solution itself, calculator annotations and all
            f"The answer is {_fmt(gold)}.",
            f"{worked}\nThe answer is {gold:,.0f}." if gold.is_integer() else f"The answer is {gold}.",
            f"{worked}\n\n**Final Answer:** $\\boxed{{{_fmt(gold)}}}$",
        ]
        wrong = [
            f"The answer is {_fmt(gold + 1)}.",
            f"The answer is {_fmt(gold - 1)}.",
            f"{worked}#### {_fmt(gold + 1)}",
        ]
        failures += [(i, r) for r in right if not numeric(r, it).passed]
        failures += [(i, r) for r in wrong if numeric(r, it).passed]
    assert not failures, failures[:5]
