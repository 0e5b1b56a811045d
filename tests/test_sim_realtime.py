"""The simulator's Realtime API (GA) against the official SDK and the recorded real sessions.

Every server event is validated with the SDK's `RealtimeServerEvent` models *and* checked for
keys the models do not know (they allow extras, so a misspelt optional field would pass
validation alone); the only extras allowed are the ones the real server sends too (seen in
../shared/traffic/realtime_ws_*.jsonl). Client events the SDK sent are checked the same way against
`RealtimeClientEvent`.

The SDK, and the pydantic adapters built from its types, are imported and built on first use, not at
the top: every xdist worker imports each test module at collection, and they cost it ~0.8 s of CPU.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import time
from typing import TYPE_CHECKING

import numpy as np
import pytest
import websockets
from shared_data import recording

from voicecli.sim import speech
from voicecli.sim.config import SimConfig
from voicecli.sim.server import start_in_thread

if TYPE_CHECKING:
    from openai import AsyncOpenAI
    from pydantic import TypeAdapter

KEY = "sk-sim-test"
TIMEOUT = 10


# -- strict validation ---------------------------------------------------------------------------


@functools.cache
def server_events() -> TypeAdapter:
    """The adapter for the SDK's `RealtimeServerEvent` union."""
    from openai.types.realtime import RealtimeServerEvent
    from pydantic import TypeAdapter

    return TypeAdapter(RealtimeServerEvent)


@functools.cache
def client_events() -> TypeAdapter:
    """The adapter for the SDK's `RealtimeClientEvent` union."""
    from openai.types.realtime import RealtimeClientEvent
    from pydantic import TypeAdapter

    return TypeAdapter(RealtimeClientEvent)


def extras(model: object, path: str) -> list[str]:
    """Paths of keys a parsed SDK model did not declare (its `model_extra`), recursively."""
    from pydantic import BaseModel

    out: list[str] = []
    if isinstance(model, BaseModel):
        out += [f"{path}.{k}" for k in (model.model_extra or {})]
        for name in type(model).model_fields:
            out += extras(getattr(model, name), f"{path}.{name}")
    elif isinstance(model, (list, tuple)):
        for value in model:
            out += extras(value, f"{path}[]")
    elif isinstance(model, dict):
        for key, value in model.items():
            out += extras(value, f"{path}.{key}")
    return out


# Extras the real server sends, which this SDK does not model (test_allowed_extras_are_the_recorded_ones
# reads them from the recorded sessions)
ALLOWED_EXTRAS = {
    *(f"{t}.obfuscation" for t in ("conversation.item.input_audio_transcription.delta",
                                   "response.function_call_arguments.delta",
                                   "response.output_audio_transcript.delta", "response.output_text.delta")),
    *(f"{t}.session.{k}" for t in ("session.created", "session.updated") for k in ("expires_at", "id", "object")),
}


def test_allowed_extras_are_the_recorded_ones():
    found = set()
    for name in ("realtime_ws_audio_vad_01", "realtime_ws_text_in_audio_out_01", "realtime_ws_tool_call_01"):
        for line in recording(f"{name}.wire.jsonl").read_text().splitlines():
            rec = json.loads(line)
            if rec.get("dir") == "recv":
                found |= set(extras(server_events().validate_python(rec["event"]), rec["event"]["type"]))
    assert found == ALLOWED_EXTRAS


def check_server_event(event: dict) -> None:
    model = server_events().validate_python(event)
    assert model.type == event["type"]
    unknown = set(extras(model, event["type"])) - ALLOWED_EXTRAS
    assert not unknown, f"keys the SDK does not know: {unknown}"


def check_client_events(handle) -> int:
    """Validate the client events the simulator received (tests mark deliberately bad ones "bad_…")."""
    events = [
        e["event"] for e in handle.log
        if e.get("kind") == "ws" and e.get("endpoint") == "/v1/realtime" and "event" in e
        and not str(e["event"].get("event_id", "")).startswith("bad_")
    ]  # fmt: skip
    for event in events:
        model = client_events().validate_python(event)
        assert not extras(model, event["type"]), extras(model, event["type"])
    return len(events)


