"""Responses API: every recorded stream replayed through SSE + ResponsesDecoder; builders checked
against the openai SDK's param types. Those are imported inside the tests that use them: importing
openai at the top would cost each xdist worker ~0.8 s of CPU at collection."""

from __future__ import annotations

import hashlib
import json

import pytest
from test_wire_support import SPLITS, assert_conforms, conformance_problems, of_type, replay_sse, traffic_bytes

from voicecli.events import (Error, HostedToolProgress, ReasoningDelta, TextDelta, ToolCall, TurnEnd,
                             Usage)
from voicecli.profiles import ModelSettings
from voicecli.wire import responses
from voicecli.wire.responses import ResponsesDecoder
from voicecli.items import FunctionCall, FunctionOutput, Message, OpaqueItem, Request, ToolDef

# Expected values, read once from the recordings (tests/traffic/SOURCES.md; two are read from
# ../shared/traffic, see shared_data.py) and written down here so a decoder change that loses or
# alters anything fails.
RECORDED = {
    "responses_sse_text_01": dict(
        text="4200 + 42 equals 4242.", calls=[], usage=Usage(16, 11, 0, 0), status="completed", reason=None,
        response_id="resp_0360bd45725b0a010068f966a4c4a881959717ba17b93477ef", items=["message"]),
    "responses_sse_tool_01": dict(
        text="", calls=[ToolCall("call_kL0PCQV7M2WMoVX8V8OtYSAL", "get_capital", '{"country":"France"}',
                                 "fc_67e554a1de488191af0831d35cbe082e0794405d35281ae2")],
        usage=Usage(255, 16, 0, 0), status="completed", reason=None,
        response_id="resp_67e554a155508191900ee113293c4c830794405d35281ae2", items=["function_call"]),
    "responses_sse_text_after_tool_01": dict(
        text="The capital of France is Paris.", calls=[], usage=Usage(278, 9, 0, 0), status="completed",
        reason=None, response_id="resp_67e554a21aa88191b65876ac5e5bbe0406c52f0e511c76ed", items=["message"]),
    "responses_sse_tool_parallel_01": dict(
        text="", calls=[
            ToolCall("call_sKC7OABqf2A2PTLCm0CLeRWV", "secret_retrieval_tool", '{"password":"mellon"}',
                     "fc_0c3b09d20eedf2d30068f966bad8b88190af96d232f504ef1f"),
            ToolCall("call_OdR3s3xop0vtgkDyWRMLafuH", "secret_retrieval_tool", '{"password":"radiance"}',
                     "fc_0c3b09d20eedf2d30068f966bafd288190a9045fdc554de6d5")],
        usage=Usage(36, 54, 0, 0), status="completed", reason=None,
        response_id="resp_0c3b09d20eedf2d30068f966b9b7048190b7501a24a1447ec0",
        items=["function_call", "function_call"]),
    "responses_sse_reasoning_01": dict(
        text="3", calls=[], usage=Usage(32, 839, 0, 832), status="completed", reason=None,
        response_id="resp_0a1097cbfef27a8c00696afa23fb9c819693455c72eabd7718", items=["reasoning", "message"]),
    "responses_sse_incomplete_01": dict(
        text="Sure! Here is a list of all 50 U.S. states:\n\n1. Alabama\n2. Alaska\n3. Arizona\n4. Arkansas\n"
             "5. California\n6. Colorado\n7. Connecticut\n8. Delaware\n9. Florida",
        calls=[], usage=Usage(14, 50, 0, 0), status="incomplete", reason="max_output_tokens",
        response_id="resp_0cca8afa69cc6ca90068f966c4826c8193ae5b3f5ad5030e49", items=["message"]),
    "responses_sse_web_search_01": dict(
        text_sha256="91131fdd8cee900dc6d487e12b2e4201f704ecd7b964acfac5119fd05b4fb721", text_len=1503,
        calls=[], usage=Usage(16890, 400, 0, 0), status="completed", reason=None,
        response_id="resp_0b8efb0a110fb9bc0069793b0347508190bdfe1a3be4622a9b",
        items=["web_search_call", "message"]),
}


