"""The simulator's Responses front, checked with the official SDK as the oracle.

openai (and pydantic) are imported inside the functions that use them: importing openai at the top
would cost each xdist worker ~0.8 s of CPU at collection."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import httpx
import websockets
import pytest
from sdkcheck import sse_events, validate
from shared_data import SHARED_ONLY, TRAFFIC, recording

from voicecli.sim import validate as sim_validate
from voicecli.sim.validate import ApiError

if TYPE_CHECKING:
    import openai

TOOL = {"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {}}}
TOOL2 = {"type": "function", "name": "get_date", "parameters": {"type": "object", "properties": {}}}


def client(handle, **kw) -> openai.OpenAI:
    import openai

    kw.setdefault("max_retries", 0)
    return openai.OpenAI(base_url=handle.base_url, api_key="sk-test", **kw)


def raw_stream(handle, body: dict, headers: dict | None = None) -> list[dict]:
    """POST a streaming request and return every event, each validated strictly by the SDK."""
    from openai.types.responses import ResponseStreamEvent

    r = httpx.post(f"{handle.base_url}/responses", json={**body, "stream": True}, headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    events = []
    for name, data in sse_events(r.text):
        event = json.loads(data)
        assert name == event["type"]
        validate(ResponseStreamEvent, event)
        events.append(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def types(events) -> list[str]:
    return [e["type"] for e in events]


def shape(kinds: list[str]) -> list[str]:
    """Collapse runs and immediately repeated blocks (N deltas, N summary parts) to one."""
    out = list(kinds)
    changed = True
    while changed:
        changed = False
        for k in range(1, 6):
            i = 0
            while i + 2 * k <= len(out):
                if out[i : i + k] == out[i + k : i + 2 * k]:
                    del out[i + k : i + 2 * k]
                    changed = True
                else:
                    i += 1
    return out


# -- plain SDK use ------------------------------------------------------------------------------


@pytest.mark.slow
def test_non_stream_response_object_is_strictly_valid(sim):
    from openai.types.responses import Response

    r = httpx.post(f"{sim.base_url}/responses", json={"model": "gpt-sim", "input": "hello"}, timeout=10)
    assert r.status_code == 200
    resp = validate(Response, r.json())
    assert resp.output_text == "You said: hello"
    assert resp.status == "completed" and resp.usage.total_tokens > 0
    assert resp.id.startswith("resp_") and len(resp.id) == 55
    sdk = client(sim).responses.create(model="gpt-sim", input="hello")
    assert sdk.output_text == "You said: hello"


def test_stream_text_events(sim):
    events = raw_stream(sim, {"model": "gpt-sim", "input": [{"role": "user", "content": "one two three"}]})
    assert shape(types(events)) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text == "You said: one two three"
    assert events[-1]["response"]["usage"]["output_tokens"] > 0
    with client(sim).responses.create(model="gpt-sim", input="hi", stream=True) as stream:
        got = [e.type for e in stream]
    assert got[-1] == "response.completed"


def test_stream_tool_calls_single_and_parallel(sim):
    events = raw_stream(sim, {"model": "m", "input": 'call get_time {"tz": "UTC"}', "tools": [TOOL, TOOL2]})
    calls = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert [(c["type"], c["name"], json.loads(c["arguments"])) for c in calls] == [("function_call", "get_time", {"tz": "UTC"})]
    args = "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta")
    assert json.loads(args) == {"tz": "UTC"}
    assert calls[0]["call_id"].startswith("call_") and calls[0]["id"].startswith("fc_")

    events = raw_stream(sim, {"model": "m", "input": "get_time and get_date please", "tools": [TOOL, TOOL2]})
    added = [e for e in events if e["type"] == "response.output_item.added"]
    assert [(e["output_index"], e["item"]["name"]) for e in added] == [(0, "get_time"), (1, "get_date")]
    final = events[-1]["response"]
    assert [o["name"] for o in final["output"]] == ["get_time", "get_date"]


def test_reasoning_summary_events(sim):
    events = raw_stream(sim, {"model": "m", "input": "think", "reasoning": {"effort": "low", "summary": "auto"}})
    kinds = shape(types(events))
    assert kinds[2:9] == [
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
    ]
    final = events[-1]["response"]
    assert [o["type"] for o in final["output"]] == ["reasoning", "message"]
    assert final["usage"]["output_tokens_details"]["reasoning_tokens"] > 0
    # effort without summary: a reasoning item with an empty summary, no summary events
    events = raw_stream(sim, {"model": "m", "input": "think", "reasoning": {"effort": "low"}})
    assert "response.reasoning_summary_text.delta" not in types(events)
    assert events[-1]["response"]["output"][0] == {"id": events[2]["item"]["id"], "type": "reasoning", "summary": []}


def test_tool_results_map_call_ids_to_names(sim):
    items = [
        {"role": "user", "content": "capital?"},
        {"type": "function_call", "call_id": "call_A", "name": "get_capital", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_A", "output": "Paris"},
        {"type": "function_call_output", "call_id": "call_unknown", "output": [{"type": "input_text", "text": "x"}]},
    ]
    r = client(sim).responses.create(model="m", input=items)
    assert r.output_text == "Tool get_capital returned: Paris. Tool call_unknown returned: x."


def test_max_output_tokens_gives_incomplete(sim):
    long = " ".join(["word"] * 200)
    events = raw_stream(sim, {"model": "m", "input": long, "max_output_tokens": 16})
    assert events[-1]["type"] == "response.incomplete"
    resp = events[-1]["response"]
    assert resp["incomplete_details"] == {"reason": "max_output_tokens"}
    assert resp["output"][0]["status"] == "incomplete"
    assert resp["usage"]["output_tokens"] <= 16


# -- the same kind of turn as the recorded real streams -------------------------------------------

RECORDED = {
    "responses_sse_text_01": None,
    "responses_sse_text_after_tool_01": None,
    "responses_sse_tool_01": [{"tool_calls": [{"name": "get_capital", "arguments": {"country": "France"}}]}],
    "responses_sse_tool_parallel_01": [
        {"tool_calls": [
            {"name": "secret_retrieval_tool", "arguments": {"password": "mellon"}},
            {"name": "secret_retrieval_tool", "arguments": {"password": "radiance"}},
        ]}
    ],
    "responses_sse_reasoning_01": [{"reply": "3", "reasoning": "Counting primes that contain 79."}],
    "responses_sse_incomplete_01": [{"reply": "Sure! Here is a list of all 50 U.S. states: " + "Alabama, " * 80}],
}


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_event_sequence_matches_recorded(name, make_sim, tmp_path):
    request = json.loads(recording(f"{name}.request.json").read_text())
    real = [e for e, _ in sse_events(recording(f"{name}.sse").read_text())]
    script = None
    if RECORDED[name]:
        script = tmp_path / "script.json"
        script.write_text(json.dumps({"turns": RECORDED[name]}))
    handle = make_sim(script=script)
    ours = types(raw_stream(handle, request))  # the real request body, replayed as is
    assert shape(ours) == shape(real)


# tests/traffic's requests and those read from ../shared (see shared_data.py)
REQUESTS = sorted({p.name.split(".")[0] for p in TRAFFIC.glob("responses_sse_*.request.json")}
                  | {n for n in SHARED_ONLY if n.startswith("responses_sse_")})


@pytest.mark.parametrize("name", REQUESTS)
def test_recorded_requests_are_accepted(name):
    sim_validate.check_responses(json.loads(recording(f"{name}.request.json").read_text()))


# -- validation, and agreement with the SDK's param types ---------------------------------------


@pytest.mark.parametrize(
    "body, param",
    [
        ({"input": "hi"}, "model"),
        ({"model": "m", "input": {"text": "hi"}}, "input"),
        ({"model": "m", "input": 5}, "input"),
        ({"model": "m", "input": [{"role": "wizard", "content": "x"}]}, "input[0].role"),
        ({"model": "m", "input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
        ({"model": "m", "input": "x", "tools": [{"type": "function"}]}, "tools[0].name"),
        ({"model": "m", "input": "x", "max_output_tokens": 5}, "max_output_tokens"),
        ({"model": "m", "input": "x", "stream": "yes"}, "stream"),
    ],
)
def test_invalid_requests_get_400_with_param(sim, body, param):
    r = httpx.post(f"{sim.base_url}/responses", json=body, timeout=10)
    assert r.status_code == 400
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "invalid_request_error" and err["param"] == param
    assert r.headers["x-request-id"].startswith("req_")


def test_malformed_json_body(sim):
    r = httpx.post(f"{sim.base_url}/responses", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "could not parse the JSON body" in r.json()["error"]["message"]


BODIES = [
    {"model": "m", "input": "hi"},
    {"model": "m", "input": [{"role": "user", "content": "hi"}]},
    {"model": "m", "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}]},
    {"model": "m", "input": [{"type": "function_call_output", "call_id": "c", "output": "x"}], "previous_response_id": "resp_1"},
    {"model": "m", "input": "x", "tools": [TOOL], "reasoning": {"effort": "low", "summary": "auto"}, "store": False},
    {"model": "m", "input": {"text": "hi"}},
    {"model": "m", "input": 5},
    {"model": "m", "input": "x", "reasoning": "high"},
    {"model": "m", "input": "x", "tools": "get_time"},
    {"model": "m", "input": "x", "store": "no"},
    {"model": 5, "input": "x"},
]


@pytest.mark.parametrize("body", BODIES)
def test_sim_is_never_more_lenient_than_the_sdk_types(body):
    """What the sim accepts, the SDK's request types accept too (the SDK types are laxer still)."""
    import pydantic
    from openai.types.responses import response_create_params

    try:
        sim_validate.check_responses(body)
        sim_ok = True
    except ApiError:
        sim_ok = False
    try:
        pydantic.TypeAdapter(response_create_params.ResponseCreateParamsNonStreaming).validate_python(body)
        sdk_ok = True
    except pydantic.ValidationError:
        sdk_ok = False
    assert sdk_ok or not sim_ok


