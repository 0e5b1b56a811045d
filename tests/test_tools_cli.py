"""Tools through the real CLI (subprocesses against the simulator): `infer` approval flags, what
it shows and records, `tools list` and `tools run`."""

from __future__ import annotations

import json
import sys

import pytest

from clihelp import run_cli

PY = json.dumps(sys.executable)
TOOLS = f"""extends = "offline"
[[tools]]
name = "asky"
description = "Says it ran."
command = [{PY}, "-c", "print('asked and ran')"]
[[tools]]
name = "echo"
command = [{PY}, "-c", "import sys; print(sys.argv[1])", "{{text}}"]
approval = "auto"
"""


@pytest.fixture
def home(tmp_path):
    return tmp_path


@pytest.fixture
def profile(tmp_path):
    path = tmp_path / "tools.toml"
    path.write_text(TOOLS)
    return str(path)


def infer(home, sim, profile, *args):
    return run_cli(home, "infer", "-p", profile, "--base-url", sim.base_url, *args)


@pytest.mark.parametrize("transport", ["ws", "sse", "chat"])
def test_infer_denies_ask_tools_without_a_flag_and_says_so(home, sim, profile, transport):
    r = infer(home, sim, profile, "-t", transport, "asky")
    assert r.code == 0, r.err
    assert r.out.startswith("Tool asky returned: denied: tool 'asky' needs the user's approval")
    assert "tool asky {} ·" in r.err and "· denied:" in r.err and "--allow-tool asky" in r.err


@pytest.mark.parametrize("flags", [["--allow-tool", "asky"], ["--yes"], ["-y"]])
def test_allow_tool_and_yes_run_ask_tools(home, sim, profile, flags):
    r = infer(home, sim, profile, *flags, "asky")
    assert (r.code, r.out) == (0, "Tool asky returned: asked and ran.\n"), r.err
    assert "tool asky {} ·" in r.err and r.err.rstrip().endswith("· ok")


def test_allow_tool_must_name_a_tool(home, sim, profile):
    r = infer(home, sim, profile, "--allow-tool", "askee", "asky")
    assert r.code == 2 and "no tool named 'askee'" in r.err and "asky, echo" in r.err


@pytest.mark.slow
def test_events_json_and_the_conversation_log_record_each_call(home, sim, profile):
    r = infer(home, sim, profile, "--events", 'echo {"text": "a \\"quoted\\" $(word)"}')
    assert r.code == 0, r.err
    events = [json.loads(line) for line in r.out.splitlines()]
    (result,) = [e for e in events if e["type"] == "tool_result"]
    assert (result["name"], result["ok"], result["output"]) == ("echo", True, 'a "quoted" $(word)')
    assert result["duration_ms"] >= 0 and json.loads(result["arguments"]) == {"text": 'a "quoted" $(word)'}
    r = infer(home, sim, profile, "--json", "-c", "echo and asky {\"text\": \"x\"}")
    data = json.loads(r.out)
    assert [(t["name"], t["ok"]) for t in data["tool_results"]] == [("asky", False), ("echo", True)]
    (log,) = (home / "conversations").glob("*.jsonl")
    records = [json.loads(line) for line in log.read_text().splitlines()]
    logged = [(x["name"], x["ok"]) for x in records if x["type"] == "tool_result"]
    assert logged == [("echo", True), ("asky", False), ("echo", True)]
    outputs = [x["item"]["output"] for x in records if x["type"] == "item" and x["item"]["kind"] == "function_output"]
    assert outputs[0] == 'a "quoted" $(word)' and outputs[1].startswith("denied:")


def test_max_tool_rounds_exit_code(home, make_sim, profile, tmp_path):
    script = tmp_path / "loop.json"
    script.write_text(json.dumps({"turns": [{"tool_calls": [{"name": "echo", "arguments": {"text": "x"}}]}] * 3}))
    sim = make_sim(script=script)
    r = infer(home, sim, profile, "-o", "max_tool_rounds=2", "go")
    assert r.code == 8 and "stopped after 2 tool rounds" in r.err


def test_hosted_tools_refused_on_chat_and_progress_shown_on_sse(home, make_sim, tmp_path, traffic_dir):
    path = tmp_path / "hosted.toml"
    path.write_text('extends = "offline"\n[[tools]]\ntype = "web_search"\n')
    script = tmp_path / "s.json"
    script.write_text(json.dumps({"turns": [{"replay": str(traffic_dir / "responses_sse_web_search_01.sse")}]}))
    sim = make_sim(script=script)
    r = infer(home, sim, str(path), "-t", "chat", "news?")
    assert r.code == 3 and "web_search tool works only with the Responses API" in r.err and "-t ws" in r.err
    r = infer(home, sim, str(path), "-t", "sse", "news?")
    assert r.code == 0, r.err
    assert "[web_search: searching]" in r.err and "[web_search: completed]" in r.err


def test_tools_list_shows_policy_and_each_dialect(home, profile):
    r = run_cli(home, "tools", "list", "-p", profile)
    assert r.code == 0, r.err
    blocks = r.out.split("\n\n")
    assert blocks[0].startswith("asky  ·  approval: ask  ·  timeout: 30 s")
    assert "Says it ran." in blocks[0]
    lines = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip() for line in blocks[1].splitlines()[2:]}
    assert json.loads(lines["responses"])["strict"] is True
    assert json.loads(lines["chat"])["function"]["parameters"]["required"] == ["text"]
    assert "strict" not in json.loads(lines["realtime"])
    r = run_cli(home, "tools", "list", "-p", "tools-demo")
    assert r.code == 0 and "convert_units  ·  approval: auto" in r.out and "read_file  ·  approval: ask" in r.out


@pytest.mark.slow
def test_tools_run(home, profile):
    r = run_cli(home, "tools", "run", "echo", '{"text": "; rm -rf ~"}', "-p", profile)
    assert (r.code, r.out) == (0, "; rm -rf ~\n")
    r = run_cli(home, "tools", "run", "asky", "-p", profile)  # typing the command is the approval
    assert (r.code, r.out) == (0, "asked and ran\n")
    r = run_cli(home, "tools", "run", "echo", "{}", "-p", profile)
    assert r.code == 1 and "'text' is a required property" in r.err
    r = run_cli(home, "tools", "run", "nope", "-p", profile)
    assert r.code == 2 and "no local tool named 'nope'" in r.err
    r = run_cli(home, "tools", "run", "convert_units", '{"value": 0, "from_unit": "c", "to_unit": "f"}', "-p", "tools-demo")
    assert (r.code, json.loads(r.out)) == (0, {"value": 32.0, "unit": "f"})
