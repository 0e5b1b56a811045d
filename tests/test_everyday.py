"""Issue 14's everyday rough edges: clean error lines in chat, the approval wait outside "first
token", chat's /talk help, word-wrapped reasoning, `-c` continuing with the conversation's own
profile, model and base URL. The real CLI against the simulator (a pty where a terminal matters)."""

from __future__ import annotations

import json

import pytest

from clihelp import run_cli


@pytest.fixture
def home(tmp_path):
    (tmp_path / "profiles").mkdir()
    return tmp_path


def test_chat_errors_have_no_internal_prefixes(home, sim):
    lines = "/set temprature 1\n/set temperature warm\n/set connection.transprt x\n/model\n/profile nosuch\n"
    r = run_cli(home, "chat", "-p", "offline", "--base-url", sim.base_url, input=lines)
    assert r.code == 0, r.err
    assert "<settings>" not in r.err and "command line" not in r.err
    err = r.err.splitlines()
    assert "voicecli: unknown key 'model.temprature'" in err
    assert "  hint: did you mean 'temperature'?" in err
    assert "voicecli: model.temperature must be a number, got string 'warm'" in err
    assert "voicecli: unknown key 'connection.transprt'" in err
    assert any(line.startswith("voicecli: no profile named 'nosuch'") for line in err)
    assert any(line.startswith("  hint: known profiles:") for line in err)  # the hint on its own line


def test_option_errors_name_the_option(home):
    r = run_cli(home, "infer", "-p", "offline", "-o", "temprature=1", "hi")
    assert r.code == 3 and "<settings>" not in r.err
    assert "voicecli: -o temprature=1: unknown key 'model.temprature'" in r.err


@pytest.mark.slow
def test_chat_first_token_excludes_the_wait_at_the_approval_prompt(tmp_path, sim):
    import re
    import time

    from test_chat import Chat, plain

    profile = tmp_path / "tooly.toml"
    profile.write_text(
        'extends = "offline"\n'
        '[[tools]]\nname = "shout"\ndescription = "Echo a word"\ncommand = ["echo", "{word}"]\napproval = "ask"\n'
        'parameters = { type = "object", properties = { word = { type = "string" } }, required = ["word"] }\n')
    chat = Chat(tmp_path / "home", sim.base_url, "-p", str(profile))
    chat.child.send('please shout {"word": "hello"}\r')
    assert "run the tool 'shout'" in plain(chat.prompt())
    time.sleep(3)  # the user reads the arguments before answering
    out = chat.ask("y")
    assert "Tool shout returned: hello" in out
    ttft, total = map(int, re.search(r"first token (\d+) ms · total (\d+) ms", out).groups())
    assert ttft < 3000 and total < 3000, out  # the model's time, not the user's
    assert chat.exit() == 0


def test_talk_errors_in_chat_name_chat_settings_not_talk_flags(home, sim):
    """`/talk` takes no flags: its errors point at what chat can change (/set voice.…)."""
    lines = "/set voice.input_device nosuch\n/talk\nhello\n"
    r = run_cli(home, "chat", "-p", "offline", "--base-url", sim.base_url, input=lines,
                PULSE_SERVER="unix:/nonexistent/pulse")
    assert r.code == 0, r.err
    assert "no audio input device found" in r.err
    assert "--input" not in r.err and "--output" not in r.err, r.err
    assert "/set voice.input_device" in r.err
    assert "You said: hello" in r.out  # chat goes on


def test_an_unclear_device_name_says_devices(monkeypatch):
    from voicecli.audio import devices
    from voicecli.errors import ConfigError

    listing = [{"name": "usb mic", "max_input_channels": 1, "max_output_channels": 0, "index": 0},
               {"name": "usb cam mic", "max_input_channels": 1, "max_output_channels": 0, "index": 1}]
    monkeypatch.setattr(devices, "query_devices", lambda: listing)
    with pytest.raises(ConfigError) as exc:
        devices.find_device("usb", "input")
    assert exc.value.message == "--input-device 'usb' matches several input devices"


