"""`voicecli transcribe` as a subprocess against the simulator: WAV files and stdin headless (the
simulator reads its own speech exactly: `sim_speech`), live dictation on the virtual PulseAudio
stack (marked `audio`), and the piece cutter (`Pieces`) in process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from clihelp import cli_env, run_cli, run_cli_measured, sim_speech
from test_talk_audio import audio_stack  # noqa: F401  (the session's PulseAudio daemon)

from voicecli.audio.vad import VadEvent
from voicecli.sim import speech
from voicecli.transcribe import Output, Pieces, Segment

FIRST, SECOND = "Hello there, this is the first note.", "And here is another one."


def write_wav(path: Path, pcm: bytes, rate: int = 24000, channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return path


def notes_wav(path: Path, sim) -> Path:
    """0.5 s silence, FIRST, 1.5 s silence, SECOND, 1 s silence — in the simulator's voice."""
    pcm = (speech.silence(0.5) + sim_speech(sim.base_url, FIRST) + speech.silence(1.5)
           + sim_speech(sim.base_url, SECOND) + speech.silence(1.0))
    return write_wav(path, pcm)


def transcribe(home, sim, *args: str, **kw):
    return run_cli(home, "transcribe", "-p", "offline", "--base-url", sim.base_url, *args, **kw)


def requests(sim) -> list[dict]:
    return [e for e in list(sim.log) if e.get("endpoint") == "/v1/audio/transcriptions" and e["kind"] == "audio"]


@pytest.mark.slow
def test_a_wav_file_to_text(tmp_path, sim):
    r = transcribe(tmp_path, sim, str(notes_wav(tmp_path / "n.wav", sim)))
    assert r.code == 0, r.err
    assert r.out == f"{FIRST} {SECOND}\n"  # a short file: one request, one line
    [req] = requests(sim)
    assert req["form"]["model"] == "sim-transcribe"
    assert "transcribe: sim-transcribe · 0.1 min of audio in 1 request" in r.err and "$0" in r.err


def test_model_language_and_prompt_reach_the_request(tmp_path, sim):
    r = transcribe(tmp_path, sim, str(notes_wav(tmp_path / "n.wav", sim)), "-m", "gpt-4o-mini-transcribe",
                   "--language", "en", "--prompt", "Grafana, Kubernetes")
    assert r.code == 0 and r.out == f"{FIRST} {SECOND}\n", r.err
    [req] = requests(sim)
    assert req["form"] == {"model": "gpt-4o-mini-transcribe", "response_format": "json", "stream": "true",
                           "language": "en", "prompt": "Grafana, Kubernetes"}
    assert "gpt-4o-mini-transcribe · 0.1 min of audio in 1 request" in r.err and "unknown price" not in r.err


@pytest.mark.slow
def test_timed_formats_have_a_segment_per_utterance(tmp_path, sim):
    wav = notes_wav(tmp_path / "n.wav", sim)
    r = transcribe(tmp_path, sim, str(wav), "--format", "json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["text"] == f"{FIRST} {SECOND}" and abs(data["duration"] - 0.5 - 1.5 - 1.0
                                                        - (len(sim_speech(sim.base_url, FIRST))
                                                           + len(sim_speech(sim.base_url, SECOND))) / 48000) < 0.01
    first, second = data["segments"]
    assert [first["text"], second["text"]] == [FIRST, SECOND]
    assert 0.3 <= first["start"] <= 0.7 and first["end"] < second["start"] and second["end"] < data["duration"]
    srt = transcribe(tmp_path, sim, str(wav), "--format", "srt").out
    assert srt.startswith("1\n00:00:00,") and f"\n{FIRST}\n\n2\n" in srt and srt.endswith(f"{SECOND}\n\n")
    vtt = transcribe(tmp_path, sim, str(wav), "-F", "vtt").out
    assert vtt.startswith("WEBVTT\n\n00:00:00.") and " --> " in vtt and SECOND in vtt


