"""`voicecli talk` session logic without sockets or devices: recorded Realtime sessions replayed
through `Talk.on_event`, barge-in arithmetic, the playback buffer, resampling, WAV input."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import wave
from pathlib import Path

import numpy as np
import pytest

from voicecli import profiles
from voicecli.audio.pcm import Resampler
from voicecli.audio.speaker import FADE, PlaybackBuffer
from voicecli.audio.wav import read_wav_24k
from voicecli.talk import Talk, TalkOptions, _heard
from voicecli.ui.talk_view import TalkView
from voicecli.wire.realtime import RealtimeDecoder


class FakeTransport:
    def __init__(self):
        self.sent: list[dict] = []

    async def send(self, event: dict) -> bool:
        self.sent.append(event)
        return True

    def types(self) -> list[str]:
        return [e["type"] for e in self.sent]


def make_talk(tmp_path: Path | None = None, **opts) -> Talk:
    prof = profiles.load("offline")
    talk = Talk(prof, TalkOptions(**opts))
    talk.buffer = PlaybackBuffer(prebuffer_ms=0)
    talk.view = TalkView(footer="", console_file=io.StringIO())
    talk.transport = FakeTransport()
    talk.half_duplex = False
    return talk


def server_events(traffic_dir: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (traffic_dir / f"{name}.jsonl").read_text().splitlines() if line.strip()]


async def feed(talk: Talk, events: list[dict]) -> None:
    decoder = RealtimeDecoder()
    for data in events:
        for event in decoder.feed(data):
            await talk.on_event(event)


def test_recorded_voice_turn_plays_all_audio_and_writes_the_transcript(traffic_dir):
    events = server_events(traffic_dir, "realtime_ws_audio_vad_01")
    deltas = b"".join(base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta")
    spoken = next(e["transcript"] for e in events if e["type"] == "response.output_audio_transcript.done")
    talk = make_talk()

    asyncio.run(feed(talk, events))
    assert not talk.in_progress
    assert talk.buffer.pending() == len(deltas) // 2  # every sample queued (odd bytes carried, not lost)
    talk._finalise()
    assert talk.history[-1:] != [("assistant", spoken)]  # not before it was played
    talk.buffer.pull(talk.buffer.pending())
    talk._finalise()
    assert ("assistant", spoken) in talk.history
    user = next(e["transcript"] for e in events if e["type"].endswith("input_audio_transcription.completed"))
    assert ("user", user.strip()) in talk.history
    assert talk.transport.sent == []  # nothing to cancel or truncate


def test_odd_length_deltas_keep_every_byte():
    buf = PlaybackBuffer()
    pcm = np.arange(1, 1001, dtype="<i2").tobytes()  # 2000 bytes cut into odd pieces
    for start in range(0, len(pcm), 333):
        buf.push("item", pcm[start:start + 333])
    out = buf.pull(1000)
    assert out.tobytes() == pcm
    assert buf.played["item"] == 1000


def test_barge_in_cancels_and_truncates_to_what_was_played(traffic_dir):
    events = server_events(traffic_dir, "realtime_ws_audio_vad_01")
    cut = [i for i, e in enumerate(events) if e["type"] == "response.output_audio.delta"][3]
    talk = make_talk()

    async def scenario():
        await feed(talk, events[: cut + 1])  # the response is running, some audio received
        item_id = events[cut]["item_id"]
        received = talk.items[item_id].received
        talk.buffer.pull(2400)  # the device took 100 ms
        await feed(talk, [{"type": "input_audio_buffer.speech_started", "audio_start_ms": 5000, "item_id": "u2"}])
        return item_id, received

    item_id, received = asyncio.run(scenario())
    assert talk.transport.types() == ["response.cancel", "conversation.item.truncate"]
    truncate = talk.transport.sent[1]
    assert truncate["item_id"] == item_id and truncate["content_index"] == 0
    expected = (2400 + min(FADE, received // 2 - 2400)) * 1000 // 24000
    assert truncate["audio_end_ms"] == min(expected, received // 48)
    assert talk.buffer.pending() <= FADE  # flushed: only the fade is left
    # late audio of the cancelled response is dropped
    late = {"type": "response.output_audio.delta", "response_id": talk.response_id, "item_id": item_id,
            "delta": base64.b64encode(b"\x01\x00" * 480).decode()}
    asyncio.run(feed(talk, [late]))
    assert talk.buffer.pending() <= FADE
    talk.buffer.pull(FADE)
    talk._finalise(force=True)
    assert talk.items[item_id].interrupted


def test_truncate_is_clamped_to_the_audio_received():
    talk = make_talk()
    talk.items["a"] = item = __import__("voicecli.talk", fromlist=["AssistantItem"]).AssistantItem("a", "r", 0.0)
    item.received = 4800  # 100 ms received
    talk.buffer.push("a", b"\x10\x00" * 2400)
    talk.buffer.pull(2400)
    talk.buffer.played["a"] = 4800  # as if more had been played than received (e.g. a resent delta)
    talk.buffer.push("a", b"\x10\x00" * 10)
    asyncio.run(talk.barge_in())
    assert talk.transport.sent[-1]["audio_end_ms"] == 100


def test_recorded_tool_call_runs_the_tool_and_asks_for_a_response(traffic_dir):
    events = server_events(traffic_dir, "realtime_ws_tool_call_01")
    first_done = next(i for i, e in enumerate(events) if e["type"] == "response.done")
    talk = make_talk()

    class Box:
        async def run(self, calls):
            from voicecli.wire.types import FunctionOutput

            return [FunctionOutput(c.call_id, '{"temp": 12}', c.name) for c in calls]

    talk.toolbox = Box()

    async def scenario():
        await feed(talk, events[: first_done + 1])
        await talk._tool_task

    asyncio.run(scenario())
    call = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert talk.transport.types() == ["conversation.item.create", "response.create"]
    assert talk.transport.sent[0]["item"] == {"type": "function_call_output", "call_id": call["call_id"],
                                              "output": '{"temp": 12}'}


def test_text_answer_is_finalised_without_audio(traffic_dir):
    events = server_events(traffic_dir, "realtime_ws_tool_call_01")
    talk = make_talk()
    asyncio.run(feed(talk, events))
    talk._finalise()
    text = next(e["text"] for e in events if e["type"] == "response.output_text.done")
    assert talk.history[-1] == ("assistant", text)


def test_heard_part_of_an_interrupted_answer():
    assert _heard("one two three four", 500, 1000) == "one two"
    assert _heard("one two", 1000, 1000) == "one two"


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


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
def test_streaming_resampler_keeps_a_tone(rate):
    x = (np.sin(2 * np.pi * 300 * np.arange(rate) / rate) * 10000).astype(np.int16)
    r = Resampler(rate)
    block = rate // 50
    out = np.concatenate([r.process(x[i:i + block]) for i in range(0, rate, block)])
    assert abs(out.size - 24000) <= 2
    ref = np.sin(2 * np.pi * 300 * np.arange(24000) / 24000) * 10000
    n = min(out.size, 24000) - 10
    assert np.max(np.abs(out[:n] - ref[:n])) < 300


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
