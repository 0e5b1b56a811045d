"""Resampling for talk: one streaming soxr path for the microphone, the speaker and `--input` WAVs.
It must filter what lies above the new Nyquist frequency (not fold it back as an alias) and keep
its phase across blocks (block by block = all at once, no clicks at the edges)."""

from __future__ import annotations

import asyncio
import wave

import numpy as np
import pytest

from voicecli.audio import devices
from voicecli.audio.mic import Microphone
from voicecli.audio.pcm import RATE, Resampler, resample_all
from voicecli.audio.speaker import DeviceSpeaker, PlaybackBuffer
from voicecli.audio.wav import read_wav_24k

AMP = 10000


def tone(freq: float, rate: int, seconds: float = 1.0) -> np.ndarray:
    return (np.sin(2 * np.pi * freq * np.arange(int(rate * seconds)) / rate) * AMP).astype(np.int16)


def level_db(x: np.ndarray) -> float:
    """The RMS of a signal's steady middle, relative to a full-amplitude (AMP) sine."""
    mid = x[x.size // 10: -x.size // 10].astype(np.float64)
    return 20 * np.log10(np.sqrt(np.mean(mid ** 2)) * np.sqrt(2) / AMP + 1e-12)


def in_blocks(r: Resampler, x: np.ndarray, block: int) -> np.ndarray:
    starts = range(0, x.size, block)
    return np.concatenate([r.process(x[i:i + block], last=i + block >= x.size) for i in starts])


@pytest.mark.parametrize("rate", [44100, 48000])
def test_a_tone_above_the_new_nyquist_is_filtered_out(rate):
    out = in_blocks(Resampler(rate), tone(15000, rate), rate // 100)
    assert level_db(out) < -40  # not aliased to 9 kHz (−3…−5 dB with the old resampler)


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
def test_speech_band_passes_unchanged(rate):
    out = in_blocks(Resampler(rate), tone(1000, rate), rate // 50)
    assert out.size == RATE
    assert abs(level_db(out)) < 0.2


@pytest.mark.parametrize("rate, block", [(48000, 480), (44100, 441), (16000, 320), (44100, 137), (RATE, 480)])
def test_block_by_block_equals_all_at_once(rate, block):
    x = tone(1000, rate)
    whole = resample_all(x, rate)
    streamed = in_blocks(Resampler(rate), x, block)
    assert streamed.size == whole.size
    assert np.max(np.abs(streamed.astype(np.int32) - whole)) <= 1  # no discontinuity at any block edge


def test_upsampling_to_a_device_rate():
    out = in_blocks(Resampler(RATE, 48000), tone(1000, RATE), 240)
    assert out.size == 48000 and abs(level_db(out)) < 0.2


# -- the three users of the resampler, without a device: a stand-in for sounddevice ----------------

class FakeSoundDevice:
    """sounddevice as seen by the mic and the speaker: the device refuses 24 kHz, takes 48 kHz."""

    class PortAudioError(Exception):
        pass

    def __init__(self, rate: int = 48000):
        self.rate = rate
        self.streams = []

    def query_devices(self, device=None, kind=None):
        return {"default_samplerate": float(self.rate), "max_input_channels": 1, "max_output_channels": 1}

    def _stream(self, samplerate, callback, **kw):
        if samplerate != self.rate:
            raise self.PortAudioError("Invalid sample rate")
        stream = type("Stream", (), {"start": lambda s: None, "stop": lambda s: None, "close": lambda s: None,
                                     "latency": 0.01, "callback": staticmethod(callback)})()
        self.streams.append(stream)
        return stream

    def RawOutputStream(self, samplerate, **kw):  # noqa: N802 (sounddevice's name)
        return self._stream(samplerate, **kw)

    def RawInputStream(self, samplerate, **kw):  # noqa: N802
        return self._stream(samplerate, **kw)


@pytest.fixture
def fake_sd(monkeypatch):
    sd = FakeSoundDevice()
    monkeypatch.setattr(devices, "import_sounddevice", lambda: sd)
    return sd


def test_speaker_at_48k_plays_a_filtered_continuous_signal(fake_sd):
    buf = PlaybackBuffer()
    speaker = DeviceSpeaker(buf)
    speaker.start()
    x = (tone(1000, RATE) // 2 + tone(11000, RATE) // 2).astype(np.int16)
    buf.push("a", x.tobytes())
    frames = 480  # 10 ms at 48 kHz
    out = bytearray()
    for _ in range(120):  # 1.2 s: the answer and the resampler's held-back tail
        block = bytearray(frames * 2)
        fake_sd.streams[0].callback(block, frames, None, None)
        out += block
    played = np.frombuffer(bytes(out), dtype="<i2")
    assert buf.played["a"] == x.size and not buf.active
    whole = resample_all(x, RATE, 48000)
    start = int(np.flatnonzero(played)[0])  # zeros pulled before the answer came out
    got = played[start: start + whole.size]
    assert np.max(np.abs(got.astype(np.int32) - whole[np.flatnonzero(whole)[0]:][: got.size])) <= 1


def test_microphone_at_48k_sends_24k_without_aliases(fake_sd):
    x = (tone(1000, 48000) // 2 + tone(15000, 48000) // 2).astype(np.int16)

    async def capture():
        mic = Microphone()
        mic.start()
        callback = fake_sd.streams[0].callback
        for i in range(0, x.size, 960):  # 20 ms blocks from the audio thread
            callback(x[i:i + 960].tobytes(), 960, None, None)
        await asyncio.sleep(0)
        blocks = []
        while not mic.queue.empty():
            blocks.append(mic.queue.get_nowait()[0])
        return mic, b"".join(blocks)

    mic, pcm = asyncio.run(capture())
    assert mic.rate == 48000
    got = np.frombuffer(pcm, dtype="<i2")
    assert RATE - 1200 <= got.size <= RATE  # all of it but the ≤ 40 ms the resampler holds back
    whole = resample_all(x, 48000)
    assert np.max(np.abs(got.astype(np.int32) - whole[: got.size])) <= 1
    assert abs(level_db(got) - level_db(resample_all(tone(1000, 48000), 48000)) + 6.02) < 0.2  # 15 kHz gone


def test_wav_input_at_48k_is_filtered(tmp_path):
    x = (tone(1000, 48000) // 2 + tone(15000, 48000) // 2).astype("<i2")
    path = tmp_path / "in.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(x.tobytes())
    got = np.frombuffer(read_wav_24k(path), dtype="<i2")
    assert got.size == RATE
    assert np.array_equal(got, resample_all(x, 48000))
    assert abs(level_db(got) - level_db(tone(1000, RATE)) + 6.02) < 0.2  # the 1 kHz half only
