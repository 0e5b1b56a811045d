"""The double-talk detector (voicecli/audio/doubletalk.py), in the canceller and alone, and the
barge-in logic it feeds (voicecli/voice/interrupt.py).

Signals as in test_echo_path: the far end is the simulator's espeak-ng voice, the echo that voice
delayed, filtered and with a reverberant tail; users are espeak-ng in another voice, and the
simulator's own voice saying another sentence (as bench/echo.py (e) speaks it). Times are counted
in audio frames, never on a clock.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from test_echo_path import (ANSWER, FRAME, RATE, USER, assistant, echo_of, needs_espeak, noise, run_canceller,
                            sound_onset, user_voice)

from voicecli.audio.doubletalk import DoubleTalkDetector
from voicecli.voice.interrupt import BARGE_IN, CLEAR, COMMIT, HOLD, RELEASE, Interruption

pytestmark = needs_espeak
DETECTED_MS = 120  # the user's first sound → onset, at the latest (30-50 ms when the echo leaves room)


@pytest.fixture(scope="module")
def far() -> np.ndarray:
    return assistant(*ANSWER)


def sim_voice(text: str) -> np.ndarray:
    from voicecli.sim import speech

    return np.frombuffer(speech.synthesize(text), dtype="<i2").astype(np.float64)


def onsets(far: np.ndarray, mic: np.ndarray, lag_ms: float | None = 40) -> list[int]:
    """The frames at which the detector's onset rose, fed as the canceller feeds it."""
    det, rose, was = DoubleTalkDetector(), [], False
    for k, i in enumerate(range(0, min(far.size, mic.size) - FRAME + 1, FRAME)):
        det.far(np.clip(far[i: i + FRAME], -32768, 32767).astype(np.int16))
        now = det.near(np.clip(mic[i: i + FRAME], -32768, 32767).astype(np.int16), lag_ms)
        if now and not was:
            rose.append(k)
        was = now
    return rose


def over(far: np.ndarray, voice: np.ndarray, at_s: float) -> tuple[np.ndarray, int]:
    """`voice` placed `at_s` into the answer; and the sample where its sound begins."""
    at = int(at_s * RATE)
    near = np.zeros(far.size)
    n = min(voice.size, far.size - at)
    near[at: at + n] = voice[:n]
    return near, sound_onset(near, at)


@pytest.mark.slow
@pytest.mark.parametrize("gain", [0.3, 1.0])
@pytest.mark.parametrize("who", ["another voice", "the assistant's voice"])
@pytest.mark.parametrize("at_s", [1.5, 3.0, 6.0])
def test_the_user_talking_over_a_leaking_answer_is_heard_at_once(far, gain, who, at_s):
    """Within DETECTED_MS of the first sound (AEC3 lets the first 100-300 ms through 35-60 dB down),
    from 1.5 s into the first answer (the echo gain not learnt yet) on; and nothing before it."""
    voice = user_voice(USER[3]) if who == "another voice" else sim_voice("Stop, wait a moment please.")
    near, start = over(far, voice, at_s)
    rose = onsets(far, echo_of(far, 40, gain) + near + noise(far.size))
    assert rose, "never heard"
    assert start <= rose[0] * FRAME <= start + DETECTED_MS * RATE // 1000


@pytest.mark.slow
@pytest.mark.parametrize("gain", [0.1, 0.5, 1.0])
@pytest.mark.parametrize("delay_ms", [40, 120])
def test_an_echo_alone_is_never_double_talk(far, gain, delay_ms):
    """From the answer's first sound (the echo gain not learnt yet) to its end."""
    assert onsets(far, echo_of(far, delay_ms, gain) + noise(far.size), lag_ms=delay_ms) == []


