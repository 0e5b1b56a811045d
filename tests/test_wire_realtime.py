"""Realtime GA: the recorded sessions (read from ../shared/traffic) replayed through RealtimeDecoder;
client-event builders checked against the recorded client frames and the openai SDK's param types
(reached through `sdk()`: importing openai at the top would cost each xdist worker ~0.8 s of CPU at
collection)."""

from __future__ import annotations

import base64

import pytest
from test_wire_support import assert_conforms, of_type, traffic_jsonl

from voicecli.events import (AudioDelta, Error, SpeechStarted, SpeechStopped, TextDelta, ToolCall, Transcript,
                             TurnEnd, Usage)
from voicecli.profiles import VoiceSettings
from voicecli.items import ToolDef
from voicecli.wire import realtime
from voicecli.wire.realtime import RealtimeDecoder


def replay(name: str) -> list:
    decoder = RealtimeDecoder()
    return [e for event in traffic_jsonl(f"{name}.jsonl") for e in decoder.feed(event)]


def transcript(events: list, role: str) -> tuple[str, list[str]]:
    """(deltas joined, final texts) for one speaker."""
    mine = [e for e in of_type(events, Transcript) if e.role == role]
    return "".join(e.text for e in mine if not e.final), [e.text for e in mine if e.final]


def test_speech_to_speech_turn_with_vad():
    events = replay("realtime_ws_audio_vad_01")
    user_item, assistant_item, response_id = ("item_E6U0xpLmn5e80rVGpEeKv", "item_E6U0xWSFIFri2uw2kTLLq",
                                              "resp_E6U0xfWhN878XBMhc0LKn")
    assert of_type(events, SpeechStarted) == [SpeechStarted(1460, user_item)]
    assert of_type(events, SpeechStopped) == [SpeechStopped(4256, user_item)]
    # as recorded: the streamed deltas start with a space the final transcript does not have
    assert transcript(events, "user") == (" Hello, my name is Marcelo.", ["Hello, my name is Marcelo."])
    said = "Hello, Marcelo! Great to meet you. How can I help you today?"
    assert transcript(events, "assistant") == (said, [said])
    assert all(e.item_id == user_item for e in of_type(events, Transcript) if e.role == "user")
    audio = of_type(events, AudioDelta)
    assert len(audio) == 27
    assert {(a.item_id, a.response_id) for a in audio} == {(assistant_item, response_id)}
    # the recording keeps only the first 44 base64 characters of each chunk (33 bytes)
    assert all(len(a.pcm) == 33 for a in audio)
    assert audio[0].pcm == base64.b64decode("//8AAAYAAAD8/wMAAAAAAP7/AgAFAAAAAQD9/wUAAAAA")
    assert of_type(events, Usage) == [Usage(41, 164, 0, 0, 27, 136)]  # with the audio part, priced apart
    end = events[-1]
    assert (end.status, end.response_id, end.reason) == ("completed", response_id, None)
    assert end.output_items == ()  # no wire dicts leave the decoder
    assert of_type(events, ToolCall) == [] and of_type(events, Error) == []


def test_text_in_audio_out():
    events = replay("realtime_ws_text_in_audio_out_01")
    assert transcript(events, "assistant") == ("Hi there!", ["Hi there!"])
    assert transcript(events, "user") == ("", [])
    assert len(of_type(events, AudioDelta)) == 4
    assert of_type(events, Usage) == [Usage(16, 24, 0, 0, 0, 15)]
    [end] = of_type(events, TurnEnd)
    assert (end.status, end.response_id, end.reason) == ("completed", "resp_E6U0utdfn8rQdwHYPNrmv", None)


def test_tool_call_round():
    events = replay("realtime_ws_tool_call_01")
    # announced by both arguments.done and output_item.done: emitted once
    assert of_type(events, ToolCall) == [ToolCall("call_uMNE0Myi2tDTPu0w", "get_weather",
                                                  '{  \n  "city": "London" \n} \n', "item_E6U11H8XY7uk9uRetnwLK")]
    assert "".join(e.text for e in of_type(events, TextDelta)) == "It is foggy and 12 degrees in London."
    assert of_type(events, Usage) == [Usage(63, 22, 0, 0), Usage(103, 13, 64, 0)]
    ends = of_type(events, TurnEnd)
    assert [(e.status, e.response_id) for e in ends] == [("completed", "resp_E6U11oof93olA0JOwdA0H"),
                                                         ("completed", "resp_E6U11zrzQPfORkorcByyP")]
    # order: the call, then its turn's end, then the answer
    assert events.index(of_type(events, ToolCall)[0]) < events.index(ends[0]) < events.index(
        of_type(events, TextDelta)[0])


@pytest.mark.parametrize("name", ["realtime_ws_audio_vad_01", "realtime_ws_text_in_audio_out_01",
                                  "realtime_ws_tool_call_01"])
