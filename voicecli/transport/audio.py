"""Speech-to-text and text-to-speech over the audio endpoints (protocols.md §5), for cascaded talk.

`transcribe` posts a WAV to `/audio/transcriptions` (multipart) and yields the user's words as
neutral `Transcript` events: deltas from an SSE stream for the models that stream
(`gpt-4o(-mini)-transcribe`), one final text from plain JSON otherwise (`whisper-1`, local servers).
`speak` posts text to `/audio/speech` with `response_format: "pcm"` and yields the 24 kHz PCM16
as it arrives. Both share the text transports' client, retries, timeouts and error events
(`post_stream`): a failure for good arrives as one `Error` event.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from voicecli.events import Error, Event, Transcript, TurnEnd
from voicecli.profiles import Connection
from voicecli.transport.base import Retries, parse_event, request_headers
from voicecli.transport.http import post_stream
from voicecli.transport.client import JSON_LIMIT, Response
from voicecli.transport.urls import endpoint_url
from voicecli.wire import errors
from voicecli.wire.sse import SSEDecoder
from voicecli.wire.subtitles import subtitle_words

TEXT_TYPES = ("text/plain", "text/vtt", "application/x-subrip", "text/srt")  # plain text or subtitles


def streams_transcript(model: str) -> bool:
    """The transcription models that stream deltas; whisper-1 and local servers answer once."""
    return model.startswith("gpt-4o") and "transcribe" in model and "diarize" not in model


class AudioClient:
    """One API root (and key) for speech-to-text or text-to-speech."""

    def __init__(self, conn: Connection, base_url: str, api_key: str | None):
        self.conn, self.base_url, self.api_key = conn, base_url.rstrip("/"), api_key

    async def transcribe(self, wav: bytes, *, model: str, language: str | None = None,
                         prompt: str | None = None) -> AsyncIterator[Event]:
        """The words in `wav`: `Transcript("user", …)` deltas, then one final; or an `Error`."""
        stream = streams_transcript(model)
        form = {"model": model, "response_format": "json", **({"stream": "true"} if stream else {}),
                **({"language": language} if language else {}), **({"prompt": prompt} if prompt else {})}
        headers = request_headers(self.conn, self.api_key)
        if stream:
            headers["Accept"] = "text/event-stream"

        def body() -> dict[str, Any]:  # a multipart form (httpx2 makes it)
            return {"data": form, "files": {"file": ("speech.wav", wav, "audio/wav")}, "headers": headers}

        url = endpoint_url(self.base_url, "/audio/transcriptions")
        async with aclosing(post_stream(self.conn, self.base_url, url, self.api_key,
                                        Retries(self.conn.max_retries, self.api_key), body, _transcript_events)) as events:
            async for event in events:
                if not isinstance(event, TurnEnd):
                    yield event

    async def speak(self, text: str, *, model: str, voice: str, instructions: str | None = None,
                    speed: float | None = None) -> AsyncIterator[bytes | Error]:
        """`text` as PCM16 24 kHz mono, piece by piece as the server sends it; or an `Error`."""
        payload: dict[str, Any] = {"model": model, "input": text, "voice": voice, "response_format": "pcm"}
        if instructions:
            payload["instructions"] = instructions
        if speed is not None:
            payload["speed"] = speed
        content = json.dumps(payload).encode()
        headers = {**request_headers(self.conn, self.api_key), "Content-Type": "application/json"}
        url = endpoint_url(self.base_url, "/audio/speech")
        async with aclosing(post_stream(self.conn, self.base_url, url, self.api_key,
                                        Retries(self.conn.max_retries, self.api_key),
                                        lambda: {"content": content, "headers": headers}, _pcm_pieces)) as pieces:
            async for piece in pieces:
                if isinstance(piece, (bytes, Error)):
                    yield piece


async def _transcript_events(resp: Response) -> AsyncIterator[Event]:
    """An SSE stream of `transcript.text.*`, or a JSON / plain-text reply (servers that ignore `stream`)."""
    content_type = resp.headers.get("content-type", "").lower()
    if not content_type.startswith("text/event-stream"):
        raw = await resp.aread(JSON_LIMIT)
        try:
            data = json.loads(raw)
            text = data.get("text") if isinstance(data, dict) else None
        except ValueError:  # plain text, or subtitles (a server set to srt / vtt): their words only
            text = raw.decode("utf-8", "replace") if content_type.startswith(TEXT_TYPES) else None
            text = subtitle_words(text) if text is not None else None
        if not isinstance(text, str):
            yield errors.not_a_stream(content_type, raw[:512], request_id=resp.headers.get("x-request-id"))
            return
        yield Transcript("user", text.strip(), final=True)
        return
    sse, done = SSEDecoder(), False
    async for chunk in resp.aiter_bytes(progress_bytes=None):  # silence: no complete event
        for message in [*sse.feed(chunk)]:
            resp.progress()
            data = parse_event(message.data) if message.data and not message.is_done else None
            kind = (data or {}).get("type")
            if kind == "transcript.text.delta" and isinstance(data.get("delta"), str):
                yield Transcript("user", data["delta"])
            elif kind == "transcript.text.done":
                done = True
                yield Transcript("user", str(data.get("text") or "").strip(), final=True)
            elif message.event == "error" or kind == "error" or (data or {}).get("error"):
                yield errors.from_error_frame(data or {"message": message.data})
                return
    if not done:  # the stream ended without its terminal event: the words are not all there
        yield errors.connection_error("the transcription stream ended before transcript.text.done")


PROGRESS_BYTES = 4800  # a tenth of a second of 24 kHz PCM16: less within read_timeout is silence
PCM_TYPES = ("audio/pcm", "audio/l16", "audio/raw", "audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave",
             "application/octet-stream", "")


async def _pcm_pieces(resp: Response) -> AsyncIterator[bytes | Error]:
    """24 kHz PCM16 mono as it arrives. A WAV (a server that ignores "pcm", Piper at 22.05 kHz…) is
    unwrapped and converted; compressed audio (mp3, opus…) or a 200 that is not audio is an error."""
    content_type = resp.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in PCM_TYPES:
        raw = await resp.aread()
        if content_type.startswith("audio/"):
            yield Error("protocol", f"the text-to-speech server sent {content_type}, not PCM: it ignored "
                        "response_format \"pcm\" (voicecli plays PCM or WAV)", code="unsupported_audio")
        else:
            yield errors.not_a_stream(content_type, raw[:512], request_id=resp.headers.get("x-request-id"))
        return
    reader = PcmReader()
    async for chunk in resp.aiter_bytes(progress_bytes=PROGRESS_BYTES):
        try:
            pcm = reader.feed(chunk)
        except ValueError as exc:
            yield Error("protocol", f"the text-to-speech server sent a WAV voicecli cannot play: {exc}",
                        code="unsupported_audio")
            return
        if pcm:
            yield pcm
    tail = reader.finish()
    if tail:
        yield tail


class PcmReader:
    """Raw PCM16 24 kHz mono, or a (streamed) WAV of any rate, channel count and 8/16/32-bit or float
    samples, fed in pieces of any size → whole 24 kHz PCM16 mono samples. A WAV's chunk sizes may be
    0xFFFFFFFF (streamed, as OpenAI sends it): the data runs to the end of the body."""

    def __init__(self) -> None:
        self.head = b""  # until the format is known
        self.format: tuple[int, int, int, int] | None = None  # (format tag, channels, rate, bits)
        self.wav: bool | None = None
        self.reading_header = True
        self.carry = b""
        self.resampler = None

    def feed(self, chunk: bytes) -> bytes:
        if self.reading_header:
            self.head += chunk
            if len(self.head) < 12:
                return b""
            self.wav = self.head[:4] == b"RIFF" and self.head[8:12] == b"WAVE"
            chunk = self._walk() if self.wav else self.head
            if chunk is None:
                return b""
            self.reading_header, self.head = False, b""
        return self._convert(chunk)

    def _walk(self) -> bytes | None:
        """The audio after the header once its `fmt ` and `data` chunks arrived, else None."""
        import struct

        pos = 12
        while pos + 8 <= len(self.head):
            cid, size = self.head[pos:pos + 4], struct.unpack("<I", self.head[pos + 4:pos + 8])[0]
            if cid == b"data":
                if self.format is None:
                    raise ValueError("no fmt chunk before the data")
                self._setup()
                return self.head[pos + 8:]
            if pos + 8 + size > len(self.head):
                return None  # this chunk has not all arrived yet
            if cid == b"fmt ":
                tag, channels, rate = struct.unpack("<HHI", self.head[pos + 8:pos + 16])
                bits = struct.unpack("<H", self.head[pos + 22:pos + 24])[0]
                if tag == 0xFFFE and size >= 40:  # WAVE_FORMAT_EXTENSIBLE: the real tag opens the sub-format GUID
                    tag = struct.unpack("<H", self.head[pos + 32:pos + 34])[0]
                self.format = (tag, channels, rate, bits)
            pos += 8 + size + (size & 1)
        return None

    def _setup(self) -> None:
        from voicecli.audio.pcm import RATE, Resampler

        tag, channels, rate, bits = self.format
        if (tag, bits) not in ((1, 8), (1, 16), (1, 32), (3, 32)) or not channels or not rate:
            raise ValueError(f"format {tag}, {bits}-bit, {channels} channel(s) at {rate} Hz")
        if (tag, channels, rate, bits) != (1, 1, RATE, 16):
            self.resampler = Resampler(rate)

    def _convert(self, chunk: bytes, last: bool = False) -> bytes:
        if self.resampler is None:  # already 24 kHz PCM16 mono
            data = self.carry + chunk
            whole = len(data) // 2 * 2
            self.carry = data[whole:]
            return data[:whole]
        import numpy as np

        from voicecli.audio.pcm import to_mono

        tag, channels, _, bits = self.format
        frame = channels * bits // 8
        data = self.carry + chunk
        whole = len(data) // frame * frame
        self.carry, data = data[whole:], data[:whole]
        if bits == 8:
            x = (np.frombuffer(data, dtype=np.uint8).astype(np.int16) - 128) << 8
        elif bits == 16:
            x = np.frombuffer(data, dtype="<i2")
        elif tag == 3:
            x = np.clip(np.frombuffer(data, dtype="<f4") * 32768.0, -32768, 32767)
        else:
            x = np.frombuffer(data, dtype="<i4") >> 16
        mono = to_mono(x.astype(np.int16), channels)
        return self.resampler.process(mono, last=last).astype("<i2").tobytes()

    def finish(self) -> bytes:
        """The end of the body: a reply shorter than a WAV header is plain PCM; flush the resampler."""
        if self.reading_header and self.head and not self.wav:
            chunk, self.head = self.head, b""
            return self._convert(chunk)
        if self.resampler is not None:
            return self._convert(b"", last=True)
        return b""