# -- previous_response_id over HTTP -------------------------------------------------------------


def test_previous_response_id_http(sim):
    import openai

    c = client(sim)
    first = c.responses.create(model="m", input="remember me")
    second = c.responses.create(model="m", input="and now", previous_response_id=first.id)
    assert second.output_text == "You said: and now" and second.previous_response_id == first.id
    log = [e for e in sim.log if e.get("endpoint") == "/v1/responses"]
    assert log[-1]["body"]["previous_response_id"] == first.id
    unstored = c.responses.create(model="m", input="x", store=False)
    with pytest.raises(openai.BadRequestError) as exc:
        c.responses.create(model="m", input="y", previous_response_id=unstored.id)
    assert exc.value.code == "previous_response_not_found" and exc.value.param == "previous_response_id"
    assert exc.value.message.endswith(f"Previous response with id '{unstored.id}' not found.")


# -- WebSocket mode -----------------------------------------------------------------------------


def ws_turn(conn) -> list:
    """Events of one turn, each validated strictly against the SDK's WebSocket event union."""
    from openai.types.responses.responses_server_event import ResponsesServerEvent

    events = []
    while True:
        raw = conn.recv_bytes()
        event = validate(ResponsesServerEvent, json.loads(raw))
        events.append(event)
        if event.type in ("response.completed", "response.failed", "response.incomplete", "error"):
            return events


