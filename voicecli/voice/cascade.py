"""`CascadeSession`: a voice conversation with any text model — speech-to-text → the text model →
text-to-speech — behind the same interface and neutral events as `RealtimeSession`.

    mic audio ──► LocalVad ──utterance──► /audio/transcriptions ──words──► Conversation.send (ws | sse | chat)
                                                                           │ text deltas, tools, usage
    speaker ◄── AudioDelta (per sentence) ◄── /audio/speech (pcm) ◄── Sentences ◄┘

Turn-taking happens here, on the client: the local voice-activity detector says when the user
starts (`SpeechStarted`: the front end stops the speaker and cancels, as with Realtime) and stops
(`SpeechStopped`), and the utterance goes to speech-to-text. Words said across a pause while the
previous utterance was being transcribed make one turn. The answer goes through the shared
`Conversation` (history, tools with approval, the conversation log, usage) and is spoken sentence by
sentence while the model still writes; each sentence's first audio carries its text, so a barge-in
knows what was heard (`Turns`), and `remember` then corrects the history to that.

Preemptive answers: at `voice.preemptive_ms` of silence (the VAD's "pause", before its "stop") the
utterance so far is transcribed and answered — text model and the first sentences' text-to-speech —
while the turn-end silence still runs. Its events are held (`Outbox`) and its conversation turn is
tentative (`Conversation.tentative`); a tool call waits. If the silence completes, that answer is the
answer: its events are released and it plays. If the user speaks again first, its requests are
cancelled, its events dropped and its turn taken out of the history and the log; the utterance goes
on as one turn. The preemptive transcript also sets the silence that ends this turn (`end_silence`):
`voice.eager_end_ms` after a finished sentence, `voice.max_end_ms` after "and", "but", a comma.

A stage that fails for good (after the transport's retries) ends `events()` with a `SessionError`
naming the stage: "speech-to-text", "text model" or "text-to-speech".
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field

from voicecli.conversation import Conversation, ToolRunner
from voicecli.errors import ExitCode, VoicecliError
from voicecli.events import (AudioDelta, Error, Event, ResponseStarted, SpeechStarted, SpeechStopped, TextDelta, ToolCall,
                             ToolResult, Transcript, TurnEnd, Usage)
from voicecli.items import Message
from voicecli.profiles import SIM_BASE_URL, Profile
from voicecli.voice.jobs import Jobs, drain_events
from voicecli.voice.sentences import Chunk, Sentences
from voicecli.voice.session import SessionError

log = logging.getLogger("voicecli")

TTS_AHEAD = 2  # sentences synthesised at once: the next one is ready when the current one ends
# the first text-to-speech request may go at a clause boundary ("Of course, ", "You said: ") after this many
# words: not after a lone "Well," or "So,"; two words are about half a second of speech, which covers the
# next request's first byte on a quick server (a slow one may leave a short gap after the first chunk)
FIRST_CLAUSE_WORDS = 2
_SENTENCE_END = re.compile(r"""[.!?…]["'”’)\]]*$""")
_MID_CLAUSE = re.compile(r"(?:[,;:–—-]|\b(?:and|but|or|so|because|then|if|that|which|who|the|a|an|to|of|with|"
                         r"for|in|on|at|my|your|is|are|was|um|uh|er|like))$", re.I)


def end_silence(text: str, silence_ms: int, eager_ms: int, max_ms: int) -> int:
    """The turn-end silence for an utterance whose words so far are `text`: `eager_ms` when they end
    a sentence, `max_ms` when they stop mid-clause (a comma, "and", "but"…), else `silence_ms`."""
    t = text.strip()
    if _SENTENCE_END.search(t):
        return min(eager_ms, silence_ms)
    if _MID_CLAUSE.search(t):
        return max(max_ms, silence_ms)
    return silence_ms


class Outbox:
    """Where an answer's events go: the session's queue, or held while the answer is preemptive."""

    def __init__(self, put: Callable[[Event | Exception], None], held: bool = False):
        self._put = put
        self.held: list | None = [] if held else None
        self.tts_requests = lambda: 0  # set by `_respond`: text-to-speech requests made so far

    def put(self, event) -> None:
        if self.held is None:
            self._put(event)
        else:
            self.held.append(event)

    def release(self) -> None:
        held, self.held = self.held or [], None
        for event in held:
            self._put(event)


