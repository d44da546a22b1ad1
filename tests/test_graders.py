"""The grader registry: lookup, plugins from entry points, option checks, and grade() never crashing a run."""

from __future__ import annotations

import sys
import textwrap
from importlib.metadata import EntryPoint

import pytest

import harness.graders as graders
from harness.errors import HarnessError
from harness.graders import available_graders, check_options, get_grader, grade, register
from harness.records import Grade, Item

ITEM = Item(id="t/1", fields={"question": "2+2?"}, reference="4")


def test_builtins_are_registered():
    names = available_graders()
    for name in ("exact", "regex", "numeric", "mcq", "code"):
        assert name in names
        assert callable(get_grader(name))
    assert names == sorted(names)


def test_unknown_grader_names_the_known_ones():
    with pytest.raises(HarnessError) as err:
        get_grader("exactly")
    message = str(err.value)
    assert "unknown grader 'exactly'" in message
    assert "exact, " in message and "numeric" in message and "mcq" in message
    assert "\n" not in message


def test_grade_dispatches_with_options():
    assert grade("exact", "4", ITEM, {}).passed
    assert grade("exact", "The answer is 4.", ITEM, {"extract": "answer is"}).passed
    assert not grade("exact", "5", ITEM, None).passed


def test_unknown_option_is_a_user_error():
    with pytest.raises(HarnessError, match="unknown option.*tol.*accepted: tolerance, relative"):
        grade("numeric", "4", ITEM, {"tol": 0.1})
    with pytest.raises(HarnessError, match="extrct"):
        check_options("exact", {"extrct": "answer is"})
    check_options("exact", {"extract": "answer is", "normalize": False})
    check_options("code", {"style": "mbpp", "wall_s": 5})  # **limits: checked by the grader itself


def test_grader_exception_becomes_a_failed_grade(monkeypatch):
    def broken(response, item):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setitem(graders._builtins, "broken", broken)
    result = grade("broken", "anything", ITEM, {})
    assert isinstance(result, Grade)
    assert not result.passed and result.score == 0.0
    assert "ZeroDivisionError" in result.reason and "division by zero" in result.reason


def test_harness_error_inside_a_grader_propagates(monkeypatch):
    def picky(response, item):
        raise HarnessError("item 't/1' lacks field 'x'")

    monkeypatch.setitem(graders._builtins, "picky", picky)
    with pytest.raises(HarnessError, match="lacks field"):
        grade("picky", "anything", ITEM, {})


def test_grader_returning_a_non_grade_fails_the_item(monkeypatch):
    monkeypatch.setitem(graders._builtins, "sloppy", lambda response, item: True)
    result = grade("sloppy", "x", ITEM, {})
    assert not result.passed and "returned bool" in result.reason


@pytest.mark.parametrize("score", [float("nan"), 1.5, -0.1, "1"])
def test_grader_returning_a_score_outside_0_1_fails_the_item(monkeypatch, score):
    """Else a NaN (stored by SQLite as NULL) or 1.5 would skew every mean computed over it."""
    monkeypatch.setitem(graders._builtins, "odd", lambda response, item: Grade(score, True))
    result = grade("odd", "x", ITEM, {})
    assert not result.passed and result.score == 0.0 and "not a number in [0, 1]" in result.reason


def test_partial_credit_scores_pass_through(monkeypatch):
    monkeypatch.setitem(graders._builtins, "half", lambda response, item: Grade(0.5, False, "half"))
    assert grade("half", "x", ITEM, {}) == Grade(0.5, False, "half")


def test_register_is_one_line_and_refuses_a_clash(monkeypatch):
    monkeypatch.setattr(graders, "_builtins", dict(graders._builtins))

    @register("always")
    def always(response: str, item: Item) -> Grade:
        return Grade.of(True, "ok")

    assert get_grader("always") is always
    assert grade("always", "", ITEM, {}).passed
    with pytest.raises(ValueError, match="already registered"):
        register("always")(lambda response, item: Grade.of(False))


def _fake_entry_points(eps):
    def entry_points(group=None):
        assert group == "harness.graders"
        return list(eps)

    return entry_points


def test_plugin_from_entry_point_is_loaded_lazily(tmp_path, monkeypatch):
    (tmp_path / "harness_plugin_shout.py").write_text(
        textwrap.dedent("""
        from harness.records import Grade
        LOADED = True
        def shout(response, item, loud=True):
            return Grade.of(response.isupper() == loud, "shout")
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(graders, "_plugins", {})
    ep = EntryPoint(name="shout", value="harness_plugin_shout:shout", group="harness.graders")
    monkeypatch.setattr(graders, "entry_points", _fake_entry_points([ep]))

    assert "shout" in available_graders()
    assert "harness_plugin_shout" not in sys.modules  # listed, not imported
    assert grade("shout", "HEY", ITEM, {}).passed
    assert not grade("shout", "hey", ITEM, {"loud": True}).passed
    assert "harness_plugin_shout" in sys.modules
    with pytest.raises(HarnessError, match="unknown option"):
        grade("shout", "HEY", ITEM, {"volume": 11})


def test_builtin_wins_over_a_plugin_of_the_same_name(monkeypatch):
    monkeypatch.setattr(graders, "_plugins", {})
    ep = EntryPoint(name="exact", value="no_such_module:exact", group="harness.graders")
    monkeypatch.setattr(graders, "entry_points", _fake_entry_points([ep]))
    assert get_grader("exact").__module__ == "harness.graders.exact"


def test_broken_plugin_is_a_user_error(monkeypatch):
    monkeypatch.setattr(graders, "_plugins", {})
    ep = EntryPoint(name="ghost", value="no_such_module_xyz:grade", group="harness.graders")
    monkeypatch.setattr(graders, "entry_points", _fake_entry_points([ep]))
    with pytest.raises(HarnessError, match="ghost.*failed to load.*ModuleNotFoundError"):
        get_grader("ghost")
