"""`voicecli batch` against the simulator, side by side with `xargs -P 64 -n 1 voicecli infer`.

(a) throughput: 2,000 prompts at 200 ms simulator latency with -j 64, per transport, against the
    ideal j ÷ latency = 320/s; client CPU per item (user+sys of the batch process ÷ items, its start
    included) and the simulator's (this process, which runs it in a thread);
(b) the shell loop it replaces: `xargs -P 64 -n 1 voicecli infer` on XARGS_COUNT prompts (2,000 would take
    minutes on two cores: a process start per prompt is what is measured), compared by items/s;
(c) 20 % of the requests answered 429 + `retry-after: 0.2` (`every=5`): all complete, none an error line;
(d) memory: peak RSS of a 100,000-prompt batch (zero-latency simulator, output to a file), and of 2,000;
(e) the Batch API path (`--api batch`): 2,000 prompts uploaded, run by the simulator, written to OUT.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import VENV_BIN, Section

COUNT, LATENCY, JOBS = 2000, 0.2, 64
XARGS_COUNT = 192
BIG = 100_000
TARGET_SHARE, TARGET_CPU_MS, TARGET_XARGS, TARGET_RSS = 0.80, 2.0, 10.0, 120

_MEASURE = ("import json, resource, subprocess, sys, time; t = time.monotonic(); "
            "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).returncode; "
            "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
            "print(json.dumps({'code': code, 'wall': time.monotonic() - t, 'cpu': u.ru_utime + u.ru_stime, "
            "'rss_mib': u.ru_maxrss / 1024}))")


def _measure(argv: list[str], env: dict) -> dict:
    """Wall time, CPU and peak RSS of one command (a wrapper process's only child); plus the CPU this
    process (the simulator's thread) spent meanwhile."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    proc = subprocess.run([sys.executable, "-c", _MEASURE, *argv], capture_output=True, text=True,
                          env={**os.environ, **env}, check=True)
    after = resource.getrusage(resource.RUSAGE_SELF)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["sim_cpu"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return out


def _prompts(path: Path, n: int) -> Path:
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": i, "prompt": f"prompt number {i}: say something short"}) + "\n")
    return path


def _out_lines(path: Path) -> tuple[int, int]:
    """(lines, error lines) of an OUT file."""
    total = errors = 0
    with open(path) as f:
        for line in f:
            total += 1
            errors += '"error"' in line
    return total, errors


def run() -> Section:
    from voicecli.sim.config import SimConfig
    from voicecli.sim.server import start_in_thread

    section = Section(
        name="batch", title="batch: thousands of prompts against the simulator",
        intro=f"Simulator in this process (a thread) on loopback; `voicecli batch` a fresh process; CPU = its "
              f"user+sys (start-up included) ÷ items; sim CPU = this process's meanwhile. {os.cpu_count()} CPUs, "
              "shared with other work: throughput is bounded by the CPU the client and the simulator get.",
        headers=["measurement", "value", "target / ratio"],
    )
    home = Path(tempfile.mkdtemp(prefix="voicecli-bench-batch-"))
    env = {"VOICECLI_HOME": str(home)}
    voicecli = str(VENV_BIN / "voicecli")
    source = _prompts(home / "in.jsonl", COUNT)
    ideal = COUNT / (JOBS / LATENCY)
    rates = {}
    with start_in_thread(SimConfig(latency=LATENCY)) as sim:
        common = ["-p", "offline", "--base-url", sim.base_url]
        for kind in ("sse", "chat", "ws"):
            out = home / f"out-{kind}.jsonl"
            m = _measure([voicecli, "batch", str(source), "-O", str(out), "-j", str(JOBS), "-t", kind, *common], env)
            lines, errors = _out_lines(out)
            share = ideal / m["wall"]
            rates[kind] = COUNT / m["wall"]
            section.rows.append([f"(a) `batch -j {JOBS} -t {kind}`, {COUNT:,} prompts at {LATENCY * 1000:.0f} ms",
                                 f"{m['wall']:.2f} s ({rates[kind]:.0f}/s; {lines} lines, {errors} errors)",
                                 f"{share:.0%} of ideal {ideal:.2f} s (target ≥ {TARGET_SHARE:.0%}, ≤ "
                                 f"{ideal / TARGET_SHARE:.1f} s)"])
            section.rows.append([f"(a) client CPU per item, `-t {kind}`", f"{m['cpu'] / COUNT * 1000:.2f} ms",
                                 f"target ≤ {TARGET_CPU_MS:g} ms; simulator {m['sim_cpu'] / COUNT * 1000:.2f} ms/item"])

        prompts = home / "prompts.txt"
        prompts.write_text("".join(f"prompt number {i}\n" for i in range(XARGS_COUNT)))
        with open(prompts) as stdin:
            started = time.monotonic()
            subprocess.run(["xargs", "-d", "\n", "-P", str(JOBS), "-n", "1", voicecli, "infer", *common, "-t", "sse",
                            "--no-log"], stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env={**os.environ, **env}, check=True)
            xargs_wall = time.monotonic() - started
        xargs_rate = XARGS_COUNT / xargs_wall
        section.rows.append([f"(b) `xargs -P {JOBS} -n 1 voicecli infer -t sse`, {XARGS_COUNT} prompts",
                             f"{xargs_wall:.2f} s ({xargs_rate:.1f}/s)",
                             f"batch -t sse is {rates['sse'] / xargs_rate:.1f}× faster (target ≥ {TARGET_XARGS:g}×)"])

        out = home / "out-429.jsonl"
        m = _measure([voicecli, "batch", str(source), "-O", str(out), "-j", str(JOBS), "-t", "sse", *common, "-o",
                      'connection.headers={"x-sim-fault" = "status=429; retry_after=0.2; every=5"}'], env)
        lines, errors = _out_lines(out)
        section.rows.append([f"(c) 20 % answered 429 + retry-after 0.2 s, {COUNT:,} prompts, -j {JOBS}",
                             f"{m['wall']:.2f} s, {lines} lines, {errors} errors (exit {m['code']})",
                             "target: all complete, none an error line"])

    with start_in_thread(SimConfig()) as sim:
        common = ["-p", "offline", "--base-url", sim.base_url]
        big = _prompts(home / "big.jsonl", BIG)
        for n, path in ((COUNT, source), (BIG, big)):
            out = home / f"out-rss-{n}.jsonl"
            m = _measure([voicecli, "batch", str(path), "-O", str(out), "-j", str(JOBS), "-t", "sse", *common], env)
            lines, errors = _out_lines(out)
            section.rows.append([f"(d) peak RSS, {n:,} prompts, zero latency, -j {JOBS} -t sse",
                                 f"{m['rss_mib']:.0f} MiB ({m['wall']:.0f} s, {lines:,} lines)",
                                 f"target ≤ {TARGET_RSS} MiB" if n == BIG else ""])
        out = home / "out-api.jsonl"
        m = _measure([voicecli, "batch", str(source), "-O", str(out), "--api", "batch", "-t", "sse", *common], env)
        lines, errors = _out_lines(out)
        section.rows.append([f"(e) `--api batch`, {COUNT:,} prompts (simulator batch_delay 0)",
                             f"{m['wall']:.2f} s, {lines} lines, peak RSS {m['rss_mib']:.0f} MiB", ""])
    section.notes.append(f"(a) ideal = {COUNT:,} ÷ ({JOBS} ÷ {LATENCY:g} s) = {ideal:.2f} s. The simulator answering "
                         f"{JOBS / LATENCY:.0f} requests/s and the client share the machine's CPUs.")
    section.notes.append(f"(b) xargs runs {XARGS_COUNT} prompts, not {COUNT:,}: a process per prompt costs ~0.3 s of "
                         "CPU, so 2,000 of them would take minutes on this machine; compared by items/s.")
    return section
