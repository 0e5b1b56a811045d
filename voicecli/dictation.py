"""Live dictation for `voicecli transcribe` (no FILE): microphone → one line per finished utterance.

Engine `http` (default on Chat Completions servers, like talk's cascade): the cascade's local VAD
(`Segmenter`, tuned by `[voice]` vad_*) cuts the microphone into utterances; each goes to
`/audio/transcriptions` as soon as it ends (one at a time, so lines keep their order; a streaming
model's deltas show as the partial line).
Engine `realtime` (default elsewhere): a Realtime transcription session (`?intent=transcription`,
`session.type: "transcription"`): the microphone streams to the server, whose VAD cuts utterances
and sends `conversation.item.input_audio_transcription.delta` / `.completed`; completed items are
printed in the order they were spoken.
Either way a line is printed, flushed, the moment it is final: `voicecli transcribe >> notes.txt`.

Ctrl-C (SIGINT): the utterance in progress ends there, is transcribed and printed, then 0; a second
Ctrl-C leaves at once with 130. SIGTERM / SIGHUP leave like a second Ctrl-C (143 / 129).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time

from voicecli.errors import ConfigError, ExitCode, VoicecliError

log = logging.getLogger("voicecli")


class PartialLine:
    """--partial on a terminal: the utterance in progress on stderr, rewritten in place."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()
        self.text = ""

    def show(self, text: str) -> None:
        if not self.enabled:
            return
        from voicecli.sanitize import escape_controls

        self.text = text
        width = 79
        try:
            import shutil

            width = shutil.get_terminal_size().columns - 1
        except OSError:
            pass
        line = escape_controls(text)[-max(10, width - 2):]
        sys.stderr.write(f"\r\x1b[K\x1b[2m… {line}\x1b[0m")
        sys.stderr.flush()

    def clear(self) -> None:
        if self.enabled and self.text is not None:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self.text = ""


FINISH_S = 30.0  # after Ctrl-C: at most this long for the last utterances' words