def test_interleaved_wire_log_agrees_with_the_split_logs(name):
    wire = traffic_jsonl(f"{name}.wire.jsonl")
    assert [w["event"] for w in wire if w["dir"] == "recv"] == traffic_jsonl(f"{name}.jsonl")
    assert [w["event"] for w in wire if w["dir"] == "send"] == recorded_client(name)
    decoder = RealtimeDecoder()
    assert [e for w in wire if w["dir"] == "recv" for e in decoder.feed(w["event"])] == replay(name)


def test_cancelled_response_after_barge_in():
    [end] = RealtimeDecoder().feed({"type": "response.done", "response": {
        "id": "resp_1", "status": "cancelled", "status_details": {"type": "cancelled", "reason": "turn_detected"},
        "output": [], "usage": None}})
    assert end == TurnEnd("cancelled", "resp_1", "turn_detected")


def test_incomplete_and_failed_responses():
    decoder = RealtimeDecoder()
    [end] = decoder.feed({"type": "response.done", "response": {
        "id": "r1", "status": "incomplete", "status_details": {"type": "incomplete", "reason": "max_output_tokens"}}})
    assert (end.status, end.reason) == ("incomplete", "max_output_tokens")
    error, end = decoder.feed({"type": "response.done", "response": {
        "id": "r2", "status": "failed", "status_details": {"type": "failed", "error": {
            "type": "server_error", "code": "internal", "message": "Something broke"}}}})
    assert (error.kind, error.message, end.status, end.reason) == ("server", "Something broke", "failed", "internal")


def test_error_events():
    decoder = RealtimeDecoder()
    [expired] = decoder.feed({"type": "error", "event_id": "event_1", "error": {
        "type": "invalid_request_error", "code": "session_expired",
        "message": "Your session hit the maximum duration of 60 minutes.", "param": None, "event_id": None}})
    assert (expired.code, expired.retryable) == ("session_expired", True)  # reconnect and carry on
    [beta] = decoder.feed({"type": "error", "error": {"type": "invalid_request_error",
                                                      "code": "beta_api_shape_disabled", "message": "…"}})
    assert (beta.kind, beta.retryable) == ("invalid_request", False)


