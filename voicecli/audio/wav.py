"""WAV in and out for talk: `--input FILE.wav` (any rate/channels) and `--output FILE.wav` (24 kHz mono)."""

from __future__ import annotations

import asyncio
import time
import wave
from pathlib import Path

from voicecli import paths
from voicecli.errors import ConfigError


def read_wav_24k(path: Path) -> bytes:
    """A PCM16 (or 8-bit/32-bit int) WAV of any rate and channel count → PCM16 24 kHz mono."""
    import numpy as np

    from voicecli.audio.pcm import RATE, resample_all, to_mono

    try:
        with wave.open(str(path), "rb") as w:
            width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
            data = w.readframes(w.getnframes())
    except (OSError, EOFError, wave.Error) as exc:
        raise ConfigError(f"cannot read {path}: {exc}", hint="--input needs a PCM WAV file") from None
    if width == 2:
        x = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2")
    elif width == 1:  # unsigned 8-bit
        x = ((np.frombuffer(data, dtype=np.uint8).astype(np.int16) - 128) << 8).astype(np.int16)
    elif width == 4:
        x = (np.frombuffer(data[: len(data) // 4 * 4], dtype="<i4") >> 16).astype(np.int16)
    else:
        raise ConfigError(f"{path}: {8 * width}-bit WAV is not supported", hint="use 16-bit PCM")
    mono = to_mono(x, channels)
    return resample_all(mono, rate, RATE).astype("<i2").tobytes()


def wav_bytes(pcm: bytes, rate: int = 24000) -> bytes:
    """PCM16 mono as a WAV file in memory (what speech-to-text uploads)."""
    import io

    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return out.getvalue()


class WavSource:
    """Stands in for the microphone: the file's audio in 20 ms blocks, paced at real time.

    Then `tail_s` of silence, so server VAD can see the speech end; `done` is set after that.
    """

    def __init__(self, path: Path, block_ms: int = 20, tail_s: float = 1.5):
        self.pcm = read_wav_24k(path)
        self.block = 48 * block_ms
        self.tail = b"\x00" * (48 * int(tail_s * 1000))
        self.done = asyncio.Event()
        self.level = 0.0
        self.dropped = 0

    async def blocks(self):
        """Async iterator of (pcm, captured_at) like Microphone.blocks()."""
        from voicecli.audio.pcm import level

        data = self.pcm + self.tail
        start = time.monotonic()
        for i, offset in enumerate(range(0, len(data), self.block)):
            due = start + i * self.block / 48000
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            chunk = data[offset: offset + self.block]
            self.level = level(chunk)
            yield chunk, time.monotonic()
        self.level = 0.0
        self.done.set()

    def close(self) -> None:
        pass


class WavRecorder:
    """Appends the assistant's played audio to a 24 kHz mono WAV (header fixed on close)."""

    def __init__(self, path: Path):
        try:
            self._f = paths.open_private(path, "wb")  # a recording of the conversation: private
        except OSError as exc:
            raise ConfigError(f"cannot write {path}: {exc}") from None
        self._w = wave.open(self._f, "wb")
        self._w.setnchannels(1)
        self._w.setsampwidth(2)
        self._w.setframerate(24000)
        self.bytes = 0

    def write(self, pcm: bytes) -> None:
        self._w.writeframesraw(pcm)
        self.bytes += len(pcm)

    def close(self) -> None:
        self._w.close()  # rewrites the header with the final length
        self._f.close()  # wave leaves a file object it was given open
