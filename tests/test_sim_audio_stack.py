"""The simulator's speech through the PulseAudio test stack and back into its transcription endpoint:
`paplay` into the virtual microphone's null sink, recorded from the microphone (`parec`), with and
without WebRTC's echo canceller / noise suppressor on the way, then uploaded as a WAV. The words come
back exactly, and two sentences of the same length are told apart."""

from __future__ import annotations

import shutil
import time

import httpx
import numpy as np
import pytest

from audio.stack import Monitor, VirtualAudio, missing_reason
from clihelp import sim_speech
from voicecli.sim import speech

pytestmark = [pytest.mark.audio, pytest.mark.slow]

SENTENCES = ["Please turn the music down a little.", "Please turn the heating up a notch."]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    reason = missing_reason() or (None if shutil.which("espeak-ng") else "espeak-ng is not installed")
    if reason:
        pytest.skip(reason)
    stack = VirtualAudio.start(tmp_path_factory.mktemp("pulse-sim"))
    yield stack
    stack.stop()


def record_through_mic(stack: VirtualAudio, wav_path) -> np.ndarray:
    """Play a WAV into the virtual microphone and return what the microphone gave (int16, 24 kHz)."""
    mic = Monitor(stack.full_env(), source="virtual_mic")
    deadline = time.time() + 10
    while mic.samples().size < 2400 and time.time() < deadline:  # recording before the speech starts
        time.sleep(0.02)
    stack.play(wav_path)
    time.sleep(0.6)  # the tail
    return mic.stop().copy()


def echo_cancelled(x: np.ndarray) -> np.ndarray:
    from voicecli.audio.echo import EchoCanceller, EchoUnavailable

    try:
        aec = EchoCanceller()
    except EchoUnavailable as exc:
        pytest.skip(str(exc))
    return np.concatenate([aec.process(x[i : i + 480]) for i in range(0, x.size, 480)])


@pytest.mark.parametrize("aec", [False, True], ids=["raw mic", "echo canceller"])
def test_its_speech_through_the_audio_stack_transcribes_exactly(stack, make_sim, tmp_path, aec):
    sim = make_sim()
    for i, text in enumerate(SENTENCES):
        (tmp_path / f"{i}.wav").write_bytes(sim_speech(sim.base_url, text, wav=True))
    for i, text in enumerate(SENTENCES):
        heard = record_through_mic(stack, tmp_path / f"{i}.wav")
        assert speech.rms(heard.tobytes()) > 0.01  # the speech did go through
        if aec:
            heard = echo_cancelled(heard)
        upload = speech.wav_bytes(heard.astype("<i2").tobytes())
        reply = httpx.post(f"{sim.base_url}/audio/transcriptions", files={"file": ("mic.wav", upload, "audio/wav")},
                           data={"model": "gpt-4o-transcribe"}, timeout=30)  # fmt: skip
        assert reply.json()["text"] == text
