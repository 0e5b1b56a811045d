"""Is there an echo path at all? Headphones have none, and then AEC3's suppressor only costs the
user the first syllables of talking over the answer (≈ 40 dB off the first 200 ms, offline).

The detector watches the raw microphone against the far end (what the speaker played), in the
10 ms lockstep the canceller feeds AEC3, and says whether the canceller's suppression is needed.
Pure numpy, no clock, no I/O: frames in, a state out.

Evidence is gathered only while the far end speaks (its last 600 ms above FAR_DBFS):
- the mic is quiet (its last 200 ms under FLOOR_DBFS): any echo there stays 20 dB under the level a
  server VAD starts on (-40 dBFS at the default threshold; the simulator's is the same) → no echo;
- otherwise the mic's last 200 ms against the far end: candidate delays from a whitened
  cross-correlation (GCC-PHAT, 5–400 ms), then the magnitude-squared coherence at each over the
  20 ms segments where the mic has sound (150–3500 Hz, mean over bins). Coherence does not depend
  on the echo's level, only on the mic being a filtered copy of the far end: a room's echo scored
  0.35–0.95 in our tests (weak, late and reverberant ones included), an independent voice (the
  user's: double-talk) never above 0.33 in 16,000 windows. Over the line (ECHO_C, and 1/segments +
  ECHO_OVER_CHANCE: with few segments anything looks coherent; FEW_C for a 100 ms burst) twice
  at one delay → echo; under NONE_C on a mic under NOISE_DBFS (room noise) → no echo; a loud mic
  under NONE_C is a voice, which proves nothing (it could hide a weak echo) except where a moment
  ago there was no echo path (`probation`, below); anything else → undecided.

Decision rule. The two mistakes differ: a missed echo path lets the assistant interrupt itself; a
false one only keeps the old dampening. So:
- start "unknown", canceller in force; an echo verdict → "found" at once;
- "none" (bypass) after BYPASS_AFTER_S of far-end speech judged "no echo" and no echo verdict;
  after an echo was found, RELEASE_AFTER_S (headphones plugged in: slow is harmless);
- a user talking over the first answer only delays the bypass;
- bypassed, each new answer (far end back after PAUSE_FRAMES of silence) is on probation: "unknown"
  until RECHECK_S of it proved the mic quiet, or a voice unlike it spoke. The canceller (echo.py)
  holds a loud mic meanwhile, so headphones unplugged between answers never let the echo reach
  the server. Unplugged mid-answer, the echo is found while bypassed (100 ms or more: bench/
  echopath.py); a device that goes away and is replaced resets the detector (`reset`).
"""

from __future__ import annotations

import numpy as np

RATE = 24000
FRAME = RATE // 100
DECIMATE = 2  # analysis at 12 kHz: a speech echo's coherence lives below 6 kHz
SUB = FRAME // DECIMATE  # 120 samples per 10 ms at 12 kHz
WINDOW = 20  # frames of mic judged at once (200 ms)
MAX_LAG = 40  # frames of echo delay searched (400 ms: device latencies plus the room)
MIN_LAG = 60  # samples at 12 kHz (5 ms): no device plays and records faster
# samples at 12 kHz (20 ms): two verdicts this close are one delay. The streams' alignment moves by
# 10–20 ms between checks (it comes from the times the 10–20 ms blocks were played and captured)
SAME_LAG = 240
FAR_FRAMES = 60  # the far end speaks when these last frames (600 ms) carry speech energy
NFFT = 8192  # ≥ (WINDOW + MAX_LAG) * SUB: the correlation at delays up to MAX_LAG does not wrap
SEG, HOP = 240, 120  # coherence segments: 20 ms every 10 ms at 12 kHz
BAND = (150.0, 3500.0)  # Hz: where a speech echo has its energy
FLOOR_DBFS = -60.0  # a mic this quiet cannot start a server VAD (≈ -40 dBFS), with 20 dB to spare
NOISE_DBFS = -45.0  # louder than this may be a voice: low coherence then proves nothing
FAR_DBFS = -50.0
ECHO_C, NONE_C = 0.35, 0.2
ECHO_OVER_CHANCE = 0.2  # coherence by chance is ≈ 1/segments: an echo must beat that by this much too
# effective number of sounding segments for a verdict; under FEW_SEGMENTS (a burst of 100 ms: the
# answer a server cut at once because it heard the echo) only a near-perfect match counts, since
# two voices at one pitch stay coherent for 40–50 ms (they reached 0.78; a clean echo 0.85–0.9)
MIN_SEGMENTS, FEW_SEGMENTS, FEW_C = 4.0, 6.0, 0.82
CANDIDATES = 3  # correlation peaks tried
BYPASS_AFTER_S = 1.0
RECHECK_S = 0.3
RELEASE_AFTER_S = 10.0
PAUSE_FRAMES = 50  # 0.5 s without far-end speech: the next sound is a new answer (or the answer to a
# phantom turn, when an echo path appeared while bypassed and the server heard the assistant)
PENDING_FRAMES = 500  # an echo verdict waits this long (5 s of far-end speech) for a second at its delay

