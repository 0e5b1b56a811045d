"""`voicecli talk` on leaking speakers: echo cancellation measured on the PulseAudio stack.

The test sound card gets a laptop's flaw: `module-loopback` feeds the virtual speaker's sound back
into the virtual microphone 40 ms later, so everything the assistant says reaches the mic. The
real CLI then runs with its default echo cancellation against the simulator (server VAD on):

(a) echo return loss enhancement on the mic path while the assistant speaks: the raw microphone
    (recorded with parec) against what talk sent to the server (`input_audio_buffer.append`);
    answers are asked for by typed lines, so the mic hears nothing but the echo.
(b) self-interruptions in 20 answered turns: an answer cut (`response.cancel`) or a user turn
    heard while nobody spoke.
(c) barge-ins: a spoken "stop" over each of 20 answers; detected when the answer is truncated.
    Time from the speech onset (the WAV's first sample leaving paplay) to the speaker going
    silent on its monitor, including the server VAD.
(d) the canceller's CPU per second of audio (in-process, WebRTC AEC3 + noise suppression).

Targets (issue "Echo cancellation"): ≥ 25 dB, 0 of 20, ≥ 19 of 20, ≤ 300 ms.
"""

from __future__ import annotations

import base64
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

TURNS = 20
SHORT = "The weather is sunny with a light breeze from the west this afternoon."
from talk import LONG_REPLY as LONG  # noqa: E402  (the same long answer as the talk benchmark)


def run():
    from common import Section

    from audio.stack import VirtualAudio, missing_reason

    section = Section(name="echo", title="Talk on leaking speakers: echo cancellation",
                      intro="PulseAudio null-sink stack with the speaker fed back into the microphone "
                            "(module-loopback, 40 ms); the real CLI (`talk --full-duplex`, echo cancellation "
                            f"on by default) against the simulator with server VAD; {TURNS} turns each.",
                      headers=["measure", "value", "target"])
    reason = missing_reason()
    try:
        from voicecli.audio.echo import load_module

        load_module()
    except Exception as exc:  # noqa: BLE001
        reason = reason or str(exc)
    if reason:
        section.notes.append(f"not run: {reason}")
        return section
    work = Path(tempfile.mkdtemp(prefix="voicecli-bench-echo-"))
    stack = VirtualAudio.start(work / "pulse")
    try:
        subprocess.run(["pactl", "load-module", "module-loopback", "source=virtual_speaker.monitor",
                        "sink=virtual_mic_feed", "latency_msec=40", "source_dont_move=true", "sink_dont_move=true"],
                       env=stack.full_env(), check=True, capture_output=True, timeout=30)
        answered = _answered_turns(stack, work)
        barge = _barge_ins(stack, work)
    finally:
        stack.stop()
    cpu = _aec_cpu()
    section.rows += [
        ["(a) echo return loss enhancement, mic path, assistant speaking", f"{answered['erle_db']:.1f} dB",
         "≥ 25 dB"],
        ["(b) self-interruptions in answered turns", f"{answered['self_interruptions']} of {answered['turns']}",
         "0"],
        ["(b) user turns heard while nobody spoke", str(answered["phantom_turns"]), "0"],
        ["(c) barge-ins detected", f"{barge['detected']} of {barge['tries']}", f"≥ {TURNS - 1}"],
        ["(c) speech onset → speaker silent (incl. server VAD), median / p95",
         f"{barge['median_ms']:.0f} / {barge['p95_ms']:.0f} ms", "≤ 300 ms"],
        ["(d) canceller CPU per second of audio (AEC3 + noise suppression)", f"{cpu:.1f} ms", ""],
    ]
    section.notes.append("(a) sums energy over the whole session: the mic hears only the echo (turns are typed), "
                         "and the null sinks are digitally silent otherwise. AEC3's residual-echo suppressor and the "
                         "noise suppressor leave (near) digital silence when only echo is present, so the figure is "
                         "bounded by the +1 floor of the ratio rather than by a residual: read it as \"echo removed\".")
    section.notes.append("(c) the onset is the first sample of the spoken WAV leaving paplay; the time includes the "
                         "canceller's double-talk handling (it attenuates the first syllable while the assistant "
                         "still speaks), the simulator's VAD, the flush and PortAudio's output latency.")
    section.notes.append("(c) the simulator's VAD needs 30 ms of voice; the real server's is slower.")
    return section


def _talk(stack, sim, work: Path, name: str):
    tr = work / f"{name}.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "voicecli", "talk", "-p", "offline", "--base-url", sim.base_url,
                             "--full-duplex", "--transcript", str(tr)],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=stack.full_env(VOICECLI_HOME=str(work / "home")))
    deadline = time.time() + 30
    while time.time() < deadline and sum(1 for e in list(sim.log)
                                         if e.get("event", {}).get("type") == "input_audio_buffer.append") < 10:
        time.sleep(0.05)
    return proc, tr


def _events(sim, kind: str) -> list[dict]:
    return [e["event"] for e in list(sim.log) if e.get("event", {}).get("type") == kind]


def _entries(tr: Path, role: str) -> list[dict]:
    if not tr.exists():
        return []
    return [e for e in map(json.loads, tr.read_text().splitlines()) if e.get("type") == "entry" and e["role"] == role]


