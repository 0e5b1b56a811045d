"""What `chat`, `infer` and `talk` draw on a terminal's stderr: the waiting indicator, and nothing
but plain text under TERM=dumb. Real pseudo-terminals, with stderr on a pty of its own."""

from __future__ import annotations

import io
import json
import os
import re
import sys
import threading

import pexpect
import pytest

from clihelp import cli_env, run_cli, wait_for
from voicecli.sim.config import SimConfig
from voicecli.sim.server import start_in_thread
from voicecli.ui.spinner import FRAMES, Spinner

TIMEOUT = 60
SPIN = re.compile(f"[{FRAMES}]")
ERASE = re.compile(r"\r +\r")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture
def sim():
    handle = start_in_thread(SimConfig())
    yield handle
    handle.stop()


class Term:
    """The CLI in a pty (stdin, stdout), with stderr on a second pty collected apart."""

    def __init__(self, home, *args, term="xterm-256color", **env):
        master, slave = os.openpty()
        name = os.ttyname(slave)

        def stderr_on_its_pty():
            fd = os.open(name, os.O_RDWR | os.O_NOCTTY)
            os.dup2(fd, 2)

        self.child = pexpect.spawn(sys.executable, ["-m", "voicecli", *args], preexec_fn=stderr_on_its_pty,
                                   env={**cli_env(home), "TERM": term, "PROMPT_TOOLKIT_NO_CPR": "1", **env},
                                   dimensions=(40, 120), encoding="utf-8", timeout=TIMEOUT)
        os.close(slave)
        self._err = bytearray()
        self._reader = threading.Thread(target=self._read, args=(master,), daemon=True)
        self._reader.start()

    def _read(self, fd: int) -> None:
        while True:
            try:
                data = os.read(fd, 4096)
            except OSError:  # EIO: every writer closed
                break
            if not data:
                break
            self._err += data
        os.close(fd)

    def wait(self) -> tuple[str, str, int]:
        """Everything on stdout, everything on stderr, the exit status."""
        self.child.expect(pexpect.EOF)
        self.child.close()
        self._reader.join(TIMEOUT)
        return self.child.before, self._err.decode("utf-8", "replace"), self.child.exitstatus

    @property
    def err(self) -> str:
        return self._err.decode("utf-8", "replace")


# -- the spinner itself ------------------------------------------------------------------------------


