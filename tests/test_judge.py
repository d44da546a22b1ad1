"""The judge grader: verdicts are parsed strictly, and a plan model judges inside a real run."""

import pytest
import yaml

from harness.errors import HarnessError
from harness.graders import grade
from harness.graders.judge import JudgeContext, parse_verdict
from harness.records import Item


@pytest.mark.parametrize("reply, expected", [
    ("The answer matches the reference.\nVERDICT: PASS", 1.0),
    ("Wrong unit.\nverdict: fail", 0.0),
    ("**VERDICT: PASS**", 1.0),
    ("<think>VERDICT: FAIL maybe</think>\nVERDICT: PASS", 1.0),  # thinking is never read
    ("VERDICT: PASS\nOn reflection...\nVERDICT: PASS", 1.0),
])
def test_verdicts_parse(reply, expected):
    assert parse_verdict(reply)[0] == expected


@pytest.mark.parametrize("reply", [
    "Looks right to me.",                      # no verdict line
    "VERDICT: PASS\nVERDICT: FAIL",            # disagreeing lines
    "I would say the verdict: pass is fair",   # not on its own line
    "VERDICT: MOSTLY",
])
def test_unparseable_verdicts_are_not_guessed(reply):
    assert parse_verdict(reply)[0] is None


def test_scores_on_a_scale():
    assert parse_verdict("Good.\nSCORE: 7/10", scale=10) == (0.7, "SCORE 7/10")
    assert parse_verdict("SCORE: 11", scale=10)[0] is None


def _context(reply, seen):
    def ask(model, messages):
        seen.append((model, messages))
        return reply
    return JudgeContext(ask=ask, render=lambda name, fields: f"[{name}] {fields['response']} vs {fields['reference']}")


def test_judge_grades_through_the_context():
    seen = []
    item = Item(id="x", fields={"q": "2+2"}, reference="4")
    g = grade("judge", "four", item, {"model": "big", "context": _context("VERDICT: PASS", seen)})
    assert g.passed and g.score == 1.0 and "big" in g.reason
    assert seen[0][0] == "big" and seen[0][1][-1].content == "[judge.j2] four vs 4"
    g = grade("judge", "five", item, {"model": "big", "context": _context("hmm", [])})
    assert not g.passed and "unparseable" in g.reason


def test_judge_outside_a_run_is_a_clear_error():
    with pytest.raises(HarnessError, match="only runs inside `harness run`"):
        grade("judge", "x", Item(id="x", fields={}), {"model": "big"})
    with pytest.raises(HarnessError, match="needs options.model"):
        grade("judge", "x", Item(id="x", fields={}), {})