def _quit(proc) -> None:
    for _ in range(2):
        proc.send_signal(2)
        try:
            proc.wait(10)
            return
        except subprocess.TimeoutExpired:
            continue
    proc.kill()
    proc.wait(5)


def _answered_turns(stack, work: Path) -> dict:
    """(a) and (b): typed questions, answers played over leaking speakers."""
    import numpy as np

    from voicecli.sim.config import SimConfig
    from voicecli.sim.server import start_in_thread

    script = work / "short.json"
    script.write_text(json.dumps({"turns": [{"reply": SHORT}] * TURNS}))
    sim = start_in_thread(SimConfig(script=script))
    raw = subprocess.Popen(["parec", "-d", "virtual_mic", "--rate=24000", "--channels=1", "--format=s16le", "--raw",
                            "--latency-msec=10"], stdout=subprocess.PIPE, env=stack.full_env())
    proc, tr = _talk(stack, sim, work, "answered")
    try:
        for i in range(TURNS):
            proc.stdin.write(f"question number {i + 1}\n")
            proc.stdin.flush()
            deadline = time.time() + 60
            while time.time() < deadline and len(_entries(tr, "assistant")) < i + 1:
                time.sleep(0.05)
        time.sleep(0.5)
        sent = b"".join(base64.b64decode(e["audio"]) for e in _events(sim, "input_audio_buffer.append"))
        cancels = len(_events(sim, "response.cancel"))
    finally:
        _quit(proc)
        raw.terminate()
        mic = raw.communicate(timeout=10)[0]
        sim.stop()
    x_raw = np.frombuffer(mic[: len(mic) // 2 * 2], dtype="<i2").astype(np.float64)
    x_sent = np.frombuffer(sent[: len(sent) // 2 * 2], dtype="<i2").astype(np.float64)
    erle = 10 * np.log10((np.sum(x_raw ** 2) + 1.0) / (np.sum(x_sent ** 2) + 1.0))
    interrupted = sum(1 for e in _entries(tr, "assistant") if e.get("interrupted"))
    return {"erle_db": float(erle), "turns": len(_entries(tr, "assistant")),
            "self_interruptions": max(cancels, interrupted), "phantom_turns": len(_entries(tr, "user")) - TURNS}


def _barge_ins(stack, work: Path) -> dict:
    """(c): a spoken interruption over each of TURNS long answers."""

    from audio.stack import speech_wav
    from talk import first_onset_s
    from voicecli.sim.config import SimConfig
    from voicecli.sim.server import start_in_thread

    script = work / "long.json"
    script.write_text(json.dumps({"turns": [{"reply": LONG}, {"reply": "Okay."}] * TURNS}))
    sim = start_in_thread(SimConfig(script=script))
    stop = speech_wav(work / "stop.wav", "stop that is enough thank you", lead_s=0.0)
    onset = first_onset_s(stop)
    monitor = stack.monitor()
    proc, tr = _talk(stack, sim, work, "barge")
    delays, detected = [], 0
    try:
        for i in range(TURNS):
            before = len(_events(sim, "conversation.item.truncate"))
            proc.stdin.write(f"tell me a long story number {i + 1}\n")
            proc.stdin.flush()
            start_ms = monitor.sound_ms()
            deadline = time.time() + 30
            while time.time() < deadline and monitor.sound_ms() - start_ms < 1500:  # the answer is playing
                time.sleep(0.02)
            spoke_at = time.time()
            stack.play(stop)
            deadline = time.time() + 10
            while time.time() < deadline and len(_events(sim, "conversation.item.truncate")) <= before:
                time.sleep(0.02)
            if len(_events(sim, "conversation.item.truncate")) > before:
                detected += 1
                delays.append(_silent_after(monitor, spoke_at + onset) - (spoke_at + onset))
            time.sleep(3.0)  # the "Okay." answer to the interruption plays out
    finally:
        _quit(proc)
        monitor.stop()
        sim.stop()
    ms = sorted(d * 1000 for d in delays if d is not None and d >= 0) or [float("nan")]
    return {"tries": TURNS, "detected": detected, "median_ms": statistics.median(ms),
            "p95_ms": ms[min(len(ms) - 1, int(0.95 * len(ms)))]}


def _silent_after(monitor, t: float) -> float | None:
    """Wall time at which the speaker monitor goes silent (100 ms of zeros) after time `t`."""
    import numpy as np

    x = monitor.samples()
    start = max(0, int((t - monitor.started) * 24000))
    frames = x[start: start + 24000 * 5]
    quiet = np.flatnonzero(np.convolve(frames != 0, np.ones(2400, dtype=int), "valid") == 0)
    return None if not quiet.size else monitor.started + (start + int(quiet[0])) / 24000


def _aec_cpu() -> float:
    """CPU ms per second of audio: far end and near end of 10 s of pseudo-speech, 20 ms blocks."""
    import numpy as np

    from voicecli.audio.echo import EchoCanceller

    rng = np.random.default_rng(1)
    far = (rng.normal(0, 3000, 24000 * 10)).astype(np.int16)
    near = (far.astype(np.float64) * 0.5).astype(np.int16)
    aec = EchoCanceller()
    t0 = time.process_time()
    for i in range(0, far.size, 480):
        aec.far_end(far[i: i + 480])
        aec.process(near[i: i + 480])
    return (time.process_time() - t0) * 1000 / 10


if __name__ == "__main__":
    print(run().markdown())
