"""The echo path detector (voicecli/audio/echopath.py) and the canceller's bypass, on real speech.

The far end is the simulator's espeak-ng voice; the user is espeak-ng with another voice and pitch
(the same voice saying the same word is the same waveform, which no human pair of voices is). An
echo path is the far end delayed, attenuated and filtered (a short decaying reverberation and a
speaker's lost treble), mixed into the mic with its noise; headphones are an independent mic.
Times are in audio (frames), never wall clock: bench/echopath.py has the timings.
"""

from __future__ import annotations

import io
import logging
import shutil
import subprocess
import wave

import numpy as np
import pytest

from voicecli.audio.echo import HOLD_FRAMES
from voicecli.audio.echopath import FRAME, EchoPathDetector

RATE = 24000
ANSWER = ["Once upon a time there was a small village at the edge of a great forest.",
          "Please tell me more about the history of the Roman empire and its roads.",
          "The weather is sunny with a light breeze from the west this afternoon."]
USER = ["Can you tell me what time the train to Berlin leaves tomorrow morning?",
        "I think the answer is forty two but I am not sure.", "Wait, go back to the part about the castle.",
        "stop that is enough thank you"]

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
pytestmark = needs_espeak


def assistant(*texts: str) -> np.ndarray:
    from voicecli.sim import speech

    return np.concatenate([np.frombuffer(speech.synthesize(t), dtype="<i2") for t in texts]).astype(np.float64)


def user_voice(text: str) -> np.ndarray:
    """Another voice than the assistant's (espeak-ng en+f3, higher pitch), resampled to 24 kHz."""
    raw = subprocess.run(["espeak-ng", "-v", "en+f3", "-p", "70", "--stdout", text], capture_output=True,
                         check=True, timeout=30).stdout
    with wave.open(io.BytesIO(raw)) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
        rate = w.getframerate()
    n = int(x.size * RATE / rate)
    y = np.interp(np.arange(n) * rate / RATE, np.arange(x.size), x)
    return y[np.flatnonzero(np.abs(y) > 100)[0]:]  # from its first sound


def echo_of(far: np.ndarray, delay_ms: float, gain: float, seed: int = 0) -> np.ndarray:
    """A room: the direct path `delay_ms` late, a 100 ms reverberant tail 10 dB under it, and a
    small speaker's lost treble."""
    d = int(delay_ms * RATE / 1000)
    h = np.zeros(d + 2400)
    h[d] = 1.0
    h[d:] += np.random.default_rng(seed).normal(0, 1, 2400) * 0.03 * np.exp(-np.arange(2400) / 600)
    y = np.convolve(far, h)[: far.size]
    return gain * np.convolve(y, np.ones(4) / 4, "same")


def noise(n: int, level: float = 10.0, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, level, n)


def feed(det: EchoPathDetector, far: np.ndarray, mic: np.ndarray) -> list[str]:
    """Frame by frame as the canceller feeds it (the far end played until the capture first);
    returns the state after each frame."""
    states = []
    for i in range(0, min(far.size, mic.size) - FRAME + 1, FRAME):
        det.far(np.clip(far[i: i + FRAME], -32768, 32767).astype(np.int16))
        states.append(det.near(np.clip(mic[i: i + FRAME], -32768, 32767).astype(np.int16)))
    return states


def first(states: list[str], state: str, start: int = 0) -> int | None:
    return next((i for i in range(start, len(states)) if states[i] == state), None)


@pytest.fixture(scope="module")
def far() -> np.ndarray:
    return assistant(*ANSWER)


@pytest.fixture(scope="module")
def users() -> np.ndarray:
    return np.concatenate([user_voice(t) for t in USER * 2])


# -- no echo path -------------------------------------------------------------------------------------

def test_headphones_a_quiet_mic_under_speech_is_no_echo_path(far):
    states = feed(EchoPathDetector(), far, noise(far.size))
    found_none = first(states, "none")
    assert "found" not in states
    assert found_none is not None and found_none <= 150  # 1 s of speech (+ the first frames' silence)


@pytest.mark.slow  # 1-3 s of CPU: minutes of audio through the canceller
def test_a_voice_over_the_answer_is_never_taken_for_an_echo(far, users):
    """Double-talk all through, at several offsets: an independent voice never makes an echo path
    (and never a bypass either: a voice could hide a weak echo)."""
    for shift in range(0, 5 * RATE, RATE):
        mic = np.roll(users, shift)[: far.size] + noise(far.size, seed=shift)
        states = feed(EchoPathDetector(), far, mic)
        assert "found" not in states, shift


def test_double_talk_at_the_start_with_headphones_ends_in_bypass(far, users):
    talk = users[: 3 * RATE]
    mic = noise(far.size)
    mic[: talk.size] += talk
    states = feed(EchoPathDetector(), far, mic)
    assert "found" not in states
    assert states[-1] == "none"


def test_user_speech_while_the_far_end_is_silent_is_not_judged(users):
    """The assistant silent (no far-end speech): the mic proves nothing either way."""
    speech_only = users[: 4 * RATE]
    states = feed(EchoPathDetector(), np.zeros(speech_only.size), speech_only + noise(speech_only.size))
    assert set(states) == {"unknown"}


