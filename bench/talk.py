"""`voicecli talk` on real audio: latency of each hop, barge-in stop time, CPU and memory.

Runs on the project's PulseAudio null-sink stack (tests/audio/virtual-audio.sh) against the
simulator, so it needs pulseaudio, paplay and espeak-ng (scripts/install.sh --test).

- A probe process (this file with `--probe`) runs `Talk` in-process with timestamps on each hop
  (events from the voice session, `RealtimeSession.append_audio`, `Talk.barge_in`):
  mic callback → `input_audio_buffer.append` sent; `output_audio.delta` received → first sample
  handed to the output stream; barge-in (`speech_started` received) → speaker flushed (the faded
  tail handed over). PortAudio's reported stream latencies give the remaining device hop.
- The real CLI then talks for 60 s (an utterance every 10 s, answers a few seconds long), and
  its CPU time and RSS are read from /proc.

Targets (issue "voicecli talk"): mic-to-send ≤ 30 ms, receive-to-play ≤ 80 ms, barge-in stop
≤ 50 ms, ≤ 10 % of one core, ≤ 150 MB RSS.

The cascade engine (`--engine cascade`, issue "cascaded voice") is measured headless (`--input`/
`--output` WAVs, no devices needed) by a second probe (`--cascade-probe`): end of speech → first
audio sample handed to the speaker, split into the VAD decision, speech-to-text, first token, first
sentence and text-to-speech first byte, against a simulator with a fixed latency on every endpoint;
the client's own overhead is what is left after the simulator's configured latencies (≤ 30 ms).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

LONG_REPLY = ("Once upon a time there was a small command line tool that wanted to talk. "
              "It listened carefully, it answered politely, and it always stopped when interrupted. ") * 2


def run():
    from common import Section

    from audio.stack import VirtualAudio, missing_reason, speech_wav
    from voicecli.sim.config import SimConfig
    from voicecli.sim.server import start_in_thread

    section = Section(name="talk", title="Talk: audio latency, barge-in, CPU and memory",
                      intro="On the PulseAudio null-sink stack against the simulator (paced at real time, "
                            "50 ms audio deltas). Client hops are measured in-process; device hops are PortAudio's "
                            "reported stream latency. Medians, with p95 where there are many samples.",
                      headers=["measure", "value", "target"])
    _cascade_rows(section)
    reason = missing_reason()
    if reason:
        section.notes.append(f"realtime rows not run: {reason}")
        return section
    work = Path(tempfile.mkdtemp(prefix="voicecli-bench-talk-"))
    stack = VirtualAudio.start(work / "pulse")
    script = work / "script.json"
    script.write_text(json.dumps({"turns": [{"reply": LONG_REPLY}]}))
    first = speech_wav(work / "first.wav", "please tell me a long story")
    second = speech_wav(work / "second.wav", "stop that is enough thank you", lead_s=0.0)
    probes = {}
    try:
        for speed in (1.0, 4.0):  # paced like the sim's default; faster than real time, like the real API
            sim = start_in_thread(SimConfig(script=script, realtime_speed=speed))
            try:
                out = work / f"probe-{speed:g}.json"
                subprocess.run([sys.executable, __file__, "--probe", sim.base_url, str(first), str(second), str(out)],
                               env=stack.full_env(VOICECLI_HOME=str(work / "home")), check=True, timeout=180,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                probes[speed] = json.loads(out.read_text())
                if speed == 1.0:
                    sim.reset()
                    load = _sixty_seconds(stack, sim, work, aec=False)
                    sim.reset()
                    load_aec = _sixty_seconds(stack, sim, work, aec=True)
            finally:
                sim.stop()
    finally:
        stack.stop()
        shutil.rmtree(work, ignore_errors=True)
    _rows(section, probes[1.0], probes[4.0], load, load_aec)
    return section


def _rows(section, p: dict, fast: dict, load: dict, load_aec: dict) -> None:
    def ms(v: float | None) -> str:
        return "–" if v is None else f"{v * 1000:.1f} ms"

    def dist(xs: list[float]) -> str:
        if not xs:
            return "–"
        xs = sorted(xs)
        if len(xs) < 20:
            return f"{ms(statistics.median(xs))} (n={len(xs)})"
        return f"{ms(statistics.median(xs))} (p95 {ms(xs[int(len(xs) * 0.95) - 1])}, n={len(xs)})"

    mic, out_lat, in_lat = p["mic_to_send"], p["output_latency"], p["input_latency"]
    recv, recv_fast = p["receive_to_handed"], fast["receive_to_handed"]
    rows = [
        ["mic: first sample into the virtual mic (paplay) → its `append` sent (one utterance)", ms(p["mic_e2e"]), "≤ 30 ms"],
        ["mic: callback → `append` sent", dist(mic), ""],
        ["mic: input stream latency (PortAudio, 2 × 20 ms blocks)", ms(in_lat), ""],
        ["speaker: `delta` received → first sample handed to the stream (sim paced 1×)", dist(recv), ""],
        ["speaker: same, sim 4× real time (like the real API)", dist(recv_fast), ""],
        ["speaker: output stream latency (PortAudio, 2 × 10 ms blocks)", ms(out_lat), ""],
        ["`delta` received → sample on the monitor (handed + output latency), 1× / 4×",
         (ms(statistics.median(recv) + out_lat) if recv else "–") + " / " +
         (ms(statistics.median(recv_fast) + out_lat) if recv_fast else "–"), "≤ 80 ms"],
        ["barge-in: `speech_started` received → speaker flushed (fade handed over)", dist(p["barge_in"]), ""],
        ["barge-in stop, incl. output latency", ms(statistics.median(p["barge_in"]) + out_lat) if p["barge_in"] else "–",
         "≤ 50 ms"],
        ["truncate `audio_end_ms` − audio handed to the device", f"{p['truncate_error_ms']} ms", "≤ 20 ms"],
        ["60 s conversation: CPU (one core)", f"{load['cpu_percent']:.1f} %", "≤ 10 %"],
        ["60 s conversation: peak RSS", f"{load['rss_mb']:.0f} MB", "≤ 150 MB"],
        ["60 s conversation: turns answered", str(load["turns"]), ""],
        ["60 s conversation with echo cancellation (the default): CPU / peak RSS / turns",
         f"{load_aec['cpu_percent']:.1f} % / {load_aec['rss_mb']:.0f} MB / {load_aec['turns']}", ""],
    ]
    section.notes.append("The hop rows and the first 60 s run use `--no-aec`, so they compare with earlier runs; "
                         "the last row is the default (WebRTC echo cancellation on the mic), see the echo section.")
    section.rows.extend(rows)
    section.notes.append("The jitter buffer starts playing once 60 ms are queued. The simulator paced at real time "
                         "sends 50 ms deltas, so the first one waits for the second (1× row); a server that sends "
                         "faster than real time, as the real API does, fills it at once (4× row).")
    section.notes.append("The mic row includes paplay's own start-up, so it overstates voicecli's part; "
                         "the callback → send row is voicecli's own cost.")
    section.notes.append(f"speech_started after the user's second utterance began: {ms(p.get('vad_delay'))} "
                         "(the simulator's VAD needs 30 ms of voice; the real server's is slower).")


def _sixty_seconds(stack, sim, work: Path, *, aec: bool) -> dict:
    """The real CLI for 60 s: one utterance every 10 s; CPU time and peak RSS from /proc."""
    from audio.stack import speech_wav

    wav = speech_wav(work / "utterance.wav", "what time is it in london")
    tr = work / f"load-{'aec' if aec else 'no-aec'}.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "voicecli", "talk", "-p", "offline", "--base-url", sim.base_url,
                             "--full-duplex", "--aec" if aec else "--no-aec", "--transcript", str(tr)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=stack.full_env(VOICECLI_HOME=str(work / "home")))
    try:
        deadline = time.time() + 30
        while time.time() < deadline and not any(e.get("event", {}).get("type") == "session.update" for e in list(sim.log)):
            time.sleep(0.05)
        time.sleep(1.0)  # imports done, streams open
        cpu0, t0 = _cpu_seconds(proc.pid), time.monotonic()
        for _ in range(6):
            start = time.monotonic()
            stack.play(wav)
            time.sleep(max(0.0, 10 - (time.monotonic() - start)))
        cpu1, t1 = _cpu_seconds(proc.pid), time.monotonic()
        rss = _peak_rss_mb(proc.pid)
    finally:
        proc.send_signal(2)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    turns = tr.read_text().count('"role": "assistant"') if tr.exists() else 0
    return {"cpu_percent": 100 * (cpu1 - cpu0) / (t1 - t0), "rss_mb": rss, "turns": turns}


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


# -- the probe: Talk in-process, with timestamps on every hop -------------------------------------


def first_onset_s(wav: Path) -> float:
    """Where the first non-zero sample of the file is (the padding before it is exact zeros)."""
    import numpy as np

    from voicecli.audio.wav import read_wav_24k

    x = np.frombuffer(read_wav_24k(wav), dtype="<i2")
    nonzero = np.flatnonzero(x)
    return nonzero[0] / 24000 if nonzero.size else 0.0


def probe(base_url: str, first: Path, second: Path, out: Path) -> None:
    import numpy as np

    from voicecli import profiles
    from voicecli.conversation import Conversation
    from voicecli.events import AudioDelta
    from voicecli.talk import Talk
    from voicecli.voice.options import TalkOptions
    from voicecli.voice.session import RealtimeSession

    sys.stdin = open(os.devnull)
    prof = profiles.load("offline")
    prof.connection.base_url = base_url
    talk = Talk(prof, TalkOptions(half_duplex=False, aec=False, no_log=True), Conversation(prof, None))
    received: dict[str, float] = {}
    barge: list[float] = []
    marks: dict[str, float] = {}
    truncates: list[tuple[int, int]] = []

    on_event = talk.on_event

    async def timed_event(event):
        if isinstance(event, AudioDelta):
            received.setdefault(event.item_id, time.monotonic())
        await on_event(event)

    talk.on_event = timed_event
    barge_in = talk.barge_in

    async def timed_barge_in():
        if not talk.turns.busy:
            return await barge_in()  # nothing playing: nothing to stop (and nothing to time)
        start = time.monotonic()
        cut = talk.buffer.current_item
        await barge_in()
        while talk.buffer.pending() > 0:  # the faded tail still to hand over
            await asyncio.sleep(0.001)
        barge.append(time.monotonic() - start)
        marks.setdefault("barge", start)
        item = talk.turns.items.get(cut)
        if item is not None and item.played_ms is not None:
            truncates.append((item.played_ms, talk.buffer.played_ms(cut)))

    talk.barge_in = timed_barge_in
    sends: list[tuple[float, int]] = []  # (time an append was sent, its peak sample)
    append = RealtimeSession.append_audio

    async def timed_append(self, pcm):
        ok = await append(self, pcm)
        samples = np.frombuffer(pcm, dtype="<i2")
        sends.append((time.monotonic(), int(np.abs(samples).max()) if samples.size else 0))
        return ok

    RealtimeSession.append_audio = timed_append

    async def drive():
        while talk.stats["sent_blocks"] < 25:
            await asyncio.sleep(0.05)
        marks["first"] = time.monotonic()
        await _play(first)
        while not talk.buffer.first_played:
            await asyncio.sleep(0.01)
        await asyncio.sleep(1.5)
        marks["second"] = time.monotonic()
        await _play(second)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (len(talk.buffer.first_played) < 2 or not talk._idle()):
            await asyncio.sleep(0.05)
        talk.stop.set()

    async def main():
        task = asyncio.get_running_loop().create_task(drive())
        try:
            await talk.run()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    onset = first_onset_s(first)
    heard = next((t for t, lv in sends if t > marks["first"] + onset and lv > 0), None)
    result = {
        "mic_e2e": heard - (marks["first"] + onset) if heard else None,
        "mic_to_send": talk.stats["mic_to_send"][50:],  # after start-up
        "input_latency": talk.audio.latencies.get("in", 0.0),
        "output_latency": talk.audio.latencies.get("out", 0.0),
        "receive_to_handed": [talk.buffer.first_played[i] - t for i, t in received.items() if i in talk.buffer.first_played],
        "barge_in": barge,
        "truncate_error_ms": max((abs(a - b) for a, b in truncates), default=None),
        "vad_delay": marks["barge"] - marks["second"] if "barge" in marks and "second" in marks else None,
    }
    out.write_text(json.dumps(result))


CASCADE_LATENCY = 0.15  # s, the simulator's latency on every endpoint (STT, text, TTS)
CASCADE_DELTA = 0.01  # s between streamed text deltas (and speech pieces)
CASCADE_QUESTIONS = ["What time is it in London?", "How far away is the moon?", "Tell me something nice.",
                     "What is the capital of France?", "Can you count to three?", "Is it going to rain today?"]
# said with a 300 ms pause inside (after the first part), 20 of them: each must be one turn, one answer
PAUSED_QUESTIONS = [("What time is it", "in London?"), ("How far away", "is the moon?"),
                    ("Tell me something", "nice about cats."), ("What is the capital", "of France?"),
                    ("Can you count", "to three for me?")]
PAUSED_N = 20
PAUSE_S = 0.3


def _trimmed(pcm: bytes) -> bytes:
    """The simulator's speech without its trailing silence (so a pause after it is exactly the pause)."""
    import numpy as np

    x = np.abs(np.frombuffer(pcm, dtype="<i2").astype(np.int32))
    return pcm[: (int(np.nonzero(x > 328)[0][-1]) + 1) * 2]


