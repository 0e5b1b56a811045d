"""Issue 13, odd servers and typos: base URLs without a usable scheme, a root without /v1, a
query string on the base URL, a 200 that is not an event stream, a server that accepts and never
answers, and `voicecli sim` with a taken port or a bad script. The real CLI as a subprocess against
the simulator or a tiny fake server on loopback."""

from __future__ import annotations

import os
import pty
import re
import socket
import subprocess
import sys
import threading
import wave
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from clihelp import cli_env, run_cli
from voicecli.transport.urls import endpoint_url
from voicecli.ui.spinner import FRAMES

TRANSPORTS = ["ws", "sse", "chat"]
SECRET = "sk-servers-test-0123456789abcdef"


def infer(home: Path, base_url: str, *args: str, **env: str):
    return run_cli(home, "infer", "-p", "offline", "--base-url", base_url, *args, "hello", **env)


def silence_wav(path: Path, seconds: float = 0.3) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(24000)
        w.writeframes(b"\0\0" * int(24000 * seconds))
    return path


def talk(home: Path, base_url: str, *args: str):
    wav = silence_wav(home / "in.wav")
    return run_cli(home, "talk", "-p", "offline", "--base-url", base_url, "--input", str(wav),
                   "--output", str(home / "out.wav"), *args)


# ---- 13: the base URL ---------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_base_url_without_scheme_is_a_usage_error_with_a_hint_and_no_connection(tmp_path, sim, transport):
    bare = sim.base_url.removeprefix("http://")  # 127.0.0.1:PORT/v1
    r = infer(tmp_path, bare, "-t", transport)
    assert r.code == 2, r.err
    assert r.err.splitlines()[0] == f"voicecli: base URL '{bare}' has no scheme"
    assert f"did you mean http://{bare}?" in r.err and "Traceback" not in r.err
    assert sim.log == []  # nothing was sent, nothing retried


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_base_url_with_an_unsupported_scheme_is_a_usage_error(tmp_path, sim, transport):
    ftp = sim.base_url.replace("http://", "ftp://")
    r = infer(tmp_path, ftp, "-t", transport)
    assert r.code == 2, r.err
    assert r.err.splitlines()[0] == f"voicecli: base URL '{ftp}' has an unsupported scheme 'ftp' (use http or https)"
    assert f"did you mean {sim.base_url}?" in r.err
    r = infer(tmp_path, sim.base_url.replace("http://", "ws://"), "-t", transport)
    assert r.code == 2 and f"did you mean {sim.base_url}?" in r.err
    assert sim.log == []


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_base_url_with_a_host_name_dns_cannot_carry_is_a_usage_error(tmp_path, sim, transport):
    bad = "http://" + "a" * 64 + ".example/v1"  # a label over 63 characters
    r = infer(tmp_path, bad, "-t", transport)
    assert r.code == 2 and f"base URL '{bad}' has an invalid host name" in r.err, r.err


@pytest.mark.slow
def test_talk_checks_the_base_url_too(tmp_path, sim):
    r = talk(tmp_path, "localhost:11434/v1")
    assert r.code == 2, r.err
    assert "has no scheme" in r.err and "did you mean http://localhost:11434/v1?" in r.err
    r = talk(tmp_path, "gopher://example.com/v1")
    assert r.code == 2 and "did you mean https://example.com/v1?" in r.err


def test_a_password_in_the_base_url_is_not_echoed(tmp_path):
    r = run_cli(tmp_path, "infer", "-p", "offline", "--base-url", "user:hunter2@localhost:1/v1", "hi")
    assert r.code == 2 and "hunter2" not in r.err and "//***@localhost:1/v1" in r.err


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_404_from_a_root_without_v1_hints_at_v1(tmp_path, sim, transport):
    root = sim.base_url.removesuffix("/v1")
    r = infer(tmp_path, root, "-t", transport)
    assert r.code == 7, r.err
    assert r.err.splitlines()[0].startswith(f"voicecli: not found at {root} (404")
    assert r.err.splitlines()[1] == f"  hint: most OpenAI-style APIs live under /v1: did you mean --base-url {sim.base_url}?"
    # a path that already has /v1 gets no such hint
    r = infer(tmp_path, sim.base_url + "/nope", "-t", transport)
    assert r.code == 7 and "hint" not in r.err


def test_chat_404_from_a_root_without_v1_hints_at_v1(tmp_path, sim):
    root = sim.base_url.removesuffix("/v1")
    r = run_cli(tmp_path, "chat", "-p", "offline", "--base-url", root, input="hello\n")
    assert "not found at" in r.err, r.err
    assert f"  hint: most OpenAI-style APIs live under /v1: did you mean --base-url {sim.base_url}?" in r.err.splitlines()


