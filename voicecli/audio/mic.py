"""The microphone: sounddevice input → 20 ms blocks of PCM16 24 kHz mono on an asyncio queue.

The audio callback only copies the block and hands it to the event loop with
`call_soon_threadsafe`; conversion (mono, resampling) and the level meter run on the loop. The
queue is bounded: if the loop falls behind, the oldest block is dropped (and counted) rather
than the audio thread ever waiting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import numpy as np

from voicecli.audio.devices import DeviceStream
from voicecli.audio.pcm import RATE, Resampler, level, to_mono

BLOCK_MS = 20
log = logging.getLogger("voicecli")


class Microphone(DeviceStream):
    what, kind = "microphone", "input"

    def __init__(self, device: int | None = None, max_blocks: int = 50):
        self.device = device
        self.queue: asyncio.Queue[tuple[bytes, float]] = asyncio.Queue(max_blocks)
        self.level = 0.0  # 0..1, the last block's RMS on a dB scale (for the meter)
        self.dropped = 0  # blocks lost because the loop fell behind
        self.rate = RATE
        self.channels = 1
        self._stream = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._resampler: Resampler | None = None
        # echo cancellation (voicecli.audio.echo): 24 kHz in, processed out; the meter shows its output
        # (samples, the monotonic time the block was captured)
        self.processor: Callable[[np.ndarray, float], np.ndarray] | None = None

    def start(self) -> None:
        from voicecli.audio.devices import import_sounddevice

        sd = import_sounddevice()
        self._loop = asyncio.get_running_loop()
        info = sd.query_devices(self.device, "input")
        attempts = [(RATE, 1), (int(info["default_samplerate"]), 1),
                    (int(info["default_samplerate"]), max(1, min(2, int(info["max_input_channels"]))))]
        error: Exception | None = None
        finished = self._watch()
        for rate, channels in attempts:
            try:
                self._stream = sd.RawInputStream(samplerate=rate, channels=channels, dtype="int16",
                                                 blocksize=rate * BLOCK_MS // 1000, latency="low",
                                                 device=self.device, callback=self._callback,
                                                 finished_callback=finished)
            except sd.PortAudioError as exc:  # try the device's own rate / channel count
                error = exc
                continue
            self.rate, self.channels = rate, channels
            self._resampler = Resampler(rate) if rate != RATE else None
            self._stream.start()
            return
        raise error  # type: ignore[misc]

    def _callback(self, indata, frames, time_info, status) -> None:  # audio thread: never waits
        self._last_callback = time.monotonic()
        try:
            self._loop.call_soon_threadsafe(self._deliver, bytes(indata), time.monotonic())
        except RuntimeError:  # the loop is closing
            pass

    def _deliver(self, raw: bytes, captured_at: float) -> None:
        x = np.frombuffer(raw, dtype="<i2")
        if self.channels > 1:
            x = to_mono(x, self.channels)
        if self._resampler is not None:
            x = self._resampler.process(x)
        if self.processor is not None and x.size:
            try:
                x = self.processor(x, captured_at)
            except RuntimeError as exc:  # the canceller failed: send the raw mic rather than nothing
                log.warning("echo cancellation stopped: %s", exc)
                self.processor = None
        if not x.size:
            return  # held back (resampler, 10 ms frames): it comes out with the next ones
        self.level = level(x)
        pcm = x.astype("<i2", copy=False).tobytes()
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait((pcm, captured_at))

    async def blocks(self):
        """Async iterator of (pcm, captured_at monotonic time)."""
        while True:
            yield await self.queue.get()


class NoMicrophone:
    """Stands in for the microphone when there is none (or `talk --no-mic`): no audio at all; the
    user types. `done` is set when typed input has ended (EOF on a pipe), as a `--input` file's."""

    level = 0.0
    dropped = 0

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self._closed = asyncio.Event()

    async def blocks(self):
        """Like Microphone.blocks(): yields nothing, ends when closed."""
        await self._closed.wait()
        return
        yield  # an async generator

    def close(self) -> None:
        self._closed.set()