@pytest.mark.parametrize("size", SPLITS)
@pytest.mark.parametrize("name", sorted(RECORDED))
def test_recorded_stream(name, size):
    expected = RECORDED[name]
    decoder = ResponsesDecoder()
    events = replay_sse(traffic_bytes(f"{name}.sse"), size, decoder)

    text = "".join(e.text for e in of_type(events, TextDelta))
    if "text" in expected:
        assert text == expected["text"]
    else:
        assert len(text) == expected["text_len"]
        assert hashlib.sha256(text.encode()).hexdigest() == expected["text_sha256"]
    assert not any(e.refusal for e in of_type(events, TextDelta))
    assert of_type(events, ToolCall) == expected["calls"]
    assert of_type(events, Usage) == [expected["usage"]]
    assert of_type(events, Error) == []
    end = events[-1]
    assert isinstance(end, TurnEnd) and of_type(events, TurnEnd) == [end]
    assert (end.status, end.reason, end.response_id) == (expected["status"], expected["reason"],
                                                         expected["response_id"])
    assert [item["type"] for item in end.output_items] == expected["items"]
    assert decoder.finished and decoder.gaps == []
    assert events.index(end) == len(events) - 1 and isinstance(events[-2], Usage)


# Hand-built streams in the documented event order (protocols.md §1.5, §1.6), with and without
# sequence_number (responses_sse_tool_01 is the older shape without it): a function call, and the
# text answer on the turn after its output was sent back.
CALL = {"type": "function_call", "id": "fc_hand1", "call_id": "call_hand1", "name": "get_capital",
        "arguments": '{"country":"France"}', "status": "completed"}
ANSWER = {"type": "message", "id": "msg_hand1", "role": "assistant", "status": "completed",
          "content": [{"type": "output_text", "text": "The capital of France is Paris.", "annotations": []}]}