def skeleton(types: list[str]) -> list[str]:
    """Event types with the parts that legitimately vary removed: runs of deltas become one
    "deltas", asynchronous input transcription and rate-limit events are dropped."""
    out: list[str] = []
    for t in types:
        if t == "rate_limits.updated" or t.startswith("conversation.item.input_audio_transcription."):
            continue
        if t.endswith(".delta"):
            t = "deltas"
        if not (out and out[-1] == t == "deltas"):
            out.append(t)
    return out


def recorded_types(name: str) -> list[str]:
    return [json.loads(line)["type"] for line in recording(f"{name}.jsonl").read_text().splitlines() if line.strip()]


# -- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim():
    handle = start_in_thread(SimConfig(api_key=KEY, realtime_speed=25.0))
    yield handle
    handle.stop()


def client(handle) -> AsyncOpenAI:
    from openai import AsyncOpenAI

    return AsyncOpenAI(base_url=handle.base_url, api_key=KEY, max_retries=0)


async def recv(conn) -> dict:
    event = json.loads(await asyncio.wait_for(conn.recv_bytes(), TIMEOUT))
    check_server_event(event)
    return event


async def until(conn, stop: str, log: list[dict] | None = None) -> list[dict]:
    """Receive (and validate) events up to and including the first of type `stop`."""
    got = []
    while True:
        event = await recv(conn)
        got.append(event)
        if log is not None:
            log.append(event)
        if event["type"] == stop:
            return got


async def append_pcm(conn, pcm: bytes, chunk_ms: int = 40) -> None:
    step = chunk_ms * 48
    for i in range(0, len(pcm), step):
        await conn.input_audio_buffer.append(audio=base64.b64encode(pcm[i : i + step]).decode())


