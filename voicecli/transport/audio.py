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
from typing import Any

import httpx

from voicecli.events import Error, Event, Transcript, TurnEnd
from voicecli.profiles import Connection
from voicecli.transport.base import Retries, parse_event, request_headers
from voicecli.transport.http import post_stream
from voicecli.transport.urls import endpoint_url
from voicecli.wire import errors
from voicecli.wire.sse import SSEDecoder


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

        def body() -> dict[str, Any]:
            return {"data": form, "files": {"file": ("speech.wav", wav, "audio/wav")}, "headers": headers}

        url = endpoint_url(self.base_url, "/audio/transcriptions")
        async for event in post_stream(self.conn, self.base_url, url, self.api_key,
                                       Retries(self.conn.max_retries, self.api_key), body, _transcript_events):
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
        async for piece in post_stream(self.conn, self.base_url, url, self.api_key,
                                       Retries(self.conn.max_retries, self.api_key),
                                       lambda: {"content": content, "headers": headers}, _pcm_pieces):
            if isinstance(piece, (bytes, Error)):
                yield piece


async def _transcript_events(resp: httpx.Response) -> AsyncIterator[Event]:
    """An SSE stream of `transcript.text.*`, or a JSON / plain-text reply (servers that ignore `stream`)."""
    content_type = resp.headers.get("content-type", "").lower()
    if not content_type.startswith("text/event-stream"):
        raw = await resp.aread()
        try:
            data = json.loads(raw)
            text = data.get("text") if isinstance(data, dict) else None
        except ValueError:
            data, text = None, raw.decode("utf-8", "replace") if content_type.startswith("text/plain") else None
        if not isinstance(text, str):
            yield errors.not_a_stream(content_type, raw[:512], request_id=resp.headers.get("x-request-id"))
            return
        yield Transcript("user", text.strip(), final=True)
        return
    sse, done = SSEDecoder(), False
    async for chunk in resp.aiter_raw():
        for message in [*sse.feed(chunk)]:
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


async def _pcm_pieces(resp: httpx.Response) -> AsyncIterator[bytes | Error]:
    """Whole samples of PCM16 as they arrive; a WAV container (a server that ignores "pcm") is unwrapped."""
    content_type = resp.headers.get("content-type", "").lower()
    if content_type.startswith(("application/json", "text/")):  # a 200 that is not audio
        raw = await resp.aread()
        yield errors.not_a_stream(content_type, raw[:512], request_id=resp.headers.get("x-request-id"))
        return
    carry, header = b"", b""
    in_header = None  # unknown until the first 4 bytes are seen
    async for chunk in resp.aiter_raw():
        if in_header is None or in_header:
            header += chunk
            if len(header) < 12:
                continue
            in_header = header[:4] == b"RIFF" and header[8:12] == b"WAVE"
            if in_header:
                at = header.find(b"data", 12)
                if at < 0 or len(header) < at + 8:
                    continue  # the data chunk's header has not arrived yet
                in_header, chunk = False, header[at + 8:]  # sizes may be 0xFFFFFFFF (streamed): ignore them
            else:
                chunk = header
        data = carry + chunk
        whole = len(data) // 2 * 2
        carry = data[whole:]
        if whole:
            yield data[:whole]
    if in_header is None and header:  # a reply shorter than a WAV header: plain PCM
        whole = len(header) // 2 * 2
        if whole:
            yield header[:whole]