def _cascade_rows(section) -> None:
    from clihelp import sim_speech
    from voicecli.sim import speech
    from voicecli.sim.config import SimConfig
    from voicecli.sim.server import start_in_thread

    if not speech.espeak_available():
        section.notes.append("cascade rows not run: espeak-ng is missing (the local VAD hears real voices)")
        return
    work = Path(tempfile.mkdtemp(prefix="voicecli-bench-cascade-"))
    sim = start_in_thread(SimConfig(latency=CASCADE_LATENCY, delta_delay=CASCADE_DELTA))
    runs: dict[str, dict] = {}
    try:
        pcm = speech.silence(0.5)
        for question in CASCADE_QUESTIONS:  # each answer has 5 s to be spoken before the next question
            pcm += sim_speech(sim.base_url, question) + speech.silence(5.0)
        speech.write_wav(work / "questions.wav", pcm)
        pcm = speech.silence(0.5)
        for k in range(PAUSED_N):
            first, rest = PAUSED_QUESTIONS[k % len(PAUSED_QUESTIONS)]
            pcm += _trimmed(sim_speech(sim.base_url, first)) + speech.silence(PAUSE_S) + \
                sim_speech(sim.base_url, rest) + speech.silence(4.0)
        speech.write_wav(work / "paused.wav", pcm)
        # side by side in one run, on one simulator: as before #24 (no preemptive answers, the first
        # chunk a whole sentence), as now (the defaults), and the pauses
        for name, wav, overrides in (("off", "questions.wav", ["--before"]),
                                     ("on", "questions.wav", []), ("paused", "paused.wav", [])):
            out = work / f"cascade-{name}.json"
            subprocess.run([sys.executable, __file__, "--cascade-probe", sim.base_url, str(work / wav), str(out),
                            *overrides], env={**os.environ, "VOICECLI_HOME": str(work / "home")}, check=True,
                           timeout=600, stdout=subprocess.DEVNULL)
            runs[name] = json.loads(out.read_text())
    finally:
        sim.stop()
        shutil.rmtree(work, ignore_errors=True)

    lat = f"sim latency {CASCADE_LATENCY * 1000:.0f} ms"

    def ms(values) -> str:
        values = list(values)
        return f"{statistics.median(values) * 1000:.0f} ms" if values else "–"

    def total(t: dict) -> float:  # end of speech (the VAD's estimate) → first sample handed to the speaker
        return t["vad"] + t["after_vad"]

    off, on = runs["off"]["turns"], runs["on"]["turns"]
    pre = [t for t in on if "pause_vad" in t]
    section.rows.extend([
        [f"cascade: end of speech → first audio sample handed to the speaker (median, n={len(off)} / {len(on)}), "
         "before / after #24", f"{ms(map(total, off))} / {ms(map(total, on))}", "≤ 800 ms (after)"],
        ["cascade: · the same as talk's latency line reports it, before / after",
         f"{ms(t['reported'] / 1000 for t in off if 'reported' in t)} / "
         f"{ms(t['reported'] / 1000 for t in on if 'reported' in t)}", ""],
        ["cascade: · VAD stop decided (end of speech → stop; 500 ms of silence is the setting, "
         f"{runs['on']['eager_end_ms']} ms after a finished sentence after #24), before / after",
         f"{ms(t['vad'] for t in off)} / {ms(t['vad'] for t in on)}", ""],
        [f"cascade: · after: VAD pause (end of speech → preemptive start; voice.preemptive_ms "
         f"{runs['on']['preemptive_ms']}), n={len(pre)}", ms(t["pause_vad"] for t in pre), ""],
        [f"cascade: · speech-to-text (upload → final words; {lat}), before / after",
         f"{ms(t['stt'] for t in off)} / {ms(t['stt'] for t in on)}", ""],
        [f"cascade: · first token (request → first text delta; {lat} + one {CASCADE_DELTA * 1000:.0f} ms delta), "
         "before / after", f"{ms(t['first_token'] for t in off)} / {ms(t['first_token'] for t in on)}", ""],
        [f"cascade: · first chunk (first delta → first chunk to text-to-speech; a delta every "
         f"{CASCADE_DELTA * 1000:.0f} ms), before / after", f"{ms(t['sentence'] for t in off)} / {ms(t['sentence'] for t in on)}", ""],
        [f"cascade: · text-to-speech first byte (request → first audio; {lat}), before / after",
         f"{ms(t['tts_first_byte'] for t in off)} / {ms(t['tts_first_byte'] for t in on)}", ""],
        ["cascade: · first audio received → first sample handed (the output clock's 20 ms blocks), before / after",
         f"{ms(t['after_vad'] - t['received'] for t in off)} / {ms(t['after_vad'] - t['received'] for t in on)}", ""],
    ])
    for name, turns in (("before #24", off), ("after", on)):
        # what the simulator is told to take: each endpoint's latency, plus one delta before the first text
        # (a role chunk comes first) and the deltas of the first chunk, which is streamed at that pace;
        # counted from when the work started: the stop decision, or (on) the pause's
        configured = [3 * CASCADE_LATENCY + CASCADE_DELTA + t["sentence"] for t in turns]
        over = [(t["received_from_start"] - c) * 1000 for t, c in zip(turns, configured)]
        section.rows.append([f"cascade: client overhead beyond the configured latencies, start of work → first audio "
                             f"received (median / max), {name}",
                             f"{statistics.median(over):.1f} / {max(over):.1f} ms", "≤ 30 ms"])
    p = runs["paused"]
    section.rows.extend([
        [f"cascade: a {PAUSE_S * 1000:.0f} ms pause inside a sentence: turns / answers for {PAUSED_N} sentences",
         f"{p['user_turns']} / {p['answers']}", f"{PAUSED_N} / {PAUSED_N}"],
        ["cascade: wasted (discarded preemptive) answers and their requests, pauses run / questions run",
         f"{p['discarded']} ({_requests(p['wasted'])}) / {runs['on']['discarded']} ({_requests(runs['on']['wasted'])})", ""],
    ])
    section.notes.append("Cascade rows: headless (`--input`/`--output` WAVs) on chat against the simulator with "
                         f"{CASCADE_LATENCY * 1000:.0f} ms latency on each endpoint; the questions are the simulator's "
                         "own speech, so speech-to-text returns the exact words. Before #24 (`voice.preemptive_ms=0` "
                         "and the first text-to-speech chunk a whole sentence) and after (the defaults) run one after "
                         "the other on one simulator. "
                         "End of speech is the VAD's estimate of where the speech ended (a stop's `ms`), as in talk's "
                         "latency line. Overhead = the time from the start of the work (the stop decision; with "
                         "preemptive answers, the pause's) minus the three configured latencies and the simulator's "
                         "delta pacing up to the first chunk; it includes the simulator's own work (HTTP, recognising "
                         "the speech, synthesis) as well as voicecli's. The first turn pays for opening connections. "
                         f"The pause sentences are {PAUSED_N} with {PAUSE_S * 1000:.0f} ms of silence after the first "
                         "words (the simulator's trailing silence cut); a wasted answer's requests are those started "
                         "(a cancelled one may never reach the server).")


