"""Issue 13, runtime hardening: runaway tools, SIGTERM/SIGHUP, leaving a WebSocket, rejected
requests in the log, parallel turns on one conversation. The real CLI as a subprocess against the
simulator; signals sent from Python."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clihelp import cli_env, run_cli
from voicecli.sim.config import SimConfig
from voicecli.sim.server import start_in_thread

PY = json.dumps(sys.executable)
DEADLINE = 60  # for a process to finish after a signal: generous, a loaded 2-core machine is slow
SLOW = "delta_delay=0.02"

# a command tool that starts a child in a new session (setsid) holding its stdout and stderr;
# argv: pid file, then "stay" (the tool itself keeps running) or "leave" (it exits at once)
ESCAPE = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
open(sys.argv[1], "w").write(str(child.pid))
print("started", flush=True)
if sys.argv[2] == "stay":
    time.sleep(60)
"""

MODULE = '''
import time

async def block():
    time.sleep(5)  # blocks its event loop: only a thread of its own can be abandoned at the deadline
    return "late"
'''


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


def write_profile(home: Path, tools: str = "") -> None:
    (home / "profiles").mkdir(parents=True, exist_ok=True)
    (home / "profiles" / "rt.toml").write_text('extends = "offline"\n' + tools)
    (home / "profiles" / "rt_tools.py").write_text(MODULE)


def escape_tools(home: Path) -> Path:
    pidfile = home / "grandchild.pid"
    write_profile(home, f"""
[[tools]]
name = "lingerer"
command = [{PY}, "-c", {json.dumps(ESCAPE)}, {json.dumps(str(pidfile))}, "stay"]
approval = "auto"
timeout = 1
[[tools]]
name = "leaver"
command = [{PY}, "-c", {json.dumps(ESCAPE)}, {json.dumps(str(pidfile))}, "leave"]
approval = "auto"
timeout = 1
[[tools]]
name = "slow"
command = [{PY}, "-c", {json.dumps(ESCAPE)}, {json.dumps(str(pidfile))}, "stay"]
approval = "auto"
timeout = 60
[[tools]]
name = "block"
python = "rt_tools:block"
approval = "auto"
timeout = 0.5
""")
    return pidfile


def infer(home, sim, *args, fault=None, timeout=60):
    extra = ["-o", f'connection.headers={{ x-sim-fault = "{fault}" }}'] if fault else []
    return run_cli(home, "infer", "-p", "rt", "--base-url", sim.base_url, *extra, *args, timeout=timeout)


def start(home, sim, command, *args, fault=None, stdin=subprocess.DEVNULL):
    extra = ["-o", f'connection.headers={{ x-sim-fault = "{fault}" }}'] if fault else []
    return subprocess.Popen([sys.executable, "-m", "voicecli", command, "-p", "rt", "--base-url", sim.base_url,
                             *extra, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=stdin,
                            env=cli_env(home, PYTHONFAULTHANDLER="1"))  # SIGABRT shows its stacks (finish)


def finish(proc) -> bytes:
    """Its stderr once it exits; if it has not within DEADLINE, its threads' stacks (faulthandler, on
    SIGABRT) go into the failure."""
    try:
        return proc.communicate(timeout=DEADLINE)[1]
    except subprocess.TimeoutExpired:
        native = ""
        if shutil.which("gdb"):  # where it waits below Python, in every thread
            native = subprocess.run(["gdb", "-p", str(proc.pid), "-batch", "-ex", "thread apply all bt 30"],
                                    capture_output=True, text=True, timeout=60).stdout
        proc.send_signal(signal.SIGABRT)
        stacks = proc.communicate(timeout=30)[1].decode(errors="replace")
        raise AssertionError(f"still running {DEADLINE} s after the signal; where it was:\n{stacks}\n{native}") from None


def read_until(proc, marker: bytes) -> bytes:
    """stdout until `marker` has appeared (text is flowing)."""
    seen = b""
    while marker not in seen:
        chunk = os.read(proc.stdout.fileno(), 64)
        assert chunk, proc.stderr.read()
        seen += chunk
    return seen


def wait_for_file(path: Path, proc) -> None:
    deadline = time.monotonic() + 30
    while not (path.exists() and path.read_text()):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.02)


def gone(pid: int) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)  # do not leave it behind when the test fails
    return False


