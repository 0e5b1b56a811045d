"""The simulator's Chat Completions front, checked with the official SDK as the oracle.

openai (and pydantic) are imported inside the functions that use them: importing openai at the top
would cost each xdist worker ~0.8 s of CPU at collection."""

from __future__ import annotations

import json

from typing import TYPE_CHECKING

import httpx
import pytest
from sdkcheck import sse_events, validate

from voicecli.sim import validate as sim_validate
from voicecli.sim.validate import ApiError

if TYPE_CHECKING:
    import openai

TOOLS = [
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}},
    {"type": "function", "function": {"name": "get_date", "parameters": {"type": "object", "properties": {}}}},
]


def client(handle, **kw) -> openai.OpenAI:
    import openai

    kw.setdefault("max_retries", 0)
    return openai.OpenAI(base_url=handle.base_url, api_key="sk-test", **kw)


def chunks(handle, body: dict, headers: dict | None = None) -> list[dict]:
    """Stream a request; every chunk validated strictly; ends with [DONE]."""
    from openai.types.chat import ChatCompletionChunk

    r = httpx.post(f"{handle.base_url}/chat/completions", json={**body, "stream": True}, headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    frames = [d for _, d in sse_events(r.text)]
    assert frames[-1] == "[DONE]"
    out = []
    for data in frames[:-1]:
        chunk = json.loads(data)
        validate(ChatCompletionChunk, chunk)
        out.append(chunk)
    return out


def kinds(chunk_list: list[dict]) -> list[str]:
    """What each chunk carries, as a list of short labels (a chunk may carry several)."""
    out = []
    for c in chunk_list:
        if not c["choices"]:
            out.append("usage")
            continue
        ch = c["choices"][0]
        d = ch["delta"]
        if "role" in d:
            out.append("role")
        if d.get("content"):
            out.append("content")
        for tc in d.get("tool_calls") or []:
            out.append(f"tool_head{tc['index']}" if "id" in tc else f"tool_args{tc['index']}")
        if ch.get("finish_reason"):
            out.append(f"finish:{ch['finish_reason']}")
    collapsed = []
    for k in out:
        if not collapsed or collapsed[-1] != k:
            collapsed.append(k)
    return collapsed


def test_stream_text_with_usage(sim):
    got = chunks(sim, {"model": "m", "messages": [{"role": "user", "content": "hello there"}], "stream_options": {"include_usage": True}})
    assert kinds(got) == ["role", "content", "finish:stop", "usage"]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in got if c["choices"]) == "You said: hello there"
    assert all(c["usage"] is None for c in got[:-1]) and got[-1]["usage"]["total_tokens"] > 0
    assert got[0]["id"].startswith("chatcmpl-") and len(got[0]["id"]) == 38


def test_stream_without_include_usage_has_no_usage(sim):
    got = chunks(sim, {"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert kinds(got)[-1] == "finish:stop"
    assert all("usage" not in c for c in got)


def test_sdk_stream_tool_calls_single_and_parallel(sim):
    c = client(sim)
    stream = c.chat.completions.create(
        model="m", messages=[{"role": "user", "content": 'get_time {"tz": "UTC"}'}], tools=TOOLS, stream=True,
        stream_options={"include_usage": True},
    )
    calls: dict[int, dict] = {}
    finish = usage = None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for tc in choice.delta.tool_calls or []:
                slot = calls.setdefault(tc.index, {"id": tc.id, "name": tc.function.name, "arguments": ""})
                slot["arguments"] += tc.function.arguments or ""
    assert finish == "tool_calls" and usage.completion_tokens > 0
    assert [(v["name"], json.loads(v["arguments"])) for v in calls.values()] == [("get_time", {"tz": "UTC"})]
    assert calls[0]["id"].startswith("call_")

    got = chunks(sim, {"model": "m", "messages": [{"role": "user", "content": "get_time and get_date"}], "tools": TOOLS})
    assert kinds(got) == ["role", "tool_head0", "tool_args0", "tool_head1", "tool_args1", "finish:tool_calls"]
    heads = [tc for c in got for tc in c["choices"][0]["delta"].get("tool_calls") or [] if "id" in tc]
    assert [h["function"] for h in heads] == [{"name": "get_time", "arguments": ""}, {"name": "get_date", "arguments": ""}]


def test_tool_results_from_tool_messages(sim):
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "multiply"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "multiply", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "2869461"},
    ]
    r = client(sim).chat.completions.create(model="m", messages=messages)
    assert r.choices[0].message.content == "Tool multiply returned: 2869461."
    assert r.choices[0].finish_reason == "stop"