def _requests(wasted: dict) -> str:
    return ", ".join(f"{n} {stage}" for stage, n in wasted.items() if n) or "no requests"


def cascade_probe(base_url: str, wav: Path, out: Path, overrides: list[str]) -> None:
    """Headless cascade talk in-process, with a timestamp at each stage of every turn. A turn's record
    opens at the VAD's pause (preemptive answers) or its stop; a "resume" marks it discarded."""
    from voicecli import profiles
    from voicecli.conversation import Conversation
    from voicecli.events import TextDelta, Transcript
    from voicecli.talk import Talk, TalkOptions
    from voicecli.transport.audio import AudioClient
    from voicecli.voice import cascade
    from voicecli.audio.vad import Segmenter

    sys.stdin = open(os.devnull)
    if "--before" in overrides:  # as before #24: no preemptive answers, the first chunk a whole sentence
        overrides = [o for o in overrides if o != "--before"] + ["voice.preemptive_ms=0"]
        cascade.FIRST_CLAUSE_WORDS = 0
    prof = profiles.load("offline", overrides=profiles.parse_options(overrides))
    prof.connection.base_url, prof.connection.transport = base_url, "chat"
    opts = TalkOptions(input_wav=wav, output_wav=out.with_suffix(".wav"), no_log=True, engine="cascade")
    talk = Talk(prof, opts, Conversation(prof, None))
    turns: list[dict] = []
    state = {"open": None, "user_turns": 0}

    feed = Segmenter.feed

    def timed_feed(self, pcm):
        events = feed(self, pcm)
        now = time.monotonic()
        for ev in events:
            delay = (self.vad.position_ms - ev.ms) / 1000
            if ev.kind == "pause":
                state["open"] = {"started": now, "pause_vad": delay}
                turns.append(state["open"])
            elif ev.kind == "resume" and state["open"] is not None:
                state["open"]["discarded"], state["open"] = True, None
            elif ev.kind == "stop":
                if state["open"] is None:
                    state["open"] = {"started": now}
                    turns.append(state["open"])
                state["open"].update(stopped=now, vad=delay)
                state["open"] = None
        return events

    Segmenter.feed = timed_feed
    transcribe, speak, send = AudioClient.transcribe, AudioClient.speak, Conversation.send

    async def timed_transcribe(self, *a, **kw):
        sent, turn = time.monotonic(), turns[-1]
        async for event in transcribe(self, *a, **kw):
            if isinstance(event, Transcript) and event.final:
                turn["stt"] = time.monotonic() - sent
            yield event

    async def timed_speak(self, *a, **kw):
        sent, first, turn = time.monotonic(), True, turns[-1]
        async for piece in speak(self, *a, **kw):
            if first and "tts_first_byte" not in turn:
                turn["tts_first_byte"] = time.monotonic() - sent
                turn["received_at"] = time.monotonic()
            first = False
            yield piece

    async def timed_send(self, message):
        sent, turn = time.monotonic(), turns[-1]
        async for event in send(self, message):
            if isinstance(event, TextDelta) and "first_token" not in turn:
                turn["first_token"], turn["token_at"] = time.monotonic() - sent, time.monotonic()
            yield event

    add = cascade.Speech.add

    def timed_add(self, item_id, chunk):  # a chunk goes to text-to-speech (mid-stream, or at its end)
        if chunk.spoken and "sentence" not in turns[-1]:
            turns[-1]["sentence"] = time.monotonic() - turns[-1]["token_at"]
        return add(self, item_id, chunk)

    from voicecli.voice.turns import Turns

    latency = Turns.latency

    def reported_latency(self):  # what talk's own line says: end of speech → first sample handed
        got = latency(self)
        done = [t for t in turns if "stopped" in t]
        if got is not None and done and got[2] == "end of speech":
            done[-1]["reported"] = got[1]
        return got

    from voicecli.voice.record import TalkRecord

    said = TalkRecord.said

    def counted_said(self, role, text, **kw):
        state["user_turns"] += role == "user" and bool(text)
        return said(self, role, text, **kw)

    TalkRecord.said = counted_said
    Turns.latency = reported_latency
    AudioClient.transcribe, AudioClient.speak, Conversation.send = timed_transcribe, timed_speak, timed_send
    cascade.Speech.add = timed_add
    asyncio.run(talk.run())
    played = sorted(talk.buffer.first_played.values())
    kept = [t for t in turns if not t.get("discarded") and "stopped" in t and "stt" in t and "first_token" in t
            and "received_at" in t]
    for turn in kept:
        first = next((p for p in played if p > turn["stopped"]), None)
        turn["after_vad"] = first - turn["stopped"]
        turn["received"] = turn["received_at"] - turn["stopped"]
        turn["received_from_start"] = turn["received_at"] - turn["started"]
    session = talk.session
    out.write_text(json.dumps({"turns": kept, "answers": talk.record.answers, "user_turns": state["user_turns"],
                               "discarded": getattr(session, "discarded", 0), "wasted": dict(getattr(session, "wasted", {})),
                               "preemptive_ms": prof.voice.preemptive_ms, "eager_end_ms": prof.voice.eager_end_ms}))


async def _play(wav: Path) -> None:
    proc = await asyncio.create_subprocess_exec("paplay", "-d", "virtual_mic_feed", str(wav))
    await asyncio.wait_for(proc.wait(), 60)


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "--cascade-probe":
        cascade_probe(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), sys.argv[5:])
    elif len(sys.argv) == 6 and sys.argv[1] == "--probe":
        probe(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), Path(sys.argv[5]))
    else:
        sys.path.insert(0, str(HERE))
        print(run().markdown())
