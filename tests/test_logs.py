"""`voicecli logs`: the real CLI over conversation logs written by real `infer` runs (and a few
hand-written log files where a test needs old or odd ones)."""

from __future__ import annotations

import json
import os
import re
import sys
import time

import pytest

from clihelp import cli_env, run_cli
from voicecli.sim.config import SimConfig
from voicecli.sim.server import start_in_thread


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


def infer(home, sim, *args):
    r = run_cli(home, "infer", "-p", "offline", "--base-url", sim.base_url, *args)
    assert r.code == 0, r.err
    return r


def cid_of(home, sim, *args) -> str:
    r = infer(home, sim, "--json", *args)
    return json.loads(r.out)["cid"]


def write_log(home, cid, *, mtime=None, model="gpt-5.5", messages=(), turns=()):
    folder = home / "conversations"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{cid}.jsonl"
    lines = [{"type": "meta", "cid": cid, "created": mtime or time.time(), "profile": "default", "model": model,
              "transport": "ws"}]
    lines += [{"type": "item", "time": mtime, "item": {"kind": "message", "role": role, "text": text}}
              for role, text in messages]
    lines += [{"type": "turn", "model": model, **t} for t in turns]
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))  # as convlog does
    if mtime:
        os.utime(path, (mtime, mtime))
    return path


@pytest.mark.slow
def test_list_shows_latest_first_with_turns_tokens_and_cost(home, sim):
    first = cid_of(home, sim, "-m", "my-local-model", "hello there, how are you")  # a model with no price
    infer(home, sim, "--cid", first, "and a follow-up")
    second = cid_of(home, sim, "a second conversation")
    r = run_cli(home, "logs")
    assert r.code == 0, r.err
    rows = r.out.splitlines()
    assert [row.split()[0] for row in rows] == [second, first]  # newest activity first
    assert re.search(r"sim-1\s+a second conversation\s+1 turn\s+\d+ tokens\s+\$0$", rows[0])  # the sim's are free
    assert "hello there, how are you" in rows[1] and "2 turns" in rows[1] and rows[1].endswith("unknown price")
    r = run_cli(home, "logs", "-n", "1", "--json")
    (only,) = json.loads(r.out)
    assert only["cid"] == second and only["turns"] == 1 and only["model"] == "sim-1"
    assert only["first_message"] == "a second conversation"
    assert only["input_tokens"] > 0 and only["output_tokens"] > 0 and only["cost_usd"] == 0


def test_list_sums_recorded_costs(home):
    write_log(home, "c1", messages=[("user", "hi")], turns=[
        {"usage": {"input_tokens": 1000, "output_tokens": 100}, "cost_usd": 0.008},
        {"usage": {"input_tokens": 2000, "output_tokens": 100}, "cost_usd": 0.013}])
    r = run_cli(home, "logs")
    assert "3,200 tokens" in r.out and "$0.0210" in r.out
    assert json.loads(run_cli(home, "logs", "--json").out)[0]["cost_usd"] == 0.021


def test_empty_log_is_not_an_error(home):
    r = run_cli(home, "logs")
    assert (r.code, r.out) == (0, "") and "no conversations yet" in r.err
    assert json.loads(run_cli(home, "logs", "--json").out) == []


def test_since_filters_by_last_activity(home):
    now = time.time()
    write_log(home, "old", mtime=now - 3 * 86400, messages=[("user", "ancient question")])
    write_log(home, "new", mtime=now - 600, messages=[("user", "recent question")])
    assert [c["cid"] for c in json.loads(run_cli(home, "logs", "--since", "2d", "--json").out)] == ["new"]
    assert [c["cid"] for c in json.loads(run_cli(home, "logs", "--since", "1w", "--json").out)] == ["new", "old"]
    day = time.strftime("%Y-%m-%d", time.localtime(now - 2 * 86400))
    assert [c["cid"] for c in json.loads(run_cli(home, "logs", "--since", day, "--json").out)] == ["new"]
    r = run_cli(home, "logs", "search", "question", "--since", "1h", "--json")
    assert [m["cid"] for m in json.loads(r.out)] == ["new"]
    r = run_cli(home, "logs", "--since", "yesterday-ish")
    assert r.code == 2 and r.err.count("\n") <= 2 and "--since" in r.err and "Traceback" not in r.err


