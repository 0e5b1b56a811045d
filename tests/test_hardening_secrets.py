"""Issue 13, "Secrets and private data": keys with control characters, redaction of every form of a
secret, private file modes, `profiles show` redaction, and control characters in tool arguments.
The real CLI runs as a subprocess against the simulator."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tomllib
import wave
from pathlib import Path

import pytest

from clihelp import cli_env, run_cli
from voicecli.events import ToolResult
from voicecli.sanitize import escape_controls, mask_url_password, redact
from voicecli.tools import result_line

TRANSPORTS = ["ws", "sse", "chat"]
EVIL_KEY = "sk-hardening-secret-0123\r\nX-Evil: 1"


def profile(home: Path, name: str, text: str) -> Path:
    (home / "profiles").mkdir(exist_ok=True)
    path = home / "profiles" / f"{name}.toml"
    path.write_text(text)
    return path


def everything_written(home: Path) -> str:
    """The text of every file voicecli left in its home (conversation logs included)."""
    return "".join(p.read_text(errors="replace") for p in home.rglob("*") if p.is_file())


# ---- 1. a key (or header) with a control character is a configuration error -----------------


@pytest.mark.parametrize("key", [EVIL_KEY, "sk-hardening-secret-0123\r", "sk-hardening-secret-0123\n"])
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_key_with_a_line_break_is_a_config_error_and_never_sent(tmp_path, make_sim, transport, key):
    sim = make_sim()
    profile(tmp_path, "k", f'[connection]\nbase_url = "{sim.base_url}"\napi_key_env = "K"\n'
                           f'transport = "{transport}"\nmax_retries = 0\n')
    r = run_cli(tmp_path, "infer", "-p", "k", "hi", K=key)
    assert r.code == 3, r.err
    assert "K contains a line break" in r.err and "Windows (CRLF)" in r.err
    assert "hardening-secret" not in r.out + r.err + everything_written(tmp_path)
    assert "Traceback" not in r.err
    # nothing reached the server: no request, so no injected header either
    assert not [e for e in sim.log if e.get("kind") == "http" and e.get("endpoint", "").startswith("/v1/")]
    assert "x-evil" not in json.dumps(sim.log).lower()


@pytest.mark.slow
def test_custom_header_with_a_line_break_is_a_config_error(tmp_path, make_sim):
    sim = make_sim()
    profile(tmp_path, "h", f'[connection]\nbase_url = "{sim.base_url}"\napi_key_env = ""\n'
                           '[connection.headers]\nOpenAI-Organization = "org-hidden-value\\r\\nX-Evil: 1"\n')
    for args in (["infer", "-p", "h", "hi"], ["profiles", "validate", "h"], ["profiles", "show", "h"]):
        r = run_cli(tmp_path, *args)
        assert r.code == 3, (args, r.err)
        assert "connection.headers.OpenAI-Organization contains a line break" in r.err
        assert "org-hidden-value" not in r.out + r.err
    r = run_cli(tmp_path, "infer", "-p", "offline", "--base-url", sim.base_url, "-o",
                'connection.headers={ X-Team = "blue\\u0007" }', "hi")
    assert r.code == 3 and "connection.headers.X-Team contains a control character (\\x07)" in r.err
    r = run_cli(tmp_path, "infer", "-p", "offline", "--base-url", sim.base_url, "-o",
                'connection.headers={ "X Bad" = "v" }', "hi")
    assert r.code == 3 and "not a valid header name" in r.err
    assert not [e for e in sim.log if e.get("endpoint", "").startswith("/v1/")]


def silence_wav(path: Path) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(24000)
        w.writeframes(b"\0\0" * 2400)
    return path


@pytest.mark.slow
def test_realtime_refuses_a_key_with_a_line_break(tmp_path, make_sim):
    sim = make_sim()
    profile(tmp_path, "k", f'[connection]\nbase_url = "{sim.base_url}"\napi_key_env = "K"\n')
    wav = silence_wav(tmp_path / "in.wav")
    r = run_cli(tmp_path, "talk", "-p", "k", "--input", str(wav), "--output", str(tmp_path / "o.wav"), K=EVIL_KEY)
    assert r.code == 3, r.err
    assert "K contains a line break" in r.err and "hardening-secret" not in r.out + r.err
    assert not [e for e in sim.log if e.get("endpoint", "").startswith("/v1/")]
    # and a password in the base URL stays out of talk's error line too
    r = run_cli(tmp_path, "talk", "-p", "offline", "--base-url", "http://al:pa55-hidden-word@127.0.0.1:9/v1",
                "--input", str(wav), "--output", str(tmp_path / "o.wav"))
    assert r.code == 6 and "pa55-hidden-word" not in r.out + r.err and "//***@127.0.0.1" in r.err, r.err


def test_redact_covers_repr_bytes_and_json_forms_of_the_key():
    key = "sk-abc123456789\r"
    for text in (f"Illegal header value b'Bearer {key}'".replace("\r", "\\r"),
                 f"value {key!r} refused", json.dumps({"error": f"bad {key}"}), f"raw {key} and {key.strip()}"):
        out = redact(text, key)
        assert "abc123456789" not in out and "***" in out, out
    assert redact("nothing here", None, "") == "nothing here"


# ---- 3. passwords in URLs, custom headers, tool env, keys pasted into api_key_env -----------


@pytest.mark.slow
def test_url_password_is_masked_in_errors_and_the_log(tmp_path):
    url = "http://alice:pa55-hidden-word@127.0.0.1:9/v1"
    for transport in TRANSPORTS:
        r = run_cli(tmp_path, "infer", "-p", "offline", "--base-url", url, "-t", transport,
                    "-o", "connection.max_retries=0", "hi")
        assert r.code == 6, r.err
        assert "pa55-hidden-word" not in r.out + r.err
        assert "//***@127.0.0.1" in r.err
    assert "pa55-hidden-word" not in everything_written(tmp_path)
    assert mask_url_password("see https://u:p%40ss@host/v1 and http://host:80/x@y") == \
        "see https://***@host/v1 and http://host:80/x@y"


def test_profiles_show_redacts_headers_tool_env_and_url_password(tmp_path):
    profile(tmp_path, "s", """
