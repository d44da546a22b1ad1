"""Conversations as typed values: parts, tools and calls; their stored form, their wire form, and reading calls back."""

from __future__ import annotations

import json

from harness.providers.chat_format import ToolCallDeltas, openai_prompt_fields, tool_calls_of
from harness.providers.openai_body import StreamReader, completion_from_json
from harness.records import (
    Completion,
    ImagePart,
    Message,
    Prompt,
    TextPart,
    ToolCall,
    ToolDefinition,
    tool_calls_from_json,
    tool_calls_json,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 16

WEATHER = ToolDefinition(
    "get_weather",
    "Current weather of a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def rich_prompt() -> Prompt:
    return Prompt(
        (
            Message("system", "You help."),
            Message("user", (TextPart("What is in this chart?"), ImagePart(PNG, "image/png", source="a.png"))),
            Message("assistant", "", tool_calls=(ToolCall.parse("get_weather", '{"city": "Paris"}', "call_1"),)),
            Message("tool", '{"temp": 21}', tool_call_id="call_1"),
        ),
        tools=(WEATHER,),
        tool_choice="auto",
    )


def test_a_plain_prompt_keeps_its_old_stored_form():
    prompt = Prompt((Message("system", "s"), Message("user", "q")))
    assert prompt.plain
    assert prompt.to_json() == [["system", "s"], ["user", "q"]]
    assert Prompt.from_json(json.loads(json.dumps(prompt.to_json()))) == prompt
    assert prompt.text == "s\n\nq"


def test_a_rich_prompt_round_trips_without_image_bytes():
    prompt = rich_prompt()
    assert not prompt.plain
    stored = json.loads(json.dumps(prompt.to_json()))
    assert "tools" in stored and stored["tool_choice"] == "auto"
    image = stored["messages"][1]["content"][1]
    assert image["type"] == "image" and image["source"] == "a.png" and image["media_type"] == "image/png"
    assert image["sha256"] == ImagePart(PNG, "image/png").sha256
    assert "data" not in image and "base64" not in json.dumps(stored)
    back = Prompt.from_json(stored)
    assert back.tools == prompt.tools and back.tool_choice == "auto"
    assert back.messages[2].tool_calls[0].arguments == {"city": "Paris"}
    assert back.messages[3].tool_call_id == "call_1"
    assert back.messages[1].images[0].source == "a.png"
    assert back.text == prompt.text == 'You help.\n\nWhat is in this chart?\n\n\n\n{"temp": 21}'


def test_the_wire_form_is_openais():
    fields = openai_prompt_fields(rich_prompt())
    assert fields["tools"] == [
        {
            "type": "function",
            "function": {"name": "get_weather", "description": WEATHER.description, "parameters": WEATHER.parameters},
        }
    ]
    assert fields["tool_choice"] == "auto"
    user = fields["messages"][1]
    assert user["content"][0] == {"type": "text", "text": "What is in this chart?"}
    assert user["content"][1]["type"] == "image_url"
    assert user["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")
    assistant = fields["messages"][2]
    assert assistant["content"] is None
    assert assistant["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    ]
    assert fields["messages"][3] == {"role": "tool", "content": '{"temp": 21}', "tool_call_id": "call_1"}
    plain = openai_prompt_fields(Prompt((Message("user", "q"),)))
    assert plain == {"messages": [{"role": "user", "content": "q"}]}


def test_arguments_are_parsed_or_say_why_not():
    assert ToolCall.parse("f", '{"a": 1}').arguments == {"a": 1}
    assert ToolCall.parse("f", {"a": 1}).raw_arguments == '{"a": 1}'
    bad = ToolCall.parse("f", '{}""')
    assert bad.arguments is None and "not JSON" in bad.parse_error and bad.raw_arguments == '{}""'
    assert ToolCall.parse("f", "[1]").parse_error.startswith("arguments are a JSON list")
    assert ToolCall.parse("f", "").parse_error == "empty arguments"


def test_calls_are_read_from_a_whole_body():
    body = {
        "model": "m",
        "choices": [
            {
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "a", "arguments": '{"x": 1}'}},
                        {"id": "c2", "type": "function", "function": {"name": "b", "arguments": "{}"}},
                    ],
                },
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5},
    }
    completion = completion_from_json(json.dumps(body).encode(), 0.1, ["q"])
    assert completion.text == "" and completion.finish_reason == "tool_calls"
    assert [(c.id, c.name, c.arguments) for c in completion.tool_calls] == [("c1", "a", {"x": 1}), ("c2", "b", {})]


def test_the_legacy_function_call_is_read_when_there_are_no_tool_calls():
    calls = tool_calls_of({"content": None, "function_call": {"name": "f", "arguments": '{"k": "v"}'}})
    assert [(c.name, c.arguments) for c in calls] == [("f", {"k": "v"})]


def sse(*chunks) -> list[str]:
    lines = []
    for chunk in chunks:
        lines += [f"data: {json.dumps(chunk)}", ""]
    return lines + ["data: [DONE]", ""]


def delta_chunk(delta, finish=None):
    return {"model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def test_streamed_calls_interleave_by_index_and_arguments_arrive_in_pieces():
    reader = StreamReader(["q"])
    for line in sse(
        delta_chunk({"role": "assistant", "content": None}),
        delta_chunk({"tool_calls": [{"index": 0, "id": "c0", "function": {"name": "a", "arguments": ""}}]}),
        delta_chunk({"tool_calls": [{"index": 1, "id": "c1", "function": {"name": "b", "arguments": '{"y"'}}]}),
        delta_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"x": '}}]}),
        delta_chunk({"tool_calls": [{"index": 1, "function": {"arguments": ": 2}"}}]}),
        delta_chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
        delta_chunk({}, "tool_calls"),
    ):
        reader.feed_line(line)
    completion = reader.completion(0.2, None)
    assert [(c.id, c.name, c.arguments) for c in completion.tool_calls] == [
        ("c0", "a", {"x": 1}),
        ("c1", "b", {"y": 2}),
    ]
    assert completion.completion_tokens > 0  # no usage: the calls are counted in the estimate


def test_a_server_that_repeats_id_and_name_in_every_delta_gets_them_once():
    # llama.cpp's server sends the id and the whole name with every piece of the arguments.
    deltas = ToolCallDeltas()
    for piece in ['{"city"', ': "Pa', 'ris"}']:
        deltas.feed(
            {"tool_calls": [{"index": 0, "id": "call_x", "function": {"name": "get_weather", "arguments": piece}}]}
        )
    (call,) = deltas.result()
    assert (call.id, call.name, call.arguments) == ("call_x", "get_weather", {"city": "Paris"})


def test_stored_calls_and_cached_completions_round_trip():
    calls = (ToolCall.parse("a", '{"x": 1}', "c1"), ToolCall.parse("b", "oops"))
    assert tool_calls_from_json(tool_calls_json(calls)) == calls
    assert tool_calls_json(()) is None and tool_calls_from_json(None) == ()
    completion = Completion(text="t", tool_calls=calls, cached_tokens=7)
    assert Completion.from_json(json.loads(json.dumps(completion.to_json()))) == completion
    # A cache entry written before tool calls existed still reads.
    assert Completion.from_json({"text": "old", "finish_reason": "stop"}).tool_calls == ()