@pytest.mark.slow
def test_show_by_id_prefix_and_latest(home, sim):
    first = cid_of(home, sim, "tell me about **bold** things")
    second = cid_of(home, sim, "another one")
    r = run_cli(home, "logs", "show", first)
    assert r.code == 0, r.err
    assert f"# Conversation {first}" in r.out
    assert "### You" in r.out and "tell me about **bold** things" in r.out  # piped: the markdown text
    assert "### Assistant" in r.out and "You said: tell me about **bold** things" in r.out
    assert run_cli(home, "logs", "show", "-c").out == run_cli(home, "logs", "show", second).out
    assert run_cli(home, "logs", "show").out == run_cli(home, "logs", "show", second).out
    assert run_cli(home, "logs", "show", first[:-2]).out == r.out  # a unique start of an id is enough
    data = json.loads(run_cli(home, "logs", "show", first, "--json").out)
    assert data["cid"] == first and data["meta"]["profile"] == "offline"
    assert [(i["role"], i["text"]) for i in data["items"]] == [
        ("user", "tell me about **bold** things"), ("assistant", "You said: tell me about **bold** things")]
    assert len(data["turns"]) == 1 and data["turns"][0]["usage"]["input_tokens"] > 0


def test_show_errors(home, sim):
    r = run_cli(home, "logs", "show", "nope")
    assert r.code == 3 and "no conversations yet" in r.err
    write_log(home, "20260101-000000-aaaaaa", messages=[("user", "a")])
    write_log(home, "20260101-000000-bbbbbb", messages=[("user", "b")])
    r = run_cli(home, "logs", "show", "nosuch")
    assert r.code == 3 and "no conversation with id 'nosuch'" in r.err
    r = run_cli(home, "logs", "show", "20260101")
    assert r.code == 2 and "start of 2 conversation ids" in r.err
    r = run_cli(home, "logs", "show", "../etc")
    assert r.code == 2 and "not a conversation id" in r.err
    r = run_cli(home, "logs", "show", "-c", "20260101-000000-aaaaaa")
    assert r.code == 2


def test_show_renders_markdown_on_a_terminal(home, sim):
    import pexpect

    cid = cid_of(home, sim, "make it **bold**")
    child = pexpect.spawn(sys.executable, ["-m", "voicecli", "logs", "show", cid],
                          env={**cli_env(home), "TERM": "xterm-256color"}, dimensions=(40, 100),
                          encoding="utf-8", timeout=30)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    assert "\x1b[" in child.before and "**bold**" not in child.before and "###" not in child.before
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", child.before)
    assert "make it bold" in plain and "Assistant" in plain


@pytest.mark.slow
def test_search_is_case_insensitive_over_user_and_assistant_text(home, tmp_path):
    script = tmp_path / "s.json"
    script.write_text(json.dumps({"turns": [{"reply": "Line one.\nRun it with Docker Compose.\nLast line."}]}))
    with start_in_thread(SimConfig(script=script)) as scripted:
        with_answer = cid_of(home, scripted, "how do I start it?")
    with start_in_thread(SimConfig()) as plain:
        from_user = cid_of(home, plain, "is DOCKER installed?")
        cid_of(home, plain, "nothing relevant here")
    r = run_cli(home, "logs", "search", "docker")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0].startswith(from_user) and lines[3].startswith(with_answer)
    assert lines[1:3] == ["  user: is DOCKER installed?", "  assistant: You said: is DOCKER installed?"]
    assert lines[4] == "  assistant: Run it with Docker Compose."  # only the matching line of the answer
    found = json.loads(run_cli(home, "logs", "search", "DOCKER compose", "--json").out)
    assert found == [{"cid": with_answer, "updated": found[0]["updated"], "model": "sim-1", "role": "assistant",
                      "time": found[0]["time"], "line": "Run it with Docker Compose."}]
    assert len(json.loads(run_cli(home, "logs", "search", "docker", "-n", "1", "--json").out)) == 2  # one conversation


