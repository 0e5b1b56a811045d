"""`voicecli infer` against the simulator (zero latency), side by side with the openai SDK and llm.

(a) wall time of one short answer: `voicecli infer` per transport, a minimal openai-SDK script,
    and `llm` (throw-away venv, pointed at the simulator through extra-openai-models.yaml);
(b) request bytes per turn over a 30-turn conversation, ws vs sse vs chat;
(c) client CPU per streamed delta: (CPU of a 4,000-delta answer − CPU of a 1-delta answer) / 3,999.
"""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from common import VENV_BIN, Section, ms, throwaway_venv, time_commands

TARGET = 0.15  # infer's wall time over the openai-SDK script's, for ws (today's start-up)
HTTP_TARGET_SDK, HTTP_TARGET_FLOOR = 0.2, 1.4  # sse and chat: over the SDK script's, over the httpx2 floor's

FLOOR_SCRIPT = """
import json, sys
import httpx2
body = {"model": "sim-1", "input": sys.argv[2], "stream": True}
with httpx2.stream("POST", sys.argv[1] + "/responses", json=body, headers={"Authorization": "Bearer sk-bench"}) as r:
    for line in r.iter_lines():
        if line.startswith("data: "):
            event = json.loads(line[6:])
            if event.get("type") == "response.output_text.delta":
                sys.stdout.write(event["delta"])
print()
"""

SDK_SCRIPT = """
import sys
from openai import OpenAI
client = OpenAI(base_url=sys.argv[1], api_key="sk-bench")
for event in client.responses.create(model="sim-1", input=sys.argv[2], stream=True):
    if event.type == "response.output_text.delta":
        sys.stdout.write(event.delta)
print()
"""


def run() -> Section:
    from voicecli.sim.config import SimConfig
    from voicecli.sim.server import start_in_thread

    section = Section(
        name="infer", title="infer: end to end against the simulator",
        intro="Simulator in this process on loopback with zero latency; each command is a fresh process, the "
              "commands taking turns (median of 10 rounds after 2 warm-ups); voicecli's modules compiled to "
              "bytecode first, as installing the wheel does.",
        headers=["measurement", "value", "ratio"],
    )
    home = Path(tempfile.mkdtemp(prefix="voicecli-bench-"))
    env = {"VOICECLI_HOME": str(home), "OPENAI_API_KEY": "sk-bench", "LLM_USER_PATH": str(home / "llm")}
    with start_in_thread(SimConfig()) as sim:
        voicecli = str(VENV_BIN / "voicecli")
        commands = {f"voicecli infer -t {kind}": [voicecli, "infer", "-p", "offline", "--base-url", sim.base_url,
                                                  "-t", kind, "hello"] for kind in ("ws", "sse", "chat")}
        sdk_file = home / "sdk_script.py"
        sdk_file.write_text(SDK_SCRIPT)
        commands["openai SDK script (responses, stream)"] = [sys.executable, str(sdk_file), sim.base_url, "hello"]
        floor_file = home / "floor_script.py"
        floor_file.write_text(FLOOR_SCRIPT)
        commands["httpx2 script (responses, stream: the HTTP floor)"] = [sys.executable, str(floor_file),
                                                                         sim.base_url, "hello"]
        llm_bin = throwaway_venv("llm", ["llm"])
        if llm_bin is not None:
            (home / "llm").mkdir(exist_ok=True)
            (home / "llm" / "extra-openai-models.yaml").write_text(
                f'- model_id: sim\n  model_name: sim-1\n  api_base: "{sim.base_url}"\n  api_key_name: sim\n')
            (home / "llm" / "keys.json").write_text('{"sim": "sk-bench"}')
            commands["llm -m sim (chat completions)"] = [str(llm_bin / "llm"), "-m", "sim", "--no-log", "hello"]
        commands["voicecli --version (startup floor)"] = [voicecli, "--version"]
        timings = time_commands(commands, runs=12, env=env)
        sdk = timings["openai SDK script (responses, stream)"]
        for label, t in timings.items():
            section.rows.append([f"(a) `{label}` wall time", ms(t), f"{t / sdk:.2f}× SDK"])
        floor = timings["httpx2 script (responses, stream: the HTTP floor)"]
        for label in ("voicecli infer -t sse", "voicecli infer -t chat"):
            section.rows.append([f"(a) `{label}` over the httpx2 floor", "", f"{timings[label] / floor:.2f}× floor"])
        ws = timings["voicecli infer -t ws"] / sdk
        section.notes.append(f"(a) target for ws: ≤ {TARGET}× the SDK script's wall time — measured {ws:.2f}×"
                             + (" (MISSES it)." if ws > TARGET else " (meets it)."))
        http = {k: (timings[f"voicecli infer -t {k}"] / sdk, timings[f"voicecli infer -t {k}"] / floor)
                for k in ("sse", "chat")}
        missed = [k for k, (to_sdk, to_floor) in http.items() if to_sdk > HTTP_TARGET_SDK or to_floor > HTTP_TARGET_FLOOR]
        section.notes.append(f"(a) target for sse and chat (on httpx2): ≤ {HTTP_TARGET_FLOOR}× the httpx2 floor script "
                             f"and ≤ {HTTP_TARGET_SDK}× the SDK script — measured "
                             + ", ".join(f"{k} {f:.2f}× floor / {s_:.2f}× SDK" for k, (s_, f) in http.items())
                             + (f" (MISSES it on {', '.join(missed)})." if missed else " (meets it)."))

        phases = _import_phases(env)
        section.notes.append("(a) where `infer` goes before its first byte is sent, CPU medians of 5 fresh processes: "
                             + ", ".join(f"{name} {ms(t)}" for name, t in phases.items())
                             + f" — {ms(sum(list(phases.values())[:-1]))} of imports and command building for ws, against "
                             f"{ms(timings['voicecli infer -t ws'])} wall for a whole `-t ws` run (the rest: starting "
                             "the interpreter, the request, the exit). sse and chat load the last one instead of "
                             "websockets.")
        sizes = asyncio.run(_bytes_per_turn(sim.base_url, home))
        for kind, per_turn in sizes.items():
            picks = ", ".join(f"t{n}: {per_turn[n - 1]} B" for n in (1, 2, 10, 20, 30))
            section.rows.append([f"(b) request bytes per turn, `{kind}`", picks,
                                 f"t30/t2 = {per_turn[29] / per_turn[1]:.2f}"])
        section.notes.append("(b) ws sends only the new message plus `previous_response_id` after turn 1, so "
                             "its per-turn bytes stay flat; sse and chat resend the whole history.")

        long_prompt = " ".join(f"w{i}" for i in range(3998))  # the echo makes 4,000 deltas
        for kind in ("ws", "sse", "chat"):
            cmd = [voicecli, "infer", "-p", "offline", "--base-url", sim.base_url, "-t", kind, "--no-log"]
            short = _child_cpu(cmd + ["x"], env)
            long = _child_cpu(cmd + [long_prompt], env)
            per_delta = (long - short) / 3999
            section.rows.append([f"(c) client CPU per streamed delta, `{kind}` (stdout a pipe)",
                                 f"{per_delta * 1e6:.0f} µs", ""])
    return section