@dataclass
class Preemptive:
    """An answer started at a pause, before the end of the turn was decided."""

    outbox: Outbox
    confirmed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None
    asked: bool = False  # the text model was asked (its turn is tentative in the conversation)


class StageFailed(Exception):
    def __init__(self, stage: str, error: Error, base_url: str):
        super().__init__(error.message)
        self.stage, self.error, self.base_url = stage, error, base_url


class CascadeSession:
    def __init__(self, profile: Profile, conversation: Conversation, *, tool_runner: ToolRunner | None = None,
                 vad=None, clock: Callable[[], float] = time.monotonic, **_ignored):
        from voicecli.transport import resolve_base_url

        self.profile, self.voice, self.conversation = profile, profile.voice, conversation
        self.base_url = resolve_base_url(profile)
        self.stt_url = speech_endpoint(profile, self.voice.transcription_base_url, self.base_url)
        self.tts_url = speech_endpoint(profile, self.voice.speech_base_url, self.base_url)
        self.conversation.tool_runner = self._gated(tool_runner) if tool_runner is not None else None
        self.ptt = self.voice.turn_detection == "none"
        self._vad = vad
        self.clock = clock
        self.reconnecting = False  # no connection to lose between turns (the ws transport reconnects itself)
        self._queue: asyncio.Queue[Event | Exception | None] = asyncio.Queue()
        self._inbox: asyncio.Queue[tuple[str, object]] = asyncio.Queue()  # ("audio", pcm) | ("text", str)
        self._jobs = Jobs()
        self._answer: asyncio.Task | None = None
        self._answers = itertools.count(1)
        self._said: dict[str, str] = {}  # item id → the text the model wrote (in the history as is)
        self._segmenter = None  # cuts the mic audio into utterances (voice-activity detection)
        self._recording = bytearray()  # push-to-talk
        self._pending = ""  # words of an utterance that the user went on from
        self._working = False  # the worker is on a turn
        self._queued_audio = 0  # utterances waiting behind the one being transcribed
        self._pre: Preemptive | None = None  # the preemptive answer under way, not yet confirmed
        self.discarded = 0  # preemptive answers thrown away (the user went on)
        self.wasted: Counter[str] = Counter()  # their requests, by stage
        self.wasted_usage = Usage()  # what the server reported for them (billed, not heard)

    def _key(self, var: str | None, base_url: str | None) -> str | None:
        return speech_key(self.profile, var, base_url)

    def describe(self) -> str:
        m = self.profile.model
        return (f"{self.voice.transcription_model} → {m.name} over {self.profile.connection.transport} → "
                f"{self.voice.speech_model} · {'push-to-talk' if self.ptt else 'local VAD'}")

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        from voicecli.transport import open_transport

        p, v = self.profile, self.voice
        if not v.transcription_model:
            from voicecli.errors import ConfigError

            raise ConfigError("cascaded talk needs a speech-to-text model; voice.transcription_model is empty")
        self.conversation.transport = open_transport(p)  # checks the text model's key now, not at the first turn
        self.stt, _ = audio_client(p, "transcription", self.base_url)
        self.tts, _ = audio_client(p, "speech", self.base_url)
        if not self.ptt:
            from voicecli.audio.vad import Segmenter

            self._segmenter = Segmenter(self._vad or local_vad(v, pause_ms=v.preemptive_ms, barge_in=True))
        self._jobs.spawn(self._work(), "cascade")

    def events(self) -> AsyncIterator[Event]:
        return drain_events(self._queue)

    @property
    def busy(self) -> bool:
        """A turn is on its way: an utterance waiting or being transcribed, or an answer (and its tools).
        A preemptive answer not yet confirmed is not: nothing of it is shown or heard yet."""
        return self._working or not self._inbox.empty()

    def due_for_renewal(self) -> bool:
        return False

    def renew(self) -> None:
        pass

    async def aclose(self) -> None:
        await self._discard()
        await self._jobs.cancel()
        self._segmenter = None  # the detector and its native soxr resampler go now (see `voicecli.cli.main`)
        if self._answer is not None:
            self._answer.cancel()
            await asyncio.gather(self._answer, return_exceptions=True)
        transport = self.conversation.transport
        if transport is not None:
            await transport.aclose()
        self._queue.put_nowait(None)

    def remember(self, role: str, text: str, *, interrupted: bool = False, item_id: str | None = None) -> None:
        """The conversation already holds what was said; an answer cut off while spoken keeps only what was heard."""
        said = self._said.pop(item_id, None) if item_id else None
        if role == "assistant" and interrupted and said is not None:
            self.conversation.heard(said, text)

    def speech_end_ms(self, audio_end_ms: int) -> int | None:
        """Where the user's speech ended: the local VAD's stop carries exactly that (not its decision)."""
        return audio_end_ms

    # -- typed commands -------------------------------------------------------------------------

    async def append_audio(self, pcm: bytes) -> bool:
        if self.ptt:
            self._recording += pcm
            return True
        for event in self._segmenter.feed(pcm):
            log.debug("vad: speech %s at %d ms (fed %d ms)", event.kind, event.ms, self._segmenter.vad.position_ms)
            if event.kind == "start":
                await self._discard()
                self._put(SpeechStarted(event.ms))
            elif event.kind == "pause":
                self._preempt()
            elif event.kind == "resume":
                await self._discard()  # the user went on: the utterance continues, one turn
            else:
                self._put(SpeechStopped(event.ms))
                utterance = self._segmenter.take()
                if self._pre is not None:
                    self._confirm()  # the answer under way is the answer
                elif utterance is not None:
                    log.debug("vad: utterance of %d ms for speech-to-text", len(utterance.pcm) // 48)
                    self._queue_audio(utterance.pcm)
        return True

    # -- preemptive answers ---------------------------------------------------------------------

    def _preempt(self) -> None:
        """A pause: transcribe the utterance so far and start on its answer, held until the stop."""
        if self.voice.preemptive_ms <= 0 or self._pre is not None or self.busy or self._pending:
            return  # a turn still on its way (words across a pause): the usual path, after the stop
        utterance = self._segmenter.peek()
        if utterance is None or not utterance.pcm:
            return
        pcm = utterance.pcm
        pre = self._pre = Preemptive(Outbox(self._put, held=True))
        pre.task = asyncio.get_running_loop().create_task(self._run_preemptive(pcm, pre))
        # until its words say how long this pause may be (`_end_turn_after`), the turn waits up to the
        # longest: else a slow transcript (a busy machine, a slow server) would let the usual silence
        # cut the user off mid-clause
        v = self.voice
        self._segmenter.vad.require(max(v.max_end_ms, self._segmenter.vad.silence_ms))

    async def _run_preemptive(self, pcm: bytes, pre: Preemptive) -> None:
        text = await self._transcribe(pcm, pre.outbox.put)
        if pre is self._pre:  # still pausing: how long this pause has to be
            self._end_turn_after(text)
        pre.outbox.put(Transcript("user", text, final=True))
        if not text:
            return
        if not pre.confirmed.is_set():
            self.conversation.tentative()
        pre.asked = True
        await self._respond(text, pre.outbox)

    def _end_turn_after(self, text: str) -> None:
        """Adaptive end of turn. (No detector in a local here: a traceback would keep its native
        resampler alive until exit — #23.)"""
        if self._segmenter is not None:
            v, silence = self.voice, self._segmenter.vad.silence_ms
            self._segmenter.vad.require(end_silence(text, silence, v.eager_end_ms, max(v.max_end_ms, silence)))

    def _confirm(self) -> None:
        """The turn ended as the preemptive answer assumed: release it and let the worker own it."""
        pre, self._pre = self._pre, None
        pre.confirmed.set()
        if pre.asked:
            self.conversation.confirm()
        pre.outbox.release()
        self._answer = pre.task
        self._inbox.put_nowait(("answer", pre.task))

    async def _discard(self) -> None:
        """The user went on (or talk ends): cancel the preemptive answer; nothing of it remains."""
        pre, self._pre = self._pre, None
        if pre is None:
            return
        pre.task.cancel()
        await asyncio.gather(pre.task, return_exceptions=True)
        if pre.asked:
            self.conversation.discard()
        self.discarded += 1
        self.wasted["speech-to-text"] += 1
        self.wasted["text model"] += pre.asked
        self.wasted["text-to-speech"] += pre.outbox.tts_requests()
        for event in pre.outbox.held or []:
            if isinstance(event, Usage):
                self.wasted_usage = self.wasted_usage + event
            elif isinstance(event, TextDelta):
                self._said.pop(event.item_id, None)
        log.debug("cascade: preemptive answer discarded (%s)", dict(self.wasted))

    def _gated(self, runner: ToolRunner) -> ToolRunner:
        """Tools run only for a confirmed answer: a preemptive one waits for the end of the turn."""
        async def run(calls):
            pre = self._pre
            if pre is not None and not pre.confirmed.is_set() and asyncio.current_task() is pre.task:
                await pre.confirmed.wait()
            return await runner(calls)

        return run

    async def input_ended(self) -> None:
        """`--input` is over: an utterance still open (a long `vad_silence_duration_ms`) ends here."""
        utterance = self._segmenter.flush() if self._segmenter is not None else None
        if utterance is not None and self._pre is not None:  # the file ended in the pause: that was the turn
            self._put(SpeechStopped(utterance.end_ms))
            self._confirm()
        elif utterance is not None:
            self._put(SpeechStopped(utterance.end_ms))
            self._queue_audio(utterance.pcm)

    async def commit(self) -> None:
        """Push-to-talk: the recording is the user's turn."""
        pcm, self._recording = bytes(self._recording), bytearray()
        self._queue_audio(pcm)

    async def clear(self) -> None:
        self._recording = bytearray()

    def _queue_audio(self, pcm: bytes) -> None:
        self._queued_audio += 1
        self._inbox.put_nowait(("audio", pcm))

    async def say(self, text: str) -> None:
        self._inbox.put_nowait(("text", text))

    async def cancel(self) -> None:
        """Stop the answer in progress: the text stream and every text-to-speech request."""
        task = self._answer
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)  # the history is settled when this returns

    async def truncate(self, item_id: str, audio_end_ms: int) -> None:
        pass  # no server-side copy of the audio; `remember` corrects the history to what was heard

    def _put(self, event: Event | Exception) -> None:
        self._queue.put_nowait(event)

    # -- turns ----------------------------------------------------------------------------------

    async def _work(self) -> None:
        """One user turn at a time: transcribe, then answer (the answer can be cancelled alone)."""
        try:
            while True:
                self._working = False
                kind, data = await self._inbox.get()
                self._working = True
                self._queued_audio -= kind == "audio"
                if kind != "answer" and self._pre is not None:
                    await self._discard()  # a typed line (or push-to-talk) came first: not the answer
                if kind == "answer":  # a preemptive answer, confirmed: already under way
                    self._answer = data
                    await asyncio.gather(data, return_exceptions=True)
                    if not data.cancelled() and data.exception():
                        raise data.exception()
                    continue
                if kind == "audio":
                    text = await self._transcribe(data)
                    if self._queued_audio or (self._segmenter is not None and self._segmenter.vad.speaking):
                        self._pending = f"{self._pending} {text}".strip()  # the user went on: one turn
                        continue
                    text, self._pending = f"{self._pending} {text}".strip(), ""
                    self._put(Transcript("user", text, final=True))
                    if not text:
                        continue
                self._answer = asyncio.get_running_loop().create_task(self._respond(str(data) if kind == "text"
                                                                                    else text))
                await asyncio.gather(self._answer, return_exceptions=True)
                if self._answer.done() and not self._answer.cancelled() and self._answer.exception():
                    raise self._answer.exception()
        except StageFailed as exc:
            self._put(SessionError(exc.error, stage=exc.stage, base_url=exc.base_url))
        except VoicecliError as exc:  # e.g. a key that went bad: talk ends with it
            self._put(exc)
        except Exception as exc:  # a bug must end talk, not leave it listening to nothing
            log.debug("cascade failed", exc_info=True)
            self._put(VoicecliError(f"internal error in the voice cascade: {exc!r}", exit_code=ExitCode.INTERNAL))

    async def _transcribe(self, pcm: bytes, put: Callable | None = None) -> str:
        from voicecli.audio.wav import wav_bytes

        v = self.voice
        # aclosing: an early return closes the request here, in this task (httpx2 needs that)
        async with aclosing(self.stt.transcribe(wav_bytes(pcm), model=v.transcription_model,
                                                language=v.transcription_language,
                                                prompt=v.transcription_prompt)) as events:
            async for event in events:
                if isinstance(event, Error):
                    raise StageFailed("speech-to-text", event, self.stt_url)
                if event.final:
                    return event.text
                (put or self._put)(event)
        return ""

    async def _respond(self, text: str, out: Outbox | None = None) -> None:
        out = out or Outbox(self._put)
        put = out.put
        n = next(self._answers)
        rid, parts = f"cascade_resp_{n}", itertools.count(1)
        put(ResponseStarted(rid))
        item: str | None = None  # one item per message the model writes (a tool round starts another)
        speech = Speech(self.tts, self.voice, self.tts_url,
                        lambda item, pcm, spoken: put(AudioDelta(pcm, item, rid, spoken)))
        out.tts_requests = lambda: len(speech.fetches)
        sentences = Sentences(first_clause_words=FIRST_CLAUSE_WORDS)
        status, reason, usage, failure = "cancelled", "interrupted", Usage(), None
        try:
            async with aclosing(self.conversation.send(Message("user", text))) as stream:
                async for event in stream:
                    speech.check()
                    if isinstance(event, TextDelta):
                        if item is None:
                            item = f"cascade_item_{n}_{next(parts)}"
                            put(AudioDelta(b"", item, rid, ""))  # spoken sentence by sentence
                        self._said[item] = self._said.get(item, "") + event.text
                        put(TextDelta(event.text, item))
                        for chunk in sentences.feed(event.text):
                            speech.add(item, chunk)
                    elif isinstance(event, ToolCall):
                        if item is not None:  # what was said before the call is spoken now, not after the tool
                            for chunk in sentences.flush():
                                speech.add(item, chunk)
                        item = None
                        put(event)
                    elif isinstance(event, ToolResult):
                        put(event)
                    elif isinstance(event, Usage):
                        usage = usage + event
                    elif isinstance(event, Error):
                        failure = event
                    elif isinstance(event, TurnEnd):
                        status, reason = event.status, event.reason
                        if status == "failed" and failure is not None:
                            raise StageFailed("text model", failure, self.base_url)
            if failure is not None:  # not fatal (e.g. stopped after max_tool_rounds): shown
                put(failure)
            if item is not None:
                for chunk in sentences.flush():
                    speech.add(item, chunk)
            await speech.finish()
        except BaseException as exc:
            cancelled = isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt))
            # a failure is reported once, by the session's end (SessionError), not by the turn too
            status, reason = ("cancelled", "interrupted") if cancelled else ("failed", None)
            speech.cancel()
            raise
        finally:
            put(usage)
            put(TurnEnd(status, rid, reason))


