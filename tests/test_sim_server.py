"""The simulator's server: lifecycle, auth, request ids, the log, faults and scripts in general.

The tests that use the openai SDK import it themselves: importing openai at the top would cost each
xdist worker ~0.8 s of CPU at collection."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
import websockets
import websockets.sync.client as wsc

from voicecli.sim.config import SimConfig
from voicecli.sim.faults import FaultCounter, FaultSpecError, parse
from voicecli.sim.script import Script, ScriptError
from voicecli.sim.server import Simulator, serve, start_in_thread

KEY = "sk-sim-secret-0123456789"


def test_starts_and_stops_without_leaking_threads():
    # start-up time is measured in bench/sim.py, not asserted here
    before = set(threading.enumerate())
    handle = start_in_thread(SimConfig())
    assert handle.base_url.startswith("http://127.0.0.1:") and handle.base_url.endswith("/v1")
    assert httpx.post(f"{handle.base_url}/responses", json={"model": "m", "input": "x"}).status_code == 200
    handle.stop()
    time.sleep(0.05)
    assert set(threading.enumerate()) <= before


@pytest.mark.slow
def test_stop_with_open_websocket_and_stalled_stream():
    handle = start_in_thread(SimConfig())
    url = handle.base_url.replace("http", "ws") + "/responses"
    stalled_done = threading.Event()

    def stalled():
        try:
            httpx.post(f"{handle.base_url}/responses", json={"model": "m", "input": "x", "stream": True},
                       headers={"x-sim-fault": "stall=30"}, timeout=10)
        except httpx.HTTPError:
            pass
        stalled_done.set()

    with wsc.connect(url) as ws:
        t = threading.Thread(target=stalled)
        t.start()
        deadline = time.monotonic() + 10  # until the stalled stream is under way
        while not any(e.get("method") == "POST" for e in list(handle.log)):
            assert time.monotonic() < deadline, "the stalled request never arrived"
            time.sleep(0.01)
        t0 = time.monotonic()
        handle.stop()
        assert time.monotonic() - t0 < 15  # not the stream's 30 s stall (wall time: however busy the machine)
        with pytest.raises(websockets.exceptions.ConnectionClosed):
            ws.recv(timeout=2)
    assert stalled_done.wait(5)
    t.join()


def test_request_id_on_every_response(sim):
    ok = httpx.post(f"{sim.base_url}/responses", json={"model": "m", "input": "x"})
    bad = httpx.post(f"{sim.base_url}/responses", json={"input": "x"})
    missing = httpx.get(f"{sim.base_url}/nope")
    ids = [r.headers["x-request-id"] for r in (ok, bad, missing)]
    assert all(i.startswith("req_") and len(i) == 36 for i in ids) and len(set(ids)) == 3
    with wsc.connect(sim.base_url.replace("http", "ws") + "/responses") as ws:
        assert ws.response.headers["x-request-id"].startswith("req_")


def test_unknown_path_is_404_in_real_shape(sim):
    r = httpx.post(f"{sim.base_url}/embeddings", json={})
    assert r.status_code == 404
    assert r.json() == {"error": {"message": "Invalid URL (POST /v1/embeddings)", "type": "invalid_request_error", "param": None, "code": None}}


def test_401_shapes_match_recorded(make_sim, traffic_dir):
    import openai

    handle = make_sim(api_key=KEY)
    real = json.loads((traffic_dir / "responses_http_error_401_01.json").read_text())
    r = httpx.post(f"{handle.base_url}/responses", json={"model": "m", "input": "x", "stream": True},
                   headers={"authorization": "Bearer invalid-key-12345"})
    assert r.status_code == 401
    got = r.json()
    assert got == real  # same key → the same masked text as the real capture
    r = httpx.post(f"{handle.base_url}/chat/completions", json={"model": "m", "messages": []})
    assert r.status_code == 401 and r.json()["error"]["message"].startswith("You didn't provide an API key.")
    assert r.headers["x-request-id"].startswith("req_")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=handle.base_url, api_key="wrong", max_retries=0).responses.create(model="m", input="x")
    ok = openai.OpenAI(base_url=handle.base_url, api_key=KEY, max_retries=0).responses.create(model="m", input="x")
    assert ok.output_text == "You said: x"
    # WebSocket upgrades are refused the same way
    url = handle.base_url.replace("http", "ws") + "/responses"
    with pytest.raises(websockets.exceptions.InvalidStatus) as info:
        wsc.connect(url, additional_headers={"authorization": "Bearer nope"})
    assert info.value.response.status_code == 401
    with wsc.connect(url, additional_headers={"authorization": f"Bearer {KEY}"}) as ws:
        ws.send(json.dumps({"type": "response.create", "model": "m", "input": "x"}))
        assert json.loads(ws.recv())["type"] == "response.created"
    # the key is never recorded
    log_text = httpx.get(handle.base_url.replace("/v1", "/_sim/log")).text
    assert KEY not in log_text and "invalid-key-12345" not in log_text
    assert all("authorization" not in e.get("headers", {}) for e in handle.log)


def test_sim_log_and_reset_endpoints(sim):
    root = sim.base_url[: -len("/v1")]
    httpx.post(f"{sim.base_url}/responses", json={"model": "m", "input": "logged"}, headers={"x-custom": "1"})
    with wsc.connect(sim.base_url.replace("http", "ws") + "/responses") as ws:
        ws.send(json.dumps({"type": "response.create", "model": "m", "input": "ws-logged"}))
        while json.loads(ws.recv())["type"] != "response.completed":
            pass
    log = httpx.get(f"{root}/_sim/log").json()
    http = [e for e in log if e["kind"] == "http" and e["method"] == "POST"]
    assert http[0]["endpoint"] == "/v1/responses" and http[0]["body"]["input"] == "logged"
    assert http[0]["headers"]["x-custom"] == "1" and http[0]["request_id"].startswith("req_")
    ws_events = [e for e in log if e["kind"] == "ws"]
    assert ws_events[0]["event"]["input"] == "ws-logged" and ws_events[0]["conn"].startswith("conn_")
    assert ws_events[0]["endpoint"] == "/v1/responses"
    assert httpx.post(f"{root}/_sim/reset").json() == {"ok": True}
    assert httpx.get(f"{root}/_sim/log").json() == []


def test_many_concurrent_connections(sim):
    async def main():
        async with httpx.AsyncClient(base_url=sim.base_url, timeout=10) as c:
            async def one(i):
                r = await c.post("/responses", json={"model": "m", "input": f"n{i}", "stream": True},
                                 headers={"x-sim-fault": "delta_delay=0.01"})
                return r.text.count("event: response.completed")

            async def ws(i):
                async with websockets.connect(sim.base_url.replace("http", "ws") + "/responses") as s:
                    await s.send(json.dumps({"type": "response.create", "model": "m", "input": f"w{i}"}))
                    while json.loads(await s.recv())["type"] != "response.completed":
                        pass
                    return 1

            return await asyncio.gather(*[one(i) for i in range(40)], *[ws(i) for i in range(10)])

    assert sum(asyncio.run(main())) == 50  # all served (each client's timeout, 10 s, bounds the wait)


def test_routes_for_the_other_fronts_are_registered():
    sim = Simulator(SimConfig())
    routes = {(r.method, r.resource.canonical) for r in sim.app.router.routes()}
    for route in [("GET", "/v1/realtime"), ("POST", "/v1/audio/transcriptions"), ("POST", "/v1/audio/speech"),
                  ("POST", "/v1/responses"), ("GET", "/v1/responses"), ("POST", "/v1/chat/completions"),
                  ("GET", "/_sim/log"), ("POST", "/_sim/reset")]:
        assert route in routes


def test_new_id_shapes():
    sim = Simulator(SimConfig())
    assert len(sim.new_id("resp")) == len("resp_") + 50 and sim.new_id("resp").startswith("resp_")
    assert sim.new_id("chatcmpl").startswith("chatcmpl-") and len(sim.new_id("chatcmpl")) == 38
    assert len(sim.new_id("call")) == 29 and len(sim.new_id("event")) == len("event_") + 21
    assert sim.new_id("item_").startswith("item_") and sim.new_id("resp") != sim.new_id("resp")


def test_serve_returns_when_cancelled():
    async def main():
        ready = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(serve(SimConfig(), on_ready=ready.set_result))
        url = await ready
        async with httpx.AsyncClient() as c:
            assert (await c.post(f"{url}/responses", json={"model": "m", "input": "x"})).status_code == 200
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def serve_forever_process(config: str = "") -> tuple[subprocess.Popen, str]:
    """`serve_forever(SimConfig(config))` in a process of its own, as `voicecli sim` runs it; its URL."""
    code = ("import sys\n"
            "from voicecli.sim.server import serve_forever\n"
            "from voicecli.sim.config import SimConfig\n"
            f"serve_forever(SimConfig({config}), on_ready=lambda url: (print(url), sys.stdout.flush()))\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def stop_with_ctrl_c(proc: subprocess.Popen) -> tuple[str, str]:
    try:
        proc.send_signal(signal.SIGINT)
        return proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow
def test_serve_forever_exits_cleanly_on_ctrl_c():
    proc, url = serve_forever_process()
    try:
        assert httpx.post(f"{url}/responses", json={"model": "m", "input": "x"}).status_code == 200
    finally:
        out, err = stop_with_ctrl_c(proc)
    assert proc.returncode == 0 and "Traceback" not in err and out == ""


@pytest.mark.parametrize("path, body", [
    ("/responses", {"model": "m", "input": " ".join(["w"] * 400), "stream": True}),
    ("/chat/completions", {"model": "m", "messages": [{"role": "user", "content": " ".join(["w"] * 400)}], "stream": True}),
])
@pytest.mark.slow
def test_a_client_leaving_mid_stream_is_not_a_traceback(path, body):
    """`voicecli sim` on a terminal: a client's Ctrl-C or barge-in cuts a stream; that is no error."""
    proc, url = serve_forever_process("delta_delay=0.01")
    try:
        with httpx.stream("POST", f"{url}{path}", json=body) as reply:
            next(reply.iter_raw())  # the stream has begun; leave
        time.sleep(0.5)  # the simulator's next writes find the connection gone
        assert httpx.post(f"{url}/responses", json={"model": "m", "input": "x"}).status_code == 200
    finally:
        out, err = stop_with_ctrl_c(proc)
    assert proc.returncode == 0 and "Traceback" not in err and "Error handling request" not in err, err


