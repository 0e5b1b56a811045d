"""Echo cancellation on the microphone path: WebRTC's audio processing module (AEC3, noise
suppression, high-pass filter, gain control), as LiveKit's console uses it.

The far-end reference is exactly what the speaker handed to the device (`far_end`, called from the
audio output thread with every block the playback buffer gave out, silence included, so render
and capture stay aligned). The near end (`process`) is the 24 kHz microphone signal; both are cut
into the 10 ms frames the module requires. The module itself is touched from one thread only: the
output thread just queues its blocks, and `process` feeds them to the module before each capture
frame, in the order they were played. Each side's frames carry the time they were played or
captured, and a capture frame is preceded by exactly the far-end frames played before it was captured:
when the event loop falls behind and microphone blocks arrive in a burst, the module still sees the
two streams interleaved as they happened (fed all at once, the echo path would seem to jump by the
length of the burst, and AEC3 would let the echo through while it re-estimates the delay).

With headphones there is no echo path, and AEC3's suppressor then only dampens a user talking over
the answer (≈ 40 dB off the first 200 ms). The echo path detector (`echopath.py`) watches the raw
microphone against the same far-end frames; while it finds no echo path, the frames sent on are
those of a second module with the same noise suppression and high-pass filter but no echo
cancellation. AEC3 still gets both streams all the time, so it is converged when an echo path
appears and the detector switches back.

With an echo path, AEC3's suppressor also takes 10-60 dB off a user talking over the answer, and
holds them down for 100-300 ms after the answer stopped: the server hears "Stop, wait" as "wait".
So while the double-talk detector (`doubletalk.py`) hears the user over the echo, the frames sent
are the raw microphone in the bins its echo bound says hold the user, AEC3's output in the others
(20 ms windows, overlap-added: 10 ms later than AEC3's frames for as long as it lasts); and once the
far end has been silent past the echo's reach, there is no echo left to cancel, and the plain
module's frames are sent, as with headphones.

`livekit` (the wheel carries the native module; no server is involved) is imported here only,
lazily by `talk`: `--version` and `infer` never pay for it.
"""

from __future__ import annotations

import collections
import logging
import threading
import time

import numpy as np

from voicecli.audio.doubletalk import ONSET_WINDOW, DoubleTalkDetector
from voicecli.audio.echopath import EchoPathDetector
from voicecli.audio.pcm import RATE, to_int16

log = logging.getLogger("voicecli")

FRAME = RATE // 100  # 10 ms: the only frame size the module accepts
HALF_SAMPLE = 0.5 / RATE  # times computed on both sides from sample counts compare equal within this
MAX_QUEUED = 300  # far-end frames (3 s) kept while the mic side stalls (a busy loop, a mic reopening)
# The noise suppressor learns the noise floor from what comes before speech. A microphone that gives
# digital silence until someone speaks (virtual devices, noise-gated and Bluetooth mics) leaves it
# nothing to learn from, and it then reshapes the whole first utterance: with the speaker's (silent)
# reference flowing, as in talk, 1 of 3 first sentences was still recognised by the simulator. Half a
# second of dither (about -80 dBFS) with a silent reference beside it, fed before the first real
# frame and its output dropped, gives it a floor to start from: 3 of 3.
PRIME_FRAMES, PRIME_LEVEL = 50, 3.0
HOLD_FRAMES = 30  # 300 ms: the longest a mic onset at the start of an answer waits for the detector
HOLD_LEVEL = 32768 * 10 ** (-50 / 20)  # a frame this loud may start a VAD (≈ -40 dBFS), with 10 dB to spare
MUTE_FRAMES = 100  # 1 s of the assistant's speech after an echo path appeared
ECHO_ONLY_FRAMES = 50  # 500 ms with an echo and no near-end sound over it: a voice heard now is a leak
CLEAN, PLAIN, NEAR = "clean", "plain", "near"  # what is sent: AEC3's frame, the bypass's, the near-end sound


