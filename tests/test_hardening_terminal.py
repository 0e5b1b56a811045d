"""Issue 22 §4, "The terminal is the user's": on a terminal, model text, server error text, stored
log text (`logs`, `logs show`, `logs search`) and tool descriptions (`tools list`, chat's `/tools`)
show ESC, OSC 0/52 and CSI 2J as visible escapes, never obeyed (OSC 52 writes the clipboard on many
terminals); pipes and files keep the exact bytes. Real pseudo-terminals (`Term` from
test_terminal: stdout on one pty, stderr on another) against the simulator."""

from __future__ import annotations

import io
import json
import re

import pytest

from clihelp import run_cli
from test_terminal import Term
from voicecli.sim.config import SimConfig
from voicecli.sim.server import start_in_thread

# set the clipboard, set the window title, clear the screen, ring the bell
EVIL = "pwned \x1b]52;c;cHduZWQ=\x07 title \x1b]0;owned\x07 clear \x1b[2J bell \x07 c1 \x9b2J end"
OBEYED = re.compile("\x1b\\]|\x1b\\[2J|\x07|\x9b")  # any of EVIL's sequences, raw
SHOWN = "\\x1b]52;c;cHduZWQ=\\x07"  # how the clipboard one looks when escaped


def assert_shown_not_obeyed(text: str) -> None:
    assert not OBEYED.search(text), repr(text)
    assert SHOWN in text, repr(text)


@pytest.fixture
def evil_sim(tmp_path_factory):
    """A simulator whose first answers are EVIL, then a turn that fails with EVIL as its message."""
    script = tmp_path_factory.mktemp("sim") / "script.json"
    script.write_text(json.dumps({"turns": [{"reply": EVIL}, {"reply": EVIL}, {"reply": EVIL},
                                            {"fault": {"status": 400, "message": EVIL}}]}))
    handle = start_in_thread(SimConfig(script=script))
    yield handle
    handle.stop()


def _base(sim) -> list[str]:
    return ["-p", "offline", "--base-url", sim.base_url]


@pytest.mark.parametrize("term, extra", [("xterm-256color", []), ("xterm-256color", ["--raw"]), ("dumb", [])])
def test_model_text_is_escaped_on_a_terminal(tmp_path, evil_sim, term, extra):
    t = Term(tmp_path, "infer", *_base(evil_sim), *extra, "hello", term=term)
    out, err, code = t.wait()
    assert code == 0, err
    assert_shown_not_obeyed(out)


@pytest.mark.slow
def test_model_text_and_error_text_keep_their_bytes_in_a_pipe(tmp_path, evil_sim):
    r = run_cli(tmp_path, "infer", *_base(evil_sim), "hello")
    assert r.code == 0 and EVIL in r.out, repr(r.out)
    for _ in range(2):
        run_cli(tmp_path, "infer", *_base(evil_sim), "again")
    r = run_cli(tmp_path, "infer", *_base(evil_sim), "-o", "connection.max_retries=0", "fail now")
    assert r.code == 7 and EVIL in r.err, repr(r.err)


def test_server_error_text_is_escaped_on_a_terminal(tmp_path, evil_sim):
    for _ in range(3):  # the scripted answers first
        assert run_cli(tmp_path, "infer", *_base(evil_sim), "hi").code == 0
    t = Term(tmp_path, "infer", *_base(evil_sim), "-o", "connection.max_retries=0", "fail now")
    out, err, code = t.wait()
    assert code == 7, err
    assert "request rejected by" in err
    assert_shown_not_obeyed(err)


@pytest.mark.slow
def test_stored_log_text_is_escaped_by_logs_list_show_and_search(tmp_path, evil_sim):
    r = run_cli(tmp_path, "infer", *_base(evil_sim), f"hello {EVIL}")
    assert r.code == 0, r.err
    for args in (["logs"], ["logs", "show"], ["logs", "show", "--raw"], ["logs", "search", "pwned"]):
        out, err, code = Term(tmp_path, *args).wait()
        assert code == 0, (args, err)
        assert_shown_not_obeyed(out)
        piped = run_cli(tmp_path, *args)  # a pipe: the bytes as stored
        assert piped.code == 0 and OBEYED.search(piped.out), (args, repr(piped.out))


TOOL_PROFILE = """
[connection]
base_url = "{url}"
api_key_env = ""

[[tools]]
name = "lister"
description = "lists files \\u001b]52;c;cHduZWQ=\\u0007 \\u001b[2J"
command = ["true"]
parameters = {{ type = "object", properties = {{}} }}
"""


@pytest.mark.slow
def test_tool_descriptions_are_escaped_by_tools_list_and_chat(tmp_path, evil_sim):
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "t.toml").write_text(TOOL_PROFILE.format(url=evil_sim.base_url))
    out, err, code = Term(tmp_path, "tools", "list", "-p", "t").wait()
    assert code == 0, err
    assert "lists files" in out and not OBEYED.search(out) and SHOWN in out, repr(out)
    piped = run_cli(tmp_path, "tools", "list", "-p", "t")
    assert piped.code == 0 and "\x1b]52;c;cHduZWQ=\x07" in piped.out

    t = Term(tmp_path, "chat", "-p", "t", term="dumb")  # still a terminal: no prompt styling to match around
    t.child.logfile_read = seen = io.StringIO()  # all of stdout
    t.child.expect_exact("> ")
    t.child.send("/tools\r")
    t.child.expect_exact("> ")
    t.child.send("hello\r")
    t.child.expect("pwned")
    t.child.expect_exact("> ")
    t.child.send("/exit\r")
    _, err, code = t.wait()
    assert code == 0, err
    assert "lister" in err and "\\x1b]52" in err and not OBEYED.search(err), repr(err)
    assert_shown_not_obeyed(seen.getvalue())


def test_talk_view_escapes_transcripts_notes_and_errors_on_a_terminal(monkeypatch):
    """talk's live view (rich, on the terminal): what was said, notes, errors and questions."""
    from test_terminal import TtyBuffer
    from voicecli.ui.talk_view import TalkView

    monkeypatch.setenv("TERM", "xterm-256color")
    screen = TtyBuffer()
    view = TalkView(footer="keys", console_file=screen)
    view.start()
    try:
        view.partial("assistant", EVIL)
        view.final("user", EVIL)
        view.final("assistant", EVIL, interrupted=True)
        view.note(EVIL)
        view.error(EVIL)
        view.ask(EVIL)
    finally:
        view.stop()
    assert_shown_not_obeyed(screen.getvalue())
    data = io.StringIO()  # stdout to a pipe: the final lines, exactly
    plain = TalkView(footer="keys", data_out=data, console_file=io.StringIO())
    plain.final("assistant", EVIL)
    assert data.getvalue() == f"assistant: {EVIL}\n"
