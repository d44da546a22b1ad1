"""Tool calls: the BFCL-rule grader, the BFCL loader, names mapped out and back, calls in text, outcomes."""

from __future__ import annotations

import json

import pytest
from support.datasets import shared_dataset
from support.tools import gold_calls

from harness.errors import HarnessError
from harness.graders import grade
from harness.plan import SuiteRef
from harness.providers.chat_format import openai_prompt_fields
from harness.providers.text_calls import text_call_style, text_calls, tool_outcome
from harness.providers.tool_names import map_calls_back, wire_names
from harness.records import Completion, Item, Message, Prompt, ToolCall, ToolDefinition
from harness.suite import load_suite
from harness.suite.prompt import PromptBuilder

AREA = {
    "name": "calc.area",
    "description": "area",
    "parameters": {
        "type": "dict",
        "properties": {
            "base": {"type": "integer"},
            "height": {"type": "float"},
            "unit": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["base", "height"],
    },
}
TRUTH = [{"calc.area": {"base": [10], "height": [5.0], "unit": ["cm", ""], "tags": [["a", "b"], ""]}}]


def item(category="simple", truth=TRUTH, functions=(AREA,), language="python"):
    fields = {"category": category, "functions": list(functions), "language": language}
    return Item(id="x", fields=fields, reference=truth, group=category)


def call(name="calc.area", **arguments):
    return ToolCall.parse(name, json.dumps(arguments))


def graded(calls, it=None, response="", **options):
    return grade("tool_calls", response, it or item(), {"calls": tuple(calls), **options})


def test_a_right_call_passes_and_an_int_is_accepted_for_a_float():
    g = graded([call(base=10, height=5)])
    assert g.passed and g.score == 1.0 and g.extracted == "calc.area(base=10, height=5)"


@pytest.mark.parametrize(
    "calls, reason",
    [
        ([call("other", base=10, height=5)], "wrong function: expected calc.area, got other"),
        ([call(base=10)], "missing `height`"),
        ([call(base=10, height=5, color="red")], "unexpected `color`"),
        ([call(base="10", height=5)], "wrong type of `base`"),
        ([call(base=11, height=5)], "value of `base` not accepted"),
        ([call(base=10, height=5, unit="inch")], "value of `unit` not accepted"),
        ([call(base=10, height=5), call(base=10, height=5)], "2 calls for 1 expected"),
        ([], "no call"),
        ([ToolCall.parse("calc.area", '{"base": 10,')], "unparseable arguments of calc.area"),
        ([ToolCall.parse("calc.area", '{}""')], "unparseable arguments"),
    ],
)
def test_the_reason_names_the_first_failure(calls, reason):
    g = graded(calls)
    assert not g.passed and g.score == 0.0
    assert reason in g.reason


def test_strings_are_compared_after_bfcls_normalisation_and_lists_too():
    assert graded([call(base=10, height=5, unit="C.M")]).passed  # case and punctuation ignored
    assert graded([call(base=10, height=5, tags=["A", "b-"])]).passed
    assert not graded([call(base=10, height=5, tags=["b", "a"])]).passed  # list order counts


def test_an_optional_parameter_may_be_left_out_but_a_listed_one_may_not():
    truth = [{"calc.area": {"base": [10], "height": [5.0], "unit": ["cm"]}}]
    assert "missing `unit`" in graded([call(base=10, height=5)], item(truth=truth)).reason


def test_parallel_calls_match_in_any_order():
    truth = [{"calc.area": {"base": [1], "height": [1.0]}}, {"calc.area": {"base": [2], "height": [2.0]}}]
    it = item("parallel", truth)
    assert graded([call(base=2, height=2), call(base=1, height=1)], it).passed
    g = graded([call(base=2, height=2), call(base=3, height=1)], it)
    assert not g.passed and "no call matches expected calc.area" in g.reason
    assert "1 call for 2 expected" in graded([call(base=1, height=1)], it).reason


def test_irrelevance_passes_on_no_call_and_relevance_on_any_call():
    assert graded([], item("irrelevance", [])).passed
    assert not graded([call(base=1, height=1)], item("irrelevance", [])).passed
    assert graded([call("anything", q="x")], item("live_relevance", [])).passed
    assert not graded([], item("live_relevance", [])).passed


def test_a_call_in_the_text_fails_as_such_unless_the_suite_reads_text_calls():
    text = '<tool_call>\n{"name": "calc.area", "arguments": {"base": 10, "height": 5}}\n</tool_call>'
    g = graded([], response=text)
    assert not g.passed and g.reason.startswith("call in text (hermes)")
    assert graded([], response=text, text_tool_calls="hermes").passed
    with pytest.raises(HarnessError, match="text_tool_calls"):
        graded([], response=text, text_tool_calls="yaml")


def test_java_and_javascript_values_are_read_by_declared_type():
    java = {
        "name": "Util.run",
        "parameters": {
            "type": "dict",
            "properties": {
                "n": {"type": "long"},
                "ok": {"type": "boolean"},
                "ids": {"type": "ArrayList", "items": {"type": "integer"}},
                "ctx": {"type": "any"},
            },
            "required": ["n"],
        },
    }
    truth = [{"Util.run": {"n": [5], "ok": [True], "ids": [[1, 2]], "ctx": ["myCtx"]}}]
    it = item("simple_java", truth, (java,), "java")
    good = call("Util.run", n="5L", ok="true", ids="new ArrayList<>(Arrays.asList(1, 2))", ctx="myCtx")
    assert graded([good], it).passed
    assert "a java value is written as a string" in graded([call("Util.run", n=5, ok="true")], it).reason
    js = {
        "name": "f",
        "parameters": {"type": "dict", "properties": {"opts": {"type": "dict"}}, "required": ["opts"]},
    }
    it = item("simple_javascript", [{"f": {"opts": [{"a": [1], "b": ["x"]}]}}], (js,), "javascript")
    assert graded([call("f", opts="{a: 1, b: 'x'}")], it).passed


def test_bfcl_gold_answers_pass_their_own_grader():
    """Every python single-turn gold answer (first accepted value of each parameter) must grade correct."""
    data = shared_dataset("bfcl")
    suite = load_suite(
        SuiteRef(name="bfcl", data=str(data), options={"categories": ["simple_python", "multiple", "parallel"]})
    )
    total = passed = 0
    for it in suite.items():
        total += 1
        passed += grade("tool_calls", "", it, {"calls": gold_calls(it.reference)}).passed
    assert total == 800 and passed == total


def test_bfcl_loader_rows_ids_groups_and_wire_schemas():
    data = shared_dataset("bfcl")
    suite = load_suite(SuiteRef(name="bfcl", data=str(data), options={"categories": ["simple_python", "simple_java"]}))
    items = list(suite.items())
    assert len(items) == suite.count() == 500
    first = items[1]
    assert first.id == "simple_python_1" and first.group == "simple_python"
    fields = openai_prompt_fields(PromptBuilder(suite).build(first))
    function = fields["tools"][0]["function"]
    assert function["name"] == "math_factorial" and function["parameters"]["type"] == "object"
    java = next(i for i in items if i.group == "simple_java")
    java_fields = openai_prompt_fields(PromptBuilder(suite).build(java))
    params = java_fields["tools"][0]["function"]["parameters"]["properties"]
    assert all(p["type"] == "string" for p in params.values())  # Java values are asked for as strings
    with pytest.raises(HarnessError, match="unknown nonsense"):
        load_suite(SuiteRef(name="bfcl", data=str(data), options={"categories": ["nonsense"]})).count()


def test_names_a_server_refuses_are_mapped_out_and_back():
    tools = (ToolDefinition("math.factorial"), ToolDefinition("math_factorial"), ToolDefinition("ok-name"))
    prompt = Prompt(
        (
            Message("user", "5!"),
            Message("assistant", "", tool_calls=(ToolCall.parse("math.factorial", "{}", "c1"),)),
            Message("tool", "120", tool_call_id="c1"),
        ),
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "math.factorial"}},
    )
    names = wire_names(prompt)
    assert names == {"math.factorial": "math_factorial_2"}  # distinct from the offered math_factorial
    fields = openai_prompt_fields(prompt)
    assert [t["function"]["name"] for t in fields["tools"]] == ["math_factorial_2", "math_factorial", "ok-name"]
    assert fields["tool_choice"]["function"]["name"] == "math_factorial_2"
    assert fields["messages"][1]["tool_calls"][0]["function"]["name"] == "math_factorial_2"
    back = map_calls_back(prompt, Completion(tool_calls=(ToolCall.parse("math_factorial_2", '{"n": 5}'),)))
    assert back.tool_calls[0].name == "math.factorial"