def audio_of(events: list[dict]) -> bytes:
    return b"".join(base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta")


def of_type(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if e["type"] == kind]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


# -- tests ---------------------------------------------------------------------------------------


def test_session_created_and_partial_update(sim):
    async def main():
        async with client(sim).realtime.connect(model="gpt-realtime") as conn:
            created = await recv(conn)
            assert created["type"] == "session.created"
            s0 = created["session"]
            assert s0["type"] == "realtime" and s0["model"] == "gpt-realtime"
            assert s0["audio"]["input"]["turn_detection"]["type"] == "server_vad"
            await conn.session.update(
                session={"type": "realtime", "instructions": "Be brief.",
                         "audio": {"input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 300}}}}
            )  # fmt: skip
            s1 = (await recv(conn))["session"]
            assert s1["instructions"] == "Be brief."
            td = s1["audio"]["input"]["turn_detection"]
            assert td["silence_duration_ms"] == 300 and td["prefix_padding_ms"] == 300  # defaults filled in
            assert s1["audio"]["output"] == s0["audio"]["output"]  # untouched fields stay
            assert s1["id"] == s0["id"]
            # session.type is required in GA; the beta shape's fields are unknown
            await conn.send({"type": "session.update", "event_id": "bad_1", "session": {"instructions": "x"}})
            err = await recv(conn)
            assert err["error"]["code"] == "missing_required_parameter" and err["error"]["event_id"] == "bad_1"
            await conn.send({"type": "session.update", "event_id": "bad_2", "session": {"type": "realtime", "modalities": ["text"]}})
            assert (await recv(conn))["error"]["code"] == "unknown_parameter"

    run(main())
    assert check_client_events(sim) >= 1


SILENCE_MS, SPEECH_S = 300, 1.2  # the voice turn's server_vad silence_duration_ms and its speech


@pytest.fixture(scope="module")
def vad_turn(sim) -> list[dict]:
    """Every server event of one server-VAD voice turn: 1 s silence, speech, 0.8 s silence."""
    pcm = speech.silence(1.0) + speech.speech_like(SPEECH_S) + speech.silence(0.8)

    async def main():
        log: list[dict] = []
        async with client(sim).realtime.connect(model="gpt-realtime") as conn:
            await until(conn, "session.created", log)
            await conn.session.update(session={
                "type": "realtime", "output_modalities": ["audio"],
                "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                                    "turn_detection": {"type": "server_vad", "silence_duration_ms": SILENCE_MS},
                                    "transcription": {"model": "gpt-4o-mini-transcribe"}},
                          "output": {"format": {"type": "audio/pcm", "rate": 24000}}}})  # fmt: skip
            await until(conn, "session.updated", log)
            await append_pcm(conn, pcm)
            await until(conn, "response.done", log)
        return log

    return run(main())


def test_vad_audio_turn(vad_turn):
    log = vad_turn
    started = of_type(log, "input_audio_buffer.speech_started")[0]
    stopped = of_type(log, "input_audio_buffer.speech_stopped")[0]
    assert abs(started["audio_start_ms"] - (1000 - 300)) <= 30  # onset minus prefix_padding_ms
    assert abs(stopped["audio_end_ms"] - (2200 + SILENCE_MS)) <= 30  # speech end plus the silence
    assert started["item_id"] == stopped["item_id"] == of_type(log, "input_audio_buffer.committed")[0]["item_id"]
    transcript = of_type(log, "conversation.item.input_audio_transcription.completed")[0]
    assert transcript["transcript"] == f"[speech {SPEECH_S:.2f} s]"
    assert transcript["usage"]["type"] == "tokens"
    done = of_type(log, "response.done")[0]["response"]
    assert done["status"] == "completed"
    said = of_type(log, "response.output_audio_transcript.done")[0]["transcript"]
    assert said == f"You said: [speech {SPEECH_S:.2f} s]"
    audio = audio_of(log)
    assert audio == speech.synthesize(said)  # the whole real waveform, in order
    assert speech.rms(audio) > 0.02
    assert done["usage"]["input_token_details"]["audio_tokens"] > 0
    assert done["usage"]["output_token_details"]["audio_tokens"] > 0
    assert "".join(e["delta"] for e in of_type(log, "response.output_audio_transcript.delta")) == said


def test_vad_audio_turn_matches_recording(vad_turn):
    assert skeleton([e["type"] for e in vad_turn]) == skeleton(recorded_types("realtime_ws_audio_vad_01"))


@pytest.fixture(scope="module")
def text_in_audio_out(sim) -> list[dict]:
    """Every server event of a typed question answered in audio."""
    async def main():
        log: list[dict] = []
        async with client(sim).realtime.connect(model="gpt-realtime") as conn:
            await until(conn, "session.created", log)
            await conn.session.update(session={"type": "realtime", "instructions": "Answer in two or three words."})
            await until(conn, "session.updated", log)
            await conn.conversation.item.create(
                item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Say hi."}]}
            )
            await conn.response.create()
            await until(conn, "response.done", log)
        return log

    return run(main())


def test_text_in_audio_out(text_in_audio_out):
    log = text_in_audio_out
    assert of_type(log, "response.output_audio_transcript.done")[0]["transcript"] == "You said: Say hi."
    user_added = of_type(log, "conversation.item.added")[0]
    assistant_added = of_type(log, "conversation.item.added")[1]
    assert assistant_added["previous_item_id"] == user_added["item"]["id"]


def test_text_in_audio_out_matches_recording(text_in_audio_out):
    assert skeleton([e["type"] for e in text_in_audio_out]) == skeleton(
        recorded_types("realtime_ws_text_in_audio_out_01"))


@pytest.fixture(scope="module")
def function_call_round(sim) -> tuple[list[dict], list[dict], list[dict]]:
    """A function-call round: (every server event, the first response's, the second response's)."""
    tools = [{"type": "function", "name": "get_weather", "description": "Look up the weather for a city.",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]  # fmt: skip

    async def main():
        log: list[dict] = []
        async with client(sim).realtime.connect(model="gpt-realtime") as conn:
            await until(conn, "session.created", log)
            await conn.session.update(session={"type": "realtime", "output_modalities": ["text"], "tools": tools})
            await until(conn, "session.updated", log)
            text = 'Use get_weather for {"city": "London"} please.'
            await conn.conversation.item.create(
                item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
            )
            await conn.response.create()
            first = await until(conn, "response.done", log)
            call = of_type(first, "response.function_call_arguments.done")[0]
            await conn.conversation.item.create(
                item={"type": "function_call_output", "call_id": call["call_id"], "output": "Foggy, 12 degrees"}
            )
            await conn.response.create()
            second = await until(conn, "response.done", log)
            return log, first, second

    return run(main())


def test_function_call_round_trip(function_call_round):
    _, first, second = function_call_round
    call = of_type(first, "response.function_call_arguments.done")[0]
    assert call["name"] == "get_weather" and json.loads(call["arguments"]) == {"city": "London"}
    # the order protocols.md §4.9 gives: the call's item, its argument deltas, .done, the item's done
    assert [t for t in skeleton([e["type"] for e in first]) if not t.startswith("conversation.")] == [
        "response.created", "response.output_item.added", "deltas", "response.function_call_arguments.done",
        "response.output_item.done", "response.done"]
    assert first[-1]["response"]["output"][0]["type"] == "function_call"
    assert of_type(second, "response.output_text.done")[0]["text"] == "Tool get_weather returned: Foggy, 12 degrees."


def test_function_call_round_trip_matches_recording(function_call_round):
    log, _, _ = function_call_round
    assert skeleton([e["type"] for e in log]) == skeleton(recorded_types("realtime_ws_tool_call_01"))


def test_manual_turn_commit_and_response_create(sim):
    async def main():
        async with client(sim).realtime.connect(model="gpt-realtime") as conn:
            await until(conn, "session.created")
            await conn.session.update(session={"type": "realtime", "audio": {"input": {"turn_detection": None}}})
            assert (await until(conn, "session.updated"))[0]["session"]["audio"]["input"]["turn_detection"] is None
            await conn.input_audio_buffer.commit()  # nothing appended yet
            err = await recv(conn)
            assert err["error"]["code"] == "input_audio_buffer_commit_empty"
            await append_pcm(conn, speech.speech_like(0.8) + speech.silence(1.0))  # no VAD: no events
            await conn.input_audio_buffer.commit()
            got = await until(conn, "conversation.item.done")
            assert [e["type"] for e in got] == ["input_audio_buffer.committed", "conversation.item.added",
                                                "conversation.item.done"]  # fmt: skip
            await conn.response.create()
            done = await until(conn, "response.done")
            assert of_type(done, "response.output_audio_transcript.done")[0]["transcript"] == "You said: [speech 0.80 s]"
            # clear works and empties the buffer
            await append_pcm(conn, speech.speech_like(0.3))
            await conn.input_audio_buffer.clear()
            assert (await recv(conn))["type"] == "input_audio_buffer.cleared"
            await conn.input_audio_buffer.commit()
            assert (await recv(conn))["error"]["code"] == "input_audio_buffer_commit_empty"

    run(main())


async def _audio_reply(conn, text: str) -> list[dict]:
    await conn.conversation.item.create(
        item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    )
    await conn.response.create()
    return await until(conn, "response.done")


def test_truncate_retrieve_delete(sim):
    async def main():
        async with client(sim).realtime.connect(model="gpt-realtime") as conn:
            await until(conn, "session.created")
            events = await _audio_reply(conn, "Tell me something long enough to truncate.")
            item_id = of_type(events, "response.output_item.done")[0]["item"]["id"]
            sent_ms = len(audio_of(events)) // 48
            await conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=sent_ms + 100)
            err = await recv(conn)
            assert err["type"] == "error"
            assert err["error"]["message"] == f"Audio content of {sent_ms}ms is already shorter than {sent_ms + 100}ms"
            await conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=500)
            truncated = await recv(conn)
            assert truncated == {**truncated, "type": "conversation.item.truncated", "item_id": item_id, "audio_end_ms": 500}
            await conn.conversation.item.retrieve(item_id=item_id)
            got = await recv(conn)
            part = got["item"]["content"][0]
            assert len(base64.b64decode(part["audio"])) == 500 * 48
            assert len(part["transcript"]) < len("You said: Tell me something long enough to truncate.")
            user_id = of_type(events, "conversation.item.added")[0]["item"]["id"]
            await conn.conversation.item.truncate(item_id=user_id, content_index=0, audio_end_ms=10)
            assert (await recv(conn))["error"]["code"] == "unsupported_content_type"
            await conn.conversation.item.delete(item_id=item_id)
            assert (await recv(conn)) | {"event_id": ""} == {"type": "conversation.item.deleted", "item_id": item_id,
                                                               "event_id": ""}  # fmt: skip
            await conn.conversation.item.retrieve(item_id=item_id)
            assert (await recv(conn))["error"]["code"] == "item_not_found"

    run(main())


