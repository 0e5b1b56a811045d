"""`voicecli transcribe`: speech → text, shaped like a Unix filter.

    FILE.wav | - (stdin) ──PcmReader (any rate/channels → 24 kHz mono, streamed)──► Pieces (local VAD: cut
        in silences) ──► /audio/transcriptions (PIPELINE at once) ──► text | json | srt | vtt on stdout, in order
    microphone ──► Segmenter (local VAD) ──utterance──► /audio/transcriptions ──► one line per utterance, flushed

A file is never held whole: it is read in blocks, and only the piece being cut and the requests in
flight are in memory. Pieces are cut where the local detector heard speech end; for `text` a piece
gathers utterances up to TARGET_S (fewer, larger requests), for the timed formats (json, srt, vtt)
each utterance is its own request, so every segment has its start and end even when the server
answers only text. Stretches with no speech in them are not sent (recognisers invent words in silence).
No piece is longer than MAX_S (≤ 25 MB, the API's upload limit), cut mid-speech only when nobody pauses.

Live dictation: the cascade's local VAD cuts the microphone into utterances (the `http` engine) or a
Realtime transcription session does (`realtime`, see dictation.py). Ctrl-C finishes the
utterance in progress, prints it and exits 0; a second Ctrl-C exits 130 at once.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicecli.errors import ConfigError, ExitCode, UsageError
from voicecli.profiles import Profile

FORMATS = ("text", "json", "srt", "vtt")
TARGET_S = 60.0  # a `text` piece ends at the first pause after this much audio
MAX_S = 300.0  # never more audio than this in one request: 14.4 MB of 24 kHz PCM16 (the API takes 25 MB)
PIPELINE = 2  # requests in flight at once (order is kept); with TARGET_S this bounds memory
PIPELINE_TIMED = 4  # the timed formats' requests are single utterances: small, more of them at once
READ_BYTES = 1 << 16
BYTES_PER_S = 48000


@dataclass
class TranscribeOptions:
    source: str | None = None  # a WAV path, "-" for stdin, None for the microphone
    format: str = "text"
    language: str | None = None
    prompt: str | None = None
    engine: str | None = None  # live: http | realtime
    partial: bool = False
    log: bool = False
    input_device: str | None = None
    debug: bool = False


@dataclass
class Segment:
    start: float  # seconds
    end: float
    text: str


@dataclass
class Piece:
    pcm: bytes
    start_ms: int  # where its audio begins in the stream
    spans: list[tuple[int, int]] = field(default_factory=list)  # speech (start, end) ms, in the stream


def run_transcribe(profile: Profile, opts: TranscribeOptions, live: Any = None) -> int:
    """`live`: the live-dictation job's class (`dictation.Dictation`), when there is no file; the
    caller passes it, so this module (which dictation builds on) does not import it."""
    from voicecli.ui.status import setup_logging

    setup_logging(opts.debug)
    if opts.format not in FORMATS:
        raise UsageError(f"--format must be text, json, srt or vtt; got '{opts.format}'")
    v = profile.voice
    if opts.language:
        v.transcription_language = opts.language
    if opts.prompt:
        v.transcription_prompt = opts.prompt
    if not v.transcription_model:
        raise ConfigError("no speech-to-text model: voice.transcription_model is empty", hint="pass -m MODEL")
    out = Output(opts.format, sys.stdout, live=opts.source is None)
    log = _open_log(profile) if opts.log else None
    job = FileJob(profile, opts, out, log) if opts.source is not None else live(profile, opts, out, log)
    try:
        code = asyncio.run(job.run())
    except BrokenPipeError:
        from voicecli.signals import stdout_gone

        stdout_gone()
        return ExitCode.OK
    finally:
        if log is not None:
            log.close()
    print(f"voicecli: transcribe: {job.closing_line()}", file=sys.stderr)
    return code


def _open_log(profile: Profile):
    from voicecli import convlog

    return convlog.ConversationLog.create(lazy=True, **convlog.where(profile))


# -- output -------------------------------------------------------------------------------------


def timestamp(seconds: float, sep: str) -> str:
    ms = max(0, int(round(seconds * 1000)))
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"


class Output:
    """Segments → stdout as they are final, flushed. `json`: one object at the end for a file
    ({"text", "duration", "segments": [{"start", "end", "text"}]}), a JSON line per segment live."""

    def __init__(self, fmt: str, stream, live: bool = False):
        self.fmt, self.stream, self.live = fmt, stream, live
        self.segments: list[Segment] = []
        self.cues = 0

    def segment(self, seg: Segment) -> None:
        seg.text = seg.text.strip()
        if not seg.text:
            return
        self.segments.append(seg)
        if self.fmt == "text":
            self._write(seg.text + "\n")
        elif self.fmt == "json":
            if self.live:
                self._write(json.dumps({"start": round(seg.start, 3), "end": round(seg.end, 3), "text": seg.text},
                                       ensure_ascii=False) + "\n")
        else:
            self.cues += 1
            sep = "," if self.fmt == "srt" else "."
            head = ("WEBVTT\n\n" if self.fmt == "vtt" and self.cues == 1 else "") + (
                f"{self.cues}\n" if self.fmt == "srt" else "")
            self._write(f"{head}{timestamp(seg.start, sep)} --> {timestamp(seg.end, sep)}\n{seg.text}\n\n")

    def close(self, duration: float) -> None:
        if self.fmt == "json" and not self.live:
            self._write(json.dumps({"text": " ".join(s.text for s in self.segments), "duration": round(duration, 3),
                                    "segments": [{"start": round(s.start, 3), "end": round(s.end, 3), "text": s.text}
                                                 for s in self.segments]}, ensure_ascii=False) + "\n")
        elif self.fmt == "vtt" and not self.cues and not self.live:
            self._write("WEBVTT\n\n")

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


# -- speech-to-text of one piece ----------------------------------------------------------------


class Recogniser:
    """The profile's speech-to-text endpoint; counts the audio sent (for the cost line)."""

    def __init__(self, profile: Profile):
        from voicecli.voice.cascade import audio_client

        self.voice = profile.voice
        self.client, self.url = audio_client(profile, "transcription")
        self.seconds = 0.0
        self.requests = 0

    async def text(self, pcm: bytes, on_delta: Callable[[str], None] | None = None) -> str:
        from voicecli.audio.wav import wav_bytes
        from voicecli.events import Error
        from voicecli.ui.status import failure

        v = self.voice
        self.seconds += len(pcm) / BYTES_PER_S
        self.requests += 1
        async with aclosing(self.client.transcribe(wav_bytes(pcm), model=v.transcription_model,
                                                   language=v.transcription_language,
                                                   prompt=v.transcription_prompt)) as events:
            async for event in events:
                if isinstance(event, Error):
                    raise failure(event, self.url, stage="speech-to-text")
                if event.final:
                    return event.text
                if on_delta is not None:
                    on_delta(event.text)
        return ""

    def closing_line(self, extra: str = "") -> str:
        return cost_line(self.voice.transcription_model, self.seconds,
                         f"in {self.requests} request{'s' * (self.requests != 1)}{extra}")


