"""`voicecli say` and `infer --speak` as subprocesses against the simulator: files and stdout
headless; the speaker on the virtual PulseAudio stack (marked `audio`)."""

from __future__ import annotations

import http.server
import io
import subprocess
import sys
import threading
import wave

import numpy as np
import pytest

from clihelp import cli_env, run_cli, sim_speech, wait_for
from test_talk_audio import audio_stack  # noqa: F401  (the session's PulseAudio daemon)

from voicecli.transport.audio import PcmReader


def say(home, sim, *args: str, input: str | None = None, **env: str):
    return run_cli(home, "say", "-p", "offline", "--base-url", sim.base_url, *args, input=input, **env)


def speech_requests(sim) -> list[dict]:
    """The bodies of the text-to-speech requests voicecli made (not the test's own sim_speech)."""
    return [e["body"] for e in list(sim.log) if e.get("endpoint") == "/v1/audio/speech" and "body" in e
            and e["headers"].get("user-agent", "").startswith("voicecli/")]


def wav_pcm(data: bytes) -> bytes:
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (24000, 1, 2)
        return w.readframes(w.getnframes())


def test_text_to_a_wav_file_sentence_by_sentence(tmp_path, sim):
    out = tmp_path / "out.wav"
    r = say(tmp_path, sim, "Hello there.", "How are you today?", "-O", str(out))
    assert r.code == 0, r.err
    assert r.out == ""  # the audio went to the file
    # both requests go at once (TTS_AHEAD), so they may reach the server in either order (a clean-clone
    # CI run saw the second first); the file below must hold them in the text's order
    assert sorted(b["input"] for b in speech_requests(sim)) == ["Hello there.", "How are you today?"]
    assert all(b["response_format"] == "pcm" and b["model"] == "sim-tts" for b in speech_requests(sim))
    # the file is the two sentences' speech, back to back (no gap, nothing lost)
    expected = sim_speech(sim.base_url, "Hello there.") + sim_speech(sim.base_url, "How are you today?")
    assert wav_pcm(out.read_bytes()) == expected
    assert "say: sim-tts · 30 characters" in r.err and "$0" in r.err


def test_stdin_to_wav_on_stdout_is_a_streamed_wav(tmp_path, sim):
    proc = subprocess.run([sys.executable, "-m", "voicecli", "say", "-p", "offline", "--base-url", sim.base_url,
                           "-O", "-"], input=b"One line of *markdown* text.\n", capture_output=True,
                          env=cli_env(tmp_path), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout[:4] == b"RIFF" and proc.stdout[40:44] == b"\xff\xff\xff\xff"  # a pipe: "to the end"
    reader = PcmReader()
    pcm = reader.feed(proc.stdout) + reader.finish()
    assert pcm == sim_speech(sim.base_url, "One line of markdown text.")  # markdown marks are not read out
    assert [b["input"] for b in speech_requests(sim)] == ["One line of markdown text."]


@pytest.mark.slow
def test_speech_starts_while_stdin_still_streams(tmp_path, sim):
    """`infer … | say`: the first sentence is sent to text-to-speech before the text has ended."""
    out = tmp_path / "out.wav"
    proc = subprocess.Popen([sys.executable, "-m", "voicecli", "say", "-p", "offline", "--base-url", sim.base_url,
                             "-O", str(out)], stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env(tmp_path))
    try:
        proc.stdin.write(b"The first sentence is here. The sec")
        proc.stdin.flush()
        wait_for(lambda: [b["input"] for b in speech_requests(sim)] == ["The first sentence is here."], 30,
                 "the first sentence's speech request")
        proc.stdin.write(b"ond one follows.")
        proc.stdin.close()
        assert proc.wait(60) == 0, proc.stderr.read()
    finally:
        proc.kill()
    assert [b["input"] for b in speech_requests(sim)] == ["The first sentence is here.", "The second one follows."]


@pytest.mark.slow
def test_typed_lines_are_said_on_enter(tmp_path, sim):
    """At a terminal a line without a full stop is said when Enter is pressed, not at Ctrl-D."""
    import os
    import pty

    controller, terminal = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "voicecli", "say", "-p", "offline", "--base-url", sim.base_url,
                             "-O", str(tmp_path / "o.wav")], stdin=terminal, stderr=subprocess.PIPE,
                            env=cli_env(tmp_path))
    os.close(terminal)
    try:
        os.write(controller, b"no full stop here\n")
        wait_for(lambda: [b["input"] for b in speech_requests(sim)] == ["no full stop here"], 30, "the typed line")
        os.write(controller, b"\x04")  # Ctrl-D: the end
        assert proc.wait(30) == 0, proc.stderr.read()
    finally:
        proc.kill()
        os.close(controller)


