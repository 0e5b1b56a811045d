"""Shell completion of values, through the real protocol (bash: COMP_WORDS/COMP_CWORD), and chat's
Tab completion of /model from the cache `voicecli models` writes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest

from clihelp import cli_env, run_cli

VOICECLI = Path(sys.executable).parent / "voicecli"  # the console script: completion keys on its name
BUILTIN_PROFILES = ["cascade", "compatible", "default", "local-voice", "offline", "sse", "tools-demo"]


def complete(home, line: str, **env) -> list[str]:
    """What bash would offer for the last word of `line` (a trailing space: a new, empty word)."""
    words = line.split()
    cword = len(words) if line.endswith(" ") else len(words) - 1
    proc = subprocess.run([str(VOICECLI)], capture_output=True, text=True, timeout=60,
                          env=cli_env(home, _VOICECLI_COMPLETE="complete_bash", COMP_WORDS=line,
                                      COMP_CWORD=str(cword), **env))
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return proc.stdout.split()


@pytest.mark.slow
def test_profile_names_for_p_and_the_profiles_commands(tmp_path):
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "work.toml").write_text('extends = "default"\n')
    assert complete(tmp_path, "voicecli infer -p ") == sorted(BUILTIN_PROFILES + ["work"])
    assert complete(tmp_path, "voicecli chat --profile o") == ["offline"]
    assert complete(tmp_path, "voicecli talk -p w") == ["work"]
    assert complete(tmp_path, "voicecli models -p s") == ["sse"]
    assert complete(tmp_path, "voicecli profiles show t") == ["tools-demo"]
    assert complete(tmp_path, "voicecli profiles set w") == ["work"]
    assert complete(tmp_path, "voicecli profiles new mine --from co") == ["compatible"]


def test_transport_vad_and_setting_keys(tmp_path):
    assert complete(tmp_path, "voicecli infer -t ") == ["ws", "sse", "chat"]
    assert complete(tmp_path, "voicecli chat --transport s") == ["sse"]
    assert complete(tmp_path, "voicecli talk --vad ") == ["server", "semantic", "off"]
    assert complete(tmp_path, "voicecli talk --engine ") == ["realtime", "cascade"]
    keys = complete(tmp_path, "voicecli profiles set default voice.v")
    assert "voice.voice" in keys and all(k.startswith("voice.v") for k in keys)


@pytest.mark.slow
def test_models_come_from_the_profiles_and_the_cache_never_the_network(tmp_path, sim):
    line = f"voicecli infer -p offline --base-url {sim.base_url} -m "
    before = complete(tmp_path, line)
    assert "sim-1" in before and "gpt-5.5" in before and "sim-mini" not in before  # profiles only
    assert not [e for e in sim.log if e.get("endpoint", "").startswith("/v1/")]  # no request
    r = run_cli(tmp_path, "models", "-p", "offline", "--base-url", sim.base_url)
    assert r.code == 0, r.err
    sim.reset()
    after = complete(tmp_path, line)
    assert {"sim-mini", "sim-realtime", "sim-tts", "gpt-5.5"} <= set(after)
    assert complete(tmp_path, line + "sim-t") == ["sim-transcribe", "sim-tts"]
    assert not [e for e in sim.log if e.get("endpoint", "").startswith("/v1/")]
    # another base URL has its own list; a day-old list is no longer offered
    assert "sim-mini" not in complete(tmp_path, "voicecli chat -p offline --base-url http://127.0.0.1:9/v1 -m ")
    [cached] = (tmp_path / "cache" / "models").glob("*.json")
    data = json.loads(cached.read_text())
    cached.write_text(json.dumps({**data, "fetched": time.time() - 25 * 3600}))
    assert "sim-mini" not in complete(tmp_path, line)


def test_a_broken_profile_still_completes_what_it_can(tmp_path):
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "bad.toml").write_text("this is [not toml\n")
    assert "bad" in complete(tmp_path, "voicecli infer -p ")
    models = complete(tmp_path, "voicecli infer -p bad -m ")
    assert "gpt-5.5" in models


def test_chat_tab_completes_model_names_from_the_cache(tmp_path, sim):
    r = run_cli(tmp_path, "models", "-p", "offline", "--base-url", sim.base_url)
    assert r.code == 0, r.err
    child = pexpect.spawn(sys.executable, ["-m", "voicecli", "chat", "-p", "offline", "--base-url", sim.base_url],
                          env={**cli_env(tmp_path), "TERM": "xterm-256color", "PROMPT_TOOLKIT_NO_CPR": "1"},
                          dimensions=(40, 120), encoding="utf-8", timeout=60)
    child.expect_exact("\x1b[?2004h")
    child.send("/model sim-mi")
    child.expect("sim-mini")  # the completion menu offers it
    child.send("\t\r")
    child.expect("model: sim-mini")
    child.expect_exact("\x1b[?2004h")
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