def test_ws_chain_with_store_false_and_cache_miss(sim):
    from openai.types.responses.responses_server_event import ResponseWsError

    c = client(sim)
    with c.responses.connect() as conn:
        conn.response.create(model="m", input="first", store=False)
        one = ws_turn(conn)
        assert [e.sequence_number for e in one] == list(range(len(one)))
        rid1 = one[-1].response.id
        conn.response.create(model="m", input="second", store=False, previous_response_id=rid1)
        two = ws_turn(conn)
        assert two[-1].type == "response.completed" and two[-1].response.output_text == "You said: second"
        rid2 = two[-1].response.id
        # an id older than the latest is gone from the connection-local cache
        conn.response.create(model="m", input="x", store=False, previous_response_id=rid1)
        err = ws_turn(conn)[-1]
        assert isinstance(err, ResponseWsError) and err.status == 400
        assert err.error.code == "previous_response_not_found" and err.error.param == "previous_response_id"
        assert err.error.message == f"Previous response with id '{rid1}' not found."
    with c.responses.connect() as conn:  # a new connection has a cold cache
        conn.response.create(model="m", input="third", store=False, previous_response_id=rid2)
        err = ws_turn(conn)[-1]
        assert err.type == "error" and err.error.code == "previous_response_not_found"
        conn.response.create(model="m", input="fresh", store=False)  # the socket stays usable
        assert ws_turn(conn)[-1].type == "response.completed"


