"""Live dictation for `voicecli transcribe` (no FILE): microphone → one line per finished utterance.

Engine `http`: the cascade's local VAD (`Segmenter`, tuned by `[voice]` vad_*) cuts the microphone
into utterances; each goes to `/audio/transcriptions` as soon as it ends (one at a time, so lines
keep their order; a streaming model's deltas show as the partial line). Its text is printed,
flushed, the moment it is final: `voicecli transcribe >> notes.txt` works line by line.

Ctrl-C (SIGINT): the utterance in progress ends there, is transcribed and printed, then 0; a second
Ctrl-C leaves at once with 130. SIGTERM / SIGHUP leave like a second Ctrl-C (143 / 129).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time

from voicecli.errors import ConfigError, ExitCode

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


class Dictation:
    def __init__(self, profile, opts, out, convlog=None):
        self.profile, self.opts, self.out, self.convlog = profile, opts, out, convlog
        self.engine = opts.engine or "http"
        self.rec = None
        self.partial = PartialLine(opts.partial)
        self.stopping = False  # first Ctrl-C: finish the utterance in progress
        self.leave: int | None = None  # second Ctrl-C (130) or SIGTERM/SIGHUP: at once
        self.utterances = 0

    def _microphone(self):
        from voicecli.audio.devices import resolve_device

        try:
            device = resolve_device(self.opts.input_device or self.profile.voice.input_device, "input")
        except ConfigError as exc:
            if exc.message == "no audio input device found":
                exc.message = "no microphone found"
                exc.hint = "transcribe a recording instead: voicecli transcribe FILE.wav (or - for a WAV on stdin)"
            raise
        return device

    async def run(self) -> int:
        from voicecli.audio.devices import import_sounddevice
        from voicecli.audio.mic import Microphone
        from voicecli.audio.vad import Segmenter
        from voicecli.signals import on_leave_signals, on_signal
        from voicecli.transcribe import Recogniser
        from voicecli.transport import close_clients
        from voicecli.voice.cascade import local_vad

        import signal

        device = self._microphone()
        self.rec = Recogniser(self.profile)
        segmenter = Segmenter(local_vad(self.profile.voice))
        mic = Microphone(device["index"])
        sd = import_sounddevice()
        try:
            mic.start()
        except sd.PortAudioError as exc:
            raise ConfigError(f"cannot open the microphone: {exc}",
                              hint="check `voicecli devices`, or transcribe a file: voicecli transcribe FILE.wav") from None
        utterances: asyncio.Queue = asyncio.Queue()
        stop = asyncio.Event()
        started = time.monotonic()

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
        worker = asyncio.get_running_loop().create_task(self._work(utterances, started))
        log.debug("dictation: listening (%s)", device["name"])
        try:
            reading = asyncio.get_running_loop().create_task(self._listen(mic, segmenter, utterances))
            await asyncio.wait({reading, asyncio.ensure_future(stop.wait()), worker},
                               return_when=asyncio.FIRST_COMPLETED)
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
            if worker.done():
                await worker  # a failure: its error line
            mic.close()
            if self.leave is None:  # Ctrl-C: what was being said is the last utterance
                last = segmenter.flush()
                if last is not None:
                    utterances.put_nowait(last)
                utterances.put_nowait(None)
                second = asyncio.ensure_future(self._second_press(stop))
                await asyncio.wait({worker, second}, return_when=asyncio.FIRST_COMPLETED)
                second.cancel()
                if worker.done():
                    await worker
            return self.leave if self.leave is not None else ExitCode.OK
        finally:
            mic.close()
            if not worker.done():
                worker.cancel()
                await asyncio.gather(worker, return_exceptions=True)
            self.partial.clear()
            unhook()
            unhook_leave()
            await close_clients()

    async def _second_press(self, stop: asyncio.Event) -> None:
        stop.clear()
        await stop.wait()

    async def _listen(self, mic, segmenter, utterances: asyncio.Queue) -> None:
        async for pcm, _ in mic.blocks():
            for event in segmenter.feed(pcm):
                log.debug("dictation: speech %s at %d ms", event.kind, event.ms)
                if event.kind == "start":
                    self.partial.show("")
                else:
                    utt = segmenter.take()
                    if utt is not None:
                        utterances.put_nowait(utt)

    async def _work(self, utterances: asyncio.Queue, started: float) -> None:
        from voicecli.transcribe import Segment, _log_user

        while (utt := await utterances.get()) is not None:
            words: list[str] = []

            def delta(text: str) -> None:
                words.append(text)
                self.partial.show("".join(words))

            text = await self.rec.text(utt.pcm, delta)
            self.partial.clear()
            seg = Segment(utt.start_ms / 1000, utt.end_ms / 1000, text)
            self.out.segment(seg)
            if seg.text:
                self.utterances += 1
                log.debug("dictation: printed utterance %d", self.utterances)
                if self.convlog is not None:
                    _log_user(self.convlog, seg.text)

    def closing_line(self) -> str:
        if self.rec is None:
            return ""
        return self.rec.closing_line(f", {self.utterances} utterance{'s' * (self.utterances != 1)}")