def test_calls_written_in_text_are_recognised_in_each_style():
    hermes = '<tool_call>\n{"name": "f", "arguments": {"x": 1}}\n</tool_call>'
    qwen = "<tool_call>\n<function=f>\n<parameter=x>\n1\n</parameter>\n<parameter=s>\nhi there\n</parameter>\n</function>\n</tool_call>"
    bare = '```json\n{"name": "f", "parameters": {"x": 1}}\n```'
    assert text_call_style(hermes) == "hermes" and text_calls(hermes, "hermes")[0].arguments == {"x": 1}
    assert text_call_style(qwen) == "qwen_xml" and text_calls(qwen, "qwen_xml")[0].arguments == {
        "x": 1,
        "s": "hi there",
    }
    assert text_call_style(bare) == "json" and text_calls(bare, "json")[0].name == "f"
    assert text_call_style("The answer is {not a call}.") == ""
    assert text_call_style('{"name": "Paris"}') == ""  # a JSON answer that names no arguments is not a call
    assert tool_outcome(hermes, ()) == "text_call"
    assert tool_outcome("hello", ()) == "no_call"
    assert tool_outcome("", (ToolCall.parse("f", '{}""'),)) == "bad_arguments"
    assert tool_outcome("", (ToolCall.parse("f", "{}"),)) == "call"
    assert tool_outcome("", (), "timeout") == "error"