@pytest.mark.slow
def test_stdin_and_other_rates_and_channels(tmp_path, sim):
    pcm = np.frombuffer(speech.silence(0.3) + sim_speech(sim.base_url, FIRST) + speech.silence(0.8), dtype="<i2")
    stereo = np.repeat(pcm, 2)  # 24 kHz stereo: both channels the same
    wav = write_wav(tmp_path / "s.wav", stereo.tobytes(), channels=2)
    proc = subprocess.run([sys.executable, "-m", "voicecli", "transcribe", "-p", "offline", "--base-url",
                           sim.base_url, "-"], stdin=open(wav, "rb"), capture_output=True, text=True,
                          env=cli_env(tmp_path), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{FIRST}\n"
    import soxr

    at16k = np.clip(np.rint(soxr.resample(pcm.astype(np.float32), 24000, 16000)), -32768, 32767).astype("<i2")
    r = transcribe(tmp_path, sim, str(write_wav(tmp_path / "16k.wav", at16k.tobytes(), rate=16000)))
    assert r.code == 0 and r.out == f"{FIRST}\n", r.err  # resampled to 24 kHz: still the same words


@pytest.mark.slow
def test_bad_input_is_a_usage_error_naming_it(tmp_path, sim):
    text = tmp_path / "notes.txt"
    text.write_text("not audio\n")
    r = transcribe(tmp_path, sim, str(text))
    assert r.code == 2 and f"{text} is not a WAV file" in r.err and "Traceback" not in r.err
    r = transcribe(tmp_path, sim, str(tmp_path / "missing.wav"))
    assert r.code == 2 and "cannot read" in r.err and "missing.wav" in r.err
    r = transcribe(tmp_path, sim, "-", input="")
    assert r.code == 2 and "stdin is empty" in r.err
    r = transcribe(tmp_path, sim, str(text), "--format", "docx")
    assert r.code == 2 and "--format must be" in r.err
    assert requests(sim) == []


def test_no_microphone_is_exit_3_with_the_file_hint(tmp_path, sim):
    r = transcribe(tmp_path, sim, PULSE_SERVER="unix:/nonexistent/pulse", XDG_RUNTIME_DIR=str(tmp_path))
    assert r.code == 3, r.err
    assert "no microphone" in r.err and "voicecli transcribe FILE.wav" in r.err


@pytest.mark.slow
def test_server_failure_names_the_stage(tmp_path, sim):
    r = transcribe(tmp_path, sim, str(notes_wav(tmp_path / "n.wav", sim)), "-o", "connection.max_retries=0",
                   "-o", "connection.headers={\"x-sim-fault\" = \"status=401\"}")
    assert r.code == 4, r.err
    assert "speech-to-text failed: authentication failed at" in r.err


@pytest.mark.slow
def test_log_appends_user_turns_that_infer_continues(tmp_path, sim):
    r = transcribe(tmp_path, sim, str(notes_wav(tmp_path / "n.wav", sim)), "--format", "srt", "--log")
    assert r.code == 0, r.err
    r2 = run_cli(tmp_path, "infer", "-p", "offline", "--base-url", sim.base_url, "-t", "chat", "-c",
                 "summarise what I said")
    assert r2.code == 0, r2.err
    sent = [e for e in list(sim.log) if e.get("endpoint") == "/v1/chat/completions" and "body" in e][-1]
    said = [m["content"] for m in sent["body"]["messages"] if m["role"] == "user"]
    assert said[:2] == [FIRST, SECOND] and said[-1] == "summarise what I said"


def test_output_formats_without_segments():
    import io

    for fmt, expected in (("text", ""), ("json", '{"text": "", "duration": 1.5, "segments": []}\n'),
                          ("srt", ""), ("vtt", "WEBVTT\n\n")):
        out = io.StringIO()
        o = Output(fmt, out)
        o.segment(Segment(0, 1, "  "))  # nothing said: no line, no cue
        o.close(1.5)
        assert out.getvalue() == expected, fmt


class FakeVad:
    """Scripted events at stream positions (ms): what `Pieces` gets from `LocalVad`."""

    silence_ms = 500

    def __init__(self, events: list[tuple[str, int, int]]):  # (kind, at ms reported, speech ms)
        self.events, self.fed = list(events), 0

    def feed(self, pcm: bytes) -> list[VadEvent]:
        self.fed += len(pcm) // 48
        out = [VadEvent(k, ms) for k, at, ms in self.events if at <= self.fed]
        self.events = [e for e in self.events if e[1] > self.fed]
        return out

    def finish(self) -> list[VadEvent]:
        return [VadEvent(k, ms) for k, at, ms in self.events]


def _feed(pieces: Pieces, seconds: float, block_s: float = 0.1) -> list:
    out = []
    block = b"\x01\x00" * int(24000 * block_s)
    for _ in range(int(seconds / block_s)):
        out += pieces.feed(block)
    return out + pieces.finish()


def test_pieces_are_cut_in_pauses_and_never_longer_than_max():
    # speech 1–3 s, 5–9 s, 10–30 s (no pause), 40–41 s; a pause is reported 500 ms after it began
    events = [("start", 1100, 1000), ("stop", 3500, 3000), ("start", 5100, 5000), ("stop", 9500, 9000),
              ("start", 10100, 10000), ("stop", 30500, 30000), ("start", 40100, 40000), ("stop", 41500, 41000)]
    got = _feed(Pieces(FakeVad(events), per_utterance=False, target_s=4, max_s=12), 45)
    starts = [p.start_ms for p in got]
    lengths = [len(p.pcm) // 48 for p in got]
    assert starts[:4] == [0, 9300, 21300, 30300][:len(starts)] or starts[0] == 0
    assert all(a + n <= b for a, n, b in zip(starts, lengths, starts[1:]))  # in order, never overlapping
    assert max(lengths) <= 12000  # the unbroken speech was cut at max_s
    # the first pause after 4 s ends the first piece, 300 ms after the speech (its fade-out)
    assert got[0].spans == [(1000, 3000), (5000, 9000)] and lengths[0] == 9300
    assert [p.spans for p in got[1:3]] == [[(10000, 21300)], [(21300, 30000)]]  # cut mid-speech only at max_s
    assert starts[1:3] == [9300, 21300] and lengths[1:3] == [12000, 9000]
    assert got[-1].spans == [(40000, 41000)] and len(got) == 4  # the 30–40 s of silence is not sent
    timed = _feed(Pieces(FakeVad(events[:4]), per_utterance=True), 12)
    assert [p.spans for p in timed] == [[(1000, 3000)], [(5000, 9000)]]


@pytest.mark.slow
def test_a_long_file_is_streamed_in_bounded_memory(tmp_path, sim):
    """Ten minutes of the same sentence every 2.5 s: read in blocks, sent in pieces, RSS bounded."""
    one = sim_speech(sim.base_url, FIRST)
    period = one + speech.silence(2.5 - len(one) / 48000)
    repeats = 240
    path = tmp_path / "long.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(24000)
        for _ in range(repeats):
            w.writeframes(period)
    r = run_cli_measured(tmp_path, "transcribe", "-p", "offline", "--base-url", sim.base_url, str(path), timeout=300)
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert " ".join(lines) == " ".join([FIRST] * repeats)  # every utterance, in order
    assert 8 <= len(requests(sim)) <= 12  # about a minute a request
    assert r.peak_rss_mib < 150, r.peak_rss_mib


# -- live dictation on the virtual audio stack ----------------------------------------------------


class Dictation:
    def __init__(self, home: Path, sim, *args: str, env: dict[str, str]):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "voicecli", "transcribe", "-p", "offline", "--base-url", sim.base_url, "--debug",
             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=cli_env(home, PYTHONFAULTHANDLER="1", **env))  # a hang shows its threads' stacks (finish)
        self.out: list[str] = []
        self.err: list[str] = []
        self.readers = [threading.Thread(target=lambda s=stream, k=sink: k.extend(iter(s.readline, "")), daemon=True)
                        for stream, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for reader in self.readers:
            reader.start()

    def wait(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if self.proc.poll() is not None:
                for reader in self.readers:  # they end at end of file: all it wrote is read
                    reader.join(10)
                raise AssertionError(f"transcribe exited ({self.proc.returncode}) before {what}: {''.join(self.err)}")
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}: {''.join(self.err)}")

    def stderr_has(self, text: str) -> bool:
        return any(text in line for line in list(self.err))

    def finish(self, timeout: float = 30) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:  # where it hangs: faulthandler writes every thread's stack on SIGABRT
            self.proc.send_signal(signal.SIGABRT)
            self.proc.wait(10)
            for reader in self.readers:
                reader.join(10)
            raise AssertionError(f"transcribe did not end within {timeout} s: {''.join(self.err)}") from None
        finally:
            self.proc.kill()


@pytest.mark.audio
@pytest.mark.slow
@pytest.mark.parametrize("engine", ["http", "realtime"])
def test_dictation_prints_each_utterance_as_it_ends(audio_stack, sim, tmp_path, engine):  # noqa: F811
    wav = write_wav(tmp_path / "a.wav", speech.silence(0.3) + sim_speech(sim.base_url, FIRST) + speech.silence(1.0))
    d = Dictation(tmp_path, sim, "--engine", engine, env=audio_stack.env)
    try:
        d.wait(lambda: d.stderr_has("dictation: listening"), 30, "the microphone")
        audio_stack.play(wav)
        d.wait(lambda: d.out == [f"{FIRST}\n"], 30, "the first line")  # before the process ends: flushed
        wav2 = write_wav(tmp_path / "b.wav", sim_speech(sim.base_url, SECOND) + speech.silence(1.0))
        audio_stack.play(wav2)
        d.wait(lambda: len(d.out) == 2, 30, "the second line")
        d.proc.send_signal(signal.SIGINT)  # nothing in progress: exit 0 at once
        assert d.finish() == 0, "".join(d.err)
    finally:
        d.proc.kill()
    assert d.out == [f"{FIRST}\n", f"{SECOND}\n"]
    assert any("transcribe: sim-transcribe" in line and "2 utterances" in line for line in d.err)
    if engine == "realtime":  # a transcription session, not a conversation
        sent = [e["event"] for e in list(sim.log) if e.get("endpoint") == "/v1/realtime" and "event" in e]
        assert sent[0]["session"]["type"] == "transcription" and not requests(sim)
        assert not [e for e in sent if e["type"] == "response.create"]
    else:
        assert len(requests(sim)) == 2


@pytest.mark.audio
@pytest.mark.slow
@pytest.mark.parametrize("engine", ["http", "realtime"])
def test_ctrl_c_finishes_the_utterance_in_progress(audio_stack, sim, tmp_path, engine):  # noqa: F811
    long = sim_speech(sim.base_url, "This is a long sentence that is still being said when Ctrl-C comes along.")
    wav = write_wav(tmp_path / "a.wav", speech.silence(0.3) + long)
    d = Dictation(tmp_path, sim, "--engine", engine, env=audio_stack.env)
    try:
        d.wait(lambda: d.stderr_has("dictation: listening"), 30, "the microphone")
        player, _ = audio_stack.play_async(wav)
        d.wait(lambda: d.stderr_has("dictation: speech start"), 30, "speech to start")
        d.proc.send_signal(signal.SIGINT)
        assert d.finish() == 0, "".join(d.err)
        player.wait(30)
    finally:
        d.proc.kill()
    assert len(d.out) == 1 and d.out[0].strip()  # what was said so far, as a line
    if engine == "http":
        assert len(requests(sim)) == 1
    else:
        sent = [e["event"]["type"] for e in list(sim.log) if e.get("endpoint") == "/v1/realtime" and "event" in e]
        assert "input_audio_buffer.commit" in sent


@pytest.mark.audio
@pytest.mark.slow
def test_a_second_ctrl_c_leaves_at_once_with_130(audio_stack, make_sim, tmp_path):  # noqa: F811
    sim = make_sim(latency=20.0)  # the utterance's transcription would take 20 s
    wav = write_wav(tmp_path / "a.wav", speech.silence(0.3) + speech.synthesize("Something to say for a while."))
    d = Dictation(tmp_path, sim, "--engine", "http", env=audio_stack.env)
    try:
        d.wait(lambda: d.stderr_has("dictation: listening"), 30, "the microphone")
        player, _ = audio_stack.play_async(wav)
        d.wait(lambda: d.stderr_has("dictation: speech start"), 30, "speech to start")
        d.proc.send_signal(signal.SIGINT)
        d.wait(lambda: requests(sim), 30, "the last utterance's request")
        d.proc.send_signal(signal.SIGINT)
        assert d.finish(10) == 130, "".join(d.err)
        player.wait(30)
    finally:
        d.proc.kill()
    assert d.out == []


# -- the simulator's Realtime transcription sessions, checked against the openai SDK's types -----


def test_sim_transcription_session_speaks_the_sdk_types(make_sim):
    import asyncio
    import base64

    from openai import AsyncOpenAI
    from test_sim_realtime import check_client_events, check_server_event

    sim = make_sim(api_key="sk-test")
    words = sim_speech(sim.base_url, FIRST, api_key="sk-test")

    async def main() -> list[dict]:
        client = AsyncOpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0)
        got: list[dict] = []
        async with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
            async def until(kind: str) -> dict:
                while True:
                    event = json.loads(await asyncio.wait_for(conn.recv_bytes(), 10))
                    check_server_event(event)
                    got.append(event)
                    if event["type"] == kind:
                        return event

            created = await until("session.created")
            assert created["session"]["type"] == "transcription"
            await conn.session.update(session={"type": "transcription", "audio": {"input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": {"model": "gpt-4o-mini-transcribe", "language": "en", "prompt": "notes"},
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}}})
            updated = await until("session.updated")
            assert updated["session"]["audio"]["input"]["transcription"]["model"] == "gpt-4o-mini-transcribe"
            pcm = speech.silence(0.3) + words + speech.silence(1.0)
            for i in range(0, len(pcm), 1920):
                await conn.input_audio_buffer.append(audio=base64.b64encode(pcm[i:i + 1920]).decode())
            done = await until("conversation.item.input_audio_transcription.completed")
            assert done["transcript"] == FIRST
            await conn.response.create()  # not in a transcription session
            error = await until("error")
            assert "transcription session" in error["error"]["message"]
        return got

    got = asyncio.run(asyncio.wait_for(main(), 30))
    types = [e["type"] for e in got]
    assert "response.created" not in types  # speech ends in a transcript, not an answer
    assert types.index("input_audio_buffer.speech_stopped") < types.index("input_audio_buffer.committed") < types.index(
        "conversation.item.input_audio_transcription.delta")
    assert check_client_events(sim) >= 3


