"""`voicecli infer` end to end: the real CLI as a subprocess against the simulator, per transport."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from clihelp import cli_env, run_cli
from voicecli.sim.config import SimConfig
from voicecli.sim.server import start_in_thread

TRANSPORTS = ["ws", "sse", "chat"]


@pytest.fixture
def sim():
    handle = start_in_thread(SimConfig())
    yield handle
    handle.stop()


@pytest.fixture
def home(tmp_path):
    return tmp_path


def infer(home, sim, *args, input=None, fault=None, **env):
    """Run `voicecli infer` against `sim` (the offline profile pointed at the test's simulator)."""
    extra = ["-o", f'connection.headers={{ x-sim-fault = "{fault}" }}'] if fault else []
    return run_cli(home, "infer", "-p", "offline", "--base-url", sim.base_url, *extra, *args, input=input, **env)


def creates(sim):
    """The request bodies the simulator received for model responses, in order."""
    out = []
    for entry in sim.log:
        body = entry.get("event") or entry.get("body")
        if isinstance(body, dict) and ("input" in body or "messages" in body):
            out.append(body)
    return out


def attempts(sim):
    """Requests that reached a model endpoint: POSTs, or WebSocket handshakes (each retry reconnects)."""
    return sum(1 for e in sim.log if e.get("kind") == "http"
               and e.get("endpoint") in ("/v1/responses", "/v1/chat/completions"))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_plain_answer_streams_to_stdout(home, sim, transport):
    r = infer(home, sim, "-t", transport, "hello", "world")
    assert (r.code, r.out) == (0, "You said: hello world\n"), r.err
    assert r.err == ""


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_piped_stdin_comes_first_then_a_blank_line_then_the_prompt(home, sim, transport):
    r = infer(home, sim, "-t", transport, "summarise", input="line one\nline two\n")
    assert r.code == 0, r.err
    assert r.out == "You said: line one\nline two\n\nsummarise\n"


def test_file_attachment_and_no_prompt(home, sim, tmp_path):
    notes = tmp_path / "notes.md"
    notes.write_text("alpha beta\n")
    r = infer(home, sim, "-f", str(notes), "what is this?")
    assert r.code == 0 and "File `notes.md`:" in r.out and "alpha beta" in r.out and r.out.rstrip().endswith("what is this?")
    r = infer(home, sim)
    assert r.code == 2 and "no prompt" in r.err
    r = infer(home, sim, "-f", str(tmp_path / "missing.txt"), "x")
    assert r.code == 2 and "cannot attach" in r.err


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_json_output(home, sim, transport):
    r = infer(home, sim, "-t", transport, "--json", "hi")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["text"] == "You said: hi"
    assert (data["transport"], data["status"], data["incomplete_reason"]) == (transport, "completed", None)
    assert data["usage"]["output_tokens"] > 0 and data["usage"]["input_tokens"] > 0
    assert data["timings"]["total_ms"] >= data["timings"]["ttft_ms"] > 0
    assert data["response_id"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_events_are_json_lines(home, sim, transport):
    r = infer(home, sim, "-t", transport, "--events", "one two three")
    assert r.code == 0, r.err
    events = [json.loads(line) for line in r.out.splitlines()]
    kinds = [e["type"] for e in events]
    assert kinds[-1] == "turn_end" and "usage" in kinds
    assert "".join(e["text"] for e in events if e["type"] == "text_delta") == "You said: one two three"
    assert sum(k == "text_delta" for k in kinds) > 1  # streamed, not one lump


def test_usage_summary_goes_to_stderr(home, sim):
    r = infer(home, sim, "-u", "hi")
    assert r.code == 0 and r.out == "You said: hi\n"
    assert "over ws" in r.err and " in (" in r.err and "first token" in r.err


@pytest.mark.slow
def test_continue_replays_the_conversation(home, sim):
    assert infer(home, sim, "first").code == 0
    r = infer(home, sim, "-c", "second", "--json")
    assert r.code == 0
    bodies = creates(sim)
    assert len(bodies) == 2
    second_input = bodies[1]["input"]
    texts = json.dumps(second_input)
    assert "first" in texts and "You said: first" in texts and "second" in texts  # full history on a new socket
    cid = json.loads(r.out)["cid"]
    r = infer(home, sim, "--cid", cid, "third", "-t", "chat")
    assert r.code == 0
    assert [m["role"] for m in creates(sim)[2]["messages"]] == ["user", "assistant", "user", "assistant", "user"]
    assert infer(home, sim, "--cid", "nope-123", "x").code == 3


# ---- failures and recovery -------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_429_then_success_is_retried(home, sim, transport):
    r = infer(home, sim, "-t", transport, "hi", fault="status=429; retry_after_ms=50; times=1")
    assert (r.code, r.out) == (0, "You said: hi\n"), r.err
    assert attempts(sim) == 2


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.slow
def test_500_exhausting_retries_exits_7(home, sim, transport):
    r = infer(home, sim, "-t", transport, "-o", "connection.max_retries=2", "hi", fault="status=500")
    assert r.code == 7, r.err
    assert "server error from" in r.err and "(500" in r.err and "retried 2 times" in r.err
    assert "Traceback" not in r.err
    assert attempts(sim) == 3


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_insufficient_quota_is_not_retried(home, sim, transport):
    r = infer(home, sim, "-t", transport, "hi", fault="quota")
    assert r.code == 5, r.err
    assert "insufficient_quota" in r.err and "retried" not in r.err
    assert attempts(sim) == 1


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_mid_stream_rate_limit_error_exits_5(home, sim, transport):
    r = infer(home, sim, "-t", transport, "a b c d e f", fault="error=nested; code=rate_limit_exceeded; after=5")
    assert r.code == 5, r.err


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_connection_drop_mid_stream_keeps_partial_text_and_exits_6(home, sim, transport):
    r = infer(home, sim, "-t", transport, "w1 w2 w3 w4 w5 w6 w7 w8 w9", fault="drop=8")
    assert r.code == 6, r.err
    assert r.out.startswith("You ") and "w9" not in r.out  # what arrived is kept, nothing invented
    assert "network error" in r.err


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_connection_drop_before_output_is_retried(home, sim, transport):
    r = infer(home, sim, "-t", transport, "hi", fault="drop=1; times=1")
    assert (r.code, r.out) == (0, "You said: hi\n"), r.err


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_malformed_event_is_skipped(home, sim, transport):
    r = infer(home, sim, "-t", transport, "hi there", fault="malformed=3; unknown=4")
    assert r.code == 0, r.err
    assert r.out == "You said: hi there\n"
    assert "malformed" in r.err


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.slow
def test_stall_beyond_read_timeout_exits_6(home, sim, transport):
    start = time.monotonic()
    r = infer(home, sim, "-t", transport, "-o", "connection.read_timeout=0.5", "-o", "connection.max_retries=0",
              "a b c d e f", fault="stall=60; after=4")
    assert r.code == 6, r.err
    assert "no data from" in r.err
    assert time.monotonic() - start < 30  # the timeout ended it, not the stall (however busy the machine)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_incomplete_answer_is_printed_and_exits_8(home, sim, transport):
    r = infer(home, sim, "-t", transport, "hi", fault="incomplete")
    assert r.code == 8, r.err
    assert r.out.startswith("You")
    assert "incomplete" in r.err


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_response_failed_exits_7(home, sim, transport):
    r = infer(home, sim, "-t", transport, "hi", fault="failed")
    assert r.code == 7, r.err


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.slow
def test_wrong_key_exits_4_and_never_prints_the_key(home, transport):
    handle = start_in_thread(SimConfig(api_key="sk-right"))
    try:
        (home / "profiles").mkdir(exist_ok=True)
        (home / "profiles" / "k.toml").write_text(
            f'[connection]\nbase_url = "{handle.base_url}"\napi_key_env = "K"\ntransport = "{transport}"\n')
        r = run_cli(home, "infer", "-p", "k", "hi", K="sk-wrong-and-secret")
        assert r.code == 4, r.err
        assert "sk-wrong-and-secret" not in r.out + r.err
        assert "authentication failed" in r.err
        r = run_cli(home, "infer", "-p", "k", "hi", K="sk-right")
        assert (r.code, r.out) == (0, "You said: hi\n")
        r = run_cli(home, "infer", "-p", "k", "hi")  # not OpenAI's URL: asked without a key, then told
        assert r.code == 4 and "hint: this server wants an API key and none was sent: export K=" in r.err
    finally:
        handle.stop()


def model_requests(sim):
    return [e for e in sim.log if e.get("kind") == "http" and e.get("endpoint") in
            ("/v1/responses", "/v1/chat/completions", "/v1/models")]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_server_that_is_not_openais_is_asked_without_a_key(home, sim, transport):
    """issue #23: the README's Ollama line exited 3 'OPENAI_API_KEY is not set'."""
    r = run_cli(home, "infer", "-t", transport, "--base-url", sim.base_url, "hi")  # the default profile, no key
    assert (r.code, r.out) == (0, "You said: hi\n"), r.err
    r = run_cli(home, "infer", "-t", transport, "hi", OPENAI_BASE_URL=sim.base_url)
    assert (r.code, r.out) == (0, "You said: hi\n"), r.err
    assert len(model_requests(sim)) == 2
    assert all(e["credentials"] == [] for e in model_requests(sim))  # no Authorization header at all


def test_openais_own_url_still_needs_the_key(home):
    r = run_cli(home, "infer", "--base-url", "https://api.openai.com/v1/", "hi")
    assert r.code == 3 and "OPENAI_API_KEY is not set; profile 'default'" in r.err


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_401_to_a_request_without_a_key_names_the_variable(home, make_sim, transport):
    secret = "sk-local-server-secret-0123"
    sim = make_sim(api_key=secret)
    r = run_cli(home, "infer", "-t", transport, "--base-url", sim.base_url, "hi")
    assert r.code == 4 and r.out == ""
    assert r.err.startswith("voicecli: authentication failed at http://127.0.0.1:")
    hint = ("  hint: this server wants an API key and none was sent: export OPENAI_API_KEY=…, or voicecli keys set "
            "OPENAI_API_KEY (profile 'default' reads it)")
    assert r.err.splitlines()[1:] == [hint]  # said once, not retried
    assert len(model_requests(sim)) == 1 and model_requests(sim)[0]["credentials"] == []
    r = run_cli(home, "infer", "-t", transport, "--base-url", sim.base_url, "hi", OPENAI_API_KEY=secret)
    assert (r.code, r.out) == (0, "You said: hi\n") and secret not in r.err
    assert model_requests(sim)[-1]["credentials"] == ["authorization"]
    assert secret not in json.dumps(sim.log)


@pytest.mark.slow
def test_a_401_hint_in_models_chat_and_a_profile_that_sends_no_key(home, make_sim):
    sim = make_sim(api_key="sk-local-server-secret-0123")
    r = run_cli(home, "models", "--base-url", sim.base_url)
    assert r.code == 4 and "hint: this server wants an API key and none was sent: export OPENAI_API_KEY=" in r.err
    r = run_cli(home, "chat", "--base-url", sim.base_url, input="hi\n")
    assert r.err.count("hint: this server wants an API key and none was sent: export OPENAI_API_KEY=") == 1
    r = run_cli(home, "infer", "-p", "compatible", "--base-url", sim.base_url, "hi")
    assert r.code == 4 and ("hint: this server wants an API key and profile 'compatible' sends none "
                            '(api_key_env = ""): set connection.api_key_env') in r.err
    assert all(e["credentials"] == [] for e in model_requests(sim))


def test_unreachable_server_exits_6(home):
    r = run_cli(home, "infer", "-p", "offline", "--base-url", "http://127.0.0.1:9/v1", "-t", "sse",
                "-o", "connection.max_retries=0", "hi")
    assert r.code == 6 and "network error" in r.err


def free_port() -> int:
    """A port nothing listens on: bound, read, closed."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_nothing_listening_on_loopback_fails_at_once(home, transport, host):
    """issue #23: a refused connection to this machine was retried twice (1.7 s) before failing."""
    port = free_port()
    url = f"http://{host}:{port}/v1"
    line = f"voicecli: network error talking to {url}: nothing is listening on {host}:{port} — is the server running?\n"
    r = run_cli(home, "infer", "-t", transport, "--base-url", url, "hi")
    assert (r.code, r.out, r.err) == (6, "", line)  # after retries the line would say "retried 2 times"
    r = run_cli(home, "models", "--base-url", url)
    assert (r.code, r.out, r.err) == (6, "", line)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.slow
def test_ctrl_c_keeps_partial_text_and_exits_130(home, sim, transport):
    words = " ".join(f"w{i}" for i in range(200))
    proc = subprocess.Popen(
        [sys.executable, "-m", "voicecli", "infer", "-p", "offline", "--base-url", sim.base_url, "-t", transport,
         "-o", 'connection.headers={ x-sim-fault = "delta_delay=0.02" }', words],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=cli_env(home))
    first = b""
    while len(first) < 24:  # wait until text is flowing
        chunk = os.read(proc.stdout.fileno(), 64)
        assert chunk, proc.stderr.read()
        first += chunk
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    out = first + out
    assert proc.returncode == 130, err
    assert out.startswith(b"You said: w0") and b"w199" not in out
    assert b"interrupted" in err and b"Traceback" not in err
    log = next((home / "conversations").glob("*.jsonl")).read_text()
    assert '"interrupted": true' in log  # the partial answer is kept in the conversation log too


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_image_attachment(home, sim, tmp_path, transport):
    png = tmp_path / "dot.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 16)
    r = infer(home, sim, "-t", transport, "--image", str(png), "--image", "https://example.invalid/cat.jpg",
              "what is this?")
    assert r.code == 0, r.err
    sent = json.dumps(creates(sim)[0])
    assert "data:image/png;base64,iVBORw0KGgo" in sent and "https://example.invalid/cat.jpg" in sent
    assert ("input_image" if transport != "chat" else "image_url") in sent
    (tmp_path / "notes.txt").write_text("not a picture\n")
    r = infer(home, sim, "--image", str(tmp_path / "notes.txt"), "x")
    assert r.code == 2 and "not a PNG, JPEG, GIF or WEBP image" in r.err


@pytest.mark.parametrize("extra, env, rendered", [([], {}, True), (["--raw"], {}, False),
                                                  ([], {"NO_COLOR": "1"}, False)])
def test_markdown_on_a_terminal_and_raw_on_request(home, tmp_path, extra, env, rendered):
    import pexpect

    script = tmp_path / "md.json"
    script.write_text(json.dumps({"turns": [{"reply": "# Title\n\nSome **bold** text.\n\n```python\nx = 1\n```\n"}]}))
    with start_in_thread(SimConfig(script=script)) as md_sim:
        child = pexpect.spawn(sys.executable, ["-m", "voicecli", "infer", "-p", "offline", "--base-url",
                                               md_sim.base_url, *extra, "hi"],
                              env={**cli_env(home), "TERM": "xterm-256color", **env}, dimensions=(40, 100),
                              encoding="utf-8", timeout=30)
        child.expect(pexpect.EOF)
        child.close()
        out = child.before
    assert child.exitstatus == 0, out
    import re

    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)
    assert "bold" in plain and "x = 1" in plain
    if rendered:
        assert "**bold**" not in out and "```" not in out and "\x1b[" in out
    else:
        assert "**bold**" in out and "```python" in out and "\x1b[" not in out


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_reader_closing_the_pipe_early_stops_quietly(home, sim, transport):
    words = " ".join(f"w{i}" for i in range(300))
    proc = subprocess.Popen(
        [sys.executable, "-m", "voicecli", "infer", "-p", "offline", "--base-url", sim.base_url, "-t", transport,
         "-o", 'connection.headers={ x-sim-fault = "delta_delay=0.01" }', words],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=cli_env(home))
    assert os.read(proc.stdout.fileno(), 16).startswith(b"You")
    proc.stdout.close()  # like `| head -c 16`
    err = proc.stderr.read()
    assert proc.wait(timeout=20) == 0
    assert err == b""  # no traceback, no "Task was destroyed" noise