# -- an echo path -------------------------------------------------------------------------------------

@pytest.mark.parametrize("delay_ms, gain_db", [(40, -6), (150, -30), (300, -40)],
                         ids=["loud-40ms", "weak-150ms", "very-weak-300ms"])
def test_an_echo_path_is_found_at_its_delay(far, delay_ms, gain_db):
    """A loud laptop echo and weak ones (quiet speakers, a far mic): -40 dB under a far end near
    -15 dBFS still peaks around -55 dBFS, above the detector's floor; it is found, at its delay,
    before the canceller was ever bypassed."""
    mic = echo_of(far, delay_ms, 10 ** (gain_db / 20)) + noise(far.size)
    det = EchoPathDetector()
    states = feed(det, far, mic)
    found = first(states, "found")
    assert found is not None and "none" not in states[:found]
    assert found <= 100  # within the first second of audio
    assert det.lag_ms == pytest.approx(delay_ms, abs=2)


def test_an_echo_under_the_floor_does_not_hold_the_canceller(far):
    """-70 dB under the far end (≈ -85 dBFS: nothing a VAD hears) is no echo path worth cancelling."""
    mic = echo_of(far, 60, 10 ** (-70 / 20)) + noise(far.size, level=3)
    assert feed(EchoPathDetector(), far, mic)[-1] == "none"


def test_double_talk_at_the_start_with_an_echo_path_is_never_bypassed(far, users):
    """The user talks over the first answer on a laptop: the echo (-20 dB) is found while the user
    speaks or right after, and the canceller is not bypassed meanwhile."""
    talk = users[: 3 * RATE]
    mic = echo_of(far, 80, 0.1) + noise(far.size)
    mic[: talk.size] += talk
    states = feed(EchoPathDetector(), far, mic)
    found = first(states, "found")
    assert found is not None and found <= talk.size // FRAME + 50
    assert "none" not in states


