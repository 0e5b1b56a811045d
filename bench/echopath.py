"""`voicecli talk` with headphones (no echo path) and echo cancellation on: the echo path detector.

The PulseAudio null-sink stack without `module-loopback` is a pair of headphones: the microphone
hears the user and never the speaker. The real CLI (`talk --full-duplex`, echo cancellation on by
default) against the simulator with server VAD, before (VOICECLI_ECHO_PATH=off: the canceller
always in force) and after (the default: its suppression bypassed while no echo path is found):

(e) barge-ins: a spoken "stop" over each of 20 answers; speech onset (the WAV's first sample
    leaving paplay) → speaker silent on its monitor, including the simulator's VAD (30 ms of voice).
(f) the level the user's first 200 ms reach the server at, relative to the WAV itself: the
    stream talk sent (`input_audio_buffer.append`) is matched against the WAV to find each "stop".
(g) headphones unplugged mid-session (`module-loopback` loaded, 40 ms): between answers, and while
    an answer plays. Self-interruptions over the answers after it, and the time from the first
    echo reaching the microphone to "echo path found" (talk --debug).
(h) the detector's CPU per second of audio, in-process (bench/echo.py (d) has the canceller's).

Self-interruptions with a leaking speaker from the start (the detector in place): bench/echo.py (b).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from echo import LONG, SHORT, _entries, _events, _quit, _silent_after, speak_over_the_answer, why_not_run  # noqa: E402

TURNS = 20
UNPLUG_TURNS = 10


def run():
    from common import Section

    from audio.stack import VirtualAudio

    section = Section(name="echopath", title="Talk with headphones: echo path detection",
                      intro="PulseAudio null-sink stack without a loopback (headphones: the mic never hears the "
                            "speaker); the real CLI (`talk --full-duplex`, echo cancellation on) against the "
                            "simulator with server VAD. Before: `VOICECLI_ECHO_PATH=off` (the canceller always in "
                            "force); after: the default.",
                      headers=["measure", "before", "after", "target"])
    reason = why_not_run()
    if reason:
        section.notes.append(f"not run: {reason}")
        return section
    work = Path(tempfile.mkdtemp(prefix="voicecli-bench-echopath-"))
    stack = VirtualAudio.start(work / "pulse")
    try:
        loads = [_load()]
        before = _barge_ins(stack, work, "before", {"VOICECLI_ECHO_PATH": "off"})
        loads.append(_load())
        after = _barge_ins(stack, work, "after", {})
        loads.append(_load())
        between0 = _unplugged(stack, work, "between0", mid_answer=False, env={"VOICECLI_ECHO_PATH": "off"})
        loads.append(_load())
        between = _unplugged(stack, work, "between", mid_answer=False)
        loads.append(_load())
        mid0 = _unplugged(stack, work, "mid0", mid_answer=True, env={"VOICECLI_ECHO_PATH": "off"})
        loads.append(_load())
        mid = _unplugged(stack, work, "mid", mid_answer=True)
        loads.append(_load())
    finally:
        stack.stop()
    cpu = _detector_cpu()
    canceller = [_canceller_cpu(detect) for detect in (False, True)]

    def ms(d):
        return f"{d['median_ms']:.0f} / {d['p95_ms']:.0f} ms"

    def db(d):
        return f"{d['first_200ms_db']:+.1f} / {d['worst_db']:+.1f} dB (n={d['matched']})"

    section.rows += [
        ["(e) barge-ins detected", f"{before['detected']} of {before['tries']}",
         f"{after['detected']} of {after['tries']}", f"≥ {TURNS - 1}"],
        ["(e) speech onset → speaker silent (incl. server VAD), median / p95", ms(before), ms(after),
         "≤ 150 / ≤ 300 ms"],
        ["(f) user's first 200 ms at the server vs the spoken WAV, median / worst", db(before), db(after), "≈ 0 dB"],
        ["(f) echo path state at the end", before["state"], after["state"], "none"],
        ["(g) unplugged between answers: answers cut by their own echo / phantom user turns",
         f"{between0['cut']} of {between0['answers']} / {between0['phantom']}",
         f"{between['cut']} of {between['answers']} / {between['phantom']}", "0"],
        ["(g) unplugged between answers: first echo at the mic → echo path found", "", between["found"], ""],
        ["(g) unplugged mid-answer: answers cut by their own echo (the one playing included) / phantom turns",
         f"{mid0['cut']} of {mid0['answers']} / {mid0['phantom']}",
         f"{mid['cut']} of {mid['answers']} / {mid['phantom']}", "0"],
        ["(g) unplugged mid-answer: first echo at the mic → echo path found", "", mid["found"], ""],
        ["(h) detector CPU per second of audio: headphones (mic quiet) / echo / double-talk", "",
         " / ".join(f"{c:.2f} ms" for c in cpu), ""],
        ["(h) canceller CPU per second of audio (AEC3 + noise suppression; after: + the plain module and the "
         "detector), mic quiet / echo", " / ".join(f"{c:.1f} ms" for c in canceller[0]),
         " / ".join(f"{c:.1f} ms" for c in canceller[1]), ""],
    ]
    section.notes.append("load average (1 min) before each part: " + ", ".join(f"{x:.2f}" for x in loads)
                         + " (2 cores shared with other work)")
    section.notes.append("(e) the barge-in latency also depends on how talk stops playback on the server's "
                         "speech_started; measured on the echopath branch.")
    section.notes.append("(f) each \"stop\" is found in the sent stream by matching the whole WAV (its later "
                         "syllables pass either way); the figure is the sent level of its first 200 ms over the "
                         "WAV's own (noise suppression and the high-pass filter take about a decibel).")
    section.notes.append("(g) unplugging is loading the loopback; the first echo is taken to reach the mic 40 ms "
                         "(its latency) after the monitor's first sound following the load. \"Before\" is the "
                         "control: the canceller alone (AEC3 in force all along) also lets a new echo through at "
                         "times, after seconds without one. After: an answer starting after a bypass holds a loud "
                         "mic until the detector knows it (echo → sent as silence, and the mic muted for 1 s of "
                         "the assistant's speech while AEC3 adapts); mid-answer, the echo is found while bypassed, "
                         "and the simulator's VAD (30 ms of voice) hears it first.")
    return section


def _load() -> float:
    """The 1-minute load average; waits (up to 5 minutes) while it is over 2.5."""
    deadline = time.time() + 300
    while True:
        load = float(Path("/proc/loadavg").read_text().split()[0])
        if load <= 2.5 or time.time() > deadline:
            return load
        time.sleep(10)


class _Talk:
    """talk --full-duplex --debug as a subprocess; stderr lines kept with their arrival time."""

    def __init__(self, stack, sim, work: Path, name: str, env: dict[str, str]):
        self.tr = work / f"{name}.jsonl"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "voicecli", "talk", "-p", "offline", "--base-url", sim.base_url, "--full-duplex",
             "--debug", "--transcript", str(self.tr)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env=stack.full_env(VOICECLI_HOME=str(work / f"home-{name}"), **env))
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.time() + 30
        while time.time() < deadline and len(_events(sim, "input_audio_buffer.append")) < 10:
            time.sleep(0.05)

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append((time.time(), line.rstrip()))

    def say(self, text: str) -> None:
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def first(self, needle: str, after: float = 0.0) -> float | None:
        return next((t for t, line in list(self.lines) if needle in line and t >= after), None)

    def state(self) -> str:
        told = [line for _, line in list(self.lines) if "echo path" in line]
        return "found" if told and "found" in told[-1] else "none" if told else "unknown"

    def quit(self) -> None:
        _quit(self.proc)
        self._reader.join(5)


def _barge_ins(stack, work: Path, name: str, env: dict[str, str]) -> dict:
    """(e) and (f): a spoken "stop" over each of TURNS long answers, no echo path."""
    import numpy as np

    from audio.stack import speech_wav
    from talk import first_onset_s
    from voicecli.audio.wav import read_wav_24k
    from voicecli.sim.config import SimConfig
    from voicecli.sim.server import start_in_thread

    script = work / f"long-{name}.json"
    script.write_text(json.dumps({"turns": [{"reply": LONG}, {"reply": "Okay."}] * TURNS}))
    sim = start_in_thread(SimConfig(script=script))
    stop = speech_wav(work / "stop.wav", "stop that is enough thank you", lead_s=0.0)
    onset = first_onset_s(stop)
    monitor = stack.monitor()
    talk = _Talk(stack, sim, work, name, env)
    delays, detected = [], 0
    try:
        for i in range(TURNS):
            before = len(_events(sim, "conversation.item.truncate"))
            talk.say(f"tell me a long story number {i + 1}")
            spoke_at = speak_over_the_answer(stack, monitor, stop)
            deadline = time.time() + 10
            while time.time() < deadline and len(_events(sim, "conversation.item.truncate")) <= before:
                time.sleep(0.02)
            if len(_events(sim, "conversation.item.truncate")) > before:
                detected += 1
                silent = _silent_after(monitor, spoke_at + onset)
                delays.append(None if silent is None else silent - (spoke_at + onset))
            deadline = time.time() + 10  # the "Okay." answer to the interruption plays out
            while time.time() < deadline and len(_entries(talk.tr, "assistant")) < 2 * (i + 1):
                time.sleep(0.05)
            time.sleep(0.5)
        sent = b"".join(__import__("base64").b64decode(e["audio"]) for e in _events(sim, "input_audio_buffer.append"))
    finally:
        talk.quit()
        monitor.stop()
        sim.stop()
    ms = sorted(d * 1000 for d in delays if d is not None and d > 0) or [float("nan")]
    # (a delay of 0: the try began in a pause of the answer that it never left; not timed, as in echo.py)
    wav = np.frombuffer(read_wav_24k(stop), dtype="<i2").astype(np.float64)
    levels = _first_200ms_levels(np.frombuffer(sent[: len(sent) // 2 * 2], dtype="<i2").astype(np.float64),
                                 wav, int(onset * 24000))
    return {"tries": TURNS, "detected": detected, "median_ms": statistics.median(ms),
            "p95_ms": ms[min(len(ms) - 1, int(0.95 * len(ms)))], "matched": len(levels),
            "first_200ms_db": statistics.median(levels) if levels else float("nan"),
            "worst_db": min(levels) if levels else float("nan"), "state": talk.state()}


def _first_200ms_levels(sent, wav, start: int) -> list[float]:
    """For each occurrence of `wav` in `sent` (matched filter peaks, ≥ 2 s apart): the level of the
    sent first 200 ms after the WAV's onset `start`, over the WAV's own, in dB."""
    import numpy as np

    n = 1 << int(np.ceil(np.log2(sent.size + wav.size)))
    corr = np.fft.irfft(np.fft.rfft(sent, n) * np.conj(np.fft.rfft(wav, n)), n)[: sent.size]
    energy = np.sqrt(np.convolve(sent ** 2, np.ones(wav.size), "full")[wav.size - 1: wav.size - 1 + sent.size] + 1e-9)
    score = corr / (energy * np.sqrt(np.sum(wav ** 2)))
    picks, levels = [], []
    for i in np.argsort(score)[::-1]:
        if score[i] < 0.3 or len(picks) >= TURNS:
            break
        if all(abs(int(i) - p) > 48000 for p in picks):
            picks.append(int(i))
    ref = wav[start: start + 4800]
    for p in sorted(picks):
        got = sent[p + start: p + start + 4800]
        if got.size == ref.size:
            levels.append(10 * np.log10((np.mean(got ** 2) + 1e-9) / np.mean(ref ** 2)))
    return levels


def _unplugged(stack, work: Path, name: str, *, mid_answer: bool, env: dict[str, str] | None = None) -> dict:
    """(g): headphones until the detector has said "none", then the loopback (a leaking speaker),
    between two answers or while one plays; UNPLUG_TURNS typed questions after it, each asked once
    the speaker has been quiet for 0.5 s (so any answer cut short was cut by its own echo)."""
    from voicecli.sim.config import SimConfig
    from voicecli.sim.server import start_in_thread

    script = work / f"unplug-{name}.json"
    first = LONG if mid_answer else SHORT
    script.write_text(json.dumps({"turns": [{"reply": SHORT}, {"reply": first}] + [{"reply": SHORT}] * UNPLUG_TURNS}))
    sim = start_in_thread(SimConfig(script=script))
    monitor = stack.monitor()
    talk = _Talk(stack, sim, work, name, env or {})
    module = None
    found = None
    try:
        talk.say("question number 1")
        _wait(lambda: len(_entries(talk.tr, "assistant")) >= 1, 60)
        _wait_quiet(monitor)
        talk.say("question number 2")
        if mid_answer:
            start_ms = monitor.sound_ms()
            _wait(lambda: monitor.sound_ms() - start_ms > 1500, 30)
        else:
            _wait(lambda: len(_entries(talk.tr, "assistant")) >= 2, 60)
            _wait_quiet(monitor)
        loaded_at = time.time()
        module = subprocess.run(["pactl", "load-module", "module-loopback", "source=virtual_speaker.monitor",
                                 "sink=virtual_mic_feed", "latency_msec=40", "source_dont_move=true",
                                 "sink_dont_move=true"], env=stack.full_env(), check=True, capture_output=True,
                                text=True, timeout=30).stdout.strip()
        for i in range(UNPLUG_TURNS):
            _wait(lambda: len(_entries(talk.tr, "assistant")) >= 2 + i, 60)
            _wait_quiet(monitor)
            asked = len(_entries(talk.tr, "assistant"))
            talk.say(f"question number {i + 3}")
            _wait(lambda: len(_entries(talk.tr, "assistant")) > asked, 60)
        _wait_quiet(monitor)
        found_at = talk.first("echo path found", after=loaded_at)
        echo_at = _first_sound_after(monitor, loaded_at)
        if found_at is not None and echo_at is not None:
            found = f"{(found_at - echo_at - 0.040) * 1000:.0f} ms"
        answers = _entries(talk.tr, "assistant")[1:]
        cut = sum(1 for e in answers if e.get("interrupted"))
        phantom = sum(1 for e in _entries(talk.tr, "user") if e["text"].startswith("[speech"))
    finally:
        talk.quit()
        monitor.stop()
        sim.stop()
        if module:
            subprocess.run(["pactl", "unload-module", module], env=stack.full_env(), capture_output=True, timeout=30)
    return {"answers": len(answers), "cut": cut, "phantom": phantom, "found": found or "not found"}


def _wait_quiet(monitor, quiet_s: float = 0.5, timeout: float = 30) -> None:
    """Until the speaker's monitor has had no sound for `quiet_s`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        x = monitor.samples()[-int(quiet_s * 24000):]
        if x.size and not x.any():
            return
        time.sleep(0.05)