def test_no_v1_hint_when_the_server_says_the_model_is_missing():
    from voicecli.events import Error
    from voicecli.ui.status import error_hint

    missing_model = Error("not_found", "The model `x` does not exist", code="model_not_found", status=404)
    assert error_hint(missing_model, "http://h:1") is None
    assert error_hint(Error("not_found", "Not Found", status=404), "http://h:1/openai?api-version=1") == \
        "most OpenAI-style APIs live under /v1: did you mean --base-url http://h:1/openai/v1?api-version=1?"
    assert error_hint(Error("server", "boom", status=500), "http://h:1") is None


def test_talk_404_from_a_root_without_v1_hints_at_v1(tmp_path, sim):
    root = sim.base_url.removesuffix("/v1")
    r = talk(tmp_path, root)
    assert r.code == 7, r.err
    assert f"hint: most OpenAI-style APIs live under /v1: did you mean --base-url {sim.base_url}?" in r.err


def requests_to(sim, endpoint: str) -> list[dict]:
    return [e for e in sim.log if e.get("kind") == "http" and e.get("endpoint") == endpoint]


@pytest.mark.parametrize("transport,endpoint", [("ws", "/v1/responses"), ("sse", "/v1/responses"),
                                                ("chat", "/v1/chat/completions")])
def test_a_query_string_on_the_base_url_is_kept_on_every_request(tmp_path, sim, transport, endpoint):
    r = infer(tmp_path, sim.base_url + "?api-version=2025-04-01-preview", "-t", transport)
    assert (r.code, r.out) == (0, "You said: hello\n"), r.err
    sent = requests_to(sim, endpoint)
    assert len(sent) == 1 and sent[0]["query"] == {"api-version": "2025-04-01-preview"}


@pytest.mark.slow
def test_a_query_string_on_the_base_url_is_kept_by_talk(tmp_path, sim):
    r = talk(tmp_path, sim.base_url + "/?api-version=2025-04-01-preview")
    assert r.code == 0, r.err
    sent = requests_to(sim, "/v1/realtime")
    assert sent and all(e["query"] == {"api-version": "2025-04-01-preview", "model": "sim-realtime"} for e in sent)


def test_endpoint_url_puts_the_path_before_the_query():
    assert endpoint_url("https://x.test/openai/v1/?api-version=1", "/responses") == \
        "https://x.test/openai/v1/responses?api-version=1"
    assert endpoint_url("https://x.test/v1?a=1", "/realtime", {"model": "m 1"}, websocket=True) == \
        "wss://x.test/v1/realtime?a=1&model=m%201"
    assert endpoint_url("http://h:1/v1", "/responses", websocket=True) == "ws://h:1/v1/responses"


# ---- 14: a 200 that is not an event stream -------------------------------------------------------


class FakeServer:
    """A tiny HTTP server on loopback answering every POST with one fixed 200 reply."""

    def __init__(self, content_type: str, body: bytes):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("content-length") or 0))
                outer.auth = self.headers.get("authorization", "")
                reply = body.replace(b"{AUTH}", outer.auth.encode())
                self.send_response(200)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.auth = ""
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


HTML = b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head>\n<body>\x1b]0;owned\x07token {AUTH}</body></html>"
JSON = b'{"id": "chatcmpl-1", "object": "chat.completion", "choices": [{"message": {"content": "hi"}}]}'


@pytest.mark.parametrize("transport", ["sse", "chat"])
@pytest.mark.parametrize("content_type,body,shown", [
    ("text/html; charset=utf-8", HTML, "<!DOCTYPE html> <html><head><title>Sign in</title></head>"),
    ("application/json", JSON, '{"id": "chatcmpl-1", "object": "chat.completion"'),
    ("text/plain", b"", None),
])
def test_a_200_that_is_not_an_event_stream_says_what_came_back(tmp_path, transport, content_type, body, shown):
    fake = FakeServer(content_type, body)
    try:
        r = infer(tmp_path, fake.base_url, "-t", transport, "-o", "connection.api_key_env=SERVERS_TEST_KEY",
                  SERVERS_TEST_KEY=SECRET)
    finally:
        fake.close()
    assert fake.auth == f"Bearer {SECRET}"  # the server did get the key (and echoed it in the HTML)
    assert r.code == 7, r.err
    line = r.err.splitlines()[0]
    assert line.startswith(f"voicecli: unexpected data from {fake.base_url}")
    assert f"expected an event stream (text/event-stream) but the server replied with '{content_type}'" in line
    assert (shown in line) if shown else line.endswith("with an empty body")
    assert "stream ended" not in r.err and SECRET not in r.err
    assert "\x1b" not in r.err and "\x07" not in r.err  # a server's bytes never drive the terminal
    assert len(r.err.splitlines()) == 1


