"""Echo cancellation (WebRTC's audio processing module via the livekit wheel) on synthetic rooms.

Pseudo-speech: voiced syllables (a gliding pitch with harmonics) and noise bursts, 24 kHz int16.
The echo is the far end delayed 40 ms, attenuated, with a second reflection, plus mic noise.
The quality figures (echo return loss enhancement, CPU) live in bench/talk.py; these tests only
check that the canceller does its job at all and keeps the near-end talker.
"""

from __future__ import annotations

import numpy as np
import pytest

from clihelp import installed
from voicecli.audio.echo import FRAME, EchoCanceller

pytestmark = pytest.mark.skipif(not installed("livekit.rtc"), reason="the livekit package is not installed")

RATE = 24000


def pseudo_speech(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * RATE))
    pos = 0
    while pos < out.size:
        n = int(rng.uniform(0.12, 0.3) * RATE)
        t = np.arange(n) / RATE
        if rng.random() < 0.75:  # voiced
            f0 = rng.uniform(110, 220) * (1 + 0.2 * t / t[-1])
            phase = 2 * np.pi * np.cumsum(f0) / RATE
            syllable = sum(np.sin(k * phase) / k for k in range(1, 12))
        else:  # fricative
            syllable = rng.normal(0, 0.5, n)
        envelope = np.sin(np.pi * np.arange(n) / n) ** 2
        end = min(out.size, pos + n)
        out[pos:end] = (syllable * envelope)[: end - pos] * 6000
        pos = end + int(rng.uniform(0.02, 0.15) * RATE)
    return out


def room(far: np.ndarray, delay_ms: int = 40) -> np.ndarray:
    d = delay_ms * RATE // 1000
    echo = np.zeros(far.size)
    echo[d:] = 0.5 * far[: far.size - d]
    echo[d + 240:] += 0.2 * far[: far.size - d - 240]
    return echo


def run(aec: EchoCanceller, far: np.ndarray, mic: np.ndarray, block: int = 480) -> np.ndarray:
    """Real-time order: each block is played, then the mic block recorded at the same time is processed."""
    out = []
    for i in range(0, mic.size - block + 1, block):
        aec.far_end(far[i: i + block].astype(np.int16))
        out.append(aec.process(np.clip(mic[i: i + block], -32768, 32767).astype(np.int16)))
    return np.concatenate(out).astype(np.float64)


def db(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.square(x)) + 1e-9)


def test_echo_is_removed_after_convergence():
    far = pseudo_speech(6, seed=1)
    mic = room(far) + np.random.default_rng(2).normal(0, 30, far.size)
    out = run(EchoCanceller(delay_ms=40, noise_suppression=False), far, mic)
    settled = slice(2 * RATE, out.size)
    assert db(mic[settled]) - db(out[settled]) > 20  # bench/talk.py measures the real figure


def test_near_end_talker_passes_when_the_far_end_is_silent():
    far = np.concatenate([pseudo_speech(3, seed=1), np.zeros(3 * RATE)])
    near = np.zeros(far.size)
    talk = slice(4 * RATE, 5 * RATE + RATE // 2)
    near[talk] = pseudo_speech(1.5, seed=5)
    mic = room(far) + near + np.random.default_rng(2).normal(0, 30, far.size)
    out = run(EchoCanceller(delay_ms=40), far, mic)
    assert abs(db(out[talk]) - db(near[talk])) < 3


def test_frames_are_whole_and_nothing_is_lost():
    aec = EchoCanceller(echo_cancellation=True, noise_suppression=False, high_pass_filter=False)
    sizes = [7, 233, 480, 1, 239, 1000]  # odd block sizes, as a device may deliver them
    got = sum(aec.process(np.zeros(n, np.int16)).size for n in sizes)
    assert got == sum(sizes) // FRAME * FRAME
    aec.far_end(np.zeros(13, np.int16))  # a partial far-end frame waits for the rest
    aec.far_end(np.zeros(FRAME * 3 - 13, np.int16))
    assert aec.process(np.zeros(FRAME, np.int16)).size == FRAME


def test_a_burst_of_late_microphone_blocks_keeps_its_place_among_the_played_frames(monkeypatch):
    """The event loop fell behind: 100 ms were played and captured, and only now do the microphone
    blocks arrive, all at once. The module must see the two streams interleaved as they happened
    (each capture frame after the far-end frames played before it was captured), not 100 ms of
    far end followed by 100 ms of capture: that would look to AEC3 like the echo path jumped."""
    import voicecli.audio.echo as echo

    aec = EchoCanceller(echo_cancellation=True, noise_suppression=False, high_pass_filter=False)
    calls: list[str] = []

    class Recorder:  # stands in for the module, to see the order of its calls
        def process_reverse_stream(self, frame):
            calls.append("far")

        def process_stream(self, frame):
            calls.append("near")

    aec._apm = Recorder()
    clock = iter([10.00, 10.05])
    monkeypatch.setattr(echo.time, "monotonic", lambda: next(clock))
    aec.far_end(np.zeros(FRAME * 5, np.int16))  # handed to the speaker at 10.00 s: played 10.00–10.05
    aec.far_end(np.zeros(FRAME * 5 + 13, np.int16))  # at 10.05 s: 10.05–10.10 (and 13 samples held back)
    captured = np.zeros(FRAME * 10, np.int16)  # captured 10.00–10.10, processed late
    assert aec.process(captured[:FRAME * 5], captured_at=10.05).size == FRAME * 5
    assert aec.process(captured[FRAME * 5:], captured_at=10.10).size == FRAME * 5
    assert calls == ["far", "near"] * 10
    calls.clear()
    assert aec.process(np.zeros(FRAME, np.int16)).size == FRAME and calls == ["near"]  # no time: all queued first


@pytest.mark.parametrize("text", ["What is the weather like in Paris today?", "Stop, wait a moment please.",
                                  "hello there what is the weather like today"])
def test_the_first_utterance_after_digital_silence_keeps_its_words(text):
    """A microphone that gives digital silence until someone speaks (the virtual devices; noise-gated
    mics) leaves the noise suppressor no floor to learn: unprimed, it reshaped the session's first
    sentence past recognition (1 of these 3 recognised). With the speaker's silent reference flowing,
    as in talk, the simulator still recognises every word."""
    from voicecli.sim import speech
    from voicecli.sim.phrasebook import Phrasebook

    book = Phrasebook()
    book.add(text)
    speech_pcm = np.frombuffer(speech.synthesize(text), dtype="<i2")
    mic = np.concatenate([np.zeros(12000, np.int16), speech_pcm, np.zeros(12000, np.int16)])
    canceller = EchoCanceller(noise_suppression=True)
    out = []
    for i in range(0, mic.size, 480):
        canceller.far_end(np.zeros(480, np.int16))
        out.append(canceller.process(mic[i:i + 480]))
    assert book.recognise(np.concatenate(out).tobytes()) == text