def test_cancel_and_barge_in():
    handle = start_in_thread(SimConfig(realtime_speed=1.0))  # real time, so the reply is still running
    try:

        async def main():
            async with client(handle).realtime.connect(model="gpt-realtime") as conn:
                await until(conn, "session.created")
                await conn.conversation.item.create(item={"type": "message", "role": "user",
                    "content": [{"type": "input_text", "text": "Please say a rather long sentence for me now."}]})  # fmt: skip
                await conn.response.create()
                await until(conn, "response.output_audio.delta")
                await conn.response.cancel()
                rest = await until(conn, "response.done")
                done = rest[-1]["response"]
                assert done["status"] == "cancelled"
                assert done["status_details"]["reason"] == "client_cancelled"
                assert done["output"][0]["status"] == "incomplete"
                await conn.response.cancel()  # nothing runs: a harmless error, the session goes on
                assert (await recv(conn))["error"]["code"] == "response_cancel_not_active"

                # barge-in: user speech while a reply plays cancels it (interrupt_response)
                await conn.response.create()
                await until(conn, "response.output_audio.delta")
                await append_pcm(conn, speech.speech_like(0.5))
                got = await until(conn, "response.done")
                types = [e["type"] for e in got]
                assert types.index("input_audio_buffer.speech_started") < types.index("response.done")
                assert got[-1]["response"]["status"] == "cancelled"
                assert got[-1]["response"]["status_details"]["reason"] == "turn_detected"

        run(main())
    finally:
        handle.stop()