def test_ws_store_true_works_across_connections(sim):
    c = client(sim)
    with c.responses.connect() as conn:
        conn.response.create(model="m", input="stored")
        rid = ws_turn(conn)[-1].response.id
    with c.responses.connect() as conn:
        conn.response.create(model="m", input=[{"type": "function_call_output", "call_id": "c1", "output": "ok"}], previous_response_id=rid)
        done = ws_turn(conn)[-1]
        assert done.type == "response.completed" and done.response.output_text == "Tool c1 returned: ok."
    ws_log = [e for e in sim.log if e["kind"] == "ws"]
    assert [e["event"]["type"] for e in ws_log] == ["response.create", "response.create"]
    assert ws_log[0]["conn"] != ws_log[1]["conn"] and ws_log[0]["endpoint"] == "/v1/responses"


def test_ws_rejects_bad_events_but_stays_open(sim):
    with client(sim).responses.connect() as conn:
        for bad, code, param in [
            ({"type": "response.create", "model": "m", "input": "x", "stream": True}, "unknown_parameter", "stream"),
            ({"type": "response.create", "model": "m", "input": "x", "background": True}, "unsupported_parameter", "background"),
            ({"type": "response.frobnicate"}, "invalid_value", "type"),
            ({"type": "response.create", "input": "x"}, "missing_required_parameter", "model"),
        ]:
            conn.send_raw(json.dumps(bad))
            err = ws_turn(conn)[-1]
            assert err.type == "error" and (err.error.code, err.error.param) == (code, param)
            assert err.error.type == "invalid_request_error" and err.status == 400
        conn.send_raw("{broken json")
        assert ws_turn(conn)[-1].type == "error"
        conn.response.create(model="m", input="still here")
        assert ws_turn(conn)[-1].response.output_text == "You said: still here"


def test_ws_stream_id_and_generate_false(sim):
    with client(sim).responses.connect() as conn:
        conn.response.create(model="m", input="warm", generate=False, stream_id="lane1")
        events = ws_turn(conn)
        assert {e.stream_id for e in events} == {"lane1"}
        assert events[-1].response.output == []
        conn.response.create(model="m", input="go", previous_response_id=events[-1].response.id, store=False)
        assert ws_turn(conn)[-1].response.output_text == "You said: go"


def test_ws_connection_limit(make_sim):
    from openai.types.responses.responses_server_event import ResponsesServerEvent

    handle = make_sim(ws_max_age=0.05)
    with client(handle).responses.connect() as conn:
        time.sleep(0.1)
        conn.response.create(model="m", input="late")
        err = validate(ResponsesServerEvent, json.loads(conn.recv_bytes()))
        assert err.type == "error" and err.error.code == "websocket_connection_limit_reached"
        with pytest.raises(Exception):
            conn.recv_bytes()  # then the server closes the socket


# -- faults on the Responses front ----------------------------------------------------------------


def fault_stream(handle, spec: str, body: dict | None = None) -> httpx.Response:
    body = body or {"model": "m", "input": "one two three four five"}
    return httpx.post(f"{handle.base_url}/responses", json={**body, "stream": True}, headers={"x-sim-fault": spec}, timeout=10)


@pytest.mark.slow
def test_fault_429_once_then_sdk_retry_succeeds(sim):
    c = client(sim, max_retries=2, default_headers={"x-sim-fault": "status=429; retry_after_ms=1500; times=1"})
    assert c.responses.create(model="m", input="hi").output_text == "You said: hi"
    first, second = [e for e in sim.log if e.get("endpoint") == "/v1/responses"]
    # honoured retry-after-ms: the SDK's own first backoff is at most 0.5 s (a lower bound holds on a busy machine)
    assert second["time"] - first["time"] >= 1.5
    r = httpx.post(f"{sim.base_url}/responses", json={"model": "m", "input": "x"}, headers={"x-sim-fault": "status=429; retry_after=2"})
    assert r.status_code == 429 and r.headers["retry-after"] == "2"
    assert r.json()["error"]["code"] == "rate_limit_exceeded"


