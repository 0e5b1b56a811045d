"""`voicecli chat` end to end: the real CLI in a pseudo-terminal (pexpect) against the simulator.

The prompt is up when prompt_toolkit turns bracketed paste on (ESC [?2004h): tests wait for that
instead of sleeping. Enter is "\r" in a raw terminal; "\n" is Ctrl-J, which adds a line.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pexpect
import pytest

from clihelp import cli_env, run_cli
from voicecli.sim.config import SimConfig
from voicecli.sim.server import start_in_thread

PROMPT_UP = "\x1b[?2004h"
FOOTER = re.compile(r"total \d+ ms")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[=>]")
TIMEOUT = 60  # generous: a loaded 2-core machine


def plain(text: str) -> str:
    return ANSI.sub("", text).replace("\r", "")


@pytest.fixture
def sim():
    handle = start_in_thread(SimConfig())
    yield handle
    handle.stop()


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


class Chat:
    """One `voicecli chat` in a pty; `output` collects everything it printed."""

    def __init__(self, home: Path, base_url: str, *args: str, fault: str | None = None, size=(40, 120), **env: str):
        extra = ["-o", f'connection.headers={{ x-sim-fault = "{fault}" }}'] if fault else []
        self.child = pexpect.spawn(
            sys.executable, ["-m", "voicecli", "chat", "-p", "offline", "--base-url", base_url, *extra, *args],
            env={**cli_env(home), "TERM": "xterm-256color", "PROMPT_TOOLKIT_NO_CPR": "1", **env},
            dimensions=size, encoding="utf-8", timeout=TIMEOUT)
        self.output = ""
        self.prompt()

    def _take(self) -> str:
        seen = self.child.before + (self.child.after if isinstance(self.child.after, str) else "")
        self.output += seen
        return seen

    def prompt(self) -> str:
        """Wait until the prompt is ready for input; return what was printed before it."""
        self.child.expect_exact(PROMPT_UP)
        return self._take()

    def expect(self, pattern) -> str:
        self.child.expect(pattern)
        return self._take()

    def say(self, text: str) -> str:
        """Send a message (or command) and return the plain output up to the next prompt."""
        self.child.send(text + "\r")
        return plain(self.prompt())

    def ask(self, text: str) -> str:
        """Send a message and wait for its footer (the turn is over), then the prompt."""
        self.child.send(text + "\r")
        out = self.expect(FOOTER)
        return plain(out + self.prompt())

    def exit(self) -> int:
        self.child.sendcontrol("d")
        self.child.expect(pexpect.EOF)
        self._take()
        self.child.close()
        return self.child.exitstatus


def bodies(sim) -> list[dict]:
    out = []
    for entry in sim.log:
        body = entry.get("event") or entry.get("body")
        if isinstance(body, dict) and ("input" in body or "messages" in body):
            out.append(body)
    return out


def test_streams_answers_and_sends_multi_line_messages(home, sim):
    chat = Chat(home, sim.base_url)
    assert "/help for commands" in plain(chat.output)
    out = chat.ask("hello **world**")
    assert "You said: hello world" in out  # rendered: the ** are gone
    assert "sim-1 over ws" in out and "first token" in out
    chat.ask("line one\nline two")  # Ctrl-J adds a line, Enter sends
    chat.ask("\x1b[200~pasted one\npasted two\x1b[201~")  # bracketed paste keeps its newline
    chat.ask("alt one\x1b\ralt two")  # Alt-Enter adds a line too
    sent = json.dumps(bodies(sim))
    assert "line one\\nline two" in sent and "pasted one\\npasted two" in sent and "alt one\\nalt two" in sent
    assert len(bodies(sim)) == 4
    assert chat.exit() == 0
    history = (home / "chat_history").read_text()
    assert "hello **world**" in history  # the input history file lives in the data dir


@pytest.mark.parametrize("transport", ["sse", "chat"])
def test_other_transports(home, sim, transport):
    chat = Chat(home, sim.base_url, "-t", transport)
    assert "You said: hi" in chat.ask("hi")
    assert f"over {transport}" in chat.output
    assert chat.exit() == 0


@pytest.mark.slow
def test_slash_commands(home, sim, tmp_path):
    chat = Chat(home, sim.base_url, PULSE_SERVER="unix:/nonexistent/pulse")  # /talk finds no microphone
    assert "/transport" in chat.say("/help") and "Alt-Enter" in chat.output
    assert "system: Be brief." in chat.say("/system Be brief.")
    assert "model: sim-2" in chat.say("/model sim-2")
    assert "temperature = 0.3" in chat.say("/set temperature 0.3")
    assert "must be between" in chat.say("/set temperature 9")  # a bad value: one line, still running
    assert "transport: sse" in chat.say("/transport sse")
    assert "takes ws, sse or chat" in chat.say("/transport carrier-pigeon")
    chat.ask("first question")
    body = bodies(sim)[-1]
    assert (body["model"], body["instructions"], body["temperature"]) == ("sim-2", "Be brief.", 0.3)
    assert "no tools" in chat.say("/tools")
    out = chat.say("/usage")
    assert "#1" in out and "sim-2 over sse" in out and "total:" in out and "cached" in out
    out = chat.say("/history")
    assert "you: first question" in out and "assistant: You said: first question" in out
    md, js = tmp_path / "c.md", tmp_path / "c.json"
    assert "saved" in chat.say(f"/save {md}")
    assert "### You" in md.read_text() and "You said: first question" in md.read_text()
    chat.say(f"/save {js}")
    items = json.loads(js.read_text())["items"]
    assert [i["role"] for i in items] == ["user", "assistant"]
    assert "must end in" in chat.say(f"/save {tmp_path / 'c.txt'}")
    assert "You said: first question" in chat.ask("/retry")
    assert len(bodies(sim)) == 2 and len(bodies(sim)[-1]["input"]) == 1  # the old answer is gone
    assert "talk" in chat.say("/talk")
    assert "did you mean /model" in chat.say("/modle")
    assert "new conversation" in chat.say("/clear")
    chat.ask("after clear")
    assert "first question" not in json.dumps(bodies(sim)[-1])
    chat.child.send("/exit\r")
    chat.child.expect(pexpect.EOF)
    chat.child.close()
    assert chat.child.exitstatus == 0


def test_set_none_unsets_any_setting(home, sim):
    chat = Chat(home, sim.base_url, "-t", "sse", "-o", 'connection.headers={ x-team = "blue" }', "-o", "temperature=0.3")
    chat.ask("first")
    sent = [e for e in sim.log if isinstance(e.get("body"), dict) and "input" in e["body"]]
    assert sent[-1]["headers"].get("x-team") == "blue" and sent[-1]["body"]["temperature"] == 0.3
    assert "connection.headers = {}" in chat.say("/set connection.headers none")  # a table: back to no headers
    assert "temperature = None" in chat.say("/set temperature none")
    chat.ask("second")
    sent = [e for e in sim.log if isinstance(e.get("body"), dict) and "input" in e["body"]]
    assert "x-team" not in sent[-1]["headers"] and "temperature" not in sent[-1]["body"]
    assert "must be a table" in chat.say("/set connection.headers nothing")  # other words are still checked
    assert chat.exit() == 0


def _rows(out: str, first: str) -> list[str]:
    """The printed rows from the one starting with `first` (the echoed command line before it left out)."""
    rows = out.splitlines()
    start = next(i for i, row in enumerate(rows) if row.startswith(first))
    return [row for row in rows[start:] if row.strip()]


def _entries(rows: list[str], column: int) -> list[str]:
    """Rows joined back into entries: a row indented to `column` continues the one above it."""
    entries: list[str] = []
    for row in rows:
        if entries and row.startswith(" " * column) and not row[column].isspace():
            entries[-1] += " " + row.strip()
        else:
            entries.append(row.rstrip())
    return entries


def test_help_and_tools_wrap_between_words_to_the_terminal(home, sim):
    from voicecli.ui.repl import COMMANDS

    chat = Chat(home, sim.base_url, "-p", "tools-demo", size=(40, 60))
    rows = _rows(chat.say("/help"), "  /help")
    assert rows and all(len(row) <= 60 for row in rows), rows
    keys = next(i for i, row in enumerate(rows) if row.startswith("Enter sends"))
    rows, keys = rows[:keys], " ".join(rows[keys:])
    assert keys.startswith("Enter sends · Alt-Enter") and keys.endswith("Tab completes · start a message with // to"
                                                                         " send a leading /"), keys
    column = 2 + max(len(f"/{n} {a}") for n, (a, _) in COMMANDS.items()) + 2  # where the descriptions start
    entries = _entries(rows, column)
    for name, (args, about) in COMMANDS.items():  # each description whole: no word cut in two
        assert any(entry.startswith(f"  /{name} {args}".rstrip()) and entry.endswith(about) for entry in entries), (
            name, rows)
    assert len(entries) == len(COMMANDS) < len(rows)  # long ones took continuation rows, indented under their text
    rows = _rows(chat.say("/tools"), "  clock")
    assert all(len(row) <= 60 for row in rows), rows
    entries = _entries(rows, 2 + 20 + 1 + 8 + 1)
    assert [entry.split()[0] for entry in entries] == ["clock", "read_file", "convert_units"], rows
    assert entries[2].endswith("— Convert a value between units of length, mass, volume, time or temperature"
                               " (c, f, k).")
    assert len(rows) > 3
    assert chat.exit() == 0


@pytest.mark.slow
def test_copy_uses_a_clipboard_tool_or_says_there_is_none(home, sim, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    clip = tmp_path / "clipboard.txt"
    fake = bin_dir / "wl-copy"
    fake.write_text(f"#!/bin/sh\ncat > {clip}\n")
    fake.chmod(0o755)
    chat = Chat(home, sim.base_url, PATH=f"{bin_dir}:/usr/bin:/bin", WAYLAND_DISPLAY="wayland-0")
    assert "no answer" in chat.say("/copy")
    chat.ask("copy me")
    assert "copied" in chat.say("/copy")
    assert clip.read_text() == "You said: copy me"
    chat.exit()
    chat = Chat(home, sim.base_url, PATH="/nonexistent", DISPLAY="", WAYLAND_DISPLAY="")
    chat.ask("x")
    assert "no clipboard tool" in chat.say("/copy")
    chat.exit()


def test_completion_of_commands_and_arguments(home, sim):
    chat = Chat(home, sim.base_url)
    chat.child.send("/transp")
    chat.expect("show or switch the transport")  # the menu, with help
    chat.child.send("\t ss")  # the redraw writes only the new characters, so look at the end result
    chat.expect("sse")
    chat.child.send("\t\r")
    assert "transport: sse" in plain(chat.prompt())
    chat.exit()


@pytest.mark.slow
def test_ctrl_c_stops_the_answer_keeps_it_and_the_session_goes_on(home, sim):
    words = " ".join(f"w{i}" for i in range(300))
    chat = Chat(home, sim.base_url, fault="delta_delay=0.05")
    chat.child.send(words + "\r")
    chat.expect("You said: w0 w1 w2 w3")  # the answer is flowing (not just the echo of the input)
    chat.child.sendintr()
    out = plain(chat.expect(r"interrupted") + chat.prompt())
    assert "w299" not in out
    assert "You said: hello" in chat.ask("hello")  # the next turn works (fault only slows it)
    assert "You said: w0 w1 w2 w3" in json.dumps(bodies(sim)[-1])  # the partial answer is in the history
    assert chat.exit() == 0
    log = next((home / "conversations").glob("*.jsonl")).read_text()
    assert '"interrupted": true' in log


def test_ctrl_c_at_an_empty_prompt_hints_then_exits(home, sim):
    chat = Chat(home, sim.base_url)
    chat.child.send("half-typed")
    chat.child.sendintr()  # clears the line (no hint, no exit)
    chat.child.sendintr()
    assert "Ctrl-C again" in plain(chat.prompt())
    chat.child.sendintr()
    chat.child.expect(pexpect.EOF)
    chat.child.close()
    assert chat.child.exitstatus == 0
    assert not (home / "conversations").exists()  # nothing was said: no conversation file


@pytest.mark.slow
def test_resume_with_c_and_continue_in_infer(home, sim):
    chat = Chat(home, sim.base_url)
    chat.ask("remember the word pineapple")
    chat.exit()
    chat = Chat(home, sim.base_url, "-c")
    assert "resuming conversation" in plain(chat.output) and "You said: remember the word pineapple" in plain(chat.output)
    chat.ask("second")
    chat.exit()
    assert "pineapple" in json.dumps(bodies(sim)[-1])
    r = run_cli(home, "infer", "-p", "offline", "--base-url", sim.base_url, "-c", "third")
    assert r.code == 0, r.err
    assert "pineapple" in json.dumps(bodies(sim)[-1]) and "second" in json.dumps(bodies(sim)[-1])
    cid = next((home / "conversations").glob("*.jsonl")).stem
    chat = Chat(home, sim.base_url, "--cid", cid, "-t", "chat")
    assert "third" in plain(chat.output)
    chat.exit()


def test_errors_leave_the_session_usable_and_retry_resends(home, sim):
    chat = Chat(home, sim.base_url, "-o", "connection.max_retries=0", fault="status=500; times=1")
    out = chat.ask("try this")
    assert "server error from" in out and "/retry" in out and "Traceback" not in out
    assert "You said: try this" in chat.ask("/retry")
    assert chat.exit() == 0


@pytest.mark.parametrize("extra, env", [(["--raw"], {}), ([], {"NO_COLOR": "1"})])
def test_raw_and_no_color_print_plain_text(home, tmp_path, extra, env):
    script = tmp_path / "md.json"
    script.write_text(json.dumps({"turns": [{"reply": "# Title\n\nSome **bold** text.\n\n```python\nx = 1\n```\n"}]}))
    with start_in_thread(SimConfig(script=script)) as md_sim:
        chat = Chat(home, md_sim.base_url, *extra, **env)
        out = chat.ask("hi")
        assert "**bold**" in out and "```python" in out
        chat.exit()


def test_markdown_and_code_are_rendered_on_a_terminal(home, tmp_path):
    script = tmp_path / "md.json"
    script.write_text(json.dumps({"turns": [{"reply": "# Title\n\nSome **bold** text.\n\n```python\nx = 1\n```\n"}]}))
    with start_in_thread(SimConfig(script=script)) as md_sim:
        chat = Chat(home, md_sim.base_url)
        chat.child.send("hi\r")
        raw = chat.expect(FOOTER)
        chat.prompt()
        assert "**bold**" not in raw and "```" not in raw and "x = 1" in plain(raw)
        assert "\x1b[1m" in raw and "38;" in raw  # bold, and colours from the code highlighter
        chat.exit()


@pytest.mark.parametrize("columns", [80, 300])
@pytest.mark.slow
def test_wide_and_narrow_windows(home, sim, columns):
    words = " ".join(f"word{i}" for i in range(120))
    chat = Chat(home, sim.base_url, size=(40, columns))
    out = chat.ask(words)
    final = out[out.rindex("You said:"):out.index("sim-1 over")]  # the answer as printed for good
    answer = [line.rstrip() for line in final.splitlines() if line.strip()]
    assert "word119" in final
    widest = max(len(line) for line in answer)
    assert widest <= columns
    if columns == 300:
        assert widest > 200  # not wrapped at some fixed width
    else:
        assert len(answer) > 1
    assert chat.exit() == 0


@pytest.mark.parametrize("suffix", [".jsonl", ".md"])
def test_transcript_is_appended_as_it_happens(home, sim, tmp_path, suffix):
    path = tmp_path / f"t{suffix}"
    chat = Chat(home, sim.base_url, "--transcript", str(path))
    chat.ask("one")
    text = path.read_text()  # written while the session is still open
    assert "You said: one" in text
    chat.exit()
    if suffix == ".jsonl":
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        assert [line.get("role") for line in lines] == [None, "user", "assistant"]
        assert lines[2]["usage"]["output_tokens"] > 0 and lines[2]["end"] >= lines[2]["start"]
    else:
        assert "### You" in text and "### Assistant" in text


def test_edit_opens_the_editor_and_leaves_the_text_in_the_prompt(home, sim, tmp_path):
    editor = tmp_path / "editor.sh"
    mode = tmp_path / "mode"  # the editor gets the terminal as the user left it: echo and line editing on
    editor.write_text(f'#!/bin/sh\nstty -a > {mode}\nprintf "written in the editor\\n" > "$1"\n')
    editor.chmod(0o755)
    chat = Chat(home, sim.base_url, EDITOR=str(editor), VISUAL="")
    chat.say("/edit")
    assert "You said: written in the editor" in chat.ask("")
    chat.exit()
    flags = mode.read_text().split()
    assert {"echo", "icanon", "icrnl"} <= set(flags), flags


def test_lines_from_a_pipe(home, sim):
    r = run_cli(home, "chat", "-p", "offline", "--base-url", sim.base_url, input="hello\n/usage\nagain\n")
    assert r.code == 0, r.err
    assert r.out == "You said: hello\nYou said: again\n"
    assert "total:" in r.err


@pytest.mark.slow
def test_tool_approval_prompt(home, sim, tmp_path):
    profile = tmp_path / "tooly.toml"
    profile.write_text(
        'extends = "offline"\n'
        '[[tools]]\nname = "shout"\ndescription = "Echo a word"\ncommand = ["echo", "{word}"]\napproval = "ask"\n'
        'parameters = { type = "object", properties = { word = { type = "string" } }, required = ["word"] }\n')
    child = Chat(home, sim.base_url, "-p", str(profile))
    assert "ask" in child.say("/tools")
    child.child.send('please shout {"word": "hello"}\r')
    asked = plain(child.prompt())
    assert "run the tool 'shout'" in asked and '"word": "hello"' in asked
    out = child.ask("y")  # the question is drawn after the prompt is up: it is in what follows
    assert "Allow? y once · a always · n no [y/a/N, Enter]:" in out and "Tool shout returned: hello" in out
    child.child.send('shout again {"word": "no"}\r')
    child.prompt()
    child.say("n")  # deny, then the optional reason
    out = child.ask("not now")
    assert "Reason for the model (optional), then Enter:" in out and "denied" in out and "not now" in out
    child.child.send('shout {"word": "always"}\r')
    child.prompt()
    assert "Tool shout returned: always" in child.ask("a")
    assert "always" in child.say("/tools")
    assert "Tool shout returned: free" in child.ask('shout {"word": "free"}')  # not asked again
    child.exit()


@pytest.mark.slow
def test_hosted_tools_are_refused_on_the_chat_transport(tmp_path):
    from clihelp import run_cli

    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "hs.toml").write_text('extends = "offline"\n[[tools]]\ntype = "web_search"\n')
    r = run_cli(tmp_path, "chat", "-p", "hs", "-t", "chat", input="hello\n")
    assert r.code == 3 and "works only with the Responses API" in r.err
    r = run_cli(tmp_path, "chat", "-p", "hs", input="/transport chat\nhello\n")
    assert r.code == 0, r.err
    assert "not with transport 'chat'" in r.err and "You said: hello" in r.out  # refused, session carries on


def test_think_block_shows_dim_and_not_as_the_answer(home, sim):
    """A compatible server's leading <think> block is reasoning: dim on the screen, not the answer."""
    chat = Chat(home, sim.base_url, "-t", "chat", fault="think")
    out = chat.ask("hello")
    assert "Considering: hello" in out and "You said: hello" in out
    assert "<think>" not in out and "</think>" not in out
    assert out.index("Considering: hello") < out.index("You said: hello")
    assert "\x1b[2m" in chat.output  # the reasoning is dim
    chat.exit()
    log = next((home / "conversations").glob("*.jsonl")).read_text()
    assert "Considering" not in log and "You said: hello" in log


