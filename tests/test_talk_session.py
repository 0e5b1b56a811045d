"""The voice session layer without devices: Realtime sessions (recorded ones from ../shared, and the
same kinds made by the simulator) replayed through `Turns` (what was received, played and heard;
barge-in arithmetic with an injected clock), the `RealtimeSession` tool round against a fake socket
and the simulator's Realtime front, the playback buffer, resampling, WAV input."""

from __future__ import annotations

import asyncio
import base64
import json
import wave

import numpy as np
import pytest
import websockets
from shared_data import recording

from voicecli import profiles
from voicecli.audio.speaker import FADE, PlaybackBuffer
from voicecli.audio.wav import read_wav_24k
from voicecli.conversation import Conversation
from voicecli.sim import speech
from voicecli.sim.config import SimConfig
from voicecli.sim.server import start_in_thread
from voicecli.events import (AudioDelta, Disconnected, Error, ResponseStarted, SpeechStopped, TextDelta, ToolCall,
                             ToolResult, Transcript, TurnEnd)
from voicecli.profiles import VoiceSettings
from voicecli.voice.session import RealtimeSession
from voicecli.voice.turns import AssistantItem, Turns, heard
from voicecli.wire import realtime as rt
from voicecli.wire.realtime import RealtimeDecoder
from voicecli.items import FunctionCall, FunctionOutput, Message, ToolDef


class FakeTransport:
    def __init__(self):
        self.sent: list[dict] = []

    async def send(self, event: dict) -> bool:
        self.sent.append(event)
        return True

    def types(self) -> list[str]:
        return [e["type"] for e in self.sent]


