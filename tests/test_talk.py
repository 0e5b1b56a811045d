"""`voicecli talk` end to end as a subprocess against the simulator, without audio devices:
`--input/--output` WAV files, push-to-talk and text from stdin, rollover, drops, device errors."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import websockets

from clihelp import cli_env, run_cli, talk_with_approval, wait_for
from shared_data import recording
from voicecli.sim import speech
from voicecli.sim.vad import voiced_span


def speech_wav(path: Path, parts: list[tuple[str, float]], rate: int = 24000, channels: int = 1) -> Path:
    """A WAV of ("speech"|"silence", seconds) parts; speech is voice-like harmonics the sim's VAD hears."""
    pcm = b"".join(speech.speech_like(s, seed=i) if kind == "speech" else speech.silence(s)
                   for i, (kind, s) in enumerate(parts))
    x = speech.samples(pcm)
    if rate != 24000:
        x = speech.resample(x, 24000, rate)
    data = speech.to_int16(x)
    if channels == 2:
        mono = np.frombuffer(data, dtype="<i2")
        data = np.stack([mono, mono], axis=1).astype("<i2").tobytes()
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data)
    return path


def realtime_events(sim, conn: str | None = None) -> list[dict]:
    return [e["event"] for e in list(sim.log)
            if e.get("endpoint") == "/v1/realtime" and "event" in e and (conn is None or e["conn"] == conn)]


def conns(sim) -> list[str]:
    seen = []
    for e in list(sim.log):
        if e.get("endpoint") == "/v1/realtime" and e.get("conn") and e["conn"] not in seen:
            seen.append(e["conn"])
    return seen


def entries(path: Path) -> list[dict]:
    return [e for e in map(json.loads, path.read_text().splitlines()) if e.get("type") == "entry"]


def talk(home: Path, sim, *args: str, timeout: float = 90, input: str | None = None, **env: str):
    return run_cli(home, "talk", "-p", "offline", "--base-url", sim.base_url, *args, timeout=timeout,
                   input=input, **env)


@pytest.mark.slow
def test_headless_round_trip_records_the_sims_voice(tmp_path, sim):
    wav = speech_wav(tmp_path / "in.wav", [("silence", 0.3), ("speech", 1.2), ("silence", 0.5)], rate=16000, channels=2)
    out, tr = tmp_path / "out.wav", tmp_path / "t.jsonl"
    r = talk(tmp_path, sim, "--input", str(wav), "--output", str(out), "--transcript", str(tr))
    assert r.code == 0, r.err
    said = entries(tr)
    assert [e["role"] for e in said] == ["user", "assistant"]
    assert said[0]["text"].startswith("[speech 1.")
    assert said[1]["text"] == f"You said: {said[0]['text']}" and not said[1].get("interrupted")
    assert r.out.splitlines() == [f"user: {said[0]['text']}", f"assistant: {said[1]['text']}"]
    # the sim heard the speech, converted from 16 kHz stereo, streamed in 20 ms appends
    appends = [e for e in realtime_events(sim) if e["type"] == "input_audio_buffer.append"]
    pcm = b"".join(base64.b64decode(e["audio"]) for e in appends)
    assert {len(base64.b64decode(e["audio"])) for e in appends[:-1]} == {960}
    start, end = voiced_span(pcm)
    assert 1000 <= end - start <= 1400
    # the output WAV is exactly the sim's synthesized answer
    assert speech.read_wav(out.read_bytes()) == speech.synthesize(said[1]["text"])


@pytest.mark.slow
def test_text_lines_from_stdin_join_the_conversation(tmp_path, sim):
    wav = speech_wav(tmp_path / "in.wav", [("silence", 3.0)])
    r = talk(tmp_path, sim, "--input", str(wav), "--output", str(tmp_path / "o.wav"), input="hello there\n")
    assert r.code == 0, r.err
    assert r.out.splitlines() == ["user: hello there", "assistant: You said: hello there"]
    sent = [e for e in realtime_events(sim) if e["type"] in ("conversation.item.create", "response.create")]
    assert sent[0]["item"]["content"] == [{"type": "input_text", "text": "hello there"}]
    assert sent[1]["type"] == "response.create"