# -- fault syntax and counting -----------------------------------------------------------------


def test_fault_header_syntax():
    f = parse("status=429; retry_after_ms=100; times=1")
    assert (f.status, f.retry_after_ms, f.times, f.rejects) == (429, 100, 1, True)
    f = parse("error=nested;after=3;delta-delay=0.5;quota")
    assert (f.error, f.after, f.delta_delay, f.quota) == ("nested", 3, 0.5, True)
    assert parse({"drop": 4}).drop == 4 and parse("") is None and parse(None) is None
    assert parse("failed").failed and parse("incomplete=true").incomplete
    for bad in ("nonsense=1", "status=abc", "error=sideways"):
        with pytest.raises(FaultSpecError):
            parse(bad)


def test_fault_times_counted_per_distinct_spec():
    counter = FaultCounter()
    a, b = parse("status=500; times=2"), parse("times=2; status=500")  # same spec, other order
    c = parse("status=503; times=1")
    assert [counter.take(x) is not None for x in (a, b, c, a, c)] == [True, True, True, False, False]
    assert counter.take(parse("status=500")) is not None  # no `times`: always on


def test_bad_fault_header_is_a_400(sim):
    r = httpx.post(f"{sim.base_url}/responses", json={"model": "m", "input": "x"}, headers={"x-sim-fault": "explode"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "x-sim-fault"


def test_script_errors(tmp_path):
    for text, msg in [
        ('{"turns": [{"rpely": "x"}]}', "unknown key"),
        ('{"turns": [{"replay": "missing.sse"}]}', "not found"),
        ('{"turns": [{"fault": "bogus=1"}]}', "unknown fault key"),
        ('{"turns": [{"tool_calls": [{"arguments": {}}]}]}', "tool_calls"),
        ("{nope", "cannot read"),
    ]:
        path = tmp_path / "s.json"
        path.write_text(text)
        with pytest.raises(ScriptError, match=msg):
            Script.load(path)


def test_script_is_shared_across_fronts(make_sim, tmp_path):
    import openai

    path = tmp_path / "s.json"
    path.write_text(json.dumps({"turns": [{"reply": "first"}, {"reply": "second"}]}))
    handle = make_sim(script=path)
    c = openai.OpenAI(base_url=handle.base_url, api_key="k", max_retries=0)
    assert c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}]).choices[0].message.content == "first"
    assert c.responses.create(model="m", input="x").output_text == "second"
    assert handle.sim.script.remaining == 0


def test_config_latency_applies(make_sim):
    handle = make_sim(latency=0.2)
    t0 = time.monotonic()
    httpx.post(f"{handle.base_url}/responses", json={"model": "m", "input": "x"})
    assert time.monotonic() - t0 >= 0.2


def test_nothing_printed_by_start_in_thread(capfd):
    handle = start_in_thread(SimConfig())
    httpx.post(f"{handle.base_url}/responses", json={"model": "m", "input": "x"})
    handle.stop()
    out, err = capfd.readouterr()
    assert out == "" and err == ""
