"""Transports in-process against the simulator: what actually went over the wire, turn by turn."""

from __future__ import annotations

import asyncio
import json

import pytest

from voicecli import profiles
from voicecli.conversation import Conversation
from voicecli.events import TextDelta, TurnEnd
from voicecli.sim.config import SimConfig
from voicecli.sim.server import start_in_thread
from voicecli.transport import open_transport
from voicecli.transport.base import backoff_delay, refused_here
from voicecli.items import Message


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("VOICECLI_HOME", str(tmp_path))
    return tmp_path


def make_profile(base_url: str, transport: str, **overrides):
    return profiles.load("offline", overrides={"connection.base_url": base_url, "connection.transport": transport,
                                               **overrides}, env={})


def ws_creates(log):
    return [(e["conn"], e["event"]) for e in log if e.get("kind") == "ws" and "event" in e
            and e["event"].get("type") == "response.create"]


async def chat_turns(profile, prompts):
    transport = open_transport(profile)
    conv = Conversation(profile, transport)
    answers = []
    try:
        for prompt in prompts:
            text = ""
            async for event in conv.send(Message("user", prompt)):
                if isinstance(event, TextDelta):
                    text += event.text
                if isinstance(event, TurnEnd):
                    assert event.status == "completed", event
            answers.append(text)
    finally:
        await transport.aclose()
    return answers, transport, conv


def test_ws_sends_only_new_items_with_previous_response_id(home):
    with start_in_thread(SimConfig()) as sim:
        answers, transport, conv = asyncio.run(chat_turns(make_profile(sim.base_url, "ws"),
                                                          [f"turn {i}" for i in range(1, 6)]))
        assert answers == [f"You said: turn {i}" for i in range(1, 6)]
        creates = ws_creates(sim.log)
        assert len({conn for conn, _ in creates}) == 1  # one connection for all turns
        first = creates[0][1]
        assert "previous_response_id" not in first and len(first["input"]) == 1
        for _, later in creates[1:]:
            assert later["previous_response_id"].startswith("resp_")
            assert later["input"] == [later["input"][0]] and later["input"][0]["role"] == "user"
            assert later["store"] is False
        assert transport.connections_opened == 1


def test_ws_request_bytes_stay_flat_while_sse_grows(home):
    sizes = {}
    with start_in_thread(SimConfig()) as sim:
        for kind in ("ws", "sse"):
            async def run():
                profile = make_profile(sim.base_url, kind)
                transport = open_transport(profile)
                conv = Conversation(profile, transport)
                out = []
                for i in range(12):
                    async for _ in conv.send(Message("user", f"message number {i:02d}")):
                        pass
                    out.append(transport.bytes_sent)
                await transport.aclose()
                return out
            sizes[kind] = asyncio.run(run())
    ws, sse = sizes["ws"], sizes["sse"]
    assert max(ws[1:]) - min(ws[1:]) < 40  # flat: only the new message each turn
    assert sse[-1] > 5 * sse[0]  # stateless: the whole history every turn


def test_ws_changed_settings_send_full_history(home):
    with start_in_thread(SimConfig()) as sim:
        async def run():
            profile = make_profile(sim.base_url, "ws")
            transport = open_transport(profile)
            conv = Conversation(profile, transport)
            async for _ in conv.send(Message("user", "one")):
                pass
            profile.model.instructions = "Now be terse."
            async for _ in conv.send(Message("user", "two")):
                pass
            await transport.aclose()
        asyncio.run(run())
        second = ws_creates(sim.log)[1][1]
        assert "previous_response_id" not in second and len(second["input"]) == 3
        assert second["instructions"] == "Now be terse."


def test_ws_cache_miss_resends_full_history_once(home, tmp_path):
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"turns": [
        {"reply": "first answer"},
        {"fault": {"status": 400, "type": "invalid_request_error", "code": "previous_response_not_found",
                   "message": "Previous response with id 'x' not found."}},
    ]}))
    with start_in_thread(SimConfig(script=script)) as sim:
        answers, _, _ = asyncio.run(chat_turns(make_profile(sim.base_url, "ws"), ["one", "two"]))
        assert answers == ["first answer", "You said: two"]
        creates = [ev for _, ev in ws_creates(sim.log)]
        assert len(creates) == 3
        assert "previous_response_id" in creates[1] and len(creates[1]["input"]) == 1
        assert "previous_response_id" not in creates[2] and len(creates[2]["input"]) == 3  # full replay


@pytest.mark.slow
def test_ws_rotates_before_the_connection_cap(home):
    with start_in_thread(SimConfig()) as sim:
        async def run():
            profile = make_profile(sim.base_url, "ws", **{"connection.ws_max_age": 1})
            transport = open_transport(profile)
            conv = Conversation(profile, transport)
            for prompt in ("one", "two"):
                async for _ in conv.send(Message("user", prompt)):
                    pass
                await asyncio.sleep(1.1)
            await transport.aclose()
            return transport
        transport = asyncio.run(run())
        creates = ws_creates(sim.log)
        assert transport.connections_opened == 2
        assert creates[0][0] != creates[1][0]
        assert "previous_response_id" not in creates[1][1] and len(creates[1][1]["input"]) == 3