@pytest.mark.slow
def test_push_to_talk_commits_and_asks_for_a_response(tmp_path, sim):
    wav = speech_wav(tmp_path / "in.wav", [("speech", 1.0), ("silence", 3.0)])
    proc = subprocess.Popen([sys.executable, "-m", "voicecli", "talk", "-p", "offline", "--base-url", sim.base_url,
                             "--vad", "off", "--input", str(wav), "--output", str(tmp_path / "o.wav")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cli_env(tmp_path))
    try:
        wait_for(lambda: any(e["type"] == "session.update" for e in realtime_events(sim)), 30)
        proc.stdin.write("\n")  # start recording (an empty line = Space/Enter)
        proc.stdin.flush()
        wait_for(lambda: sum(e["type"] == "input_audio_buffer.append" for e in realtime_events(sim)) >= 40, 30)
        proc.stdin.write("\n")  # stop: commit + response.create
        proc.stdin.flush()
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    kinds = [e["type"] for e in realtime_events(sim)]
    update = next(e for e in realtime_events(sim) if e["type"] == "session.update")
    assert update["session"]["audio"]["input"]["turn_detection"] is None
    assert kinds.index("input_audio_buffer.commit") < kinds.index("response.create")
    assert "assistant: You said: [speech" in out


@pytest.mark.slow
def test_session_expiry_reconnects_and_replays_the_conversation(tmp_path, make_sim):
    sim = make_sim(realtime_max_age=5.0)
    wav = speech_wav(tmp_path / "in.wav", [("silence", 0.3), ("speech", 0.6), ("silence", 6.0), ("speech", 0.8),
                                           ("silence", 0.5)])
    tr = tmp_path / "t.jsonl"
    r = talk(tmp_path, sim, "--input", str(wav), "--output", str(tmp_path / "o.wav"), "--transcript", str(tr))
    assert r.code == 0, r.err
    assert "expired" in r.err
    c1, c2 = conns(sim)[:2]
    first = entries(tr)[:2]
    replayed = [e["item"] for e in realtime_events(sim, c2) if e["type"] == "conversation.item.create"]
    assert [(i["role"], i["content"][0]["text"]) for i in replayed[:2]] == [(e["role"], e["text"]) for e in first]
    assert [e["role"] for e in entries(tr)] == ["user", "assistant", "user", "assistant"]


@pytest.mark.slow
def test_dropped_socket_resumes_in_a_new_session(tmp_path, sim):
    prof = tmp_path / "drop.toml"
    prof.write_text('extends = "offline"\n[connection]\nmax_retries = 2\n'
                    '[connection.headers]\n"x-sim-fault" = "drop=12; times=1"\n')
    wav = speech_wav(tmp_path / "in.wav", [("silence", 0.3), ("speech", 0.6), ("silence", 2.5), ("speech", 0.8),
                                           ("silence", 0.5)])
    tr = tmp_path / "t.jsonl"
    r = run_cli(tmp_path, "talk", "-p", str(prof), "--base-url", sim.base_url, "--input", str(wav),
                "--output", str(tmp_path / "o.wav"), "--transcript", str(tr), timeout=90)
    assert r.code == 0, r.err
    assert len(conns(sim)) == 2
    assert "new session" in r.err
    said = entries(tr)
    assert said[-1]["role"] == "assistant" and said[-1]["text"].startswith("You said: [speech 0.")


@pytest.mark.slow
def test_headless_run_needs_no_portaudio(tmp_path, sim):
    fake = tmp_path / "fakes"
    fake.mkdir()
    (fake / "sounddevice.py").write_text("raise OSError('PortAudio library not found')\n")
    wav = speech_wav(tmp_path / "in.wav", [("silence", 0.5)])
    r = talk(tmp_path, sim, "--input", str(wav), "--output", str(tmp_path / "o.wav"), PYTHONPATH=str(fake))
    assert r.code == 0, r.err
    r = talk(tmp_path, sim, PYTHONPATH=str(fake))
    assert r.code == 3
    assert r.err.splitlines()[0] == "voicecli: audio is unavailable: PortAudio library not found"
    assert "libportaudio2" in r.err and "Traceback" not in r.err


FAKE_NO_DEVICES = """
class PortAudioError(Exception):
    pass
class _Default:
    device = (-1, -1)
default = _Default()
def query_devices(*a, **k):
    return []
"""


@pytest.mark.slow
def test_no_device_message(tmp_path, sim):
    fake = tmp_path / "fakes"
    fake.mkdir()
    (fake / "sounddevice.py").write_text(FAKE_NO_DEVICES)
    r = talk(tmp_path, sim, PYTHONPATH=str(fake))  # no microphone: typed turns, but nowhere to speak
    assert r.code == 3
    assert r.err.splitlines()[0] == "voicecli: no audio output device found"
    assert "--output FILE.wav" in r.err
    r = talk(tmp_path, sim, "--input", str(speech_wav(tmp_path / "i.wav", [("silence", 0.2)])), PYTHONPATH=str(fake))
    assert r.code == 3 and "no audio output device found" in r.err
    r = talk(tmp_path, sim, "--input-device", "usb", PYTHONPATH=str(fake))  # a microphone asked for by name
    assert r.code == 3 and "input device" in r.err


@pytest.mark.parametrize("engine", ["realtime", "cascade"])
@pytest.mark.slow
def test_without_a_microphone_typed_turns_are_answered_aloud(tmp_path, sim, engine):
    """No input device (or --no-mic): lines typed or piped are the user's turns, the answers are spoken
    (here into --output), and the end of stdin ends talk once the last answer was spoken."""
    fake = tmp_path / "fakes"
    fake.mkdir()
    (fake / "sounddevice.py").write_text(FAKE_NO_DEVICES)
    out, tr = tmp_path / "out.wav", tmp_path / "t.jsonl"
    r = talk(tmp_path, sim, "--engine", engine, "--output", str(out), "--transcript", str(tr),
             input="what time is it\n", PYTHONPATH=str(fake))
    assert r.code == 0, r.err
    assert "no microphone found: type your turns; answers are spoken" in r.err
    said = [(e["role"], e["text"]) for e in map(json.loads, tr.read_text().splitlines()) if e.get("type") == "entry"]
    assert said == [("user", "what time is it"), ("assistant", "You said: what time is it")]
    assert out.stat().st_size > 44 + 24000  # more than a second of the answer's voice
    r = talk(tmp_path, sim, "--no-mic", "--input", str(out), "--output", str(tmp_path / "o2.wav"), input="hi\n")
    assert r.code == 0, r.err  # --input wins over --no-mic


def test_bad_vad_value_is_a_usage_error(tmp_path, sim):
    r = talk(tmp_path, sim, "--vad", "sometimes")
    assert r.code == 2 and "--vad must be server, semantic or off" in r.err


def test_unreachable_server_is_one_line(tmp_path):
    wav = speech_wav(tmp_path / "in.wav", [("silence", 0.2)])
    r = run_cli(tmp_path, "talk", "-p", "offline", "--base-url", "http://127.0.0.1:9/v1", "--input", str(wav),
                "--output", str(tmp_path / "o.wav"))
    assert r.code == 6, r.err
    assert r.err.startswith("voicecli: network error talking to http://127.0.0.1:9/v1")
    assert "Traceback" not in r.err


@pytest.mark.slow
def test_tool_call_with_approval_from_the_keyboard(tmp_path, sim):
    prof = tmp_path / "tools.toml"
    prof.write_text('extends = "offline"\n[[tools]]\nname = "get_weather"\ndescription = "Weather now"\n'
                    'command = ["echo", "sunny and 21 C"]\napproval = "ask"\n')
    wav = speech_wav(tmp_path / "in.wav", [("silence", 1.0)])
    tr = tmp_path / "t.jsonl"
    code, out, err = talk_with_approval(tmp_path, ["-p", str(prof), "--base-url", sim.base_url, "--input", str(wav),
                                                   "--output", str(tmp_path / "o.wav"), "--transcript", str(tr)],
                                        "what does get_weather say", "run the tool 'get_weather'")
    assert code == 0, err
    update = next(e for e in realtime_events(sim) if e["type"] == "session.update")
    assert [t["name"] for t in update["session"]["tools"]] == ["get_weather"]
    output = next(e["item"] for e in realtime_events(sim) if e["type"] == "conversation.item.create"
                  and e["item"]["type"] == "function_call_output")
    assert "sunny and 21 C" in output["output"]
    assert "assistant: Tool get_weather returned:" in out and "sunny and 21 C" in out
    assert any(e["role"] == "tool" for e in entries(tr))


@pytest.mark.slow
def test_approval_on_a_terminal_says_one_key_answers_and_takes_it_without_enter(tmp_path, sim):
    pexpect = pytest.importorskip("pexpect")
    prof = tmp_path / "tools.toml"
    prof.write_text('extends = "offline"\n[[tools]]\nname = "get_weather"\ndescription = "Weather now"\n'
                    'command = ["echo", "sunny and 21 C"]\napproval = "ask"\n')
    wav = speech_wav(tmp_path / "in.wav", [("silence", 60.0)])
    child = pexpect.spawn(sys.executable, ["-m", "voicecli", "talk", "-p", str(prof), "--base-url", sim.base_url,
                                           "--input", str(wav), "--output", str(tmp_path / "o.wav")],
                          env=cli_env(tmp_path), encoding="utf-8", timeout=30, dimensions=(30, 120))
    try:
        child.expect("Ctrl-D: quit")  # the footer: talk reads the keyboard
        child.send("what does get_weather say\r")
        child.expect_exact("Allow? y once · a always · n no [press y, a or n]:")
        child.send("y")  # the key alone, no Enter
        child.expect("sunny and 21 C")
        child.sendcontrol("d")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    output = next(e["item"] for e in realtime_events(sim) if e["type"] == "conversation.item.create"
                  and e["item"]["type"] == "function_call_output")
    assert "sunny and 21 C" in output["output"]


@pytest.mark.slow
def test_terminal_keys_push_to_talk_text_and_ctrl_c(tmp_path, sim):
    pexpect = pytest.importorskip("pexpect")
    wav = speech_wav(tmp_path / "in.wav", [("speech", 60.0)])  # sent only while recording: the keys drive it
    child = pexpect.spawn(sys.executable, ["-m", "voicecli", "talk", "-p", "offline", "--base-url", sim.base_url,
                                           "--vad", "off", "--input", str(wav), "--output", str(tmp_path / "o.wav")],
                          env=cli_env(tmp_path), encoding="utf-8", timeout=30, dimensions=(30, 120))
    try:
        child.expect("Space/Enter: record/send")  # the footer
        child.send("hi there")
        child.expect("hi there")  # echoed in the footer while typing
        child.send("\r")
        child.expect("♪ speaking")
        child.sendintr()  # first Ctrl-C: stop the answer, stay in the session
        child.expect("Ctrl-C again to quit")
        wait_for(lambda: any(e["type"] == "conversation.item.truncate" for e in realtime_events(sim)), 20)
        child.send(" ")  # Space: record
        child.expect("recording")
        wait_for(lambda: sum(e["type"] == "input_audio_buffer.append" for e in realtime_events(sim)) >= 15, 20)
        child.send(" ")  # Space again: send
        wait_for(lambda: [e["type"] for e in realtime_events(sim)][-1:] == ["response.create"], 20)
        child.expect(r"You said: \[speech")
        time.sleep(0.5)
        child.sendintr()  # cancels the answer
        time.sleep(0.5)  # two signals sent at once would merge into one
        child.sendintr()  # quits
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    kinds = [e["type"] for e in realtime_events(sim) if e["type"] != "input_audio_buffer.append"]
    assert kinds[:3] == ["session.update", "conversation.item.create", "response.create"]
    assert "response.cancel" in kinds or "conversation.item.truncate" in kinds
    i = kinds.index("input_audio_buffer.commit")
    assert kinds[i - 1: i + 2] == ["input_audio_buffer.clear", "input_audio_buffer.commit", "response.create"]


@pytest.mark.slow
def test_terminal_footer_states_the_ctrl_c_rule_and_one_idle_ctrl_c_quits(tmp_path, sim):
    pexpect = pytest.importorskip("pexpect")
    wav = speech_wav(tmp_path / "in.wav", [("silence", 60.0)])  # nothing said: talk stays idle
    child = pexpect.spawn(sys.executable, ["-m", "voicecli", "talk", "-p", "offline", "--base-url", sim.base_url,
                                           "--input", str(wav), "--output", str(tmp_path / "o.wav")],
                          env=cli_env(tmp_path), encoding="utf-8", timeout=30, dimensions=(30, 120))
    try:
        child.expect_exact("type + Enter: send text · Ctrl-C: interrupt (idle: quit) · Ctrl-D: quit")
        child.expect("listening")
        child.sendintr()  # idle: one Ctrl-C quits, as the footer says
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    assert "twice" not in child.before and "Ctrl-C again" not in child.before


@pytest.mark.slow
def test_session_is_renewed_before_its_age_limit(tmp_path, sim):
    wav = speech_wav(tmp_path / "in.wav", [("silence", 14.0)])
    r = talk(tmp_path, sim, "--input", str(wav), "--output", str(tmp_path / "o.wav"),
             "-o", "voice.session_max_age=10", input="remember the word banana\n")
    assert r.code == 0, r.err
    assert "renewing the session" in r.err
    c1, c2 = conns(sim)[:2]
    replayed = [e["item"] for e in realtime_events(sim, c2) if e["type"] == "conversation.item.create"]
    assert [(i["role"], i["content"][0]["text"]) for i in replayed] == [
        ("user", "remember the word banana"), ("assistant", "You said: remember the word banana")]


def simulated_answer(sim) -> list[dict]:
    """The simulator's own server events for a typed line answered in audio (what the recording holds)."""
    async def capture() -> list[dict]:
        got: list[dict] = []
        async with websockets.connect(sim.base_url.replace("http://", "ws://") + "/realtime?model=gpt-realtime") as ws:
            await ws.send(json.dumps({"type": "conversation.item.create", "item": {
                "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Say hi."}]}}))
            await ws.send(json.dumps({"type": "response.create"}))
            while not got or got[-1]["type"] != "response.done":
                got.append(json.loads(await ws.recv()))
        return got

    return asyncio.run(asyncio.wait_for(capture(), 30))