def cost_line(model: str, seconds: float, how: str) -> str:
    """The closing line's words: the model, the audio transcribed, how, and its price."""
    from voicecli.pricing import format_usd, speech_cost

    return f"{model} · {seconds / 60:.1f} min of audio {how} · {format_usd(speech_cost(model, seconds=seconds))}"


# -- files --------------------------------------------------------------------------------------


class Pieces:
    """24 kHz PCM16 → contiguous pieces cut in pauses (see the module docstring)."""

    def __init__(self, vad, per_utterance: bool, target_s: float = TARGET_S, max_s: float = MAX_S):
        from voicecli.audio.vad import TAIL_MS

        self.vad, self.per_utterance = vad, per_utterance
        self.target, self.max = int(target_s * BYTES_PER_S), int(max_s * BYTES_PER_S) // 2 * 2
        self.tail_ms = min(TAIL_MS, vad.silence_ms)
        self.buf = bytearray()
        self.at_ms = 0.0  # where buf begins in the stream
        self.spans: list[tuple[int, int]] = []
        self.open: int | None = None  # start of speech in progress

    def feed(self, pcm: bytes) -> list[Piece]:
        out: list[Piece] = []
        for i in range(0, len(pcm), self.max):  # a huge block would overshoot MAX_S
            block = pcm[i:i + self.max]
            self.buf += block
            for ev in self.vad.feed(block):
                out += self._event(ev)
            while len(self.buf) >= self.max:  # nobody paused: cut anyway
                out += self._cut(self.at_ms + self.max / 48)
        return out

    def finish(self) -> list[Piece]:
        out: list[Piece] = []
        for ev in self.vad.finish():
            out += self._event(ev, cut=False)
        out += self._cut(self.at_ms + len(self.buf) / 48)
        return [p for p in out if p.spans]

    def _event(self, ev, cut: bool = True) -> list[Piece]:
        if ev.kind == "start":
            self.open = ev.ms
            return []
        self.spans.append((self.open if self.open is not None else ev.ms, ev.ms))
        self.open = None
        if cut and (self.per_utterance or len(self.buf) >= self.target):
            return self._cut(min(ev.ms + self.tail_ms, self.at_ms + len(self.buf) / 48))
        return []

    def _cut(self, at_ms: float) -> list[Piece]:
        n = int(round((at_ms - self.at_ms) * 48)) // 2 * 2
        piece = Piece(bytes(self.buf[:n]), int(self.at_ms), [s for s in self.spans])
        del self.buf[:n]
        self.at_ms += n / 48
        self.spans = []
        if self.open is not None and self.open < self.at_ms:  # speech going on across a forced cut
            piece.spans.append((self.open, int(self.at_ms)))
            self.open = int(self.at_ms)
        return [piece] if piece.spans else []


