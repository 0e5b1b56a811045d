"""Chat Completions: recorded streams replayed; the §3.3 deviations of compatible servers;
the request body against the openai SDK's param types."""

from __future__ import annotations

import json

import pytest
from test_wire_support import SPLITS, assert_conforms, of_type, replay_sse, traffic_bytes

from voicecli.events import Error, ReasoningDelta, TextDelta, ToolCall, TurnEnd, Usage
from voicecli.profiles import ModelSettings
from voicecli.wire import chat
from voicecli.wire.chat import ChatDecoder
from voicecli.items import FunctionCall, FunctionOutput, Message, OpaqueItem, Request, ToolDef

AFTER_TOOL_TEXT = ('The secrets associated with the passwords are:\n\n- "mellon": Welcome to Moria!\n'
                   '- "radiance": Life before Death')
RECORDED = {
    "chat_sse_text_01": dict(
        text="4200 + 42 equals 4242.", calls=[], usage=Usage(16, 10, 0, 0), status="completed", reason=None,
        response_id="chatcmpl-CoDWl5rS0pF10P0W0TDVgY3NA26dk"),
    "chat_sse_text_after_tool_01": dict(
        text=AFTER_TOOL_TEXT, calls=[], usage=Usage(149, 28, 0, 0), status="completed", reason=None,
        response_id="chatcmpl-CoDWqisNQ3ulIXyQYcUImFvlKIK2N"),
    "chat_sse_tool_01": dict(
        text="", calls=[ToolCall("call_1EYWDzueHEp8OsB8jJSEp7WB", "multiply", '{"a":1231,"b":2331}')],
        usage=Usage(54, 20, 0, 0), status="completed", reason=None,
        response_id="chatcmpl-BWlJBDk2xe66hjff60joVYpXi1hh4"),
    "chat_sse_tool_parallel_01": dict(
        text="", calls=[ToolCall("call_M26z19sncd7b4LBgzKRRbaUE", "secret_retrieval_tool", '{"password": "mellon"}'),
                        ToolCall("call_KPXe5NX7IcKkaBUhc6dto2QV", "secret_retrieval_tool",
                                 '{"password": "radiance"}')],
        usage=Usage(75, 53, 0, 0), status="completed", reason=None,
        response_id="chatcmpl-CoDWpGC47t2wtJ7PYJq9LCn0IZunc"),
    "chat_sse_usage_length_01": dict(
        text="Here is a list of all 50 U.S. states:\n\n1. Alabama\n2. Alaska\n3. Arizona\n4. Arkansas\n"
             "5. California\n6. Colorado\n7. Connecticut\n8. Delaware\n9. Florida\n10",
        calls=[], usage=Usage(14, 50, 0, 0), status="incomplete", reason="max_output_tokens",
        response_id="chatcmpl-CoDWtmOB2DZI2l0bK84UVJEMpo63W"),
}


@pytest.mark.parametrize("size", SPLITS)
@pytest.mark.parametrize("name", sorted(RECORDED))
def test_recorded_stream(name, size):
    expected = RECORDED[name]
    events = replay_sse(traffic_bytes(f"{name}.sse"), size, ChatDecoder())
    assert "".join(e.text for e in of_type(events, TextDelta)) == expected["text"]
    assert of_type(events, ToolCall) == expected["calls"]
    assert of_type(events, Usage) == [expected["usage"]]
    assert of_type(events, Error) == [] and of_type(events, ReasoningDelta) == []
    assert events[-1] == TurnEnd(expected["status"], expected["response_id"], expected["reason"])
    assert of_type(events, TurnEnd) == [events[-1]]


def run(chunks: list[dict]) -> list:
    decoder = ChatDecoder()
    events = [e for c in chunks for e in decoder.feed(c)]
    return events + decoder.finish()


def delta(d: dict, finish: str | None = None, **extra) -> dict:
    return {"id": "chatcmpl-x", "choices": [{"index": 0, "delta": d, "finish_reason": finish}], **extra}


