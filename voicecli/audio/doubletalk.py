"""Is the user talking over the assistant? Judged on the raw microphone, ahead of the canceller.

While both talk, AEC3's suppressor takes 35-60 dB off the user's first 100-300 ms (it has to
tell the user's voice from a residual echo, and errs towards silence), so any VAD on the cleaned
signal hears the user late. This detector compares the raw mic with the far end (what the
speaker played), in the same 10 ms lockstep the canceller feeds AEC3:

- per frequency bin (20 ms spectra, 150-8000 Hz), the echo the mic can hold at most is the far
  end's power (in the bin, or -6 dB in a neighbour) over the frames that can echo now (all played
  within the echo delay `lag_ms`, as the echo path detector found it, and TAIL_MS more) times the
  echo return gain of its band (GROUP bins), learnt while the far end plays: a peak of mic / far
  that falls FALL_DB a frame and may rise only RISE_DB a frame, so a louder echo is followed within
  a few frames, a voice is not;
- the mic's energy in bins MARGIN_DB over that bound is not echo. When it is loud enough for a VAD
  (LEVEL_DBFS, and NOISE_OVER_DB over the room's noise) and not a negligible share of the mic's
  energy (NEAR_SHARE), the frame holds a near-end sound; `onset` is set after ONSET_FRAMES of them
  within ONSET_WINDOW frames. Two voices rarely fill the same bins at one moment, and an echo keeps
  the far end's spectrum whatever its level: the user's first "s" or "t" shows in the bins the
  answer leaves empty, 20 dB under the echo of its vowels (offline: 20-50 ms after the onset).

It starts out assuming a loud echo (INITIAL_GAIN_DB) and learns down (about 1-2 s of the answer),
so before it has heard the echo it can only miss a user, not take the echo for one. It judges
only while the far end has played within the echo's reach: then the canceller dampens a user;
otherwise the VAD on the cleaned signal hears them as well (and knows a cough from a word).
Pure numpy, no clock, no I/O.
"""

from __future__ import annotations

import numpy as np

RATE = 24000
FRAME = RATE // 100
NFFT = 2 * FRAME  # 20 ms spectra, one per frame
BAND = (150.0, 8000.0)  # a first "s" or "t" is a high sound: the band goes up to catch it
_BINS = slice(int(BAND[0] * NFFT / RATE), int(BAND[1] * NFFT / RATE) + 1)
NBINS = _BINS.stop - _BINS.start
GROUP = 8  # bins sharing one echo gain (400 Hz): a speaker and a room colour the echo smoothly
MAX_LAG_MS = 400  # the longest echo delay (as the echo path detector's)
TAIL_MS = 100  # how long after its delay an echo (a room's reverberation) still carries a frame's sound
INITIAL_GAIN_DB = 10.0  # an echo louder than the far end by this much is assumed until learnt otherwise
FALL_DB = 0.1  # per frame of far-end speech (10 dB a second): the gain learnt falls towards the echo's
RISE_DB = 1.0  # the most the gain may rise in one frame: an echo getting louder is followed, a voice is not
MIN_GAIN_DB = -40.0
MARGIN_DB = 10.0  # a bin this much over the echo bound holds a near-end sound
# a share of the mic's energy (-25 dB) under which such bins are taken for noise in the bound; a user's
# first "s" under the echo of a vowel holds 0.3-10 % (offline, the simulator's voice over itself). A
# distorting speaker may well exceed it: bench/echo.py saw false onsets at 1-17 % (see CLIPPED)
NEAR_SHARE = 0.003
LEVEL_DBFS = -45.0  # and their energy exceeds this (≈ 5 dB over a VAD's -50 dBFS)
NOISE_OVER_DB = 10.0  # and the room's noise floor by this much (a fan is not a voice)
NOISE_RISE_DB = 0.02  # per frame (2 dB a second): the floor follows a quieter mic at once, a louder one slowly
FAR_DBFS = -50.0  # a far-end frame quieter than this plays nothing
CLIPPED = 32000  # a mic frame with a sample this loud may be clipped: its distortion fills the bins the far
# end leaves empty (offline: an echo 6 dB over the far end, clipped, started a "voice" in every answer)
ONSET_FRAMES, ONSET_WINDOW = 4, 5  # 40 of the last 50 ms
NEIGHBOUR = 0.25  # a neighbouring bin's far-end power counts this much (-6 dB) in a bin's echo bound