def test_non_stream_completion_is_strictly_valid(sim):
    from openai.types.chat import ChatCompletion

    r = httpx.post(f"{sim.base_url}/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "get_time"}], "tools": TOOLS})
    done = validate(ChatCompletion, r.json())
    assert done.choices[0].finish_reason == "tool_calls" and done.choices[0].message.tool_calls[0].function.name == "get_time"
    r = httpx.post(f"{sim.base_url}/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert validate(ChatCompletion, r.json()).choices[0].message.content == "You said: hi"


@pytest.mark.parametrize("limit", ["max_tokens", "max_completion_tokens"])
def test_small_token_limit_gives_length(sim, limit):
    long = " ".join(["word"] * 100)
    got = chunks(sim, {"model": "m", "messages": [{"role": "user", "content": long}], limit: 5, "stream_options": {"include_usage": True}})
    assert kinds(got)[-2:] == ["finish:length", "usage"]
    assert got[-1]["usage"]["completion_tokens"] <= 5
    r = client(sim).chat.completions.create(model="m", messages=[{"role": "user", "content": long}], **{limit: 5})
    assert r.choices[0].finish_reason == "length"


RECORDED = {
    "chat_sse_text_01": None,
    "chat_sse_text_after_tool_01": None,
    "chat_sse_tool_01": [{"tool_calls": [{"name": "multiply", "arguments": {"a": 1231, "b": 2331}}]}],
    "chat_sse_tool_parallel_01": [{"tool_calls": [
        {"name": "secret_retrieval_tool", "arguments": {"password": "mellon"}},
        {"name": "secret_retrieval_tool", "arguments": {"password": "radiance"}},
    ]}],
    "chat_sse_usage_length_01": [{"reply": "Here is a list: " + "Alabama, " * 100}],
}


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_chunk_sequence_matches_recorded(name, make_sim, traffic_dir, tmp_path):
    script = None
    if RECORDED[name]:
        script = tmp_path / "script.json"
        script.write_text(json.dumps({"turns": RECORDED[name]}))
    handle = make_sim(script=script)
    request = json.loads((traffic_dir / f"{name}.request.json").read_text())
    real = [json.loads(d) for _, d in sse_events((traffic_dir / f"{name}.sse").read_text()) if d != "[DONE]"]
    assert kinds(chunks(handle, request)) == kinds(real)


@pytest.mark.parametrize(
    "body, param",
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": "hi"}, "messages"),
        ({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"model": "m", "messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream_options": {"include_usage": True}}, "stream_options"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "name": "flat"}]}, "tools[0].function"),
    ],
)
def test_invalid_requests_get_400_with_param(sim, body, param):
    r = httpx.post(f"{sim.base_url}/chat/completions", json=body)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == param


@pytest.mark.parametrize("body", [
    {"model": "m", "messages": [{"role": "user", "content": "x"}]},
    {"model": "m", "messages": []},
    {"model": "m"},
    {"model": "m", "messages": "hi"},
    {"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": "get_time"},
    {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": "many"},
])
def test_sim_is_never_more_lenient_than_the_sdk_types(body):
    import pydantic
    from openai.types.chat import completion_create_params

    try:
        sim_validate.check_chat(body)
        sim_ok = True
    except ApiError:
        sim_ok = False
    try:
        pydantic.TypeAdapter(completion_create_params.CompletionCreateParamsNonStreaming).validate_python(body)
        sdk_ok = True
    except pydantic.ValidationError:
        sdk_ok = False
    assert sdk_ok or not sim_ok


def test_recorded_requests_are_accepted(traffic_dir):
    for path in sorted(traffic_dir.glob("chat_sse_*.request.json")):
        sim_validate.check_chat(json.loads(path.read_text()))


# -- faults ------------------------------------------------------------------------------------


def test_fault_429_then_retry(sim):
    c = client(sim, max_retries=1, default_headers={"x-sim-fault": "status=429; retry_after_ms=10; times=1"})
    r = c.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == "You said: hi"


def test_fault_midstream_error_chunk(sim):
    import openai

    r = httpx.post(f"{sim.base_url}/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "a b c"}], "stream": True},
                   headers={"x-sim-fault": "error=flat; after=2"})
    frames = [d for _, d in sse_events(r.text)]
    assert json.loads(frames[-1])["error"]["code"] == "server_error" and "[DONE]" not in frames
    with pytest.raises(openai.APIError):
        for _ in client(sim, default_headers={"x-sim-fault": "error=flat"}).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}], stream=True
        ):
            pass


def test_fault_drop_and_incomplete(sim):
    import openai

    with pytest.raises(openai.APIConnectionError):
        for _ in client(sim, default_headers={"x-sim-fault": "drop=2"}).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x y z"}], stream=True
        ):
            pass
    got = chunks(sim, {"model": "m", "messages": [{"role": "user", "content": "a b c d e f g h"}]}, headers={"x-sim-fault": "incomplete"})
    assert kinds(got)[-1] == "finish:length"


def test_script_replay_chat(make_sim, tmp_path, traffic_dir):
    (tmp_path / "s.json").write_text(json.dumps({"turns": [{"replay": str(traffic_dir / "chat_sse_tool_01.sse")}]}))
    handle = make_sim(script=tmp_path / "s.json")
    r = httpx.post(f"{handle.base_url}/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True})
    assert r.content == (traffic_dir / "chat_sse_tool_01.sse").read_bytes()