def short_answer_replay(events: list[dict], dest: Path, turn: int, audio_ms: float | None) -> Path:
    """A text → audio session, with ids made unique per turn and, when `audio_ms` is given, that
    much audio in its deltas instead."""
    events = json.loads(json.dumps(events))
    deltas = [e for e in events if e["type"] == "response.output_audio.delta"]
    if audio_ms is not None:
        pcm = speech.tone(440, audio_ms / 1000)
        size = -(-len(pcm) // len(deltas) // 2) * 2
        for i, e in enumerate(deltas):
            e["delta"] = base64.b64encode(pcm[i * size:(i + 1) * size]).decode()
    text = json.dumps(events)
    for old in sorted(set(re.findall(r'"((?:item|resp|event)_[A-Za-z0-9]{8,})"', text))):
        text = text.replace(f'"{old}"', f'"{old}_{turn}"')
    dest.write_text("\n".join(json.dumps(e) for e in json.loads(text)) + "\n")
    return dest


@pytest.mark.slow
@pytest.mark.parametrize("source", ["recorded", "simulated"])
def test_short_answers_play_to_the_end_headless(tmp_path, make_sim, source):
    """Answers shorter than the jitter buffer's prebuffer (the recorded one's audio is cut to 2.7 ms;
    3 ms of the simulator's; then 10, 30, 59 ms) are played, written, and talk ends by itself when
    the input WAV is done."""
    if source == "recorded":
        template, lengths = [json.loads(line) for line in recording("realtime_ws_text_in_audio_out_01.jsonl")
                             .read_text().splitlines() if line.strip()], [None, 10, 30, 59]
    else:
        template, lengths = simulated_answer(make_sim(realtime_speed=0)), [3, 10, 30, 59]
    turns = [{"replay": short_answer_replay(template, tmp_path / f"turn{i}.jsonl", i, ms).name}
             for i, ms in enumerate(lengths)]
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"turns": turns}))
    sim = make_sim(script=script)
    parts = [("silence", 0.3)]
    for _ in lengths:
        parts += [("speech", 0.5), ("silence", 1.0)]
    wav = speech_wav(tmp_path / "in.wav", parts)
    out, tr = tmp_path / "out.wav", tmp_path / "t.jsonl"
    try:
        r = talk(tmp_path, sim, "--input", str(wav), "--output", str(out), "--transcript", str(tr), timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"talk never ended; transcript so far: {tr.read_text() if tr.exists() else ''}")
    assert r.code == 0, r.err
    said = [e["text"] for e in entries(tr) if e["role"] == "assistant"]
    recorded = next(json.loads(line)["transcript"] for line in (tmp_path / "turn0.jsonl").read_text().splitlines()
                    if '"response.output_audio_transcript.done"' in line)
    assert said == [recorded] * len(lengths)
    assert r.out.count(f"assistant: {recorded}") == len(lengths)
    # every sample of every answer was played into the output WAV
    sent = b"".join(base64.b64decode(json.loads(line)["delta"]) for i in range(len(lengths))
                    for line in (tmp_path / f"turn{i}.jsonl").read_text().splitlines()
                    if '"response.output_audio.delta"' in line)
    assert speech.read_wav(out.read_bytes()) == sent