@pytest.mark.slow
def test_search_ignores_metadata_and_finds_escaped_text(home):
    write_log(home, "c1", messages=[("user", 'say "hi" to C:\\temp\nand then stop'),
                                    ("assistant", "one\u2028two, for the user")])
    r = run_cli(home, "logs", "search", "default")  # the profile name in the meta line is not message text
    assert (r.code, r.out) == (0, "") and "no conversation mentions 'default'" in r.err
    for key in ("message", "role", "kind"):  # keys of every line are not message text either
        assert run_cli(home, "logs", "search", key).out == ""
    found = json.loads(run_cli(home, "logs", "search", "USER", "--json").out)
    assert [(m["role"], m["line"]) for m in found] == [("assistant", "two, for the user")]  # U+2028 ends a line
    r = run_cli(home, "logs", "search", 'SAY "HI" TO C:\\TEMP')
    assert r.out.splitlines()[1:] == ['  user: say "hi" to C:\\temp']
    r = run_cli(home, "logs", "search", " ")
    assert r.code == 2


def test_search_skips_torn_and_foreign_lines(home):
    path = write_log(home, "c1", messages=[("user", "needle here")])
    with open(path, "a") as f:
        f.write('{"type": "item", "item": {"kind": "message", "role": "assistant", "text": "needle torn')
    (home / "conversations" / "notes.txt").write_text("needle")
    r = run_cli(home, "logs", "search", "needle", "--json")
    assert [m["line"] for m in json.loads(r.out)] == ["needle here"]


def test_path(home):
    r = run_cli(home, "logs", "path")
    assert r.out.strip() == str(home / "conversations")
    assert json.loads(run_cli(home, "logs", "path", "--json").out) == {"path": str(home / "conversations")}


@pytest.fixture
def sim():
    with start_in_thread(SimConfig()) as handle:
        yield handle


@pytest.mark.slow
def test_options_before_the_subcommand_apply_to_it(home):
    now = time.time()
    for i in range(3):
        write_log(home, f"c{i}", mtime=now - 3600 * 24 * i, messages=[("user", f"said number {i}")])
    shown = run_cli(home, "logs", "-n", "1", "search", "said")
    assert shown.code == 0, shown.err
    assert shown.out == run_cli(home, "logs", "search", "said", "-n", "1").out  # the same as after it
    assert [line.split()[0] for line in shown.out.splitlines() if not line.startswith(" ")] == ["c0"]
    found = json.loads(run_cli(home, "logs", "--json", "--since", "30h", "search", "said").out)
    assert [m["cid"] for m in found] == ["c0", "c1"]
    # the subcommand's own option wins
    assert len(json.loads(run_cli(home, "logs", "-n", "1", "search", "said", "-n", "2", "--json").out)) == 2
    assert json.loads(run_cli(home, "logs", "--json", "path").out) == {"path": str(home / "conversations")}
    assert json.loads(run_cli(home, "logs", "--json", "show", "c1").out)["meta"]["cid"] == "c1"
    # -n and --since mean nothing to show and path: said so, not ignored
    for sub in (["show", "c1"], ["path"]):
        r = run_cli(home, "logs", "-n", "1", *sub)
        assert r.code == 2 and f"not to `logs {sub[0]}`" in r.err, r.err


# ---- runs that fail before a request leave nothing -------------------------------------------------


@pytest.mark.slow
def test_a_failed_run_leaves_no_conversation_and_c_continues_the_real_one(home, sim, tmp_path):
    """issue #23: `infer hi` without a key used to leave an empty conversation that `-c` then continued."""
    real = cid_of(home, sim, "real question")
    r = run_cli(home, "infer", "hi")  # the default profile, no OPENAI_API_KEY
    assert r.code == 3 and "OPENAI_API_KEY is not set" in r.err
    bad_mcp = tmp_path / "bad-mcp.toml"
    bad_mcp.write_text('extends = "offline"\n[[mcp]]\nname = "bad"\ncommand = ["voicecli-no-such-program"]\n')
    for args in (["infer", "hi"], ["chat"]):  # chat reads its "hi" from stdin
        r = run_cli(home, *args, "-p", str(bad_mcp), "--base-url", sim.base_url, "--require-mcp", input="hi\n")
        assert r.code == 3 and "MCP server 'bad'" in r.err
    r = run_cli(home, "chat", input="hi\n")
    assert r.code == 3 and "OPENAI_API_KEY is not set" in r.err
    r = run_cli(home, "talk", "--input", str(tmp_path / "in.wav"), "--output", str(tmp_path / "out.wav"))
    assert r.code == 3 and "OPENAI_API_KEY is not set" in r.err
    assert [p.stem for p in (home / "conversations").glob("*.jsonl")] == [real]  # nothing else was written
    r = infer(home, sim, "-c", "follow-up", "--json")
    assert json.loads(r.out)["cid"] == real
    (listed,) = json.loads(run_cli(home, "logs", "--json").out)
    assert (listed["cid"], listed["first_message"], listed["turns"]) == (real, "real question", 2)