def test_the_bundled_tool_calls_suite_has_50_items_in_english_and_chinese():
    suite = load_suite("tool-calls")
    items = list(suite.items())
    assert len(items) == 50
    assert {i.fields["lang"] for i in items} == {"en", "zh"}
    assert {i.group for i in items} == {"simple", "multiple", "parallel", "parallel_multiple", "irrelevance"}
    builder = PromptBuilder(suite)
    for it in items:
        prompt = builder.build(it)
        assert prompt.tools and prompt.messages[0].role == "system" and prompt.messages[-1].role == "user"
        if it.reference:  # the expected calls themselves grade correct
            assert grade("tool_calls", "", it, {"calls": gold_calls(it.reference)}).passed, it.id


def test_suites_validate_grades_each_items_expected_calls():
    from harness.graders.grading import validate_suite

    result = validate_suite(load_suite("tool-calls"))
    assert (result.total, result.passed) == (50, 50)


def test_suites_validate_on_bfcl_passes_all_but_rows_whose_gold_breaks_bfcls_rules():
    from harness.graders.grading import validate_suite

    data = shared_dataset("bfcl")
    result = validate_suite(load_suite(SuiteRef(name="bfcl", data=str(data))))
    assert result.total == 3641 and result.passed == 3631
    assert "parallel_multiple_12" in dict(result.failures)  # a parameter outside its own schema


def test_the_expected_calls_are_shown_as_people_read_them():
    from harness.graders import shown_reference

    shown = shown_reference("tool_calls", json.dumps(TRUTH + TRUTH))
    assert shown.splitlines()[0] == 'calc.area(base=10, height=5.0, unit="cm" | omitted, tags=["a", "b"] | omitted)'
    assert len(shown.splitlines()) == 2
    assert shown_reference("tool_calls", "[]").startswith("no expected call")