@pytest.mark.slow
def test_forced_tool_choice_is_sent_in_the_realtime_shape(tmp_path, sim):
    prof = tmp_path / "forced.toml"
    prof.write_text('extends = "offline"\n[model]\ntool_choice = "get_weather"\n[[tools]]\nname = "get_weather"\n'
                    'description = "Weather now"\ncommand = ["echo", "sunny"]\napproval = "auto"\n')
    wav = speech_wav(tmp_path / "in.wav", [("silence", 0.3)])
    r = run_cli(tmp_path, "talk", "-p", str(prof), "--base-url", sim.base_url, "--input", str(wav),
                "--output", str(tmp_path / "o.wav"))
    assert r.code == 0, r.err
    update = next(e for e in realtime_events(sim) if e["type"] == "session.update")
    assert update["session"]["tool_choice"] == {"type": "function", "name": "get_weather"}


def sim_log(sim) -> list[dict]:
    import httpx

    return httpx.get(sim.base_url.replace("/v1", "/_sim/log")).json()


@pytest.mark.slow
def test_infer_continues_a_voice_conversation(tmp_path, sim):
    # the speech comes after the typed line's answer was heard
    wav = speech_wav(tmp_path / "in.wav", [("silence", 4.0), ("speech", 1.2), ("silence", 0.5)])
    r = talk(tmp_path, sim, "--input", str(wav), "--output", str(tmp_path / "o.wav"), input="hello by text\n")
    assert r.code == 0, r.err
    said = [line.split(": ", 1) for line in r.out.splitlines()]
    assert [role for role, _ in said] == ["user", "assistant", "user", "assistant"]
    r = run_cli(tmp_path, "infer", "-p", "offline", "--base-url", sim.base_url, "-t", "sse", "-c", "and now?")
    assert r.code == 0, r.err
    [request] = [e for e in sim_log(sim) if e.get("endpoint") == "/v1/responses" and e.get("method") == "POST"]
    history = [(i["role"], i["content"] if isinstance(i["content"], str) else "".join(c["text"] for c in i["content"]))
               for i in request["body"]["input"]]
    assert history == [*map(tuple, said), ("user", "and now?")]