_HANN = np.hanning(NFFT)
# near_end's window: a periodic Hann, whose halves add up to exactly 1 at the 10 ms hop (overlap-add)
_SYNTH = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(NFFT) / NFFT)
_GROUPS = np.arange(0, NBINS, GROUP)  # the first bin of each group
_LEVEL = (32768.0 * 10 ** (LEVEL_DBFS / 20)) ** 2
_FAR = (32768.0 * 10 ** (FAR_DBFS / 20)) ** 2
_FRAMES = (MAX_LAG_MS + TAIL_MS) // 10 + 1  # far-end frames kept
# Parseval for one Hann-windowed 20 ms spectrum: the band's power back to a frame's mean square
_SCALE = 2.0 / (NFFT * np.sum(_HANN ** 2))


class DoubleTalkDetector:
    def __init__(self) -> None:
        self.gain = np.full(_GROUPS.size, 10 ** (INITIAL_GAIN_DB / 10))  # per group of bins
        self.onset = False  # a near-end sound is going on (ONSET_FRAMES of the last ONSET_WINDOW)
        self.near_frames = 0  # of the last ONSET_WINDOW frames, those with a near-end sound
        self.since_near = 1 << 30  # frames since the last one with a near-end sound
        self.share = 0.0  # the last frame's share of mic energy over the echo bound (for tests, --debug)
        self.near_level = 0.0  # and that energy, as a frame's mean square
        self._noise = _LEVEL  # the mic's noise floor, as a frame's mean square
        self._far_spec = np.zeros((_FRAMES, NBINS))  # power spectra, oldest first
        self._far_energy = np.zeros(_FRAMES)
        self._far_ring = np.zeros(NFFT)
        self._near_ring = np.zeros(NFFT)
        self._history = np.zeros(ONSET_WINDOW, bool)
        self._over: np.ndarray | None = None  # the bins of the last frame judged over the echo bound
        self.echo_reach = True  # the far end played within the echo's reach (or the delay is unknown)

    def far(self, frame: np.ndarray) -> None:
        """A 10 ms far-end frame (int16, 24 kHz) that was played."""
        x = frame.astype(np.float64)
        _push(self._far_ring, x)
        _push(self._far_spec, _power(self._far_ring))
        _push(self._far_energy, float(np.dot(x, x)) / x.size)

    def near(self, frame: np.ndarray, lag_ms: float | None = None) -> bool:
        """A 10 ms raw mic frame (int16, 24 kHz), after the far end played until it was captured;
        `lag_ms`: the echo's delay, once the echo path detector found it (unknown, nothing is judged
        or learnt: the bound would be the far end over all delays, far too loose to learn from).
        Returns `onset`."""
        x = frame.astype(np.float64)
        _push(self._near_ring, x)
        near, self._over, self.echo_reach = False, None, True
        if lag_ms is not None:
            near = self._judge(x, lag_ms)
        _push(self._history, near)
        self.since_near = 0 if near else self.since_near + 1
        self.near_frames = int(self._history.sum())
        self.onset = self.near_frames >= ONSET_FRAMES
        return self.onset

    def _judge(self, x: np.ndarray, lag_ms: float) -> bool:
        """Does this frame hold a near-end sound over an echo? (Learning the echo gain meanwhile.)"""
        # the frames played up to lag_ms + TAIL_MS ago, the newest included: the delay found is a
        # moment's (the streams' alignment moves by 10-40 ms in talk), and an echo that comes earlier
        # than the bound allows for is taken for a voice (bench/echo.py: 1 in 20 answers cut at its start)
        oldest = min(_FRAMES - 1, int((lag_ms + TAIL_MS) // 10))
        first, last = _FRAMES - 1 - oldest, _FRAMES
        if self._far_energy[first:last].max() <= _FAR:
            self.echo_reach = False
            return False  # no echo to tell a voice from: the canceller does not dampen one then
        if np.abs(x).max() >= CLIPPED:
            return False  # neither judged nor learnt from
        mic = _power(self._near_ring)
        played = self._far_spec[first:last].max(axis=0)
        far = _with_neighbours(played)
        bound = far * np.repeat(self.gain, GROUP)[:NBINS]
        over = mic > bound * 10 ** (MARGIN_DB / 10)
        self._over = over
        total = float(mic.sum())
        near_energy = float(mic[over].sum())
        self.share = near_energy / total if total > 0 else 0.0
        self.near_level = near_energy * _SCALE
        level = total * _SCALE
        self._noise = min(level, self._noise * 10 ** (NOISE_RISE_DB / 10)) if level > 0 else self._noise
        self._learn(mic, played)  # in every frame: a louder echo is followed within a few frames
        return (self.share >= NEAR_SHARE and self.near_level > _LEVEL
                and self.near_level > self._noise * 10 ** (NOISE_OVER_DB / 10))

    def near_end(self, cancelled: np.ndarray) -> np.ndarray:
        """The last 20 ms of the mic with the echo taken out: the raw mic in the bins over the echo
        bound (the near-end sound, which the canceller dampens), `cancelled` (the canceller's output
        for the same 20 ms) in the others; windowed for overlap-add at the 10 ms hop."""
        other = np.fft.rfft(cancelled * _SYNTH)
        if self._over is None:
            return np.fft.irfft(other, NFFT)
        mic = np.fft.rfft(self._near_ring * _SYNTH)
        kept = np.zeros(mic.size, bool)
        kept[_BINS] = self._over
        return np.fft.irfft(np.where(kept, mic, other), NFFT)

    def _learn(self, mic: np.ndarray, far: np.ndarray) -> None:
        """The echo gain per group: a peak of mic / far that falls slowly and rises only a little."""
        m, f = np.add.reduceat(mic, _GROUPS), np.add.reduceat(far, _GROUPS)
        sounding = f > 1e-3 * f.max() + 1e-9  # a group the far end hardly plays teaches nothing
        ratio = np.where(sounding, m / (f + 1e-9), 0.0)
        fallen = self.gain * 10 ** (-FALL_DB / 10)
        risen = np.minimum(ratio, self.gain * 10 ** (RISE_DB / 10))
        learnt = np.maximum(fallen, risen)
        self.gain = np.where(sounding, np.maximum(learnt, 10 ** (MIN_GAIN_DB / 10)), self.gain)

    def forget(self) -> None:
        """An echo path (newly) found: its gain is unknown again (the far end's recent sound is kept)."""
        self.gain[:] = 10 ** (INITIAL_GAIN_DB / 10)
        self._history[:] = False
        self.onset, self.near_frames = False, 0


def _push(ring: np.ndarray, new) -> None:
    """Shift `ring` (oldest first) along its first axis and put `new` last."""
    n = 1 if np.ndim(new) < ring.ndim else len(new)
    ring[:-n] = ring[n:]
    ring[-n:] = new


def _with_neighbours(spec: np.ndarray) -> np.ndarray:
    """Each bin's power, or a quarter of a neighbour's if higher. The far end's spectra are taken 10 ms
    apart and an echo's fall anywhere between: at a sound's onset a 20 ms window shifted by a few ms
    moves power between neighbouring bins, by up to 12 dB in one (a plain delayed echo in the
    leaking-speaker test started "double talk" in 2 of 8 runs, always in one bin). A quarter: no such
    onset replaying 8 runs' microphone and far end (4 without it) nor at 118 delays offline (80), and
    the user is heard as soon as without (the whole neighbour's power: 390 ms instead of 188 at the
    95th percentile, offline)."""
    out = spec.copy()
    np.maximum(out[1:], NEIGHBOUR * spec[:-1], out=out[1:])
    np.maximum(out[:-1], NEIGHBOUR * spec[1:], out=out[:-1])
    return out


def _power(ring: np.ndarray) -> np.ndarray:
    return np.abs(np.fft.rfft(ring * _HANN)[_BINS]) ** 2
