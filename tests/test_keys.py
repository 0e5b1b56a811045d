"""`voicecli keys`: keys stored 0600 and used when a profile's variable is unset; never shown."""

from __future__ import annotations

import json
import os
import stat
import sys

import pexpect
import pytest

from clihelp import cli_env, run_cli

SECRET = "sk-stored-key-0123456789abcdef"


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


def requests_with_key(sim) -> list:
    return [e for e in sim.log if e.get("credentials")]


@pytest.mark.slow
def test_a_stored_key_is_used_when_the_variable_is_unset(home, make_sim):
    sim = make_sim(api_key=SECRET)
    r = run_cli(home, "keys", "set", "OPENAI_API_KEY", input=SECRET + "\n")
    assert r.code == 0 and SECRET not in r.out + r.err and "stored OPENAI_API_KEY" in r.err
    path = home / "keys.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(home.stat().st_mode) & 0o077 == 0
    assert json.loads(path.read_text()) == {"OPENAI_API_KEY": SECRET}
    r = run_cli(home, "infer", "-t", "sse", "--base-url", sim.base_url, "hi")
    assert (r.code, r.out) == (0, "You said: hi\n"), r.err
    r = run_cli(home, "infer", "-t", "sse", "--base-url", sim.base_url, "-o", "connection.max_retries=0", "hi",
                OPENAI_API_KEY="sk-from-the-environment")  # the environment wins
    assert r.code == 4, r.err
    r = run_cli(home, "keys", "list")
    assert (r.code, r.out) == (0, "OPENAI_API_KEY\n")
    assert run_cli(home, "keys", "list", "--json").out.strip() == '[{"name": "OPENAI_API_KEY", "shadowed_by_env": false}]'
    assert run_cli(home, "keys", "path").out == f"{path}\n"


def test_a_missing_key_says_how_to_store_it(home):
    r = run_cli(home, "infer", "hi")
    assert r.code == 3 and "voicecli keys set OPENAI_API_KEY" in r.err


def test_keys_set_on_a_terminal_does_not_echo(home):
    child = pexpect.spawn(sys.executable, ["-m", "voicecli", "keys", "set", "MY_KEY"], env=cli_env(home),
                          encoding="utf-8", timeout=30)
    child.expect("MY_KEY \\(input hidden\\): ")
    child.sendline(SECRET)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0 and SECRET not in child.before
    assert json.loads((home / "keys.json").read_text()) == {"MY_KEY": SECRET}


@pytest.mark.parametrize("value, words", [(" sk-padded ", "whitespace"), ("\n", "no key given"),
                                          ("sk-a\x1bb", "control character")])
def test_a_bad_key_is_refused_and_nothing_is_stored(home, value, words):
    r = run_cli(home, "keys", "set", "K", input=value)
    assert r.code == 2 and words in r.err and "nothing was stored" in r.err, r.err
    assert value.strip() not in r.err or not value.strip()
    assert not (home / "keys.json").exists()


def test_names_rm_and_a_broken_file(home):
    assert run_cli(home, "keys", "set", "not a name", input="x\n").code == 2
    run_cli(home, "keys", "set", "A", input="sk-a\n")
    run_cli(home, "keys", "set", "B", input="sk-b\n")
    r = run_cli(home, "keys", "rm", "A", "C")
    assert r.code == 2 and "no stored key named C" in r.err
    assert json.loads((home / "keys.json").read_text()) == {"B": "sk-b"}
    (home / "keys.json").write_text('{"B": "sk-b",')  # truncated by hand
    r = run_cli(home, "keys", "list")
    assert r.code == 3 and "keys.json is not valid JSON (line 1)" in r.err and "sk-b" not in r.err
    assert not [name for name in os.listdir(home) if name.endswith(".tmp")]
