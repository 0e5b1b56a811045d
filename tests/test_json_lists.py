"""`--json` on the listing commands: profiles list/show, tools list, devices (the real CLI)."""

from __future__ import annotations

import json

import pytest

from clihelp import run_cli


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "home"
    (home / "profiles").mkdir(parents=True)
    return home


def as_json(r):
    assert r.code == 0, r.err
    return json.loads(r.out)


def test_profiles_list_json(home):
    (home / "profiles" / "broken.toml").write_text("[model]\ntemprature = 1\n")
    (home / "profiles" / "mine.toml").write_text('extends = "offline"\ndescription = "mine"\n[model]\nname = "m1"\n')
    rows = {p["name"]: p for p in as_json(run_cli(home, "profiles", "list", "--json"))}
    assert rows["mine"] == {"name": "mine", "source": "user", "path": str(home / "profiles" / "mine.toml"),
                            "model": "m1", "transport": "ws", "description": "mine", "error": None}
    assert rows["offline"]["source"] == "builtin" and rows["offline"]["model"] == "sim-1"
    assert rows["broken"]["model"] is None and "unknown key 'model.temprature'" in rows["broken"]["error"]


@pytest.mark.slow
def test_profiles_show_json_redacts_like_the_toml_form(home):
    (home / "profiles" / "p.toml").write_text(
        'extends = "default"\n[connection]\napi_key_env = "MY_KEY"\n'
        'headers = { Authorization = "Bearer sk-live-secret", X-Team = "blue" }\n')
    data = as_json(run_cli(home, "profiles", "show", "p", "--json", MY_KEY="sk-env-secret"))
    assert data["name"] == "p" and data["source"] == "user"
    assert data["api_key"] == {"variable": "MY_KEY", "needed": True, "set": True}
    assert data["settings"]["connection"]["headers"] == {"Authorization": "***", "X-Team": "***"}  # every header value
    assert data["settings"]["model"]["name"] == "gpt-5.5"
    raw = run_cli(home, "profiles", "show", "p", "--json", MY_KEY="sk-env-secret").out
    assert "sk-live-secret" not in raw and "sk-env-secret" not in raw
    assert as_json(run_cli(home, "profiles", "show", "p", "--json"))["api_key"]["set"] is False
    offline = as_json(run_cli(home, "profiles", "show", "offline", "--json"))
    assert offline["api_key"] == {"variable": None, "needed": False, "set": False}
    r = run_cli(home, "profiles", "show", "nosuch", "--json")
    assert r.code == 3 and r.out == ""


def test_tools_list_json(home):
    (home / "profiles" / "t.toml").write_text(
        'extends = "offline"\n'
        '[[tools]]\nname = "greet"\ndescription = "Say hi"\ncommand = ["echo", "hi", "{who}"]\n'
        '[[tools]]\ntype = "web_search"\n')
    tools = {t["name"]: t for t in as_json(run_cli(home, "tools", "list", "-p", "t", "--json"))}
    greet = tools["greet"]
    assert greet["approval"] == "ask" and greet["command"] == ["echo", "hi", "{who}"] and greet["timeout"] == 30
    assert greet["parameters"]["required"] == ["who"]
    assert greet["dialects"]["chat"]["function"]["name"] == "greet" and greet["dialects"]["realtime"]["name"] == "greet"
    assert greet["unavailable"] == {}
    search = tools["web_search"]
    assert search["dialects"]["responses"] == {"type": "web_search"} and search["dialects"]["chat"] is None
    assert "only with the Responses API" in search["unavailable"]["chat"]
    assert as_json(run_cli(home, "tools", "list", "-p", "offline", "--json")) == []


def test_devices_json(home, tmp_path):
    fake = tmp_path / "fakes"
    fake.mkdir()
    # a stand-in for PortAudio's device list (the test machine may have no sound devices)
    (fake / "sounddevice.py").write_text(
        "class PortAudioError(Exception):\n    pass\n"
        "class _Default:\n    device = (0, 1)\n"
        "default = _Default()\n"
        "def query_devices():\n"
        "    return [{'name': 'Mic', 'max_input_channels': 1, 'max_output_channels': 0, 'default_samplerate': 48000.0},\n"
        "            {'name': 'Speakers', 'max_input_channels': 0, 'max_output_channels': 2, 'default_samplerate': 44100.0}]\n")
    data = as_json(run_cli(home, "devices", "--json", PYTHONPATH=str(fake)))
    assert data == [
        {"index": 0, "name": "Mic", "input_channels": 1, "output_channels": 0, "default_samplerate": 48000.0,
         "default_input": True, "default_output": False, "api": "portaudio"},
        {"index": 1, "name": "Speakers", "input_channels": 0, "output_channels": 2, "default_samplerate": 44100.0,
         "default_input": False, "default_output": True, "api": "portaudio"}]
