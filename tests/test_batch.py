"""`voicecli batch`: the real CLI against the simulator, local mode and the Batch API."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from clihelp import cli_env, run_cli, wait_for


@pytest.fixture
def home(tmp_path):
    (tmp_path / "profiles").mkdir()
    return tmp_path


def batch(home, sim, *args, transport="sse", input=None, **env):
    return run_cli(home, "batch", *args, "-p", "offline", "--base-url", sim.base_url, "-t", transport,
                   input=input, **env)


def start(home, sim, *args, transport="sse"):
    """The batch as a background process; its stderr in a file."""
    err = open(home / "stderr.txt", "w")
    proc = subprocess.Popen([sys.executable, "-m", "voicecli", "batch", *args, "-p", "offline", "--base-url",
                             sim.base_url, "-t", transport], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=err, env=cli_env(home))
    err.close()
    return proc


def write_input(path: Path, n: int, **extra) -> Path:
    path.write_text("".join(json.dumps({"id": f"id-{i:03d}", "prompt": f"item-{i:03d} please", **extra}) + "\n"
                            for i in range(n)))
    return path


def lines(path: Path) -> list[dict]:
    text = path.read_text() if path.exists() else ""
    assert text == "" or text.endswith("\n"), "a partial line in OUT"
    return [json.loads(line) for line in text.splitlines()]


def http(sim, endpoint: str, method: str | None = None, since: int = 0) -> list[dict]:
    return [e for e in list(sim.log)[since:] if e.get("kind") == "http" and e.get("endpoint") == endpoint
            and (method is None or e.get("method") == method)]


def fault(spec: str) -> list[str]:
    return ["-o", 'connection.headers={"x-sim-fault" = "%s"}' % spec]


# ---- input checked before anything is sent ---------------------------------------------------------------


@pytest.mark.parametrize("bad, where", [
    ('{"id": "x", "prompt": "two"\n', "line 3: not valid JSON"),
    ('{"id": "a", "prompt": "again"}\n', 'line 3: duplicate id "a" (first on line 1)'),
    ('{"id": "z", "promt": "typo"}\n', "line 3: unknown key 'promt'"),
    ('{"id": "z", "prompt": "x", "options": {"temperature": 9}}\n', "line 3: \"options\": model.temperature"),
    ('{"id": "z", "prompt": "x", "schema": "name, age flurb"}\n', "line 3:"),
])
def test_a_bad_line_exits_2_naming_it_and_sends_nothing(home, sim, bad, where):
    source = home / "in.jsonl"
    source.write_text('{"id": "a", "prompt": "one"}\n{"id": "b", "prompt": "two"}\n' + bad)
    r = batch(home, sim, str(source))
    assert r.code == 2, r.err
    assert where in r.err and "nothing was sent" in r.err
    assert not [e for e in sim.log if e.get("endpoint", "").startswith("/v1/")]
    assert not (home / "in.out.jsonl").read_text()


def test_out_cannot_be_the_input_nor_a_file_batch_did_not_write(home, sim):
    source = write_input(home / "in.jsonl", 2)
    r = batch(home, sim, str(source), "-O", str(source))
    assert r.code == 2 and "is the input file" in r.err
    assert len(source.read_text().splitlines()) == 2
    other = home / "precious.jsonl"
    other.write_text('{"name": "not an answer"}\n')
    r = batch(home, sim, str(source), "-O", str(other))
    assert r.code == 2 and "line 1: not an answer line" in r.err
    assert other.read_text() == '{"name": "not an answer"}\n'


def test_a_cut_last_line_is_dropped_and_redone(home, sim):
    source = write_input(home / "in.jsonl", 3)
    out = home / "in.out.jsonl"
    out.write_text('{"id": "id-000", "text": "kept", "usage": {}, "cost_usd": 0}\n{"id": "id-001", "te')
    r = batch(home, sim, str(source))
    assert r.code == 0, r.err
    got = {g["id"]: g["text"] for g in lines(out)}
    assert got["id-000"] == "kept" and sorted(got) == ["id-000", "id-001", "id-002"]


def test_output_lines_plain_text_stdin_and_stdout(home, sim):
    r = batch(home, sim, "-", "--out", "-", "-j", "2", input="first\n\nthird\n")
    assert r.code == 0, r.err
    got = sorted((json.loads(line) for line in r.out.splitlines()), key=lambda x: x["id"])
    assert [g["id"] for g in got] == [1, 3]  # id = line number
    assert got[0]["text"] == "You said: first"
    assert set(got[0]) == {"id", "text", "usage", "cost_usd"}
    assert got[0]["usage"]["input_tokens"] > 0 and got[0]["cost_usd"] == 0.0
    assert r.err.count("\n") == 1 and "2 of 2" in r.err  # not a terminal: the summary line only


@pytest.mark.slow
def test_a_reader_closing_stdout_stops_the_batch_quietly(home, make_sim):
    sim = make_sim(latency=0.05)
    source = write_input(home / "in.jsonl", 200)
    proc = subprocess.Popen([sys.executable, "-m", "voicecli", "batch", str(source), "-O", "-", "-j", "4", "-p",
                             "offline", "--base-url", sim.base_url, "-t", "sse"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env(home))
    try:
        assert json.loads(proc.stdout.readline())["text"].startswith("You said")
        proc.stdout.close()  # as `| head -1` does
        assert proc.wait(30) == 0
        assert "Traceback" not in proc.stderr.read().decode()
    finally:
        proc.kill()
    assert len(http(sim, "/v1/responses")) < 200


@pytest.mark.parametrize("transport", ["sse", "chat", "ws"])
def test_each_transport_answers_each_item_once_with_per_item_settings(home, sim, transport):
    source = home / "in.jsonl"
    source.write_text('{"id": "a", "prompt": "alpha", "system": "Be terse.", "options": {"temperature": 0.2}}\n'
                      '{"id": 7, "prompt": "beta", "schema": "name, age int"}\n{"id": "c", "prompt": "gamma"}\n')
    r = batch(home, sim, str(source), "-O", str(home / "out.jsonl"), "--json", transport=transport)
    assert r.code == 0, r.err
    got = {g["id"]: g for g in lines(home / "out.jsonl")}
    assert set(got) == {"a", 7, "c"}
    assert got[7]["json"] == {"name": "You said: beta", "age": 0}
    assert json.loads(r.out)["ok"] == 3
    sent = [e.get("body") or e.get("event") for e in sim.log if e.get("body") or e.get("event")]
    system = [b for b in sent if "alpha" in json.dumps(b)][0]
    assert "Be terse." in json.dumps(system) and system.get("temperature") == 0.2
    assert (home / "out.jsonl").stat().st_mode & 0o077 == 0  # answers are private, as the conversation log


@pytest.mark.slow
def test_per_item_failures_are_error_lines_exit_8_and_a_rerun_retries_only_them(home, sim):
    source = home / "in.jsonl"
    long = " ".join(f"w{i}" for i in range(60))
    source.write_text('{"id": "ok", "prompt": "fine"}\n'
                      '{"id": "bad", "prompt": "x", "options": {"max_output_tokens": 5}}\n'  # the server's 400
                      f'{{"id": "cut", "prompt": "{long}", "options": {{"max_output_tokens": 16}}}}\n')
    r = batch(home, sim, str(source))
    assert r.code == 8, r.err
    assert "2 items failed" in r.err and "in.out.jsonl" in r.err
    got = {g["id"]: g for g in lines(home / "in.out.jsonl")}
    assert "error" not in got["ok"]
    assert got["bad"]["error"].startswith("invalid_request (400)")
    assert "incomplete" in got["cut"]["error"] and got["cut"]["text"]
    before = len(sim.log)
    r = batch(home, sim, str(source))
    assert r.code == 8
    retried = http(sim, "/v1/responses", since=before)
    assert len(retried) == 2 and not any("fine" in json.dumps(e["body"]) for e in retried)
    assert sorted(g["id"] for g in lines(home / "in.out.jsonl")) == ["bad", "cut", "ok"]  # each once


@pytest.mark.slow
def test_attached_files_and_images(home, sim):
    import base64

    (home / "notes.txt").write_text("the quarterly numbers are up\n")
    png = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
    (home / "dot.png").write_bytes(png)
    source = home / "in.jsonl"
    source.write_text(json.dumps({"id": "f", "prompt": "summarise", "file": str(home / "notes.txt"),
                                  "image": [str(home / "dot.png")]}) + "\n")
    r = batch(home, sim, str(source))
    assert r.code == 0, r.err
    body = json.dumps(http(sim, "/v1/responses")[0]["body"])
    assert "the quarterly numbers are up" in body and "data:image/png;base64," in body
    source.write_text(json.dumps({"id": "g", "prompt": "x", "file": str(home / "gone.txt")}) + "\n")
    r = batch(home, sim, str(source))
    assert r.code == 2 and "line 1" in r.err and "gone.txt: no such file" in r.err


def test_an_authentication_failure_stops_the_batch(home, make_sim):
    sim = make_sim(api_key="sk-right")
    source = write_input(home / "in.jsonl", 20)
    r = batch(home, sim, str(source), "-j", "2")
    assert r.code == 4, r.err
    assert "401" in r.err and "stopped" in r.err
    assert lines(home / "in.out.jsonl") == []  # nothing marked done: a rerun with the key does all
    assert len(http(sim, "/v1/responses")) < 20


def test_nothing_listening_stops_at_once_with_exit_6(home):
    source = write_input(home / "in.jsonl", 5)
    r = run_cli(home, "batch", str(source), "-p", "offline", "--base-url", "http://127.0.0.1:9/v1", "-t", "sse")
    assert r.code == 6 and "nothing is listening" in r.err
    assert lines(home / "in.out.jsonl") == []


@pytest.mark.slow
def test_not_logged_unless_log(home, sim):
    source = write_input(home / "in.jsonl", 3)
    assert batch(home, sim, str(source), "-O", str(home / "a.jsonl")).code == 0
    assert not list(home.rglob("conversations/*.jsonl"))
    assert batch(home, sim, str(source), "-O", str(home / "b.jsonl"), "--log").code == 0
    assert len(list(home.rglob("conversations/*.jsonl"))) == 3  # one conversation per item


def test_a_second_batch_on_the_same_out_is_refused(home, sim):
    import fcntl

    source = write_input(home / "in.jsonl", 2)
    with open(home / "in.out.jsonl", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        r = batch(home, sim, str(source))
    assert r.code == 2 and "another voicecli batch" in r.err


# ---- resume, interrupts, rate limits ---------------------------------------------------------------------


@pytest.mark.slow
def test_kill_9_mid_run_then_rerun_gives_every_id_exactly_once(home, make_sim):
    sim = make_sim(latency=0.2)
    source = write_input(home / "in.jsonl", 40)
    out = home / "in.out.jsonl"
    proc = start(home, sim, str(source), "-j", "4")
    try:
        wait_for(lambda: len(lines(out)) >= 8, what="8 answers")
        assert proc.poll() is None  # written as each completes, not at the end
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    first = {g["id"] for g in lines(out)}  # whole lines only
    assert 8 <= len(first) < 40
    before = len(sim.log)
    r = batch(home, sim, str(source), "-j", "8")
    assert r.code == 0, r.err
    assert f"{len(first)} already in" in r.err
    ids = [g["id"] for g in lines(out)]
    assert sorted(ids) == [f"id-{i:03d}" for i in range(40)]  # every id exactly once
    again = [e for e in http(sim, "/v1/responses", since=before)
             if any(i.replace("id", "item") in json.dumps(e["body"]) for i in first)]
    assert again == []  # none answered twice


@pytest.mark.slow
@pytest.mark.parametrize("sig, code, said", [(signal.SIGINT, 130, "by Ctrl-C"), (signal.SIGTERM, 143, "by SIGTERM")])
def test_ctrl_c_exits_130_keeping_the_finished_lines(home, make_sim, sig, code, said):
    sim = make_sim(latency=0.3)
    source = write_input(home / "in.jsonl", 30)
    out = home / "in.out.jsonl"
    proc = start(home, sim, str(source), "-j", "2")
    try:
        wait_for(lambda: len(lines(out)) >= 2, what="2 answers")
        proc.send_signal(sig)
        assert proc.wait(20) == code
    finally:
        proc.kill()
    kept = lines(out)
    assert 2 <= len(kept) < 30 and not any(g.get("error") for g in kept)
    assert f"interrupted {said}" in (home / "stderr.txt").read_text()


@pytest.mark.slow
def test_a_progress_bar_on_a_terminal(home, make_sim):
    import pexpect

    sim = make_sim(latency=0.3)
    source = write_input(home / "in.jsonl", 6)
    child = pexpect.spawn(sys.executable, ["-m", "voicecli", "batch", str(source), "-j", "1", "-p", "offline",
                                           "--base-url", sim.base_url, "-t", "sse"],
                          env={**cli_env(home), "TERM": "xterm-256color"}, encoding="utf-8", timeout=30)
    child.expect(r"batch [1-5]/6 · [0-9.]+/s · ETA \d+ s · [0-9,]+ tokens · \$0")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert "6 of 6 to do answered" in child.before
    assert len(lines(home / "in.out.jsonl")) == 6


@pytest.mark.slow
def test_429_with_retry_after_slows_the_batch_down_without_error_lines(home, sim):
    source = write_input(home / "in.jsonl", 40)
    r = batch(home, sim, str(source), "-j", "16", "--json", *fault("status=429; retry_after=0.2; every=5"))
    assert r.code == 0, r.err
    got = lines(home / "in.out.jsonl")
    assert len(got) == 40 and not any(g.get("error") for g in got)
    summary = json.loads(r.out)
    assert summary["rate_limited"] >= 8 and summary["failed"] == 0
    assert len(http(sim, "/v1/responses")) >= 48  # the 429s were sent again


def test_server_errors_are_retried_on_the_batch_budget_not_max_retries(home, sim):
    source = write_input(home / "in.jsonl", 9)
    # every request of the spec fails until the third: the offline profile's max_retries (1) would give up
    r = batch(home, sim, str(source), "-j", "1", "--json", *fault("status=502; retry_after_ms=10; times=18"))
    assert r.code == 0, r.err
    assert json.loads(r.out)["retried"] == 18 and "server or network failures retried" in r.err
    assert not any(g.get("error") for g in lines(home / "in.out.jsonl"))


def test_rate_limit_headers_hold_every_worker():
    import asyncio

    from voicecli.batch import Pacer, parse_duration

    assert parse_duration("6ms") == 0.006 and parse_duration("6m0s") == 360 and parse_duration("1.5") == 1.5
    assert parse_duration("1h2m3.5s") == 3723.5 and parse_duration("soon") is None
    now = [100.0]
    pacer = Pacer(clock=lambda: now[0])
    pacer.observe({"x-ratelimit-remaining-requests": "3", "x-ratelimit-reset-requests": "20s"})
    assert pacer.resume_at == 0.0
    pacer.observe({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1m30s"})
    assert pacer.resume_at == 190.0
    pacer.hold(500)  # a server's word is capped: MAX_HOLD
    assert pacer.resume_at == 220.0
    now[0] = 300.0
    asyncio.run(asyncio.wait_for(pacer.ready(), 1))  # past it: no wait


# ---- the Batch API -------------------------------------------------------------------------------------


def created(sim, since=0):
    return http(sim, "/v1/batches", "POST", since)


@pytest.mark.slow
def test_batch_api_end_to_end(home, make_sim):
    sim = make_sim(batch_delay=0.2)
    source = write_input(home / "in.jsonl", 6)
    r = batch(home, sim, str(source), "--api", "batch", "--json")
    assert r.code == 0, r.err
    got = {g["id"]: g for g in lines(home / "in.out.jsonl")}
    assert sorted(got) == [f"id-{i:03d}" for i in range(6)]
    assert got["id-002"]["text"] == "You said: item-002 please" and got["id-002"]["usage"]["output_tokens"]
    assert not (home / "in.out.jsonl.batch.json").exists()  # collected: nothing left to resume
    upload = http(sim, "/v1/files", "POST")
    assert len(upload) == 1 and upload[0]["content_type"].startswith("multipart/")
    assert created(sim)[0]["body"]["endpoint"] == "/v1/responses"
    assert json.loads(r.out)["batch_ids"]
    requests = [json.loads(line) for line in next(iter(sim.sim.files.values()))["data"].splitlines()]
    assert {q["custom_id"] for q in requests} == set(got) and requests[0]["body"].get("stream") is None


def test_batch_api_chat_transport_uses_chat_completions(home, make_sim):
    sim = make_sim()
    source = write_input(home / "in.jsonl", 2)
    r = batch(home, sim, str(source), "--api", "batch", transport="chat")
    assert r.code == 0, r.err
    assert created(sim)[0]["body"]["endpoint"] == "/v1/chat/completions"
    assert [g["text"] for g in sorted(lines(home / "in.out.jsonl"), key=lambda g: g["id"])][0].startswith("You said")


@pytest.mark.slow
def test_batch_api_killed_while_polling_resumes_without_paying_twice(home, make_sim):
    sim = make_sim(batch_delay=3.0)
    source = write_input(home / "in.jsonl", 10)
    state = home / "in.out.jsonl.batch.json"
    proc = start(home, sim, str(source), "--api", "batch")
    try:
        wait_for(lambda: state.exists() and json.loads(state.read_text())["batches"][0].get("id"),
                 what="the batch id beside OUT")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    batch_id = json.loads(state.read_text())["batches"][0]["id"]
    r = batch(home, sim, str(source))  # local mode would pay for them twice
    assert r.code == 2 and "--api batch" in r.err and not http(sim, "/v1/responses")
    r = run_cli(home, "batch", "status", batch_id, "-p", "offline", "--base-url", sim.base_url)
    assert r.code == 0 and batch_id in r.out and ("in_progress" in r.out or "validating" in r.out)
    r = run_cli(home, "batch", "status", "-p", "offline", "--base-url", sim.base_url)  # the recent ones
    assert r.code == 0 and r.out.startswith(batch_id) and "→ in.out.jsonl" in r.out
    r = run_cli(home, "batch", "status", str(home / "in.out.jsonl"), "-p", "offline", "--base-url", sim.base_url)
    assert r.code == 0 and r.out.startswith(batch_id)  # the batches OUT waits for
    r = batch(home, sim, str(source), "--api", "batch")
    assert r.code == 0, r.err
    assert "resuming 1 batch" in r.err
    assert len(created(sim)) == 1  # polled the recorded batch; did not create another
    assert sorted(g["id"] for g in lines(home / "in.out.jsonl")) == [f"id-{i:03d}" for i in range(10)]
    assert not state.exists()


@pytest.mark.slow
def test_ctrl_c_while_polling_leaves_the_batch_to_collect_later(home, make_sim):
    sim = make_sim(batch_delay=1.0)
    source = write_input(home / "in.jsonl", 4)
    state = home / "in.out.jsonl.batch.json"
    proc = start(home, sim, str(source), "--api", "batch")
    try:
        wait_for(lambda: state.exists() and json.loads(state.read_text())["batches"][0].get("id"),
                 what="the batch id beside OUT")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 130
    finally:
        proc.kill()
    assert "rerun the same command to collect it" in (home / "stderr.txt").read_text()
    r = batch(home, sim, str(source), "--api", "batch")
    assert r.code == 0, r.err
    assert len(created(sim)) == 1 and len(lines(home / "in.out.jsonl")) == 4


@pytest.mark.slow
def test_batch_cancel_then_rerun_submits_the_undone_items(home, make_sim):
    sim = make_sim(batch_delay=20.0)
    source = write_input(home / "in.jsonl", 40)
    state = home / "in.out.jsonl.batch.json"
    proc = start(home, sim, str(source), "--api", "batch")
    try:
        wait_for(lambda: state.exists() and json.loads(state.read_text())["batches"][0].get("id"),
                 what="the batch id beside OUT")
        batch_id = json.loads(state.read_text())["batches"][0]["id"]
        r = run_cli(home, "batch", "cancel", batch_id, "-p", "offline", "--base-url", sim.base_url, "--json")
        assert r.code == 0, r.err
        assert json.loads(r.out)["status"] in ("cancelling", "cancelled")
        assert proc.wait(30) == 8  # the batch ended cancelled: what it did not do became error lines
    finally:
        proc.kill()
    first = lines(home / "in.out.jsonl")
    assert len(first) == 40
    undone = {g["id"] for g in first if g.get("error")}
    assert undone and "cancelled" in next(g["error"] for g in first if g.get("error"))
    sim.sim.config.batch_delay = 0.0
    r = batch(home, sim, str(source), "--api", "batch")
    assert r.code == 0, r.err
    latest = list(sim.sim.files.values())
    resent = [json.loads(line)["custom_id"] for line in
              next(f for f in reversed(latest) if f["purpose"] == "batch")["data"].splitlines()]
    assert set(resent) == undone
    assert sorted(g["id"] for g in lines(home / "in.out.jsonl")) == [f"id-{i:03d}" for i in range(40)]


@pytest.mark.slow
def test_an_expired_batch_leaves_error_lines_and_a_rerun_submits_only_those(home, make_sim):
    sim = make_sim()
    source = write_input(home / "in.jsonl", 8)
    r = batch(home, sim, str(source), "--api", "batch", *fault("expire_after=3"))
    assert r.code == 8, r.err
    first = {g["id"]: g for g in lines(home / "in.out.jsonl")}
    assert len(first) == 8 and sum(1 for g in first.values() if g.get("error")) == 5
    assert "batch_expired" in next(g["error"] for g in first.values() if g.get("error"))
    r = batch(home, sim, str(source), "--api", "batch")
    assert r.code == 0, r.err
    second = [f for f in sim.sim.files.values() if f["purpose"] == "batch"][-1]
    assert len(second["data"].splitlines()) == 5
    got = lines(home / "in.out.jsonl")
    assert sorted(g["id"] for g in got) == sorted(first) and not any(g.get("error") for g in got)


@pytest.mark.slow
def test_failed_items_and_failed_batches(home, make_sim):
    sim = make_sim()
    source = write_input(home / "in.jsonl", 6)
    r = batch(home, sim, str(source), "--api", "batch", *fault("fail_items=3"))
    assert r.code == 8, r.err
    errors = [g for g in lines(home / "in.out.jsonl") if g.get("error")]
    assert len(errors) == 2 and errors[0]["error"].startswith("invalid_request (400)")
    (home / "in.out.jsonl").unlink()
    r = batch(home, sim, str(source), "--api", "batch", *fault("batch_failed"))
    assert r.code == 8 and "failed: line 1" in r.err
    assert all(g.get("error") for g in lines(home / "in.out.jsonl"))


# ---- the simulator's Files and Batches fronts, against the official SDK ------------------------------------


@pytest.mark.slow
def test_simulator_files_and_batches_match_the_sdk(make_sim):
    import httpx
    from openai import OpenAI
    from openai.types import Batch, FileObject
    from openai.types.chat import ChatCompletion
    from openai.types.responses import Response
    from sdkcheck import validate

    sim = make_sim(batch_delay=0.3)
    client = OpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0)

    def raw(path):
        return httpx.get(f"{sim.base_url}{path}").json()

    def finished(batch_id):
        return client.batches.retrieve(batch_id).status in ("completed", "failed", "expired", "cancelled")

    bodies = {"/v1/responses": (Response, {"model": "sim-1", "input": "hi"}),
              "/v1/chat/completions": (ChatCompletion, {"model": "sim-1", "messages": [{"role": "user", "content": "hi"}]})}
    for endpoint, (kind, body) in bodies.items():
        data = "".join(json.dumps({"custom_id": f"c{i}", "method": "POST", "url": endpoint, "body": body}) + "\n"
                       for i in range(4))
        upload = client.files.create(file=("in.jsonl", data.encode()), purpose="batch")
        validate(FileObject, raw(f"/files/{upload.id}"))
        created = client.batches.create(input_file_id=upload.id, endpoint=endpoint, completion_window="24h",
                                        metadata={"k": "v"}, extra_headers={"x-sim-fault": "fail_items=4"})
        validate(Batch, raw(f"/batches/{created.id}"))
        wait_for(lambda: finished(created.id), what="the batch")
        done = raw(f"/batches/{created.id}")
        validate(Batch, done)
        assert done["status"] == "completed" and done["request_counts"] == {"total": 4, "completed": 3, "failed": 1}
        for line in client.files.content(done["output_file_id"]).text.splitlines():
            validate(kind, json.loads(line)["response"]["body"])
        failed = json.loads(client.files.content(done["error_file_id"]).text)
        assert failed["custom_id"] == "c3" and failed["response"]["status_code"] == 400
    assert len(client.batches.list().data) == 2

    upload = client.files.create(file=("in.jsonl", data.encode()), purpose="batch")
    for spec, status in (("expire_after=1", "expired"), ("batch_failed", "failed")):
        b = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h",
                                  extra_headers={"x-sim-fault": spec})
        wait_for(lambda: finished(b.id), what="the batch")
        validate(Batch, raw(f"/batches/{b.id}"))
        assert client.batches.retrieve(b.id).status == status
    sim.sim.config.batch_delay = 30.0
    b = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
    cancelling = client.batches.cancel(b.id)
    validate(Batch, cancelling.model_dump(mode="json", exclude_unset=True))
    wait_for(lambda: finished(b.id), what="the cancelled batch")
    assert client.batches.retrieve(b.id).status == "cancelled"
    mismatched = client.files.create(file=("x.jsonl", data.encode()), purpose="batch")
    import openai

    with pytest.raises(openai.BadRequestError):
        client.batches.create(input_file_id=mismatched.id, endpoint="/v1/embeddings", completion_window="24h")
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_nope")