def test_call_announced_only_by_output_item_done():
    decoder = RealtimeDecoder()
    assert decoder.feed({"type": "response.function_call_arguments.done", "call_id": "c1", "item_id": "i1",
                         "arguments": "{}"}) == []  # no name here: wait for the item
    item = {"id": "i1", "type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}
    assert decoder.feed({"type": "response.output_item.done", "item": item}) == [ToolCall("c1", "f", "{}", "i1")]


# --------------------------------------------------------------------------------------------
# client events


def sdk():
    """openai.types.realtime, imported on first use."""
    from openai.types import realtime as sdk_realtime

    return sdk_realtime


def recorded_client(name: str) -> list[dict]:
    return traffic_jsonl(f"{name}.client.jsonl")


def test_builders_reproduce_recorded_client_events():
    sent = recorded_client("realtime_ws_tool_call_01")
    assert realtime.create_text_message("What is the weather in London?") == sent[1]
    assert realtime.response_create() == sent[2] == sent[4]
    assert realtime.function_call_output("call_uMNE0Myi2tDTPu0w", "It is foggy and 12 degrees in London.") == sent[3]
    appended = [e for e in recorded_client("realtime_ws_audio_vad_01") if e["type"] == "input_audio_buffer.append"]
    assert len(appended) == 55
    for event in appended:
        assert realtime.append_audio(base64.b64decode(event["audio"])) == event


def test_session_update_matches_the_recorded_one_where_they_overlap():
    recorded = recorded_client("realtime_ws_tool_call_01")[0]
    tool = ToolDef(name="get_weather", description="Look up the weather for a city.", command=["w"],
                   parameters=recorded["session"]["tools"][0]["parameters"])
    voice = VoiceSettings(output_modalities="text", transcription_model="gpt-realtime-whisper")
    event = realtime.session_update(voice, recorded["session"]["instructions"], [tool])
    assert_conforms(event, sdk().SessionUpdateEventParam)
    ours, theirs = event["session"], recorded["session"]
    for key in ("type", "instructions", "output_modalities", "tools"):
        assert ours[key] == theirs[key]
    assert ours["audio"]["input"]["transcription"] == theirs["audio"]["input"]["transcription"]
    assert ours["audio"]["input"]["format"] == theirs["audio"]["input"]["format"]
    assert ours["audio"]["input"]["turn_detection"] == {"type": "server_vad"}
    assert ours["audio"]["output"] == {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"}


def test_session_update_with_every_voice_setting():
    voice = VoiceSettings(voice="cedar", speed=1.2, turn_detection="server_vad", vad_threshold=0.6,
                          vad_prefix_padding_ms=200, vad_silence_duration_ms=700, vad_eagerness="high",
                          transcription_model="gpt-4o-transcribe", transcription_language="de",
                          noise_reduction="far_field", max_output_tokens=800)
    event = realtime.session_update(voice, "Sprich Deutsch.", [])
    assert_conforms(event, sdk().SessionUpdateEventParam)
    assert event["session"] == {
        "type": "realtime", "output_modalities": ["audio"], "instructions": "Sprich Deutsch.",
        "audio": {
            "input": {"format": {"type": "audio/pcm", "rate": 24000},
                      "turn_detection": {"type": "server_vad", "threshold": 0.6, "prefix_padding_ms": 200,
                                         "silence_duration_ms": 700},
                      "transcription": {"model": "gpt-4o-transcribe", "language": "de"},
                      "noise_reduction": {"type": "far_field"}},
            "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "cedar", "speed": 1.2}},
        "max_output_tokens": 800,
    }


@pytest.mark.parametrize("voice, expected_input", [
    (VoiceSettings(turn_detection="semantic_vad", vad_eagerness="low", vad_threshold=0.9, transcription_model=None),
     {"turn_detection": {"type": "semantic_vad", "eagerness": "low"}}),
    (VoiceSettings(turn_detection="none", transcription_model="", noise_reduction="none"),
     {"turn_detection": None, "transcription": None, "noise_reduction": None}),
])
def test_turn_detection_and_switches(voice, expected_input):
    event = realtime.session_update(voice, None)
    audio_in = event["session"]["audio"]["input"]
    # null switches transcription / noise reduction off (the SDK docstrings say so; its types omit Optional)
    typed = {k: v for k, v in audio_in.items() if v is not None or k == "turn_detection"}
    assert_conforms({**event, "session": {**event["session"], "audio": {**event["session"]["audio"], "input": typed}}},
                    sdk().SessionUpdateEventParam)
    audio_in = event["session"]["audio"]["input"]
    assert audio_in == {"format": {"type": "audio/pcm", "rate": 24000}, **expected_input}
    assert "instructions" not in event["session"] and "tools" not in event["session"]


def test_small_client_events_conform():
    rt = sdk()
    cases = [
        (realtime.append_audio(b"\x01\x00" * 480), rt.InputAudioBufferAppendEventParam),
        (realtime.commit(), rt.InputAudioBufferCommitEventParam),
        (realtime.clear(), rt.InputAudioBufferClearEventParam),
        (realtime.create_text_message("hi"), rt.ConversationItemCreateEventParam),
        (realtime.function_call_output("call_1", '{"ok":true}'), rt.ConversationItemCreateEventParam),
        (realtime.response_create(), rt.ResponseCreateEventParam),
        (realtime.response_cancel(), rt.ResponseCancelEventParam),
        (realtime.response_cancel("resp_1"), rt.ResponseCancelEventParam),
        (realtime.truncate("item_1", 1234.7), rt.ConversationItemTruncateEventParam),
    ]
    for event, param_type in cases:
        assert_conforms(event, param_type)
    assert realtime.truncate("item_1", 1234.7) == {"type": "conversation.item.truncate", "item_id": "item_1",
                                                   "content_index": 0, "audio_end_ms": 1234}
    assert realtime.response_cancel() == {"type": "response.cancel"}


def test_hosted_tool_refused_for_realtime():
    with pytest.raises(ValueError, match="web_search.*realtime"):
        realtime.session_update(VoiceSettings(), None, [ToolDef(name="web_search", type="web_search")])


@pytest.mark.parametrize("choice, expected", [
    ("get_weather", {"type": "function", "name": "get_weather"}),  # forced by name: converted like Responses
    ("required", "required"),
    ("none", "none"),
])
def test_tool_choice_in_the_realtime_shape(choice, expected):
    tool = ToolDef(name="get_weather", command=["w"])
    event = realtime.session_update(VoiceSettings(), None, [tool], tool_choice=choice)
    assert_conforms(event, sdk().SessionUpdateEventParam)
    assert event["session"]["tool_choice"] == expected
    assert "tool_choice" not in realtime.session_update(VoiceSettings(), None, [], tool_choice=choice)["session"]


def test_history_message_replays_as_a_text_item():
    assert realtime.history_message("user", "hi") == {"type": "conversation.item.create", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}}
    assert realtime.history_message("assistant", "yo")["item"]["content"] == [{"type": "output_text", "text": "yo"}]
    assert_conforms(realtime.history_message("assistant", "yo"), sdk().ConversationItemCreateEventParam)


def test_response_created_starts_a_response():
    from voicecli.events import ResponseStarted

    assert RealtimeDecoder().feed({"type": "response.created", "response": {"id": "resp_1"}}) == [
        ResponseStarted("resp_1")]