def hand_built_stream(item: dict, *, numbered: bool) -> bytes:
    response = {"id": "resp_hand1", "object": "response", "created_at": 1743082657, "status": "in_progress",
                "model": "gpt-4o", "output": [], "usage": None}
    at = {"item_id": item["id"], "output_index": 0}
    events = [{"type": "response.created", "response": response},
              {"type": "response.in_progress", "response": response}]
    if item["type"] == "function_call":
        args = item["arguments"]
        events += [{"type": "response.output_item.added", "output_index": 0,
                    "item": {**item, "arguments": "", "status": "in_progress"}},
                   *({"type": "response.function_call_arguments.delta", **at, "delta": args[i:i + 4]}
                     for i in range(0, len(args), 4)),
                   {"type": "response.function_call_arguments.done", **at, "arguments": args}]
    else:
        text, part = item["content"][0]["text"], {"type": "output_text", "text": "", "annotations": []}
        events += [{"type": "response.output_item.added", "output_index": 0,
                    "item": {**item, "status": "in_progress", "content": []}},
                   {"type": "response.content_part.added", **at, "content_index": 0, "part": part},
                   *({"type": "response.output_text.delta", **at, "content_index": 0, "delta": text[i:i + 4],
                      "logprobs": []} for i in range(0, len(text), 4)),
                   {"type": "response.output_text.done", **at, "content_index": 0, "text": text, "logprobs": []},
                   {"type": "response.content_part.done", **at, "content_index": 0, "part": {**part, "text": text}}]
    usage = {"input_tokens": 255, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 16,
             "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 271}
    events += [{"type": "response.output_item.done", "output_index": 0, "item": item},
               {"type": "response.completed",
                "response": {**response, "status": "completed", "output": [item], "usage": usage}}]
    if numbered:
        events = [{"type": e["type"], "sequence_number": n, **e} for n, e in enumerate(events)]
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode()


@pytest.mark.parametrize("size", SPLITS)
@pytest.mark.parametrize("numbered", [False, True], ids=["without_sequence_number", "with_sequence_number"])
@pytest.mark.parametrize("item", [CALL, ANSWER], ids=["tool", "text_after_tool"])
def test_hand_built_stream(item, numbered, size):
    decoder = ResponsesDecoder()
    events = replay_sse(hand_built_stream(item, numbered=numbered), size, decoder)
    text = "".join(e.text for e in of_type(events, TextDelta))
    if item is CALL:
        assert of_type(events, ToolCall) == [ToolCall("call_hand1", "get_capital", '{"country":"France"}', "fc_hand1")]
        assert text == ""
    else:
        assert of_type(events, ToolCall) == [] and text == "The capital of France is Paris."
    assert of_type(events, Usage) == [Usage(255, 16, 0, 0)]
    assert of_type(events, Error) == []
    end = events[-1]
    assert isinstance(end, TurnEnd) and of_type(events, TurnEnd) == [end]
    assert (end.status, end.reason, end.response_id) == ("completed", None, "resp_hand1")
    assert end.output_items == (item,)
    assert decoder.finished and decoder.gaps == []
    assert isinstance(events[-2], Usage)


def test_reasoning_summary_parts_become_paragraphs():
    events = replay_sse(traffic_bytes("responses_sse_reasoning_01.sse"), 64, ResponsesDecoder())
    reasoning = "".join(e.text for e in of_type(events, ReasoningDelta))
    done_parts = [json.loads(line[6:])["text"] for line in traffic_bytes("responses_sse_reasoning_01.sse")
                  .decode().splitlines() if '"response.reasoning_summary_text.done"' in line]
    assert len(done_parts) == 3
    assert reasoning == "\n\n".join(done_parts)
    assert reasoning.startswith("**Exploring prime numbers**\n\nI need to find prime numbers less than 400")
    assert hashlib.sha256(reasoning.encode()).hexdigest() == (
        "2aaaaf121a1dea54f57d5e6508234597081a90087bc2e796b2762fa09e1b35ec")
    # the reasoning comes before the answer, and the opaque reasoning item is kept for replay
    assert events.index(of_type(events, ReasoningDelta)[-1]) < events.index(of_type(events, TextDelta)[0])
    rs = of_type(events, TurnEnd)[0].output_items[0]
    assert rs["id"] == "rs_0a1097cbfef27a8c00696afa2459008196a08a4261aba00f56"


def test_web_search_progress():
    events = replay_sse(traffic_bytes("responses_sse_web_search_01.sse"), None, ResponsesDecoder())
    ws_id = "ws_0b8efb0a110fb9bc0069793b041dc88190978ddc8b0a80f2ee"
    assert of_type(events, HostedToolProgress) == [
        HostedToolProgress("web_search", status, ws_id) for status in ("in_progress", "searching", "completed")]


def test_sequence_gap_is_recorded():
    decoder = ResponsesDecoder()
    decoder.feed({"type": "response.created", "sequence_number": 0, "response": {"id": "resp_1"}})
    decoder.feed({"type": "response.output_text.delta", "sequence_number": 1, "delta": "a", "item_id": "m"})
    decoder.feed({"type": "response.output_text.delta", "sequence_number": 4, "delta": "b", "item_id": "m"})
    assert decoder.gaps == [(2, 4)]
    # a new response on the same WebSocket restarts the numbering: no false gap
    decoder.feed({"type": "response.completed", "sequence_number": 5, "response": {"id": "resp_1"}})
    decoder.feed({"type": "response.created", "sequence_number": 0, "response": {"id": "resp_2"}})
    assert decoder.gaps == [(2, 4)]


def test_refusal_and_reasoning_text_deltas():
    decoder = ResponsesDecoder()
    assert decoder.feed({"type": "response.refusal.delta", "item_id": "m", "delta": "No."}) == [
        TextDelta("No.", "m", refusal=True)]
    assert decoder.feed({"type": "response.reasoning_text.delta", "item_id": "rs", "delta": "hm"}) == [
        ReasoningDelta("hm", "rs")]
    assert decoder.feed({"type": "response.some_future_event", "x": 1}) == []


NESTED_RATE_LIMIT = {  # the production shape (openai-python #2487 / PR #3934)
    "type": "error", "sequence_number": 2,
    "error": {"type": "tokens", "code": "rate_limit_exceeded",
              "message": "Rate limit reached for gpt-4o on tokens per min (TPM). Please try again in 1.5s.",
              "param": None, "headers": {"x-ratelimit-remaining-tokens": "0", "retry-after-ms": "1500"}},
}


def test_mid_stream_nested_error_then_failed():
    decoder = ResponsesDecoder()
    decoder.feed({"type": "response.created", "sequence_number": 0, "response": {"id": "resp_x"}})
    decoder.feed({"type": "response.in_progress", "sequence_number": 1, "response": {"id": "resp_x"}})
    [error] = decoder.feed(NESTED_RATE_LIMIT)
    assert (error.kind, error.code, error.retryable, error.retry_after) == ("rate_limit", "rate_limit_exceeded",
                                                                          True, 1.5)
    failed = decoder.feed({"type": "response.failed", "sequence_number": 3, "response": {
        "id": "resp_x", "status": "failed", "output": [], "usage": None,
        "error": {"code": "rate_limit_exceeded", "message": "Rate limit reached"}}})
    assert failed == [TurnEnd("failed", "resp_x", "rate_limit_exceeded")]  # no second Error
    assert decoder.finish() == []


def test_mid_stream_flat_error_and_hint_in_message():
    decoder = ResponsesDecoder()
    decoder.feed({"type": "response.created", "response": {"id": "resp_y"}})
    [error] = decoder.feed({"type": "error", "code": "rate_limit_exceeded", "param": None, "sequence_number": 1,
                            "message": "Rate limit reached. Please try again in 120ms."})
    assert (error.kind, error.retry_after, error.retryable) == ("rate_limit", 0.12, True)
    end = decoder.finish()  # EOF without response.failed: a TurnEnd but no extra network error
    assert end == [TurnEnd("failed", "resp_y", "stream_ended")]


def test_quota_error_frame():
    [error, _] = ResponsesDecoder().feed({"type": "error", "error": {
        "type": "insufficient_quota", "code": "insufficient_quota", "message": "You exceeded your quota"}})
    assert (error.kind, error.retryable) == ("quota", False)


def test_websocket_rejection_ends_the_turn():
    decoder = ResponsesDecoder()
    events = decoder.feed({"type": "error", "status": 400, "error": {
        "type": "invalid_request_error", "code": "previous_response_not_found",
        "message": "Previous response with id 'resp_abc' not found.", "param": "previous_response_id"}})
    assert [type(e) for e in events] == [Error, TurnEnd]
    assert (events[0].kind, events[0].status, events[0].code) == ("invalid_request", 400,
                                                                  "previous_response_not_found")
    assert events[1].status == "failed" and decoder.finished
    # the same decoder carries on with the next response on that socket
    decoder.feed({"type": "response.created", "sequence_number": 0, "response": {"id": "resp_2"}})
    assert not decoder.finished


def test_response_done_is_a_terminal_event():
    decoder = ResponsesDecoder()
    decoder.feed({"type": "response.created", "response": {"id": "resp_ws"}})
    item = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "f", "arguments": "{}",
            "status": "completed"}
    assert decoder.feed({"type": "response.output_item.done", "output_index": 0, "item": item}) == [
        ToolCall("call_1", "f", "{}", "fc_1")]
    # a bare response.done (only the id): the items come from output_item.done, the call is not repeated
    events = decoder.feed({"type": "response.done", "response": {"id": "resp_ws"}})
    assert events == [TurnEnd("completed", "resp_ws", None, (item,))]
    assert decoder.finished