def test_sim_transcription_session_refuses_realtime_settings(make_sim):
    import asyncio

    from openai import AsyncOpenAI

    sim = make_sim()

    async def main() -> dict:
        client = AsyncOpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0)
        async with client.realtime.connect(model="gpt-realtime") as conn:
            await conn.send({"type": "session.update", "event_id": "bad_1",
                             "session": {"type": "transcription", "instructions": "Be brief."}})
            while True:
                event = json.loads(await asyncio.wait_for(conn.recv_bytes(), 10))
                if event["type"] == "error":
                    return event

    error = asyncio.run(asyncio.wait_for(main(), 30))
    assert error["error"]["param"] == "session.instructions"


def test_transcription_session_update_and_failed_items():
    from types import SimpleNamespace

    from voicecli.events import Error, Transcript
    from voicecli.wire.realtime import RealtimeDecoder, transcription_session_update

    voice = SimpleNamespace(transcription_model="gpt-4o-transcribe", transcription_language="de", turn_detection="server_vad",
                            vad_threshold=0.6, vad_prefix_padding_ms=None, vad_silence_duration_ms=None,
                            vad_eagerness=None, noise_reduction="near_field")
    event = transcription_session_update(voice, "Kubernetes, Grafana")
    assert event == {"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
        "format": {"type": "audio/pcm", "rate": 24000},
        "transcription": {"model": "gpt-4o-transcribe", "language": "de", "prompt": "Kubernetes, Grafana"},
        "turn_detection": {"type": "server_vad", "threshold": 0.6, "silence_duration_ms": 500},
        "noise_reduction": {"type": "near_field"}}}}}
    voice.turn_detection = "none"  # dictation has no manual turns: the server's VAD all the same
    assert transcription_session_update(voice)["session"]["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    decoder = RealtimeDecoder()
    assert not decoder.configured
    decoder.feed({"type": "session.updated", "session": {"type": "transcription"}})
    assert decoder.configured
    error, ended = decoder.feed({"type": "conversation.item.input_audio_transcription.failed", "item_id": "item_1",
                                 "content_index": 0, "error": {"type": "server_error", "code": "audio_unintelligible",
                                                               "message": "Could not transcribe"}})
    assert isinstance(error, Error) and "Could not transcribe" in error.message
    assert ended == Transcript("user", "", True, "item_1")


@pytest.mark.parametrize("pause_s, requests_made, lines", [(1.0, 2, 2), (0.05, 2, 1)])
def test_dictation_sends_early_and_drops_it_when_the_speaker_goes_on(sim, pause_s, requests_made, lines):
    """http engine: the request leaves 300 ms before the pause ends the utterance; a pause that turns
    out shorter (the speaker goes on) drops it, and the whole utterance is sent once it ends."""
    import asyncio
    from types import SimpleNamespace

    from voicecli import profiles
    from voicecli.dictation import HttpEngine

    clip = sim_speech(sim.base_url, FIRST)  # its voice ends ~300 ms before the clip does: the pause is that + pause_s
    pcm = speech.silence(0.3) + clip + speech.silence(pause_s) + clip + speech.silence(1.0)
    sent, emitted = [], []

    class Rec:
        seconds, requests = 0.0, 0

        async def text(self, audio: bytes, on_delta=None) -> str:
            sent.append(len(audio))
            await asyncio.sleep(0.01)
            return f"{len(audio)} bytes"

    d = SimpleNamespace(profile=profiles.load("offline"), partial=SimpleNamespace(show=lambda t: None),
                        emit=lambda start, end, text: emitted.append((start, end, text)))

    async def main():
        engine = HttpEngine(d)
        engine.rec = Rec()
        await engine.start()
        for i in range(0, len(pcm), 960):
            await engine.feed(pcm[i:i + 960])
            await asyncio.sleep(0)  # the early request runs while audio comes in, as live
        await engine.finish()
        await engine.aclose()

    asyncio.run(asyncio.wait_for(main(), 30))
    assert len(sent) == requests_made and len(emitted) == lines
    if lines == 1:  # the early request had only the first part; the line is the whole utterance's
        assert emitted[0][2] == f"{sent[-1]} bytes" and sent[-1] > 2 * len(clip)


@pytest.mark.audio
@pytest.mark.slow
def test_partial_words_go_to_the_terminal_and_only_final_lines_to_stdout(audio_stack, sim, tmp_path):  # noqa: F811
    import os
    import pty

    wav = write_wav(tmp_path / "a.wav", speech.silence(0.3) + sim_speech(sim.base_url, FIRST) + speech.silence(1.0))
    controller, terminal = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "voicecli", "transcribe", "-p", "offline", "--base-url", sim.base_url,
                             "--engine", "http", "--partial", "-m", "gpt-4o-mini-transcribe", "--debug"],
                            stdout=subprocess.PIPE, stderr=terminal, text=True, env=cli_env(tmp_path, **audio_stack.env))
    os.close(terminal)
    seen = bytearray()

    def read_terminal() -> None:
        while True:
            try:
                data = os.read(controller, 4096)
            except OSError:
                return
            if not data:
                return
            seen.extend(data)

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    out: list[str] = []
    threading.Thread(target=lambda: out.extend(iter(proc.stdout.readline, "")), daemon=True).start()

    def wait(predicate, what: str) -> None:
        deadline = time.monotonic() + 30
        while not predicate():
            assert proc.poll() is None and time.monotonic() < deadline, f"{what}: {seen.decode(errors='replace')}"
            time.sleep(0.02)

    try:
        wait(lambda: b"dictation: listening" in seen, "the microphone")
        audio_stack.play(wav)
        wait(lambda: out, "the line")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        reader.join(5)
        os.close(controller)
    assert out and out[0] == f"{FIRST}\n"  # stdout: the final line only
    shown = seen.decode(errors="replace")
    assert "\r\x1b[K" in shown and "…" in shown and "first" in shown  # the words in progress, rewritten in place