@pytest.mark.slow
def test_ws_connection_limit_reached_reconnects_and_replays(home):
    with start_in_thread(SimConfig(ws_max_age=0.5)) as sim:
        async def run():
            profile = make_profile(sim.base_url, "ws")  # the client does not know the server's cap
            transport = open_transport(profile)
            conv = Conversation(profile, transport)
            answers = []
            for prompt in ("one", "two"):
                text = ""
                async for event in conv.send(Message("user", prompt)):
                    if isinstance(event, TextDelta):
                        text += event.text
                answers.append(text)
                await asyncio.sleep(0.7)
            await transport.aclose()
            return answers, transport
        answers, transport = asyncio.run(run())
        assert answers == ["You said: one", "You said: two"]
        assert transport.connections_opened == 2
        last = ws_creates(sim.log)[-1][1]
        assert "previous_response_id" not in last and len(last["input"]) == 3


@pytest.mark.parametrize("kind", ["sse", "chat"])
def test_http_transports_send_the_whole_history(home, kind):
    with start_in_thread(SimConfig()) as sim:
        answers, _, _ = asyncio.run(chat_turns(make_profile(sim.base_url, kind), ["a", "b", "c"]))
        assert answers == ["You said: a", "You said: b", "You said: c"]
        bodies = [e["body"] for e in sim.log if e.get("kind") == "http" and isinstance(e.get("body"), dict)]
        key = "input" if kind == "sse" else "messages"
        assert [len(b[key]) for b in bodies] == [1, 3, 5]
        assert all("previous_response_id" not in b for b in bodies)


def test_sse_with_store_continues_from_the_stored_response(home):
    with start_in_thread(SimConfig()) as sim:
        answers, _, _ = asyncio.run(chat_turns(make_profile(sim.base_url, "sse", **{"model.store": True}),
                                               ["a", "b"]))
        assert answers == ["You said: a", "You said: b"]
        bodies = [e["body"] for e in sim.log if e.get("kind") == "http" and isinstance(e.get("body"), dict)]
        assert bodies[1]["previous_response_id"].startswith("resp_") and len(bodies[1]["input"]) == 1
        assert bodies[1]["store"] is True


def test_backoff_follows_the_sdk_policy():
    assert backoff_delay(0, 0.25) == 0.25  # a server hint wins
    assert backoff_delay(0, 500) is None  # a hint over two minutes: do not retry
    for attempt, cap in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        delays = [backoff_delay(attempt, None) for _ in range(50)]
        assert all(cap * 0.75 <= d <= cap for d in delays)


def test_the_transport_leaves_no_task_behind(home):
    with start_in_thread(SimConfig()) as sim:
        async def run():
            await chat_turns(make_profile(sim.base_url, "ws"), ["x"])
            await asyncio.sleep(0)
            return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert asyncio.run(run()) == []


@pytest.mark.slow
def test_ws_leaving_does_not_wait_for_the_servers_close_reply(home, monkeypatch):
    """`infer` ends with aclose(leaving=True): a server slow to answer the close frame (a round trip
    on a real network) does not hold up the exit, while a plain close still waits for the reply."""
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve

    from voicecli.transport import ws as ws_module

    monkeypatch.setattr(ws_module, "CLOSE_TIMEOUT", 60.0)  # a wait for the reply would show
    with start_in_thread(SimConfig()) as sim:
        upstream = sim.base_url.replace("http://", "ws://") + "/responses"
        async def close_after_a_turn(leaving: bool) -> bool:
            silent, done_with = [], asyncio.Event()

            async def relay(client):  # to the simulator, then deaf: the close frame is never read
                async with connect(upstream) as server:
                    await server.send(await client.recv())
                    async for event in server:
                        if json.loads(event)["type"] == "response.completed":
                            client.transport.pause_reading()
                            silent.append(client)
                        await client.send(event)
                        if silent:
                            break
                await done_with.wait()

            async with serve(relay, "127.0.0.1", 0) as server:
                port = server.sockets[0].getsockname()[1]
                profile = make_profile(f"http://127.0.0.1:{port}/v1", "ws")
                transport = open_transport(profile)
                async for _ in Conversation(profile, transport).send(Message("user", "hi")):
                    pass
                closing = asyncio.create_task(transport.aclose(leaving=leaving))
                done, _ = await asyncio.wait({closing}, timeout=3)
                closing.cancel()
                for conn in silent:
                    conn.transport.abort()
                done_with.set()
                return bool(done)

        assert asyncio.run(close_after_a_turn(leaving=True))
        assert not asyncio.run(close_after_a_turn(leaving=False))


def test_only_a_refused_connection_to_this_machine_skips_the_retries():
    refused = ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 11434)")
    for host, where in (("127.0.0.1", "127.0.0.1:11434"), ("127.3.2.1", "127.3.2.1:11434"),
                        ("localhost", "localhost:11434"), ("::1", "[::1]:11434")):
        error = refused_here(refused, host, 11434)
        assert error.kind == "network" and not error.retryable
        assert error.message == f"nothing is listening on {where} — is the server running?"
    assert refused_here(refused, "192.0.2.7", 11434) is None  # a remote host keeps its retries
    assert refused_here(refused, "ollama.example", 11434) is None
    assert refused_here(ConnectionResetError(104, "reset"), "127.0.0.1", 11434) is None
    both = OSError("Multiple exceptions: [Errno 111] Connect call failed ('::1', 11434, 0, 0), "
                   "[Errno 111] Connect call failed ('127.0.0.1', 11434)")  # asyncio, localhost on two addresses
    assert refused_here(both, "localhost", 11434) is not None
    one = OSError("Multiple exceptions: [Errno 99] Cannot assign requested address, [Errno 111] Connect call failed")
    assert refused_here(one, "localhost", 11434) is None
    wrapped = RuntimeError("connection refused")
    wrapped.__cause__ = refused
    assert refused_here(wrapped, "127.0.0.1", 11434) is not None
