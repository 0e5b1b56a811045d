"""The assistant's side of a voice conversation: items received, what of them was heard, turn latency.

`Turns` follows the Realtime responses (neutral events in) and the playback buffer (how many samples
of each item the device was handed), and answers the questions a barge-in and a transcript ask:
which item to cut and where (played, clamped to what was received — pipecat #2106), which late
deltas to drop, when an answer is over and heard so it can be written, and what part of an
interrupted answer was heard. No I/O and no clock of its own: the clocks are injected, so tests
need no sleeps.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from voicecli.events import AudioDelta, ResponseStarted, TextDelta, Transcript, TurnEnd, Usage

BYTES_PER_MS = 48  # PCM16 mono 24 kHz
RATE = 24000


class Playback(Protocol):
    """What `Turns` needs of the playback buffer (voicecli.audio.speaker.PlaybackBuffer)."""

    played: dict[str, int]  # item id → samples handed to the device
    first_played: dict[str, float]
    current_item: str | None

    def push(self, item_id: str, pcm: bytes) -> None: ...
    def flush(self) -> str | None: ...
    def pending(self, item_id: str | None = None) -> int: ...
    def end(self, item_id: str) -> None: ...

    @property
    def active(self) -> bool: ...


@dataclass
class AssistantItem:
    item_id: str
    response_id: str | None
    start: float  # wall-clock seconds, for the transcript
    text: str = ""  # transcript (or text) received so far
    final_text: str | None = None
    received: int = 0  # audio bytes received
    done: bool = False  # its response has ended
    interrupted: bool = False
    failed: bool = False  # its response failed (in a cascade: text-to-speech broke, or the text model)
    played_ms: int | None = None  # where it was cut, when interrupted
    played_bytes: int | None = None  # the same, exactly
    truncated: bool = False
    usage: Usage | None = None
    # spoken sentence by sentence (cascade): (audio byte where each starts, its text); None for Realtime
    sentences: list[tuple[int, str]] | None = None

    @property
    def said(self) -> str:
        return self.final_text if self.final_text is not None else self.text


@dataclass
class TurnClock:
    """Latency of one turn: end of user speech → first audio received → first sample played.

    `since` names where the clock started: "end of speech" (where the user's speech ended in the
    audio, by the VAD's own estimate — the turn-end silence included), or something else when that
    is not known ("stop decision": the VAD's decision, the silence left out; "line sent"…)."""

    end: float | None = None
    first_audio: float | None = None
    item: str | None = None
    reported: bool = False
    since: str = "end of speech"


class AudioTimeline:
    """When the audio sent to a voice session was captured: a stream position (ms of audio sent
    since the session's stream began — what a VAD's events and Realtime's `audio_end_ms` count)
    → the monotonic time its sample was captured. So the latency clock can start where the speech
    ended, not when the VAD decided that it had (`vad_silence_duration_ms` later)."""

    def __init__(self, keep: int = 3000, bytes_per_ms: int = BYTES_PER_MS):
        self.blocks: deque[tuple[float, float, float]] = deque(maxlen=keep)  # (start ms, end ms, captured)
        self.sent_ms = 0.0
        self.bytes_per_ms = bytes_per_ms

    def sent(self, nbytes: int, captured: float) -> None:
        """A block of `nbytes` went to the session; `captured` is when its last sample arrived."""
        start, self.sent_ms = self.sent_ms, self.sent_ms + nbytes / self.bytes_per_ms
        self.blocks.append((start, self.sent_ms, captured))

    def reset(self) -> None:
        """A new stream (a new Realtime session): positions count from 0 again."""
        self.blocks.clear()
        self.sent_ms = 0.0

    def time_of(self, ms: float) -> float | None:
        """The capture time of stream position `ms`, or None if it is not (or no longer) known."""
        for start, end, captured in reversed(self.blocks):
            if start <= ms <= end:
                return captured - (end - ms) / 1000
            if end < ms:
                break
        return None


@dataclass(frozen=True)
class Cut:
    """What a barge-in has to tell the server: cancel the running response, truncate an item."""

    cancel: bool = False
    truncate: tuple[str, int] | None = None  # (item id, audio_end_ms)


@dataclass(frozen=True)
class Heard:
    """One finished assistant answer as the user heard it."""

    item: AssistantItem
    text: str
    interrupted: bool


class Turns:
    def __init__(self, playback: Playback, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time):
        self.playback = playback
        self.clock, self.wall = clock, wall
        self.items: dict[str, AssistantItem] = {}
        self.order: list[str] = []  # items not yet finished, in arrival order
        self.response_id: str | None = None
        self.in_progress = False
        self.cancelled: set[str] = set()  # responses whose late deltas are dropped
        self.usage: Usage | None = None
        self.turn = TurnClock()

    # -- events from the session ----------------------------------------------------------------

    def feed(self, event) -> str | None:
        """Follow one session event; returns the assistant's partial text when it grew."""
        if isinstance(event, AudioDelta):
            self._audio(event)
        elif isinstance(event, Transcript) and event.role == "assistant":
            return self._text(event.item_id, event.text, event.final)
        elif isinstance(event, TextDelta):
            return self._text(event.item_id, event.text, False)
        elif isinstance(event, ResponseStarted):
            self.response_id, self.in_progress, self.usage = event.response_id, True, None
            if self.turn.end is None:  # a response we did not see the speech end of (tool follow-up)
                self.turn = TurnClock(end=self.clock(), since="response start")
        elif isinstance(event, Usage):
            self.usage = event
        elif isinstance(event, TurnEnd):
            self._response_done(event)
        return None

    def start_clock(self, at: float | None = None, since: str = "end of speech") -> None:
        """The user stopped speaking (at `at`, on this clock: where the speech ended), committed a
        recording or sent a line (now): the turn clock starts. `since` names that moment."""
        self.turn = TurnClock(end=self.clock() if at is None else at, since=since)

    def speech_stopped(self, timeline: AudioTimeline, speech_end: float | None, decided: float,
                       input_latency: float) -> None:
        """The clock starts where the user's speech ended — `speech_end`, a position in the audio sent,
        mapped to when that audio was captured, less the input device's latency — not when the VAD
        decided so, the turn-end silence later. When the end is not known (None: semantic VAD), it
        starts where the stop was decided (`decided`), and the latency line says so."""
        since = "end of speech" if speech_end is not None else "stop decision (the turn-end silence not counted)"
        at = timeline.time_of(speech_end if speech_end is not None else decided)
        if at is None:  # not a position in the audio sent (an old one, or the stream restarted)
            self.start_clock(since="stop decision received (the turn-end silence not counted)")
        else:
            self.start_clock(at=at - input_latency, since=since)

    def _audio(self, event: AudioDelta) -> None:
        if event.response_id in self.cancelled or not event.item_id:
            return  # late audio of a cancelled response
        item = self._item(event.item_id, event.response_id)
        if event.spoken is not None:
            item.sentences = [*(item.sentences or []), (item.received, event.spoken)]
        item.received += len(event.pcm)
        if self.turn.first_audio is None and event.pcm:
            self.turn.first_audio, self.turn.item = self.clock(), event.item_id
        self.playback.push(event.item_id, event.pcm)

    def _text(self, item_id: str | None, text: str, final: bool) -> str | None:
        if not item_id:
            return None
        known = self.items.get(item_id)
        if (known.response_id if known else self.response_id) in self.cancelled:
            return None  # late text of a cancelled response
        item = self._item(item_id, self.response_id)
        if final:
            item.final_text = text
            return None
        item.text += text
        return item.text

    def _item(self, item_id: str, response_id: str | None) -> AssistantItem:
        item = self.items.get(item_id)
        if item is None:
            item = self.items[item_id] = AssistantItem(item_id, response_id or self.response_id, self.wall())
            self.order.append(item_id)
        return item

    def _response_done(self, event: TurnEnd) -> None:
        rid = event.response_id
        ended = []
        for item in self.items.values():
            if (item.response_id == rid or item.response_id is None) and not item.done:
                ended.append(item.item_id)
            if item.response_id == rid or item.response_id is None:
                item.done = True
                item.usage = self.usage
                if event.status == "cancelled":
                    item.interrupted = True
                item.failed = event.status == "failed"
        if rid == self.response_id:
            self.in_progress = False
        self._audio_ended(ended)

    def _audio_ended(self, item_ids: list[str]) -> None:
        """The one place where an item's audio is known to be complete: the playback buffer then
        plays a tail shorter than its prebuffer instead of waiting for more forever."""
        for item_id in item_ids:
            self.playback.end(item_id)

    def lost(self) -> None:
        """The connection went away: what was running will never finish."""
        if self.in_progress and self.response_id:
            self.cancelled.add(self.response_id)
        self.in_progress = False
        ended = [i.item_id for i in self.items.values() if not i.done]
        for item in self.items.values():
            item.done = True
        self._audio_ended(ended)

    # -- barge-in -------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self.in_progress or self.playback.active

    def barge_in(self) -> Cut:
        """Stop the assistant now: flush the speaker; say what to cancel and where to truncate."""
        cut = self.playback.flush()
        cancel = False
        if self.in_progress and self.response_id and self.response_id not in self.cancelled:
            self.cancelled.add(self.response_id)
            cancel = True
            for item in self.items.values():
                if item.response_id == self.response_id:
                    item.interrupted = True
        cut = cut or self.playback.current_item  # ran dry mid-response: the last item played
        item = self.items.get(cut) if cut else None
        if item is None or item.truncated:
            return Cut(cancel)
        # what the device was handed, plus the faded tail it is about to get
        samples = self.playback.played.get(cut, 0) + self.playback.pending(cut)
        played = samples * 1000 // RATE
        received = item.received // BYTES_PER_MS
        end_ms = min(played, received)  # never past what the server sent (pipecat #2106)
        if end_ms >= received and item.done:
            return Cut(cancel)  # it was heard to the end: nothing to cut
        item.interrupted, item.played_ms, item.truncated = True, end_ms, True
        item.played_bytes = min(samples * 2, item.received)
        return Cut(cancel, (cut, end_ms))

    # -- finished answers -----------------------------------------------------------------------

    def finished(self, force: bool = False) -> list[Heard]:
        """Answers whose response is over and whose audio was played (or cut), in order, once each."""
        out: list[Heard] = []
        while self.order:
            item = self.items[self.order[0]]
            pending = self.playback.pending(item.item_id)
            # a cancelled response's items get no more audio: they can be settled at once
            ready = item.done or item.response_id in self.cancelled
            if not force and not (ready and (item.interrupted or pending == 0)):
                break
            self.order.pop(0)
            text = item.said
            if item.sentences is not None:  # spoken sentence by sentence: heard is known per sentence
                if item.failed and not item.interrupted:
                    pass  # the speech (or the model) broke, named once: the text received is shown and kept
                elif item.interrupted or force:
                    played = item.played_bytes if item.played_bytes is not None else self.played_bytes(item.item_id)
                    text = heard_sentences(item.sentences, played, item.received)
                    item.interrupted = item.interrupted or text.strip() != item.said.strip()
            elif item.interrupted or (force and pending):
                item.interrupted = True
                played = item.played_ms if item.played_ms is not None else self.played_ms(item.item_id)
                text = (heard_sentences(item.sentences, played * BYTES_PER_MS, item.received) if item.sentences
                        else heard(text, played, item.received // BYTES_PER_MS))
            text = text.strip()
            if text or item.interrupted:
                out.append(Heard(item, text, item.interrupted))
        return out

    def unfinished(self) -> list[str]:
        """Answers still playing: not written yet, but they will be heard (for a replay)."""
        items = (self.items[i] for i in self.order)
        return [i.said.strip() for i in items if not i.interrupted and i.said.strip()]

    def played_bytes(self, item_id: str) -> int:
        return self.playback.played.get(item_id, 0) * 2

    def played_ms(self, item_id: str) -> int:
        return self.playback.played.get(item_id, 0) * 1000 // RATE

    def latency(self) -> tuple[float, float, str] | None:
        """(end of speech → first audio received, → first sample handed to the speaker) in ms, and
        what the clock started at (`TurnClock.since`), once per turn, when known."""
        t = self.turn
        if t.reported or t.end is None or t.item is None or t.first_audio is None:
            return None
        played = self.playback.first_played.get(t.item)
        if played is None:
            return None
        t.reported = True
        return (t.first_audio - t.end) * 1000, (played - t.end) * 1000, t.since


def heard(text: str, played_ms: int, received_ms: int) -> str:
    """The part of an interrupted answer that was heard: its share of the text, cut at a word."""
    if received_ms <= 0 or played_ms >= received_ms:
        return text
    keep = int(len(text) * played_ms / received_ms)
    head = text[:keep]
    if keep < len(text) and not text[keep].isspace():  # cut inside a word: it was not heard whole
        head = head.rsplit(" ", 1)[0] if " " in head else ""
    return head


def heard_sentences(sentences: list[tuple[int, str]], played: int, received: int) -> str:
    """What was heard of an answer spoken sentence by sentence (cascade): every sentence played to
    its end, then the heard share of the one that was cut. Offsets in audio bytes."""
    out = []
    for i, (start, text) in enumerate(sentences):
        end = sentences[i + 1][0] if i + 1 < len(sentences) else received
        if played >= end:
            out.append(text)
            continue
        if played > start:
            out.append(heard(text, (played - start) // BYTES_PER_MS, (end - start) // BYTES_PER_MS))
        break
    return "".join(out)
