"""Voice in pipes (issue #25): `transcribe` (live dictation, long files) and `say`, against the simulator.

(a) live dictation, sim at 150 ms latency, on the PulseAudio null-sink stack: the end of an utterance
    played into the virtual mic → its line on the CLI's stdout; target ≤ VAD silence + latency + 60 ms;
(b) `say`: first text byte on stdin → first sample handed to the speaker (in process: the real stdin
    reader thread on a pipe, the real PlaybackBuffer drained every 20 ms); target ≤ first-sentence
    time + text-to-speech first byte + 40 ms;
(c) a 60-minute WAV transcribed by the CLI: peak RSS (target ≤ 150 MB) and wall time.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import wave
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

LATENCY = 0.15
SILENCE_MS = 500  # the local VAD's default, and the transcription session's
SENTENCES = ["Hello there, this is the first note.", "Remember to buy some milk today.",
             "The meeting moved to Thursday afternoon.", "Call the plumber about the kitchen sink.",
             "Send the report before the end of the week."]


def run():
    from common import Section

    section = Section(
        name="voicepipes", title="Voice in pipes: transcribe and say",
        intro=f"Against the simulator in this process (latency {LATENCY * 1000:.0f} ms where stated). Medians.",
        headers=["measure", "value", "target"])
    _say_rows(section)
    _dictation_rows(section)
    _long_file_rows(section)
    return section


def _ms(v: float | None) -> str:
    return "–" if v is None else f"{max(0.0, v) * 1000:.0f} ms"


# -- (b) say ------------------------------------------------------------------------------------


def _say_rows(section) -> None:
    from voicecli.sim.config import SimConfig
    from voicecli.sim.server import start_in_thread

    sim = start_in_thread(SimConfig(latency=LATENCY))
    try:
        at_once, streamed = [], []
        for i in range(7):
            at_once.append(asyncio.run(_say_once(sim.base_url, streamed=False)))
            streamed.append(asyncio.run(_say_once(sim.base_url, streamed=True)))
    finally:
        sim.stop()
    for name, runs in (("whole text at once", at_once), ("streamed as from infer (10-character pieces 30 ms apart)", streamed)):
        runs = runs[2:]  # the first two warm up (imports, the sim's first synthesis)
        first = statistics.median(r[0] for r in runs)
        sentence = statistics.median(r[1] for r in runs)
        tts = statistics.median(r[2] for r in runs)
        section.rows.append([f"say, {name}: first stdin byte → first sample handed to the speaker",
                             f"{_ms(first)} (first sentence at {_ms(sentence)}, TTS first byte {_ms(tts)})",
                             f"≤ {_ms(sentence + tts + 0.040)}"])
    section.notes.append("say: the target is the first sentence's time + the text-to-speech request's own first "
                         "byte (measured in the same run, from the request to its first PCM) + 40 ms. The speaker "
                         "is the real PlaybackBuffer (60 ms prebuffer, but a 100 ms first piece starts it at once) "
                         "drained every 20 ms by the clock speaker, so up to 20 ms of the value is that tick.")


async def _say_once(base_url: str, streamed: bool) -> tuple[float, float, float]:
    from voicecli import profiles
    from voicecli.audio.speaker import ClockSpeaker, PlaybackBuffer
    from voicecli.say import ITEM, StdinText, speak
    from voicecli.transport import close_clients
    from voicecli.voice.cascade import audio_client

    prof = profiles.load("offline", overrides={"connection.base_url": base_url})
    tts, url = audio_client(prof, "speech")
    timing = {}
    real_speak = tts.speak

    async def timed_speak(text, **kw):  # the request's own first byte, for the target
        t = time.monotonic()
        async for piece in real_speak(text, **kw):
            timing.setdefault("tts", time.monotonic() - t)
            yield piece

    tts.speak = timed_speak
    buffer = PlaybackBuffer(prebuffer_ms=60)
    player = ClockSpeaker(buffer)
    player.start()
    r, w = os.pipe()
    reader = StdinText(r)
    text = "This is the first sentence to say. And then a second one follows it."
    first_end = text.index(". ") + 2

    def write() -> None:
        if streamed:
            pieces = [text[i:i + 10] for i in range(0, first_end, 10)] + [text[first_end:]]
            written = 0
            for piece in pieces:
                os.write(w, piece.encode())
                written += len(piece)
                if written >= first_end and "sentence" not in timing:
                    timing["sentence"] = time.monotonic()
                time.sleep(0.03)
        else:
            os.write(w, text.encode())
            timing["sentence"] = time.monotonic()
        os.close(w)

    writer = threading.Thread(target=write)
    try:
        writer.start()
        await speak(reader.pieces(), tts, prof.voice, url, lambda pcm: buffer.push(ITEM, pcm))
        buffer.end(ITEM)
        deadline = time.monotonic() + 5
        while ITEM not in buffer.first_played and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
    finally:
        writer.join()
        os.close(r)
        await player.aclose()
        await close_clients()
    start = reader.first_at
    return buffer.first_played[ITEM] - start, timing["sentence"] - start, timing["tts"]


# -- (a) live dictation -------------------------------------------------------------------------


def _dictation_rows(section) -> None:
    from audio.stack import VirtualAudio, missing_reason

    reason = missing_reason()
    if reason:
        section.notes.append(f"dictation rows not run: {reason}")
        return
    from clihelp import sim_speech

    from voicecli.sim.config import SimConfig
    from voicecli.sim.server import start_in_thread

    work = Path(tempfile.mkdtemp(prefix="voicecli-bench-pipes-"))
    stack = VirtualAudio.start(work / "pulse")
    sim = start_in_thread(SimConfig(latency=LATENCY))
    try:
        clips = []
        for i, sentence in enumerate(SENTENCES):
            pcm = sim_speech(sim.base_url, sentence)
            clips.append((_wav(work / f"u{i}.wav", b"\x00" * 4800 + pcm + b"\x00" * 96000), 0.1 + _last_loud(pcm)))
        for engine in ("http", "realtime"):
            got = _dictate(stack, sim, work, engine, clips)
            target = SILENCE_MS / 1000 + LATENCY + 0.060
            section.rows.append([f"dictation ({engine} engine): end of an utterance → its line on stdout",
                                 f"{_ms(statistics.median(got))} (n={len(got)}, max {_ms(max(got))})"
                                 if got else "–", f"≤ {_ms(target)}"])
    finally:
        sim.stop()
        stack.stop()
        shutil.rmtree(work, ignore_errors=True)
    section.notes.append(f"dictation: {len(SENTENCES)} sentences in the simulator's voice played one by one into "
                         "the virtual mic (paplay); \"end\" is the wall time paplay started + the last loud sample's "
                         f"offset, so paplay's and PulseAudio's own buffering count against voicecli. Silence "
                         f"{SILENCE_MS} ms (local VAD; the transcription session's server VAD), sim latency "
                         f"{LATENCY * 1000:.0f} ms on /audio/transcriptions (the Realtime sim adds none to "
                         "transcripts: its row has 150 ms of headroom).")


def _last_loud(pcm: bytes) -> float:
    import numpy as np

    x = np.abs(np.frombuffer(pcm, dtype="<i2"))
    return float(np.flatnonzero(x > 300)[-1]) / 24000


def _wav(path: Path, pcm: bytes) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(24000)
        w.writeframes(pcm)
    return path


def _dictate(stack, sim, work: Path, engine: str, clips) -> list[float]:
    import signal

    env = stack.full_env(VOICECLI_HOME=str(work / "home"))
    proc = subprocess.Popen([sys.executable, "-m", "voicecli", "transcribe", "-p", "offline", "--base-url", sim.base_url,
                             "--engine", engine, "--debug"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    lines: list[float] = []
    ready = threading.Event()

    def out() -> None:
        for _ in iter(proc.stdout.readline, b""):
            lines.append(time.time())

    def err() -> None:
        for line in iter(proc.stderr.readline, b""):
            if b"dictation: listening" in line:
                ready.set()

    for target in (out, err):
        threading.Thread(target=target, daemon=True).start()
    got = []
    try:
        if not ready.wait(60):
            return got
        time.sleep(0.5)
        for i, (wav, end) in enumerate(clips):
            started = stack.play(wav)
            deadline = time.time() + 15
            while len(lines) <= i and time.time() < deadline:
                time.sleep(0.005)
            if len(lines) > i:
                got.append(lines[i] - (started + end))
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    finally:
        proc.kill()
    return got


# -- (c) a 60-minute file -------------------------------------------------------------------------


_MEASURE = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, "
            "stderr=subprocess.DEVNULL).returncode; print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)")


def _long_file_rows(section) -> None:
    from clihelp import sim_speech

    from voicecli.sim.config import SimConfig
    from voicecli.sim.server import start_in_thread

    work = Path(tempfile.mkdtemp(prefix="voicecli-bench-long-"))
    sim = start_in_thread(SimConfig())
    try:
        pcm = sim_speech(sim.base_url, SENTENCES[0])
        period = pcm + b"\x00" * (2 * 48000 - len(pcm) % 2)  # a sentence every ~4.3 s
        path = work / "hour.wav"
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(24000)
            total = 0
            while total < 3600 * 48000:
                w.writeframes(period)
                total += len(period)
        t = time.monotonic()
        proc = subprocess.run([sys.executable, "-c", _MEASURE, sys.executable, "-m", "voicecli", "transcribe", "-p",
                               "offline", "--base-url", sim.base_url, str(path)], capture_output=True, text=True,
                              env={**os.environ, "VOICECLI_HOME": str(work / "home")}, timeout=3600)
        wall = time.monotonic() - t
        rss_kib, code = proc.stdout.split()
        requests = sum(1 for e in list(sim.log) if e.get("endpoint") == "/v1/audio/transcriptions" and e["kind"] == "audio")
    finally:
        sim.stop()
        shutil.rmtree(work, ignore_errors=True)
    section.rows.append(["60-minute WAV (24 kHz mono, 173 MB): peak RSS of `voicecli transcribe`",
                         f"{int(rss_kib) / 1024:.0f} MB", "≤ 150 MB"])
    section.rows.append(["60-minute WAV: wall time, requests (exit code)", f"{wall:.0f} s, {requests} ({code})", ""])
    section.notes.append("60 minutes: one sentence of the simulator's voice every ~4.3 s; read in 64 KiB blocks, cut "
                         "at the first pause after 60 s, two requests in flight. The wall time is mostly the local "
                         "VAD (Silero, every 32 ms frame of the hour) on a shared 2-core machine.")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    print(run().markdown())