def _wait(predicate, timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _first_sound_after(monitor, t: float) -> float | None:
    """Wall time of the speaker monitor's first 10 ms frame over -50 dBFS after time `t`."""
    import numpy as np

    x = monitor.samples()
    start = max(0, int((t - monitor.started) * 24000))
    n = (x.size - start) // 240
    if n <= 0:
        return None
    frames = x[start: start + n * 240].reshape(n, 240).astype(np.float64)
    loud = np.flatnonzero(np.sqrt(np.mean(frames ** 2, axis=1)) > 32768 * 10 ** (-50 / 20))
    return None if not loud.size else monitor.started + (start + int(loud[0]) * 240) / 24000


def _detector_cpu() -> list[float]:
    """CPU ms per second of audio of the detector alone (fed as the canceller feeds it), 10 s of
    speech on the far end: mic quiet (headphones), mic = echo, mic = echo + the user (double-talk)."""
    import numpy as np

    from voicecli.audio.echopath import FRAME, EchoPathDetector
    from voicecli.sim import speech

    far = np.frombuffer(b"".join(speech.synthesize(t) for t in (SHORT, LONG[:200])), dtype="<i2")[: 24000 * 10]
    far = far.astype(np.float64)
    echo = np.zeros(far.size)
    echo[960:] = 0.3 * far[:-960]
    user = np.roll(far, 24000 * 3) * 0.8  # another stretch of speech: independent of the far end here
    rng = np.random.default_rng(0)
    out = []
    for mic in (rng.normal(0, 5, far.size), echo, echo + user):
        det = EchoPathDetector()
        mic16 = np.clip(mic, -32768, 32767).astype(np.int16)
        far16 = far.astype(np.int16)
        t0 = time.process_time()
        for i in range(0, far.size - FRAME + 1, FRAME):
            det.far(far16[i: i + FRAME])
            det.near(mic16[i: i + FRAME])
        out.append((time.process_time() - t0) * 1000 / (far.size / 24000))
    return out


def _canceller_cpu(detect: bool) -> list[float]:
    """CPU ms per second of audio of the whole canceller, 10 s of speech as the far end, 20 ms blocks:
    mic quiet (headphones: bypassed after a second) and mic = echo (found)."""
    import numpy as np

    from voicecli.audio.echo import EchoCanceller
    from voicecli.sim import speech

    far = np.frombuffer(b"".join(speech.synthesize(t) for t in (SHORT, LONG[:200])), dtype="<i2")[: 24000 * 10]
    echo = np.zeros(far.size)
    echo[960:] = 0.3 * far[:-960]
    out = []
    for mic in (np.random.default_rng(0).normal(0, 5, far.size), echo):
        aec = EchoCanceller(detect_echo_path=detect)
        mic16 = np.clip(mic, -32768, 32767).astype(np.int16)
        t0 = time.process_time()
        for i in range(0, far.size - 480 + 1, 480):
            aec.far_end(far[i: i + 480])
            aec.process(mic16[i: i + 480])
        out.append((time.process_time() - t0) * 1000 / (far.size / 24000))
    return out


if __name__ == "__main__":
    print(run().markdown())