@pytest.mark.slow
def test_say_into_transcribe_through_a_pipe(tmp_path, sim):
    """`say -O -` writes a streamed WAV (sizes 0xFFFFFFFF); `transcribe -` reads it as it comes."""
    env = cli_env(tmp_path)
    base = ["-p", "offline", "--base-url", sim.base_url]
    say = subprocess.Popen([sys.executable, "-m", "voicecli", "say", *base, "Hello there. This goes through a pipe.",
                            "-O", "-"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    try:
        got = subprocess.run([sys.executable, "-m", "voicecli", "transcribe", *base, "-"], stdin=say.stdout,
                             capture_output=True, text=True, env=env, timeout=60)
        say.stdout.close()
        assert say.wait(30) == 0
    finally:
        say.kill()
    assert got.returncode == 0, got.stderr
    assert got.stdout == "Hello there. This goes through a pipe.\n"


@pytest.mark.audio
@pytest.mark.slow
def test_realtime_dictation_goes_on_in_a_new_session_when_one_ends(audio_stack, make_sim, tmp_path):  # noqa: F811
    sim = make_sim(realtime_max_age=6.0)  # the real limit is 60 minutes
    first = write_wav(tmp_path / "a.wav", speech.silence(0.3) + sim_speech(sim.base_url, FIRST) + speech.silence(1.0))
    second = write_wav(tmp_path / "b.wav", sim_speech(sim.base_url, SECOND) + speech.silence(1.0))
    d = Dictation(tmp_path, sim, "--engine", "realtime", env=audio_stack.env)
    try:
        d.wait(lambda: d.stderr_has("dictation: listening"), 30, "the microphone")
        audio_stack.play(first)
        d.wait(lambda: len(d.out) == 1, 30, "the first line")
        d.wait(lambda: d.stderr_has("the transcription session ended"), 30, "the session's end")
        d.wait(lambda: len([e for e in list(sim.log) if e.get("endpoint") == "/v1/realtime" and "event" in e
                            and e["event"]["type"] == "session.update"]) == 2, 30, "the new session")
        audio_stack.play(second)
        d.wait(lambda: len(d.out) == 2, 30, "the second line")
        d.proc.send_signal(signal.SIGINT)
        assert d.finish() == 0, "".join(d.err)
    finally:
        d.proc.kill()
    assert d.out == [f"{FIRST}\n", f"{SECOND}\n"]
