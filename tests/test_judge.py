"""The judge grader: verdicts are parsed strictly, and a plan model judges inside a real run."""

import pytest
import yaml

from harness.errors import HarnessError
from harness.graders import grade
from harness.graders.judge import JudgeContext, parse_verdict
from harness.records import Item


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("The answer matches the reference.\nVERDICT: PASS", 1.0),
        ("Wrong unit.\nverdict: fail", 0.0),
        ("**VERDICT: PASS**", 1.0),
        ("<think>VERDICT: FAIL maybe</think>\nVERDICT: PASS", 1.0),  # thinking is never read
        ("VERDICT: PASS\nOn reflection...\nVERDICT: PASS", 1.0),
    ],
)
def test_verdicts_parse(reply, expected):
    assert parse_verdict(reply)[0] == expected


@pytest.mark.parametrize(
    "reply",
    [
        "Looks right to me.",  # no verdict line
        "VERDICT: PASS\nVERDICT: FAIL",  # disagreeing lines
        "I would say the verdict: pass is fair",  # not on its own line
        "VERDICT: MOSTLY",
    ],
)
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


def _judge_suite(tmp_path):
    folder = tmp_path / "suites" / "capitals"
    folder.mkdir(parents=True)
    (folder / "suite.yaml").write_text(
        "name: capitals\nfamily: reasoning\ntemplate: prompt.j2\nreference_field: city\nid_field: id\n"
        "grader: {name: judge, options: {model: referee, rubric: judge.j2}}\n"
    )
    (folder / "prompt.j2").write_text("What is the capital of {{ country }}?")
    (folder / "judge.j2").write_text(
        "Question: the capital of {{ country }}. Reference: {{ reference }}.\nAnswer: {{ response }}\n"
        "Does the answer name the reference city? End with VERDICT: PASS or VERDICT: FAIL."
    )
    rows = [("France", "Paris"), ("Japan", "Tokyo"), ("Kenya", "Nairobi"), ("Peru", "Lima")]
    (folder / "items.jsonl").write_text(
        "".join(f'{{"id": "{c.lower()}", "country": "{c}", "city": "{city}"}}\n' for c, city in rows)
    )
    return folder


def test_a_plan_judge_grades_inside_a_real_run(tmp_path, fake_server, db_url, monkeypatch):
    from harness.engine.runs import execute_plan
    from harness.plan import load_plan
    from harness.store import Store

    _judge_suite(tmp_path)
    monkeypatch.setenv("HARNESS_SUITES_PATH", str(tmp_path / "suites"))
    answers = {"France": "Paris.", "Japan": "Kyoto.", "Kenya": "It is Nairobi.", "Peru": "Lima"}

    def respond(model, messages):
        text = messages[-1]["content"]
        if model == "referee":
            reference = text.split("Reference: ", 1)[1].split(".", 1)[0]
            answer = text.split("Answer: ", 1)[1].split("\n", 1)[0]
            if "Peru" in text:
                return "Hard to say."  # no verdict line: must not be guessed
            return f"Checked.\nVERDICT: {'PASS' if reference in answer else 'FAIL'}"
        return next(a for c, a in answers.items() if c in text)

    fake_server.state.responder = respond
    plan_path = tmp_path / "plan.yaml"
    plan_path.write_text(
        yaml.safe_dump(
            {
                "models": {"student": {"provider": "openai", "base_url": fake_server.base_url}},
                "judges": {
                    "referee": {
                        "provider": "openai",
                        "base_url": fake_server.base_url,
                        "price": {"input": 1.0, "output": 1.0},
                    }
                },
                "suites": ["capitals"],
            }
        )
    )
    store = Store(db_url)
    result = execute_plan(load_plan(plan_path), store)
    by_id = {s.item_id: s for s in store.samples(result.run_id)}
    assert set(by_id) == {"france", "japan", "kenya", "peru"}  # the judge answered nothing itself
    assert by_id["france"].passed and by_id["kenya"].passed
    assert not by_id["japan"].passed and "VERDICT FAIL" in by_id["japan"].grade_reason
    assert not by_id["peru"].passed and "unparseable" in by_id["peru"].grade_reason
    assert result.outcome.per_model["referee"].cost > 0  # judging is paid for and counted


def test_a_judge_missing_from_the_plan_is_named_before_any_request(tmp_path, fake_server, db_url, monkeypatch):
    from harness.engine.runs import execute_plan
    from harness.plan import load_plan
    from harness.store import Store

    _judge_suite(tmp_path)
    monkeypatch.setenv("HARNESS_SUITES_PATH", str(tmp_path / "suites"))
    plan_path = tmp_path / "plan.yaml"
    plan_path.write_text(
        yaml.safe_dump(
            {"models": {"student": {"provider": "openai", "base_url": fake_server.base_url}}, "suites": ["capitals"]}
        )
    )
    with pytest.raises(HarnessError, match="judge model 'referee' is not in the plan"):
        execute_plan(load_plan(plan_path), Store(db_url))
    assert fake_server.state.requests == 0