def test_chat_reasoning_summaries_wrap_between_words(tmp_path, sim):
    """On a 40-column terminal a long reasoning summary breaks lines between words (the terminal
    itself would cut words at the edge), and the answer starts on its own line."""
    from test_chat import Chat, plain

    words = "alphabetical brilliantly considerate dandelions everywhere fantastically gorgeous"
    chat = Chat(tmp_path / "home", sim.base_url, "-o", "reasoning_effort=low", "-o", "reasoning_summary=auto",
                size=(40, 40))
    out = chat.ask(words)
    lines = [line for line in plain(out).split("\n")]
    start = next(i for i, line in enumerate(lines) if line.startswith("Considering:"))
    summary = []
    for line in lines[start:]:
        if line.startswith("You said"):
            break
        assert len(line) <= 40, lines
        summary.append(line)
    assert len(summary) >= 2  # it did wrap
    assert " ".join(summary).split() == ("Considering: " + words[:80]).split()  # no word split or lost (the sim quotes 80 characters)
    assert chat.exit() == 0


def _requests(sim) -> list[dict]:
    return [e for e in sim.log if isinstance(e.get("body"), dict) and "input" in e["body"]
            or isinstance(e.get("event"), dict) and "input" in e["event"]]


@pytest.mark.slow
def test_continue_uses_the_conversations_profile_model_and_base_url(home, sim):
    """`infer -c` after `infer -p offline --base-url URL -m M -t sse` goes back to the same place;
    flags given with -c override what the conversation ran with."""
    r = run_cli(home, "infer", "-p", "offline", "--base-url", sim.base_url, "-m", "sim-x", "-t", "sse",
                "remember pineapple")
    assert r.code == 0, r.err
    log = next((home / "conversations").glob("*.jsonl"))
    meta = json.loads(log.read_text().splitlines()[0])
    assert meta["profile"] == "offline" and meta["base_url"] == sim.base_url and meta["model"] == "sim-x"
    r = run_cli(home, "infer", "-c", "--json", "and again")  # no -p, -m, -t, --base-url
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert (out["model"], out["transport"]) == ("sim-x", "sse")
    assert "pineapple" in json.dumps(_requests(sim)[-1])
    r = run_cli(home, "infer", "--cid", log.stem, "-m", "sim-y", "--json", "third")  # a flag wins
    assert r.code == 0, r.err
    assert json.loads(r.out)["model"] == "sim-y"
    r = run_cli(home, "chat", "-c", input="fourth\n")  # chat too
    assert r.code == 0, r.err
    assert "You said: fourth" in r.out
    body = json.dumps(_requests(sim)[-1])
    assert "pineapple" in body and "third" in body and '"sim-y"' in body  # the last model it ran with


def test_continue_after_a_model_switch_in_chat(home, sim):
    r = run_cli(home, "chat", "-p", "offline", "--base-url", sim.base_url, input="one\n/model sim-z\ntwo\n")
    assert r.code == 0, r.err
    r = run_cli(home, "infer", "-c", "--json", "three")
    assert r.code == 0, r.err
    assert json.loads(r.out)["model"] == "sim-z"


def test_a_password_in_the_base_url_is_not_logged(home, sim):
    url = sim.base_url.replace("http://", "http://user:s3cret-pw@")
    r = run_cli(home, "infer", "-p", "offline", "--base-url", url, "hi")
    assert r.code == 0, r.err
    log = next((home / "conversations").glob("*.jsonl")).read_text()
    assert "s3cret-pw" not in log


def test_infer_reasoning_wraps_between_words_on_a_terminal(tmp_path, sim):
    import sys

    import pexpect

    from clihelp import cli_env
    from test_chat import plain

    words = "alphabetical brilliantly considerate dandelions everywhere fantastically gorgeous"
    child = pexpect.spawn(sys.executable, ["-m", "voicecli", "infer", "-p", "offline", "--base-url", sim.base_url,
                                           "-o", "reasoning_effort=low", "-o", "reasoning_summary=auto", "--raw", words],
                          env={**cli_env(tmp_path), "TERM": "xterm-256color"}, dimensions=(40, 40),
                          encoding="utf-8", timeout=60)
    child.expect(pexpect.EOF)
    lines = plain(child.before).split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("Considering:"))
    end = next(i for i, line in enumerate(lines) if line.startswith("You said"))
    assert end - start >= 2 and all(len(line) <= 40 for line in lines[start:end]), lines
    assert " ".join(lines[start:end]).split() == ("Considering: " + words[:80]).split()
