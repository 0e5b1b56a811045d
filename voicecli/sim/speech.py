"""Waveforms for the simulator: the assistant's "voice", test speech, and WAV helpers.

All PCM here is what the Realtime API and `/v1/audio/speech` (`pcm`) use: signed 16-bit
little-endian, mono, 24 000 Hz (48 bytes per millisecond).

`synthesize(text)` gives a real waveform whose length follows the text:
- with `espeak-ng` on PATH, real synthetic speech (resampled from its 22 050 Hz to 24 kHz);
- otherwise, or with `VOICECLI_SIM_SPEECH=tones`, one `TONE_HZ` tone per word with short gaps
  (longer after punctuation), so a test listening on the speaker side can detect it.
"""

from __future__ import annotations

import functools
import io
import os
import re
import shutil
import subprocess
import wave
from pathlib import Path
from typing import BinaryIO

import numpy as np

RATE = 24000
BYTES_PER_MS = RATE * 2 // 1000  # 48
TONE_HZ = 440.0  # the fallback voice's pitch: what speaker-side tests look for
_WORD_MS_PER_CHAR = 65  # ~15 characters a second, like unhurried speech
_GAP_MS = 80
_PAUSE_MS = 150  # after , . ! ? ; : (under the default 200 ms VAD silence, so one reply is one turn)


def pcm_ms(pcm: bytes) -> float:
    return len(pcm) / BYTES_PER_MS


def to_int16(samples: np.ndarray) -> bytes:
    """Float samples in [-1, 1] → PCM16 bytes (clipped); the exact inverse of `samples()`."""
    return np.clip(np.round(samples * 32768.0), -32768, 32767).astype("<i2").tobytes()


def samples(pcm: bytes) -> np.ndarray:
    """PCM16 bytes → float samples in [-1, 1]."""
    return np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float64) / 32768.0


def rms(pcm: bytes) -> float:
    """Root mean square of PCM16 audio, 0..1 of full scale."""
    x = samples(pcm)
    return float(np.sqrt(np.mean(x * x))) if x.size else 0.0


def silence(seconds: float, rate: int = RATE) -> bytes:
    return b"\x00\x00" * int(round(seconds * rate))


def tone(freq: float, seconds: float, amplitude: float = 0.3, rate: int = RATE) -> bytes:
    """A sine tone with 10 ms fades, so joined tones do not click."""
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    x = amplitude * np.sin(2 * np.pi * freq * t)
    fade = min(n // 2, int(0.01 * rate))
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        x[:fade] *= ramp
        x[n - fade :] *= ramp[::-1]
    return to_int16(x)


def speech_like(seconds: float, seed: int = 0, amplitude: float = 0.3, rate: int = RATE) -> bytes:
    """Test input that an energy VAD treats as speech: syllable-rate (4 Hz) modulated harmonics
    around a 120–220 Hz pitch, with no pause longer than ~60 ms inside it."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    f0 = 120 + 100 * rng.random()
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t + rng.random() * 6.28)
    x = amplitude * x * envelope / 1.6
    return to_int16(x)


def tone_speech(text: str) -> bytes:
    """The deterministic fallback voice: one TONE_HZ tone per word, gaps between words."""
    parts = []
    for word in re.findall(r"\S+", text):
        letters = len(re.sub(r"\W", "", word)) or 1
        parts.append(tone(TONE_HZ, max(0.12, letters * _WORD_MS_PER_CHAR / 1000)))
        parts.append(silence((_PAUSE_MS if word[-1] in ",.!?;:" else _GAP_MS) / 1000))
    return b"".join(parts) or silence(0.2)


def resample(x: np.ndarray, rate_in: int, rate_out: int = RATE) -> np.ndarray:
    """Linear resampling: good enough for a simulator's voice."""
    if rate_in == rate_out or x.size == 0:
        return x
    n_out = int(round(x.size * rate_out / rate_in))
    return np.interp(np.arange(n_out) * rate_in / rate_out, np.arange(x.size), x)


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def _engine() -> str:
    choice = os.environ.get("VOICECLI_SIM_SPEECH", "auto")
    if choice == "tones" or (choice == "auto" and not espeak_available()):
        return "tones"
    return "espeak"


@functools.lru_cache(maxsize=256)
def _espeak(text: str) -> bytes | None:
    try:
        # Text on stdin: a text starting with "-" must not be read as an option.
        out = subprocess.run(["espeak-ng", "--stdout"], input=text.encode(), capture_output=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    # espeak-ng writes a streaming WAV header (bogus sizes), so find the data chunk by hand.
    if out[:4] != b"RIFF" or b"data" not in out[:200]:
        return None
    rate = int.from_bytes(out[24:28], "little")
    data = out[out.index(b"data", 12) + 8 :]
    x = resample(samples(data), rate, RATE)
    return to_int16(x)


@functools.lru_cache(maxsize=256)
def synthesize(text: str) -> bytes:
    """The assistant's speech for `text`: PCM16 24 kHz mono; duration roughly follows the text."""
    if not text.strip():
        return silence(0.2)
    if _engine() == "espeak":
        pcm = _espeak(text)
        if pcm:
            return pcm
    return tone_speech(text)


# -- WAV (stdlib `wave`) ------------------------------------------------------------------------


def wav_bytes(pcm: bytes, rate: int = RATE) -> bytes:
    buf = io.BytesIO()
    write_wav(buf, pcm, rate)
    return buf.getvalue()


def write_wav(dest: str | Path | BinaryIO, pcm: bytes, rate: int = RATE) -> None:
    """Write mono PCM16 as a WAV file (44-byte header)."""
    with wave.open(dest if not isinstance(dest, Path) else str(dest), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


def read_wav(src: str | Path | BinaryIO | bytes) -> bytes:
    """Read a PCM16 WAV (any rate, any channel count) as mono 24 kHz PCM16."""
    if isinstance(src, bytes):
        src = io.BytesIO(src)
    with wave.open(src if not isinstance(src, Path) else str(src), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError("only 16-bit WAV is supported")
        channels, rate = w.getnchannels(), w.getframerate()
        data = w.readframes(w.getnframes())
    if channels == 1 and rate == RATE:
        return data
    x = samples(data)
    if channels > 1:
        x = x[: x.size // channels * channels].reshape(-1, channels).mean(axis=1)
    return to_int16(resample(x, rate, RATE))
