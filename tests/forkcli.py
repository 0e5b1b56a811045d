"""Run the real CLI without paying for its imports on every run: a fork server per test worker.

Most of the fast subset's CPU went into starting the CLI (~0.2 s a run, 450 runs), nearly all of it
the interpreter start and the same imports each time (typer, asyncio, httpx2, websockets, our own
modules). The server imports them once and forks a child per run. The child is still a real process
of its own: its argv, environment, working directory, stdin/stdout/stderr pipes, signal dispositions
and exit status (by signal too) are its own, and it exits through the interpreter's normal shutdown
(atexit, flushes). What it does not do is start Python and import those modules again.

A run whose environment changes what Python reads only at start (PYTHON*, the locale) is started the
ordinary way, and `VOICECLI_TEST_EXEC=1` starts every run that way: the suite must pass both ways.
Tests about start-up itself (imports, signal dispositions a shell gives) start the CLI with
`subprocess` directly and are not affected.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading

# read by the interpreter at start only: a run that changes them cannot share the server's start
STARTUP_ENV = ("PYTHON", "LANG", "LC_ALL", "LC_CTYPE")

SERVER = r"""
import importlib, json, os, runpy, signal, socket, sys
for name in sys.argv[2].split(","):
    try:
        importlib.import_module(name)
    except ImportError:  # an optional extra not installed: the run finds it missing as it would anyway
        pass
parent = os.getppid()
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(sys.argv[1])
listener.listen(16)
listener.settimeout(1.0)
print("ready", flush=True)


# The waiters that ended. Reaped, not ignored: so their CPU (their runs' included) counts in this
# server's children's usage, and so in the worker's (with SIGCHLD ignored it would be dropped).
def reap():
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


run = None
while run is None:
    reap()
    try:
        conn, _ = listener.accept()
    except socket.timeout:
        if os.getppid() != parent:  # the test worker is gone
            sys.exit(0)
        continue
    conn.settimeout(None)
    message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
    if not fds:  # the worker is done: the runs' usage is counted once the last waiter is reaped
        while True:
            try:
                os.wait()
            except ChildProcessError:
                sys.exit(0)
    if os.fork() != 0:  # the server: on to the next run
        for fd in fds:
            os.close(fd)
        conn.close()
        continue
    # the waiter: forks the run, tells its pid, waits for it and tells how it ended
    listener.close()
    pid = os.fork()
    if pid == 0:
        conn.close()
        run = json.loads(message)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        break
    for fd in fds:
        os.close(fd)
    try:
        conn.sendall(b"%d\n" % pid)
    except OSError:
        pass
    _, status = os.waitpid(pid, 0)
    try:
        conn.sendall(b"%d\n" % os.waitstatus_to_exitcode(status))
    finally:  # the test may have gone (a timeout)
        os._exit(0)
# the run: as `python -m voicecli ARGS` would start, minus the interpreter's start and the imports
for fd in fds:
    if fd > 2:
        os.close(fd)
os.chdir(run["cwd"])
os.environ.clear()
os.environ.update(run["env"])
signal.signal(signal.SIGINT, signal.default_int_handler)
del listener, conn, message, fds, parent
sys.argv = ["voicecli", *run["args"]]
runpy.run_module("voicecli", run_name="__main__", alter_sys=True)
"""

# what nearly every run imports; each run still imports whatever else its command needs
PRELOAD = ("voicecli.cli", "voicecli.infer", "voicecli.conversation", "voicecli.transport.http",
           "voicecli.transport.responses_ws", "voicecli.wire.chat", "voicecli.wire.responses", "httpx2", "asyncio",
           # the MCP SDK: ~1 s of CPU to import, in each run with an MCP server (most of test_mcp)
           "voicecli.mcp", "mcp.client.session", "mcp.client.stdio", "mcp.client.streamable_http")


class ForkServer:
    def __init__(self, env: dict[str, str], preexec_fn=None):
        self.dir = tempfile.mkdtemp(prefix="voicecli-fork-")
        self.path = os.path.join(self.dir, "s")
        self.env = env
        self.last_pid: int | None = None  # the latest run's, for tests that signal it
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER, self.path, ",".join(PRELOAD)], env=env, preexec_fn=preexec_fn,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        if self.proc.stdout.readline() != "ready\n":
            raise RuntimeError(f"the CLI fork server did not start (exit {self.proc.wait()})")
        atexit.register(self.close)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                    conn.connect(self.path)
                    conn.sendall(b"done")
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def serves(self, env: dict[str, str]) -> bool:
        def startup(e):
            return {k: v for k, v in e.items() if k.startswith(STARTUP_ENV)}
        return self.proc.poll() is None and startup(env) == startup(self.env)

    def run(self, args, *, env: dict[str, str], input: str | None, timeout: float) -> subprocess.CompletedProcess:
        stdin_r, stdin_w = os.pipe() if input is not None else (os.open(os.devnull, os.O_RDONLY), None)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(self.path)
            message = json.dumps({"args": list(args), "env": env, "cwd": os.getcwd()}).encode()
            socket.send_fds(conn, [message], [stdin_r, out_w, err_w])
        finally:
            for fd in (stdin_r, out_w, err_w):
                os.close(fd)
        chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}

        def drain(fd: int) -> None:
            with open(fd, "rb", closefd=True) as pipe:
                chunks[fd].append(pipe.read())

        def feed() -> None:
            with open(stdin_w, "wb", closefd=True) as pipe:
                try:
                    pipe.write(input.encode())
                except BrokenPipeError:
                    pass

        threads = [threading.Thread(target=drain, args=(fd,), daemon=True) for fd in (out_r, err_r)]
        if stdin_w is not None:
            threads.append(threading.Thread(target=feed, daemon=True))
        for t in threads:
            t.start()
        conn.settimeout(timeout)
        reply = conn.makefile("rb")
        self.last_pid = pid = int(reply.readline())
        try:
            code = int(reply.readline())
        except (socket.timeout, TimeoutError):
            os.kill(pid, signal.SIGKILL)
            raise subprocess.TimeoutExpired(["voicecli", *args], timeout) from None
        finally:
            conn.close()
        for t in threads:
            t.join(timeout)
        # as subprocess.run(text=True) decodes: strict, universal newlines
        text = {fd: b"".join(c).decode().replace("\r\n", "\n").replace("\r", "\n") for fd, c in chunks.items()}
        return subprocess.CompletedProcess(["voicecli", *args], code, text[out_r], text[err_r])


_server: ForkServer | None = None


def server_for(env: dict[str, str]) -> ForkServer | None:
    """This worker's server, started on first use; None if this run must start the ordinary way."""
    global _server
    if os.environ.get("VOICECLI_TEST_EXEC") == "1":
        return None
    if _server is None or _server.proc.poll() is not None:
        # what the interpreter reads at start as this worker has it: runs that change none of it are served
        _server = ForkServer({k: v for k, v in os.environ.items() if k.startswith(STARTUP_ENV) or k == "PATH"})
    return _server if _server.serves(env) else None
