"""`voicecli talk` through real audio: PortAudio → ALSA pulse plugin → a private PulseAudio daemon
with a virtual microphone and speaker (tests/audio/virtual-audio.sh).

Speech made with espeak-ng is played into the virtual microphone (`paplay -d virtual_mic_feed`)
while talk runs against the simulator; what talk plays is recorded from the speaker's monitor
(`parec -d virtual_speaker.monitor`). The null sinks are bit-exact, so the assistant's waveform
can be found sample for sample on the monitor.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from audio.stack import REALTIME, Monitor, VirtualAudio, find_exact, locate, missing_reason, speech_wav
from clihelp import cli_env
from voicecli.sim import speech
from voicecli.sim.vad import voiced_span

pytestmark = [pytest.mark.audio, pytest.mark.slow]

LONG_REPLY = ("Once upon a time there was a small command line tool that wanted to talk. "
              "It listened carefully, it answered politely, and it always stopped when interrupted. ") * 2


@pytest.fixture(scope="session")
def audio_stack(tmp_path_factory):
    """A private PulseAudio daemon for this test session. Tests hand `stack.env` to what they start: it is
    not put into os.environ, where it would reach the later tests of the same worker (`chat`'s /talk
    would find a microphone)."""
    reason = missing_reason() or (None if shutil.which("espeak-ng") and shutil.which("sox") else
                                  "espeak-ng/sox are not installed (bash scripts/install.sh --test)")
    if reason:
        pytest.skip(reason)
    stack = VirtualAudio.start(tmp_path_factory.mktemp("pulse"))
    yield stack
    stack.stop()


class TalkProcess:
    def __init__(self, home: Path, sim, *args: str, env: dict[str, str]):
        self.sim = sim
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "voicecli", "talk", "-p", "offline", "--base-url", sim.base_url, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=cli_env(home, **env))
        if REALTIME:  # its threads, all made after this, inherit it; what it runs does not (reset on fork)
            os.sched_setscheduler(self.proc.pid, os.SCHED_RR | os.SCHED_RESET_ON_FORK, os.sched_param(10))

    def events(self, kind: str | None = None) -> list[dict]:
        out = [e["event"] for e in list(self.sim.log) if e.get("endpoint") == "/v1/realtime" and "event" in e]
        return [e for e in out if kind is None or e["type"] == kind]

    def wait(self, predicate, timeout: float, what: str) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if predicate():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"talk exited ({self.proc.returncode}) before {what}: {self.proc.stderr.read()}")
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    def wait_streaming(self) -> None:
        """Connected, and the microphone is being sent."""
        self.wait(lambda: len(self.events("input_audio_buffer.append")) >= 10, 30, "the microphone stream")

    def line(self, text: str) -> None:
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def quit(self) -> tuple[int, str, str]:
        """Ctrl-C (twice, as a user does, if the first one only cancels), then collect the output."""
        for wait in (1.0, 10.0):
            self.proc.send_signal(signal.SIGINT)
            try:
                out, err = self.proc.communicate(timeout=wait)
                return self.proc.returncode, out, err
            except subprocess.TimeoutExpired:
                continue
        self.proc.kill()
        out, err = self.proc.communicate(timeout=10)
        return self.proc.returncode, out, err


def gapless_match(monitor: np.ndarray, start: int, reply: np.ndarray) -> tuple[int, int, int]:
    """Follow `reply` through the monitor from `start`, skipping silent gaps (jitter-buffer underruns) and
    samples the recording lost (on a busy machine the monitor's reader can fall behind and PulseAudio
    drops what it missed: the recording then goes on further into the reply, bit-exact again).
    Returns (how far into the reply it got, monitor index where the match ended, reply samples found
    bit-exact on the way: fewer than the first where the recording lost some)."""
    i, j, found = start, 0, 0
    while i < monitor.size and j < reply.size:
        if monitor[i] == reply[j]:
            i, j, found = i + 1, j + 1, found + 1
        elif monitor[i] == 0:
            i += 1
        else:  # the fade, or a hole in the recording: the next 20 ms found ahead within 0.5 s resume it
            ahead = find_exact(reply[j:j + 12000], monitor[i:i + 480])
            if ahead is None:
                break
            j += ahead
    return j, i, found


def test_voice_round_trip_through_the_virtual_devices(audio_stack, make_sim, tmp_path):
    sim = make_sim()
    wav = speech_wav(tmp_path / "hello.wav", "hello there what is the weather like today")
    tr = tmp_path / "talk.jsonl"
    monitor = audio_stack.monitor()
    talk = TalkProcess(tmp_path, sim, "--full-duplex", "--transcript", str(tr), env=audio_stack.env)
    try:
        talk.wait_streaming()
        audio_stack.play(wav)
        talk.wait(lambda: tr.exists() and '"assistant"' in tr.read_text(), 40, "the assistant's answer")
        code, out, err = talk.quit()
    finally:
        talk.proc.kill()
        samples = monitor.stop()
    assert code == 0, err
    # the sim received the speech: as long as the file's voiced part
    pcm = b"".join(base64.b64decode(e["audio"]) for e in talk.events("input_audio_buffer.append"))
    heard, spoken = voiced_span(pcm), voiced_span(speech.read_wav(wav.read_bytes()))
    assert heard is not None
    assert abs((heard[1] - heard[0]) - (spoken[1] - spoken[0])) <= 300
    said = [e for e in map(json.loads, tr.read_text().splitlines()) if e.get("type") == "entry"]
    assert [e["role"] for e in said] == ["user", "assistant"]
    assert said[1]["text"] == f"You said: {said[0]['text']}"
    assert out.splitlines() == [f"user: {said[0]['text']}", f"assistant: {said[1]['text']}"]
    # the assistant's voice arrived on the virtual speaker, sample for sample
    reply = np.frombuffer(speech.synthesize(said[1]["text"]), dtype="<i2")
    voiced = reply[np.flatnonzero(reply)[0]:]
    where = locate(samples, voiced, voiced.size // 20)
    assert where is not None, "the assistant's audio is not on the speaker monitor"
    _, _, found = gapless_match(samples, where[0], voiced[where[1]:])
    assert found >= 0.95 * voiced.size


def test_barge_in_stops_playback_and_truncates_to_what_was_played(audio_stack, make_sim, tmp_path):
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"turns": [{"reply": LONG_REPLY}]}))
    sim = make_sim(script=script)
    first = speech_wav(tmp_path / "first.wav", "please tell me a long story")
    second = speech_wav(tmp_path / "second.wav", "stop that is enough thank you", lead_s=0.0)
    tr = tmp_path / "talk.jsonl"
    monitor = audio_stack.monitor()
    # no leak on this stack: a headphones setup, where barge-in is fastest without the canceller
    talk = TalkProcess(tmp_path, sim, "--full-duplex", "--no-aec", "--transcript", str(tr), env=audio_stack.env)
    try:
        talk.wait_streaming()
        audio_stack.play(first)
        assert monitor.wait_for_sound(30, ms=1000), "the assistant never started speaking"
        interrupt_at = time.time()
        audio_stack.play(second)
        talk.wait(lambda: talk.events("conversation.item.truncate"), 20, "the truncate event")
        talk.wait(lambda: tr.exists() and tr.read_text().count('"assistant"') >= 2, 40, "the second answer")
        code, out, err = talk.quit()
    finally:
        talk.proc.kill()
        samples = monitor.stop()
    assert code == 0, err
    kinds = [e["type"] for e in talk.events() if e["type"] != "input_audio_buffer.append"]
    assert "response.cancel" in kinds
    assert kinds.index("response.cancel") < kinds.index("conversation.item.truncate")
    truncate = talk.events("conversation.item.truncate")[0]
    # what the monitor got of the long answer, bit-exact, up to where the fade began
    reply = np.frombuffer(speech.synthesize(LONG_REPLY), dtype="<i2")
    lead = int(np.flatnonzero(reply)[0])
    start = find_exact(samples, reply[lead:])
    assert start is not None
    reached, stop_index, found = gapless_match(samples, start, reply[lead:])
    assert found >= 0.9 * reached
    played_ms = (lead + reached) / 24
    assert 0 <= truncate["audio_end_ms"] - played_ms <= 20 + 5, (truncate["audio_end_ms"], played_ms)
    assert reached < 0.8 * (reply.size - lead), "the answer was not cut"
    # playback stopped soon after the user spoke, and stayed silent (the fade, then nothing)
    stopped_at = monitor.started + stop_index / 24000
    assert stopped_at - interrupt_at < 1.5
    after = samples[stop_index + 240: stop_index + 240 + 24000 * 3 // 10]
    assert not after.any()
    said = [e for e in map(json.loads, tr.read_text().splitlines()) if e.get("type") == "entry"]
    cut = next(e for e in said if e["role"] == "assistant")
    assert cut["interrupted"] is True and cut["played_ms"] == truncate["audio_end_ms"]
    assert LONG_REPLY.startswith(cut["text"]) and len(cut["text"]) < len(LONG_REPLY)


def test_devices_by_name_and_typed_text(audio_stack, make_sim, tmp_path):
    sim = make_sim()
    monitor = audio_stack.monitor()
    tr = tmp_path / "talk.md"
    talk = TalkProcess(tmp_path, sim, "--input-device", "PULSE", "--output-device", "pulse", "--transcript", str(tr),
                       env=audio_stack.env)
    try:
        talk.wait_streaming()
        talk.line("hello from the keyboard")
        talk.wait(lambda: tr.exists() and "### Assistant" in tr.read_text(), 40, "the spoken answer")
        assert monitor.sound_ms() >= 1000
        code, out, err = talk.quit()
    finally:
        talk.proc.kill()
        monitor.stop()
    assert code == 0, err
    assert "assistant: You said: hello from the keyboard" in out
    assert "full-duplex with echo cancellation" in err  # the default echo defence
    assert "You said: hello from the keyboard" in tr.read_text()


@pytest.mark.parametrize("spec, message", [("u", "matches several input devices"),
                                           ("no-such-mic", "matches no input device")])
def test_unclear_device_names_list_the_candidates(audio_stack, tmp_path, spec, message):
    from clihelp import run_cli

    r = run_cli(tmp_path, "talk", "-p", "offline", "--input-device", spec, **audio_stack.env)
    assert r.code == 3, r.err
    assert message in r.err and "candidates:" in r.err and "pulse" in r.err


def test_devices_lists_the_virtual_stack(audio_stack, tmp_path):
    from clihelp import run_cli

    r = run_cli(tmp_path, "devices", **audio_stack.env)
    assert r.code == 0, r.err
    assert "pulse" in r.out and "default" in r.out


def test_chat_hands_the_conversation_to_talk_and_back(audio_stack, tmp_path):
    """`/talk` in chat: the conversation so far goes to the Realtime session, and what is said in
    talk comes back into the chat history."""
    from test_chat import Chat, plain
    from voicecli.sim.config import SimConfig
    from voicecli.sim.server import start_in_thread

    with start_in_thread(SimConfig(realtime_speed=4)) as sim:
        chat = Chat(tmp_path / "home", sim.base_url, **audio_stack.env)
        assert "You said: hello from chat" in chat.ask("hello from chat")
        chat.child.send("/talk\r")
        banner = plain(chat.expect("talk: sim-realtime"))  # talk's own banner: it now reads the keyboard
        assert "Ctrl-C: interrupt (idle: return to chat) · Ctrl-D: return to chat" in banner  # chat's, before it
        chat.child.send("typed in talk\r")
        chat.expect("You said: typed in talk")  # the transcript arrives ahead of the audio…
        chat.expect(r"●(\x1b\[[0-9;]*m)* listening")  # …so wait until it has been heard (not "◌ muted")
        chat.child.sendcontrol("d")
        chat.expect("back in chat")
        chat.prompt()
        history = chat.say("/history")
        assert "you: typed in talk" in history and "assistant: You said: typed in talk" in history
        chat.child.send("/talk\r")
        chat.expect(r"●(\x1b\[[0-9;]*m)* listening")
        chat.child.sendintr()  # idle: one Ctrl-C returns to chat, as the banner says; chat stays
        chat.expect("back in chat")
        chat.prompt()
        items = [e["event"]["item"] for e in sim.log if e.get("endpoint") == "/v1/realtime"
                 and e.get("event", {}).get("type") == "conversation.item.create"]
        texts = [(i.get("role"), i["content"][0].get("text")) for i in items if i.get("type") == "message"]
        assert texts[:2] == [("user", "hello from chat"), ("assistant", "You said: hello from chat")]
        assert chat.exit() == 0
        assert plain(chat.output).count("Traceback") == 0


# -- a device that goes away mid-session (USB headset unplugged): each test on its own stack ------

MODULES = {"speaker": ("module-null-sink", "sink_name={name}_speaker rate=24000 channels=1 norewinds=1"),
           "feed": ("module-null-sink", "sink_name={name}_mic_feed rate=24000 channels=1 norewinds=1"),
           "mic": ("module-remap-source", "master={name}_mic_feed.monitor source_name={name}_mic")}


@pytest.fixture
def own_stack(tmp_path):
    """A private daemon for a test that unloads its devices (the shared one must stay whole)."""
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    stack = VirtualAudio.start(tmp_path / "pulse")
    yield stack
    stack.stop()


def pactl(stack: VirtualAudio, *args: str) -> None:
    subprocess.run(["pactl", *args], env=stack.full_env(), check=True, timeout=30, capture_output=True)


def unplug_everything(stack: VirtualAudio) -> None:
    pactl(stack, "unload-module", "module-remap-source")  # the microphone
    pactl(stack, "unload-module", "module-null-sink")  # the speaker (and the sink behind the microphone)


class StderrLines:
    """talk's stderr read as it comes, so a test can wait for a note."""

    def __init__(self, proc: subprocess.Popen):
        import threading

        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc) -> None:
        try:
            for line in proc.stderr:
                self.lines.append(line)
        except ValueError:  # TalkProcess.quit() closed the pipe, reading the rest itself
            pass

    def has(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    @property
    def text(self) -> str:
        self._thread.join(10)
        return "".join(self.lines)


def test_unplugged_devices_with_none_left_end_talk_with_exit_3(own_stack, make_sim, tmp_path):
    sim = make_sim()
    tr = tmp_path / "talk.jsonl"
    talk = TalkProcess(tmp_path, sim, "--full-duplex", "--transcript", str(tr), env=own_stack.env)
    err = StderrLines(talk.proc)
    try:
        talk.wait_streaming()
        talk.line("hello before the unplug")
        talk.wait(lambda: tr.exists() and '"assistant"' in tr.read_text(), 40, "the answer")
        unplug_everything(own_stack)
        code = talk.proc.wait(30)  # ends by itself: no hang
        out = talk.proc.stdout.read()
    finally:
        talk.proc.kill()
    stderr = err.text
    assert code == 3, stderr
    assert "the speaker went away" in stderr and "the microphone went away" in stderr
    assert "no other output device could be opened" in stderr or "no other input device could be opened" in stderr
    assert "Traceback" not in stderr
    said = [e for e in map(json.loads, tr.read_text().splitlines()) if e.get("type") == "entry"]
    assert [(e["role"], e["text"]) for e in said] == [("user", "hello before the unplug"),
                                                      ("assistant", "You said: hello before the unplug")]
    assert out.splitlines() == ["user: hello before the unplug", "assistant: You said: hello before the unplug"]


def test_unplugged_devices_are_replaced_by_the_new_default_ones(own_stack, make_sim, tmp_path):
    sim = make_sim()
    tr = tmp_path / "talk.jsonl"
    talk = TalkProcess(tmp_path, sim, "--full-duplex", "--transcript", str(tr), env=own_stack.env)
    err = StderrLines(talk.proc)
    try:
        talk.wait_streaming()
        unplug_everything(own_stack)
        talk.wait(lambda: err.has("the speaker went away") and err.has("the microphone went away"), 20,
                  "talk to notice")
        for kind in ("speaker", "feed", "mic"):  # another headset is plugged in
            module, args = MODULES[kind]
            pactl(own_stack, "load-module", module, *args.format(name="spare").split())
        pactl(own_stack, "set-default-sink", "spare_speaker")
        pactl(own_stack, "set-default-source", "spare_mic")
        talk.wait(lambda: err.has("speaker: ") and err.has("microphone: "), 20, "the default devices")
        sent = len(talk.events("input_audio_buffer.append"))
        talk.wait(lambda: len(talk.events("input_audio_buffer.append")) >= sent + 10, 20, "the new microphone")
        monitor = Monitor(own_stack.full_env(), "spare_speaker.monitor")
        talk.line("hello after the unplug")
        talk.wait(lambda: tr.exists() and '"assistant"' in tr.read_text(), 40, "the answer")
        assert monitor.sound_ms() >= 500  # heard on the new speaker
        monitor.stop()
        code, out, _ = talk.quit()
    finally:
        talk.proc.kill()
    assert code == 0, err.text
    assert "assistant: You said: hello after the unplug" in out
    assert "Traceback" not in err.text


# ---- echo cancellation: the speaker leaks into the microphone ----------------------------------------


def leaky_stack(stack: VirtualAudio, latency_ms: int = 40) -> None:
    """What a laptop does: the speaker's sound reaches the microphone, `latency_ms` later."""
    pactl(stack, "load-module", "module-loopback", "source=virtual_speaker.monitor", "sink=virtual_mic_feed",
          f"latency_msec={latency_ms}", "source_dont_move=true", "sink_dont_move=true")


def entries(tr: Path, role: str) -> list[dict]:
    """The transcript's entries of `role` so far (none before the file exists)."""
    if not tr.exists():
        return []
    return [e for e in map(json.loads, tr.read_text().splitlines()) if e.get("type") == "entry" and e["role"] == role]


def user_turns(tr: Path) -> list[dict]:
    return entries(tr, "user")


def wait_quiet(talk, monitor, seconds: float = 0.5, timeout: float = 60) -> None:
    """Until the speaker has played nothing for `seconds` (an answer's entry is written before its
    audio has finished playing)."""
    talk.wait(lambda: monitor.samples().size > seconds * 24000 and not monitor.samples()[-int(seconds * 24000):].any(),
              timeout, "the speaker to go quiet")


# With the CPUs busy the echo still leaks now and then (issue 27): the aec case runs alone, even with talk
# at real-time priority (among the other tests it passed 7 of 7 under a CPU load, then failed in 2 of 3
# whole-suite runs: the answer cut by its echo). The control (no echo cancellation: the echo must cut
# the answer) does not depend on how busy the machine is.
@pytest.mark.parametrize("aec", [pytest.param(True, marks=pytest.mark.alone(even_realtime=True)), False],
                         ids=["aec", "no-aec"])
def test_the_assistant_does_not_hear_itself_on_leaking_speakers(own_stack, make_sim, tmp_path, aec):
    """One spoken question with the speaker leaking into the mic: with echo cancellation exactly one
    user turn and the answer plays to the end; without it (the control) the assistant's own voice
    comes back as user turns and cuts the answer. Then a real user still interrupts."""
    pytest.importorskip("livekit.rtc")
    leaky_stack(own_stack)
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"turns": [{"reply": LONG_REPLY}, {"reply": LONG_REPLY}]}))
    sim = make_sim(script=script)
    question = speech_wav(tmp_path / "q.wav", "hello there what is the weather like today")
    tr = tmp_path / "talk.jsonl"
    talk = TalkProcess(tmp_path, sim, "--full-duplex", "--aec" if aec else "--no-aec", "--transcript", str(tr),
                       env=own_stack.env)
    try:
        talk.wait_streaming()
        own_stack.play(question)
        talk.wait(lambda: tr.exists() and '"assistant"' in tr.read_text(), 60, "the first answer")
        first_answer = next(e for e in map(json.loads, tr.read_text().splitlines())
                            if e.get("type") == "entry" and e["role"] == "assistant")
        if aec:
            assert len(user_turns(tr)) == 1, user_turns(tr)
            assert not first_answer.get("interrupted"), first_answer
            assert not talk.events("response.cancel")
            # a user talking over the second answer still interrupts it
            talk.line("tell me the story again")
            talk.wait(lambda: len(talk.events("response.create")) >= 1 or talk.events("conversation.item.create"),
                      20, "the typed question")
            time.sleep(2.0)  # the second answer is playing (and leaking)
            own_stack.play(speech_wav(tmp_path / "stop.wav", "stop that is enough thank you", lead_s=0.0))
            talk.wait(lambda: talk.events("conversation.item.truncate"), 20, "the barge-in")
        code, out, err = talk.quit()
    finally:
        talk.proc.kill()
    assert code == 0, err
    if aec:
        assert "full-duplex with echo cancellation" in err
    else:  # the control: without echo cancellation the answer is cut by its own echo
        assert first_answer.get("interrupted") or len(user_turns(tr)) > 1, (first_answer, user_turns(tr))