@pytest.mark.slow
def test_talk_continues_a_text_conversation(tmp_path, sim):
    r = run_cli(tmp_path, "infer", "-p", "offline", "--base-url", sim.base_url, "remember the word banana")
    assert r.code == 0, r.err
    wav = speech_wav(tmp_path / "in.wav", [("silence", 0.3)])
    r = talk(tmp_path, sim, "-c", "--input", str(wav), "--output", str(tmp_path / "o.wav"))
    assert r.code == 0, r.err
    replayed = [e["item"] for e in realtime_events(sim) if e["type"] == "conversation.item.create"]
    assert [(i["role"], i["content"][0]["text"]) for i in replayed] == [
        ("user", "remember the word banana"), ("assistant", "You said: remember the word banana")]


@pytest.mark.slow
def test_a_silent_talk_leaves_no_conversation_behind(tmp_path, sim):
    wav = speech_wav(tmp_path / "in.wav", [("silence", 0.3)])
    r = talk(tmp_path, sim, "--input", str(wav), "--output", str(tmp_path / "o.wav"))
    assert r.code == 0, r.err
    r = run_cli(tmp_path, "infer", "-p", "offline", "--base-url", sim.base_url, "-c", "hello")
    assert r.code != 0 and "no earlier conversation" in r.err  # not an empty voice conversation


