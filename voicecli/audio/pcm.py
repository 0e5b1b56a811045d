"""PCM16 helpers for talk: mono mixing, streaming resampling, levels (numpy, imported lazily by callers).

Everything on the wire is PCM16 little-endian mono at 24 kHz (48 bytes per millisecond).
PulseAudio, PipeWire, CoreAudio and WASAPI accept 24 kHz and convert themselves, so resampling
runs only for raw ALSA hardware and for `--input` WAVs at other rates; it uses libsoxr (`soxr`)
rather than interpolation, which aliases and clicks at block edges.
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
    """The one resampler of talk (microphone, speaker, `--input` WAVs): libsoxr, streaming.

    Its filter state carries across blocks, so block edges are seamless, and its anti-alias
    filter keeps what lies above the new Nyquist frequency out (a 15 kHz tone does not fold
    back to 9 kHz at 24 kHz). soxr hands its output out in bursts (up to ~40 ms held back), so a
    block in may give fewer or more samples out; `last=True` flushes what it holds.
    """

    def __init__(self, rate_in: int, rate_out: int = RATE):
        self.rate_in, self.rate_out = int(rate_in), int(rate_out)
        self._stream = None
        if self.rate_in != self.rate_out:
            import soxr  # only where audio is resampled: not at startup

            # float, rounded here: soxr's own int16 output is dithered (random), this is repeatable
            self._stream = soxr.ResampleStream(self.rate_in, self.rate_out, 1, dtype="float32", quality="HQ")

    def process(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        if self._stream is None:
            return x
        return to_int16(self._stream.resample_chunk(x.astype(np.float32), last=last))


def to_int16(x: np.ndarray) -> np.ndarray:
    """Float samples on the int16 scale → int16, rounded and clipped."""
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def resample_all(x: np.ndarray, rate_in: int, rate_out: int = RATE) -> np.ndarray:
    """A whole signal at once (same filter as the streaming path)."""
    return Resampler(rate_in, rate_out).process(x, last=True)


def level(pcm: bytes | np.ndarray) -> float:
    """A 0..1 meter value: RMS on a -60..0 dBFS scale."""
    x = np.frombuffer(pcm, dtype="<i2") if isinstance(pcm, (bytes, bytearray, memoryview)) else pcm
    if not x.size:
        return 0.0
    rms = math.sqrt(float(np.mean(np.square(x, dtype=np.float64)))) / 32768.0
    if rms <= 1e-6:
        return 0.0
    return min(1.0, max(0.0, (20 * math.log10(rms) + 60) / 60))