# -- the cascade engine, live -------------------------------------------------------------------------

CASCADE = ("--engine", "cascade", "-t", "chat")


def sim_voice_wav(path: Path, sim, text: str, *, lead_s: float = 0.3, tail_s: float = 0.8) -> Path:
    """The simulator's own voice for `text` (so its transcription is exact), padded with silence."""
    from clihelp import sim_speech

    speech.write_wav(path, speech.silence(lead_s) + sim_speech(sim.base_url, text) + speech.silence(tail_s))
    return path


def cascade_said(talk: TalkProcess) -> list[dict]:
    return [e["body"] for e in list(talk.sim.log) if e.get("endpoint") == "/v1/chat/completions" and "body" in e]


@pytest.mark.parametrize("transport", ["chat", "sse"])
def test_cascade_round_trip_through_the_virtual_devices(audio_stack, make_sim, tmp_path, transport):
    """Through the echo canceller and noise suppressor (on by default): the first utterance of the
    session arrives exactly (the virtual microphone gives digital silence before it: the suppressor
    starts from a primed noise floor)."""
    sim = make_sim()
    wav = sim_voice_wav(tmp_path / "q.wav", sim, "What is the weather like in Paris today?")
    # the answer, spoken in two requests and played back to back: the first clause ("You said:") at once,
    # then the sentence
    reply = np.frombuffer(b"".join(speech.synthesize(t) for t in ("You said:", "What is the weather like in Paris "
                                                                               "today?")), dtype="<i2")
    voiced = reply[np.flatnonzero(reply)[0]:]
    tr = tmp_path / "talk.jsonl"
    monitor = audio_stack.monitor()
    talk = TalkProcess(tmp_path, sim, "--engine", "cascade", "-t", transport,
                       "--transcript", str(tr), env=audio_stack.env)
    err = StderrLines(talk.proc)
    try:
        talk.wait(lambda: err.has("local VAD"), 30, "talk to start")
        time.sleep(0.5)
        audio_stack.play(wav)
        talk.wait(lambda: tr.exists() and '"assistant"' in tr.read_text(), 40, "the assistant's answer")
        # its entry is written before it has been spoken (a fixed 3 s wait was short on a busy machine
        # once): wait for its voice on the monitor, then for the speaker to go quiet
        talk.wait(lambda: locate(monitor.samples(), voiced, voiced.size // 20) is not None, 30,
                  "the answer's voice on the monitor")
        wait_quiet(talk, monitor)
        code, out, _ = talk.quit()
    finally:
        talk.proc.kill()
        samples = monitor.stop()
    assert code == 0, err.text
    said = [(e["role"], e["text"]) for e in map(json.loads, tr.read_text().splitlines()) if e.get("type") == "entry"]
    assert said == [("user", "What is the weather like in Paris today?"),
                    ("assistant", "You said: What is the weather like in Paris today?")]
    where = locate(samples, voiced, voiced.size // 20)
    assert where is not None, "the assistant's voice is not on the speaker monitor"
    _, _, found = gapless_match(samples, where[0], voiced[where[1]:])
    assert found >= 0.95 * voiced.size


def test_cascade_barge_in_stops_the_voice_and_keeps_what_was_heard(audio_stack, make_sim, tmp_path):
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"turns": [{"reply": LONG_REPLY}]}))
    sim = make_sim(script=script)
    first = sim_voice_wav(tmp_path / "first.wav", sim, "Please tell me a long story.")
    # a lead-in of silence: the feed sink wakes from suspend on the first samples and may clip them
    second = sim_voice_wav(tmp_path / "second.wav", sim, "Stop, that is enough.")
    tr = tmp_path / "talk.jsonl"
    monitor = audio_stack.monitor()
    talk = TalkProcess(tmp_path, sim, *CASCADE, "--full-duplex", "--no-aec", "--transcript", str(tr), env=audio_stack.env)
    err = StderrLines(talk.proc)
    try:
        talk.wait(lambda: err.has("local VAD"), 30, "talk to start")
        time.sleep(0.5)
        audio_stack.play(first)
        assert monitor.wait_for_sound(30, ms=2500), "the assistant never got going"
        interrupt_at = time.time()
        audio_stack.play(second)
        talk.wait(lambda: tr.exists() and tr.read_text().count('"assistant"') >= 2, 40, "the second answer")
        # its entry is written before its voice has played: wait for the voice on the monitor (an underrun
        # on a busy machine may put a gap into its first frames), then for it to end
        said = [e for e in map(json.loads, tr.read_text().splitlines()) if e.get("type") == "entry"]
        second_answer = next(e["text"] for e in said[2:] if e["role"] == "assistant")
        reply = np.frombuffer(speech.synthesize(second_answer), dtype="<i2")
        voiced = reply[int(np.flatnonzero(reply)[0]):]
        talk.wait(lambda: locate(monitor.samples(), voiced, voiced.size // 20) is not None, 30,
                  "the second answer's voice on the monitor")
        wait_quiet(talk, monitor)
        code, out, _ = talk.quit()
    finally:
        talk.proc.kill()
        samples = monitor.stop()
    assert code == 0, err.text
    said = [e for e in map(json.loads, tr.read_text().splitlines()) if e.get("type") == "entry"]
    uploads = [e["file"]["bytes"] // 48 for e in list(sim.log) if e.get("kind") == "audio"]
    assert [e["text"] for e in said if e["role"] == "user"] == ["Please tell me a long story.", "Stop, that is enough."], (
        uploads, said, err.text)
    cut = next(e for e in said if e["role"] == "assistant")
    assert cut["interrupted"] is True and LONG_REPLY.startswith(cut["text"]) and len(cut["text"]) < len(LONG_REPLY) / 2
    assert len(cut["text"].split()) >= 5  # 2.5 s of it were heard before the user spoke
    # the second request carries what was heard, not the whole story
    assistant = [m["content"] for m in cascade_said(talk)[-1]["messages"] if m["role"] == "assistant"]
    assert assistant == [cut["text"]]
    # the story's voice stopped soon after the user spoke: its last sound before the second answer
    where = locate(samples, voiced, voiced.size // 20)
    assert where is not None, "the second answer is not on the monitor"
    answer_at = where[0] - where[1]
    story_end = int(np.flatnonzero(samples[:answer_at])[-1])
    assert monitor.started + story_end / 24000 - interrupt_at < 1.5
