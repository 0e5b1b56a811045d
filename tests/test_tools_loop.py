"""The tool loop end to end in-process: Conversation + the real transports + ToolBox against the
simulator, for each text transport (ws, sse, chat); and the recorded tool-call streams replayed
through the loop."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest
from shared_data import recording

from voicecli import profiles
from voicecli.conversation import Conversation
from voicecli.events import Error, ToolResult
from voicecli.tools import Approval, NonInteractiveApprover, ToolBox
from voicecli.transport import open_transport
from voicecli.transport.http import close_shared_client
from voicecli.items import FunctionCall, FunctionOutput, Message

TRANSPORTS = ["ws", "sse", "chat"]
PY = json.dumps(sys.executable)

TOOLS = f"""
[[tools]]
name = "echo"
command = [{PY}, "-c", "import sys; print(sys.argv[1])", "{{text}}"]
approval = "auto"
[[tools]]
name = "shout"
command = [{PY}, "-c", "import sys; print(sys.argv[1].upper())", "{{text}}"]
approval = "auto"
[[tools]]
name = "asky"
command = [{PY}, "-c", "print('asked and ran')"]
[[tools]]
name = "nope"
command = [{PY}, "-c", "print('never runs')"]
approval = "never"
[[tools]]
name = "count"
command = [{PY}, "-c", "print('counted')"]
approval = "auto"
parameters = {{ type = "object", properties = {{ n = {{ type = "integer" }}, word = {{ type = "string" }} }}, required = ["n", "word"] }}
[[tools]]
name = "sleepy"
command = [{PY}, "-c", "import time; time.sleep(30)"]
approval = "auto"
timeout = 0.5
[[tools]]
name = "crash"
python = "voicecli_loop_tools:crash"
"""

MODULE = '''
def crash():
    raise KeyError("no such row")

def lookup(**kw):
    return "looked up " + ",".join(f"{k}={v}" for k, v in sorted(kw.items()))
'''


@pytest.fixture
def setup(tmp_path, make_sim):
    """make(transport, script=None, **model settings) → (profile, sim)."""
    (tmp_path / "voicecli_loop_tools.py").write_text(MODULE)
    path = tmp_path / "tools.toml"
    path.write_text('extends = "offline"\n' + TOOLS)

    def make(transport, script=None, **model):
        script_path = None
        if script is not None:
            script_path = tmp_path / "script.json"
            script_path.write_text(json.dumps({"turns": script}))
        sim = make_sim(script=script_path)
        overrides = {"connection.base_url": sim.base_url, "connection.transport": transport,
                     **{f"model.{k}": v for k, v in model.items()}}
        return profiles.load(str(path), overrides=overrides), sim

    return make


def converse(profile, *texts, approver=None):
    """Send each user text in one conversation; → (conversation, events per turn)."""
    async def main():
        transport = open_transport(profile)
        box = ToolBox.for_profile(profile, approver or NonInteractiveApprover())
        conv = Conversation(profile, transport, tool_runner=box.run)
        turns = []
        try:
            for text in texts:
                turns.append([e async for e in conv.send(Message("user", text))])
        finally:
            await transport.aclose()
            await close_shared_client()
        return conv, turns

    return asyncio.run(main())


def results(events) -> list[ToolResult]:
    return [e for e in events if isinstance(e, ToolResult)]


def bodies(sim) -> list[dict]:
    """Model request bodies the simulator received, in order."""
    out = []
    for entry in sim.log:
        body = entry.get("event") or entry.get("body")
        if isinstance(body, dict) and ("input" in body or "messages" in body):
            out.append(body)
    return out


def sent_outputs(body: dict) -> list[tuple[str, str]]:
    """(call_id, output) pairs a request sends back: function_call_output items or tool messages."""
    if "messages" in body:
        return [(m["tool_call_id"], m["content"]) for m in body["messages"] if m.get("role") == "tool"]
    return [(i["call_id"], i["output"]) for i in body["input"] if i.get("type") == "function_call_output"]


def assert_history_closed(conv: Conversation) -> None:
    """Every call in the history has its output, so the next request is valid."""
    calls = {i.call_id for i in conv.history if isinstance(i, FunctionCall)}
    outputs = {i.call_id for i in conv.history if isinstance(i, FunctionOutput)}
    assert calls == outputs


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_one_call(setup, transport):
    profile, sim = setup(transport)
    conv, (events,) = converse(profile, 'echo {"text": "hi; $(rm -rf ~)"}')
    (r,) = results(events)
    assert (r.name, json.loads(r.arguments), r.ok, r.output) == ("echo", {"text": "hi; $(rm -rf ~)"}, True, "hi; $(rm -rf ~)")
    assert conv.last.text == "Tool echo returned: hi; $(rm -rf ~)."
    assert conv.last.status == "completed" and conv.last.tool_results == [r]
    first, second = bodies(sim)
    assert sent_outputs(second) == [(r.call_id, "hi; $(rm -rf ~)")]
    assert_history_closed(conv)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_two_parallel_calls(setup, transport):
    profile, sim = setup(transport)
    conv, (events,) = converse(profile, 'echo and shout {"text": "hey"}')
    echo, shout = results(events)
    assert [(echo.name, echo.output), (shout.name, shout.output)] == [("echo", "hey"), ("shout", "HEY")]
    assert conv.last.text == "Tool echo returned: hey. Tool shout returned: HEY."
    assert [c for c, _ in sent_outputs(bodies(sim)[-1])] == [echo.call_id, shout.call_id]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_multi_round_chain(setup, transport):
    profile, sim = setup(transport, script=[
        {"tool_calls": [{"name": "echo", "arguments": {"text": "one"}}]},
        {"tool_calls": [{"name": "shout", "arguments": {"text": "two"}}, {"name": "echo", "arguments": {"text": "three"}}]},
        {"reply": "All done."},
    ])
    conv, (events,) = converse(profile, "go")
    assert [(r.name, r.output) for r in results(events)] == [("echo", "one"), ("shout", "TWO"), ("echo", "three")]
    assert conv.last.text == "All done." and conv.last.status == "completed"
    assert len(bodies(sim)) == 3
    assert [o for _, o in sent_outputs(bodies(sim)[2])][-2:] == ["TWO", "three"]
    assert_history_closed(conv)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_bad_input_from_the_model_becomes_results(setup, transport):
    profile, sim = setup(transport, script=[
        {"tool_calls": [
            {"name": "no_such_tool", "arguments": {}},
            {"name": "echo", "arguments": '{"text": "unterminated'},
            {"name": "count", "arguments": {"n": "three", "extra": 1}},
            {"name": "sleepy", "arguments": {}},
            {"name": "crash", "arguments": {}},
        ]},
        {"reply": "I saw the errors."},
    ])
    conv, (events,) = converse(profile, "go")
    unknown, not_json, schema, timeout, crash = results(events)
    assert not any(r.ok for r in (unknown, not_json, schema, timeout, crash))
    assert "no tool named 'no_such_tool'" in unknown.output
    assert "not valid JSON" in not_json.output
    assert "n: 'three' is not of type 'integer'" in schema.output and "'word' is a required property" in schema.output
    assert "did not finish within 0.5 s" in timeout.output
    assert crash.output == "error: crash raised KeyError: 'no such row'"
    assert conv.last.text == "I saw the errors." and conv.last.status == "completed"
    sent = dict(sent_outputs(bodies(sim)[-1]))
    assert sent[schema.call_id] == schema.output  # the model reads exactly what failed
    assert_history_closed(conv)


class Scripted:
    def __init__(self, *answers):
        self.answers, self.asked = list(answers), []

    async def __call__(self, tool, call):
        self.asked.append(tool.name)
        return self.answers.pop(0)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_approval_paths(setup, transport):
    profile, sim = setup(transport)
    approver = Scripted(Approval(True), Approval(False, "use the cached value"), Approval(True, always=True))
    conv, turns = converse(profile, "asky", "asky", "asky", "asky", "nope", approver=approver)
    outputs = [results(t)[0].output for t in turns]
    assert outputs == ["asked and ran", "denied: use the cached value", "asked and ran", "asked and ran",
                       'denied: tool \'nope\' is disabled (approval = "never")']
    assert approver.asked == ["asky"] * 3  # "always" stopped the asking; "never" never asks
    assert conv.last.text.startswith("Tool nope returned: denied")
    assert_history_closed(conv)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_non_interactive_denial_goes_back_to_the_model(setup, transport):
    profile, sim = setup(transport)
    conv, (events,) = converse(profile, "asky")
    (r,) = results(events)
    assert not r.ok and "--allow-tool asky" in r.output
    assert conv.last.status == "completed" and "needs the user's approval" in conv.last.text
    conv, (events,) = converse(profile, "asky", approver=NonInteractiveApprover(allow=["asky"]))
    assert results(events)[0].output == "asked and ran"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_max_tool_rounds_ends_the_turn_and_the_next_turn_works(setup, transport):
    loop = {"tool_calls": [{"name": "echo", "arguments": {"text": "again"}}]}
    profile, sim = setup(transport, script=[loop, loop, loop], max_tool_rounds=2)
    conv, (first, second) = converse(profile, "go", "hello")
    assert len(results(first)) == 2
    errors = [e for e in first if isinstance(e, Error)]
    assert len(errors) == 1 and "stopped after 2 tool rounds" in errors[0].message
    assert_history_closed(conv)
    assert conv.last.text == "You said: hello" and conv.last.status == "completed"


# ---- recorded tool-call streams through the loop -------------------------------------------

REPLAYS = {
    "responses_sse_tool_01": [("call_kL0PCQV7M2WMoVX8V8OtYSAL", "get_capital", '{"country":"France"}')],
    "responses_sse_tool_parallel_01": [
        ("call_sKC7OABqf2A2PTLCm0CLeRWV", "secret_retrieval_tool", '{"password":"mellon"}'),
        ("call_OdR3s3xop0vtgkDyWRMLafuH", "secret_retrieval_tool", '{"password":"radiance"}')],
    "chat_sse_tool_01": [("call_1EYWDzueHEp8OsB8jJSEp7WB", "multiply", None)],
    "chat_sse_tool_parallel_01": [("call_M26z19sncd7b4LBgzKRRbaUE", "secret_retrieval_tool", None), (None, "secret_retrieval_tool", None)],
}


def _recorded_calls(name: str) -> list[tuple[str, str, str]]:
    """The calls a recorded stream holds, read straight from the file (the oracle)."""
    text = recording(f"{name}.sse").read_text()
    datas = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
    if name.startswith("responses"):
        return [(d["item"]["call_id"], d["item"]["name"], d["item"]["arguments"]) for d in datas
                if d.get("type") == "response.output_item.done" and d["item"]["type"] == "function_call"]
    calls: dict[int, list[str]] = {}
    for d in datas:
        for choice in d.get("choices") or []:
            for frag in (choice.get("delta") or {}).get("tool_calls") or []:
                slot = calls.setdefault(frag["index"], ["", "", ""])
                slot[0] = frag.get("id") or slot[0]
                slot[1] = (frag.get("function") or {}).get("name") or slot[1]
                slot[2] += (frag.get("function") or {}).get("arguments") or ""
    return [tuple(calls[i]) for i in sorted(calls)]


@pytest.mark.parametrize("name", list(REPLAYS))
def test_recorded_tool_streams_through_the_loop(setup, name):
    transports = ["chat"] if name.startswith("chat") else ["sse", "ws"]
    expected = _recorded_calls(name)
    for want, got in zip(REPLAYS[name], expected):  # the table above agrees with the file
        assert want[1] == got[1] and want[0] in (None, got[0]) and want[2] in (None, got[2])
    assert len(expected) == len(REPLAYS[name])
    for transport in transports:
        profile, sim = setup(transport, script=[{"replay": str(recording(f"{name}.sse"))}, {"reply": "Thanks."}])
        profile.tools += [  # the recorded calls' tools, answered by one python function
            profiles.ToolDef(name=n, python="voicecli_loop_tools:lookup", strict=False,
                             parameters={"type": "object", "properties": {}})
            for n in ("get_capital", "secret_retrieval_tool", "multiply")]
        conv, (events,) = converse(profile, "recorded")
        got = [(r.call_id, r.name, r.arguments) for r in results(events)]
        assert got == expected, transport
        for r, (_, _, arguments) in zip(results(events), expected):
            args = json.loads(arguments)
            assert r.ok and r.output == "looked up " + ",".join(f"{k}={v}" for k, v in sorted(args.items()))
        assert sent_outputs(bodies(sim)[-1]) == [(r.call_id, r.output) for r in results(events)]
        assert conv.last.text == "Thanks."