def records(home: Path) -> list[dict]:
    (path,) = (home / "conversations").glob("*.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def items(home: Path) -> list[dict]:
    return [r["item"] for r in records(home) if r["type"] == "item"]


def assert_clean(err: bytes | str) -> None:
    err = err.decode() if isinstance(err, bytes) else err
    assert "Traceback" not in err and "Exception ignored" not in err and "internal error" not in err, err


# ---- 5. runaway tools -------------------------------------------------------------------------


@pytest.mark.parametrize("tool", ["lingerer", "leaver"])
@pytest.mark.slow
def test_a_tool_whose_setsid_child_holds_its_pipes_ends_at_its_timeout(home, sim, tool):
    pidfile = escape_tools(home)
    r = infer(home, sim, "-t", "sse", f"call {tool}", timeout=30)
    assert r.code == 0, r.err
    assert f"Tool {tool} returned: error: {tool} did not finish within 1 s" in r.out
    assert_clean(r.err)
    assert gone(int(pidfile.read_text()))  # the escaped grandchild does not outlive the tool


@pytest.mark.slow
def test_ctrl_c_during_a_runaway_tool_cancels_it_cleanly(home, sim):
    pidfile = escape_tools(home)
    proc = start(home, sim, "infer", "-t", "sse", "call slow")
    wait_for_file(pidfile, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 130, err
    assert_clean(err)
    assert gone(int(pidfile.read_text()))
    kinds = [(i["kind"], i.get("output", "")) for i in items(home)]
    assert kinds[-2][0] == "function_call" and kinds[-1][0] == "function_output"
    assert "cancelled" in kinds[-1][1]


def test_a_python_tool_that_blocks_its_event_loop_ends_at_its_timeout(home, sim):
    escape_tools(home)
    r = infer(home, sim, "-t", "sse", "call block", timeout=30)
    assert r.code == 0, r.err
    assert "Tool block returned: error: block did not finish within 0.5 s" in r.out
    assert "late" not in r.out


# ---- 6. SIGTERM and SIGHUP --------------------------------------------------------------------


@pytest.mark.parametrize("sig,transport", [(signal.SIGTERM, "ws"), (signal.SIGTERM, "sse"),
                                           (signal.SIGTERM, "chat"), (signal.SIGHUP, "sse")])
def test_sigterm_and_sighup_during_infer_keep_the_partial_answer(home, sim, sig, transport):
    write_profile(home)
    words = " ".join(f"w{i}" for i in range(1000))  # 20 s at SLOW: the signal comes long before the end
    proc = start(home, sim, "infer", "-t", transport, words, fault=SLOW)
    read_until(proc, b"w3")
    proc.send_signal(sig)
    err = finish(proc)
    assert proc.returncode == 128 + sig, err
    assert_clean(err)
    assert b"the partial answer was kept" in err
    user, answer = items(home)
    assert user["role"] == "user"
    assert answer["role"] == "assistant" and answer["interrupted"] and answer["text"].startswith("You said: w0")
    assert "w999" not in answer["text"]
    assert records(home)[-1]["type"] == "turn" and records(home)[-1]["status"] == "cancelled"


@pytest.mark.slow
def test_sigterm_during_a_tool_answers_the_call_and_kills_the_tool(home, sim):
    pidfile = escape_tools(home)
    proc = start(home, sim, "infer", "-t", "ws", "call slow")
    wait_for_file(pidfile, proc)
    proc.send_signal(signal.SIGTERM)
    err = finish(proc)
    assert proc.returncode == 143, err
    assert_clean(err)
    assert gone(int(pidfile.read_text()))
    call, output = items(home)[-2:]
    assert call["kind"] == "function_call" and output["kind"] == "function_output"
    assert call["call_id"] == output["call_id"] and "cancelled" in output["output"]
    # the conversation goes on from a valid history
    r = infer(home, sim, "-c", "-t", "ws", "and now?")
    assert (r.code, r.out) == (0, "You said: and now?\n"), r.err


def test_sigterm_during_chat_keeps_the_partial_answer(home, sim):
    write_profile(home)
    words = " ".join(f"w{i}" for i in range(1000))  # 20 s at SLOW: the signal comes long before the end
    proc = start(home, sim, "chat", "-t", "sse", fault=SLOW, stdin=subprocess.PIPE)
    proc.stdin.write(f"{words}\n".encode())
    proc.stdin.flush()
    read_until(proc, b"w3")
    proc.send_signal(signal.SIGTERM)
    err = finish(proc)
    assert proc.returncode == 143, err
    assert_clean(err)
    user, answer = items(home)
    assert answer["interrupted"] and answer["text"].startswith("You said: w0") and "w999" not in answer["text"]


def test_sighup_at_an_idle_chat_prompt_exits_129(home, sim):
    write_profile(home)
    proc = start(home, sim, "chat", "-t", "sse", stdin=subprocess.PIPE)
    proc.stdin.write(b"hi\n")
    proc.stdin.flush()
    read_until(proc, b"You said: hi")  # the turn is over; it now waits for the next line
    proc.send_signal(signal.SIGHUP)
    proc.wait(DEADLINE)  # stdin stays open: an end of input racing the signal would be another test
    err = proc.stderr.read()
    proc.stdin.close()
    assert proc.returncode == 129, err
    assert_clean(err)
    assert [i["role"] for i in items(home)] == ["user", "assistant"]


# ---- 7. leaving a WebSocket -------------------------------------------------------------------


def test_ctrl_c_on_ws_does_not_wait_for_the_close_handshake(home):
    """The user is leaving: the close frame goes out and the connection is dropped at once, without
    waiting for the server's reply (a busy server sends it only between events; this one never does).
    Timed on the server's side, from the close frame to the end of the connection: a client that
    waited would take its close timeout (CLOSE_TIMEOUT, 2 s) there, and nothing else of the client's
    exit (its interpreter shutting down on a loaded machine) is in that gap."""
    import struct
    import threading

    from hostile import Server, ws_frame_head, ws_handshake
    from voicecli.transport.ws import CLOSE_TIMEOUT

    seen: dict[str, float] = {}

    def read_frames(conn) -> None:  # the client's frames (masked); the time its close frame and EOF came
        data = b""
        while True:
            piece = conn.recv(65536)
            if not piece:
                seen["eof"] = time.monotonic()
                return
            data += piece
            while len(data) >= 2:
                length, at = data[1] & 0x7F, 2
                if length == 126:
                    length, at = struct.unpack("!H", data[2:4])[0], 4
                elif length == 127:
                    length, at = struct.unpack("!Q", data[2:10])[0], 10
                if len(data) < at + 4 + length:
                    break
                if data[0] & 0x0F == 0x8:
                    seen.setdefault("close", time.monotonic())
                data = data[at + 4 + length:]

    def handle(conn) -> None:
        ws_handshake(conn)
        reader = threading.Thread(target=read_frames, args=(conn,), daemon=True)
        reader.start()
        n = 0
        while "eof" not in seen:  # deltas until the client is gone; its close frame is never answered
            event = json.dumps({"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0,
                                "content_index": 0, "delta": f"w{n} ", "sequence_number": n}).encode()
            conn.sendall(ws_frame_head(0x1, len(event)) + event)
            n += 1
            time.sleep(0.02)
        reader.join()

    srv = Server(handle)
    try:
        write_profile(home)
        proc = subprocess.Popen([sys.executable, "-m", "voicecli", "infer", "-p", "rt", "--base-url", srv.base_url,
                                 "-t", "ws", "hello"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, env=cli_env(home, PYTHONFAULTHANDLER="1"))
        read_until(proc, b"w3")
        proc.send_signal(signal.SIGINT)
        err = finish(proc)
    finally:
        srv.close()
    assert proc.returncode == 130, err
    assert "close" in seen and "eof" in seen, seen  # it said goodbye, then hung up
    assert seen["eof"] - seen["close"] < CLOSE_TIMEOUT / 2, seen


# ---- 17. rejected requests --------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["ws", "sse", "chat"])
def test_a_rejected_request_adds_no_assistant_message(home, sim, transport):
    write_profile(home)
    r = infer(home, sim, "-t", transport, "hi", fault="status=400; code=invalid_value")
    assert r.code == 7, r.err
    assert [i["role"] for i in items(home)] == ["user"]
    assert records(home)[-1]["type"] == "turn" and records(home)[-1]["status"] == "failed"


def test_an_unauthorised_request_adds_no_assistant_message(home):
    write_profile(home)
    handle = start_in_thread(SimConfig(api_key="sk-right"))
    try:
        r = run_cli(home, "infer", "-p", "rt", "--base-url", handle.base_url, "-t", "sse", "hi",
                    OPENAI_API_KEY="sk-wrong-0123456789")
        assert r.code == 4, r.err
        assert [i["role"] for i in items(home)] == ["user"]
    finally:
        handle.stop()


# ---- 18. parallel turns on one conversation ---------------------------------------------------


@pytest.mark.slow
def test_parallel_turns_on_one_conversation_are_appended_whole(home, sim):
    write_profile(home)
    r = infer(home, sim, "-t", "sse", "--json", "first")
    cid = json.loads(r.out)["cid"]
    procs = [start(home, sim, "infer", "-t", "sse", "--cid", cid, f"n{i} " + " ".join(["x"] * 20), fault="delta_delay=0.005")
             for i in range(20)]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    recs = records(home)
    assert recs[0]["type"] == "meta"
    turns, current = [], []
    for rec in recs[1:]:
        current.append(rec)
        if rec["type"] == "turn":
            turns.append(current)
            current = []
    assert current == [] and len(turns) == 21
    for turn in turns:  # each turn whole: its user line, its own answer, its turn record
        user, answer, end = turn
        assert user["item"]["role"] == "user" and answer["item"]["role"] == "assistant", turn
        assert answer["item"]["text"] == "You said: " + user["item"]["text"]
        assert end["status"] == "completed"
    # a later -c replays a well-formed history
    r = infer(home, sim, "-t", "chat", "--cid", cid, "last")
    assert r.code == 0, r.err
    bodies = [e.get("body") for e in sim.log if isinstance(e.get("body"), dict) and "messages" in e["body"]]
    roles = [m["role"] for m in bodies[-1]["messages"]]
    assert roles == ["user", "assistant"] * 21 + ["user"]
