"""Interrupting a Realtime answer on the local VAD (full duplex with echo cancellation on).

The server's VAD hears the user late (its audio travels first, its decision comes back over the
network) and, on a leaking speaker, hears the canceller's idea of the user: while both talk, AEC3
suppresses much of the user's voice, so a sentence reaches the server in fragments and its VAD ends
the turn on the first one ("Stop," — then an answer starts over "wait a moment please").

So with echo cancellation on, the client runs the local VAD (Silero, `voicecli.audio.vad`) on the
cleaned signal it sends, and:
- on `voice.barge_in_ms` of voice while the assistant is busy, it stops the speaker and cancels /
  truncates at once (`Turns.barge_in`), without waiting for `input_audio_buffer.speech_started`;
- the server's `speech_started` then confirms it (`Turns.barge_in` is idempotent: no second cancel or
  truncate). A local start not confirmed within `CONFIRM_S` is a false start: counted, nothing resumed;
- a `speech_started` before the local VAD hears anything stops the assistant too (the canceller lets
  a little of the user's first syllable through while the assistant talks, enough for the server);
  if no words follow (nothing within `HOLD_WAIT_S`, or under `MIN_TURN_MS`) it was the assistant's
  echo: the server's buffer is cleared (no phantom turn) and counted. Where the canceller is likeliest
  to leak (just after a barge-in, early in an answer) the server's start alone stops nothing and the
  local VAD needs `MIN_TURN_MS` of voice; so too while the echo canceller's double-talk detector
  has heard no voice over the echo for half a second (`EchoCanceller.echo_only`: AEC3 re-converging
  after a double talk let bits of echo through 3.5 s after an interruption, and the server's VAD cut
  the next answer on them). The server's own `interrupt_response` is off: the client decides every
  interruption;
- from the confirmation (or a server-first barge-in) until the local VAD hears the user stop (and
  no sooner than `SETTLE_S` after the barge-in), the interruption is *held*: the session's turn
  detection is off (`turn_detection: null`, manual turns), so the server cannot end the turn on a
  fragment; then the buffer is committed, an answer asked for, and turn detection restored. The
  user's whole sentence is one turn and gets one answer (as LiveKit Agents and Pipecat let a local
  VAD own the turn end). Away from interruptions the server's VAD keeps the turns as configured.

The local VAD hears only what the canceller lets through, and AEC3 dampens the user's first
100-300 ms while the assistant talks (often all of "stop"). So the canceller also runs a double-talk
detector on the raw mic against what was played (`voicecli.audio.doubletalk`): its onset while the
assistant is busy is a barge-in too, like the local VAD's start, except in the careful window below
(bench/echo.py (e), before the detector's bound took in neighbouring bins: it cut the answer right
after an interruption at its start, 8 in 40; one cause found since is an echo delayed by part of a
frame, perhaps not the only one). The server's
`speech_started` then holds the turn even if the local VAD has not heard the voice yet (it will, a
few hundred ms after the speaker went quiet, when AEC3 lets it through); a hold in which it never
does is dropped as echo, as below.

`Interruption` is the decision logic, sans I/O with an injected clock; `LocalInterrupts` feeds it
from the mic pump and the session's events and carries out its actions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("voicecli")

CONFIRM_S = 1.0  # a local start the server has not confirmed by then was a false start
HOLD_WAIT_S = 1.5  # a hold in which the local VAD heard no speech by then gives the turn back
AFTER_CUT_S = 2.0  # the server's speech this soon after a barge-in is still the interruption: held too
# A held interruption ends no sooner than this after the barge-in: AEC3 lets the user's voice through
# whole only a few hundred ms after the speaker stopped, and a pause it makes then ("Stop, — wait a
# moment") is not the end of the turn (bench/echo.py (e): 1 in 4 tries cut there with the VAD's 500 ms).
SETTLE_S = 1.0
# A held "turn" shorter than this (first start to last stop) is not committed: after a double talk
# AEC3 re-converges for a second or two and lets bits of the next answer's echo through, 60-160 ms
# each, which the VAD may take for voice (bench/echo.py (e): a loop of phantom turns and answers).
MIN_TURN_MS = 200
# While the canceller is likeliest to leak (RECOVER_S after a barge-in, and the first ONSET_S of an
# answer's sound) an interruption needs MIN_TURN_MS of voice heard locally, and the server's start
# alone stops nothing (bench/echo.py (e): echo cut answers 0.3-0.8 s in, as 60-190 ms of "voice").
RECOVER_S, ONSET_S = 3.0, 1.0

# actions
BARGE_IN, HOLD, COMMIT, RELEASE, FALSE_START = "barge_in", "hold", "commit", "release", "false_start"
CLEAR = "clear"  # drop what the server buffered: it heard the assistant's echo, not the user


class Interruption:
    """Which of the actions above follow from local VAD events, the server's speech events and time."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.false_starts = 0
        self.echo_starts = 0  # server starts the local VAD never heard (counted like false starts)
        self.reset()

    def reset(self) -> None:
        """A new server session (its turn detection is the profile's again)."""
        self.pending: float | None = None  # when an unconfirmed local barge-in happened
        self.cut_at = float("-inf")  # when the assistant was last stopped
        self.held: float | None = None  # when the hold began
        self.suspect = False  # held on the server's word alone: stopped once the local VAD hears a voice
        self.heard = False  # the local VAD heard speech during the hold
        self.speaking = False  # the local VAD is inside speech
        self.end_ms: int | None = None  # held: where the speech last stopped (stream ms), not yet committed
        self.start_ms: int | None = None  # where the speech of this interruption began (stream ms)
        self.by_double_talk = False  # the pending barge-in came from the double-talk detector

    def local(self, kind: str, busy: bool, ms: int = 0) -> list[str]:
        """A local VAD event ("start" / "stop" at stream position `ms`; others are ignored); `busy`:
        the assistant is speaking or its answer is still coming."""
        if kind == "start":
            self.speaking, self.end_ms = True, None
            if self.start_ms is None or (self.held is None and self.pending is None):
                self.start_ms = ms
            if self.held is not None:
                self.heard = True
                if self.suspect and busy:
                    self.suspect, self.cut_at = False, self.clock()
                    return [BARGE_IN]
                return []
            if busy and self.pending is None:
                self.pending = self.cut_at = self.clock()
                return [BARGE_IN]
        elif kind == "stop":
            self.speaking = False
            if self.held is not None:
                self.end_ms = ms
                return self._end()
        return []

    def double_talk(self, busy: bool) -> list[str]:
        """The double-talk detector heard a near-end sound start over the assistant's echo."""
        if self.held is not None:
            if self.suspect and busy:  # held on the server's word: this is the voice that confirms it
                self.suspect, self.heard, self.cut_at = False, True, self.clock()
                return [BARGE_IN]
            return []
        if busy and self.pending is None:
            self.pending = self.cut_at = self.clock()
            self.by_double_talk = True
            return [BARGE_IN]
        return []

    def careful(self, playing_since: float | None) -> bool:
        """The canceller may be leaking: soon after a barge-in, or early in an answer's sound
        (`playing_since`: when it began, on this clock)."""
        now = self.clock()
        return now - self.cut_at < RECOVER_S or (playing_since is not None and now - playing_since < ONSET_S)

    def server_started(self, busy: bool, careful: bool = False) -> list[str]:
        """`input_audio_buffer.speech_started`; `careful`: see `careful()`."""
        if self.held is not None:
            return []
        if self.pending is not None:
            self.pending = None  # confirmed: the barge-in was done
            if self.by_double_talk:  # the local VAD may not hear the voice yet (the canceller dampens it)
                self.by_double_talk = False
                return self._hold()
            return self._hold() if self.speaking else []  # a short word already over: the server ends it
        if not busy:  # the answer is over; right after a barge-in it may be the interruption going on
            return self._hold() if self.clock() - self.cut_at < AFTER_CUT_S else []
        if careful and not self.speaking:  # held; stopped only if the local VAD hears a voice
            hold = self._hold()
            self.suspect = True
            return hold
        # the server first: most often the user's first syllable, of which the canceller lets a little
        # through while the assistant talks (the local VAD hears the voice only once the speaker has
        # stopped: waiting for it cost 0.7-1.3 s in bench/echo.py (c)); now and then the assistant's
        # echo. Stopped at once, held, and cleared below if no voice follows.
        self.cut_at = self.clock()
        return [BARGE_IN, *self._hold()]

    def server_stopped(self) -> list[str]:
        """`input_audio_buffer.speech_stopped`: while held, the server got there before turn detection
        was off (it has the turn now): give it back without a commit of our own."""
        if self.held is None:
            return []
        self.held = self.end_ms = None
        self.suspect = False
        return [RELEASE]

    def tick(self) -> list[str]:
        now = self.clock()
        if self.pending is not None and now - self.pending >= CONFIRM_S:
            self.pending, self.by_double_talk = None, False
            self.false_starts += 1
            return [FALSE_START]
        if self.held is not None and not self.heard and not self.speaking and now - self.held >= HOLD_WAIT_S:
            self.held, self.suspect = None, False  # the server heard what the local VAD did not: echo
            self.echo_starts += 1
            return [CLEAR, RELEASE]
        return self._end()

    def _hold(self) -> list[str]:
        self.held, self.heard, self.end_ms, self.suspect = self.clock(), self.speaking, None, False
        if not self.speaking:
            self.start_ms = None
        return [HOLD]

    def _end(self) -> list[str]:
        """The held turn is over once the local VAD heard it stop and the canceller has settled."""
        if self.held is None or self.end_ms is None or self.speaking or self.clock() - self.cut_at < SETTLE_S:
            return []
        self.held = None
        if self.start_ms is not None and self.end_ms - self.start_ms < MIN_TURN_MS:
            self.echo_starts += 1  # a click of echo, not words: no turn of it
            return [CLEAR, RELEASE]
        return [COMMIT]