class Clock:
    def __init__(self, now: float = 100.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


WEATHER = ToolDef(name="get_weather", description="Look up the weather for a city.", command=["w"],
                  parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
ASK_WEATHER = 'Use get_weather for {"city": "London"} please.'  # the simulator calls a tool the text names


def recorded_events(name: str) -> list[dict]:
    return [json.loads(line) for line in recording(f"{name}.jsonl").read_text().splitlines() if line.strip()]


def simulated_events(sim, kind: str) -> list[dict]:
    """The server events of a session with the simulator, in the order received, as a recording
    holds them: a server-VAD voice turn ("voice"), or a text function-call round ("tool_call": the
    call, its output sent back, the answer)."""
    async def session() -> list[dict]:
        got: list[dict] = []

        async def until(ws, stop: str) -> dict:
            while True:
                got.append(json.loads(await ws.recv()))
                if got[-1]["type"] == stop:
                    return got[-1]

        url = sim.base_url.replace("http://", "ws://") + "/realtime?model=gpt-realtime"
        async with websockets.connect(url) as ws:
            await until(ws, "session.created")
            if kind == "voice":
                await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime"}}))
                await until(ws, "session.updated")
                pcm = speech.silence(0.5) + speech.speech_like(1.0) + speech.silence(0.8)
                for i in range(0, len(pcm), 1920):
                    await ws.send(json.dumps(rt.append_audio(pcm[i:i + 1920])))
                await until(ws, "response.done")
                return got
            await ws.send(json.dumps(rt.session_update(VoiceSettings(output_modalities="text"), None, [WEATHER])))
            await until(ws, "session.updated")
            await ws.send(json.dumps(rt.create_text_message(ASK_WEATHER)))
            await ws.send(json.dumps(rt.response_create()))
            await until(ws, "response.done")
            call = next(e for e in got if e["type"] == "response.function_call_arguments.done")
            await ws.send(json.dumps(rt.function_call_output(call["call_id"], "Foggy, 12 degrees")))
            await ws.send(json.dumps(rt.response_create()))
            await until(ws, "response.done")
            return got

    return asyncio.run(asyncio.wait_for(session(), 30))


@pytest.fixture(scope="module")
def own_sim():
    handle = start_in_thread(SimConfig(realtime_speed=0))  # unpaced: the answer's audio comes at once
    yield handle
    handle.stop()


@pytest.fixture(params=["recorded", "simulated"])
def voice_turn(request) -> list[dict]:
    """A server-VAD voice turn answered in audio: recorded, or made by the simulator."""
    if request.param == "recorded":
        return recorded_events("realtime_ws_audio_vad_01")
    return simulated_events(request.getfixturevalue("own_sim"), "voice")


@pytest.fixture(params=["recorded", "simulated"])
def tool_call_round(request) -> list[dict]:
    """A text function-call round (call, output sent back, answer): recorded, or made by the simulator."""
    if request.param == "recorded":
        return recorded_events("realtime_ws_tool_call_01")
    return simulated_events(request.getfixturevalue("own_sim"), "tool_call")


def neutral(events: list[dict]) -> list:
    decoder = RealtimeDecoder()
    return [e for data in events for e in decoder.feed(data)]


def make_turns(clock=None) -> Turns:
    clock = clock or Clock()
    return Turns(PlaybackBuffer(prebuffer_ms=0), clock=clock, wall=clock)


# -- Turns: what was received, played and heard -------------------------------------------------


def test_voice_turn_plays_all_audio_before_it_is_written(voice_turn):
    events = voice_turn
    deltas = b"".join(base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta")
    spoken = next(e["transcript"] for e in events if e["type"] == "response.output_audio_transcript.done")
    turns = make_turns()
    for event in neutral(events):
        turns.feed(event)
    assert not turns.in_progress
    assert turns.playback.pending() == len(deltas) // 2  # every sample queued (odd bytes carried, not lost)
    assert turns.finished() == []  # not before it was played
    assert turns.unfinished() == [spoken]  # a replay now would include it: it will be heard
    turns.playback.pull(turns.playback.pending())
    [done] = turns.finished()
    assert (done.text, done.interrupted) == (spoken, False)
    assert turns.finished() == [] and turns.unfinished() == []  # once


def test_odd_length_deltas_keep_every_byte():
    buf = PlaybackBuffer()
    pcm = np.arange(1, 1001, dtype="<i2").tobytes()  # 2000 bytes cut into odd pieces
    for start in range(0, len(pcm), 333):
        buf.push("item", pcm[start:start + 333])
    out = buf.pull(1000)
    assert out.tobytes() == pcm
    assert buf.played["item"] == 1000


def test_barge_in_cancels_and_truncates_to_what_was_played(voice_turn):
    events = voice_turn
    cut_at = [i for i, e in enumerate(events) if e["type"] == "response.output_audio.delta"][3]
    turns = make_turns()
    for event in neutral(events[: cut_at + 1]):  # the response is running, some audio received
        turns.feed(event)
    item_id = events[cut_at]["item_id"]
    received = turns.items[item_id].received
    turns.playback.pull(2400)  # the device took 100 ms
    cut = turns.barge_in()
    expected = (2400 + min(FADE, received // 2 - 2400)) * 1000 // 24000
    assert cut.cancel and cut.truncate == (item_id, min(expected, received // 48))
    assert turns.playback.pending() <= FADE  # flushed: only the fade is left
    assert turns.barge_in().truncate is None  # a second barge-in cuts nothing more
    # late audio of the cancelled response is dropped
    turns.feed(AudioDelta(b"\x01\x00" * 480, item_id, turns.response_id))
    assert turns.playback.pending() <= FADE
    turns.playback.pull(FADE)
    # settled at once, before the response's end arrives: a cancelled response sends nothing more
    # that is played, so the history can say what was heard before the next turn goes out
    [done] = turns.finished()
    assert done.interrupted and done.item.played_ms == cut.truncate[1]
    turns.feed(TurnEnd("cancelled", turns.response_id, "turn_detected"))
    assert turns.finished() == []


def test_truncate_is_clamped_to_the_audio_received():
    turns = make_turns()
    turns.items["a"] = AssistantItem("a", "r", 0.0, received=4800)  # 100 ms received
    turns.playback.push("a", b"\x10\x00" * 2400)
    turns.playback.pull(2400)
    turns.playback.played["a"] = 4800  # as if more had been played than received (e.g. a resent delta)
    turns.playback.push("a", b"\x10\x00" * 10)
    assert turns.barge_in().truncate == ("a", 100)


def test_an_answer_heard_to_the_end_is_not_truncated():
    turns = make_turns()
    turns.feed(ResponseStarted("r"))
    turns.feed(AudioDelta(b"\x01\x00" * 2400, "a", "r"))
    turns.feed(TurnEnd("completed", "r"))
    turns.playback.pull(2400)
    assert turns.barge_in().truncate is None and not turns.barge_in().cancel


def test_text_answer_is_finished_without_audio(tool_call_round):
    events = tool_call_round
    turns = make_turns()
    for event in neutral(events):
        turns.feed(event)
    text = next(e["text"] for e in events if e["type"] == "response.output_text.done")
    assert [h.text for h in turns.finished()] == [text]


def test_turn_latency_with_an_injected_clock():
    clock = Clock(10.0)
    turns = make_turns(clock)
    turns.start_clock()  # end of the user's speech at 10.0
    clock.now = 10.4
    turns.feed(ResponseStarted("r"))
    turns.feed(AudioDelta(b"\x01\x00" * 480, "a", "r"))  # first audio at 10.4
    assert turns.latency() is None  # not played yet
    turns.playback.pull(480)
    turns.playback.first_played["a"] = 10.45  # the device took it 50 ms later
    to_audio, to_play, since = turns.latency()
    assert round(to_audio) == 400 and round(to_play) == 450 and since == "end of speech"
    assert turns.latency() is None  # reported once per turn


def test_turn_latency_starts_where_the_speech_ended_not_at_the_vad_decision():
    from voicecli.voice.turns import AudioTimeline

    timeline = AudioTimeline()
    for i in range(100):  # 20 ms blocks, the last sample of block i captured at 100.02 + i * 0.02
        timeline.sent(960, 100.02 + i * 0.02)
    assert timeline.time_of(1000) == pytest.approx(101.0)  # 1 s into the stream
    assert timeline.time_of(5000) is None and timeline.time_of(-1) is None  # not sent (yet), or not ours
    clock = Clock(101.5)  # the VAD decided at 101.5 that the speech had ended at 1000 ms (101.0)
    turns = make_turns(clock)
    turns.start_clock(at=timeline.time_of(1000))
    clock.now = 101.7
    turns.feed(ResponseStarted("r"))
    turns.feed(AudioDelta(b"\x01\x00" * 480, "a", "r"))
    turns.playback.pull(480)
    turns.playback.first_played["a"] = 101.75
    to_audio, to_play, since = turns.latency()
    assert round(to_audio) == 700 and round(to_play) == 750 and since == "end of speech"
    timeline.reset()
    assert timeline.time_of(1000) is None


def test_a_lost_connection_ends_the_running_response():
    turns = make_turns()
    turns.feed(ResponseStarted("r"))
    turns.feed(Transcript("assistant", "half an ans", False, "a"))
    turns.lost()
    assert not turns.busy and turns.items["a"].done
    turns.feed(Transcript("assistant", "wer", False, "a"))  # late text of the lost response: dropped
    assert [h.text for h in turns.finished()] == ["half an ans"]


def test_heard_part_of_an_interrupted_answer():
    assert heard("one two three four", 500, 1000) == "one two"
    assert heard("one two", 1000, 1000) == "one two"


# -- RealtimeSession ------------------------------------------------------------------------------


def make_session(profile=None, runner=None, history=()) -> RealtimeSession:
    profile = profile or profiles.load("offline")
    conv = Conversation(profile, None, history=list(history))
    session = RealtimeSession(profile, conv, base_url="http://127.0.0.1:9/v1", tool_runner=runner)
    session.transport = FakeTransport()
    return session


async def outputs(calls):
    return [FunctionOutput(c.call_id, '{"temp": 12}', c.name) for c in calls]


def test_tool_call_runs_through_the_conversations_tool_round(tool_call_round):
    events = tool_call_round
    first_done = next(i for i, e in enumerate(events) if e["type"] == "response.done")

    async def scenario():
        session = make_session(runner=outputs)
        for event in neutral(events[: first_done + 1]):
            session._on_event(event)
        await asyncio.gather(*session._jobs._tasks)
        return session, [session._queue.get_nowait() for _ in range(session._queue.qsize())]

    session, queued = asyncio.run(scenario())
    call = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert session.transport.types() == ["conversation.item.create", "response.create"]
    assert session.transport.sent[0]["item"] == {"type": "function_call_output", "call_id": call["call_id"],
                                                 "output": '{"temp": 12}'}
    assert [type(e) for e in queued] == [ToolResult] and queued[0].call_id == call["call_id"]
    assert session.conversation.history == [FunctionCall(call["call_id"], call["name"], call["arguments"]),
                                            FunctionOutput(call["call_id"], '{"temp": 12}', call["name"])]


def test_tool_rounds_stop_at_max_tool_rounds(tool_call_round):
    events = tool_call_round
    first_done = next(i for i, e in enumerate(events) if e["type"] == "response.done")
    profile = profiles.load("offline")
    profile.model.max_tool_rounds = 0

    async def scenario():
        session = make_session(profile, runner=outputs)
        for event in neutral(events[: first_done + 1]):
            session._on_event(event)
        await asyncio.gather(*session._jobs._tasks)
        return session, [session._queue.get_nowait() for _ in range(session._queue.qsize())]

    session, queued = asyncio.run(scenario())
    assert session.transport.types() == ["conversation.item.create"]  # the output says why; no new response
    assert "not run" in session.transport.sent[0]["item"]["output"]
    assert isinstance(queued[-1], Error) and "tool rounds" in queued[-1].message


def test_a_function_call_round_against_the_simulator(sim):
    """Tool call → function_call_output → the answer, over a real socket to the simulator."""
    profile = profiles.load("offline")
    profile.tools = [WEATHER]
    profile.voice.output_modalities = "text"

    async def scenario():
        session = make_session(profile, runner=outputs)
        session.base_url, session.transport = sim.base_url, None
        await session.start()
        await session.say(ASK_WEATHER)
        seen = []
        async for event in session.events():
            seen.append(event)
            if len([e for e in seen if isinstance(e, TurnEnd)]) == 2:
                break
        await session.aclose()
        return session, seen

    session, seen = asyncio.run(asyncio.wait_for(scenario(), 30))
    [call] = [e for e in seen if isinstance(e, ToolCall)]
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "London"})
    [result] = [e for e in seen if isinstance(e, ToolResult)]
    assert result.call_id == call.call_id and result.ok
    first_end, second_end = [e for e in seen if isinstance(e, TurnEnd)]
    assert seen.index(call) < seen.index(first_end) < seen.index(result) < seen.index(second_end)
    answer = "".join(e.text for e in seen[seen.index(first_end):] if isinstance(e, TextDelta))
    assert answer == 'Tool get_weather returned: {"temp": 12}.'
    assert session.conversation.history == [FunctionCall(call.call_id, "get_weather", call.arguments),
                                            FunctionOutput(call.call_id, '{"temp": 12}', "get_weather")]
    sent = [e["event"] for e in list(sim.log) if e.get("endpoint") == "/v1/realtime" and "event" in e]
    assert [e["name"] for e in sent[0]["session"]["tools"]] == ["get_weather"]
    output = next(i for i, e in enumerate(sent) if e["type"] == "conversation.item.create"
                  and e["item"]["type"] == "function_call_output")
    assert sent[output]["item"] == {"type": "function_call_output", "call_id": call.call_id, "output": '{"temp": 12}'}
    assert sent[output + 1] == {"type": "response.create"}


def test_quiet_errors_and_expiry_stay_inside_the_session():
    session = make_session()
    assert session._on_event(Error("invalid_request", "no", code="response_cancel_not_active")) == []
    assert session._on_event(Error("invalid_request", "expired", code="session_expired")) == []
    assert session._expired
    stop = SpeechStopped(100, "u")
    assert session._on_event(stop) == [stop]


@pytest.mark.slow
def test_session_against_the_simulator_replays_history_and_renews(sim):
    history = [Message("user", "remember the word banana"), Message("assistant", "I will."),
               FunctionCall("c1", "f", "{}"), FunctionOutput("c1", "done", "f")]

    async def scenario():
        session = make_session(history=history)
        session.base_url = sim.base_url
        session.transport = None
        await session.start()
        events = session.events()
        await session.say("hello")
        seen = []
        async for event in events:
            seen.append(event)
            if isinstance(event, TurnEnd):
                break
        session.remember("user", "hello")
        session.renew()
        async for event in events:
            seen.append(event)
            if isinstance(event, Disconnected):
                break
        while session.reconnecting:
            await asyncio.sleep(0.01)
        await session.aclose()
        return session, seen

    session, seen = asyncio.run(scenario())
    assert any(isinstance(e, ResponseStarted) for e in seen)
    assert Transcript("assistant", "You said: hello", True) in [
        Transcript(e.role, e.text, e.final) for e in seen if isinstance(e, Transcript)]
    assert seen[-1] == Disconnected(seen[-1].reason, planned=True) and session.sessions == 2
    by_conn: dict[str, list] = {}
    for e in list(sim.log):
        if e.get("endpoint") == "/v1/realtime" and "event" in e:
            by_conn.setdefault(e["conn"], []).append(e["event"])
    first, second = list(by_conn.values())[:2]
    for conn, said in ((first, history[:2]), (second, [*history[:2], Message("user", "hello")])):
        assert conn[0]["type"] == "session.update"
        replayed = [(e["item"]["role"], e["item"]["content"][0]["text"]) for e in conn[1:1 + len(said)]]
        assert replayed == [(m.role, m.text) for m in said]  # messages only: tool items are not replayed


# -- playback buffer, resampling, WAV input --------------------------------------------------------


def test_flush_fades_out_within_one_block():
    buf = PlaybackBuffer()
    buf.push("a", (np.full(24000, 10000, dtype="<i2")).tobytes())
    buf.pull(480)
    assert buf.flush() == "a"
    tail = buf.pull(480)
    assert tail[0] > 9000 and abs(int(tail[FADE - 1])) < 200 and not tail[FADE:].any()
    assert buf.played["a"] == 480 + FADE and not buf.active


def test_prebuffer_waits_then_plays():
    buf = PlaybackBuffer(prebuffer_ms=60)
    buf.push("a", b"\x01\x00" * 1200)  # 50 ms
    assert not buf.pull(480).any()
    buf.push("a", b"\x01\x00" * 1200)
    assert buf.pull(480).all()


def test_wav_input_any_rate_and_channels(tmp_path):
    path = tmp_path / "stereo.wav"
    t = np.arange(44100) / 44100
    left = (np.sin(2 * np.pi * 300 * t) * 8000).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(np.stack([left, left], axis=1).tobytes())
    pcm = read_wav_24k(path)
    assert abs(len(pcm) // 2 - 24000) <= 2