@pytest.mark.slow
def test_keys_typed_while_the_answer_streams_wait_for_the_next_prompt(home, sim):
    """Typed during an answer: not echoed into it, and at the next prompt as if typed there —
    an Enter typed ahead sends, so `/exit` typed just as the answer ends exits."""
    chat = Chat(home, sim.base_url, fault="delta_delay=0.15")
    chat.child.send("one two three four five six seven eight\r")
    chat.expect("You said")
    chat.child.send("zebra")  # typed mid-answer
    out = chat.expect(FOOTER)
    assert "zebra" not in plain(out)  # not echoed into the answer
    assert "You said: one two three four five six seven eight\n" in plain(chat.output)
    chat.prompt()
    chat.child.expect_exact("zebra")  # the next prompt shows it as typed there
    chat.child.send(" crossing\r")
    out = plain(chat.expect(FOOTER))
    assert "You said: zebra crossing" in out
    chat.prompt()
    chat.child.send("again please now\r")
    chat.expect("You said")
    chat.child.send("/exit\r")  # Enter typed ahead: sends the command at the next prompt
    chat.child.expect(pexpect.EOF)
    chat.child.close()
    assert chat.child.exitstatus == 0
    log = next((home / "conversations").glob("*.jsonl")).read_text()
    assert "/exit" not in log and "zebra crossing" in log