class FileJob:
    def __init__(self, profile: Profile, opts: TranscribeOptions, out: Output, log):
        self.profile, self.opts, self.out, self.log = profile, opts, out, log
        self.name = "stdin" if opts.source == "-" else opts.source
        self.rec: Recogniser | None = None
        self.duration = 0.0

    def _open(self):
        if self.opts.source == "-":
            return sys.stdin.buffer
        path = Path(self.opts.source)
        try:
            return open(path, "rb")
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None

    async def run(self) -> int:
        from voicecli.transport import close_clients
        from voicecli.transport.audio import PcmReader
        from voicecli.voice.cascade import local_vad

        f = self._open()
        head = await asyncio.to_thread(f.read, 12)
        if not (head[:4] == b"RIFF" and head[8:12] == b"WAVE"):
            what = "is empty" if not head else "is not a WAV file"
            raise UsageError(f"{self.name} {what}", hint="transcribe reads WAV (PCM or float, any rate and channel "
                             "count); convert others first, e.g. ffmpeg -i in.mp3 out.wav")
        self.rec = Recogniser(self.profile)
        reader = PcmReader()
        pieces = Pieces(local_vad(self.profile.voice), per_utterance=self.opts.format != "text")
        inflight: asyncio.Queue = asyncio.Queue(PIPELINE if self.opts.format == "text" else PIPELINE_TIMED)
        writer = asyncio.get_running_loop().create_task(self._write(inflight))
        try:
            data = head
            while data:
                try:
                    pcm = reader.feed(data)
                except ValueError as exc:
                    raise UsageError(f"{self.name}: a WAV voicecli cannot read: {exc}",
                                     hint="use 8/16/32-bit PCM or 32-bit float") from None
                self.duration += len(pcm) / BYTES_PER_S
                for piece in await asyncio.to_thread(pieces.feed, pcm):
                    await self._send(piece, inflight, writer)
                data = await asyncio.to_thread(f.read, READ_BYTES)
            if reader.reading_header:
                raise UsageError(f"{self.name}: the WAV ends before its audio (no data chunk)")
            tail = reader.finish()
            self.duration += len(tail) / BYTES_PER_S
            for piece in pieces.feed(tail) + pieces.finish():
                await self._send(piece, inflight, writer)
            await inflight.put(None)
            await writer
        finally:
            if not writer.done():
                writer.cancel()
                await asyncio.gather(writer, return_exceptions=True)
            while not inflight.empty():
                entry = inflight.get_nowait()
                if entry is not None:
                    entry[1].cancel()
            if f is not sys.stdin.buffer:
                f.close()
            await close_clients()
        self.out.close(self.duration)
        return ExitCode.OK

    async def _send(self, piece: Piece, inflight: asyncio.Queue, writer: asyncio.Task) -> None:
        if writer.done():  # a request failed: say so now, not after reading the whole file
            await writer
        task = asyncio.get_running_loop().create_task(self.rec.text(piece.pcm))
        put = asyncio.ensure_future(inflight.put((piece, task)))
        done, _ = await asyncio.wait({put, writer}, return_when=asyncio.FIRST_COMPLETED)
        if put not in done:
            put.cancel()
            task.cancel()
            await writer  # raises its failure

    async def _write(self, inflight: asyncio.Queue) -> None:
        while (entry := await inflight.get()) is not None:
            piece, task = entry
            text = await task
            start, end = piece.spans[0][0] / 1000, piece.spans[-1][1] / 1000
            seg = Segment(start, end, text)
            self.out.segment(seg)
            if self.log is not None and seg.text:
                _log_user(self.log, seg.text)

    def closing_line(self) -> str:
        return self.rec.closing_line(f" ({self.duration / 60:.1f} min file)") if self.rec else ""


def _log_user(log, text: str) -> None:
    """--log: what was said joins the conversation log as a user turn (`infer -c` picks it up)."""
    from voicecli.items import Message

    log.add_item(Message("user", text))