class Speech:
    """Sentences → text-to-speech requests (`TTS_AHEAD` at once) → audio, in order: `emit(item_id,
    pcm, spoken)` gets each piece, `spoken` (the sentence's text) with its first piece only (b"" when
    the sentence has nothing to say). Shared by the cascade and `voicecli say`."""

    def __init__(self, tts, voice, tts_url: str, emit: Callable[[str, bytes, str | None], None]):
        self.tts, self.voice, self.tts_url, self.emit = tts, voice, tts_url, emit
        self.parts: asyncio.Queue[tuple[str, Chunk, asyncio.Queue] | None] = asyncio.Queue()
        self.slots = asyncio.Semaphore(TTS_AHEAD)
        self.fetches: list[asyncio.Task] = []
        self.chars = 0  # characters sent to text-to-speech (what tts-1 is priced by)
        self.player = asyncio.get_running_loop().create_task(self._play())

    def add(self, item_id: str, chunk: Chunk) -> None:
        audio: asyncio.Queue = asyncio.Queue()
        if chunk.spoken:
            self.chars += len(chunk.spoken)
            self.fetches.append(asyncio.get_running_loop().create_task(self._fetch(chunk.spoken, audio)))
        else:
            audio.put_nowait(None)  # nothing to say (a code block): it still counts as heard once reached
        self.parts.put_nowait((item_id, chunk, audio))

    async def _fetch(self, text: str, audio: asyncio.Queue) -> None:
        v = self.voice
        async with self.slots:
            try:
                async with aclosing(self.tts.speak(text, model=v.speech_model, voice=v.voice,
                                                   instructions=v.speech_instructions, speed=v.speed)) as pieces:
                    async for piece in pieces:
                        audio.put_nowait(piece)
                        if isinstance(piece, Error):
                            return
            except Exception as exc:  # not a server error but a bug or a broken body: the player raises it
                audio.put_nowait(exc)
            finally:
                audio.put_nowait(None)

    async def _play(self) -> None:
        while (part := await self.parts.get()) is not None:
            item_id, chunk, audio = part
            spoken: str | None = chunk.text
            while (piece := await audio.get()) is not None:
                if isinstance(piece, Error):
                    raise StageFailed("text-to-speech", piece, self.tts_url)
                if isinstance(piece, Exception):
                    raise piece
                self.emit(item_id, piece, spoken)
                spoken = None
            if spoken is not None:
                self.emit(item_id, b"", spoken)

    def check(self) -> None:
        """Raise now if text-to-speech already failed (rather than after the model's whole answer)."""
        if self.player.done() and not self.player.cancelled() and self.player.exception():
            raise self.player.exception()

    async def finish(self) -> None:
        self.parts.put_nowait(None)
        await self.player

    def cancel(self) -> None:
        for task in [*self.fetches, self.player]:
            task.cancel()