class LocalInterrupts:
    """The local VAD on the audio sent (the same stream positions as `AudioTimeline`), and
    `Interruption`'s actions carried out on the session. `barge_in`: talk's own (speaker, cancel,
    truncate, history); `ended(end_ms, decided_ms)`: a held turn was committed, the speech ended at
    `end_ms` of the stream (for the latency clock)."""

    def __init__(self, voice, session, barge_in: Callable[[], Awaitable[None]],
                 ended: Callable[[int, int], None], clock: Callable[[], float] = time.monotonic, vad=None,
                 echo=None):
        self.session, self._barge_in, self._ended = session, barge_in, ended
        self.onsets = DoubleTalkOnsets(echo)
        if vad is None:
            from voicecli.voice.cascade import local_vad

            vad = local_vad(voice, barge_in=True)
        self.vad = vad
        self.barge_in_ms = self.vad.min_speech_ms
        self.logic = Interruption(clock)
        self._careful = False
        self._announce = True  # the session's turn detection without the server's own interruptions

    async def audio(self, pcm: bytes, turns) -> None:
        """A block just sent to the session (echo already removed); `turns`: voice.turns.Turns."""
        if self._announce:
            self._announce = False
            await self.session.hold_turn(False)
        playback = turns.playback
        self._careful = self.logic.careful(playback.first_played.get(playback.current_item or ""))
        self.vad.min_speech_ms = MIN_TURN_MS if self._careful else self.barge_in_ms
        if self.onsets.new() and not self._careful:
            await self._do(self.logic.double_talk(turns.busy))
        for event in self.vad.feed(pcm):
            log.debug("local vad: speech %s at %d ms (fed %d ms)", event.kind, event.ms, self.vad.position_ms)
            await self._do(self.logic.local(event.kind, turns.busy, event.ms))

    async def server_started(self, busy: bool) -> None:
        # the canceller's double-talk detector heard no voice over the echo: the server heard its leak
        echo_only = bool(getattr(self.onsets.echo, "echo_only", False))
        await self._do(self.logic.server_started(busy, self._careful or echo_only))

    async def server_stopped(self) -> None:
        await self._do(self.logic.server_stopped())

    async def tick(self) -> None:
        await self._do(self.logic.tick())

    def reset(self) -> None:
        """The connection was replaced: positions count from 0, the new session detects turns itself."""
        self.vad.reset()
        self.logic.reset()
        self._announce = True

    async def _do(self, actions: list[str]) -> None:
        for action in actions:
            log.debug("barge-in: %s", action)
            if action == BARGE_IN:
                await self._barge_in()
            elif action == HOLD:
                await self.session.hold_turn(True)
            elif action == COMMIT:
                await self.session.commit()
                await self.session.hold_turn(False)
                self._ended(self.logic.end_ms, self.vad.position_ms)
            elif action == CLEAR:
                await self.session.clear()
                log.debug("barge-in: no words after it (the assistant's echo): the server's buffer dropped "
                          "(%d so far)", self.logic.echo_starts)
            elif action == RELEASE:
                await self.session.hold_turn(False)
            elif action == FALSE_START:
                log.debug("barge-in: false start (the server did not confirm the local start within %.0f s; "
                          "%d so far)", CONFIRM_S, self.logic.false_starts)