class EchoUnavailable(RuntimeError):
    """The audio processing module cannot be loaded on this platform."""


def load_module():
    """The `livekit.rtc` module, or EchoUnavailable with the reason."""
    try:
        from livekit import rtc
    except Exception as exc:  # ImportError, or a native library that fails to load
        raise EchoUnavailable(f"echo cancellation needs the 'livekit' package ({exc.__class__.__name__}: {exc})") from exc
    return rtc


class EchoCanceller:
    def __init__(self, *, echo_cancellation: bool = True, noise_suppression: bool = True,
                 auto_gain_control: bool = False, high_pass_filter: bool = True, delay_ms: int = 0,
                 detect_echo_path: bool = True):
        self._rtc = load_module()
        self._apm = self._rtc.AudioProcessingModule(
            echo_cancellation=echo_cancellation, noise_suppression=noise_suppression,
            high_pass_filter=high_pass_filter, auto_gain_control=auto_gain_control)
        # the bypass: the same processing without echo cancellation, used while no echo path is found
        self.path = EchoPathDetector() if echo_cancellation and detect_echo_path else None
        self._plain = self._rtc.AudioProcessingModule(
            echo_cancellation=False, noise_suppression=noise_suppression, high_pass_filter=high_pass_filter,
            auto_gain_control=auto_gain_control) if self.path is not None else None
        self.bypassed = False  # no echo path found: the canceller is bypassed
        self.mode = CLEAN  # what the last frame sent was: CLEAN, PLAIN or NEAR (see _choose)
        self._ola = np.zeros(FRAME)  # the near-end sound's overlap-add tail
        self._from: np.ndarray | None = None  # the frame the near-end sound fades in from
        self._last = (np.zeros(FRAME, np.int16), np.zeros(FRAME, np.int16))  # last (clean, plain) frames
        self._kept = self._last  # (clean, plain) of the frame the near-end sound keeps back
        self._waiting: list[tuple] = []  # (clean, plain, near-end window): frames awaiting the detector
        # the user talking over the answer, judged on the raw mic (AEC3 dampens their first 100-300 ms)
        self.double_talk = DoubleTalkDetector() if self.path is not None else None
        self.near_onsets = 0  # how many times the detector heard the user start over the echo (read by talk)
        self._held: list[tuple[np.ndarray, np.ndarray]] = []  # (clean, plain) frames awaiting a verdict
        self._mute = 0
        self._told: str | None = None  # the detector state last logged
        self.delay_ms = 0
        self.set_delay(delay_ms)
        self._lock = threading.Lock()  # guards only the far-end queue
        self._far: collections.deque[tuple[float, np.ndarray]] = collections.deque(maxlen=MAX_QUEUED)
        self._far_rest = np.zeros(0, np.int16)  # output thread only
        self._near_rest = np.zeros(0, np.int16)  # capture side only
        self.last_level_input = 0.0  # RMS (0..1 of full scale) of the last frame before / after processing
        self.last_level_output = 0.0
        if noise_suppression:
            dither = np.random.default_rng(0).normal(0.0, PRIME_LEVEL, PRIME_FRAMES * FRAME).astype(np.int16)
            silence = np.zeros(FRAME, np.int16).tobytes()
            for i in range(0, dither.size, FRAME):
                self._apm.process_reverse_stream(self._rtc.AudioFrame(silence, RATE, 1, FRAME))
                self._apm.process_stream(self._rtc.AudioFrame(dither[i: i + FRAME].tobytes(), RATE, 1, FRAME))
                if self._plain is not None:
                    self._plain.process_stream(self._rtc.AudioFrame(dither[i: i + FRAME].tobytes(), RATE, 1, FRAME))

    def set_delay(self, delay_ms: float) -> None:
        """The time from a sample handed to the speaker until its echo reaches `process`: PortAudio's
        output latency plus input latency. A hint: the module also estimates the delay itself."""
        self.delay_ms = max(0, min(500, int(round(delay_ms))))
        self._apm.set_stream_delay_ms(self.delay_ms)

    def device_changed(self) -> None:
        """The microphone or speaker was replaced: the echo path must be found (or ruled out) anew,
        with the canceller in force meanwhile (unplugged headphones may have left the laptop's speakers)."""
        if self.path is not None:
            self.path.reset()
            self._told = None

    @property
    def echo_only(self) -> bool:
        """An echo may be in the mic and the double-talk detector has heard nothing over it for
        ECHO_ONLY_FRAMES: a voice the server's VAD hears now is the canceller letting the echo
        through (after a double talk AEC3 re-converges for seconds, and lets bits of it through)."""
        return self._echoing and self.double_talk.since_near >= ECHO_ONLY_FRAMES

    @property
    def _echoing(self) -> bool:
        """An echo path is known and the far end played within its reach: an echo may be in the mic."""
        return (self.double_talk is not None and self.path.state == EchoPathDetector.FOUND
                and self.double_talk.echo_reach)

    @property
    def echo_path(self) -> str:
        """For --debug and the bench: what the detector knows ("off" when it does not run)."""
        return self.path.state if self.path is not None else "off"

    # -- output thread ------------------------------------------------------------------------------

    def far_end(self, block: np.ndarray) -> None:
        """A block of int16 samples at 24 kHz that was just handed to the speaker."""
        now, held = time.monotonic(), self._far_rest.size
        data = np.concatenate([self._far_rest, block]) if held else block
        whole = data.size // FRAME * FRAME
        # each frame with the time its last sample was handed over
        frames = [(now + (i + FRAME - held) / RATE, data[i: i + FRAME].copy()) for i in range(0, whole, FRAME)]
        self._far_rest = data[whole:].copy()
        if frames:
            with self._lock:
                self._far.extend(frames)

    # -- capture side -------------------------------------------------------------------------------

    def process(self, block: np.ndarray, captured_at: float | None = None) -> np.ndarray:
        """Microphone samples (int16, 24 kHz) in → the same signal with the echo removed, out.
        `captured_at`: the monotonic time the block's last sample was captured (None: now, so every
        far-end frame queued so far comes first).

        Whole 10 ms frames are processed; a remainder waits for the next block, so the output can be
        up to 10 ms shorter (or longer) than the input for one call, never lost. (While the echo path
        detector decides about a mic onset, up to HOLD_FRAMES are held back, and come out together;
        while the double-talk detector decides about a near-end sound, up to ONSET_WINDOW - 1.)"""
        data = np.concatenate([self._near_rest, block]) if self._near_rest.size else block
        whole = data.size // FRAME * FRAME
        self._near_rest = data[whole:].copy()
        if not whole:
            return np.zeros(0, np.int16)
        out = np.empty(whole, np.int16) if self._plain is None else []
        for i in range(0, whole, FRAME):
            # the far end played until this frame's last sample was captured (the block's last sample is data's)
            self._feed_far_end(None if captured_at is None else captured_at - (data.size - i - FRAME) / RATE)
            raw = data[i: i + FRAME]
            frame = self._rtc.AudioFrame(raw.tobytes(), RATE, 1, FRAME)
            self._apm.process_stream(frame)
            clean = np.frombuffer(frame.data, dtype=np.int16)
            if self._plain is None:
                out[i: i + FRAME] = clean
            else:
                out += self._choose(raw, clean)
        if self._plain is not None:  # frames held while the detector decides come out later, all at once
            out = np.concatenate(out) if out else np.zeros(0, np.int16)
        self.last_level_input = _rms(data[whole - FRAME: whole])
        if out.size:
            self.last_level_output = _rms(out[-FRAME:])
        return out

    def _choose(self, raw: np.ndarray, clean: np.ndarray) -> list[np.ndarray]:
        """The frames to send for this one: the echo-cancelled frame; the plain one while no echo
        path is found, or no echo can be in the mic; the near-end sound while the user talks over
        the echo (`_send`).

        AEC3 itself, after a long time without an echo, lets a new echo through until it has adapted
        (the first 100–200 ms, enough for a VAD). So when an echo path may have appeared (an answer
        starting after the canceller was bypassed) and the mic gets loud, its frames are held until
        the detector says whose voice it is (at most HOLD_FRAMES: then the user's); an echo is sent
        as silence, and so is the mic for MUTE_FRAMES of the assistant's speech after an echo path
        appeared, while AEC3 adapts."""
        path = self.path
        before = path.state
        state = path.near(raw)
        self._tell(state)
        self._judge_double_talk(raw, state, before)
        # while an echo may be in the mic the plain module gets the cancelled frame: its noise
        # suppressor, fed the echo, learnt the assistant's voice as noise and took 5-9 dB off a user
        # speaking once the echo ended (offline, the simulator's voice over its own echo)
        plain_frame = self._rtc.AudioFrame((clean if self._echoing else raw).tobytes(), RATE, 1, FRAME)
        self._plain.process_stream(plain_frame)
        plain = np.frombuffer(plain_frame.data, dtype=np.int16)
        silenced: list[np.ndarray] = []
        if state == path.FOUND and before != path.FOUND and path.bypassed_once:
            # held frames were the echo: silence in their place keeps the server's audio clock
            self._mute, silenced, self._held = MUTE_FRAMES, [np.zeros(FRAME, np.int16)] * len(self._held), []
        if self._held or (path.probation and path.far_speaking and path.near_loud(1, level=HOLD_LEVEL)):
            self._held.append((clean, plain))
            if state == path.UNKNOWN and len(self._held) < HOLD_FRAMES:
                return []
            held, self._held = self._held, []
            late = self._leave_near()
            self.mode, self.bypassed, self._last = PLAIN, True, (clean, plain)
            return late + [p for _, p in held]  # the user's voice (or undecided: it wins)
        if self._mute and path.far_speaking:
            self._mute -= 1
            late = self._leave_near()
            self.mode, self.bypassed, self._last = CLEAN, False, (clean, plain)
            return late + silenced + [np.zeros(FRAME, np.int16)]
        self.bypassed = state == path.NONE
        if self.bypassed or (state == path.FOUND and not self.double_talk.echo_reach):
            return self._send(PLAIN, clean, plain)  # no echo can be in the mic: nothing to cancel
        if state == path.FOUND and self.double_talk.near_frames:  # the onset's frames among them
            return self._send(NEAR, clean, plain, sure=self.double_talk.onset)
        return self._send(CLEAN, clean, plain)

    def _send(self, mode: str, clean: np.ndarray, plain: np.ndarray, sure: bool = True) -> list[np.ndarray]:
        """This frame in `mode`, crossfaded over one frame when the mode changes (no click).

        The near-end sound comes by overlap-add of 20 ms windows, so one frame late: the frame it
        starts on is kept back, and given out with the one it ends on. A frame the detector heard a
        near-end sound in, before its onset (`sure`), waits for it (up to ONSET_WINDOW - 1 frames):
        the user's first sound is sent too if it is the user; if not, the frames go out as they were."""
        window = None
        if mode == NEAR or self.mode == NEAR:  # AEC3's last 20 ms for the bins not kept raw
            window = self.double_talk.near_end(np.concatenate([self._last[0], clean]).astype(np.float64))
        self._last = (clean, plain)
        if mode == NEAR:
            self._waiting.append((clean, plain, window))
            if sure:
                waiting, self._waiting = self._waiting, []
                return [f for c, p, w in waiting for f in self._near(c, p, w)]
            if len(self._waiting) < ONSET_WINDOW:
                return []
            return self._plain_or_clean(CLEAN, *self._waiting.pop(0))  # the oldest cannot start an onset now
        waiting, self._waiting = self._waiting, []
        waiting.append((clean, plain, window))
        return [f for c, p, w in waiting for f in self._plain_or_clean(mode, c, p, w)]

    def _near(self, clean: np.ndarray, plain: np.ndarray, window: np.ndarray) -> list[np.ndarray]:
        """One frame's window of the near-end sound in; the frame before it out (none on the first)."""
        was, self.mode = self.mode, NEAR
        if was != NEAR:
            self._ola, self._from = window[FRAME:], (clean if was == CLEAN else plain)
            self._kept = (clean, plain)
            return []
        out, self._ola = self._ola + window[:FRAME], window[FRAME:]
        if self._from is not None:
            out, self._from = _crossfade(self._from, out), None
        self._kept = (clean, plain)
        return [to_int16(out)]

    def _plain_or_clean(self, mode: str, clean: np.ndarray, plain: np.ndarray,
                        window: np.ndarray | None) -> list[np.ndarray]:
        was, self.mode = self.mode, mode
        new = clean if mode == CLEAN else plain
        if was == NEAR:  # the frame kept back, then this one
            late = self._ola + (window[:FRAME] if window is not None else 0.0)
            if self._from is not None:  # it started and ended on the same frame
                late, self._from = self._from.astype(np.float64), None
            then = self._kept[0] if mode == CLEAN else self._kept[1]
            return [to_int16(_crossfade(late, then)), new]
        if was == mode:
            return [new]
        return [to_int16(_crossfade(clean if was == CLEAN else plain, new))]

    def _leave_near(self) -> list[np.ndarray]:
        """What is kept back: frames waiting for the detector's verdict (as they were), and the frame
        the near-end sound has not given out yet (its overlap-add tail alone)."""
        waiting, self._waiting = self._waiting, []
        out = [f for c, p, w in waiting for f in self._plain_or_clean(CLEAN, c, p, w)]
        if self.mode == NEAR:
            late, self._from = (self._ola if self._from is None else self._from), None
            out.append(to_int16(late))
        return out

    def _judge_double_talk(self, raw: np.ndarray, state: str, before: str) -> None:
        """Feed the double-talk detector; it judges only once an echo path (its delay) is known, and a
        newly found echo path has a gain of its own to learn."""
        found = state == EchoPathDetector.FOUND
        if found and before != EchoPathDetector.FOUND:
            self.double_talk.forget()
        was = self.double_talk.onset
        if self.double_talk.near(raw, self.path.lag_ms if found else None) and not was:
            self.near_onsets += 1
            log.debug("double talk: a near-end sound over the echo (%.0f %% of the mic's energy)",
                      100 * self.double_talk.share)

    def _tell(self, state: str) -> None:
        """--debug: the detector's verdicts, once each (not its quick re-check at every answer)."""
        if state == EchoPathDetector.UNKNOWN or state == self._told:
            return
        self._told = state
        if state == EchoPathDetector.NONE:
            log.debug("echo path: none detected, canceller bypassed")
        else:
            lag = self.path.lag_ms
            log.debug("echo path found%s: canceller in force", f" ({lag:.0f} ms)" if lag is not None else "")

    def _feed_far_end(self, until: float | None) -> None:
        """The far-end frames played up to `until` (all of them if None), oldest first."""
        with self._lock:
            frames = []
            while self._far and (until is None or self._far[0][0] <= until + HALF_SAMPLE):
                frames.append(self._far.popleft()[1])
        for far in frames:
            self._apm.process_reverse_stream(self._rtc.AudioFrame(far.tobytes(), RATE, 1, FRAME))
            if self.path is not None:
                self.path.far(far)
                self.double_talk.far(far)


def _crossfade(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    ramp = np.linspace(0.0, 1.0, FRAME)
    return old * (1.0 - ramp) + new * ramp


def _rms(x: np.ndarray) -> float:
    if not x.size:
        return 0.0
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) / 32768.0