def test_voice_model_instructions_and_speed_reach_the_request(tmp_path, sim):
    r = say(tmp_path, sim, "Quietly now.", "-O", str(tmp_path / "o.wav"), "--voice", "cedar", "-m", "gpt-4o-mini-tts",
            "--instructions", "Whisper.", "-o", "voice.speed=1.5")
    assert r.code == 0, r.err
    [body] = speech_requests(sim)
    assert (body["voice"], body["model"], body["instructions"], body["speed"]) == ("cedar", "gpt-4o-mini-tts",
                                                                                  "Whisper.", 1.5)
    assert "say: gpt-4o-mini-tts · 12 characters" in r.err and "unknown price" not in r.err  # priced by the minute


def test_no_speaker_is_exit_3_with_the_file_hint(tmp_path, sim):
    r = say(tmp_path, sim, "Hello.", PULSE_SERVER="unix:/nonexistent/pulse", XDG_RUNTIME_DIR=str(tmp_path))
    assert r.code == 3, r.err
    assert "no audio output device" in r.err and "-O FILE.wav" in r.err
    assert speech_requests(sim) == []  # nothing was sent


def test_unwritable_output_is_a_usage_error(tmp_path, sim):
    r = say(tmp_path, sim, "Hello.", "-O", str(tmp_path / "missing" / "o.wav"))
    assert r.code == 2 and "cannot write" in r.err and "o.wav" in r.err


def test_server_errors_end_with_the_stage(tmp_path, sim):
    r = say(tmp_path, sim, "Hello.", "-O", str(tmp_path / "o.wav"), "-o", "voice.speech_model=tts-1",
            "-o", "connection.headers={\"x-sim-fault\" = \"status=500; times=9\"}", "-o", "connection.max_retries=0")
    assert r.code == 7, r.err
    assert "text-to-speech failed: server error from" in r.err and "Traceback" not in r.err


class _Mp3Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 — a server that ignores response_format "pcm"
        self.rfile.read(int(self.headers.get("content-length", 0)))
        body = b"ID3\x03" + b"\xff\xfb" * 2000
        self.send_response(200)
        self.send_header("Content-Type", "audio/mpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_server_sending_mp3_gets_the_clear_message(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Mp3Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        r = run_cli(tmp_path, "say", "-p", "offline", "--base-url", f"http://127.0.0.1:{server.server_port}/v1",
                    "Hello.", "-O", str(tmp_path / "o.wav"))
    finally:
        server.shutdown()
    assert r.code == 7, r.err
    assert "text-to-speech failed" in r.err and "audio/mpeg, not PCM" in r.err and 'response_format "pcm"' in r.err


@pytest.mark.audio
@pytest.mark.slow
def test_say_plays_on_the_speaker(audio_stack, sim, tmp_path):  # noqa: F811
    monitor = audio_stack.monitor()
    try:
        r = say(tmp_path, sim, "Hello from the speaker.", **audio_stack.env)
        samples = monitor.stop()
    finally:
        monitor.stop()
    assert r.code == 0, r.err
    reply = np.frombuffer(sim_speech(sim.base_url, "Hello from the speaker."), dtype="<i2")
    loud = np.flatnonzero(np.abs(samples) > 200)
    assert loud.size, "nothing was played"
    # all of it was played before say exited: the monitor holds as much sound as the speech has
    assert loud[-1] - loud[0] >= 0.9 * (np.flatnonzero(np.abs(reply) > 200)[-1] - np.flatnonzero(np.abs(reply) > 200)[0])


@pytest.mark.audio
@pytest.mark.slow
def test_infer_speak_prints_and_speaks_the_answer(audio_stack, sim, tmp_path):  # noqa: F811
    monitor = audio_stack.monitor()
    try:
        r = run_cli(tmp_path, "infer", "-p", "offline", "--base-url", sim.base_url, "--speak", "say something",
                    **audio_stack.env)
        assert monitor.wait_for_sound(5, ms=200)  # played before infer exited (the monitor may lag a little)
    finally:
        monitor.stop()
    assert r.code == 0, r.err
    said = " ".join(b["input"] for b in speech_requests(sim))
    assert r.out.strip() and said and said.split()[0] in r.out  # the printed answer is what was spoken


def test_infer_speak_without_a_speaker_fails_before_asking(tmp_path, sim):
    r = run_cli(tmp_path, "infer", "-p", "offline", "--base-url", sim.base_url, "--speak", "hi",
                PULSE_SERVER="unix:/nonexistent/pulse", XDG_RUNTIME_DIR=str(tmp_path))
    assert r.code == 3 and "no audio output device" in r.err
    assert not [e for e in sim.log if e.get("endpoint") in ("/v1/responses", "/v1/chat/completions")]