@pytest.mark.slow
@pytest.mark.parametrize("delay", [1071, 1552, 2255, 2323, 2773])  # samples: 44.6 to 115.5 ms
def test_a_plain_echo_between_two_frames_is_never_double_talk(far, delay):
    """A virtual sound card's loopback: the far end itself (no room, no filter), delayed by a part of
    a 10 ms frame, as in the leaking-speaker test (96.8 ms there). Each of these delays made "double
    talk" in one bin, at a sound's onset, before the bound took in the neighbouring bins."""
    mic = np.concatenate([np.zeros(delay), far])[: far.size] + noise(far.size)
    assert onsets(far, mic, lag_ms=delay // FRAME * 10) == []


@pytest.mark.slow
@pytest.mark.parametrize("gain", [0.3, 1.0])
def test_typing_while_the_assistant_talks_is_not_double_talk(far, gain):
    """Key clicks (4 ms bursts at -20 dBFS, their peaks under the clipping the detector skips; 120-300
    ms apart) over the answer's echo: short sounds the echo cannot explain, but no voice. An onset on
    2 of 5 frames took them for one; a faster onset rule must keep this at 0."""
    rng = np.random.default_rng(3)
    clicks, t = np.zeros(far.size), RATE
    while t < far.size - RATE // 10:
        n = RATE * 4 // 1000
        burst = rng.normal(0, 1, n) * np.exp(-np.arange(n) / (n / 4))
        clicks[t: t + n] = burst / np.sqrt(np.mean(burst ** 2)) * 32768 * 10 ** (-20 / 20)
        t += int(RATE * rng.uniform(0.12, 0.3))
    assert onsets(far, echo_of(far, 40, gain) + clicks + noise(far.size)) == []


@pytest.mark.slow
def test_an_echo_getting_louder_or_quieter_stays_echo(far):
    """Volume steps mid-answer: +6 dB, -12 dB, +9 dB."""
    step = np.ones(far.size)
    step[3 * RATE:], step[6 * RATE:], step[8 * RATE:] = 2.0, 0.5, 1.4
    assert onsets(far, echo_of(far, 40, 0.5) * step + noise(far.size)) == []


@pytest.mark.slow
@pytest.mark.parametrize("found_ms", [25, 55, 80, 100])
def test_a_delay_found_off_by_15_to_60_ms_still_holds_the_echo(far, found_ms):
    assert onsets(far, echo_of(far, 40, 0.7) + noise(far.size), lag_ms=found_ms) == []


@pytest.mark.slow
def test_nothing_is_judged_before_the_echo_delay_is_known(far):
    near, _ = over(far, user_voice(USER[3]), 3.0)
    assert onsets(far, echo_of(far, 40, 1.0) + near + noise(far.size), lag_ms=None) == []


@pytest.mark.slow
def test_silence_and_room_noise_are_not_double_talk(far):
    quiet = np.zeros(far.size)
    assert onsets(quiet, noise(far.size, level=300)) == []  # nothing played: a fan at -40 dBFS
    assert onsets(far, noise(far.size, level=5)) == []  # played, nothing heard (headphones)
    assert onsets(quiet, quiet) == []


@pytest.mark.slow
def test_the_detector_costs_little_cpu(far):
    """Under 40 ms of CPU per second of audio (about 10-15 ms measured)."""
    mic = echo_of(far, 40, 0.5) + noise(far.size)
    t0 = time.process_time()
    onsets(far, mic)
    assert (time.process_time() - t0) / (far.size / RATE) < 0.040


# -- in the canceller ----------------------------------------------------------------------------

@pytest.mark.slow
def test_the_canceller_counts_one_onset_for_a_user_talking_over_the_answer(far):
    pytest.importorskip("livekit.rtc")
    near, start = over(far, sim_voice("Stop, wait a moment please."), 4.0)
    _, aec = run_canceller(far, echo_of(far, 40, 0.7) + near + noise(far.size))
    assert aec.echo_path == "found" and aec.near_onsets >= 1
    alone, aec = run_canceller(far, echo_of(far, 40, 0.7) + noise(far.size))
    assert aec.near_onsets == 0


@pytest.mark.slow
def test_an_echo_path_appearing_mid_answer_is_not_double_talk(far):
    """Headphones unplugged mid-answer: the detector learnt no echo (none was there); the echo that
    appears is found by the echo path detector, and the double-talk detector starts over from a loud
    echo assumed."""
    pytest.importorskip("livekit.rtc")
    played = np.concatenate([far, assistant(ANSWER[0])])
    mic = noise(played.size, level=5)
    mic[4 * RATE:] += echo_of(played, 40, 0.7)[4 * RATE:]
    _, aec = run_canceller(played, mic)
    assert aec.echo_path == "found"
    assert aec.near_onsets == 0


def level_db(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.square(x)) + 1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("gain", [0.3, 1.0])
def test_a_user_talking_over_the_answer_is_sent_at_their_own_level(far, gain):
    """AEC3 takes 10-25 dB off a user's first 300 ms while the assistant talks (and holds them down
    for a while after it stopped): the server's VAD then hears "Stop," in pieces. From the detector's
    onset the canceller sends the raw mic in the bins over the echo bound and AEC3's output in the
    others, and once the far end has been silent past the echo's reach, the plain processing. The
    speaker stops 150 ms into the user's voice, as a barge-in does. Nothing is lost or added."""
    pytest.importorskip("livekit.rtc")
    near, start = over(far, user_voice(USER[3]), 3.0)
    played = far.copy()
    played[start + RATE * 15 // 100:] = 0
    echo = echo_of(played, 40, gain)
    mic = echo + near + noise(far.size)
    out, aec = run_canceller(played, mic)
    alone, _ = run_canceller(played, mic, detect_echo_path=False)  # the control: AEC3's frames only
    assert aec.echo_path == "found" and aec.near_onsets >= 1
    assert out.size == alone.size == far.size // FRAME * FRAME
    first = slice(start, start + RATE * 3 // 10)
    assert level_db(alone[first]) - level_db(near[first]) < -10
    assert level_db(out[first]) - level_db(near[first]) > -10
    assert level_db(out[first]) - level_db(alone[first]) > 8
    rest = slice(start + RATE * 3 // 10, start + RATE)  # the echo gone: the voice whole
    assert abs(level_db(out[rest]) - level_db(near[rest])) < 1.5


@pytest.mark.slow
def test_the_users_first_sound_is_sent_too(far):
    """The detector's onset needs 4 of 5 frames with a near-end sound; those before it wait for it
    (at most 40 ms) and go out as the near-end sound: over a loud echo, AEC3 sent the user's first
    150 ms 56 dB down (offline, before the wait)."""
    pytest.importorskip("livekit.rtc")
    near, start = over(far, user_voice(USER[3]), 3.0)
    played = far.copy()
    played[start + RATE * 15 // 100:] = 0
    out, _ = run_canceller(played, echo_of(played, 40, 1.0) + near + noise(far.size))
    first = slice(start, start + RATE * 15 // 100)
    assert level_db(out[first]) - level_db(near[first]) > -12


@pytest.mark.slow
@pytest.mark.parametrize("gain", [0.3, 1.0])
def test_what_is_sent_while_both_talk_holds_little_echo(far, gain):
    """The bins kept raw are those 10 dB over the echo's bound: fitting what is sent during the user's
    sentence (the answer playing on) as near + k * echo, k stays under 0.05 (-26 dB)."""
    pytest.importorskip("livekit.rtc")
    near, start = over(far, user_voice(USER[3]), 3.0)
    echo = echo_of(far, 40, gain)
    out, aec = run_canceller(far, echo + near + noise(far.size))
    assert aec.near_onsets >= 1
    said = slice(start, start + RATE * 3 // 2)
    (_, k), *_ = np.linalg.lstsq(np.stack([near[said], echo[said]], axis=1), out[said], rcond=None)
    assert abs(k) < 0.05


# -- the barge-in logic ------------------------------------------------------------------------

class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_a_double_talk_onset_barges_in_and_the_server_holds_the_turn_before_the_vad_hears_it():
    clock = Clock()
    logic = Interruption(clock)
    assert logic.double_talk(busy=True) == [BARGE_IN]
    assert logic.double_talk(busy=True) == []  # not twice
    clock.t += 0.1
    assert logic.server_started(busy=False) == [HOLD]  # the local VAD has heard nothing yet
    clock.t += 0.3
    assert logic.local("start", busy=False, ms=500) == []
    clock.t += 1.0
    assert logic.local("stop", busy=False, ms=2200) == [COMMIT]


def test_a_double_talk_onset_with_no_words_after_it_is_dropped_as_echo():
    clock = Clock()
    logic = Interruption(clock)
    logic.double_talk(busy=True)
    logic.server_started(busy=False)
    clock.t += 2.0
    assert logic.tick() == [CLEAR, RELEASE]


def test_a_double_talk_onset_while_nobody_is_answered_does_nothing():
    logic = Interruption(Clock())
    assert logic.double_talk(busy=False) == []


def test_a_double_talk_onset_confirms_a_hold_on_the_servers_word_alone():
    """Careful window (early in an answer): the server's start only holds; the detector's onset stops."""
    clock = Clock()
    logic = Interruption(clock)
    assert logic.server_started(busy=True, careful=True) == [HOLD]
    assert logic.double_talk(busy=True) == [BARGE_IN]


class FakeEcho:
    """The canceller as the interrupt glue sees it: a detector and its onset count."""

    def __init__(self):
        self.double_talk = object()
        self.near_onsets = 0


def test_the_realtime_glue_barges_in_on_a_double_talk_onset_before_the_local_vad_hears_anything():
    from test_interrupt import FakeSession, FakeTurns, FakeVad

    from voicecli.voice.interrupt import LocalInterrupts

    async def main():
        clock, echo, session, cuts = Clock(), FakeEcho(), FakeSession(), []

        async def barge_in():
            cuts.append(clock.t)

        li = LocalInterrupts(None, session, barge_in, lambda *a: None, clock=clock, vad=FakeVad(), echo=echo)
        await li.audio(b"\0" * 960, FakeTurns(True))
        assert cuts == []
        echo.near_onsets += 1
        await li.audio(b"\0" * 960, FakeTurns(True))
        assert cuts == [clock.t]
        await li.audio(b"\0" * 960, FakeTurns(True))  # the same onset: once
        assert cuts == [clock.t]
        await li.server_started(busy=False)
        assert session.calls[-1] == ("hold", True)

    asyncio.run(main())


def test_the_servers_start_alone_stops_nothing_while_the_detector_hears_only_echo():
    """After a double talk AEC3 re-converges for seconds and lets bits of the echo through: bench/echo.py
    (e) saw the server's VAD cut an answer on them 3.5 s after an interruption (the canceller's frames
    replayed: loud in both versions, with no near-end sound on the raw mic). While the detector has
    heard nothing over the echo (`echo_only`), the server's start holds the turn and stops nothing
    unless a voice follows; otherwise it stops the answer at once, as before."""
    from test_interrupt import FakeSession, FakeTurns, FakeVad

    from voicecli.voice.interrupt import LocalInterrupts

    async def main(echo_only: bool) -> tuple[list, list]:
        clock, echo, session, cuts = Clock(), FakeEcho(), FakeSession(), []
        echo.echo_only = echo_only

        async def barge_in():
            cuts.append(clock.t)

        li = LocalInterrupts(None, session, barge_in, lambda *a: None, clock=clock, vad=FakeVad(), echo=echo)
        clock.t = 10.0  # outside an answer's first second and the 3 s after a barge-in
        await li.audio(b"\0" * 960, FakeTurns(True))
        await li.server_started(busy=True)
        return cuts, session.calls

    cuts, calls = asyncio.run(main(True))
    assert cuts == [] and ("hold", True) in calls
    cuts, calls = asyncio.run(main(False))
    assert cuts == [10.0]


@pytest.mark.slow
def test_echo_only_is_said_once_the_detector_heard_nothing_over_the_echo_for_half_a_second(far):
    pytest.importorskip("livekit.rtc")
    from voicecli.audio.echo import EchoCanceller

    near, start = over(far, user_voice(USER[3]), 3.0)
    mic = echo_of(far, 40, 0.5) + near + noise(far.size)
    aec, said = EchoCanceller(delay_ms=40), []
    for i in range(0, far.size - FRAME + 1, FRAME):
        aec.far_end(np.clip(far[i: i + FRAME], -32768, 32767).astype(np.int16))
        aec.process(np.clip(mic[i: i + FRAME], -32768, 32767).astype(np.int16))
        said.append(aec.echo_only)
    said = np.array(said)
    begins = start // FRAME
    assert said[begins - 10]  # the answer playing, nobody over it
    assert not said[begins + 15: begins + 60].any()  # the user talking over it, and half a second after
    assert EchoCanceller(delay_ms=40).echo_only is False  # no echo path known yet


def test_the_cascade_glue_stops_the_answer_on_a_double_talk_onset():
    from test_interrupt import FakeTurns

    from voicecli.voice.interrupt import ServerInterrupts

    async def main():
        echo, cuts = FakeEcho(), []

        async def barge_in():
            cuts.append(1)

        si = ServerInterrupts(barge_in, echo)
        echo.near_onsets += 1
        await si.audio(b"\0" * 960, FakeTurns(False))  # nobody answering: nothing to stop
        assert cuts == []
        echo.near_onsets += 1
        await si.audio(b"\0" * 960, FakeTurns(True))
        assert cuts == [1]
        assert ServerInterrupts(barge_in).onsets.new() is False  # without a canceller, no detector

    asyncio.run(main())


def test_early_in_an_answer_a_double_talk_onset_stops_nothing():
    """The careful window (an answer's first second of sound, 3 s after a barge-in): the echo's delay
    may just have shifted (the speaker flushed), so the local VAD decides there as before."""
    from test_interrupt import FakeSession, FakeTurns, FakeVad

    from voicecli.voice.interrupt import LocalInterrupts, ServerInterrupts

    async def main():
        clock, echo, cuts = Clock(), FakeEcho(), []

        async def barge_in():
            cuts.append(clock.t)

        li = LocalInterrupts(None, FakeSession(), barge_in, lambda *a: None, clock=clock, vad=FakeVad(), echo=echo)
        si = ServerInterrupts(barge_in, echo, clock=clock)
        echo.near_onsets += 1
        await li.audio(b"\0" * 960, FakeTurns(True, playing_since=clock.t - 0.5))
        await si.audio(b"\0" * 960, FakeTurns(True, playing_since=clock.t - 0.5))
        assert cuts == []
        echo.near_onsets += 1
        await si.audio(b"\0" * 960, FakeTurns(True, playing_since=clock.t - 1.5))
        assert cuts == [clock.t]
        clock.t += 1.0
        echo.near_onsets += 1
        await si.audio(b"\0" * 960, FakeTurns(True, playing_since=clock.t - 1.5))  # 1 s after its barge-in
        assert cuts == [clock.t - 1.0]

    asyncio.run(main())


@pytest.mark.slow
def test_a_clipped_echo_is_not_double_talk():
    """An echo 6 dB louder than the far end, clipped at the mic: its distortion is not a voice."""
    answer = sim_voice("The weather is sunny with a light breeze from the west this afternoon.")
    played = np.concatenate([answer, np.zeros(RATE)] * 3)
    assert onsets(played, echo_of(played, 40, 2.0) + noise(played.size)) == []
