"""Run the real CLI as a subprocess, sandboxed in its own VOICECLI_HOME."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import forkcli

# variables that would leak the developer's own setup into a test
SCRUB = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "VOICECLI_PROFILE", "VOICECLI_MODEL", "VOICECLI_TRANSPORT", "NO_COLOR",
         "http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@dataclass
class Result:
    code: int
    out: str
    err: str


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUB}
    env["VOICECLI_HOME"] = str(home)
    env.update(extra)
    return env


def run_cli(home: Path, *args: str, input: str | None = None, timeout: float = 60, **env: str) -> Result:
    """`voicecli ARGS` run to its end, from this worker's fork server (see forkcli) where it can be."""
    full_env = cli_env(home, **env)
    server = forkcli.server_for(full_env)
    if server is not None:
        proc = server.run(args, env=full_env, input=input, timeout=timeout)
    else:
        proc = subprocess.run(
            [sys.executable, "-m", "voicecli", *args],
            input=input, capture_output=True, text=True, timeout=timeout, env=full_env,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def sim_speech(sim_url: str, text: str, *, wav: bool = False, api_key: str | None = None) -> bytes:
    """The simulator's speech for `text` (POST /v1/audio/speech): raw 24 kHz PCM16 mono, or a WAV.
    The simulator remembers the text, so its transcription of this audio is exactly `text` —
    the user's words for cascade tests. `sim_url` is the base URL (…/v1)."""
    import httpx

    body = {"model": "gpt-4o-mini-tts", "voice": "alloy", "input": text, "response_format": "wav" if wav else "pcm"}
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    reply = httpx.post(f"{sim_url.rstrip('/')}/audio/speech", json=body, headers=headers, timeout=60)
    reply.raise_for_status()
    return reply.content


def talk_with_approval(home: Path, argv: list[str], line: str, prompt: str, answer: str = "y",
                       timeout: float = 60) -> tuple[int, str, str]:
    """Run `voicecli talk ARGV`, type `line`, wait for the approval `prompt` on stderr, answer it; then
    wait for talk to finish. Returns (exit code, stdout, stderr)."""
    import threading

    proc = subprocess.Popen([sys.executable, "-m", "voicecli", "talk", *argv], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(home))
    asked, err_lines = threading.Event(), []

    def read_stderr():
        for err_line in proc.stderr:
            err_lines.append(err_line)
            if prompt in err_line:
                asked.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
        assert asked.wait(30), "".join(err_lines)
        proc.stdin.write(answer + "\n")
        proc.stdin.flush()
        out = proc.stdout.read()
        proc.wait(timeout)
    finally:
        proc.kill()
    reader.join(5)
    return proc.returncode, out, "".join(err_lines)


@dataclass
class Measured(Result):
    peak_rss_mib: float  # the CLI process's peak resident memory
    seconds: float  # wall time
    cpu_seconds: float  # user + system, the CLI and the children it waited for

    def __repr__(self) -> str:
        return (f"exit {self.code} in {self.seconds:.1f} s ({self.cpu_seconds:.1f} s of CPU), "
                f"{self.peak_rss_mib:.0f} MiB: {self.err!r}")

    def bounded(self, *, cpu_seconds: float, rss_mib: float, wall_seconds: float = 60) -> None:
        """The work is bounded in CPU time (what a busy machine does not inflate) and memory; the
        generous wall-time bound only tells an end from a hang."""
        assert self.cpu_seconds <= cpu_seconds, self
        assert self.peak_rss_mib <= rss_mib, self
        assert self.seconds <= wall_seconds, self


_MEASURE = ("import resource, subprocess, sys, time; t = time.monotonic(); "
            "code = subprocess.run(sys.argv[1:]).returncode; u = resource.getrusage(resource.RUSAGE_CHILDREN); "
            "sys.stderr.write(f'\\n@@ {u.ru_maxrss} {time.monotonic() - t} {u.ru_utime + u.ru_stime}\\n'); "
            "sys.exit(code)")


def run_cli_measured(home: Path, *args: str, timeout: float = 90, **env: str) -> Measured:
    """`run_cli`, also measuring the CLI's peak RSS and CPU time (getrusage of a wrapper's only
    child) and its wall time."""
    proc = subprocess.run([sys.executable, "-c", _MEASURE, sys.executable, "-m", "voicecli", *args],
                          capture_output=True, text=True, timeout=timeout, env=cli_env(home, **env),
                          stdin=subprocess.DEVNULL)
    err, _, numbers = proc.stderr.rpartition("\n@@ ")
    rss_kib, seconds, cpu = numbers.split()
    return Measured(proc.returncode, proc.stdout, err, int(rss_kib) / 1024, float(seconds), float(cpu))


def wait_for(predicate, timeout: float = 30, what: str = "the condition") -> None:
    """Poll `predicate()` until it is true; fail after `timeout` seconds (a hang guard, not a bound)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


def installed(module: str) -> bool:
    """Whether `module` can be imported, found without importing it (a test module's skip condition:
    importing heavy SDKs at collection costs every test worker their import time)."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False