def test_an_echo_path_appearing_mid_answer_is_found(far):
    """Headphones unplugged while the assistant speaks: bypassed until then, then the echo is found
    within half a second of audio."""
    at = 5 * RATE
    mic = noise(far.size)
    mic[at:] += echo_of(far, 60, 0.3)[at:]
    states = feed(EchoPathDetector(), far, mic)
    assert states[at // FRAME - 1] == "none"
    found = first(states, "found", at // FRAME)
    assert found is not None and found - at // FRAME <= 50
    assert "found" not in states[: at // FRAME]


def test_a_device_change_starts_over(far):
    det = EchoPathDetector()
    feed(det, far[: 3 * RATE], noise(3 * RATE))
    assert det.state == "none"
    det.reset()
    assert det.state == "unknown"


# -- the canceller with the detector --------------------------------------------------------------------

def run_canceller(far: np.ndarray, mic: np.ndarray, **kw) -> tuple[np.ndarray, object]:
    from voicecli.audio.echo import EchoCanceller

    aec = EchoCanceller(delay_ms=40, **kw)
    out = []
    for i in range(0, far.size - FRAME + 1, FRAME):  # one frame a block: played, then captured
        aec.far_end(np.clip(far[i: i + FRAME], -32768, 32767).astype(np.int16))
        out.append(aec.process(np.clip(mic[i: i + FRAME], -32768, 32767).astype(np.int16)))
    return np.concatenate(out).astype(np.float64), aec


def db(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.square(x)) + 1e-9)


def test_headphones_the_user_talking_over_the_answer_is_not_dampened(far):
    """The offline finding behind the detector: AEC3 alone takes tens of dB off the first 200 ms of a
    user talking over the answer when there is no echo path; bypassed, they arrive whole."""
    pytest.importorskip("livekit.rtc")
    stop = user_voice("stop that is enough thank you")
    at = 3 * RATE
    near = np.zeros(far.size)
    near[at: at + stop.size] = stop[: far.size - at]
    mic = near + noise(far.size, level=5)
    onset = slice(at, at + RATE // 5)
    out, aec = run_canceller(far, mic)
    assert aec.echo_path == "none" and aec.bypassed
    assert abs(db(out[onset]) - db(near[onset])) < 2
    before, _ = run_canceller(far, mic, detect_echo_path=False)  # the control: the canceller in force
    assert db(before[onset]) - db(near[onset]) < -10


def test_with_an_echo_path_the_echo_stays_cancelled(far):
    pytest.importorskip("livekit.rtc")
    mic = echo_of(far, 40, 0.5) + noise(far.size, level=30)
    out, aec = run_canceller(far, mic)
    assert aec.echo_path == "found" and not aec.bypassed
    settled = slice(2 * RATE, out.size)
    assert db(mic[settled]) - db(out[settled]) > 20


def loud_runs(x: np.ndarray, level_dbfs: float = -40.0, frames: int = 3) -> int:
    """How many times `frames` 10 ms frames running are over `level_dbfs` (the simulator's VAD
    starts a turn on 3 of them over -40 dBFS)."""
    f = x[: x.size // FRAME * FRAME].reshape(-1, FRAME)
    loud = np.sqrt(np.mean(f ** 2, axis=1)) > 32768 * 10 ** (level_dbfs / 20)
    return int(np.count_nonzero(np.convolve(loud, np.ones(frames, dtype=int), "valid") == frames))


def sound_onset(x: np.ndarray, start: int) -> int:
    """The first 10 ms frame from `start` with speech energy (over -50 dBFS), as a sample index."""
    f = x[start: start + RATE].reshape(-1, FRAME)
    return start + FRAME * int(np.flatnonzero(np.sqrt(np.mean(f ** 2, axis=1)) > 32768 * 10 ** (-50 / 20))[0])


def _played_within(played: np.ndarray, seconds: float) -> np.ndarray:
    """Per sample: whether the far end played a sound (a 10 ms frame over -50 dBFS) within `seconds` before."""
    f = played[: played.size // FRAME * FRAME].reshape(-1, FRAME)
    sounding = np.sqrt(np.mean(f ** 2, axis=1)) > 32768 * 10 ** (-50 / 20)
    reach = np.convolve(sounding, np.ones(int(seconds * 100), dtype=int))[: sounding.size] > 0
    return np.repeat(reach, FRAME)


@pytest.mark.slow  # 1-3 s of CPU: minutes of audio through the canceller
def test_unplugged_between_answers_the_echo_never_reaches_the_server(far):
    """Bypassed through a first answer with headphones; a pause; the next answer leaks from the
    laptop's speakers. AEC3, which saw no echo for seconds, lets a new one through at first; the
    answer's first loud mic frames are held until the detector knows it is the echo, then sent as
    silence, and the mic stays silent while the assistant speaks for a second more. After that, while
    an echo can be in the mic, the mic sent is exactly what the canceller alone makes of it (in the
    answer's pauses, past the echo's reach, it is the plain processing's: nothing to cancel)."""
    pytest.importorskip("livekit.rtc")
    gap = np.zeros(RATE)
    played = np.concatenate([far[: 4 * RATE], gap, assistant(ANSWER[1])])
    start = 4 * RATE + gap.size
    mic = noise(played.size, level=5)
    mic[start:] += echo_of(played, 40, 0.5)[start:]
    out, aec = run_canceller(played, mic)
    alone, _ = run_canceller(played, mic, detect_echo_path=False)
    assert aec.echo_path == "found"
    assert out.size == alone.size  # held frames come out (as silence), none is lost
    echo = sound_onset(mic, start)
    assert not out[echo: echo + RATE // 2].any()  # the echo's first half second: silence
    assert loud_runs(out[start:]) == 0
    later = slice(echo + 3 * RATE, out.size)
    # within the echo's reach (40 + 100 ms as found), the frame a switch crossfades on left out
    echoing = _played_within(played, 0.12)
    echoing[FRAME:] &= echoing[:-FRAME]
    assert echoing[later].mean() > 0.5
    assert np.array_equal(out[later][echoing[later]], alone[later][echoing[later]])
    # the control: unplugged mid-answer, with no new answer to hold, the echo gets through a while
    mic_mid = noise(far.size, level=5)
    mic_mid[4 * RATE:] += echo_of(far, 40, 0.5)[4 * RATE:]
    out_mid, _ = run_canceller(far, mic_mid)
    assert loud_runs(out_mid[4 * RATE:]) > 0


def test_the_user_talking_at_the_start_of_an_answer_is_held_not_lost(far):
    """With headphones, the user speaks as the next answer starts: the held frames (a possible echo)
    go out once the detector knows the voice is not the answer, whole and in order."""
    pytest.importorskip("livekit.rtc")
    gap = np.zeros(RATE)
    played = np.concatenate([far[: 4 * RATE], gap, assistant(ANSWER[1])])
    sound = sound_onset(played, 4 * RATE + gap.size)
    stop = user_voice("stop that is enough thank you")
    near = np.zeros(played.size)
    near[sound: sound + stop.size] = stop
    out, aec = run_canceller(played, near + noise(played.size, level=5))
    assert aec.echo_path == "none"
    assert out.size == played.size // FRAME * FRAME
    # all its energy comes out, at most HOLD_FRAMES late
    said = out[sound: sound + stop.size + HOLD_FRAMES * FRAME]
    assert abs(10 * np.log10(np.sum(said ** 2) / np.sum(stop ** 2))) < 2


def test_debug_says_what_the_detector_decided(far, caplog):
    pytest.importorskip("livekit.rtc")
    at = 4 * RATE
    mic = noise(far.size)
    mic[at:] += echo_of(far, 60, 0.3)[at:]
    with caplog.at_level(logging.DEBUG, logger="voicecli"):
        run_canceller(far, mic)
    told = [r.getMessage() for r in caplog.records if "echo path" in r.getMessage()]
    assert told[0] == "echo path: none detected, canceller bypassed"
    assert told[1] == "echo path found (60 ms): canceller in force"
    assert len(told) == 2
