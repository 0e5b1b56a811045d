"""`infer -x/--extract`: only a fenced code block's contents on stdout, so `… | sh` runs the code."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from clihelp import cli_env, run_cli
from voicecli.extract import code_blocks, extract

ANSWER = """Here is a one-liner:

```bash
ls -la | wc -l
```

Or, in Python:

~~~python
print(len(__import__("os").listdir(".")))
~~~
"""


@pytest.mark.parametrize("text, blocks", [
    (ANSWER, ["ls -la | wc -l\n", 'print(len(__import__("os").listdir(".")))\n']),
    ("no code here", []),
    ("```\n```", [""]),  # an empty block
    ("```sh\necho open to the end", ["echo open to the end\n"]),  # never closed
    ("````md\n```\ninner\n```\n````", ["```\ninner\n```\n"]),  # a longer fence holds a shorter one
    ("  ```\n  indented\n    more\n  ```", ["indented\n  more\n"]),  # the fence's indentation comes off
    ("``` a`b\nnot a fence\n```\nx\n```", ["x\n"]),  # a backtick in the info string: not an opening fence
    ("text ```not a fence``` text", []),
    ("```\na\n~~~\nb\n```", ["a\n~~~\nb\n"]),  # a tilde line does not close a backtick fence
])
def test_code_blocks(text, blocks):
    assert code_blocks(text) == blocks


def test_first_and_last():
    assert extract(ANSWER) == "ls -la | wc -l\n"
    assert extract(ANSWER, last=True).startswith("print(")
    assert extract("plain") is None


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


@pytest.fixture
def scripted(make_sim, tmp_path):
    def make(reply: str):
        script = tmp_path / "script.json"
        script.write_text(json.dumps({"turns": [{"reply": reply}]}))
        return make_sim(script=str(script))
    return make


def test_extract_prints_the_code_only_and_a_shell_can_run_it(home, scripted, tmp_path):
    sim = scripted("Sure:\n\n```sh\necho extracted-$((40 + 2))\n```\n\nThis prints a word.")
    infer = subprocess.Popen([sys.executable, "-m", "voicecli", "infer", "-p", "offline", "--base-url", sim.base_url,
                              "-x", "a command"], stdout=subprocess.PIPE, env=cli_env(home))
    shell = subprocess.run(["sh"], stdin=infer.stdout, capture_output=True, text=True, timeout=60)
    assert infer.wait(60) == 0 and shell.stdout == "extracted-42\n"
    listed = json.loads(run_cli(home, "logs", "--json", "-n", "1").out)[0]
    logged = json.dumps(json.loads(run_cli(home, "logs", "show", listed["cid"], "--json").out))
    assert "This prints a word." in logged  # the log keeps the whole answer


def test_extract_last_and_no_block(home, scripted):
    sim = scripted(ANSWER)
    r = run_cli(home, "infer", "-p", "offline", "--base-url", sim.base_url, "--extract-last", "q")
    assert (r.code, r.out) == (0, 'print(len(__import__("os").listdir(".")))\n'), r.err
    sim = scripted("echo no fences")
    r = run_cli(home, "infer", "-p", "offline", "--base-url", sim.base_url, "-x", "q")
    assert (r.code, r.out) == (0, "echo no fences\n"), r.err  # no block: the whole answer (as llm does)


@pytest.mark.parametrize("flag", ["--json", "--events", "--schema=name"])
def test_extract_with_a_json_output_is_a_usage_error(home, sim, flag):
    r = run_cli(home, "infer", "-p", "offline", "--base-url", sim.base_url, "-x", flag, "q")
    assert r.code == 2 and "--extract cannot be used with" in r.err, r.err
