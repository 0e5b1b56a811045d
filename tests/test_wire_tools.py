"""One ToolDef → the three function-tool dialects of protocols.md §1.3, strict normalisation,
and hosted tools."""

from __future__ import annotations

import copy

import pytest
from test_wire_support import assert_conforms

from voicecli.items import ToolDef
from voicecli.wire import tools

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
STRICT_SCHEMA = {**SCHEMA, "additionalProperties": False}


def weather(**kw) -> ToolDef:
    return ToolDef(name="get_weather", description="Weather for a city.", command=["w"],
                   parameters=copy.deepcopy(SCHEMA), **kw)


def test_three_dialects_exactly_as_documented():
    # the SDK's types are imported in the tests that use them: importing openai at the top would cost
    # each xdist worker ~0.8 s of CPU at collection
    from openai.types.chat.chat_completion_function_tool_param import ChatCompletionFunctionToolParam
    from openai.types.realtime.realtime_function_tool_param import RealtimeFunctionToolParam
    from openai.types.responses.tool_param import ToolParam

    tool = weather()
    assert tools.to_responses(tool) == {"type": "function", "name": "get_weather", "description": "Weather for a city.",
                                        "parameters": STRICT_SCHEMA, "strict": True}
    assert tools.to_chat(tool) == {"type": "function", "function": {
        "name": "get_weather", "description": "Weather for a city.", "parameters": STRICT_SCHEMA, "strict": True}}
    assert tools.to_realtime(tool) == {"type": "function", "name": "get_weather",
                                       "description": "Weather for a city.", "parameters": SCHEMA}
    assert_conforms(tools.to_responses(tool), ToolParam)
    assert_conforms(tools.to_chat(tool), ChatCompletionFunctionToolParam)
    assert_conforms(tools.to_realtime(tool), RealtimeFunctionToolParam)


def test_not_strict():
    tool = weather(strict=False)
    assert tools.to_responses(tool)["strict"] is False  # explicit: Responses defaults to strict
    assert tools.to_responses(tool)["parameters"] == SCHEMA
    assert "strict" not in tools.to_chat(tool)["function"]
    assert tools.to_chat(tool)["function"]["parameters"] == SCHEMA


def test_strict_normalisation_makes_optional_fields_nullable_and_closes_every_object():
    tool = ToolDef(name="search", command=["s"], parameters={
        "type": "object",
        "properties": {
            "query": {"type": "string"},
            "limit": {"type": "integer"},
            "kinds": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
            "mode": {"enum": ["fast", "deep"]},
            "sort": {"type": "string", "enum": ["asc", "desc"]},
            "near": {"type": ["number", "string"]},
            "where": {"$ref": "#/$defs/place"},
        },
        "required": ["query"],
        "$defs": {"place": {"type": "object", "properties": {"lat": {"type": "number"}}, "required": ["lat"]}},
    })
    original = copy.deepcopy(tool.parameters)
    schema = tools.strict_schema(tool)
    assert tool.parameters == original  # the profile's schema is not touched
    assert schema == {
        "type": "object",
        "properties": {
            "query": {"type": "string"},
            "limit": {"type": ["integer", "null"]},
            "kinds": {"type": ["array", "null"], "items": {
                "type": "object", "properties": {"name": {"type": ["string", "null"]}},
                "required": ["name"], "additionalProperties": False}},
            "mode": {"anyOf": [{"enum": ["fast", "deep"]}, {"type": "null"}]},
            "sort": {"type": ["string", "null"], "enum": ["asc", "desc", None]},
            "near": {"type": ["number", "string", "null"]},
            "where": {"anyOf": [{"$ref": "#/$defs/place"}, {"type": "null"}]},
        },
        "required": ["query", "limit", "kinds", "mode", "sort", "near", "where"],
        "additionalProperties": False,
        "$defs": {"place": {"type": "object", "properties": {"lat": {"type": "number"}}, "required": ["lat"],
                            "additionalProperties": False}},
    }


def test_empty_parameters_are_fine_when_strict():
    tool = ToolDef(name="now", command=["date"])
    assert tools.to_responses(tool)["parameters"] == {"type": "object", "properties": {}, "required": [],
                                                      "additionalProperties": False}


@pytest.mark.parametrize("parameters, reason", [
    ({"type": "object", "properties": {}, "additionalProperties": True}, "parameters allows additional properties"),
    ({"type": "object", "properties": {"tags": {"type": "object", "additionalProperties": {"type": "string"}}}},
     "parameters.tags allows additional properties"),
    ({"type": "object", "properties": {"x": {"oneOf": [{"type": "string"}, {"type": "integer"}]}}},
     "'oneOf' at parameters.x is not supported"),
    ({"type": "array", "items": {"type": "string"}}, "the parameters root must be a plain object schema"),
])
def test_schemas_that_cannot_be_strict_raise_a_clear_error(parameters, reason):
    tool = ToolDef(name="bad_tool", command=["x"], parameters=parameters)
    with pytest.raises(ValueError, match="tool 'bad_tool': cannot use strict mode") as exc:
        tools.to_responses(tool)
    assert reason in str(exc.value) and "strict = false" in str(exc.value)
    with pytest.raises(ValueError):
        tools.to_chat(tool)
    tools.to_realtime(tool)  # Realtime has no strict mode: sent as written
    assert tools.to_responses(ToolDef(name="bad_tool", command=["x"], parameters=parameters, strict=False))


def test_hosted_tools_pass_through_for_responses_only():
    from openai.types.responses.tool_param import ToolParam

    search = ToolDef(name="web_search", type="web_search", options={"search_context_size": "low"})
    files = ToolDef(name="file_search", type="file_search", options={"vector_store_ids": ["vs_1"]})
    code = ToolDef(name="code_interpreter", type="code_interpreter")
    assert tools.to_responses(search) == {"type": "web_search", "search_context_size": "low"}
    assert tools.to_responses(files) == {"type": "file_search", "vector_store_ids": ["vs_1"]}
    assert tools.to_responses(code) == {"type": "code_interpreter", "container": {"type": "auto"}}
    for tool in (search, files, code):
        assert_conforms(tools.to_responses(tool), ToolParam)
        for transport, convert in (("chat", tools.to_chat), ("realtime", tools.to_realtime)):
            with pytest.raises(ValueError, match=f"tool '{tool.name}'.*not with transport '{transport}'"):
                convert(tool)


def test_recorded_web_search_request_tool():
    assert tools.to_responses(ToolDef(name="web_search", type="web_search")) == {"type": "web_search"}


def test_forced_tool_name():
    assert tools.forced_tool_name("auto") is None and tools.forced_tool_name({"type": "x"}) is None
    assert tools.forced_tool_name("get_weather") == "get_weather"