@pytest.mark.parametrize("transport", ["sse", "chat"])
def test_an_event_stream_cut_before_its_first_event_is_still_a_dropped_stream(tmp_path, transport):
    fake = FakeServer("text/event-stream", b"")
    try:
        r = infer(tmp_path, fake.base_url, "-t", transport)
    finally:
        fake.close()
    assert r.code == 6 and "the stream ended before the" in r.err, r.err


# ---- 15: a server that accepts the connection and never answers ------------------------------------


class SilentServer:
    """Accepts TCP connections and never sends a byte."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.held: list[socket.socket] = []
        self.accepted = 0
        self.base_url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.held.append(conn)

    def close(self):
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def silent():
    server = SilentServer()
    yield server
    server.close()


SHORT = ["-o", "connection.connect_timeout=0.5", "-o", "connection.read_timeout=0.5", "-o", "connection.max_retries=1"]
EXPECTED_TIMEOUT = {
    "ws": "could not open a WebSocket to {ws}/responses within 0.5 s (connection.connect_timeout)",
    "sse": "connected, but no reply from {http} within 0.5 s (connection.read_timeout)",
    "chat": "connected, but no reply from {http} within 0.5 s (connection.read_timeout)",
}


def expected_timeout(silent, transport: str) -> str:
    return EXPECTED_TIMEOUT[transport].format(http=silent.base_url, ws=silent.base_url.replace("http://", "ws://"))


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.slow
def test_a_silent_server_times_out_naming_the_timeout(tmp_path, silent, transport):
    r = infer(tmp_path, silent.base_url, "-t", transport, *SHORT)
    assert r.code == 6, r.err
    assert r.err.splitlines() == [f"voicecli: timed out waiting for {silent.base_url}; retried 1 time: "
                                  f"{expected_timeout(silent, transport)}"]  # piped stderr: no retry chatter
    assert silent.accepted == 2  # each attempt was bounded, and retried once


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.slow
def test_on_a_terminal_each_retry_is_announced(tmp_path, silent, transport):
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "voicecli", "infer", "-p", "offline", "--base-url", silent.base_url,
                             "-t", transport, *SHORT, "hello"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=slave, env=cli_env(tmp_path))
    os.close(slave)
    try:
        proc.wait(timeout=60)
        err = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child's side is closed and drained
                break
            if not chunk:
                break
            err += chunk
    finally:
        os.close(master)
    # the waiting spinner turns meanwhile, and is erased before each line
    text = re.sub(f"\r[{FRAMES}]( \\d+s)?", "", err.decode().replace("\r\n", "\n"))
    assert re.search("\r +\rvoicecli: ", text), repr(text)
    lines = re.sub("\r +\r", "", text).splitlines()
    assert proc.returncode == 6, lines
    assert lines[0].startswith(f"voicecli: {expected_timeout(silent, transport)}; retrying in ")
    assert lines[0].endswith(" s (1 of 1)")
    assert lines[1].startswith("voicecli: timed out waiting for") and len(lines) == 2


# ---- 16: voicecli sim ------------------------------------------------------------------------------


def test_sim_on_a_taken_port_is_one_line(tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        r = run_cli(tmp_path, "sim", "--port", str(port), timeout=20)
    finally:
        taken.close()
    assert r.code == 2 and r.out == ""
    assert r.err.splitlines() == [f"voicecli: cannot listen on 127.0.0.1:{port}: Address already in use",
                                  "  hint: pick another --port, or --port 0 for any free one"]


def test_sim_with_a_missing_script(tmp_path):
    r = run_cli(tmp_path, "sim", "--script", str(tmp_path / "nope.json"), timeout=20)
    assert r.code == 2
    assert r.err.splitlines() == [f"voicecli: --script {tmp_path / 'nope.json'}: no such file"]


@pytest.mark.parametrize("name,text,message", [
    ("bad.json", "{nope", "invalid JSON: Expecting property name"),
    ("bad.toml", "[[turns]\nreply = 1", "invalid TOML:"),
    ("keys.json", '{"turns": [{"rpely": "x"}]}', "turn 0: unknown key(s) ['rpely']"),
    ("shape.json", "42", "a script needs a list of turns"),
])
def test_sim_with_a_malformed_script_is_a_config_error(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    r = run_cli(tmp_path, "sim", "--script", str(path), timeout=20)
    assert r.code == 3, r.err
    first, *rest = r.err.splitlines()
    assert first.startswith("voicecli: ") and str(path) in first and message in first
    assert rest == ["  hint: the format is described in voicecli/sim/script.py"]
