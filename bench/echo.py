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
(e) double-talk (issue #27): "Stop, wait a moment please." (the simulator's own voice, so it can
    recognise the words) spoken 1.0–1.5 s into each of 20 long answers; each interrupted try is
    followed by a short question answered in full. Counted: tries with one user turn holding the
    whole sentence and one answer after it; answers cut by their own echo (the long answer cut
    before the user spoke, the answer to the interruption or the short one cut after the user had
    finished).
(f) the cascade engine (`--engine cascade`, local VAD) on the same card: (c)'s spoken "stop" over
    20 answers, speech onset → speaker silent.

Targets (issue "Echo cancellation"): ≥ 25 dB, 0 of 20, ≥ 19 of 20, ≤ 300 ms; issue #24 §2: onset →
speaker silent median ≤ 150 ms, p95 ≤ 300 ms (both engines); issue #27 §2: ≥ 19 of 20, 0 of 20.
"""

from __future__ import annotations

import base64
import json
import os
import random
import statistics
import subprocess
import threading
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

TURNS = int(os.environ.get("BENCH_ECHO_TURNS", "20"))  # fewer for a quick look
SENTENCE = "Stop, wait a moment please."
SHORT = "The weather is sunny with a light breeze from the west this afternoon."
from talk import LONG_REPLY as LONG  # noqa: E402  (the same long answer as the talk benchmark)


def run(parts: str = "acef"):
    """`parts`: which of (a)/(b) "a", (c) "c", (e) "e", (f) "f" to run ((d) always)."""
    from common import Section

    from audio.stack import VirtualAudio

    section = Section(name="echo", title="Talk on leaking speakers: echo cancellation",
                      intro="PulseAudio null-sink stack with the speaker fed back into the microphone "
                            "(module-loopback, 40 ms); the real CLI (`talk --full-duplex`, echo cancellation "
                            f"on by default) against the simulator with server VAD; {TURNS} turns each.",
                      headers=["measure", "value", "target"])
    reason = why_not_run()
    if reason:
        section.notes.append(f"not run: {reason}")
        return section
    work = Path(tempfile.mkdtemp(prefix="voicecli-bench-echo-"))
    section.notes.append(f"load average before the run (1/5/15 min): {_load()}")
    stack = VirtualAudio.start(work / "pulse")
    try:
        subprocess.run(["pactl", "load-module", "module-loopback", "source=virtual_speaker.monitor",
                        "sink=virtual_mic_feed", "latency_msec=40", "source_dont_move=true", "sink_dont_move=true"],
                       env=stack.full_env(), check=True, capture_output=True, timeout=30)
        answered = _answered_turns(stack, work) if "a" in parts else None
        barge = _barge_ins(stack, work) if "c" in parts else None
        double = _double_talk(stack, work) if "e" in parts else None
        cascade = _barge_ins(stack, work, engine="cascade") if "f" in parts else None
    finally:
        stack.stop()
    cpu = _aec_cpu()
    if answered:
        section.rows += [
            ["(a) echo return loss enhancement, mic path, assistant speaking",
             "not measured: the mic's recording was empty" if answered["erle_db"] is None
             else f"{answered['erle_db']:.1f} dB", "≥ 25 dB"],
            ["(b) self-interruptions in answered turns", f"{answered['self_interruptions']} of {answered['turns']}",
             "0"],
            ["(b) user turns heard while nobody spoke", str(answered["phantom_turns"]), "0"]]
    if barge:
        section.rows += [
            ["(c) barge-ins detected", f"{barge['detected']} of {barge['tries']}", f"≥ {TURNS - 1}"],
            ["(c) speech onset → speaker silent (incl. server VAD), median / p95",
             f"{barge['median_ms']:.0f} / {barge['p95_ms']:.0f} ms", "≤ 150 / ≤ 300 ms"],
            ["(c) … tries that began in a pause of the answer (not timed)", str(barge["in_pause"]), ""],
            ["(c) local barge-ins the server never confirmed (false starts)", str(barge["false_starts"]), ""],
            ["(c) barge-ins with no words after them, dropped as echo (no user turn)", str(barge["echo"]), ""]]
    section.rows.append(["(d) canceller CPU per second of audio (AEC3 + noise suppression)", f"{cpu:.1f} ms", ""])
    if double:
        section.rows += [
            ["(e) one interruption → one user turn and one answer after it", f"{double['one']} of {double['tries']}",
             f"≥ {TURNS - 1}"],
            ["(e) … and the turn holds the whole sentence (the audio sent voiced over ≥ 90 % of its "
             f"{double['voiced_s']:.2f} s)", f"{double['whole']} of {double['tries']}", f"≥ {TURNS - 1}"],
            ["(e) answers cut by their own echo: long answers before the user spoke / answers after",
             f"{double['cut_before']} of {double['tries']} / {double['cut_after']} of {2 * double['tries']}", "0"],
            ["(e) user turns per interruption (median / max); answers started after it (median / max)",
             f"{double['turns_median']:.0f} / {double['turns_max']}; {double['answers_median']:.0f} / "
             f"{double['answers_max']}", "1; 1"]]
    if cascade:
        section.rows += [
            ["(f) cascade: barge-ins detected", f"{cascade['detected']} of {cascade['tries']}", f"≥ {TURNS - 1}"],
            ["(f) cascade: speech onset → speaker silent (local VAD), median / p95",
             f"{cascade['median_ms']:.0f} / {cascade['p95_ms']:.0f} ms", "≤ 150 / ≤ 300 ms"],
            ["(f) … tries that began in a pause of the answer (not timed)", str(cascade["in_pause"]), ""]]
    section.notes.append("(a) sums energy over the whole session: the mic hears only the echo (turns are typed), "
                         "and the null sinks are digitally silent otherwise. AEC3's residual-echo suppressor and the "
                         "noise suppressor leave (near) digital silence when only echo is present, so the figure is "
                         "bounded by the +1 floor of the ratio rather than by a residual: read it as \"echo removed\".")
    section.notes.append("(c), (f) \"silent\" is the start of 400 ms of digital silence on the speaker's monitor, "
                         "longer than the answer's own pauses (150 ms at a comma, 301 ms between sentences): the "
                         "speaker stopped for good. A try whose onset fell in such a pause that the answer never "
                         "left is counted apart, not timed (it used to count as 0 ms).")
    section.notes.append("(c) the onset is the first sample of the spoken WAV leaving paplay; the time includes the "
                         "canceller's double-talk handling (it attenuates the first syllable while the assistant "
                         "still speaks), the simulator's VAD, the flush and PortAudio's output latency.")
    section.notes.append("(c) the simulator's VAD needs 30 ms of voice; the real server's is slower. The local VAD "
                         "(Silero, voice.barge_in_ms) hears the same cleaned signal: while the assistant talks, AEC3 "
                         "suppresses the first few hundred ms of the user's voice (often all of \"stop\"). The "
                         "double-talk detector (raw mic against what was played, ahead of the canceller) stops the "
                         "answer first in most tries; talk's --debug output says \"double talk\" for each.")
    section.notes.append("(e) the onset→silence time and the words are the simulator's: \"sent\" is the voiced span "
                         "(over -40 dBFS) of what talk sent during the sentence; the canceller attenuates the first "
                         "word while both talk, which the ≥ 90 % row counts against the turn.")
    section.notes.append("(e) an answer \"cut by its own echo\" is a response.cancel / truncate sent before the user "
                         "spoke (from 0.2 s after the typed question), or an answer marked interrupted that started "
                         "after the user had finished.")
    section.notes.append("(f) the cascade hears the user with the local VAD only (no server VAD); detected = the "
                         "speaker went silent within 1.5 s of the onset.")
    return section


def speak_over_the_answer(stack, monitor, wav) -> float:
    """Once the answer has played 1.5 s on the speaker (30 s at most), `wav` into the microphone;
    the time it started."""
    start_ms = monitor.sound_ms()
    deadline = time.time() + 30
    while time.time() < deadline and monitor.sound_ms() - start_ms < 1500:  # the answer is playing
        time.sleep(0.02)
    spoke_at = time.time()
    stack.play(wav)
    return spoke_at


def why_not_run() -> str | None:
    """Why the echo benches cannot run here (no audio stack, no echo canceller), or None."""
    from audio.stack import missing_reason

    reason = missing_reason()
    try:
        from voicecli.audio.echo import load_module

        load_module()
    except Exception as exc:  # noqa: BLE001
        reason = reason or str(exc)
    return reason


def _load() -> str:
    return " / ".join(Path("/proc/loadavg").read_text().split()[:3])


def _talk(stack, sim, work: Path, name: str, engine: str = "realtime"):
    tr = work / f"{name}.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "voicecli", "talk", "-p", "offline", "--base-url", sim.base_url,
                             "--full-duplex", "--transcript", str(tr), "--engine", engine, "--debug"],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=(work / f"{name}.err").open("w"),
                            text=True,
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
    # an empty recording of the mic (parec failed to connect, once) would read as a canceller adding 80 dB
    erle = 10 * np.log10((np.sum(x_raw ** 2) + 1.0) / (np.sum(x_sent ** 2) + 1.0)) if np.any(x_raw) else None
    interrupted = sum(1 for e in _entries(tr, "assistant") if e.get("interrupted"))
    return {"erle_db": erle if erle is None else float(erle), "turns": len(_entries(tr, "assistant")),
            "self_interruptions": max(cancels, interrupted), "phantom_turns": len(_entries(tr, "user")) - TURNS}


def _barge_ins(stack, work: Path, engine: str = "realtime") -> dict:
    """(c) and (f): a spoken interruption over each of TURNS long answers."""

    from audio.stack import speech_wav
    from talk import first_onset_s
    from voicecli.sim.config import SimConfig
    from voicecli.sim.server import start_in_thread

    sim = start_in_thread(SimConfig())  # no script: the simulator says "You said: <the line typed>"
    stop = speech_wav(work / "stop.wav", "stop that is enough thank you", lead_s=0.0)
    onset = first_onset_s(stop)
    monitor = stack.monitor()
    proc, tr = _talk(stack, sim, work, f"barge-{engine}", engine)
    cuts = _Cuts(sim)
    delays, detected, in_pause = [], 0, 0
    try:
        for i in range(TURNS):
            proc.stdin.write(f"number {i + 1}. {LONG}\n")
            proc.stdin.flush()
            spoke_at = speak_over_the_answer(stack, monitor, stop)
            deadline = time.time() + 10
            while time.time() < deadline and _silent_after(monitor, spoke_at + onset) is None:
                time.sleep(0.05)
            silent = _silent_after(monitor, spoke_at + onset)
            cut = [t - spoke_at - onset for t in cuts.times if t > spoke_at]
            print(f"  {engine} try {i + 1}: cut sent {cut[0] * 1000 if cut else float('nan'):.0f} ms, speaker silent "
                  f"{(silent - spoke_at - onset) * 1000 if silent else float('nan'):.0f} ms after the onset", file=sys.stderr)
            if silent is not None and silent - (spoke_at + onset) < 1.5:  # stopped by the speech, not at its end
                detected += 1
                if silent > spoke_at + onset:
                    delays.append(silent - (spoke_at + onset))
                else:  # the answer was in a pause when the user began, and never resumed: no time to count
                    in_pause += 1
            _settle(monitor, tr)  # the answer to the interruption plays out
    finally:
        cuts.stop()
        _quit(proc)
        monitor.stop()
        sim.stop()
    ms = sorted(d * 1000 for d in delays) or [float("nan")]
    return {"tries": TURNS, "detected": detected, "in_pause": in_pause, "median_ms": statistics.median(ms),
            "p95_ms": ms[min(len(ms) - 1, int(0.95 * len(ms)))],
            "false_starts": _debug_count(work, f"barge-{engine}", "barge-in: false start ("),
            "echo": _debug_count(work, f"barge-{engine}", "barge-in: no words after it")}


def _debug_count(work: Path, name: str, line: str) -> int:
    """How often talk's --debug output (stderr) says `line`."""
    err = work / f"{name}.err"
    return err.read_text(errors="replace").count(line) if err.exists() else 0