@pytest.mark.slow
def test_output_audio_is_paced_in_real_time():
    speed = 2.0
    handle = start_in_thread(SimConfig(realtime_speed=speed))
    try:

        async def main():
            async with client(handle).realtime.connect(model="gpt-realtime") as conn:
                await until(conn, "session.created")
                await conn.conversation.item.create(item={"type": "message", "role": "user",
                    "content": [{"type": "input_text", "text": "One two three four five six."}]})  # fmt: skip
                await conn.response.create()
                first = None
                deltas = []
                while True:
                    event = await recv(conn)
                    if event["type"] == "response.output_audio.delta":
                        first = first or time.monotonic()
                        deltas.append(event)
                    if event["type"] == "response.output_audio.done":
                        return time.monotonic() - first, audio_of(deltas), len(deltas)

        elapsed, audio, n = run(main())
        duration = len(audio) / 48000
        assert duration > 1.5 and n > 10  # streamed in many pieces, not all at once
        expected = duration / speed
        assert expected * 0.8 < elapsed  # paced, not bursted
        assert elapsed < expected + 10  # no stall: a hang guard only, a busy machine adds to it
        # every 50 ms delta carries real signal (tones or speech, not silence)
        energies = [speech.rms(audio[i : i + 2400]) for i in range(0, len(audio), 2400)]
        assert np.mean(energies) > 0.02
    finally:
        handle.stop()


def test_malformed_client_events_keep_the_session(sim):
    async def main():
        async with client(sim).realtime.connect(model="gpt-realtime") as conn:
            await until(conn, "session.created")
            await conn.send({"type": "no.such.event", "event_id": "bad_unknown"})
            err = await recv(conn)
            assert err["error"]["type"] == "invalid_request_error"
            assert err["error"]["code"] == "invalid_value" and err["error"]["event_id"] == "bad_unknown"
            await conn.send({"type": "conversation.item.truncate", "event_id": "bad_missing", "item_id": "x"})
            err = await recv(conn)
            assert err["error"]["code"] == "missing_required_parameter" and err["error"]["event_id"] == "bad_missing"
            await conn.send({"type": "input_audio_buffer.append", "event_id": "bad_b64", "audio": "***not base64***"})
            assert (await recv(conn))["error"]["param"] == "audio"
            # still alive
            await conn.conversation.item.create(
                item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "ok?"}]}
            )
            assert (await recv(conn))["type"] == "conversation.item.added"

    run(main())


def _ws_url(handle, query: str) -> str:
    return handle.base_url.replace("http://", "ws://") + "/realtime?" + query


def test_bad_json_and_beta_header_raw(sim):
    async def main():
        auth = {"Authorization": f"Bearer {KEY}"}
        async with websockets.connect(_ws_url(sim, "model=gpt-realtime"), additional_headers=auth) as ws:
            check_server_event(json.loads(await ws.recv()))
            await ws.send("{not json")
            err = json.loads(await ws.recv())
            check_server_event(err)
            assert err["error"]["code"] == "invalid_json"
        beta = {**auth, "OpenAI-Beta": "realtime=v1"}
        async with websockets.connect(_ws_url(sim, "model=gpt-realtime"), additional_headers=beta) as ws:
            err = json.loads(await ws.recv())
            check_server_event(err)
            assert err["error"]["code"] == "beta_api_shape_disabled"
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 4000
        with pytest.raises(websockets.InvalidStatus) as info:  # the middleware's 401
            await websockets.connect(_ws_url(sim, "model=gpt-realtime"))
        assert info.value.response.status_code == 401

    run(main())