PHASES = """
import time
t0 = time.process_time()
import voicecli.cli as cli
t1 = time.process_time()
import typer.main
typer.main.get_command(cli._app_for(["voicecli", "infer"]))  # as `voicecli infer` builds it
t2 = time.process_time()
import asyncio
t3 = time.process_time()
import voicecli.infer, voicecli.conversation
t4 = time.process_time()
import voicecli.transport.responses_ws
t5 = time.process_time()
import voicecli.transport.http, httpx2
t6 = time.process_time()
print(t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5)
"""


def _import_phases(env: dict, runs: int = 5) -> dict[str, float]:
    """CPU seconds of each start-up phase of `infer`, each a median over fresh processes."""
    names = ["typer and voicecli.cli", "infer's options", "asyncio", "voicecli's infer path",
             "the ws transport (websockets)", "the sse/chat transport (httpx2)"]
    samples = [subprocess.run([sys.executable, "-c", PHASES], capture_output=True, text=True, check=True,
                              env={**os.environ, **env}).stdout.split() for _ in range(runs)]
    return {name: sorted(float(s[i]) for s in samples)[runs // 2] for i, name in enumerate(names)}


async def _bytes_per_turn(base_url: str, home: Path) -> dict[str, list[int]]:
    os.environ["VOICECLI_HOME"] = str(home)
    from voicecli import profiles
    from voicecli.conversation import Conversation
    from voicecli.transport import open_transport
    from voicecli.items import Message

    out = {}
    for kind in ("ws", "sse", "chat"):
        profile = profiles.load("offline", overrides={"connection.base_url": base_url,
                                                      "connection.transport": kind}, env={})
        transport = open_transport(profile)
        conv = Conversation(profile, transport)
        sizes = []
        for i in range(30):
            async for _ in conv.send(Message("user", f"This is message number {i:02d} of the benchmark.")):
                pass
            sizes.append(transport.bytes_sent)
        await transport.aclose()
        out[kind] = sizes
    from voicecli.transport.http import close_shared_client

    await close_shared_client()
    return out


def _child_cpu(cmd: list[str], env: dict, runs: int = 5) -> float:
    """Median user+sys CPU seconds of a child process."""
    samples = []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**os.environ, **env}, check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        samples.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    samples.sort()
    return samples[len(samples) // 2]