@pytest.mark.slow
def test_each_answer_and_the_session_are_priced_with_audio_rates(tmp_path, sim):
    from voicecli import pricing
    from voicecli.events import Usage

    wav = speech_wav(tmp_path / "in.wav", [("silence", 0.3), ("speech", 1.2), ("silence", 0.5)])
    tr = tmp_path / "t.jsonl"
    r = talk(tmp_path, sim, "-m", "gpt-realtime", "--input", str(wav), "--output", str(tmp_path / "o.wav"),
             "--transcript", str(tr))
    assert r.code == 0, r.err
    [answer] = [e for e in entries(tr) if e["role"] == "assistant"]
    u = answer["usage"]
    assert u["audio_input_tokens"] > 0 and u["audio_output_tokens"] > 0  # the sim's Realtime usage has audio
    usage = Usage(u["input_tokens"], u["output_tokens"], u["cached_tokens"], u["reasoning_tokens"],
                  u["audio_input_tokens"], u["audio_output_tokens"], u.get("audio_cached_tokens", 0))
    expected = pricing.cost_usd("gpt-realtime", usage)
    text_only = pricing.cost_usd("gpt-realtime", Usage(usage.input_tokens, usage.output_tokens))
    assert answer["cost_usd"] == pytest.approx(expected) and expected > text_only  # audio costs more
    assert (f"talk: 1 answer · {usage.input_tokens} tokens in (0 cached, {usage.audio_input_tokens} audio) · "
            f"{usage.output_tokens} out · {pricing.format_usd(expected)}") in r.err


