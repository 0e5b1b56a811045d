"""ToolBox on its own: argument checks, approval, command and python tools, limits, secrets,
and the load-time checks of [[tools]] tables."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
import time
from pathlib import Path

import pytest

from voicecli import profiles
from voicecli.errors import ConfigError
from voicecli.events import ToolCall
from voicecli.tools import Approval, NonInteractiveApprover, ToolBox, argument_errors, check_transport

PY = sys.executable
ARGV = [PY, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))"]

MODULE = '''
import asyncio, time

def crash(**kw):
    raise ValueError("bad value")

async def add(a, b):
    await asyncio.sleep(0)
    return {"sum": a + b}

def hang():
    time.sleep(30)

def optional(unit="c"):
    return unit
'''


def load_tools(tmp_path: Path, toml: str) -> profiles.Profile:
    """A profile file extending `offline` with the given [[tools]] tables, loaded the normal way."""
    (tmp_path / "voicecli_test_tools.py").write_text(MODULE)
    path = tmp_path / "p.toml"
    path.write_text('extends = "offline"\n' + textwrap.dedent(toml).replace("@PY@", json.dumps(PY)))
    return profiles.load(str(path))


def run(box: ToolBox, *calls: tuple[str, object]) -> list:
    """Run calls (name, arguments as JSON text or an object) through the box in one round."""
    tool_calls = [ToolCall(f"call_{i}", name, args if isinstance(args, str) else json.dumps(args))
                  for i, (name, args) in enumerate(calls)]
    return asyncio.run(box.run(tool_calls))


def auto_box(profile, **kw) -> ToolBox:
    return ToolBox.for_profile(profile, NonInteractiveApprover(yes=True), **kw)


# ---- bad input from the model becomes an error result -------------------------------------

ECHO = """
[[tools]]
name = "echo"
command = [@PY@, "-c", "import sys; print(sys.argv[1])", "{text}"]
approval = "auto"
[tools.parameters]
type = "object"
required = ["text"]
properties = { text = { type = "string" }, count = { type = "integer", minimum = 1 }, unit = { type = "string", enum = ["c", "f"] } }
"""


def test_unknown_tool_bad_json_and_schema_failures_are_results(tmp_path):
    box = auto_box(load_tools(tmp_path, ECHO))
    unknown, not_json, not_object, bad = run(
        box, ("nope", {}), ("echo", '{"text": '), ("echo", "[1]"),
        ("echo", {"count": 0, "unit": "kelvin", "text": 5}))
    assert not unknown.ok and "no tool named 'nope'" in unknown.output and "echo" in unknown.output
    assert not not_json.ok and "not valid JSON" in not_json.output
    assert not not_object.ok and "must be a JSON object" in not_object.output
    assert not bad.ok
    for field in ("text: 5 is not of type 'string'", "count: 0 is less than the minimum of 1",
                  "unit: 'kelvin' is not one of ['c', 'f']"):
        assert field in bad.output
    missing, = run(box, ("echo", {}))
    assert "'text' is a required property" in missing.output


def test_strict_nulls_for_optional_parameters_mean_absent(tmp_path):
    box = auto_box(load_tools(tmp_path, ECHO))
    out, = run(box, ("echo", {"text": "hi", "count": None, "unit": None}))
    assert (out.ok, out.output) == (True, "hi")


def test_argument_checker():
    schema = {"type": "object", "additionalProperties": False, "required": ["xs"],
              "properties": {"xs": {"type": "array", "items": {"type": "number"}},
                             "v": {"anyOf": [{"type": "string"}, {"type": "null"}]}}}
    assert argument_errors(schema, {"xs": [1, 2.5], "v": None}) == []
    assert argument_errors(schema, {"xs": [1, "a"], "v": 3, "w": 1}) == [
        "Additional properties are not allowed ('w' was unexpected)", "v: 3 is not valid under any of the given schemas",
        "xs[1]: 'a' is not of type 'number'"]


# ---- command tools --------------------------------------------------------------------------

NASTY = ["; rm -rf ~", "$(touch {canary})", "`touch {canary}`", "it's \"quoted\"", "a b\tc\nd", "*", "--help", ""]


def test_placeholders_arrive_verbatim_as_one_argv_element(tmp_path):
    canary = tmp_path / "canary"
    prof = load_tools(tmp_path, f"""
        [[tools]]
        name = "argv"
        command = {json.dumps(ARGV + ["{text}", "fixed", "{n}"])}
        approval = "auto"
        parameters = {{ type = "object", properties = {{ text = {{ type = "string" }}, n = {{ type = "number" }} }}, required = ["text", "n"] }}
    """)
    box = auto_box(prof)
    for value in NASTY:
        value = value.replace("{canary}", str(canary))
        out, = run(box, ("argv", {"text": value, "n": 2.5}))
        assert out.ok, out.output
        assert json.loads(out.output) == [value, "fixed", "2.5"]
    assert not canary.exists()


def test_placeholders_without_parameters_become_required_strings(tmp_path):
    prof = load_tools(tmp_path, f"""
        [[tools]]
        name = "argv"
        command = {json.dumps(ARGV + ["{a}", "{b}"])}
    """)
    assert prof.tools[0].parameters == {"type": "object", "required": ["a", "b"],
                                        "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}


def test_stdin_json_cwd_and_env(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("VOICECLI_TEST_HOME", "/somewhere")
    prof = load_tools(tmp_path, """
        [[tools]]
        name = "peek"
        command = [@PY@, "-c", "import os, sys; print(os.getcwd(), os.environ['GREETING'], sys.stdin.read())"]
        stdin = "json"
        cwd = "work"
        env = { GREETING = "hi from $VOICECLI_TEST_HOME" }
        approval = "auto"
        parameters = { type = "object", properties = { x = { type = "integer" } }, required = ["x"] }
    """)
    out, = run(auto_box(prof), ("peek", {"x": 1}))
    assert out.ok and out.output == f'{work} hi from /somewhere {{"x": 1}}'


def test_nonzero_exit_carries_stderr_tail(tmp_path):
    prof = load_tools(tmp_path, """
        [[tools]]
        name = "fail"
        command = [@PY@, "-c", "import sys; sys.stdout.write('partial'); sys.stderr.write('x' * 5000 + 'the real reason'); sys.exit(3)"]
        approval = "auto"
    """)
    out, = run(auto_box(prof), ("fail", {}))
    assert not out.ok and "exited with status 3" in out.output and out.output.endswith("the real reason")
    assert len(out.output) < 2200  # only the tail


def test_missing_program_is_a_result(tmp_path):
    prof = load_tools(tmp_path, """
        [[tools]]
        name = "ghost"
        command = ["voicecli-no-such-program"]
        approval = "auto"
    """)
    out, = run(auto_box(prof), ("ghost", {}))
    assert not out.ok and "cannot start voicecli-no-such-program" in out.output


def test_ten_megabytes_of_output_are_bounded(tmp_path):
    prof = load_tools(tmp_path, """
        [[tools]]
        name = "flood"
        command = [@PY@, "-c", "import sys; sys.stdout.write('x' * 10_000_000)"]
        approval = "auto"
        max_output_bytes = 1000
    """)
    out, = run(auto_box(prof), ("flood", {}))
    assert out.ok
    assert out.output.startswith("x" * 1000) and out.output.count("x") == 1000
    assert "first 1000 of 10000000 bytes" in out.output


def _gone(pid: int) -> bool:
    """The process no longer runs (a zombie awaiting its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def _wait_gone(pid: int) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_timeout_kills_the_whole_process_group(tmp_path):
    pids = tmp_path / "pids"
    script = ("import subprocess, sys, time; "
              "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
              "open(sys.argv[1], 'w').write(f'{c.pid} ' + str(__import__('os').getpid())); "
              "print('partial', flush=True); time.sleep(60)")
    prof = load_tools(tmp_path, f"""
        [[tools]]
        name = "sleepy"
        command = [@PY@, "-c", {json.dumps(script)}, {json.dumps(str(pids))}]
        approval = "auto"
        timeout = 1
    """)
    out, = run(auto_box(prof), ("sleepy", {}))
    assert not out.ok and "did not finish within 1 s" in out.output and "partial" not in out.output
    grandchild, child = map(int, pids.read_text().split())
    assert _wait_gone(child) and _wait_gone(grandchild)


def test_cancellation_kills_the_process_group(tmp_path):
    pids = tmp_path / "pids"
    prof = load_tools(tmp_path, f"""
        [[tools]]
        name = "sleepy"
        command = [@PY@, "-c", "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(60)", {json.dumps(str(pids))}]
        approval = "auto"
    """)
    box = auto_box(prof)

    async def main():
        task = asyncio.create_task(box.run([ToolCall("c1", "sleepy", "{}")]))
        while not pids.exists() or not pids.read_text():
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert _wait_gone(int(pids.read_text()))


def test_api_key_never_reaches_a_tool_unless_listed(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-very-secret-1234")
    monkeypatch.setenv("WORK_KEY", "sk-work-very-secret-5678")
    prof = load_tools(tmp_path, """
        [connection]
        api_key_env = "WORK_KEY"
        [[tools]]
        name = "spy"
        command = [@PY@, "-c", "import os; print(os.environ.get('OPENAI_API_KEY'), os.environ.get('WORK_KEY'))"]
        approval = "auto"
        [[tools]]
        name = "given"
        command = [@PY@, "-c", "import os; print(len(os.environ['WORK_KEY']), os.environ['WORK_KEY'])"]
        env = { WORK_KEY = "$WORK_KEY" }
        approval = "auto"
    """)
    spy, given = run(auto_box(prof), ("spy", {}), ("given", {}))
    assert spy.output == "None None"
    assert given.output == "24 ***"  # the tool got it (listed), but its output never carries it on


# ---- python tools ---------------------------------------------------------------------------

PYTOOLS = """
[[tools]]
name = "crash"
python = "voicecli_test_tools:crash"
[[tools]]
name = "add"
python = "voicecli_test_tools:add"
parameters = { type = "object", properties = { a = { type = "integer" }, b = { type = "integer" } }, required = ["a", "b"] }
[[tools]]
name = "hang"
python = "voicecli_test_tools:hang"
timeout = 0.2
[[tools]]
name = "optional"
python = "voicecli_test_tools:optional"
parameters = { type = "object", properties = { unit = { type = "string" } } }
[[tools]]
name = "missing"
python = "voicecli_test_tools:nothing_here"
"""


def test_python_tools_sync_async_crash_timeout(tmp_path):
    box = auto_box(load_tools(tmp_path, PYTOOLS))
    crash, add, hang, optional, missing = run(
        box, ("crash", {}), ("add", {"a": 2, "b": 3}), ("hang", {}), ("optional", {"unit": None}), ("missing", {}))
    assert (crash.ok, crash.output) == (False, "error: crash raised ValueError: bad value")
    assert (add.ok, json.loads(add.output)) == (True, {"sum": 5})
    assert not hang.ok and "did not finish within 0.2 s" in hang.output
    assert (optional.ok, optional.output) == (True, "c")  # strict null → the function's default
    assert not missing.ok and "cannot load voicecli_test_tools:nothing_here" in missing.output


def test_python_crash_traceback_only_with_debug(tmp_path):
    prof = load_tools(tmp_path, PYTOOLS)
    plain, = run(auto_box(prof), ("crash", {}))
    debug, = run(auto_box(prof, debug=True), ("crash", {}))
    assert "Traceback" not in plain.output
    assert "Traceback" in debug.output and 'raise ValueError("bad value")' in debug.output


# ---- approval -------------------------------------------------------------------------------

APPROVALS = """
[[tools]]
name = "asky"
command = [@PY@, "-c", "print('ran')"]
[[tools]]
name = "nope"
command = [@PY@, "-c", "print('ran')"]
approval = "never"
[[tools]]
name = "auto"
command = [@PY@, "-c", "print('ran')"]
approval = "auto"
"""


class Scripted:
    """An approver that answers from a list and records what it was asked."""

    def __init__(self, *answers: Approval):
        self.answers = list(answers)
        self.asked: list[tuple[str, str]] = []

    async def __call__(self, tool, call):
        self.asked.append((tool.name, call.arguments))
        return self.answers.pop(0)


def test_approval_once_always_and_deny_with_reason(tmp_path):
    prof = load_tools(tmp_path, APPROVALS)
    approver = Scripted(Approval(True), Approval(False, "not now, use the cache"), Approval(True, always=True))
    box = ToolBox.for_profile(prof, approver)
    assert box.approval_state("asky") == "ask"
    once, = run(box, ("asky", {}))
    denied, = run(box, ("asky", {}))
    always, again = run(box, ("asky", {}), ("asky", {}))
    assert (once.ok, once.output) == (True, "ran")
    assert (denied.ok, denied.output) == (False, "denied: not now, use the cache")
    assert always.ok and again.ok
    assert approver.asked == [("asky", "{}")] * 3  # the second call of the last round was not asked
    assert box.approval_state("asky") == "always (this session)"


def test_never_and_auto_do_not_ask(tmp_path):
    approver = Scripted()
    box = ToolBox.for_profile(load_tools(tmp_path, APPROVALS), approver)
    never, auto = run(box, ("nope", {}), ("auto", {}))
    assert not never.ok and 'approval = "never"' in never.output
    assert auto.ok and approver.asked == []


def test_non_interactive_approver(tmp_path):
    prof = load_tools(tmp_path, APPROVALS)
    denied, = run(ToolBox.for_profile(prof, NonInteractiveApprover()), ("asky", {}))
    assert not denied.ok and "--allow-tool asky" in denied.output and "--yes" in denied.output
    allowed, = run(ToolBox.for_profile(prof, NonInteractiveApprover(allow=["asky"])), ("asky", {}))
    yes, never = run(ToolBox.for_profile(prof, NonInteractiveApprover(yes=True)), ("asky", {}), ("nope", {}))
    assert allowed.ok and yes.ok and not never.ok  # --yes never overrides "never"


def test_a_broken_approver_denies(tmp_path):
    async def broken(tool, call):
        raise EOFError

    out, = run(ToolBox.for_profile(load_tools(tmp_path, APPROVALS), broken), ("asky", {}))
    assert not out.ok and "approval prompt failed" in out.output


def test_parallel_calls_run_together(tmp_path):
    # each call waits until the other has started: only concurrent execution finishes
    marks = tmp_path / "marks"
    marks.mkdir()
    wait = ("import os, sys, time; open(os.path.join(sys.argv[1], sys.argv[2]), 'w').close(); "
            "t = time.monotonic(); "
            "exec('while len(os.listdir(sys.argv[1])) < 2 and time.monotonic() - t < 20: time.sleep(0.01)'); "
            "print(len(os.listdir(sys.argv[1])))")
    prof = load_tools(tmp_path, f"""
        [[tools]]
        name = "meet"
        command = [@PY@, "-c", {json.dumps(wait)}, {json.dumps(str(marks))}, "{{who}}"]
        approval = "auto"
    """)
    a, b = run(auto_box(prof), ("meet", {"who": "a"}), ("meet", {"who": "b"}))
    assert (a.output, b.output) == ("2", "2")
    assert [a.call_id, b.call_id] == ["call_0", "call_1"]


# ---- load-time checks -----------------------------------------------------------------------


@pytest.mark.parametrize("toml, expected", [
    ('parameters = { type = "object", properties = { x = { type = "strng" } } }',
     "parameters.properties.x.type: 'strng' is not a JSON type"),
    ('parameters = { type = "object", required = ["y"], properties = { x = { type = "string" } } }',
     "parameters.required names 'y', which is not in properties"),
    ('parameters = { type = "object", properties = { x = { oneOf = [{ type = "string" }, { type = "integer" }] } } }',
     "cannot use strict mode: 'oneOf' at parameters.x is not supported"),
    ('command = ["echo", "{city}"]\nparameters = { type = "object", properties = { town = { type = "string" } } }',
     "command placeholder {city} names no parameter"),
    ('command = ["curl", "--city={city}"]\nparameters = { type = "object", properties = { city = { type = "string" } } }',
     "placeholder inside other text"),
])
def test_bad_tool_tables_fail_when_the_profile_loads(tmp_path, toml, expected):
    if "command" not in toml:
        toml = 'command = ["echo"]\n' + toml
    path = tmp_path / "bad.toml"
    path.write_text(f'[[tools]]\nname = "t"\n{toml}\n')
    with pytest.raises(ConfigError) as info:
        profiles.load(str(path))
    assert expected in info.value.message and info.value.message.startswith(str(path))


def test_non_strict_schema_may_use_any_keyword(tmp_path):
    path = tmp_path / "ok.toml"
    path.write_text('[[tools]]\nname = "t"\ncommand = ["echo"]\nstrict = false\n'
                    'parameters = { type = "object", properties = { x = { oneOf = [{ type = "string" }, { type = "integer" }] } } }\n')
    assert profiles.load(str(path)).tools[0].strict is False


def test_python_tools_refuse_command_only_keys(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[[tools]]\nname = "t"\npython = "m:f"\ncwd = "/tmp"\n')
    with pytest.raises(ConfigError, match="cwd applies only to command tools"):
        profiles.load(str(path))


def test_hosted_tools_are_refused_on_chat_and_realtime():
    tools = [profiles.ToolDef(name="web_search", type="web_search")]
    check_transport(tools, "ws")
    check_transport(tools, "sse")
    for transport in ("chat", "realtime"):
        with pytest.raises(ConfigError, match=f"web_search tool works only with the Responses API.*'{transport}'"):
            check_transport(tools, transport)


def test_demo_profile_tools(tmp_path, monkeypatch):
    prof = profiles.load("tools-demo")
    assert [t.name for t in prof.tools] == ["clock", "read_file", "convert_units"]
    assert [t.effective_approval for t in prof.tools] == ["auto", "ask", "auto"]
    (tmp_path / "notes.txt").write_text("hello notes")
    monkeypatch.chdir(tmp_path)
    clock, inside, outside, miles, bad = run(
        auto_box(prof), ("clock", {}), ("read_file", {"path": "notes.txt"}), ("read_file", {"path": "../x"}),
        ("convert_units", {"value": 10, "from_unit": "km", "to_unit": "mi"}),
        ("convert_units", {"value": 1, "from_unit": "km", "to_unit": "kg"}))
    assert clock.ok and clock.output.endswith("UTC")
    assert (inside.ok, inside.output) == (True, "hello notes")
    assert not outside.ok and "PermissionError" in outside.output
    assert json.loads(miles.output) == {"value": 6.213712, "unit": "mi"}
    assert not bad.ok and "cannot convert km to kg" in bad.output


# ---- cancelled while the command is still being started -------------------------------------------

ESCAPER = """
[[tools]]
name = "escaper"
command = [@PY@, "-c", "import subprocess, sys, time; c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True); open(sys.argv[1], 'w').write(str(c.pid)); time.sleep(60)", "{pidfile}"]
approval = "auto"
timeout = 60
[tools.parameters]
type = "object"
properties = { pidfile = { type = "string" } }
"""


def children() -> list[str]:
    import os

    return [pid for task in os.listdir("/proc/self/task")
            for pid in open(f"/proc/self/task/{task}/children").read().split()]


def test_cancelled_while_its_pipes_are_connected_the_command_is_stopped_at_once(tmp_path):
    """Ctrl-C in the moment between fork and the pipes being connected (a loaded machine makes it
    long): Python 3.11's asyncio then kills only the command and waits for its pipes to close, which
    a child that left its group (setsid) holds for a minute. The start completes, then the command,
    its group and whatever holds its pipes are stopped, as on any other cancellation."""
    import os

    box = auto_box(load_tools(tmp_path, ESCAPER))
    (tool,) = box.tools
    pidfile = tmp_path / "grandchild.pid"

    async def main():
        before = set(children())
        task = asyncio.create_task(box._run_command(tool, {"pidfile": str(pidfile)}))
        for _ in range(100):  # one loop step at a time, until one of them has forked the command
            await asyncio.sleep(0)
            if set(children()) - before:
                break
        deadline = time.monotonic() + 30  # the loop held (as a busy machine would) until the child escaped
        while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
            time.sleep(0.01)
        task.cancel()
        started = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(task), 30)
        return time.monotonic() - started

    assert asyncio.run(main()) < 20  # not the minute the escaped child would hold its pipes
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the escaped child outlived the cancelled tool")