def test_session_expires(sim):
    async def main():
        url = _ws_url(sim, "model=gpt-realtime&sim_max_age=0.3")
        async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {KEY}"}) as ws:
            created = json.loads(await ws.recv())
            assert created["session"]["expires_at"] <= time.time() + 2
            err = json.loads(await ws.recv())
            check_server_event(err)
            assert err["error"]["code"] == "session_expired"
            assert "maximum duration of 0.3 seconds" in err["error"]["message"]
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 1000

    run(main())


def test_fault_knobs(sim):
    auth = {"Authorization": f"Bearer {KEY}"}

    async def events_until_closed(ws) -> list[dict]:
        got = []
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                got.append(json.loads(await ws.recv()))
        return got

    async def main():
        # drop after 3 events: no close frame (1006)
        async with websockets.connect(_ws_url(sim, "model=m&sim_fault=drop%3D3"), additional_headers=auth) as ws:
            await ws.send(json.dumps({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                                      "content": [{"type": "input_text", "text": "hi"}]}}))  # fmt: skip
            await ws.send(json.dumps({"type": "response.create"}))
            got = await events_until_closed(ws)
            assert len(got) == 3 and ws.close_code == 1006
        # the x-sim-fault header: close with a code after N events
        hdr = {**auth, "x-sim-fault": "close=4001; after=1"}
        async with websockets.connect(_ws_url(sim, "model=m"), additional_headers=hdr) as ws:
            got = await events_until_closed(ws)
            assert [e["type"] for e in got] == ["session.created"] and ws.close_code == 4001
        # a refusing fault on the query: no upgrade
        with pytest.raises(websockets.InvalidStatus) as info:
            await websockets.connect(_ws_url(sim, "model=m&sim_fault=status%3D503"), additional_headers=auth)
        assert info.value.response.status_code == 503

    run(main())


def test_script_fixes_the_reply_and_faults(tmp_path):
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"turns": [
        {"reply": "Scripted hello."},
        {"fault": {"failed": True}},
        {"fault": {"error": "flat", "after": 2}},
    ]}))  # fmt: skip
    handle = start_in_thread(SimConfig(realtime_speed=25.0, script=script))
    try:

        async def main():
            async with client(handle).realtime.connect(model="gpt-realtime") as conn:
                await until(conn, "session.created")
                await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
                await until(conn, "session.updated")
                first = await _audio_reply(conn, "anything")
                assert of_type(first, "response.output_text.done")[0]["text"] == "Scripted hello."
                second = await _audio_reply(conn, "again")
                assert second[-1]["response"]["status"] == "failed"
                third = await _audio_reply(conn, "once more")  # error after response.created + rate_limits
                assert [e["type"] for e in third[-4:]] == ["response.created", "rate_limits.updated", "error",
                                                           "response.done"]  # fmt: skip
                assert third[-1]["response"]["status"] == "failed"
                last = await _audio_reply(conn, "and again")  # the script is used up: the brain answers
                assert of_type(last, "response.output_text.done")[0]["text"] == "You said: and again"

        run(main())
    finally:
        handle.stop()


def test_script_replays_a_recorded_session(tmp_path):
    script = tmp_path / "script.json"
    recorded = recording("realtime_ws_text_in_audio_out_01.jsonl").resolve()
    script.write_text(json.dumps({"turns": [{"replay": str(recorded)}]}))
    handle = start_in_thread(SimConfig(realtime_speed=25.0, script=script))
    try:

        async def main():
            async with client(handle).realtime.connect(model="gpt-realtime") as conn:
                await until(conn, "session.created")
                await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
                await until(conn, "session.updated")
                replayed = await _audio_reply(conn, "replay")  # the recorded server events, verbatim
                recorded_skeleton = skeleton(recorded_types("realtime_ws_text_in_audio_out_01"))
                assert skeleton([e["type"] for e in replayed])[2:] == [t for t in recorded_skeleton if "session." not in t]
                assert of_type(replayed, "response.output_audio_transcript.done")[0]["transcript"] == "Hi there!"
                last = await _audio_reply(conn, "and again")  # the script is used up: the brain answers
                assert of_type(last, "response.output_text.done")[0]["text"] == "You said: and again"

        run(main())
    finally:
        handle.stop()