def test_call_only_in_the_final_output_is_still_emitted():
    decoder = ResponsesDecoder()
    item = {"type": "function_call", "call_id": "call_9", "name": "g", "arguments": '{"a":1}'}
    events = decoder.feed({"type": "response.completed", "response": {"id": "r", "status": "completed",
                                                                      "output": [item]}})
    assert events[0] == ToolCall("call_9", "g", '{"a":1}', None)


def test_failed_response_without_error_event():
    events = ResponsesDecoder().feed({"type": "response.failed", "response": {
        "id": "r", "status": "failed", "error": {"code": "server_error", "message": "The server had an error"}}})
    assert [type(e) for e in events] == [Error, TurnEnd]
    assert (events[0].kind, events[0].retryable, events[1].reason) == ("server", True, "server_error")


def test_eof_without_terminal_event_is_a_network_error():
    decoder = ResponsesDecoder()
    decoder.feed({"type": "response.created", "response": {"id": "r"}})
    decoder.feed({"type": "response.output_text.delta", "item_id": "m", "delta": "Hel"})
    error, end = decoder.finish()
    assert error.kind == "network" and end == TurnEnd("failed", "r", "stream_ended")


# --------------------------------------------------------------------------------------------
# builders

WEATHER = ToolDef(name="get_weather", description="Weather for a city.", command=["weather"],
                  parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})