def local_vad(voice, pause_ms: int = 0, *, barge_in: bool = False):
    """The local voice-activity detector as `[voice]` tunes it (vad_threshold, vad_silence_duration_ms,
    vad_prefix_padding_ms); `pause_ms`: report pauses (the cascade's preemptive answers); `barge_in`:
    its start stops the assistant, so it comes after `voice.barge_in_ms` of voice (else the detector's
    150 ms)."""
    from voicecli.audio.vad import LocalVad

    v = voice
    return LocalVad(threshold=v.vad_threshold if v.vad_threshold is not None else 0.5,
                    silence_ms=v.vad_silence_duration_ms if v.vad_silence_duration_ms is not None else 500,
                    prefix_ms=v.vad_prefix_padding_ms if v.vad_prefix_padding_ms is not None else 300,
                    pause_ms=pause_ms, **({"min_speech_ms": v.barge_in_ms} if barge_in else {}))


def speech_endpoint(profile: Profile, base_url: str | None, main_url: str | None = None) -> str:
    """The API root of a speech endpoint (`voice.transcription_base_url` / `speech_base_url`): its
    own, else the connection's (`main_url`, already resolved)."""
    from voicecli.transport import resolve_base_url
    from voicecli.transport.urls import check_base_url

    main_url = main_url or resolve_base_url(profile)
    if not base_url or base_url == profile.connection.base_url:
        return main_url
    if base_url == SIM_BASE_URL:
        return resolve_base_url(_with_base(profile, base_url))
    check_base_url(base_url)
    return base_url.rstrip("/")