_FLOOR = 32768.0 * 10 ** (FLOOR_DBFS / 20)
_NOISE = 32768.0 * 10 ** (NOISE_DBFS / 20)
_FAR = 32768.0 * 10 ** (FAR_DBFS / 20)
_WIDE = slice(int(BAND[0] * NFFT / (RATE / DECIMATE)), int(BAND[1] * NFFT / (RATE / DECIMATE)) + 1)
_SEG_BINS = slice(int(BAND[0] * SEG / (RATE / DECIMATE)), int(BAND[1] * SEG / (RATE / DECIMATE)) + 1)
_SEG_INDEX = np.arange(0, WINDOW * SUB - SEG + 1, HOP)[:, None] + np.arange(SEG)
_HANN = np.hanning(SEG)


class EchoPathDetector:
    UNKNOWN, NONE, FOUND = "unknown", "none", "found"

    def __init__(self) -> None:
        self.state = self.UNKNOWN
        self.lag_ms: float | None = None  # the delay of the last echo found
        self.coherence = 0.0  # the last check's
        self.checks = 0  # coherence checks made (for the CPU figure)
        self._far = np.zeros((WINDOW + MAX_LAG) * SUB)
        self._near = np.zeros(WINDOW * SUB)
        self._far_energy = np.zeros(FAR_FRAMES)  # per 10 ms frame, mean square at 24 kHz
        self._near_energy = np.zeros(WINDOW)
        self._no_echo = 0  # frames of far-end speech judged "no echo" since the last echo verdict
        self._since_check = 0
        self._found_once = False
        self._bypassed_once = False
        self._far_silent = 0  # frames since the far end last had speech energy
        self._pause = False
        self._lag: int | None = None  # in samples at 12 kHz
        self._pending: tuple[int, int] | None = None  # (delay, clock) of an echo verdict awaiting its second
        self._clock = 0  # frames of far-end speech seen

    # -- feeding: the canceller's capture side, in the order AEC3 sees the frames ---------------------

    def far(self, frame: np.ndarray) -> None:
        """A 10 ms far-end frame (int16, 24 kHz) that was played."""
        _push(self._far, self._far_energy, frame)
        self._far_silent = 0 if self._far_energy[-1] > _FAR ** 2 else self._far_silent + 1
        if self._far_silent == 0 and self._pause and self.state == self.NONE:
            self.state, self._no_echo = self.UNKNOWN, 0  # a new answer: prove it again, quickly
        self._pause = self._far_silent >= PAUSE_FRAMES

    def near(self, frame: np.ndarray) -> str:
        """A 10 ms raw microphone frame (int16, 24 kHz), after the far end played until it was
        captured; returns the state."""
        _push(self._near, self._near_energy, frame)
        if not self.far_speaking:
            return self.state
        self._clock += 1
        self._since_check += 1
        if not self.near_loud():
            self._judge("none", 1)
            self._since_check = 0
        elif self._since_check >= self._interval():
            self.check()
        return self.state

    def _interval(self) -> int:
        """Frames between checks (one costs ≈ 0.5 ms): 200 ms (one window) while it only confirms an
        echo found; 20 ms when the mic is loud enough for a VAD (an echo path appearing must be caught
        fast); 50 ms for room noise."""
        if self.state == self.FOUND:
            return 20
        return 2 if self.near_loud(level=_NOISE) else 5

    @property
    def bypassed_once(self) -> bool:
        return self._bypassed_once

    @property
    def probation(self) -> bool:
        """A new answer after a bypass: an echo path may have appeared (headphones unplugged)."""
        return self.state == self.UNKNOWN and self._bypassed_once

    @property
    def far_speaking(self) -> bool:
        return float(np.mean(self._far_energy)) > _FAR ** 2

    def near_loud(self, frames: int = WINDOW, level: float = _FLOOR) -> bool:
        return float(np.mean(self._near_energy[-frames:])) > level ** 2

    # -- judging ------------------------------------------------------------------------------------

    def check(self) -> str:
        """Judge the mic's last 200 ms now (the frames since the last check count for the verdict);
        returns the state."""
        frames, self._since_check = self._since_check, 0
        coherence, lag, segments = self.measure()
        self.coherence = coherence
        if segments < MIN_SEGMENTS:
            return self.state
        needed = max(ECHO_C, 1 / segments + ECHO_OVER_CHANCE) if segments >= FEW_SEGMENTS else FEW_C
        if coherence >= needed:
            # twice at one delay: one window over the line is not enough. The second may come from
            # another burst: a server that heard the echo cuts the answer short, again and again
            pending = self._pending
            if pending is not None and abs(lag - pending[0]) <= SAME_LAG and self._clock - pending[1] <= PENDING_FRAMES:
                self._lag = lag
                self.lag_ms = lag * 1000 / (RATE / DECIMATE)
                self._judge("echo", frames)
            self._pending = (lag, self._clock)
            return self.state
        if coherence < NONE_C and not self.near_loud(level=_NOISE):
            self._judge("none", frames)
        elif coherence < NONE_C and segments >= FEW_SEGMENTS and self.probation:
            # a voice unlike the answer, where a moment ago there was no echo path: the user's
            self.state = self.NONE
        return self.state

    def measure(self) -> tuple[float, int, float]:
        """(coherence, delay in samples at 12 kHz, effective number of loud segments) of the best
        candidate delay."""
        self.checks += 1
        lags = self._candidates()
        if self._lag is not None and all(abs(lag - self._lag) > SAME_LAG for lag in lags):
            lags.append(self._lag)  # the delay found before: an echo path coming back has it
        near = self._near[_SEG_INDEX] * _HANN
        spec_near = np.fft.rfft(near, axis=1)[:, _SEG_BINS]
        p_near = np.abs(spec_near) ** 2
        seg = p_near.sum(axis=1)
        # only the segments where the mic has sound (within 20 dB of its loudest): at an onset the rest
        # of the window is silence, and the far end there would dilute the coherence of a real echo
        used = seg >= 0.01 * seg.max()
        spec_near, p_near, seg = spec_near[used], p_near[used], seg[used]
        segments = float(seg.sum() ** 2 / (np.sum(seg ** 2) + 1e-12))
        fars = np.stack([self._far[self._far.size - self._near.size - lag:][: self._near.size] for lag in lags])
        spec_far = np.fft.rfft(fars[:, _SEG_INDEX[used]] * _HANN, axis=2)[:, :, _SEG_BINS]
        p_far = np.abs(spec_far) ** 2
        cross = np.abs(np.sum(np.conj(spec_near)[None] * spec_far, axis=1)) ** 2
        msc = cross / (p_near.sum(axis=0)[None] * p_far.sum(axis=1) + 1e-9)
        scores = msc.mean(axis=1)
        best = int(np.argmax(scores))
        seg_far = p_far[best].sum(axis=1)  # a far end loud in few segments is as trivially "coherent"
        segments = min(segments, float(seg_far.sum() ** 2 / (np.sum(seg_far ** 2) + 1e-12)))
        return float(scores[best]), lags[best], segments

    def _candidates(self) -> list[int]:
        """The delays (samples at 12 kHz) of the whitened cross-correlation's highest peaks."""
        near = np.fft.rfft(self._near, NFFT)
        far = np.fft.rfft(self._far, NFFT)
        cross = np.zeros_like(near)
        cross[_WIDE] = np.conj(near[_WIDE]) * far[_WIDE]
        mag = np.abs(cross[_WIDE])
        cross[_WIDE] /= mag + 1e-3 * (float(np.mean(mag)) + 1e-12)
        c = np.abs(np.fft.irfft(cross, NFFT)[: MAX_LAG * SUB + 1 - MIN_LAG])  # index 0: the longest delay
        picked: list[int] = []
        for i in np.argsort(c)[::-1][:64]:
            if all(abs(int(i) - j) > 24 for j in picked):
                picked.append(int(i))
                if len(picked) == CANDIDATES:
                    break
        return [MAX_LAG * SUB - i for i in picked]

    def _judge(self, verdict: str, frames: int) -> None:
        if verdict == "echo":
            self.state, self._no_echo, self._found_once = self.FOUND, 0, True
            return
        self._no_echo += frames
        needed = (RELEASE_AFTER_S if self.state == self.FOUND or self._found_once and not self._bypassed_once
                  else RECHECK_S if self._bypassed_once else BYPASS_AFTER_S)
        if self.state != self.NONE and self._no_echo * 10 >= needed * 1000:
            self.state, self._bypassed_once = self.NONE, True

    def reset(self) -> None:
        """Another device: whatever was known about the echo path no longer holds."""
        self.__init__()


def _push(ring: np.ndarray, energies: np.ndarray, frame: np.ndarray) -> None:
    """Append a 10 ms frame to a ring (decimated) and its mean square to `energies`."""
    x = frame.astype(np.float64)
    ring[:-SUB] = ring[SUB:]
    ring[-SUB:] = (x[0::2] + x[1::2]) * 0.5
    energies[:-1] = energies[1:]
    energies[-1] = np.dot(x, x) / x.size