@pytest.mark.parametrize("spec, status, exc", [  # exc: the name of the openai exception class
    ("quota", 429, "RateLimitError"),
    ("status=500", 500, "InternalServerError"),
    ("status=503", 503, "InternalServerError"),
])
def test_fault_status(sim, spec, status, exc):
    import openai

    c = client(sim, default_headers={"x-sim-fault": spec})
    with pytest.raises(getattr(openai, exc)) as info:
        c.responses.create(model="m", input="hi", stream=True)
    assert info.value.status_code == status
    if spec == "quota":
        assert info.value.code == "insufficient_quota" and info.value.type == "insufficient_quota"


def test_fault_latency_and_delta_delay(sim):
    t0 = time.monotonic()
    with httpx.stream("POST", f"{sim.base_url}/responses", json={"model": "m", "input": "a b c", "stream": True},
                      headers={"x-sim-fault": "latency=0.3; delta_delay=0.02"}) as r:
        first = time.monotonic()
        lines = list(r.iter_lines())
        last = time.monotonic()
    assert first - t0 >= 0.3
    events = [l for l in lines if l.startswith("event:")]
    assert last - first >= 0.02 * (len(events) - 2)


def test_fault_drop_after_n_events(sim):
    import openai

    with httpx.stream("POST", f"{sim.base_url}/responses", json={"model": "m", "input": "a b c", "stream": True},
                      headers={"x-sim-fault": "drop=3"}) as r:
        got = []
        with pytest.raises(httpx.RemoteProtocolError):
            for line in r.iter_lines():
                got.append(line)
    assert len([l for l in got if l.startswith("event:")]) == 3
    with pytest.raises(openai.APIConnectionError):
        with client(sim, default_headers={"x-sim-fault": "drop=3"}).responses.create(model="m", input="x", stream=True) as s:
            list(s)


def test_fault_malformed_and_unknown_events(sim):
    r = fault_stream(sim, "malformed=2")
    frames = sse_events(r.text)
    bad = [d for _, d in frames if not d.startswith("{") or not d.endswith("}")]
    assert len(bad) == 1
    with pytest.raises(json.JSONDecodeError):
        with client(sim, default_headers={"x-sim-fault": "malformed=2"}).responses.create(model="m", input="x", stream=True) as s:
            list(s)
    r = fault_stream(sim, "unknown=3")
    kinds = [e for e, _ in sse_events(r.text)]
    assert kinds[3] == "response.sim_unknown_event" and kinds[-1] == "response.completed"
    seq = [json.loads(d)["sequence_number"] for _, d in sse_events(r.text)]
    assert seq == list(range(len(seq)))


def test_fault_stall(sim):
    t0 = time.monotonic()
    r = fault_stream(sim, "stall=0.4; after=2")
    assert time.monotonic() - t0 >= 0.4 and sse_events(r.text)[-1][0] == "response.completed"


def test_fault_midstream_error_flat_and_nested(sim):
    import openai
    from openai.types.responses import ResponseStreamEvent

    r = fault_stream(sim, "error=flat; after=3")
    frames = [json.loads(d) for _, d in sse_events(r.text)]
    assert [f["type"] for f in frames[-2:]] == ["error", "response.failed"]
    validate(ResponseStreamEvent, frames[-2])  # the flat shape is the SDK's ResponseErrorEvent
    assert frames[-2]["code"] == "server_error"
    r = fault_stream(sim, "error=nested; after=3")
    frames = [json.loads(d) for _, d in sse_events(r.text)]
    nested = frames[-2]
    assert nested["error"]["code"] == "rate_limit_exceeded" and "headers" in nested["error"]
    assert frames[-1]["response"]["status"] == "failed"
    with pytest.raises(openai.APIError):  # the SDK raises on an `error` event carrying an `error` object
        with client(sim, default_headers={"x-sim-fault": "error=nested"}).responses.create(model="m", input="x", stream=True) as s:
            list(s)


def test_fault_failed_and_incomplete(sim):
    events = raw_stream(sim, {"model": "m", "input": "x"}, headers={"x-sim-fault": "failed"})
    assert events[-1]["type"] == "response.failed" and events[-1]["response"]["error"]["code"] == "server_error"
    events = raw_stream(sim, {"model": "m", "input": "a b c d e f g h i j k l m n o p"}, headers={"x-sim-fault": "incomplete"})
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"]["reason"] == "max_output_tokens"