def speech_key(profile: Profile, var: str | None, base_url: str | None) -> str | None:
    """A speech endpoint's key: from its own variable; else the connection's, but only for the same
    server — the text model's key is never sent to another host unasked."""
    from urllib.parse import urlsplit

    if var is None and base_url and base_url != SIM_BASE_URL:
        mine, theirs = urlsplit(profile.connection.base_url), urlsplit(base_url)
        if (mine.scheme, mine.netloc) != (theirs.scheme, theirs.netloc):
            return None
    return profile.api_key(var, base_url)


def audio_client(profile: Profile, which: str, main_url: str | None = None):
    """(`AudioClient`, its API root) for "transcription" (speech-to-text) or "speech" (text-to-speech),
    as the profile's `[voice]` places them (their own server and key, or the connection's)."""
    from voicecli.transport.audio import AudioClient

    v = profile.voice
    base, var = ((v.transcription_base_url, v.transcription_api_key_env) if which == "transcription"
                 else (v.speech_base_url, v.speech_api_key_env))
    url = speech_endpoint(profile, base, main_url)
    return AudioClient(profile.connection, url, speech_key(profile, var, base)), url


def _with_base(profile: Profile, base_url: str) -> Profile:
    import copy

    clone = copy.copy(profile)
    clone.connection = copy.copy(profile.connection)
    clone.connection.base_url = base_url
    return clone
