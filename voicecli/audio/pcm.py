"""PCM16 helpers for talk: mono mixing, streaming resampling, levels (numpy, imported lazily by callers).

Everything on the wire is PCM16 little-endian mono at 24 kHz (48 bytes per millisecond).
Resampling is a small numpy one on purpose: PulseAudio, PipeWire, CoreAudio and WASAPI accept
24 kHz and convert themselves, so it runs only for raw ALSA hardware; for speech into a model,
box-filter decimation (integer ratios) or linear interpolation is good enough and costs no
compiled dependency.
"""

from __future__ import annotations

import math

import numpy as np

RATE = 24000
BYTES_PER_MS = RATE * 2 // 1000  # 48


def ms_of(nbytes: int) -> float:
    return nbytes / BYTES_PER_MS


def to_mono(frames: np.ndarray, channels: int) -> np.ndarray:
    """Interleaved int16 frames → mono int16 (channel mean)."""
    if channels == 1:
        return frames
    x = frames[: frames.size // channels * channels].reshape(-1, channels).astype(np.int32)
    return (x.sum(axis=1) // channels).astype(np.int16)


class Resampler:
    """Streaming int16 resampler that keeps its phase across blocks (no clicks at block edges)."""

    def __init__(self, rate_in: int, rate_out: int = RATE):
        self.rate_in, self.rate_out = int(rate_in), int(rate_out)
        self._factor = self.rate_in // self.rate_out if self.rate_in % self.rate_out == 0 else 0
        self._rest = np.zeros(0, np.int16)  # decimation: samples not yet making a whole group
        self._pos = 0.0  # interpolation: position of the next output sample, in input samples
        self._last: np.ndarray | None = None  # interpolation: the previous block's last sample

    def process(self, x: np.ndarray) -> np.ndarray:
        if self.rate_in == self.rate_out:
            return x
        if self._factor:  # 48 k → 24 k and the like: average each group (a crude low-pass)
            data = np.concatenate([self._rest, x]) if self._rest.size else x
            n = data.size // self._factor
            self._rest = data[n * self._factor:].copy()
            return data[: n * self._factor].reshape(n, self._factor).astype(np.int32).mean(axis=1).astype(np.int16)
        data = x.astype(np.float64)
        if self._last is not None:  # index 0 = the previous block's last sample
            data = np.concatenate([self._last, data])
        step = self.rate_in / self.rate_out
        end = data.size - 1  # last usable index
        count = max(0, math.floor((end - self._pos) / step) + 1) if end >= self._pos else 0
        at = self._pos + step * np.arange(count)
        out = np.interp(at, np.arange(data.size), data)
        self._pos = self._pos + step * count - (data.size - 1)
        self._last = data[-1:]
        return np.clip(np.round(out), -32768, 32767).astype(np.int16)


def resample_all(x: np.ndarray, rate_in: int, rate_out: int = RATE) -> np.ndarray:
    return Resampler(rate_in, rate_out).process(x)


def level(pcm: bytes | np.ndarray) -> float:
    """A 0..1 meter value: RMS on a -60..0 dBFS scale."""
    x = np.frombuffer(pcm, dtype="<i2") if isinstance(pcm, (bytes, bytearray, memoryview)) else pcm
    if not x.size:
        return 0.0
    rms = math.sqrt(float(np.mean(np.square(x, dtype=np.float64)))) / 32768.0
    if rms <= 1e-6:
        return 0.0
    return min(1.0, max(0.0, (20 * math.log10(rms) + 60) / 60))