def full_history() -> list:
    return [
        Message("system", "Be brief."),
        Message("user", "What is in this image, and the weather in Rome?", images=["data:image/png;base64,AAAA"]),
        OpaqueItem("responses", {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAA"}),
        OpaqueItem("realtime", {"type": "something"}),
        FunctionCall("call_1", "get_weather", '{"city":"Rome"}'),
        FunctionOutput("call_1", "sunny", name="get_weather"),
        Message("assistant", "A cat. Sunny in Rome."),
        Message("user", "Thanks"),
    ]


def test_body_with_everything_set_conforms_to_the_sdk():
    from openai.types.responses import response_create_params as create_params

    settings = ModelSettings(temperature=0.3, top_p=0.9, max_output_tokens=500, frequency_penalty=0.1, seed=3,
                             service_tier="flex", reasoning_effort="high", reasoning_summary="auto",
                             verbosity="low", parallel_tool_calls=False, tool_choice="get_weather").request_settings()
    req = Request("gpt-5.5", "Answer in English.", full_history(), [WEATHER], settings, store=True)
    body = responses.build_body(req, stream=True)
    # the echoed assistant message lacks the `id` the SDK type wants (checked on its own below)
    sdk_view = {**body, "input": [i for i in body["input"] if i.get("role") != "assistant"]}
    assert_conforms(sdk_view, create_params.ResponseCreateParamsStreaming)
    assert body["stream"] is True and body["store"] is True
    assert body["reasoning"] == {"effort": "high", "summary": "auto"}
    assert body["text"] == {"verbosity": "low"}
    assert body["tool_choice"] == {"type": "function", "name": "get_weather"}
    assert (body["temperature"], body["top_p"], body["max_output_tokens"], body["service_tier"],
            body["parallel_tool_calls"]) == (0.3, 0.9, 500, "flex", False)
    # Chat-only settings are not Responses fields
    assert "frequency_penalty" not in body and "seed" not in body
    assert body["instructions"] == "Answer in English."
    assert body["tools"] == [{"type": "function", "name": "get_weather", "description": "Weather for a city.",
                              "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                             "required": ["city"], "additionalProperties": False},
                              "strict": True}]


def test_history_becomes_input_items():
    from openai.types.responses.response_input_item_param import ResponseInputItemParam
    from openai.types.responses.response_output_message_param import ResponseOutputMessageParam

    items = responses.input_items(full_history())
    assert items == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [
            {"type": "input_text", "text": "What is in this image, and the weather in Rome?"},
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "auto"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAA"},  # echoed unchanged
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Rome"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        {"type": "message", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": "A cat. Sunny in Rome.", "annotations": []}]},
        {"role": "user", "content": "Thanks"},
    ]
    for item in items:
        if item.get("role") == "assistant":
            # the SDK type insists on `id`, which the API does not need for an echoed message
            assert conformance_problems(item, ResponseOutputMessageParam) == ["$.id: required key missing"]
        else:
            assert_conforms(item, ResponseInputItemParam)


def test_interrupted_assistant_message_is_marked_incomplete():
    [item] = responses.input_items([Message("assistant", "I was say", interrupted=True)])
    assert item["status"] == "incomplete"


def test_unset_settings_are_absent_never_null():
    req = Request("gpt-5.5", None, [Message("user", "hi")], settings=ModelSettings().request_settings())
    body = responses.build_body(req, stream=False)
    assert body == {"model": "gpt-5.5", "input": [{"role": "user", "content": "hi"}], "store": False}
    assert None not in body.values()


def test_tool_settings_need_tools_and_modes_pass_through():
    settings = {"tool_choice": "required", "parallel_tool_calls": True}
    assert responses.settings_fields(settings, has_tools=False) == {}
    assert responses.settings_fields(settings, has_tools=True) == {"tool_choice": "required",
                                                                   "parallel_tool_calls": True}


def test_previous_response_id_matches_the_recorded_continuation_shape():
    req = Request("gpt-4o", None, [FunctionOutput("call_1", "Paris")], previous_response_id="resp_1")
    body = responses.build_body(req, stream=True)
    assert body["previous_response_id"] == "resp_1"
    assert body["input"] == [{"type": "function_call_output", "call_id": "call_1", "output": "Paris"}]


def test_recorded_request_is_reproduced():
    recorded = json.loads(traffic_bytes("responses_sse_text_after_tool_01.request.json"))
    tool = ToolDef(name="get_capital", command=["x"], parameters={
        "type": "object", "properties": {"country": {"type": "string"}}, "required": ["country"]})
    req = Request("gpt-4o", None, [Message("user", "What is the capital of France?"),
                                   FunctionCall(recorded["input"][1]["call_id"], "get_capital", '{"country":"France"}'),
                                   FunctionOutput(recorded["input"][1]["call_id"], "Paris")],
                  [tool], {"tool_choice": "auto"})
    body = responses.build_body(req, stream=True)
    assert body["input"] == recorded["input"]
    assert body["tool_choice"] == recorded["tool_choice"]
    [ours], [theirs] = body["tools"], recorded["tools"]
    assert {k: v for k, v in theirs.items() if k != "description"} == ours  # we omit an empty description


def test_ws_create_has_no_stream():
    from openai.types.responses.responses_client_event_param import ResponseCreate

    req = Request("gpt-5.5", "Be brief.", [Message("user", "hi")], [WEATHER], {"reasoning_effort": "low"},
                  previous_response_id="resp_prev")
    event = responses.build_ws_create(req)
    assert event["type"] == "response.create" and "stream" not in event
    assert_conforms(event, ResponseCreate)
    assert {k: v for k, v in event.items() if k != "type"} == responses.build_body(req, stream=False)