def test_tool_calls_without_index_or_id_and_stop_finish():
    # Ollama-style: whole arguments in one chunk, no index, no id, finish_reason "stop"
    events = run([delta({"tool_calls": [{"function": {"name": "f", "arguments": '{"x":1}'}}]}),
                  delta({}, "stop")])
    assert of_type(events, ToolCall) == [ToolCall("call_0", "f", '{"x":1}')]
    assert events[-1].status == "completed"


def test_arguments_as_an_object_are_serialised():
    events = run([delta({"tool_calls": [{"index": 0, "id": "call_a", "function": {"name": "f",
                                                                                   "arguments": {"x": [1, 2]}}}]}),
                  delta({}, "tool_calls")])
    assert of_type(events, ToolCall) == [ToolCall("call_a", "f", '{"x": [1, 2]}')]


def test_interleaved_parallel_fragments_with_repeated_ids():
    events = run([
        delta({"tool_calls": [{"index": 0, "id": "call_a", "function": {"name": "f", "arguments": ""}}]}),
        delta({"tool_calls": [{"index": 1, "id": "call_b", "function": {"name": "g", "arguments": '{"y"'}}]}),
        delta({"tool_calls": [{"index": 0, "id": "call_a", "function": {"name": "f", "arguments": '{"x"'}}]}),
        delta({"tool_calls": [{"index": 1, "function": {"arguments": ":2}"}}]}),
        delta({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}),
        delta({}, "tool_calls"),
    ])
    assert of_type(events, ToolCall) == [ToolCall("call_a", "f", '{"x":1}'), ToolCall("call_b", "g", '{"y":2}')]


def test_index_less_parallel_calls_told_apart_by_id():
    events = run([
        delta({"tool_calls": [{"id": "call_a", "function": {"name": "f", "arguments": '{"x":'}}]}),
        delta({"tool_calls": [{"function": {"arguments": "1}"}}]}),
        delta({"tool_calls": [{"id": "call_b", "function": {"name": "g", "arguments": "{}"}}]}),
        delta({}, "tool_calls"),
    ])
    assert of_type(events, ToolCall) == [ToolCall("call_a", "f", '{"x":1}'), ToolCall("call_b", "g", "{}")]


def test_reasoning_fields_of_compatible_servers():
    events = run([delta({"reasoning_content": "think "}), delta({"reasoning": "more"}),
                  delta({"content": "answer"}, "stop")])
    assert of_type(events, ReasoningDelta) == [ReasoningDelta("think "), ReasoningDelta("more")]
    assert of_type(events, TextDelta) == [TextDelta("answer")]


def test_refusal_delta():
    events = run([delta({"refusal": "I can't help with that."}, "stop")])
    assert of_type(events, TextDelta) == [TextDelta("I can't help with that.", refusal=True)]


def test_groq_usage_and_missing_done():
    events = run([delta({"content": "hi"}),
                  delta({}, "stop", x_groq={"id": "req_1", "usage": {"prompt_tokens": 5, "completion_tokens": 2,
                                                                     "total_tokens": 7, "queue_time": 0.01}})])
    assert of_type(events, Usage) == [Usage(5, 2, 0, 0)]
    assert events[-1] == TurnEnd("completed", "chatcmpl-x")


def test_usage_with_cache_and_reasoning_details():
    events = run([delta({"content": "x"}, "stop"),
                  {"id": "chatcmpl-x", "choices": [], "usage": {
                      "prompt_tokens": 2000, "completion_tokens": 300, "total_tokens": 2300,
                      "prompt_tokens_details": {"cached_tokens": 1024},
                      "completion_tokens_details": {"reasoning_tokens": 256}}}])
    assert of_type(events, Usage) == [Usage(2000, 300, 1024, 256)]


def test_content_filter_is_incomplete():
    assert run([delta({"content": "x"}, "content_filter")])[-1].reason == "content_filter"


def test_mid_stream_error_chunk():
    events = run([delta({"content": "par"}),
                  {"error": {"message": "The server had an error while processing your request.",
                             "type": "server_error", "param": None, "code": None}}])
    [error] = of_type(events, Error)
    assert (error.kind, error.retryable) == ("server", True)
    assert events[-1].status == "failed"


def test_stream_cut_before_finish_reason():
    events = run([delta({"content": "par"})])
    assert of_type(events, Error)[0].kind == "network"
    assert events[-1] == TurnEnd("failed", "chatcmpl-x", "stream_ended")


