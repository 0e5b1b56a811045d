"""Tool arguments are checked against the tool's full JSON Schema before the tool runs (real CLI)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from clihelp import cli_env
from voicecli.sim.config import SimConfig
from voicecli.sim.server import start_in_thread

# a tool whose schema uses the keywords the old hand-written checker ignored
PROFILE = """\
extends = "offline"

[[tools]]
name = "store"
description = "Save a note under a name"
command = ["touch", "{name}"]
approval = "auto"
strict = false

[tools.parameters]
type = "object"
required = ["name", "tags", "when", "kind"]
additionalProperties = false

[tools.parameters.properties.name]
type = "string"
pattern = "^[a-z0-9-]+$"
minLength = 2
maxLength = 12

[tools.parameters.properties.tags]
type = "array"
items = { "$ref" = "#/$defs/tag" }
minItems = 1

[tools.parameters.properties.when]
type = "string"
format = "date"

[tools.parameters.properties.kind]
allOf = [{ type = "string" }, { not = { const = "secret" } }]

[tools.parameters."$defs".tag]
type = "string"
enum = ["work", "home"]
"""

GOOD = {"name": "note-1", "tags": ["work"], "when": "2026-05-01", "kind": "plain"}
BAD = [
    ({"name": "../../ETC/passwd-LONG"}, ["name: '../../ETC/passwd-LONG' does not match '^[a-z0-9-]+$'",
                                         "name: '../../ETC/passwd-LONG' is too long"]),
    ({"name": "a"}, ["name: 'a' is too short"]),
    ({"tags": []}, ["tags: [] should be non-empty"]),
    ({"tags": ["play"]}, ["tags[0]: 'play' is not one of ['work', 'home']"]),
    ({"when": "May 1st"}, ["when: 'May 1st' is not a 'date'"]),
    ({"kind": "secret"}, ["kind: 'secret' should not be valid under {'const': 'secret'}"]),
]


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "home"
    (home / "profiles").mkdir(parents=True)
    (home / "profiles" / "notes.toml").write_text(PROFILE)
    return home


@pytest.mark.parametrize("change, reasons", BAD)
def test_invalid_arguments_are_refused_before_the_tool_runs(home, tmp_path, change, reasons):
    work = tmp_path / "work"
    work.mkdir()
    args = {**GOOD, **change}
    proc = subprocess.run([sys.executable, "-m", "voicecli", "tools", "run", "store", json.dumps(args), "-p", "notes"],
                          capture_output=True, text=True, env=cli_env(home), cwd=work, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1
    assert proc.stderr.startswith("voicecli: store: the arguments do not match the schema of store: ")
    for reason in reasons:
        assert reason in proc.stderr
    assert list(work.iterdir()) == []  # nothing ran


def test_valid_arguments_run(home, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run([sys.executable, "-m", "voicecli", "tools", "run", "store", json.dumps(GOOD), "-p", "notes"],
                          capture_output=True, text=True, env=cli_env(home), cwd=work, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in work.iterdir()] == ["note-1"]


def test_the_model_gets_the_reason_and_the_call_does_not_run(home, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    args = {**GOOD, "name": "x/../note"}
    with start_in_thread(SimConfig()) as sim:
        proc = subprocess.run([sys.executable, "-m", "voicecli", "infer", "-p", "notes", "--base-url", sim.base_url,
                               "-t", "chat", "--json", f"please store {json.dumps(args)}"],
                              capture_output=True, text=True, env=cli_env(home), cwd=work, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    (result,) = data["tool_results"]
    assert result["ok"] is False and "does not match '^[a-z0-9-]+$'" in result["output"]
    assert data["text"].startswith("Tool store returned: error: the arguments do not match the schema of store")
    assert list(work.iterdir()) == []  # not run


def test_profiles_and_tools_list_do_not_import_the_validator(home):
    code = ("import sys\nfrom voicecli import profiles\nprofiles.load('notes')\n"
            "print('jsonschema' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(home)).stdout
    assert out.strip() == "False"
