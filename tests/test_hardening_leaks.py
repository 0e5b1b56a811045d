"""Issue 22 §2, "Nothing a server sends may leak the key": an error that quotes the key — before the
stream, inside it, over HTTP, WebSocket or Realtime, from speech-to-text or text-to-speech — never
reaches stdout, stderr or the conversation log; URL userinfo is masked whole; the WebSocket
transports send one Authorization header and follow no redirect; a key or header value with
whitespace around it is refused before anything is sent. The real CLI runs as a subprocess
against the simulator (its `echo_key` fault quotes the request's key in the error) or against a
small loopback server."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clihelp import run_cli, sim_speech
from voicecli.events import Error
from voicecli.sanitize import mask_url_password, redact
from voicecli.sim.config import SimConfig
from voicecli.sim.server import start_in_thread

KEY = "sk-planted-0123456789-SECRET"
TRANSPORTS = ["ws", "sse", "chat"]
# every way a text turn can fail with the server's own words (max_retries = 0: a retryable one ends at once)
FAULTS = ["error=nested", "error=flat", "failed", "status=401", "status=400", "status=500", "quota"]
MODES = [[], ["--json"], ["--events"], ["--no-stream"]]


def write_profile(home: Path, base_url: str, transport: str = "ws", fault: str | None = None, extra: str = "") -> None:
    (home / "profiles").mkdir(parents=True, exist_ok=True)
    headers = f'[connection.headers]\nx-sim-fault = "{fault}"\n' if fault else ""
    (home / "profiles" / "k.toml").write_text(
        f'[connection]\nbase_url = "{base_url}"\napi_key_env = "K"\ntransport = "{transport}"\nmax_retries = 0\n'
        f'{extra}{headers}')


def everything_written(home: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in home.rglob("*") if p.is_file() and p.suffix != ".wav")


def assert_no_key(key: str, home: Path, r, *more: str) -> None:
    seen = {"stdout": r.out, "stderr": r.err, "files": everything_written(home), **dict(enumerate(more))}
    core = key.strip()
    leaks = [where for where, text in seen.items() if core in text or key in text]
    assert not leaks, (leaks, r.code, r.err[-500:])


@pytest.fixture(scope="module")
def shared_sim():
    handle = start_in_thread(SimConfig())
    yield handle
    handle.stop()


# ---- the property: any key, any error path, any output mode ------------------------------------

KEYS = st.builds(lambda body: "sk-" + body,
                 st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~+/=",
                         min_size=12, max_size=48))


@settings(max_examples=25, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(key=KEYS, transport=st.sampled_from(TRANSPORTS), fault=st.sampled_from(FAULTS), mode=st.sampled_from(MODES))
@pytest.mark.slow
def test_a_key_the_server_echoes_never_reaches_output_or_log(tmp_path_factory, shared_sim, key, transport, fault, mode):
    home = tmp_path_factory.mktemp("home")
    write_profile(home, shared_sim.base_url, transport, f"{fault}; echo_key")
    r = run_cli(home, "infer", "-p", "k", *mode, "hi", K=key)
    assert r.code in (4, 5, 7), (r.code, r.err)  # it failed, with the server's words…
    assert "upstream rejected key ***" in r.err, r.err  # …which were shown, without the key
    assert_no_key(key, home, r)
    assert "Traceback" not in r.err


# ---- concrete paths -----------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_in_stream_error_is_redacted_in_json_events_and_the_log(tmp_path, shared_sim, transport):
    write_profile(tmp_path, shared_sim.base_url, transport, "error=flat; after=3; echo_key")
    for mode in (["--events"], ["--json"]):
        r = run_cli(tmp_path, "infer", "-p", "k", *mode, "hello there", K=KEY)
        assert r.code == 7, r.err
        assert_no_key(KEY, tmp_path, r)
        if mode == ["--events"]:
            errors = [json.loads(line) for line in r.out.splitlines() if '"type": "error"' in line]
            assert errors and errors[-1]["message"] == "upstream rejected key ***", r.out
        else:
            assert json.loads(r.out)["error"] == "upstream rejected key ***"
    log = next((tmp_path / "conversations").glob("*.jsonl")).read_text()
    assert "upstream rejected key ***" in log  # the turn record keeps the error, redacted


@pytest.mark.slow
def test_realtime_error_event_is_redacted(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("home")
    script = tmp_path_factory.mktemp("sim") / "script.json"  # holds the key: not in the CLI's home
    script.write_text(json.dumps({"turns": [{"fault": {"error": "flat", "after": 3,
                                                         "message": f"upstream rejected key {KEY}"}}]}))
    sim = start_in_thread(SimConfig(script=script))
    try:
        wav = tmp_path / "in.wav"
        wav.write_bytes(sim_speech(sim.base_url, "hello there", wav=True))
        write_profile(tmp_path, sim.base_url)
        r = run_cli(tmp_path, "talk", "-p", "k", "--engine", "realtime", "--input", str(wav),
                    "--output", str(tmp_path / "out.wav"), K=KEY)
    finally:
        sim.stop()
    assert "error: upstream rejected key ***" in r.err, r.err
    assert_no_key(KEY, tmp_path, r)


@pytest.mark.parametrize("fault", ["status=401", "failed", "error=flat; after=3"])
@pytest.mark.slow
def test_cascade_speech_and_text_errors_are_redacted(tmp_path, shared_sim, fault):
    wav = tmp_path / "in.wav"
    wav.write_bytes(sim_speech(shared_sim.base_url, "hello there", wav=True))
    write_profile(tmp_path, shared_sim.base_url, "chat", f"{fault}; echo_key")
    r = run_cli(tmp_path, "talk", "-p", "k", "--engine", "cascade", "--input", str(wav),
                "--output", str(tmp_path / "out.wav"), K=KEY)
    assert r.code in (4, 7), r.err
    assert "failed: " in r.err and "upstream rejected key ***" in r.err, r.err
    assert_no_key(KEY, tmp_path, r)


def test_realtime_handshake_refusal_is_redacted(tmp_path, shared_sim):
    wav = tmp_path / "in.wav"
    wav.write_bytes(sim_speech(shared_sim.base_url, "hello", wav=True))
    write_profile(tmp_path, shared_sim.base_url, "ws", "status=403; echo_key")
    r = run_cli(tmp_path, "talk", "-p", "k", "--engine", "realtime", "--input", str(wav),
                "--output", str(tmp_path / "out.wav"), K=KEY)
    assert r.code == 4 and "upstream rejected key ***" in r.err, r.err
    assert_no_key(KEY, tmp_path, r)


def test_redact_error_covers_message_code_and_request_id():
    from voicecli.sanitize import redact_data
    from voicecli.transport.base import redact_error, scrub

    e = Error("server", f"bad {KEY}", code=f"c-{KEY}", request_id=f"req {KEY}", status=500)
    out = redact_error(e, KEY)
    assert KEY not in f"{out.message}{out.code}{out.request_id}" and out.status == 500
    assert scrub(e, KEY) == out and scrub("text", KEY) == "text"
    assert redact_data({"a": [f"x {KEY}", 1, None], KEY: {"b": (KEY,)}}, KEY) == {"a": ["x ***", 1, None],
                                                                                   "***": {"b": ["***"]}}


# ---- URL userinfo -------------------------------------------------------------------------------


@pytest.mark.parametrize("text, shown", [
    ("http://alice:p@ss@WORD@host/v1", "http://***@host/v1"),
    ("http://sk-TOKEN-123456@host:8080/v1", "http://***@host:8080/v1"),
    ("wss://u:p%40ss@host/v1/realtime?x=a@b", "wss://***@host/v1/realtime?x=a@b"),
    ("see https://u:pw@host/v1 and http://host:80/x@y", "see https://***@host/v1 and http://host:80/x@y"),
    ("mail bob@example.com", "mail bob@example.com"),
])
def test_url_userinfo_is_masked_whole(text, shown):
    assert mask_url_password(text) == shown
    assert redact(text) == shown


@pytest.mark.parametrize("url, secret", [("http://alice:p@ss@WORD-9@127.0.0.1:9/v1", "ss@WORD-9"),
                                         ("http://sk-TOKEN-hidden@127.0.0.1:9/v1", "sk-TOKEN-hidden")])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_url_credentials_stay_out_of_errors(tmp_path, url, secret, transport):
    r = run_cli(tmp_path, "infer", "-p", "offline", "--base-url", url, "-t", transport,
                "-o", "connection.max_retries=0", "hi")
    assert r.code == 6, r.err
    assert secret not in r.out + r.err + everything_written(tmp_path) and "://***@127.0.0.1:9" in r.err, r.err


# ---- a loopback server that records handshakes and answers each one the same way ----------------


class OneReply:
    """Accepts connections on 127.0.0.1, records each request head, answers `reply` and closes."""

    def __init__(self, reply: bytes = b""):
        self.reply = reply
        self.heads: list[str] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                data = b""
                try:
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    self.heads.append(data.decode("latin-1"))
                    conn.sendall(self.reply)
                except OSError:
                    pass

    def wait_for(self, n: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while len(self.heads) < n:
            assert time.monotonic() < deadline, f"{len(self.heads)} of {n} requests came"
            time.sleep(0.01)

    def close(self) -> None:
        self._stop = True
        self.sock.close()
        self._thread.join(5)


@pytest.fixture
def servers():
    made: list[OneReply] = []

    def make(reply: bytes = b"") -> OneReply:
        made.append(OneReply(reply))
        return made[-1]

    yield make
    for s in made:
        s.close()


def _redirect(location: str, status: int = 307) -> bytes:
    return f"HTTP/1.1 {status} Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode()


def test_ws_sends_one_authorization_header(tmp_path, servers):
    srv = servers(b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
    r = run_cli(tmp_path, "infer", "-p", "offline", "--base-url", f"http://alice:pa55-word@127.0.0.1:{srv.port}/v1",
                "-t", "ws", "-o", "connection.api_key_env=K", "-o", "connection.max_retries=0", "hi", K=KEY)
    assert r.code == 4, r.err
    srv.wait_for(1)
    auth = [line for line in srv.heads[0].split("\r\n") if line.lower().startswith("authorization:")]
    assert auth == [f"Authorization: Bearer {KEY}"], srv.heads[0]
    assert "@" not in srv.heads[0].split("\r\n")[0]  # the request line carries no userinfo
    # without a key, the URL's userinfo goes as Basic auth, once
    r = run_cli(tmp_path, "infer", "-p", "offline", "--base-url", f"http://alice:pa55-word@127.0.0.1:{srv.port}/v1",
                "-t", "ws", "-o", "connection.max_retries=0", "hi")
    srv.wait_for(2)
    auth = [line for line in srv.heads[1].split("\r\n") if line.lower().startswith("authorization:")]
    assert auth == ["Authorization: Basic YWxpY2U6cGE1NS13b3Jk"], srv.heads[1]
    assert "pa55-word" not in r.out + r.err


@pytest.mark.parametrize("engine", ["ws", "realtime"])
def test_ws_follows_no_redirect_to_another_origin(tmp_path, servers, engine):
    elsewhere = servers(b"HTTP/1.1 500 No\r\nContent-Length: 0\r\n\r\n")
    srv = servers(_redirect(f"ws://127.0.0.1:{elsewhere.port}/v1/responses"))
    base = f"http://127.0.0.1:{srv.port}/v1"
    write_profile(tmp_path, base, "ws", extra="")
    (tmp_path / "profiles" / "k.toml").write_text(
        (tmp_path / "profiles" / "k.toml").read_text() + '[connection.headers]\napi-key = "azure-secret-4567890"\n'
        'OpenAI-Project = "proj_hidden"\n')
    if engine == "ws":
        r = run_cli(tmp_path, "infer", "-p", "k", "hi", K=KEY)
    else:
        wav = tmp_path / "in.wav"
        wav.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\xc0\x5d\x00\x00\x80\xbb\x00\x00"
                        b"\x02\x00\x10\x00data\x00\x00\x00\x00")
        r = run_cli(tmp_path, "talk", "-p", "k", "--engine", "realtime", "--input", str(wav),
                    "--output", str(tmp_path / "o.wav"), K=KEY)
    assert r.code == 7, r.err
    assert f"redirect to ws://127.0.0.1:{elsewhere.port}/v1/responses not followed" in r.err, r.err
    assert "Traceback" not in r.err and len(r.err.strip().splitlines()) <= 3, r.err
    srv.wait_for(1)
    assert elsewhere.heads == []  # the other origin never saw the credentials


def test_ws_redirect_to_http_is_an_error_line_not_a_crash(tmp_path, servers):
    srv = servers(_redirect("http://127.0.0.1:9/elsewhere", 302))
    r = run_cli(tmp_path, "infer", "-p", "offline", "--base-url", f"http://127.0.0.1:{srv.port}/v1", "-t", "ws",
                "-o", "connection.max_retries=0", "hi")
    assert r.code == 7, r.err
    assert "redirect to http://127.0.0.1:9/elsewhere not followed" in r.err and "internal error" not in r.err, r.err


# ---- whitespace around a key or a header value --------------------------------------------------


@pytest.mark.parametrize("key", [f" {KEY}", f"{KEY} ", f"{KEY}\t"])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_key_with_surrounding_whitespace_is_refused_before_sending(tmp_path, shared_sim, key, transport):
    shared_sim.log.clear()
    write_profile(tmp_path, shared_sim.base_url, transport)
    r = run_cli(tmp_path, "infer", "-p", "k", "hi", K=key)
    assert r.code == 3, r.err
    assert "K begins or ends with whitespace" in r.err and "without spaces around it" in r.err, r.err
    assert_no_key(key, tmp_path, r)
    assert not [e for e in shared_sim.log if str(e.get("endpoint", "")).startswith("/v1/")]


def test_header_value_with_surrounding_whitespace_is_refused(tmp_path, shared_sim):
    write_profile(tmp_path, shared_sim.base_url, "sse", extra='[connection.headers]\nOpenAI-Project = "proj_1 "\n')
    for args in (["infer", "-p", "k", "hi"], ["profiles", "validate", "k"]):
        r = run_cli(tmp_path, *args, K=KEY)
        assert r.code == 3, (args, r.err)
        assert "connection.headers.OpenAI-Project begins or ends with whitespace" in r.err, r.err


# ---- the last line of defence: writers that hold no key ----------------------------------------


def test_log_transcript_and_json_never_hold_a_loaded_key_even_from_the_model(tmp_path_factory):
    """A model that repeats the key (it was pasted into a prompt, or a tool printed it): the
    conversation log, a chat transcript and `--json` still hold `***`."""
    home = tmp_path_factory.mktemp("home")
    script = tmp_path_factory.mktemp("sim") / "script.json"
    script.write_text(json.dumps({"turns": [{"reply": f"your key is {KEY}."}] * 2}))
    sim = start_in_thread(SimConfig(script=script))
    try:
        write_profile(home, sim.base_url, "sse")
        r = run_cli(home, "infer", "-p", "k", "--json", "hi", K=KEY)
        assert r.code == 0 and json.loads(r.out)["text"] == "your key is ***.", r.out
        r2 = run_cli(home, "chat", "-p", "k", "--transcript", str(home / "t.jsonl"), input="hi\n", K=KEY)
        assert r2.code == 0, r2.err
    finally:
        sim.stop()
    assert "your key is ***." in (home / "t.jsonl").read_text()
    assert "your key is ***." in "".join(p.read_text() for p in (home / "conversations").glob("*.jsonl"))
    assert KEY not in everything_written(home)