description = "secrets"
[connection]
base_url = "https://bob:url-hidden-pw@example.invalid/v1"
[connection.headers]
OpenAI-Project = "proj-hidden-id"
X-Custom-Token = "hdr-hidden-token"
[[tools]]
name = "t"
command = ["true"]
env = { SERVICE_TOKEN = "env-hidden-literal", FORWARDED = "$OPENAI_API_KEY", MIXED = "pre-${HOME}" }
""")
    r = run_cli(tmp_path, "profiles", "show", "s")
    assert r.code == 0, r.err
    for hidden in ("url-hidden-pw", "proj-hidden-id", "hdr-hidden-token", "env-hidden-literal"):
        assert hidden not in r.out + r.err
    data = tomllib.loads(r.out.split("\n", 2)[2])
    assert data["connection"]["base_url"] == "https://***@example.invalid/v1"
    assert data["connection"]["headers"] == {"OpenAI-Project": "***", "X-Custom-Token": "***"}
    assert data["tools"][0]["env"] == {"SERVICE_TOKEN": "***", "FORWARDED": "*** (from $OPENAI_API_KEY)",
                                       "MIXED": "*** (from $HOME)"}


@pytest.mark.parametrize("pasted", ["sk-proj-AbCdEf0123456789xyz", "0123456789abcdef0123456789abcdef.x/y"])
@pytest.mark.slow
def test_a_key_pasted_into_api_key_env_is_never_echoed(tmp_path, pasted):
    profile(tmp_path, "p", f'[connection]\napi_key_env = "{pasted}"\n')
    for args in (["profiles", "show", "p"], ["profiles", "validate", "p"], ["infer", "-p", "p", "hi"],
                 ["profiles", "list"]):
        r = run_cli(tmp_path, *args)
        assert pasted not in r.out + r.err and pasted[:12] not in r.out + r.err, args
        assert "looks like an API key" in r.out + r.err, (args, r.out, r.err)
        if args[1] != "list":
            assert r.code == 3, args
    r = run_cli(tmp_path, "infer", "-p", "offline", "-o", f"connection.api_key_env={pasted}", "hi")
    assert r.code == 3 and "looks like an API key" in r.err and pasted[:12] not in r.err
    r = run_cli(tmp_path, "profiles", "set", "p", "connection.api_key_env", pasted)
    assert r.code == 3 and pasted[:12] not in r.out + r.err


# ---- 2. private files: folders 0700, files 0600, whatever the umask --------------------------


def _run_with_umask(home: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "voicecli", *args], input=input, capture_output=True,
                          text=True, timeout=60, env=cli_env(home), preexec_fn=lambda: os.umask(0o022),
                          stdin=None if input is not None else subprocess.DEVNULL)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.slow
def test_user_state_is_private_under_umask_022(tmp_path):
    home = tmp_path / "home"  # does not exist yet: voicecli creates it
    r = _run_with_umask(home, "infer", "-p", "offline", "hi")
    assert r.returncode == 0, r.stderr
    transcript = tmp_path / "out" / "t.md"
    r = _run_with_umask(home, "chat", "-p", "offline", "--transcript", str(transcript), input="hello\n")
    assert r.returncode == 0, r.stderr
    assert _run_with_umask(home, "profiles", "new", "mine").returncode == 0
    r = _run_with_umask(home, "profiles", "set", "mine", "model.temperature", "0.3")
    assert r.returncode == 0, r.stderr
    logs = list((home / "conversations").glob("*.jsonl"))
    assert len(logs) == 2
    for folder in (home, home / "conversations", home / "profiles", transcript.parent):
        assert _mode(folder) == 0o700, folder
    for f in (*logs, home / "profiles" / "mine.toml", transcript):
        assert _mode(f) == 0o600, f


def test_folders_an_older_version_left_open_are_closed(tmp_path):
    home = tmp_path / "home"
    (home / "conversations").mkdir(parents=True)
    old_log = home / "conversations" / "20200101-000000-abcdef.jsonl"
    old_log.write_text('{"type": "meta"}\n')
    for p, mode in ((home, 0o755), (home / "conversations", 0o755), (old_log, 0o644)):
        p.chmod(mode)
    r = _run_with_umask(home, "infer", "-p", "offline", "hi")
    assert r.returncode == 0, r.stderr
    assert _mode(home / "conversations") == 0o700  # the old 0644 log is out of reach now
    assert _mode(home) == 0o755  # VOICECLI_HOME itself is the user's choice: left alone


def test_existing_world_readable_files_are_tightened_when_written(tmp_path):
    from voicecli import paths

    old = tmp_path / "old.jsonl"
    old.write_text("x\n")
    old.chmod(0o644)
    with paths.open_private(old, "a") as f:
        f.write("y\n")
    assert _mode(old) == 0o600 and old.read_text() == "x\ny\n"
    paths.write_private(tmp_path / "new" / "deep" / "p.toml", "a = 1\n")
    assert _mode(tmp_path / "new") == _mode(tmp_path / "new" / "deep") == 0o700
    assert _mode(tmp_path / "new" / "deep" / "p.toml") == 0o600


# ---- 4. control characters in model-supplied tool arguments ---------------------------------


def test_tool_status_line_escapes_control_characters():
    args = '{"q": "\x1b]0;pwned\x07\x1b[2J\rdone\u202e"}'
    line = result_line(ToolResult("c1", "clock\x1b[31m", args, False, "error: bad\x1b[2J", 3.0))
    assert not any(ch in line for ch in "\x1b\x07\r\u202e")
    assert "\\x1b]0;pwned\\x07\\x1b[2J\\rdone\\u202e" in line and "clock\\x1b[31m" in line
    assert escape_controls("a\nb\tc", keep="\n") == "a\nb\\tc"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_infer_never_prints_raw_control_characters_from_tool_arguments(tmp_path, make_sim, transport):
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"turns": [
        {"tool_calls": [{"name": "clock", "arguments": '{"q": "\x1b]0;pwned\x07\x1b[2J\r"}'}]},
        {"reply": "done"}]}))
    sim = make_sim(script=script)
    r = run_cli(tmp_path, "infer", "-p", "tools-demo", "--base-url", sim.base_url, "-t", transport, "clock")
    assert r.code == 0, r.err
    assert "tool clock" in r.err and "\\x1b]0;pwned\\x07\\x1b[2J\\r" in r.err  # (text mode turns a raw \r into \n)
    assert not any(ch in r.err for ch in "\x1b\x07\r")


def test_chat_approval_prompt_escapes_what_json_leaves_raw(tmp_path, make_sim):
    # valid JSON may carry DEL, C1 (0x9b is CSI on some terminals) and bidi overrides unescaped
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"turns": [
        {"tool_calls": [{"name": "read_file", "arguments": '{"path": "a\u202eb\x9b2J\x7f"}'}]},
        {"reply": "done"}]}, ensure_ascii=False))
    sim = make_sim(script=script)
    r = run_cli(tmp_path, "chat", "-p", "tools-demo", "--base-url", sim.base_url, input="go\nn\n")
    assert r.code == 0, r.err
    shown = r.out + r.err
    assert "wants to run the tool 'read_file'" in shown and "a\\u202eb\\x9b2J\\x7f" in shown
    assert not any(ch in shown for ch in "\u202e\x9b\x7f")


def test_request_headers_check_values_again_right_before_use():
    from voicecli.errors import ConfigError
    from voicecli.profiles import Connection
    from voicecli.transport.base import request_headers

    with pytest.raises(ConfigError) as info:
        request_headers(Connection(), "sk-direct-secret\r\nX-Evil: 1")
    assert info.value.message.startswith("the API key contains a line break")
    assert "direct-secret" not in info.value.message
    with pytest.raises(ConfigError, match=r"connection.headers.X-A contains a control character \(\\x1b\)"):
        request_headers(Connection(headers={"X-A": "a\x1b[2J"}), None)