def test_item_create_positions_and_out_of_band_response(sim):
    async def main():
        async with client(sim).realtime.connect(model="gpt-realtime") as conn:
            await until(conn, "session.created")
            msg = lambda role, kind, text: {"type": "message", "role": role, "content": [{"type": kind, "text": text}]}  # noqa: E731
            await conn.conversation.item.create(item=msg("user", "input_text", "first"))
            a = (await until(conn, "conversation.item.done"))[0]["item"]["id"]
            await conn.conversation.item.create(item=msg("system", "input_text", "be nice"), previous_item_id="root")
            added = (await until(conn, "conversation.item.done"))[0]
            assert added["previous_item_id"] is None
            await conn.conversation.item.create(item=msg("assistant", "output_text", "hello"), previous_item_id=a)
            added = (await until(conn, "conversation.item.done"))[0]
            assert added["previous_item_id"] == a and added["item"]["status"] == "completed"
            await conn.conversation.item.create(item=msg("user", "input_text", "x"), previous_item_id="nope")
            assert (await recv(conn))["error"]["code"] == "item_not_found"
            # conversation "none": an out-of-band reply, not added to the conversation
            await conn.response.create(response={"conversation": "none", "output_modalities": ["text"],
                                                 "input": [msg("user", "input_text", "side question")]})  # fmt: skip
            got = await until(conn, "response.done")
            assert not of_type(got, "conversation.item.added")
            assert got[-1]["response"]["conversation_id"] is None
            assert of_type(got, "response.output_text.done")[0]["text"] == "You said: side question"

    run(main())
    assert check_client_events(sim) > 0


def test_client_events_sent_by_the_sdk_validate(sim, vad_turn, text_in_audio_out, function_call_round):
    """Everything the SDK sent in this module's sessions is a valid GA client event (at least the three
    sessions asked for here: under parallel workers the module's other tests may run elsewhere)."""
    assert check_client_events(sim) > 20


def test_semantic_vad_is_treated_like_server_vad(sim):
    async def main():
        async with client(sim).realtime.connect(model="gpt-realtime") as conn:
            await until(conn, "session.created")
            await conn.session.update(session={"type": "realtime", "output_modalities": ["text"],
                                               "audio": {"input": {"turn_detection": {"type": "semantic_vad"}}}})  # fmt: skip
            td = (await until(conn, "session.updated"))[0]["session"]["audio"]["input"]["turn_detection"]
            assert td == {"type": "semantic_vad", "eagerness": "auto", "create_response": True, "interrupt_response": True}
            await append_pcm(conn, speech.silence(0.3) + speech.speech_like(0.7) + speech.silence(0.8))
            got = await until(conn, "response.done")
            assert [e["type"] for e in got[:3]] == ["input_audio_buffer.speech_started",
                                                    "input_audio_buffer.speech_stopped", "input_audio_buffer.committed"]  # fmt: skip
            assert of_type(got, "response.output_text.done")[0]["text"] == "You said: [speech 0.70 s]"

    run(main())


@pytest.mark.skipif(not speech.espeak_available(), reason="espeak-ng not installed")
def test_its_own_speech_heard_back_is_understood_exactly(sim):
    """Speech the simulator made (an answer's audio, or /v1/audio/speech) reads as its exact words."""

    async def main():
        async with client(sim).realtime.connect(model="gpt-realtime") as conn:
            await until(conn, "session.created")
            await conn.session.update(session={"type": "realtime", "audio": {"input": {"turn_detection": None}}})
            await until(conn, "session.updated")
            answer = audio_of(await _audio_reply(conn, "Good morning to everyone here."))
            assert answer == speech.synthesize("You said: Good morning to everyone here.")
            await append_pcm(conn, speech.silence(0.3) + answer + speech.silence(0.5))  # its echo, say
            await conn.input_audio_buffer.commit()
            await until(conn, "conversation.item.done")
            await conn.response.create()
            done = await until(conn, "response.done")
            said = of_type(done, "response.output_audio_transcript.done")[0]["transcript"]
            assert said == "You said: You said: Good morning to everyone here."

    run(main())
