"""Exact transcripts of the simulator's own speech: it remembers what it said and recognises it.

The simulator cannot understand speech, but it knows every waveform it synthesised (`speech.
synthesize` is deterministic). A `Phrasebook` keeps the texts it spoke (`/v1/audio/speech`,
Realtime answers, `voicecli sim --phrase`) and, given an upload, finds the one whose audio it is,
so a test that plays the simulator's speech into a client gets the exact words back.

The fingerprint is a log spectrogram: 25 ms frames every 10 ms, 16 bands from 150 Hz to 4 kHz
(what survives a trip through 16 kHz, a high-pass filter or a noise suppressor), clamped 40 dB
under the clip's loudest band so background noise and silence look alike. Matching one phrase:
1. its voiced part (frames within 35 dB of the loudest) slides over the whole upload to the best
   normalised correlation, so any silence added or trimmed around it does not matter;
2. after removing the overall gain difference, the *worst* 50 ms window (each allowed ±20 ms of
   slack) gives the distance: its mean absolute difference in dB. One differing word is enough
   to push it up, while gain, resampling, a little noise and WebRTC's echo canceller / noise
   suppressor keep the same words near or under ~3 dB (pairs that differ by one word, such as
   "Hello there, friend." / "Hello there, Fred.", stay above ~5.4 dB; tests/test_sim_phrasebook.py);
3. sound within 20 dB of the phrase's peak outside the matched stretch means the upload holds
   more speech than the phrase (a longer sentence that starts the same way): no match.
Another voice mixed in louder than about -25 dB (an echo nobody cancelled) also ends in no match.
An upload whose voiced span is clearly shorter than a phrase's is not compared with it. A match
needs a distance under `ACCEPT_DB` and a lead of `MARGIN_DB` over the next phrase; texts with
the same waveform (the tone voice) cannot be told apart and never match. Otherwise the caller
falls back to its "[speech N s]" description.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from . import speech
from .vad import describe_speech

RATE = speech.RATE
HOP = RATE // 100  # 10 ms
WIN = RATE * 25 // 1000  # 25 ms
BANDS = np.geomspace(150.0, 4000.0, 17)
CLAMP_DB = 40.0  # the floor of every band, under the loudest band of the clip
VOICED_DB = 35.0  # a frame within this of the loudest is voiced…
SILENT_DBFS = -60.0  # …unless it is quieter than this
EXTRA_DB = 20.0  # sound this close to the utterance's peak, outside it, is more speech
WINDOW = 5  # frames per compared window (50 ms)
SLACK = 2  # frames each window may shift
ACCEPT_DB = 4.5
MARGIN_DB = 1.0
MAX_PHRASES = 512

_HANN = np.hanning(WIN)
_FREQS = np.fft.rfftfreq(WIN, 1 / RATE)
_EDGES = np.searchsorted(_FREQS, BANDS)


@dataclass
class Print:
    bands: np.ndarray  # frames × bands, dB, clamped
    level: np.ndarray  # frames: dBFS
    start: int  # voiced span, in frames
    end: int

    @property
    def voiced_ms(self) -> int:
        return (self.end - self.start) * 10


def fingerprint(pcm: bytes) -> Print | None:
    """The fingerprint of 24 kHz PCM16 audio, or None when it holds no sound."""
    x = speech.samples(pcm)
    n = (x.size - WIN) // HOP + 1
    if n < WINDOW:
        return None
    frames = np.lib.stride_tricks.sliding_window_view(x, WIN)[::HOP][:n] * _HANN
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    cum = np.concatenate([np.zeros((n, 1)), np.cumsum(power, axis=1)], axis=1)
    width = np.maximum(_EDGES[1:] - _EDGES[:-1], 1)
    bands = 10 * np.log10((cum[:, _EDGES[1:]] - cum[:, _EDGES[:-1]]).clip(0) / width + 1e-12)
    level = 10 * np.log10((frames**2).mean(axis=1) / (_HANN**2).mean() + 1e-12)
    voiced = np.flatnonzero(level > max(level.max() - VOICED_DB, SILENT_DBFS))
    if not voiced.size:
        return None
    bands = np.maximum(bands, bands.max() - CLAMP_DB)
    return Print(bands, level, int(voiced[0]), int(voiced[-1]) + 1)


def _best_lag(t: np.ndarray, u: np.ndarray) -> int:
    """Where in `u` (frames × bands) the zero-mean template `t` correlates best (normalised)."""
    n, count = len(t), t.size
    size = 1 << int(np.ceil(np.log2(len(u) + n)))
    num = np.fft.irfft(np.fft.rfft(u, size, axis=0) * np.conj(np.fft.rfft(t, size, axis=0)), size, axis=0)
    num = num[: len(u) - n + 1].sum(axis=1)
    c1 = np.concatenate([[0.0], np.cumsum(u.sum(axis=1))])
    c2 = np.concatenate([[0.0], np.cumsum((u * u).sum(axis=1))])
    s1, s2 = c1[n:] - c1[:-n], c2[n:] - c2[:-n]
    spread = np.sqrt(np.maximum(s2 - s1 * s1 / count, 1e-3 * count) * (t * t).sum())  # floor: flat padding
    return int(np.argmax(num / spread))


def distance(template: Print, upload: Print) -> float:
    """Worst-window spectral difference (dB) between a known utterance and an upload; inf when the
    upload holds more speech than the utterance (a longer sentence that starts the same way)."""
    t = template.bands[template.start : template.end]
    n = len(t)
    if n < WINDOW:
        return float("inf")
    pad = n + SLACK  # the utterance may hang over either end of the upload (trimmed silence)
    floor = upload.bands.min(axis=0)
    u = np.concatenate([np.tile(floor, (pad, 1)), upload.bands, np.tile(floor, (pad, 1))])
    here = _best_lag(t - t.mean(), u)
    level = template.level[template.start : template.end]
    voiced = level > level.max() - VOICED_DB
    gain = float(np.median((u[here : here + n] - t)[voiced]))
    # err[d][i]: mean |difference| of frame i with the upload shifted by d - SLACK frames
    lo, hi = max(0, here - SLACK), min(len(u) - n, here + SLACK)
    err = np.stack([np.abs(u[k : k + n] - gain - t).mean(axis=1) for k in range(lo, hi + 1)])
    kernel = np.ones(WINDOW) / WINDOW
    windows = np.stack([np.convolve(e, kernel, mode="valid") for e in err]).min(axis=0)
    counted = np.convolve(voiced, np.ones(WINDOW), mode="valid") > 0
    worst = float(windows[counted].max()) if counted.any() else float(windows.max())
    # Speech outside the matched stretch (beyond ~100 ms of slack) means a different, longer text.
    start = here - pad  # in upload frames
    outside = np.ones(len(upload.level), bool)
    outside[max(0, start - 10) : max(0, start + n + 10)] = False
    loud = upload.level[outside] > float(template.level.max()) + gain - EXTRA_DB
    return float("inf") if np.count_nonzero(loud) > WINDOW else worst


@dataclass
class _Entry:
    text: str
    sound: bytes = b""  # digest of its waveform: texts with the same one cannot be told apart
    print: Print | None = None


class Phrasebook:
    """What the simulator has said (bounded, most recent kept) and recognition of it."""

    def __init__(self, limit: int = MAX_PHRASES) -> None:
        self.limit = limit
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, text: str, pcm: bytes | None = None) -> None:
        """Remember `text` as spoken: its audio is `pcm` when given (`speech.synthesize(text)`),
        else made when first needed."""
        if not text.strip():
            return
        entry = self._entries.pop(text, None) or _Entry(text)
        if pcm is not None and not entry.sound:
            entry.sound, entry.print = hashlib.sha1(pcm).digest(), fingerprint(pcm)
        self._entries[text] = entry
        while len(self._entries) > self.limit:
            self._entries.popitem(last=False)

    def _print(self, entry: _Entry) -> tuple[bytes, Print | None]:
        if not entry.sound:
            pcm = speech.synthesize(entry.text)
            entry.sound, entry.print = hashlib.sha1(pcm).digest(), fingerprint(pcm)
        return entry.sound, entry.print

    def recognise(self, pcm: bytes) -> str | None:
        """The text whose speech `pcm` (24 kHz PCM16) is, or None when no phrase matches surely."""
        upload = fingerprint(pcm)
        if upload is None or not self._entries:
            return None
        scored: dict[bytes, tuple[float, set[str]]] = {}  # by waveform: texts that sound the same
        for entry in list(self._entries.values()):  # a copy: adds may come while this runs in a thread
            audio, known = self._print(entry)
            if known is None:
                continue
            if audio in scored:
                scored[audio][1].add(entry.text)
                continue
            if upload.voiced_ms < known.voiced_ms - max(200, 0.15 * known.voiced_ms):
                continue  # too short to hold it (noise can only lengthen the upload's voiced span)
            scored[audio] = (distance(known, upload), {entry.text})
        ranked = sorted(scored.values(), key=lambda s: s[0])
        if not ranked or ranked[0][0] > ACCEPT_DB or len(ranked[0][1]) > 1:
            return None  # nothing close, or two texts with one waveform (the tone voice)
        if len(ranked) > 1 and ranked[1][0] - ranked[0][0] < MARGIN_DB:
            return None
        return next(iter(ranked[0][1]))


PAUSE_MS = 250  # an upload with pauses this long is also read part by part (several sentences in one file)


def transcribe(book: Phrasebook | None, pcm: bytes) -> str:
    """What the simulator hears in `pcm`: the exact text when it is its own speech (per `book`),
    else `vad.describe_speech` ("[speech 1.23 s]", "" for silence). An upload that is not one
    phrase but has pauses is read part by part, each part as above, the texts joined: a recording
    of several of its sentences reads as those sentences."""
    text = book.recognise(pcm) if book is not None else None
    if text is not None:
        return text
    parts = _split_at_pauses(pcm) if book is not None else []
    if len(parts) > 1:
        return " ".join(t for t in (transcribe(book, part) for part in parts) if t)
    return describe_speech(pcm)


def _split_at_pauses(pcm: bytes) -> list[bytes]:
    """`pcm` cut in the middle of each silence of PAUSE_MS or more (10 ms frames under the VAD level)."""
    from .vad import _FRAME_BYTES, _frame_rms, level_for

    n = len(pcm) // _FRAME_BYTES
    if n < 2:
        return [pcm]
    frames = np.frombuffer(pcm[: n * _FRAME_BYTES], dtype="<i2").reshape(n, -1)
    voiced = np.flatnonzero(_frame_rms(frames) > level_for(0.5))
    if voiced.size < 2:
        return [pcm]
    gaps = np.flatnonzero(np.diff(voiced) * 10 >= PAUSE_MS)
    cuts = [int(voiced[g] + voiced[g + 1]) // 2 * _FRAME_BYTES for g in gaps]
    edges = [0, *cuts, len(pcm)]
    return [pcm[a:b] for a, b in zip(edges, edges[1:])]
