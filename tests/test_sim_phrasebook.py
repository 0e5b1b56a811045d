"""The simulator's phrasebook: its transcription of its own speech is exact, through what a client and
an audio stack do to that speech, and it never hands out the words of a different sentence."""

from __future__ import annotations

import numpy as np
import pytest

from voicecli.sim import speech
from voicecli.sim.phrasebook import Phrasebook

pytestmark = pytest.mark.skipif(not speech.espeak_available(), reason="espeak-ng not installed (the tone voice "
                                "cannot tell same-shaped sentences apart)")  # fmt: skip

# pairs of sentences of the same length that differ in one word, and short words
PHRASES = ["Turn on the kitchen lights.", "Turn off the kitchen lights.", "What is the weather like today?",
           "What is the weather like tomorrow?", "Hello there, friend.", "Hello there, Fred.",
           "Set a timer for ten minutes.", "Set a timer for two minutes.", "Please call my mother.",
           "Please call my brother.", "I would like a coffee.", "I would like a cookie.", "The cat sat on the mat.",
           "The bat sat on the hat.", "yes", "no", "Stop.", "Go."]  # fmt: skip
RATE = speech.RATE


def pad(x: np.ndarray, before: float, after: float) -> np.ndarray:
    return np.concatenate([np.zeros(int(before * RATE)), x, np.zeros(int(after * RATE))])


def client_cut(x: np.ndarray) -> np.ndarray:
    """What a client VAD uploads: ~300 ms before the first voiced sample, ~500 ms after the last."""
    loud = np.flatnonzero(np.abs(x) > 0.01)
    return x[max(0, loud[0] - int(0.3 * RATE)) : loud[-1] + int(0.5 * RATE)]


def echo_canceller(x: np.ndarray) -> np.ndarray:
    from voicecli.audio.echo import EchoCanceller, EchoUnavailable

    try:
        aec = EchoCanceller()  # AEC3 (no far end: it passes through), noise suppressor, high-pass filter
    except EchoUnavailable as exc:
        pytest.skip(str(exc))
    mic = np.frombuffer(speech.to_int16(x), "<i2")
    return np.concatenate([aec.process(mic[i : i + 480]) for i in range(0, mic.size, 480)]).astype(float) / 32768


def other_voice(n: int) -> np.ndarray:
    """Another sentence (an echo of the assistant, say), as long as needed."""
    x = speech.samples(speech.synthesize("Once upon a time there was a tool that wanted to talk to everyone."))
    return np.tile(x, n // x.size + 1)[:n]


def through_16k(x: np.ndarray) -> np.ndarray:
    """24 kHz → a 16 kHz WAV (as a client resampling for an STT server) → read back at 24 kHz."""
    wav = speech.wav_bytes(speech.to_int16(speech.resample(x, RATE, 16000)), rate=16000)
    return speech.samples(speech.read_wav(wav))


DEGRADE = {
    "exact": lambda x, rng: x,
    "silence added": lambda x, rng: pad(x, 1.37, 2.1),
    "client VAD cut": lambda x, rng: client_cut(pad(x, 1.0, 1.0)),
    "quiet (-26 dB)": lambda x, rng: pad(x * 0.05, 0.5, 0.5),
    "loud, clipped (+6 dB)": lambda x, rng: np.clip(x * 2, -1, 1),
    "24k-16k-24k": lambda x, rng: through_16k(pad(x, 0.3, 0.3)),
    "noise (-50 dBFS)": lambda x, rng: pad(x, 0.4, 0.6) + rng.normal(0, 0.003, pad(x, 0.4, 0.6).size),
    "all of it": lambda x, rng: client_cut(through_16k(pad(0.3 * x, 0.7, 1.2) + rng.normal(0, 0.002, pad(x, 0.7, 1.2).size))),
    "faint other voice (-30 dB)": lambda x, rng: pad(x, 0.3, 0.5) + 0.03 * other_voice(pad(x, 0.3, 0.5).size),
    "echo canceller": lambda x, rng: echo_canceller(pad(x, 0.3, 0.5) + rng.normal(0, 0.002, pad(x, 0.3, 0.5).size)),
}  # fmt: skip


@pytest.fixture(scope="module")
def book() -> Phrasebook:
    book = Phrasebook()
    for text in PHRASES:
        book.add(text)
    return book


@pytest.mark.parametrize("how", list(DEGRADE))
@pytest.mark.slow
def test_its_own_speech_is_recognised_exactly(book, how):
    rng = np.random.default_rng(7)
    heard = {text: book.recognise(speech.to_int16(DEGRADE[how](speech.samples(speech.synthesize(text)), rng)))
             for text in PHRASES}  # fmt: skip
    assert heard == {text: text for text in PHRASES}


@pytest.mark.parametrize("how", ["exact", "all of it", "echo canceller"])
@pytest.mark.slow
def test_a_sentence_it_did_not_say_is_never_taken_for_a_similar_one(how):
    """Each sentence against a phrasebook holding all the others (its minimal-pair twin included)."""
    rng = np.random.default_rng(3)
    for text in PHRASES:
        book = Phrasebook()
        for other in PHRASES:
            if other != text:
                book.add(other)
        assert book.recognise(speech.to_int16(DEGRADE[how](speech.samples(speech.synthesize(text)), rng))) is None, text


def test_more_speech_than_a_known_sentence_is_not_that_sentence(book):
    longer = speech.synthesize("Hello there, friend.") + speech.silence(0.4) + speech.synthesize("How are you?")
    assert book.recognise(longer) is None
    before = speech.synthesize("Well.") + speech.silence(0.3) + speech.synthesize("Hello there, friend.")
    assert book.recognise(before) is None
    assert book.recognise(speech.synthesize("Hello there, friend.")[: 48 * 600]) is None  # cut short
    assert book.recognise(speech.silence(2)) is None
    assert book.recognise(speech.speech_like(1.5)) is None


def test_texts_that_sound_the_same_are_not_guessed(monkeypatch):
    monkeypatch.setenv("VOICECLI_SIM_SPEECH", "tones")  # one tone per word: only word lengths differ
    speech.synthesize.cache_clear()
    try:
        book = Phrasebook()
        book.add("Open the door now.")
        assert book.recognise(speech.synthesize("Open the door now.")) == "Open the door now."
        book.add("Shut the gate now.")  # same word lengths: the same waveform
        assert book.recognise(speech.synthesize("Open the door now.")) is None
    finally:
        speech.synthesize.cache_clear()


def test_the_book_is_bounded_and_keeps_the_newest():
    book = Phrasebook(limit=3)
    for text in ["one", "Hello there, friend.", "three", "four"]:
        book.add(text)
    book.add("three")  # said again: the newest now
    book.add("five")
    assert len(book) == 3
    assert book.recognise(speech.synthesize("Hello there, friend.")) is None  # forgotten
    assert book.recognise(speech.synthesize("three")) == "three"