class Dictation:
    def __init__(self, profile, opts, out, convlog=None):
        self.profile, self.opts, self.out, self.convlog = profile, opts, out, convlog
        self.engine_name = opts.engine or ("http" if profile.talk_engine() == "cascade" else "realtime")
        self.engine = None
        self.partial = PartialLine(opts.partial)
        self.stopping = False  # first Ctrl-C: finish the utterance in progress
        self.leave: int | None = None  # second Ctrl-C (130) or SIGTERM/SIGHUP: at once
        self.utterances = 0

    def _microphone(self):
        from voicecli.audio.devices import NoDevice, resolve_device

        try:
            device = resolve_device(self.opts.input_device or self.profile.voice.input_device, "input")
        except NoDevice as exc:
            exc.message = "no microphone found"
            exc.hint = "transcribe a recording instead: voicecli transcribe FILE.wav (or - for a WAV on stdin)"
            raise
        return device

    def emit(self, start_ms: float, end_ms: float, text: str) -> None:
        """One finished utterance: the line on stdout (flushed), the conversation log (--log)."""
        from voicecli.transcribe import Segment, _log_user

        self.partial.clear()
        seg = Segment(start_ms / 1000, end_ms / 1000, text)
        self.out.segment(seg)
        if seg.text:
            self.utterances += 1
            log.debug("dictation: printed utterance %d", self.utterances)
            if self.convlog is not None:
                _log_user(self.convlog, seg.text)

    async def run(self) -> int:
        import signal

        from voicecli.audio.devices import import_sounddevice
        from voicecli.audio.mic import Microphone
        from voicecli.signals import on_leave_signals, on_signal
        from voicecli.transport import close_clients

        device = self._microphone()
        self.engine = HttpEngine(self) if self.engine_name == "http" else RealtimeEngine(self)
        mic = Microphone(device["index"])
        stop = asyncio.Event()

        def on_sigint() -> None:
            if self.stopping:
                self.leave = ExitCode.INTERRUPTED
            self.stopping = True
            stop.set()

        def on_leave(sig: int) -> None:
            self.leave = 128 + sig
            stop.set()

        unhook = on_signal(signal.SIGINT, on_sigint)
        unhook_leave = on_leave_signals(on_leave)
        try:
            await self.engine.start()  # connected (and configured) before the microphone opens
            sd = import_sounddevice()
            try:
                mic.start()
            except sd.PortAudioError as exc:
                raise ConfigError(f"cannot open the microphone: {exc}",
                                  hint="check `voicecli devices`, or transcribe a file: voicecli transcribe FILE.wav") from None
            log.debug("dictation: listening (%s, %s engine)", device["name"], self.engine_name)
            reading = asyncio.get_running_loop().create_task(self._listen(mic))
            waiter = asyncio.ensure_future(stop.wait())
            await asyncio.wait({reading, waiter, self.engine.worker}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
            if self.engine.worker.done():
                await self.engine.worker  # a failure: its error line
            mic.close()
            if self.leave is None:  # Ctrl-C: what was being said is the last utterance
                stop.clear()
                finishing = asyncio.get_running_loop().create_task(self.engine.finish())
                second = asyncio.ensure_future(stop.wait())
                await asyncio.wait({finishing, second}, return_when=asyncio.FIRST_COMPLETED)
                second.cancel()
                if finishing.done():
                    await finishing
                else:
                    finishing.cancel()
                    await asyncio.gather(finishing, return_exceptions=True)
            return self.leave if self.leave is not None else ExitCode.OK
        finally:
            mic.close()
            await self.engine.aclose()
            self.partial.clear()
            unhook()
            unhook_leave()
            await close_clients()

    async def _listen(self, mic) -> None:
        async for pcm, _ in mic.blocks():
            await self.engine.feed(pcm)

    def closing_line(self) -> str:
        if self.engine is None or self.engine.spent is None:
            return ""
        from voicecli.transcribe import cost_line

        seconds, requests = self.engine.spent()
        how = f"in {requests} request{'s' * (requests != 1)}" if requests is not None else "streamed"
        return cost_line(self.profile.voice.transcription_model, seconds,
                         f"{how}, {self.utterances} utterance{'s' * (self.utterances != 1)}")


SPECULATE_MS = 300  # http engine: an utterance is sent this long before its pause is long enough to end it


class HttpEngine:
    """Local VAD → one /audio/transcriptions request per utterance, lines in order.

    To print sooner, the request starts SPECULATE_MS before the pause would end the utterance
    (at 200 ms of a 500 ms `vad_silence_duration_ms`): when the pause does end it, the words are
    (nearly) there; when the speaker goes on, that early request is dropped (and, if the server
    already answered it, billed: a pause of 200–500 ms in mid-sentence costs one extra request).
    """

    def __init__(self, d: Dictation):
        from voicecli.audio.vad import Segmenter
        from voicecli.transcribe import Recogniser
        from voicecli.voice.cascade import local_vad

        self.d = d
        self.rec = Recogniser(d.profile)
        self.segmenter = Segmenter(local_vad(d.profile.voice))
        silence = self.segmenter.vad.silence_ms
        self.speculate_at = max(silence // 2, silence - SPECULATE_MS)
        self.early: tuple[int, int, asyncio.Task] | None = None  # (start ms, end ms, its request)
        self.utterances: asyncio.Queue = asyncio.Queue()
        self.worker: asyncio.Task | None = None

    async def start(self) -> None:
        self.worker = asyncio.get_running_loop().create_task(self._work())

    async def feed(self, pcm: bytes) -> None:
        for event in self.segmenter.feed(pcm):
            log.debug("dictation: speech %s at %d ms", event.kind, event.ms)
            if event.kind == "start":
                self.d.partial.show("")
            else:
                utt = self.segmenter.take()
                if utt is not None:
                    self.utterances.put_nowait((utt, self._claim(utt.start_ms, utt.end_ms)))
        vad = self.segmenter.vad
        if self.early is not None and (not vad.speaking or vad.last_voiced_ms != self.early[1]):
            self._drop_early()  # the speaker went on: those were not the utterance's last words
        if vad.speaking and self.early is None and vad.silent_ms >= self.speculate_at:
            utt = self.segmenter.peek()
            if utt is not None:
                task = asyncio.get_running_loop().create_task(self.rec.text(utt.pcm, self._delta()))
                task.add_done_callback(lambda t: t.cancelled() or t.exception())  # a dropped one's failure: unseen
                self.early = (utt.start_ms, utt.end_ms, task)

    def _claim(self, start_ms: int, end_ms: int) -> asyncio.Task | None:
        """The early request, if it was for exactly this utterance."""
        early, self.early = self.early, None
        if early is not None and early[:2] == (start_ms, end_ms):
            return early[2]
        if early is not None:
            early[2].cancel()
        return None

    def _drop_early(self) -> None:
        early, self.early = self.early, None
        if early is not None:
            early[2].cancel()
            log.debug("dictation: the speaker went on; the early request is dropped")

    def _delta(self):
        words: list[str] = []

        def delta(text: str) -> None:
            words.append(text)
            self.d.partial.show("".join(words))

        return delta

    async def finish(self) -> None:
        self._drop_early()
        last = self.segmenter.flush()
        if last is not None:
            log.debug("dictation: speech stop at %d ms (Ctrl-C)", last.end_ms)
            self.utterances.put_nowait((last, None))
        self.utterances.put_nowait(None)
        await self.worker

    async def _work(self) -> None:
        while (entry := await self.utterances.get()) is not None:
            utt, early = entry
            text = await early if early is not None else await self.rec.text(utt.pcm, self._delta())
            self.d.emit(utt.start_ms, utt.end_ms, text)

    def spent(self) -> tuple[float, int | None]:
        return self.rec.seconds, self.rec.requests

    async def aclose(self) -> None:
        self._drop_early()
        if self.worker is not None and not self.worker.done():
            self.worker.cancel()
            await asyncio.gather(self.worker, return_exceptions=True)
        self.segmenter = None  # its native resampler goes now (see voicecli.cli.main)


RECONNECT_DELAYS_S = (0.0, 0.5, 2.0)  # a transcription session that ends (60 min limit, dropped): new ones
BACKLOG_BYTES = 10 * 48000  # microphone audio kept while reconnecting (10 s), sent to the new session


class RealtimeEngine:
    """A Realtime transcription session: the microphone streams up, utterances' words come down.

    A session that ends (the server's 60-minute limit, a dropped connection) is replaced by a new
    one with the same settings; the microphone's audio meanwhile is kept (up to 10 s) and sent to it.
    An utterance the old session had not finished transcribing is lost, and said so on stderr."""

    def __init__(self, d: Dictation):
        self.d = d
        self.transport = None
        self.worker: asyncio.Task | None = None
        self.order: list[str] = []  # utterance item ids, in the order they began
        self.times: dict[str, list[int]] = {}  # item id → [start ms, end ms] (of the whole dictation)
        self.words: dict[str, str] = {}  # item id → its words so far
        self.final: dict[str, str] = {}  # item id → its transcript, once completed
        self.speaking: str | None = None  # the item being said
        self.sent_bytes = 0
        self.offset_ms = 0  # the dictation's time at the current session's start (its clock starts at 0)
        self.backlog: bytearray | None = None  # audio while reconnecting
        self.catching_up: asyncio.Task | None = None  # sends the backlog to a new session
        self.sessions = 0

    async def start(self) -> None:
        await self._connect()
        self.worker = asyncio.get_running_loop().create_task(self._run())
        await self._configured()

    async def _connect(self) -> None:
        from voicecli.transport import resolve_base_url
        from voicecli.transport.realtime import RealtimeTransport
        from voicecli.transport.ws import ConnectError
        from voicecli.ui.status import failure
        from voicecli.wire.realtime import transcription_session_update

        p = self.d.profile
        self.base_url = resolve_base_url(p)
        transport = RealtimeTransport(p.connection, self.base_url, p.api_key(), None, query={"intent": "transcription"})
        try:
            await transport.connect()
        except ConnectError as exc:
            raise failure(exc.error, self.base_url, profile=p) from None
        await transport.send(transcription_session_update(p.voice, p.voice.transcription_prompt))
        self.transport, self.sessions = transport, self.sessions + 1
        self.offset_ms = self.sent_bytes // 48

    async def _configured(self) -> None:
        """Until the server confirms the session (session.updated; an error before it is fatal)."""
        deadline = time.monotonic() + self.d.profile.connection.read_timeout
        while not self.transport.decoder.configured:
            if self.worker.done():
                await self.worker
                raise VoicecliError(f"the Realtime server at {self.base_url} closed the transcription session",
                                    exit_code=ExitCode.NETWORK)
            if time.monotonic() > deadline:
                raise VoicecliError(f"the Realtime server at {self.base_url} did not confirm the transcription "
                                    "session", exit_code=ExitCode.NETWORK)
            await asyncio.sleep(0.01)

    async def feed(self, pcm: bytes) -> None:
        from voicecli.wire.realtime import append_audio

        if self.backlog is not None:  # reconnecting
            self.backlog += pcm
            del self.backlog[:max(0, len(self.backlog) - BACKLOG_BYTES)]
            return
        if await self.transport.send(append_audio(pcm)):
            self.sent_bytes += len(pcm)

    async def finish(self) -> None:
        """The utterance in progress is committed; then wait for every utterance's words."""
        from voicecli.wire.realtime import commit

        if self.speaking is not None and self.backlog is None:
            log.debug("dictation: committing the utterance in progress (Ctrl-C)")
            await self.transport.send(commit())
        deadline = time.monotonic() + FINISH_S
        while self._pending() and not self.worker.done() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if self.worker.done():
            await self.worker

    def _pending(self) -> bool:
        return any(item not in self.final for item in self.order)

    async def _run(self) -> None:
        """Read the session's events; when it ends, go on in a new one."""
        while True:
            reason = await self._read()
            if self.d.stopping and not self._pending():
                return
            await self._reconnect(reason)

    async def _reconnect(self, reason: str) -> None:
        lost = [item for item in self.order if item not in self.final]
        for item in lost:
            self.order.remove(item)
            self.times.pop(item, None)
            self.words.pop(item, None)
        self.speaking = None
        self.d.partial.clear()
        print(f"voicecli: the transcription session ended ({reason}); starting a new one"
              + (f" ({len(lost)} utterance{'s' * (len(lost) != 1)} not transcribed)" if lost else ""),
              file=sys.stderr, flush=True)
        self.backlog = bytearray()
        old, self.transport = self.transport, None
        await old.aclose()
        problem: VoicecliError | None = None
        for delay in RECONNECT_DELAYS_S:
            await asyncio.sleep(delay)
            try:
                await self._connect()
                break
            except VoicecliError as exc:
                problem = exc
        else:
            raise problem
        self._flush()
        self.catching_up = asyncio.get_running_loop().create_task(self._send_backlog())

    async def _send_backlog(self) -> None:
        """Once the new session is confirmed: what was said meanwhile, in 1 s events; then live again."""
        from voicecli.wire.realtime import append_audio

        deadline = time.monotonic() + self.d.profile.connection.read_timeout
        transport = self.transport
        while not transport.decoder.configured and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        while self.backlog:
            chunk = bytes(self.backlog[:48000])
            del self.backlog[:48000]
            if await transport.send(append_audio(chunk)):
                self.sent_bytes += len(chunk)
        self.backlog = None

    async def _read(self) -> str:
        """This session's events until it ends; returns why it ended."""
        from voicecli.events import Disconnected, Error, SpeechStarted, SpeechStopped, Transcript
        from voicecli.sanitize import escape_controls

        async for event in self.transport.events():
            if isinstance(event, SpeechStarted):
                log.debug("dictation: speech start at %d ms", event.audio_start_ms)
                self._item(event.item_id)[0] = self.offset_ms + event.audio_start_ms
                self.speaking = event.item_id
                self.d.partial.show("")
            elif isinstance(event, SpeechStopped):
                log.debug("dictation: speech stop at %d ms", event.audio_end_ms)
                self._item(event.item_id)[1] = self.offset_ms + event.audio_end_ms
                self.speaking = None
            elif isinstance(event, Transcript) and event.role == "user":
                item = event.item_id or f"item{len(self.order)}"
                self._item(item)
                if event.final:
                    self.final[item] = event.text
                    self._flush()
                else:
                    self.words[item] = self.words.get(item, "") + event.text
                    self.d.partial.show(self.words[item])
            elif isinstance(event, Error):
                if not self.transport.decoder.configured:  # the session's settings were refused
                    from voicecli.ui.status import failure

                    raise failure(event, self.base_url, profile=self.d.profile)
                if event.code != "session_expired":  # said when the session ends
                    print(f"voicecli: warning: {escape_controls(event.message)}", file=sys.stderr, flush=True)
            elif isinstance(event, Disconnected):
                return event.reason
        return "connection closed"

    def _item(self, item_id: str) -> list[int]:
        if item_id not in self.times:
            self.order.append(item_id)
            end = self.sent_bytes // 48
            self.times[item_id] = [end, end]
        return self.times[item_id]

    def _flush(self) -> None:
        """Print the completed utterances at the head of the order (a later one waits for an earlier)."""
        while self.order and self.order[0] in self.final:
            item = self.order.pop(0)
            start, end = self.times.pop(item)
            self.words.pop(item, None)
            self.d.emit(start, max(start, end), self.final.pop(item))

    def spent(self) -> tuple[float, int | None]:
        return self.sent_bytes / 48000, None

    async def aclose(self) -> None:
        for task in (self.worker, self.catching_up):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self.transport is not None:
            await self.transport.aclose()