def test_ws_faults_close_and_drop(sim):
    import websockets.sync.client as wsc

    url = sim.base_url.replace("http", "ws") + "/responses"
    create = json.dumps({"type": "response.create", "model": "m", "input": "a b c"})
    with wsc.connect(url, additional_headers={"x-sim-fault": "close=4000; after=2"}) as ws:
        ws.send(create)
        assert json.loads(ws.recv())["type"] == "response.created"
        ws.recv()
        with pytest.raises(websockets.exceptions.ConnectionClosed) as info:
            ws.recv()
        assert info.value.rcvd.code == 4000
    with wsc.connect(url, additional_headers={"x-sim-fault": "drop=1"}) as ws:
        ws.send(create)
        ws.recv()
        with pytest.raises(websockets.exceptions.ConnectionClosed) as info:
            ws.recv()
        assert info.value.rcvd is None  # no close frame: 1006
    # a status fault on the header refuses the handshake
    with pytest.raises(websockets.exceptions.InvalidStatus) as info:
        wsc.connect(url, additional_headers={"x-sim-fault": "status=429; retry_after=1"})
    assert info.value.response.status_code == 429


def test_ws_status_fault_from_header_counts_per_turn(sim):
    import websockets.sync.client as wsc
    from openai.types.responses.responses_server_event import ResponseWsError

    url = sim.base_url.replace("http", "ws") + "/responses"
    create = json.dumps({"type": "response.create", "model": "m", "input": "x"})
    with wsc.connect(url, additional_headers={"x-sim-fault": "error=nested; after=2; times=1"}) as ws:
        ws.send(create)
        seen = []
        while not seen or seen[-1]["type"] not in ("response.failed", "response.completed"):
            seen.append(json.loads(ws.recv()))
        err = next(e for e in seen if e["type"] == "error")
        validate(ResponseWsError, err)
        assert err["status"] == 429
        ws.send(create)  # times=1: the second turn is clean
        while json.loads(ws.recv())["type"] != "response.completed":
            pass


# -- scripts ---------------------------------------------------------------------------------


def test_script_turns_in_order_then_brain(make_sim, tmp_path, traffic_dir):
    import openai

    (tmp_path / "rec").mkdir()
    recorded = (traffic_dir / "responses_sse_text_01.sse").read_bytes()
    (tmp_path / "rec" / "text.sse").write_bytes(recorded)
    script = tmp_path / "s.json"
    script.write_text(json.dumps({"turns": [
        {"reply": "Scripted hello."},
        {"tool_calls": [{"name": "get_time", "arguments": {"tz": "UTC"}, "call_id": "call_fixed"}]},
        {"fault": {"status": 503}},
        {"reply": "slow", "fault": "latency=0.2"},
        {"replay": "rec/text.sse"},
    ]}))
    handle = make_sim(script=script)
    c = client(handle)
    assert c.responses.create(model="m", input="x").output_text == "Scripted hello."
    call = c.responses.create(model="m", input="x", tools=[TOOL]).output[0]
    assert (call.name, call.call_id, json.loads(call.arguments)) == ("get_time", "call_fixed", {"tz": "UTC"})
    with pytest.raises(openai.InternalServerError):
        c.responses.create(model="m", input="x")
    t0 = time.monotonic()
    assert c.responses.create(model="m", input="x").output_text == "slow"
    assert time.monotonic() - t0 >= 0.2
    r = httpx.post(f"{handle.base_url}/responses", json={"model": "m", "input": "x", "stream": True})
    assert r.content == recorded  # replayed verbatim
    assert c.responses.create(model="m", input="back to brain").output_text == "You said: back to brain"


def test_script_toml_and_ws(make_sim, tmp_path):
    script = tmp_path / "s.toml"
    script.write_text('[[turns]]\nreply = "from toml"\n\n[[turns]]\nfault = { status = 429, retry_after_ms = 5 }\n')
    handle = make_sim(script=script)
    with client(handle).responses.connect() as conn:
        conn.response.create(model="m", input="x")
        assert ws_turn(conn)[-1].response.output_text == "from toml"
        conn.response.create(model="m", input="x")
        err = ws_turn(conn)[-1]
        assert err.status == 429 and err.error.code == "rate_limit_exceeded"
        assert err.error.headers == {"retry-after-ms": "5"}
