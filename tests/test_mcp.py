"""MCP servers as tools, end to end: the real CLI against the simulator, with a real MCP server
(tests/mcp_server.py, written with the SDK) over stdio and over Streamable HTTP on loopback, and
the recorded real MCP traffic (tests/traffic/mcp_* and ../shared/traffic-audio/mcp_*)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from clihelp import cli_env, installed, run_cli, wait_for
from shared_data import recording
from voicecli.mcp import call_output, offered_name, tool_defs
from voicecli.profiles import McpServerDef

# Looked up, not imported: importing the SDK costs each test worker 1.4 s of CPU at collection
pytestmark = pytest.mark.skipif(not installed("mcp"), reason="the mcp package is not installed")

TESTS = Path(__file__).parent
SERVER = TESTS / "mcp_server.py"
TRANSPORTS = ["ws", "sse", "chat"]


def server_argv(mode: str, tag: str) -> list[str]:
    return [sys.executable, str(SERVER), mode, tag]


def leftovers(tag: str) -> list[int]:
    """Processes whose command line carries `tag`: there must be none once voicecli has exited."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if tag.encode() in argv:
                found.append(int(entry.name))
    return found


def toml_value(value) -> str:
    return json.dumps(value)  # JSON strings and arrays of strings are valid TOML


def mcp_table(name: str, **keys) -> str:
    lines = ["[[mcp]]", f"name = {toml_value(name)}"]
    for key, value in keys.items():
        if isinstance(value, dict):
            inner = ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items())
            lines.append(f"{key} = {{ {inner} }}")
        elif isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        else:
            lines.append(f"{key} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def tag() -> str:
    return f"voicecli-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_profile(tmp_path, tag):
    """make_profile(*tables) → path of a profile extending `offline` with those [[mcp]] tables."""
    def make(*tables: str, extra: str = "") -> str:
        path = tmp_path / f"mcp-{uuid.uuid4().hex[:6]}.toml"
        path.write_text('extends = "offline"\n' + extra + "".join(tables))
        return str(path)
    return make


@pytest.fixture
def stdio(tag):
    """The test server over stdio, auto-approved unless told otherwise."""
    def table(name: str = "t", mode: str = "stdio", **keys) -> str:
        keys.setdefault("approval", "auto")
        return mcp_table(name, command=server_argv(mode, tag), **keys)
    return table


@pytest.fixture
def http_server(tag):
    """The test server over Streamable HTTP on 127.0.0.1 (ephemeral port): its URL."""
    proc = subprocess.Popen(server_argv("http", tag), stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()


def infer(home, sim, profile, *args, **env):
    return run_cli(home, "infer", "-p", profile, "--base-url", sim.base_url, *args, **env)


# ---- calling tools through every transport ------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.slow
def test_the_model_calls_a_stdio_server_tool(tmp_path, sim, make_profile, stdio, tag, transport):
    profile = make_profile(stdio())
    r = infer(tmp_path, sim, profile, "-t", transport, 'please t__add {"a": 2, "b": 40}')
    assert (r.code, r.out) == (0, "Tool t__add returned: 42.\n"), r.err
    assert 'tool t__add {"a": 2, "b": 40} ·' in r.err and r.err.rstrip().endswith("· ok")
    assert leftovers(tag) == []  # the server was stopped when infer ended


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.slow
def test_the_model_calls_a_streamable_http_server_tool(tmp_path, sim, make_profile, http_server, transport):
    profile = make_profile(mcp_table("web", url=http_server, approval="auto",
                                     headers={"X-Probe": "${PROBE_VALUE}"}))
    r = infer(tmp_path, sim, profile, "-t", transport, 'web__add and web__header {"a": 1, "b": 2, "name": "x-probe"}',
              PROBE_VALUE="from-the-environment")
    assert r.code == 0, r.err
    assert r.out == "Tool web__add returned: 3. Tool web__header returned: from-the-environment.\n", r.err
    assert "from-the-environment" not in r.err  # header values are never shown


@pytest.mark.slow
def test_an_unset_header_variable_is_one_line_and_the_session_goes_on(tmp_path, sim, make_profile, http_server,
                                                                       stdio):
    profile = make_profile(mcp_table("web", url=http_server, headers={"Authorization": "Bearer ${NO_SUCH_VAR_X}"}),
                           stdio())
    r = infer(tmp_path, sim, profile, 't__add {"a": 1, "b": 1}')
    assert (r.code, r.out) == (0, "Tool t__add returned: 2.\n"), r.err
    assert "voicecli: MCP server 'web': header Authorization uses $NO_SUCH_VAR_X, which is not set" in r.err


@pytest.mark.slow
def test_the_server_gets_a_minimal_environment_plus_what_the_profile_lists(tmp_path, sim, make_profile, stdio):
    profile = make_profile(stdio(env={"GREETING": "hello $USER_WORD"}))
    r = infer(tmp_path, sim, profile, '--json', 't__env {"name": "GREETING"}',
              OPENAI_API_KEY="sk-test-secret-value-123", USER_WORD="world")
    assert [t["output"] for t in json.loads(r.out)["tool_results"]] == ["hello world"], r.err
    r = infer(tmp_path, sim, profile, 't__env {"name": "OPENAI_API_KEY"}', OPENAI_API_KEY="sk-test-secret-value-123")
    assert r.out == "Tool t__env returned: <unset>.\n", r.err


@pytest.mark.slow
def test_results_errors_images_and_timeouts(tmp_path, make_sim, make_profile, stdio):
    sim = make_sim()
    profile = make_profile(stdio(timeout=1))
    r = infer(tmp_path, sim, profile, "--json", "-t", "sse",
              't__fail t__slow t__image {"message": "the disk is full", "seconds": 30}')
    assert r.code == 0, r.err
    results = {t["name"]: t for t in json.loads(r.out)["tool_results"]}
    assert results["t__fail"]["ok"] is False and "the disk is full" in results["t__fail"]["output"]
    assert results["t__slow"] == {**results["t__slow"], "ok": False,
                                  "output": "error: t__slow did not finish within 1 s"}
    assert results["t__image"]["ok"] and results["t__image"]["output"] == "[image: image/png, 70 bytes]"
    # Responses carries the image itself, as a data URL after the text
    outputs = [i for body in _bodies(sim) for i in body.get("input", []) if i.get("type") == "function_call_output"]
    image = next(i["output"] for i in outputs if isinstance(i["output"], list))
    assert image[0] == {"type": "input_text", "text": "[image: image/png, 70 bytes]"}
    assert image[1]["type"] == "input_image" and image[1]["image_url"].startswith("data:image/png;base64,iVBOR")
    # the server survives a timed-out call
    r = infer(tmp_path, sim, profile, "-t", "chat", 't__add {"a": 1, "b": 1} t__image')
    assert r.out == "Tool t__add returned: 2. Tool t__image returned: [image: image/png, 70 bytes]\n" \
                    "[images left out: Chat Completions tool results carry text only; use -t ws or -t sse].\n", r.err


@pytest.mark.slow
def test_a_server_that_dies_mid_session_gives_error_results(tmp_path, sim, make_profile, stdio, tag):
    profile = make_profile(stdio())
    lines = "t__die\nt__add {\"a\": 1, \"b\": 1}\n/exit\n"
    r = run_cli(tmp_path, "chat", "-p", profile, "--base-url", sim.base_url, input=lines)
    assert r.code == 0, r.err
    first, second = r.out.splitlines()
    assert first == "Tool t__die returned: error: MCP server 't' has stopped (the connection closed)."
    assert second.startswith("Tool t__add returned: error: MCP server 't'")
    assert leftovers(tag) == []


def _bodies(sim) -> list[dict]:
    return [e["body"] for e in list(sim.log) if isinstance(e.get("body"), dict) and "input" in e["body"]]


# ---- approval -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_approval_is_asked_by_default_and_per_tool_overrides_apply(tmp_path, sim, make_profile, stdio):
    profile = make_profile(stdio(approval="ask", tool_approval={"pid": "never", "env": "auto"},
                                 exclude_tools=["slow"]))
    r = infer(tmp_path, sim, profile, 't__add {"a": 1, "b": 1}')
    assert r.out.startswith("Tool t__add returned: denied: tool 't__add' needs the user's approval"), r.err
    assert "--allow-tool t__add" in r.out
    r = infer(tmp_path, sim, profile, "--allow-tool", "t__add", 't__add {"a": 1, "b": 1}')
    assert r.out == "Tool t__add returned: 2.\n", r.err
    r = infer(tmp_path, sim, profile, "--yes", 't__pid and t__env {"name": "NOPE"}')  # one JSON for both
    assert r.out == ("Tool t__env returned: <unset>. "  # the calls come in the order the tools are listed
                     "Tool t__pid returned: denied: tool 't__pid' is disabled (approval = \"never\").\n"), r.err
    r = infer(tmp_path, sim, profile, "--yes", 't__slow {"seconds": 0}')
    assert r.out == 'You said: t__slow {"seconds": 0}\n'  # excluded: not offered to the model at all
    r = infer(tmp_path, sim, profile, "--allow-tool", "x__add", "hi")
    assert r.code == 2 and "no tool named 'x__add'" in r.err


@pytest.mark.slow
def test_chat_asks_before_an_mcp_tool_runs(tmp_path, sim, make_profile, stdio, tag):
    profile = make_profile(stdio(approval="ask"))
    lines = 't__add {"a": 5, "b": 5}\nn\nnot today\nt__add {"a": 6, "b": 6}\ny\n'
    r = run_cli(tmp_path, "chat", "-p", profile, "--base-url", sim.base_url, input=lines)
    assert r.code == 0, r.err
    assert "The model wants to run the tool 't__add'" in r.err
    assert "runs on: MCP server 't' (" in r.err and "), tool add" in r.err
    assert r.out == "Tool t__add returned: denied: not today.\nTool t__add returned: 12.\n"
    assert leftovers(tag) == []


# ---- bad servers ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_bad_servers_cost_one_line_each_and_the_session_goes_on(tmp_path, sim, make_profile, stdio, tag):
    profile = make_profile(
        stdio(),
        mcp_table("missing", command=["voicecli-no-such-program", tag]),
        stdio("crashy", "crash"),
        stdio("stuck", "hang", startup_timeout=1),
        stdio("odd", "badschema"))
    r = infer(tmp_path, sim, profile, 't__add odd__broken odd__add {"a": 1, "b": 2}')
    assert r.code == 0, r.err
    assert r.out == "Tool t__add returned: 3. Tool odd__add returned: 3.\n"
    errors = [line for line in r.err.splitlines() if line.startswith("voicecli: MCP server")]
    assert errors == [
        "voicecli: MCP server 'missing': cannot start voicecli-no-such-program: No such file or directory; "
        "its tools are left out",
        "voicecli: MCP server 'crashy': exited while starting: fatal: the test server was told to crash; "
        "its tools are left out",
        "voicecli: MCP server 'stuck': did not start and list its tools within 1 s (startup_timeout); "
        "its tools are left out",
        "voicecli: MCP server 'odd': tool 'broken' has an invalid input schema (parameters.properties.x.type: "
        "'strang' is not a JSON type (object, array, string, number, integer, boolean, null)); left out",
    ], r.err
    assert "Traceback" not in r.err
    assert leftovers(tag) == []


@pytest.mark.parametrize("mode", ["crash", "hang", "missing"])
@pytest.mark.slow
def test_require_mcp_makes_a_bad_server_exit_3(tmp_path, sim, make_profile, stdio, tag, mode):
    bad = mcp_table("bad", command=["voicecli-no-such-program", tag]) if mode == "missing" \
        else stdio("bad", mode, startup_timeout=1)
    profile = make_profile(stdio(), bad)
    r = infer(tmp_path, sim, profile, "--require-mcp", 't__add {"a": 1, "b": 2}')
    assert r.code == 3 and r.out == "", r.err
    assert r.err.startswith("voicecli: MCP server 'bad': ") and "Traceback" not in r.err
    assert list(sim.log) == []  # nothing was sent
    assert leftovers(tag) == []
    r = run_cli(tmp_path, "chat", "-p", profile, "--base-url", sim.base_url, "--require-mcp", input="hi\n")
    assert r.code == 3 and "MCP server 'bad'" in r.err
    assert leftovers(tag) == []


def test_a_profile_with_mcp_says_how_to_install_the_sdk(tmp_path, sim, make_profile, stdio):
    fake = tmp_path / "fakes" / "mcp"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named mcp')\n")
    r = infer(tmp_path, sim, make_profile(stdio()), "hi", PYTHONPATH=str(fake.parent))
    assert r.code == 3
    assert r.err.splitlines()[0] == ("voicecli: this profile declares [[mcp]] servers, but the mcp package (2.x) "
                                     "is not installed")
    assert "pip install 'voicecli[mcp]'" in r.err


# ---- shutdown ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.slow
def test_a_signal_during_a_tool_call_leaves_no_server_behind(tmp_path, sim, make_profile, stdio, tag, sig):
    mark = tmp_path / "started"
    profile = make_profile(stdio(), stdio("u", timeout=120))
    proc = subprocess.Popen(
        [sys.executable, "-m", "voicecli", "infer", "-p", profile, "--base-url", sim.base_url,
         f'u__slow {{"seconds": 600, "mark": "{mark}"}}'],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env(tmp_path))
    try:
        wait_for(mark.exists, 60)
        assert len(leftovers(tag)) == 2
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == (143 if sig == signal.SIGTERM else 130), err  # SIGTERM is handled like Ctrl-C
    assert b"Traceback" not in err
    assert leftovers(tag) == []


@pytest.mark.slow
def test_sigterm_to_an_idle_chat_stops_its_servers(tmp_path, sim, make_profile, stdio, tag):
    profile = make_profile(stdio(), stdio("u"))
    proc = subprocess.Popen([sys.executable, "-m", "voicecli", "chat", "-p", profile, "--base-url", sim.base_url],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=cli_env(tmp_path))
    try:
        wait_for(lambda: len(leftovers(tag)) == 2, 60)  # both servers spawned: their stop is voicecli's job
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 143 and b"Traceback" not in err, err  # handled like Ctrl-C, then leaves
    assert leftovers(tag) == []


@pytest.mark.slow
def test_a_server_that_ignores_eof_and_sigterm_is_still_stopped(tmp_path, sim, make_profile, tag):
    # a wrapper that starts the real server as a grandchild and ignores SIGTERM itself
    wrapper = tmp_path / "stubborn.py"
    wrapper.write_text(
        "import signal, subprocess, sys\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"sys.exit(subprocess.call({server_argv('stdio', tag)!r}))\n")
    profile = make_profile(mcp_table("s", command=[sys.executable, str(wrapper), tag], approval="auto"))
    r = infer(tmp_path, sim, profile, 's__add {"a": 1, "b": 1}')
    assert r.out == "Tool s__add returned: 2.\n", r.err
    assert leftovers(tag) == []


# ---- tools list / tools run ---------------------------------------------------------------------------


@pytest.mark.slow
def test_tools_list_and_run(tmp_path, make_profile, stdio, tag):
    profile = make_profile(stdio(tools=["add", "image", "nothere"]),
                           extra='[[tools]]\nname = "local"\ncommand = ["echo", "hi"]\n')
    r = run_cli(tmp_path, "tools", "list", "-p", profile)
    assert r.code == 0, r.err
    blocks = r.out.split("\n\n")
    assert [b.split("  ·")[0] for b in blocks] == ["local", "t__add", "t__image"]
    assert blocks[1].startswith("t__add  ·  approval: auto  ·  timeout: 60 s\n  MCP server 't' (")
    assert "), tool add\n  Add two integers." in blocks[1]
    spec = json.loads(blocks[1].split("responses: ", 1)[1].splitlines()[0])
    assert spec["strict"] is False and spec["parameters"]["required"] == ["a", "b"] and "$schema" not in spec
    assert "voicecli: MCP server 't': tools lists 'nothere', which the server does not offer" in r.err
    r = run_cli(tmp_path, "tools", "run", "t__add", '{"a": 20, "b": 22}', "-p", profile)
    assert (r.code, r.out) == (0, "42\n"), r.err
    r = run_cli(tmp_path, "tools", "run", "t__image", "-p", profile)
    assert r.code == 0 and r.out.splitlines()[1].startswith("data:image/png;base64,")
    r = run_cli(tmp_path, "tools", "run", "t__add", '{"a": "x"}', "-p", profile)
    assert r.code == 1 and "a: 'x' is not of type 'integer'" in r.err and "'b' is a required property" in r.err
    r = run_cli(tmp_path, "tools", "run", "t__slow", '{"seconds": 0}', "-p", profile)
    assert r.code == 2 and "has no tool offered as 't__slow'" in r.err and "t__add, t__image" in r.err
    assert leftovers(tag) == []


# ---- talk --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_talk_offers_mcp_tools_and_calls_them_on_a_typed_line(tmp_path, sim, make_profile, stdio, tag):
    from test_talk import realtime_events, speech_wav

    profile = make_profile(stdio())
    wav = speech_wav(tmp_path / "in.wav", [("silence", 1.0)])
    r = run_cli(tmp_path, "talk", "-p", profile, "--base-url", sim.base_url, "--input", str(wav),
                "--output", str(tmp_path / "o.wav"), input='t__add {"a": 3, "b": 4}\n', timeout=90)
    assert r.code == 0, r.err
    update = next(e for e in realtime_events(sim) if e["type"] == "session.update")
    assert "t__add" in [t["name"] for t in update["session"]["tools"]]
    output = next(e["item"] for e in realtime_events(sim) if e["type"] == "conversation.item.create"
                  and e["item"]["type"] == "function_call_output")
    assert output["output"] == "7"
    assert "assistant: Tool t__add returned: 7." in r.out
    assert leftovers(tag) == []


@pytest.mark.slow
def test_talk_with_require_mcp_exits_3_for_a_bad_server(tmp_path, sim, make_profile, stdio, tag):
    from test_talk import speech_wav

    wav = speech_wav(tmp_path / "in.wav", [("silence", 0.5)])
    r = run_cli(tmp_path, "talk", "-p", make_profile(stdio("bad", "crash")), "--base-url", sim.base_url,
                "--input", str(wav), "--output", str(tmp_path / "o.wav"), "--require-mcp", input="")
    assert r.code == 3 and "MCP server 'bad': exited while starting: fatal:" in r.err, r.err
    assert "Traceback" not in r.err and leftovers(tag) == []


# ---- the hosted (remote) MCP tool of the Responses API ------------------------------------------------


@pytest.mark.slow
def test_hosted_mcp_tool_passes_through_on_responses_and_is_refused_on_chat(tmp_path, sim, make_profile):
    profile = make_profile(extra=(
        '[[tools]]\ntype = "mcp"\nserver_label = "deepwiki"\nserver_url = "https://mcp.deepwiki.com/mcp"\n'
        'require_approval = "never"\nheaders = { Authorization = "Bearer ${DW_TOKEN}" }\n'))
    r = infer(tmp_path, sim, profile, "-t", "sse", "hello", DW_TOKEN="dw-secret-token")
    assert r.code == 0, r.err
    (tool,) = _bodies(sim)[-1]["tools"]
    assert tool == {"type": "mcp", "server_label": "deepwiki", "server_url": "https://mcp.deepwiki.com/mcp",
                    "require_approval": "never", "headers": {"Authorization": "Bearer dw-secret-token"}}
    r = infer(tmp_path, sim, profile, "-t", "chat", "hello", DW_TOKEN="dw-secret-token")
    assert r.code == 3 and "hosted mcp tool works only with the Responses API" in r.err and "[[mcp]]" in r.err
    r = infer(tmp_path, sim, profile, "-t", "sse", "hello")
    assert r.code == 3 and "header Authorization uses $DW_TOKEN, which is not set" in r.err
    for args in (["tools", "list", "-p", profile], ["profiles", "show", profile]):
        r = run_cli(tmp_path, *args, DW_TOKEN="dw-secret-token")
        assert r.code == 0 and "dw-secret-token" not in r.out + r.err and "***" in r.out, r.err


# ---- profile validation -----------------------------------------------------------------------------


@pytest.mark.parametrize("table, expected", [
    ('[[mcp]]\ncommand = ["x"]\n', ":3: mcp[0]: name is required"),
    ('[[mcp]]\nname = "a"\ncommand = ["x"]\nurl = "http://h/mcp"\n', ":3: mcp[0] (a): an MCP server needs exactly one of"),
    ('[[mcp]]\nname = "a"\n', "needs exactly one of command = [...] (stdio) or url"),
    ('[[mcp]]\nname = "a"\nurl = "ftp://h"\n', "url must start with http:// or https://"),
    ('[[mcp]]\nname = "a"\nurl = "http://h/mcp"\nenv = { A = "b" }\n', "env applies only to stdio (command) servers"),
    ('[[mcp]]\nname = "a"\ncommand = ["x"]\nheaders = { A = "b" }\n', "headers applies only to HTTP (url) servers"),
    ('[[mcp]]\nname = "a"\ncommand = ["x"]\napproval = "sometimes"\n', ":6: mcp[0] (a).approval must be one of ask, auto, never"),
    ('[[mcp]]\nname = "a"\ncommand = ["x"]\ntool_approval = { rm = "yes" }\n', "tool_approval.rm must be one of ask, auto, never"),
    ('[[mcp]]\nname = "a"\ncommand = ["x"]\ntimeout = 0\n', "mcp[0] (a).timeout must be between 0.1 and 3600"),
    ('[[mcp]]\nname = "a"\ncommand = ["x"]\ncomand = ["y"]\n', "unknown key 'mcp[0] (a).comand'"),
    ('[[mcp]]\nname = "a__b"\ncommand = ["x"]\n', "no '__'"),
    ('[[mcp]]\nname = "a"\ncommand = ["x"]\n[[mcp]]\nname = "a"\nurl = "http://h/mcp"\n', ":6: mcp[1]: another [[mcp]] server is already named 'a'"),
    ('[[tools]]\ntype = "mcp"\nserver_url = "https://h/mcp"\n', "a hosted MCP tool needs server_label and server_url"),
])
def test_bad_mcp_tables_fail_with_file_and_line(tmp_path, table, expected):
    path = tmp_path / "p.toml"
    path.write_text('extends = "offline"\ndescription = "x"\n' + table)
    r = run_cli(tmp_path, "profiles", "validate", str(path))
    assert r.code == 3 and expected in r.err and str(path) in r.err, r.err


def test_profiles_show_redacts_literal_header_values_but_shows_variable_references(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('extends = "offline"\n[[mcp]]\nname = "gh"\nurl = "https://example.invalid/mcp"\n'
                    'headers = { Authorization = "Bearer ghp_literal_token", X-Token = "${GH_TOKEN}" }\n'
                    '[[mcp]]\nname = "fs"\ncommand = ["npx", "-y", "@modelcontextprotocol/server-filesystem", "/tmp"]\n')
    r = run_cli(tmp_path, "profiles", "show", str(path))
    assert r.code == 0, r.err
    assert "ghp_literal_token" not in r.out and "${GH_TOKEN}" in r.out and "***" in r.out
    assert "[[mcp]]" in r.out and "server-filesystem" in r.out
    child = tmp_path / "child.toml"
    child.write_text(f'extends = "{path}"\n[[mcp]]\nname = "fs"\ncommand = ["other"]\n')
    r = run_cli(tmp_path, "profiles", "show", str(child))
    assert r.out.count("[[mcp]]") == 2 and '"other"' in r.out and "server-filesystem" not in r.out


# ---- conversions, on recorded real traffic ---------------------------------------------------------------


def _recorded_results(name: str) -> list[dict]:
    out = []
    for line in recording(f"{name}.wire.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if entry["dir"] == "s2c":
            message = json.loads(entry["raw"])
            if "content" in message.get("result", {}):
                out.append(message["result"])
    return out


def through_sdk(result: dict) -> tuple:
    """call_output() of a tools/call result as voicecli receives it: parsed by the SDK, dumped back."""
    from mcp.types import CallToolResult

    data = CallToolResult.model_validate(result).model_dump(mode="json", by_alias=True, exclude_none=True)
    return call_output(data, 65536)


def test_recorded_call_results_become_function_outputs():
    echo, total, long_run, structured, sampled = _recorded_results("mcp_stdio_everything_01")
    assert through_sdk(echo) == (True, "Echo: Hello, world!", ())
    assert through_sdk(total) == (True, "The sum of 1 and 2 is 3.", ())
    assert through_sdk(long_run)[1] == "Long running operation completed. Duration: 1 seconds, Steps: 5."
    # content and structuredContent both present: the text (the same JSON) is used once
    assert through_sdk(structured) == (True, '{"temperature":33,"conditions":"Cloudy","humidity":82}', ())
    # structured content alone is sent as JSON
    assert call_output({"content": [], "structuredContent": structured["structuredContent"]}, 100)[1] == \
        '{"temperature": 33, "conditions": "Cloudy", "humidity": 82}'
    assert through_sdk(sampled)[1].startswith("LLM sampling result:")


def test_call_results_in_the_specs_shapes_become_function_outputs():
    """Hand-built in the shapes of the MCP spec's tools/call results (text, text + structuredContent,
    structuredContent alone, isError), as the recorded session above has them."""
    weather = {"temperature": 22.5, "conditions": "Partly cloudy"}
    assert through_sdk({"content": [{"type": "text", "text": "Echo: hi"}]}) == (True, "Echo: hi", ())
    # content and structuredContent both present: the text (the same JSON) is used once
    both = {"content": [{"type": "text", "text": json.dumps(weather, separators=(",", ":"))}],
            "structuredContent": weather}
    assert through_sdk(both) == (True, '{"temperature":22.5,"conditions":"Partly cloudy"}', ())
    assert through_sdk({"content": [], "structuredContent": weather})[1] == \
        '{"temperature": 22.5, "conditions": "Partly cloudy"}'
    assert through_sdk({"content": [{"type": "text", "text": "no such city"}], "isError": True}) == \
        (False, "error: no such city", ())


def test_recorded_fetch_result_becomes_a_function_output():
    (fetched,) = _recorded_results("mcp_stdio_fetch_01")
    ok, text, _ = through_sdk(fetched)
    assert ok and text.startswith("Contents of https://example.com/:\nThis domain is for use")
    assert call_output({**fetched, "isError": True}, 65536)[1].startswith("error: Contents of")
    ok, text, _ = call_output(fetched, 20)
    assert text == "Contents of https://\n[output truncated: showing the first 20 of 183 bytes]"


def test_recorded_tool_list_becomes_tool_defs():
    data = recording("mcp_http_deepwiki_session_01.i03.tools_list.sse").read_text()
    listed = json.loads(data.split("data: ", 1)[1].split("\n", 1)[0])["result"]["tools"]
    spec = McpServerDef(name="dw", url="https://mcp.deepwiki.com/mcp", tools=None, exclude_tools=["read_wiki_contents"],
                        tool_approval={"ask_question": "auto"})
    tools, notes = tool_defs(spec, listed, set())
    assert notes == []
    assert [(t.name, t.remote, t.effective_approval) for t in tools] == [
        ("dw__read_wiki_structure", "read_wiki_structure", "ask"), ("dw__ask_question", "ask_question", "auto")]
    assert tools[1].parameters == {"type": "object", "properties": listed[2]["inputSchema"]["properties"],
                                   "required": ["repoName", "question"], "additionalProperties": False}
    from voicecli.wire.tools import to_chat, to_realtime, to_responses

    assert to_responses(tools[1])["strict"] is False and "strict" not in to_chat(tools[1])["function"]
    assert to_realtime(tools[1])["name"] == "dw__ask_question"


def test_offered_names_are_valid_and_unique():
    taken = {"fs__read"}
    assert offered_name("fs", "read", taken) == "fs__read_2"
    assert offered_name("fs", "files/read.v2", set()) == "fs__files_read_v2"
    long = offered_name("server", "x" * 100, set())
    assert len(long) == 64 and long.startswith("server__xxx")


@pytest.mark.slow
def test_a_recorded_real_streamable_http_server(tmp_path, sim, make_profile):
    """The recorded DeepWiki session replayed on loopback (each answer's JSON-RPC id set to the
    request's): the SDK client copes with its trailing `data: ping` events and its 405s."""
    from replay_mcp import start_replay

    with start_replay(recording("mcp_http_deepwiki_session_01.http.jsonl")) as (url, seen):
        profile = make_profile(mcp_table("dw", url=url, approval="auto"))
        r = run_cli(tmp_path, "tools", "list", "-p", profile)
        assert r.code == 0, r.err
        assert [b.split("  ·")[0] for b in r.out.split("\n\n")] == \
            ["dw__read_wiki_structure", "dw__read_wiki_contents", "dw__ask_question"]
        r = infer(tmp_path, sim, profile, 'dw__ask_question {"repoName": "pydantic/pydantic-ai", "question": "what?"}')
        assert r.code == 0, r.err
        assert r.out.startswith("Tool dw__ask_question returned: The `pydantic/pydantic-ai` repository is a Python "
                                "agent framework")
    methods = [m for m, _ in seen]
    assert "initialize" in methods and "tools/list" in methods and "tools/call" in methods
    assert all(sid == "964c798ce4aa10ca9c0f9d880542fc3b4e87e275755e8eec04cb83b2e7750669"
               for m, sid in seen if m not in ("initialize",))


@pytest.mark.slow
def test_the_sdks_own_log_lines_show_only_with_debug(tmp_path, sim, make_profile):
    """A server's keep-alive pings make the SDK log "Unknown SSE event: ping": a detail for --debug,
    not a line on a user's stderr."""
    from replay_mcp import start_replay

    with start_replay(recording("mcp_http_deepwiki_session_01.http.jsonl"), ping_first=True) as (url, _):
        profile = make_profile(mcp_table("dw", url=url, approval="auto"))
        call = 'dw__ask_question {"repoName": "pydantic/pydantic-ai", "question": "what?"}'
        r = infer(tmp_path, sim, profile, call)
        assert r.code == 0 and r.out.startswith("Tool dw__ask_question returned: "), r.err
        assert "ping" not in r.err and "SSE" not in r.err, r.err
        r = infer(tmp_path, sim, profile, call, "--debug")
        assert r.code == 0 and "voicecli: mcp: Unknown SSE event: ping" in r.err, r.err
