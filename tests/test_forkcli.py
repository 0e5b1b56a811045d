"""The tests' fork server (tests/forkcli.py) runs the CLI as the ordinary start would: same output,
exit status, environment, working directory and signals, and nothing of one run reaches the next."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading

import pytest

import forkcli
from clihelp import cli_env, run_cli, wait_for


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


@pytest.mark.parametrize("args, kw", [
    (["infer", "-t", "sse", "hello"], {}),
    (["infer", "-t", "ws"], {"input": "from\r\nstdin\n"}),  # stdin, and newlines as text=True reads them
    (["infer", "-t", "chat", "a\x1b[31mred\x07 prompt"], {}),  # control characters, as the terminal would get them
    (["infer", "-o", "nosuch.key=1", "hi"], {}),  # a usage error: exit 2, the message on stderr
    (["infer", "hi"], {"VOICECLI_PROFILE": "nosuch"}),
    (["--version"], {}),
])
def test_a_forked_run_is_the_ordinary_run(monkeypatch, home, sim, args, kw):
    if args[0] == "infer" and "VOICECLI_PROFILE" not in kw:
        args = [args[0], "-p", "offline", "--base-url", sim.base_url, *args[1:]]
    monkeypatch.setenv("VOICECLI_TEST_EXEC", "0")
    forked = run_cli(home, *args, **kw)
    assert forkcli._server is not None and forkcli._server.last_pid is not None  # it was the server's
    monkeypatch.setenv("VOICECLI_TEST_EXEC", "1")
    assert forked == run_cli(home, *args, **kw)


def test_environment_and_directory_are_the_runs_own(monkeypatch, home, sim, tmp_path):
    monkeypatch.setenv("VOICECLI_TEST_EXEC", "0")
    (tmp_path / "note.txt").write_text("the note")
    monkeypatch.chdir(tmp_path)
    r = run_cli(home, "infer", "-p", "offline", "--base-url", sim.base_url, "-t", "sse", "-f", "note.txt", "read")
    assert r.code == 0, r.err
    assert "the note" in str(sim.log[-1])  # found from the run's own working directory
    first = run_cli(home, "profiles", "show", "offline", VOICECLI_MODEL="gpt-one")
    second = run_cli(home, "profiles", "show", "offline")
    assert "gpt-one" in first.out and "gpt-one" not in second.out  # the first run's variable is gone


def test_a_run_that_must_start_afresh_does(monkeypatch, home):
    """What Python reads only at its start (PYTHON*, the locale) cannot be given to a forked run."""
    monkeypatch.setenv("VOICECLI_TEST_EXEC", "0")
    assert forkcli.server_for(cli_env(home)) is not None
    assert forkcli.server_for(cli_env(home, PYTHONPATH="elsewhere")) is None
    assert forkcli.server_for(cli_env(home, LC_ALL="C")) is None


def hanging_server():
    """A TCP server that takes connections and never answers: the run waits on it until signalled."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    return listener, accepted


@pytest.mark.slow  # a fork server of its own (~1 s of CPU) and two runs
@pytest.mark.parametrize("forked", [True, False])
def test_ctrl_c_ends_a_run_as_it_ends_voicecli(monkeypatch, home, forked):
    """A forked run gets Python's own SIGINT handler back (the server may have been started by a worker
    that ignores SIGINT): Ctrl-C is exit 130 with 'interrupted', exactly as with an ordinary start."""
    listener, accepted = hanging_server()
    argv = ["infer", "-p", "offline", "--base-url", f"http://127.0.0.1:{listener.getsockname()[1]}/v1", "-t", "sse",
            "-o", "connection.max_retries=0", "hi"]
    if forked:
        monkeypatch.setenv("VOICECLI_TEST_EXEC", "0")
        # as a background job of a non-interactive shell would start it
        server = forkcli.ForkServer(cli_env(home), preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
        done = {}
        thread = threading.Thread(target=lambda: done.update(r=server.run(argv, env=cli_env(home), input=None,
                                                                            timeout=60)))
        thread.start()
        wait_for(lambda: accepted, what="the run's request")
        os.kill(server.last_pid, signal.SIGINT)
        thread.join(60)
        server.close()
        code, err = done["r"].returncode, done["r"].stderr
    else:
        proc = subprocess.Popen([sys.executable, "-m", "voicecli", *argv], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(home),
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        wait_for(lambda: accepted, what="the run's request")
        proc.send_signal(signal.SIGINT)
        err = proc.communicate(timeout=60)[1]
        code = proc.returncode
    listener.close()
    assert code == 130 and "voicecli: interrupted" in err, (code, err)


def test_a_timeout_kills_the_run_and_the_server_goes_on(monkeypatch, home):
    monkeypatch.setenv("VOICECLI_TEST_EXEC", "0")
    listener, accepted = hanging_server()
    server = forkcli.server_for(cli_env(home))
    with pytest.raises(subprocess.TimeoutExpired):
        server.run(["infer", "-p", "offline", "--base-url", f"http://127.0.0.1:{listener.getsockname()[1]}/v1",
                    "-t", "sse", "hi"], env=cli_env(home), input=None, timeout=1)
    wait_for(lambda: not os.path.exists(f"/proc/{server.last_pid}"), what="the timed-out run to be gone")
    listener.close()
    assert run_cli(home, "--version").code == 0 and server.proc.poll() is None