class DoubleTalkOnsets:
    """New onsets of the canceller's double-talk detector since the last look (none without one)."""

    def __init__(self, echo=None):
        self.echo = echo if getattr(echo, "double_talk", None) is not None else None
        self._seen = self.echo.near_onsets if self.echo is not None else 0

    def new(self) -> bool:
        if self.echo is None or self.echo.near_onsets == self._seen:
            return False
        self._seen = self.echo.near_onsets
        return True


class ServerInterrupts:
    """Without echo cancellation (or in a cascade, or push-to-talk): the session's own speech
    events interrupt the assistant, as they always did. With echo cancellation (a cascade on a
    leaking speaker), the double-talk detector's onset interrupts it too (the local VAD that makes
    the cascade's speech events hears the user only once the canceller lets them through), outside
    the careful window (`Interruption.careful`)."""

    def __init__(self, barge_in: Callable[[], Awaitable[None]], echo=None,
                 clock: Callable[[], float] = time.monotonic):
        self._barge_in = barge_in
        self.onsets = DoubleTalkOnsets(echo)
        self.logic = Interruption(clock)  # only its careful window

    async def audio(self, pcm: bytes, turns) -> None:
        if not self.onsets.new() or not turns.busy:
            return
        playback = turns.playback
        if self.logic.careful(playback.first_played.get(playback.current_item or "")):
            return
        log.debug("barge-in: double talk")
        self.logic.cut_at = self.logic.clock()
        await self._barge_in()

    async def server_started(self, busy: bool) -> None:
        if busy:
            self.logic.cut_at = self.logic.clock()
        await self._barge_in()

    async def server_stopped(self) -> None:
        pass

    async def tick(self) -> None:
        pass

    def reset(self) -> None:
        pass


def local_interrupts(engine: str, voice, audio, session, barge_in: Callable[[], Awaitable[None]],
                     ended: Callable[[int, int], None]) -> LocalInterrupts | ServerInterrupts:
    """The local VAD interrupts a Realtime answer when the echo canceller runs (a leaking speaker may
    be heard) and the server detects turns; otherwise the session's speech events do."""
    echo = getattr(audio, "echo", None)
    if engine == "realtime" and echo is not None and voice.turn_detection != "none":
        return LocalInterrupts(voice, session, barge_in, ended, echo=echo)
    return ServerInterrupts(barge_in, echo)