def test_finish_is_idempotent():
    decoder = ChatDecoder()
    decoder.feed(delta({"content": "x"}, "stop"))
    assert len(decoder.finish()) == 1 and decoder.finish() == []


# --------------------------------------------------------------------------------------------
# builders


def create_params():
    """The SDK's request param types, imported on first use: importing openai at the top would cost
    each xdist worker ~0.8 s of CPU at collection."""
    from openai.types.chat import completion_create_params

    return completion_create_params


TOOL = ToolDef(name="secret_retrieval_tool", description="A tool that requires a password to retrieve a secret.",
               command=["x"], strict=False, parameters={
                   "properties": {"password": {"title": "Password", "type": "string"}}, "required": ["password"],
                   "additionalProperties": False, "type": "object"})


def test_recorded_tool_round_trip_request_is_reproduced():
    recorded = json.loads(traffic_bytes("chat_sse_text_after_tool_01.request.json"))
    calls = recorded["messages"][2]["tool_calls"]
    req = Request("gpt-4o", "Use parallel tool calling.", [
        Message("user", recorded["messages"][1]["content"]),
        *[FunctionCall(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in calls],
        FunctionOutput(calls[0]["id"], "Welcome to Moria!"),
        FunctionOutput(calls[1]["id"], "Life before Death"),
    ], [TOOL])
    body = chat.build_body(req, stream=True)
    assert body["messages"] == recorded["messages"]
    # strict=false is left out in our dialect (only sent when true); otherwise the recorded tool
    assert body["tools"] == [{"type": "function", "function": {
        k: v for k, v in recorded["tools"][0]["function"].items() if k != "strict"}}]
    assert body["stream_options"] == {"include_usage": True}
    assert_conforms(body, create_params().CompletionCreateParamsStreaming)


def test_settings_mapping_and_dropped_responses_only_settings():
    settings = ModelSettings(temperature=0.2, max_output_tokens=64, reasoning_effort="low", reasoning_summary="auto",
                             verbosity="high", seed=7, frequency_penalty=0.5, presence_penalty=-0.5,
                             service_tier="default", parallel_tool_calls=True, tool_choice="secret_retrieval_tool",
                             store=True).request_settings()
    req = Request("gpt-5.5", None, [Message("user", "hi")], [TOOL], settings, store=True,
                  previous_response_id="resp_1")
    body = chat.build_body(req, stream=True, include_usage=False)
    assert_conforms(body, create_params().CompletionCreateParamsStreaming)
    assert body["max_completion_tokens"] == 64 and "max_output_tokens" not in body
    assert body["reasoning_effort"] == "low" and body["verbosity"] == "high"
    assert body["tool_choice"] == {"type": "function", "function": {"name": "secret_retrieval_tool"}}
    for absent in ("reasoning", "reasoning_summary", "store", "previous_response_id", "stream_options", "text"):
        assert absent not in body


def test_unset_settings_absent_and_no_tool_settings_without_tools():
    req = Request("gpt-4o", None, [Message("user", "What is 4200 + 42?")],
                  settings={"tool_choice": "auto", "parallel_tool_calls": False})
    assert chat.build_body(req, stream=True) == json.loads(traffic_bytes("chat_sse_text_01.request.json"))
    assert chat.build_body(req, stream=False) == {"model": "gpt-4o", "messages": [
        {"role": "user", "content": "What is 4200 + 42?"}]}


def test_history_to_messages():
    items = [Message("user", "look", images=["https://example.com/cat.png"]),
             Message("assistant", "Let me check."), FunctionCall("call_1", "f", "{}"),
             FunctionOutput("call_1", "done"),
             OpaqueItem("responses", {"type": "reasoning"}), Message("assistant", "Done."),
             FunctionCall("call_2", "f", "{}")]
    assert chat.messages("Be nice.", items) == [
        {"role": "system", "content": "Be nice."},
        {"role": "user", "content": [{"type": "text", "text": "look"},
                                     {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "done"},
        {"role": "assistant", "content": "Done.", "tool_calls": [
            {"id": "call_2", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
    ]
