"""Energy-based voice activity detection for the simulator's `server_vad` (sans-I/O).

The real server runs a neural VAD; the simulator only needs one that reacts to real audio in
the same way: speech starts when the 10 ms frame energy stays above a level for a few frames,
and stops after `silence_duration_ms` below it. `threshold` (0..1, like the API's) maps to an
RMS level on a log scale: 0 → -60 dBFS, 0.5 → -40 dBFS, 1 → -20 dBFS.

Times are milliseconds of audio received since the session started (the API's `audio_*_ms`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RATE = 24000
FRAME_MS = 10
_FRAME_BYTES = RATE * 2 * FRAME_MS // 1000  # 480


def level_for(threshold: float) -> float:
    """RMS level (0..1 of full scale) that counts as speech for an API `threshold`."""
    t = min(1.0, max(0.0, float(threshold)))
    return 10 ** ((-60 + 40 * t) / 20)


def _frame_rms(frames: np.ndarray) -> np.ndarray:
    x = frames.astype(np.float64) / 32768.0
    return np.sqrt(np.mean(x * x, axis=1))


@dataclass
class VadEvent:
    kind: str  # "start" | "stop"
    audio_ms: int  # start: speech onset minus prefix padding (≥ 0); stop: end incl. the silence
    speech_ms: int  # start: the onset itself; stop: where the last voiced frame ended


class EnergyVad:
    def __init__(
        self,
        threshold: float = 0.5,
        prefix_padding_ms: int = 300,
        silence_duration_ms: int = 500,
        min_speech_ms: int = 30,
    ):
        self.level = level_for(threshold)
        self.prefix_padding_ms = prefix_padding_ms
        self.silence_duration_ms = silence_duration_ms
        self.min_speech_frames = max(1, min_speech_ms // FRAME_MS)
        self.in_speech = False
        self.position_ms = 0  # audio consumed, in whole frames
        self._rest = b""
        self._voiced_run = 0  # consecutive voiced frames (before speech is declared)
        self._silent_run = 0  # consecutive silent frames (during speech)
        self._last_voiced_end = 0

    def reset(self, position_ms: int | None = None) -> None:
        """Forget any speech in progress (after `input_audio_buffer.clear`)."""
        self.in_speech = False
        self._voiced_run = self._silent_run = 0
        if position_ms is not None:
            self.position_ms = position_ms

    def feed(self, pcm: bytes) -> list[VadEvent]:
        data = self._rest + pcm
        n = len(data) // _FRAME_BYTES
        self._rest = data[n * _FRAME_BYTES :]
        if not n:
            return []
        frames = np.frombuffer(data[: n * _FRAME_BYTES], dtype="<i2").reshape(n, -1)
        events = []
        for voiced in _frame_rms(frames) > self.level:
            self.position_ms += FRAME_MS
            if not self.in_speech:
                self._voiced_run = self._voiced_run + 1 if voiced else 0
                if self._voiced_run >= self.min_speech_frames:
                    onset = self.position_ms - self._voiced_run * FRAME_MS
                    self.in_speech, self._silent_run = True, 0
                    self._last_voiced_end = self.position_ms
                    events.append(VadEvent("start", max(0, onset - self.prefix_padding_ms), onset))
            elif voiced:
                self._silent_run = 0
                self._last_voiced_end = self.position_ms
            else:
                self._silent_run += 1
                if self._silent_run * FRAME_MS >= self.silence_duration_ms:
                    self.in_speech, self._voiced_run = False, 0
                    events.append(VadEvent("stop", self.position_ms, self._last_voiced_end))
        return events


def voiced_span(pcm: bytes, threshold: float = 0.5) -> tuple[int, int] | None:
    """(first, last) voiced millisecond in a clip, or None when it holds no speech."""
    n = len(pcm) // _FRAME_BYTES
    if not n:
        return None
    frames = np.frombuffer(pcm[: n * _FRAME_BYTES], dtype="<i2").reshape(n, -1)
    voiced = np.flatnonzero(_frame_rms(frames) > level_for(threshold))
    if not voiced.size:
        return None
    return int(voiced[0]) * FRAME_MS, (int(voiced[-1]) + 1) * FRAME_MS


def describe_speech(pcm: bytes) -> str:
    """The simulator's deterministic "transcript" of audio it cannot understand:
    "[speech 1.23 s]" (the voiced span's length), or "" for silence."""
    span = voiced_span(pcm)
    return f"[speech {(span[1] - span[0]) / 1000:.2f} s]" if span else ""
