"""`exact` and `regex`: answer after a marker, light normalisation, BBH option labels, on the real BBH file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.graders.exact import exact, regex
from harness.records import Item

SHARED = Path(__file__).resolve().parents[2] / "shared"
BBH_DIR = SHARED / "datasets" / "bbh" / "bbh"


def item(reference, **fields) -> Item:
    return Item(id="t/1", fields=fields, reference=reference)


@pytest.mark.parametrize(
    "response",
    [
        "Paris",
        "paris",
        "  Paris.  ",
        "**Paris**",
        '"Paris"',
        "`Paris`",
        "**`Paris`**.",
    ],
)
def test_exact_strips_wrappers_and_ignores_case(response):
    assert exact(response, item("Paris")).passed


def test_exact_collapses_whitespace():
    assert exact("New   York\nCity", item("new york city")).passed


def test_exact_without_normalize_is_case_sensitive():
    assert exact("Paris", item("Paris"), normalize=False).passed
    assert not exact("paris", item("Paris"), normalize=False).passed


def test_exact_compares_the_whole_reply_without_extract():
    result = exact("The answer is Paris.", item("Paris"))
    assert not result.passed
    assert result.extracted == "The answer is Paris"


def test_extract_takes_the_last_marker_to_end_of_line():
    reply = "First I thought the answer is Rome.\nOn reflection the answer is Paris.\nThat is all."
    result = exact(reply, item("Paris"), extract="answer is")
    assert result.passed and result.extracted == "Paris"


@pytest.mark.parametrize(
    "reply",
    [
        "So the answer is: Paris",
        "**The answer is Paris**",
        "**Answer is:** Paris",
        "So the ANSWER IS paris.",
        "The answer is\n\nParis\n",
    ],
)
def test_extract_handles_markdown_and_line_breaks(reply):
    assert exact(reply, item("Paris"), extract="answer is").passed


def test_missing_marker_falls_back_to_the_whole_reply():
    result = exact("Paris", item("Paris"), extract="answer is")
    assert result.passed and "no 'answer is'" in result.reason
    assert not exact("I think it is Paris", item("Paris"), extract="answer is").passed


@pytest.mark.parametrize("reply", ["(A)", "A", "(a)", "A)", "(A) 12/14/2026", "**(A)**."])
def test_letter_option_reference_accepts_any_label_form(reply):
    assert exact(f"So the answer is {reply}", item("(A)"), extract="answer is").passed


@pytest.mark.parametrize("reply", ["(B)", "B", "(A) or (B)", "A cat", "Apple"])
def test_letter_option_reference_rejects_other_answers(reply):
    assert not exact(f"So the answer is {reply}", item("(A)"), extract="answer is").passed


def test_non_letter_targets_are_compared_as_text():
    assert exact("So the answer is ] ) }.", item("] ) }"), extract="answer is").passed
    assert not exact("So the answer is valid.", item("invalid"), extract="answer is").passed
    assert not exact("So the answer is 12.", item("121"), extract="answer is").passed


def test_think_block_is_not_graded():
    assert exact("<think>the answer is (B)</think>So the answer is (A).", item("(A)"), extract="answer is").passed
    # An unclosed block: the model never committed to an answer.
    assert not exact("<think>So the answer is (A).", item("(A)"), extract="answer is").passed


def test_missing_reference_is_a_user_error():
    with pytest.raises(HarnessError, match="no reference"):
        exact("x", Item(id="t/1", fields={}))


# --- regex -----------------------------------------------------------------------------------


def test_regex_uses_the_last_match():
    reply = "Final: 3 ... no wait. Final: 7"
    assert regex(reply, item("7"), pattern=r"Final:\s*(\d+)").passed
    assert not regex(reply, item("3"), pattern=r"Final:\s*(\d+)").passed


def test_regex_group_and_flags():
    reply = "ANSWER => Blue\nanswer => green"
    assert regex(reply, item("green"), pattern=r"^answer => (?P<c>\w+)$", group="c", flags="im").passed
    assert regex(reply, item("answer => green"), pattern=r"answer => \w+", group=0).passed


def test_regex_not_found_fails_with_a_reason():
    result = regex("no digits here", item("4"), pattern=r"(\d+)")
    assert not result.passed and "not found" in result.reason


@pytest.mark.parametrize(
    "options, message",
    [
        ({"pattern": r"(\d+"}, "does not compile"),
        ({"pattern": r"\d+", "group": 1}, "has 0 group"),
        ({"pattern": r"(\d+)", "flags": "q"}, "unknown flag"),
        ({"pattern": r"(\d+)", "group": "name"}, "no group named"),
    ],
)
def test_regex_bad_options_are_user_errors(options, message):
    with pytest.raises(HarnessError, match=message):
        regex("42", item("42"), **options)


# --- the real BBH file -----------------------------------------------------------------------


def _bbh_tasks() -> list[tuple[str, list[dict]]]:
    if not BBH_DIR.is_dir():
        pytest.skip(f"BBH data not found at {BBH_DIR} (expected ../shared next to the repo)")
    return [(p.stem, json.loads(p.read_text())["examples"]) for p in sorted(BBH_DIR.glob("*.json"))]


_OPPOSITE = {
    "True": "False",
    "False": "True",
    "Yes": "No",
    "No": "Yes",
    "yes": "no",
    "no": "yes",
    "valid": "invalid",
    "invalid": "valid",
}


def test_bbh_every_target_graded_correct_and_other_options_wrong():
    tasks = _bbh_tasks()
    assert len(tasks) == 27
    checked = wrong_checked = 0
    failures = []
    for task, examples in tasks:
        labels = sorted({e["target"] for e in examples if re.fullmatch(r"\([A-Z]\)", e["target"])})
        for i, example in enumerate(examples):
            target = example["target"]
            it = Item(id=f"{task}/{i}", fields=example, reference=target, group=task)
            reply = f"Let's think step by step. ... So the answer is {target}."
            if not exact(reply, it, extract="answer is").passed:
                failures.append((task, i, reply))
            checked += 1
            others = [o for o in labels if o != target] if target in labels else [_OPPOSITE.get(target)]
            if target not in labels and re.fullmatch(r"-?\d+", target):
                others = [str(int(target) + 1), str(int(target) - 1)]
            for other in filter(None, others):
                if exact(f"Let's think step by step. ... So the answer is {other}.", it, extract="answer is").passed:
                    failures.append((task, i, other))
                wrong_checked += 1
    assert not failures, failures[:10]
    assert checked == 6511
    assert wrong_checked > 15000