@pytest.mark.slow
def test_c_and_logs_pass_over_an_empty_conversation_file(home, sim):
    """Older versions left a file holding only its meta line after a failed run."""
    real = cid_of(home, sim, "real question")
    write_log(home, "20990101-000000-e0e0e0", mtime=time.time() + 60)  # the newest file, and empty
    r = run_cli(home, "logs")
    assert r.code == 0 and [row.split()[0] for row in r.out.splitlines()] == [real]
    assert "(no message)" not in r.out
    assert run_cli(home, "logs", "show").out == run_cli(home, "logs", "show", real).out
    r = infer(home, sim, "-c", "follow-up", "--json")
    assert json.loads(r.out)["cid"] == real
    assert "20990101-000000-e0e0e0" in run_cli(home, "logs", "show", "20990101-000000-e0e0e0", "--json").out


# ---- rm and titles ----------------------------------------------------------------------------------


def test_rm_by_id_and_older_than(home):
    now = time.time()
    old = write_log(home, "20260101-old1", mtime=now - 40 * 86400, messages=[("user", "ancient")])
    mid = write_log(home, "20260501-mid1", mtime=now - 10 * 86400, messages=[("user", "middle")])
    new = write_log(home, "20261201-new1", mtime=now - 60, messages=[("user", "recent")])
    r = run_cli(home, "logs", "rm", "--older-than", "30d")  # not a terminal: -y is needed
    assert r.code == 2 and "would delete 1 conversation; pass -y" in r.err and old.exists()
    r = run_cli(home, "logs", "rm", "--older-than", "30d", "-y")
    assert (r.code, r.err) == (0, "deleted 1 conversation\n") and not old.exists() and mid.exists()
    r = run_cli(home, "logs", "rm", "-y", "20261201")  # a unique start of an id
    assert r.code == 0 and not new.exists() and mid.exists()
    r = run_cli(home, "logs", "rm", "-y", "nope")
    assert r.code == 3 and "no conversation with id 'nope'" in r.err and mid.exists()
    assert run_cli(home, "logs", "rm", "-y").code == 2
    assert run_cli(home, "logs", "rm", "-y", "--older-than", "soon").code == 2


def test_rm_asks_on_a_terminal(home):
    import pexpect

    path = write_log(home, "20260101-ask1", messages=[("user", "keep me?")])
    for answer, kept in (("n", True), ("y", False)):
        child = pexpect.spawn(sys.executable, ["-m", "voicecli", "logs", "rm", "20260101-ask1"], env=cli_env(home),
                              encoding="utf-8", timeout=30)
        child.expect(r"delete 1 conversation from .*\? \[y/N\] ")
        child.sendline(answer)
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0 and path.exists() == kept


@pytest.mark.slow
def test_a_title_is_shown_searched_and_leaves_the_order_alone(home):
    now = time.time()
    write_log(home, "20260101-one1", mtime=now - 600, messages=[("user", "how do I bake bread " * 5)])
    write_log(home, "20260101-two1", mtime=now - 60, messages=[("user", "later question")])
    listed = json.loads(run_cli(home, "logs", "--json").out)
    assert listed[1]["title"] == ("how do I bake bread " * 5)[:39].strip() + "…"  # the first prompt, shortened
    r = run_cli(home, "logs", "title", "20260101-one", "Sourdough", "notes")
    assert r.code == 0, r.err
    listed = json.loads(run_cli(home, "logs", "--json").out)
    assert [c["cid"] for c in listed] == ["20260101-two1", "20260101-one1"]  # a title is not activity
    assert listed[1]["title"] == "Sourdough notes"
    assert "Sourdough notes" in run_cli(home, "logs").out
    found = json.loads(run_cli(home, "logs", "search", "sourdough", "--json").out)
    assert [(m["cid"], m["role"], m["line"]) for m in found] == [("20260101-one1", "title", "Sourdough notes")]
    assert run_cli(home, "logs", "title", "20260101-one", "bad\x1b]52;c;x\x07").code == 2
    run_cli(home, "logs", "title", "20260101-one", "")
    assert json.loads(run_cli(home, "logs", "--json").out)[1]["title"].startswith("how do I bake")