@pytest.mark.slow
def test_an_unknown_voice_model_has_an_unknown_price(tmp_path, sim):
    r = talk(tmp_path, sim, "-m", "my-realtime", "--input", str(speech_wav(tmp_path / "in.wav", [("silence", 0.3)])),
             "--output", str(tmp_path / "o.wav"), input="hi\n")
    assert r.code == 0, r.err
    assert "talk: 1 answer" in r.err and "unknown price" in r.err
    # the simulator's own model is free
    r = talk(tmp_path, sim, "--input", str(speech_wav(tmp_path / "in.wav", [("silence", 0.3)])),
             "--output", str(tmp_path / "o.wav"), input="hi\n")
    assert r.code == 0, r.err
    assert "talk: sim-realtime" in r.err and r.err.rstrip().endswith("out · $0"), r.err


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
@pytest.mark.slow
def test_sigterm_and_sighup_end_talk_like_a_quit(tmp_path, sim, sig):
    """A `kill` (or the terminal closing) ends talk as Ctrl-C twice does: the answer is in the
    transcript and the log, the recording is a complete WAV, the exit code is 128 + the signal."""
    import signal
    import wave

    wav = speech_wav(tmp_path / "in.wav", [("silence", 0.3), ("speech", 1.2), ("silence", 60.0)])
    out, tr = tmp_path / "out.wav", tmp_path / "t.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "voicecli", "talk", "-p", "offline", "--base-url", sim.base_url,
                             "--input", str(wav), "--output", str(out), "--transcript", str(tr)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cli_env(tmp_path))
    try:
        deadline = time.time() + 30
        while not (tr.exists() and '"assistant"' in tr.read_text()) and time.time() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        time.sleep(0.5)  # the answer's audio is being written
        proc.send_signal(getattr(signal, sig))
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + getattr(signal, sig), err
    assert "Traceback" not in err
    assert [e["role"] for e in entries(tr)] == ["user", "assistant"]
    with wave.open(str(out)) as w:  # the header was finalised: its length matches what was written
        assert w.getnframes() > 0 and w.getnframes() * 2 == out.stat().st_size - 44
    r = run_cli(tmp_path, "logs", "show", "-c", "--json")
    assert r.code == 0 and [i["role"] for i in json.loads(r.out)["items"] if i.get("role")] == ["user", "assistant"], r.out


@pytest.mark.slow
def test_the_latency_line_counts_the_servers_turn_end_silence(tmp_path, make_sim):
    """#27: Realtime's `speech_stopped.audio_end_ms` includes the silence that ended the turn; the line
    counts from where the speech ended (that minus `silence_duration_ms`), so the silence is in it."""
    sim = make_sim(latency=0.15)
    wav = speech_wav(tmp_path / "in.wav", [("silence", 0.5), ("speech", 1.2), ("silence", 2.0)])
    r = talk(tmp_path, sim, "--input", str(wav), "--output", str(tmp_path / "o.wav"))
    assert r.code == 0, r.err
    [line] = [ln for ln in r.err.splitlines() if "latency:" in ln]
    found = re.search(r"latency: end of speech → first audio (\d+) ms → first sound (\d+) ms", line)
    assert found, line
    # 500 ms of silence + the 150 ms before the answer's first byte; from the event, it was about 150 ms
    assert 640 <= int(found.group(2)) <= 3000, line