def _settle(monitor, tr: Path, quiet_s: float = 1.5, timeout: float = 20) -> None:
    """Wait until the speaker was silent and the transcript unchanged for `quiet_s`."""
    deadline, last, since = time.time() + timeout, None, time.time()
    while time.time() < deadline:
        state = (monitor.sound_ms(), len(tr.read_text()) if tr.exists() else 0)
        if state != last:
            last, since = state, time.time()
        elif time.time() - since >= quiet_s:
            return
        time.sleep(0.05)


class _Cuts:
    """Wall times at which talk sent `response.cancel` / `conversation.item.truncate` (polled)."""

    def __init__(self, sim):
        self.sim, self.times, self._seen, self._stop = sim, [], 0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            log = list(self.sim.log)
            for e in log[self._seen:]:
                if e.get("event", {}).get("type") in ("response.cancel", "conversation.item.truncate"):
                    self.times.append(time.time())
            self._seen = len(log)
            time.sleep(0.01)

    def between(self, a: float, b: float) -> int:
        return sum(1 for t in self.times if a <= t < b)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


def _double_talk(stack, work: Path) -> dict:
    """(e): "Stop, wait a moment please." 1.0–1.5 s into each of TURNS long answers, then a short
    question answered in full; what the transcript and the simulator saw, per try."""
    import numpy as np

    from voicecli.sim import speech
    from voicecli.sim.config import SimConfig
    from voicecli.sim.server import start_in_thread
    from voicecli.sim.vad import voiced_span

    pcm = speech.synthesize(SENTENCE)
    wav = work / "interrupt.wav"
    speech.write_wav(wav, speech.silence(0.05) + pcm + speech.silence(0.3))
    x = np.frombuffer(speech.read_wav(wav), dtype="<i2")
    onset, spoken_s = np.flatnonzero(x)[0] / 24000, len(pcm) / 48000
    span = voiced_span(pcm)
    voiced_s = (span[1] - span[0]) / 1000
    sim = start_in_thread(SimConfig(phrases=(SENTENCE,)))
    monitor = stack.monitor()
    proc, tr = _talk(stack, sim, work, "double")
    cuts = _Cuts(sim)
    rng = random.Random(27)
    whole = one = cut_before = cut_after = 0
    turns_per, answers_per = [], []
    typed: set[str] = set()
    try:
        for i in range(TURNS):
            line = f"number {i + 1}. {LONG}"
            typed.add(line.strip())
            seen = len(_all_entries(tr))
            proc.stdin.write(line + "\n")
            proc.stdin.flush()
            asked = time.time()
            start_ms = monitor.sound_ms()
            into = 1.0 + 0.5 * rng.random()
            deadline = time.time() + 30
            while time.time() < deadline and monitor.sound_ms() - start_ms < into * 1000:
                time.sleep(0.01)
            sent_from = len(sim.log)
            spoke_at = stack.play(wav) + onset
            said_until = spoke_at + spoken_s
            _settle(monitor, tr)
            sent = b"".join(base64.b64decode(e["event"]["audio"]) for e in list(sim.log)[sent_from:]
                            if e.get("event", {}).get("type") == "input_audio_buffer.append")
            heard = voiced_span(sent[: int((onset + spoken_s + 0.5) * 48000)])  # the sentence's time, not the answers
            heard_s = (heard[1] - heard[0]) / 1000 if heard else 0.0
            early = [t - asked for t in cuts.times if asked + 0.2 <= t < spoke_at]  # +0.2: the typed line's own barge-in
            cut_before += bool(early)
            question = f"question number {i + 1}"
            typed.add(question.strip())
            proc.stdin.write(question + "\n")
            proc.stdin.flush()
            deadline = time.time() + 30
            while time.time() < deadline and not any(e["role"] == "assistant" and question in e["text"]
                                                     for e in _all_entries(tr)[seen:]):
                time.sleep(0.05)
            _settle(monitor, tr, quiet_s=0.5)
            new = _all_entries(tr)[seen:]
            spoken = [e for e in new if e["role"] == "user" and e["text"].strip() not in typed]
            after = [e for e in new if e["role"] == "assistant" and e["start"] >= spoke_at and question not in e["text"]]
            turns_per.append(len(spoken))
            answers_per.append(len(after))
            if len(spoken) == 1 and len(after) == 1:
                one += 1
                whole += heard_s >= 0.9 * voiced_s
            cut_after += sum(1 for e in new if e["role"] == "assistant" and e.get("interrupted")
                             and (question in e["text"] or e["start"] >= said_until))
            print(f"  try {i + 1}: {into:.2f} s in; {'cut by echo %.2f s in; ' % early[0] if early else ''}sent {heard_s:.2f} s of {voiced_s:.2f} s; "
                  f"user {[e['text'] for e in spoken]}; answers after {len(after)}", file=sys.stderr)
    finally:
        cuts.stop()
        _quit(proc)
        monitor.stop()
        sim.stop()
    return {"tries": TURNS, "whole": whole, "one": one, "voiced_s": voiced_s, "cut_before": cut_before,
            "cut_after": cut_after,
            "turns_median": statistics.median(turns_per or [0]), "turns_max": max(turns_per or [0]),
            "answers_median": statistics.median(answers_per or [0]), "answers_max": max(answers_per or [0])}


def _all_entries(tr: Path) -> list[dict]:
    if not tr.exists():
        return []
    return [e for e in map(json.loads, tr.read_text().splitlines()) if e.get("type") == "entry"]


def _silent_after(monitor, t: float, quiet_s: float = 0.4) -> float | None:
    """Wall time at which the speaker monitor goes silent for good after time `t`: the start of
    `quiet_s` of zeros, longer than the pauses inside an answer (the simulator's voice pauses 150 ms
    at a comma and 301 ms between sentences). `t` itself, if it falls in such a silence."""
    import numpy as np

    x = monitor.samples()
    start = max(0, int((t - monitor.started) * 24000))
    window = int(quiet_s * 24000)
    frames = x[start: start + 24000 * 5]
    quiet = np.flatnonzero(np.convolve(frames != 0, np.ones(window, dtype=int), "valid") == 0)
    if not quiet.size:
        return None
    first = int(quiet[0])
    if first == 0:  # in a silence already: it began before `t` (the answer was pausing)
        return t
    return monitor.started + (start + first) / 24000


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
    print(run(*sys.argv[1:2]).markdown())