class TtyBuffer(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_spinner_shows_seconds_after_two_and_erases_what_it_drew():
    now = [100.0]
    out = TtyBuffer()
    spinner = Spinner(out, enabled=True, clock=lambda: now[0])
    spinner._started = now[0]
    spinner.draw()
    assert out.getvalue() == "\r" + FRAMES[0]
    now[0] += 1.9
    assert spinner.text() == FRAMES[1]
    now[0] += 10.2
    spinner.draw()
    assert out.getvalue().endswith("\r" + FRAMES[1] + " 12s")
    spinner.clear()
    assert out.getvalue().endswith("\r" + " " * len(FRAMES[1] + " 12s") + "\r")
    spinner.clear()  # nothing drawn: nothing written
    assert out.getvalue().count("\r") == 4


def test_spinner_is_off_for_pipes_and_dumb_terminals(monkeypatch):
    monkeypatch.setenv("TERM", "xterm")
    assert not Spinner(io.StringIO()).enabled
    assert Spinner(TtyBuffer()).enabled
    monkeypatch.setenv("NO_COLOR", "1")  # no colour in it: NO_COLOR does not stop it
    assert Spinner(TtyBuffer()).enabled
    monkeypatch.setenv("TERM", "dumb")
    assert not Spinner(TtyBuffer()).enabled


# -- through the CLI -----------------------------------------------------------------------------------


def _slow(sim_url: str, seconds: float) -> list[str]:
    return ["-p", "offline", "--base-url", sim_url, "-o", f'connection.headers={{ x-sim-fault = "latency={seconds}" }}']


@pytest.mark.parametrize("transport", ["ws", "sse", "chat"])
@pytest.mark.slow
def test_infer_spins_on_stderr_until_the_first_token(tmp_path, sim, transport):
    t = Term(tmp_path, "infer", *_slow(sim.base_url, 2.6), "-t", transport, "hello")
    out, err, code = t.wait()
    assert code == 0, err
    assert ANSI.sub("", out).replace("\r", "") == "You said: hello\n"  # stdout: only the answer
    assert SPIN.search(err), repr(err)
    assert re.search(f"[{FRAMES}] [23]s", err), repr(err)  # the seconds, once past 2 s
    # only frames, then one erase that leaves the cursor at the start of an empty line
    assert re.fullmatch(f"(\\r[{FRAMES}]( \\d+s)?)+\\r +\\r", err), repr(err)


def test_infer_erases_the_spinner_before_the_answer_on_a_shared_terminal(tmp_path, sim):
    child = pexpect.spawn(sys.executable, ["-m", "voicecli", "infer", *_slow(sim.base_url, 0.6), "hello"],
                          env={**cli_env(tmp_path), "TERM": "xterm"}, encoding="utf-8", timeout=TIMEOUT)
    child.expect(pexpect.EOF)
    seen = child.before
    assert SPIN.search(seen), repr(seen)
    before, _, after = seen.partition("You said: hello")
    assert re.fullmatch(f"(\\r[{FRAMES}]( \\d+s)?)+\\r +\\r", before), repr(seen)  # erased before the first character


def test_no_spinner_when_stderr_is_a_pipe(tmp_path, sim):
    r = run_cli(tmp_path, "infer", *_slow(sim.base_url, 0.5), "hello")
    assert (r.code, r.out, r.err) == (0, "You said: hello\n", "")


@pytest.mark.slow
def test_chat_spins_until_the_first_token(tmp_path, sim):
    t = Term(tmp_path, "chat", *_slow(sim.base_url, 2.6))
    t.child.expect_exact("\x1b[?2004h")
    t.child.send("hello\r")
    t.child.expect("You said: hello")
    t.child.expect_exact("\x1b[?2004h")
    t.child.sendcontrol("d")
    _, err, code = t.wait()
    assert code == 0
    assert re.search(f"[{FRAMES}] [23]s\\r +\\r(\x1b\\[2m)?sim-1 over ws .* total ", err), repr(err)  # erased first


@pytest.mark.slow
def test_chat_erases_the_spinner_before_the_answer_on_a_shared_terminal(tmp_path, sim):
    child = pexpect.spawn(sys.executable, ["-m", "voicecli", "chat", *_slow(sim.base_url, 0.6)],
                          env={**cli_env(tmp_path), "TERM": "xterm-256color", "PROMPT_TOOLKIT_NO_CPR": "1"},
                          dimensions=(40, 120), encoding="utf-8", timeout=TIMEOUT)
    child.expect_exact("\x1b[?2004h")
    child.send("hello\r")
    child.expect_exact("\x1b[?2004l")  # the prompt is done with the line
    child.expect("You said: hello")
    waited = ANSI.sub("", child.before)
    assert re.fullmatch(f"(\\r?\\n)?(\\r[{FRAMES}])+\\r +\\r", waited), repr(child.before)  # only the spinner, erased
    child.expect_exact("\x1b[?2004h")
    child.sendcontrol("d")
    child.expect(pexpect.EOF)


# -- TERM=dumb: plain text on stderr ---------------------------------------------------------------


def test_dumb_terminal_gets_no_escape_codes_from_infer(tmp_path, sim):
    t = Term(tmp_path, "infer", *_slow(sim.base_url, 0.5), "-u", "hello", term="dumb")
    out, err, code = t.wait()
    assert code == 0, err
    assert "\x1b" not in err and "\x1b" not in out and not SPIN.search(err), repr(err)
    assert "first token" in err  # the -u line, plain


@pytest.mark.slow
def test_dumb_terminal_gets_no_escape_codes_from_chat(tmp_path, sim):
    t = Term(tmp_path, "chat", *_slow(sim.base_url, 0.5), term="dumb")
    t.child.logfile_read = seen = io.StringIO()  # all of stdout
    t.child.expect_exact("> ")
    t.child.send("hello\r")
    t.child.expect("You said: hello")
    t.child.expect_exact("> ")
    t.child.send("/usage\r")
    t.child.expect_exact("> ")
    t.child.send("/exit\r")
    _, err, code = t.wait()
    assert code == 0
    assert "/help for commands" in err and "total " in err
    assert "\x1b" not in err and not SPIN.search(err), repr(err)
    assert "\x1b" not in seen.getvalue() and "You said: hello" in seen.getvalue(), repr(seen.getvalue())


@pytest.mark.slow
@pytest.mark.parametrize("term", ["dumb", "xterm-256color"])
def test_a_line_typed_before_the_first_prompt_is_sent_whole(tmp_path, sim, term):
    """Keys typed while chat is not at a prompt (here: an MCP server starting) are neither echoed
    nor line-edited by the kernel: the Enter stays an Enter and sends at the first prompt. In
    cooked mode it became a newline (Ctrl-J), which the prompt takes as "add a line"."""
    from test_mcp import SERVER

    started, go = tmp_path / "started", tmp_path / "go"
    os.mkfifo(go)  # the server waits on it: opening it blocks until the test opens its other end
    waiter = ("import os, sys\n"
              f"open({str(started)!r}, 'w').close()\n"
              f"open({str(go)!r}).read()\n"
              f"os.execv(sys.executable, [sys.executable, {str(SERVER)!r}, 'stdio'])\n")
    profile = tmp_path / "p.toml"
    profile.write_text('extends = "offline"\n[[mcp]]\nname = "late"\napproval = "auto"\n'
                       f"command = {json.dumps([sys.executable, '-c', waiter])}\n")
    t = Term(tmp_path, "chat", "-p", str(profile), "--base-url", sim.base_url, term=term)
    t.child.logfile_read = seen = io.StringIO()
    wait_for(started.exists, what="the MCP server to start")
    t.child.send("hello\r")  # typed while chat waits for the server
    go.write_text("")  # opens the pipe's other end: the server goes on
    t.child.expect("You said: hello")
    t.child.send("/exit\r")  # typed ahead again: sent at the next prompt
    _, err, code = t.wait()
    assert code == 0, err
    if term == "dumb":  # each typed key is shown once, by the prompt; the kernel echoed none
        assert seen.getvalue().count("hello") == 2, repr(seen.getvalue())  # at the prompt and in the answer


@pytest.mark.slow
def test_dumb_terminal_gets_no_escape_codes_from_talk(tmp_path, sim):
    from test_talk import speech_wav

    wav = speech_wav(tmp_path / "in.wav", [("silence", 0.2), ("speech", 0.8), ("silence", 0.5)])
    t = Term(tmp_path, "talk", "-p", "offline", "--base-url", sim.base_url, "--input", str(wav),
             "--output", str(tmp_path / "out.wav"), term="dumb")
    out, err, code = t.wait()
    assert code == 0, err
    assert "assistant: You said" in err  # plain transcript lines
    assert "\x1b" not in err and "\x1b" not in out, repr(err + out)


@pytest.mark.slow
def test_infer_spins_again_while_a_tool_rounds_follow_up_is_on_its_way(tmp_path, sim):
    profile = tmp_path / "p.toml"
    profile.write_text('extends = "offline"\n[[tools]]\nname = "echo"\n'
                       f'command = [{json.dumps(sys.executable)}, "-c", "print(42)"]\napproval = "auto"\n'
                       '[tools.parameters]\ntype = "object"\n')
    t = Term(tmp_path, "infer", "-p", str(profile), "--base-url", sim.base_url, "-t", "sse",
             "-o", 'connection.headers={ x-sim-fault = "latency=2.6" }', 'use echo {}')
    out, err, code = t.wait()
    assert code == 0, err
    # spinning (with seconds) until the tool call, its result line, spinning again until the answer
    frame = f"\\r[{FRAMES}]( \\d+s)?"
    spin = f"({frame})*\\r[{FRAMES}] [23]s({frame})*\\r +\\r"  # frames, the seconds shown, then erased
    assert re.fullmatch(f"{spin}(\x1b\\[2m)?tool echo [^\\n]*\\n(\x1b\\[0m)?{spin}", err), repr(err)
    assert ANSI.sub("", out).replace("\r", "") == "Tool echo returned: 42.\n"
