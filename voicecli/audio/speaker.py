"""Playback: a jitter buffer of received PCM that knows how much of each item was actually played.

`PlaybackBuffer` is shared by the audio thread (`pull`) and the asyncio side (`push`, `flush`,
`played_ms`). It counts the samples handed to the device per item, so barge-in can say "item X
was played up to N ms" (LiveKit's `playback_finished(position, interrupted)` idea) and truncate
the server's copy to exactly that. Samples handed to the device are heard: a flush drops only
what the device has not taken yet, after a short fade so the cut does not click.

Two players drain it: `DeviceSpeaker` (a sounddevice output stream) and `ClockSpeaker` (no
device: an asyncio task that "plays" at real time, for `--output` without a speaker).
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Callable

import numpy as np

from voicecli.audio.devices import DeviceStream
from voicecli.audio.pcm import RATE, Resampler

BLOCK = RATE // 50  # 20 ms
FADE = RATE // 200  # 5 ms fade-out on flush


class PlaybackBuffer:
    def __init__(self, prebuffer_ms: int = 0, record: bool = False):
        self._lock = threading.Lock()  # held only for deque/dict updates, never across I/O
        self._queue: collections.deque[list] = collections.deque()  # [item_id, int16 array, offset]
        self._queued = 0  # samples waiting
        self._odd = b""  # a delta may end mid-sample: carry the odd byte to the next delta
        self._odd_item: str | None = None
        self._prebuffer = prebuffer_ms * RATE // 1000
        self._waiting = True  # gather `prebuffer` samples before starting (again) after an underrun
        self._ended: set[str] = set()  # items whose last sample is queued: no prebuffer wait for them
        self.played: dict[str, int] = {}  # item id → samples handed to the device
        self.first_played: dict[str, float] = {}  # item id → monotonic time of its first sample
        self.current_item: str | None = None  # the item whose samples were handed last
        self.last_sound = 0.0  # monotonic time real audio was last handed to the device
        # what was played, for --output; the audio thread appends, the asyncio side drains
        self.tap: collections.deque[bytes] | None = collections.deque() if record else None
        # every block handed to the device, silence included: the echo canceller's far-end reference
        self.reference: Callable[[np.ndarray], None] | None = None

    # -- asyncio side ---------------------------------------------------------------------------

    def push(self, item_id: str, pcm: bytes) -> None:
        if self._odd and self._odd_item == item_id:
            pcm = self._odd + pcm
        self._odd = b""
        if len(pcm) % 2:
            pcm, self._odd, self._odd_item = pcm[:-1], pcm[-1:], item_id
        if not pcm:
            return
        samples = np.frombuffer(pcm, dtype="<i2")
        with self._lock:
            self._queue.append([item_id, samples, 0])
            self._queued += samples.size

    def end(self, item_id: str) -> None:
        """No more audio of this item is coming: its queued tail plays even if shorter than the prebuffer."""
        with self._lock:
            self._ended.add(item_id)

    def flush(self) -> str | None:
        """Stop at once: keep only a 5 ms faded tail of what is queued; returns the item cut."""
        with self._lock:
            cut = self._queue[0][0] if self._queue else None
            tail: list[np.ndarray] = []
            need = FADE
            while self._queue and need > 0:
                item_id, samples, offset = self._queue.popleft()
                part = samples[offset: offset + need]
                if item_id == cut:
                    tail.append(part)
                    need -= part.size
            self._queue.clear()
            self._queued = 0
            if tail:
                x = np.concatenate(tail).astype(np.float32)
                x *= np.linspace(1.0, 0.0, x.size, dtype=np.float32)
                faded = x.astype(np.int16)
                self._queue.append([cut, faded, 0])
                self._queued = faded.size
            self._odd = b""
            self._ended.clear()
            self._waiting = False  # the fade must play now, not wait for a prebuffer
        return cut

    def pending(self, item_id: str | None = None) -> int:
        """Samples still queued (for one item, or all)."""
        with self._lock:
            if item_id is None:
                return self._queued
            return sum(s.size - o for i, s, o in self._queue if i == item_id)

    def played_ms(self, item_id: str) -> int:
        return self.played.get(item_id, 0) * 1000 // RATE

    @property
    def active(self) -> bool:
        return self._queued > 0

    # -- audio thread -------------------------------------------------------------------------

    def pull(self, n: int) -> np.ndarray:
        """The next `n` samples for the device (zeros where there is nothing to play)."""
        out = self._fill(n)
        if self.reference is not None:
            self.reference(out)
        return out

    def _fill(self, n: int) -> np.ndarray:
        out = np.zeros(n, dtype=np.int16)
        with self._lock:
            if self._waiting:
                # start once the prebuffer is full, or at once if the last queued item is complete
                # (a short answer, or the tail after an underrun: nothing more would ever fill it)
                complete = bool(self._queue) and self._queue[-1][0] in self._ended
                if self._queued < max(1, self._prebuffer) and not complete:
                    return out
                self._waiting = False
            filled = 0
            while filled < n and self._queue:
                entry = self._queue[0]
                item_id, samples, offset = entry
                take = min(n - filled, samples.size - offset)
                out[filled: filled + take] = samples[offset: offset + take]
                if item_id not in self.first_played:
                    self.first_played[item_id] = time.monotonic()
                self.played[item_id] = self.played.get(item_id, 0) + take
                self.current_item = item_id
                filled += take
                self._queued -= take
                if offset + take >= samples.size:
                    self._queue.popleft()
                else:
                    entry[2] = offset + take
            if filled:
                self.last_sound = time.monotonic()
                if self.tap is not None:
                    self.tap.append(out[:filled].tobytes())
            if not self._queue:
                self._ended.clear()  # everything ended has been played
                if filled < n:
                    self._waiting = True  # ran dry: prebuffer again before the next sound
        return out


class DeviceSpeaker(DeviceStream):
    """A sounddevice output stream fed by the buffer, in 10 ms blocks."""

    what, kind = "speaker", "output"

    def __init__(self, buffer: PlaybackBuffer, device: int | None = None):
        self.buffer = buffer
        self.device = device
        self._stream = None
        self._resampler: Resampler | None = None  # 24 kHz → the device's rate, if it cannot do 24 kHz
        self._left = np.zeros(0, np.int16)  # resampled samples not yet handed to the device
        self._rate = RATE
        self.errors = 0  # callback status flags (underflows) seen

    def start(self) -> None:
        from voicecli.audio.devices import import_sounddevice

        sd = import_sounddevice()
        self._rate, self._resampler, self._left = RATE, None, np.zeros(0, np.int16)  # (re)opening: start clean
        finished = self._watch()
        try:
            self._stream = self._open(sd, RATE, finished)
        except sd.PortAudioError:  # the device cannot do 24 kHz: play at its own rate
            rate = int(sd.query_devices(self.device, "output")["default_samplerate"])
            self._stream = self._open(sd, rate, finished)
            self._rate = rate
            self._resampler = Resampler(RATE, rate)
        self._stream.start()

    def _open(self, sd, rate: int, finished):
        # 10 ms blocks: PortAudio keeps two of them queued, so a flush is heard within ~20 ms
        return sd.RawOutputStream(samplerate=rate, channels=1, dtype="int16", blocksize=rate // 100,
                                  latency="low", device=self.device, callback=self._callback,
                                  finished_callback=finished)

    def _callback(self, outdata, frames, time_info, status) -> None:  # audio thread: no waiting
        self._last_callback = time.monotonic()
        if status:
            self.errors += 1
        if self._resampler is None:
            outdata[:] = self.buffer.pull(frames).tobytes()
            return
        outdata[:] = self._resampled(frames).tobytes()

    def _resampled(self, frames: int) -> np.ndarray:
        """`frames` samples at the device's rate. The resampler gives its output in bursts: pull
        until one arrives and keep the rest for the next callback. What is pulled is heard
        (nothing is dropped on a flush), so the buffer's played counts stay right."""
        have = self._left
        for _ in range(64):  # soxr holds back ~40 ms at most: a few 10 ms pulls always suffice
            if have.size >= frames:
                break
            need = max(RATE // 100, -(-(frames - have.size) * RATE // self._rate))
            have = np.concatenate([have, self._resampler.process(self.buffer.pull(need))])
        if have.size < frames:  # never: but the audio thread must not fail
            have = np.concatenate([have, np.zeros(frames - have.size, np.int16)])
        out, self._left = have[:frames], have[frames:]
        return out


class ClockSpeaker:
    """No device: drains the buffer at real time from an asyncio task (headless `--output`)."""

    def __init__(self, buffer: PlaybackBuffer):
        self.buffer = buffer
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="clock-speaker")

    async def _run(self) -> None:
        start, n = time.monotonic(), 0
        while True:
            self.buffer.pull(BLOCK)
            n += 1
            delay = start + n * BLOCK / RATE - time.monotonic()
            if delay < -0.5:  # the loop was starved: do not try to catch up in a burst
                start, n = time.monotonic(), 0
            await asyncio.sleep(max(0.0, delay))

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def drain_tap(buffer: PlaybackBuffer, sink: Callable[[bytes], None]) -> None:
    """Move played audio from the audio thread's tap to `sink` (called from the asyncio side)."""
    tap = buffer.tap
    while tap:
        sink(tap.popleft())
