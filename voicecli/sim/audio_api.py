"""The simulator's audio endpoints, for the cascaded STT → LLM → TTS path (protocols.md §5).

`POST /v1/audio/transcriptions` (multipart): a WAV upload of speech the simulator made itself
(`/v1/audio/speech`, a Realtime answer, or `voicecli sim --phrase`) reads as its exact text (see
`voicecli.sim.phrasebook`); any other speech reads `vad.describe_speech(audio)` ("[speech 1.23
s]", "" for silence); other containers (mp3, ogg, …) are not decoded and read "[audio N bytes]".
`response_format` json (default) | text | verbose_json | srt | vtt; `stream=true` gives SSE
`transcript.text.delta` / `transcript.text.done` then `data: [DONE]`, as the real API (ignored
for whisper-1, as the real API does).

`POST /v1/audio/speech` (JSON): `voicecli.sim.speech.synthesize(input)` as `pcm` (raw 24 kHz
PCM16 mono) or `wav`; other formats (mp3, opus, aac, flac — the API default is mp3) get a 400
saying so. `stream_format` audio (chunked body, one 100 ms piece per chunk) or sse
(`speech.audio.delta` / `.done`). The text joins the phrasebook.

Latency and faults (`x-sim-fault`, `sim.config`) as on the other endpoints. The first byte
leaves `latency` seconds after the request arrived (the simulator's own work is inside that
time, so a benchmark can subtract it exactly); `delta_delay` separates the streamed events or
100 ms audio pieces (0.1 streams speech at real time). `status`/`quota`/`retry_after`/`times`
refuse the request as everywhere. In streams `drop`, `close` (like drop), `stall`, `after`,
`malformed`, `unknown` and `error=flat|nested` (`{"type":"error",…}` flat, or with an `error`
object, which the SDK raises as an APIError) act per event; a raw audio body has no events to
break or add, so `malformed`/`unknown` do nothing there and `error` cuts it like `drop`.
`failed` ends a stream with a flat error event instead of its terminal event (`done`; raw audio:
cut before the last piece). A non-streamed transcription: `drop`/`close` cut the connection,
`error`/`failed` give a 500, `stall` waits, `malformed` sends cut-off JSON. `incomplete` and
`think` have no meaning for audio and do nothing.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import wave
from typing import Any, Callable

from aiohttp import web

from . import brain, speech
from .faults import MALFORMED, Fault, SseSink, midstream_error, play
from .phrasebook import transcribe
from .responses import _delays
from .aio import put
from .validate import ApiError, invalid_value, missing, parse_json

TRANSCRIBE_FORMATS = ["json", "text", "srt", "verbose_json", "vtt"]
SPEECH_FORMATS = ["mp3", "opus", "aac", "flac", "wav", "pcm"]
SPEECH_CHUNK = 4800  # 100 ms of PCM per streamed piece


def _sse(event: dict | str) -> str:
    return f"data: {event if isinstance(event, str) else json.dumps(event)}\n\n"


async def _wait_latency(request: web.Request, latency: float) -> None:
    """Sleep until `latency` seconds after the request arrived (the work done so far counts)."""
    spent = asyncio.get_running_loop().time() - request["sim_t0"]
    if latency > spent:
        await asyncio.sleep(latency - spent)


def _inject(kind: str, fault: Fault, prefix: str) -> list[str]:
    """Frames for the SSE stream faults: a cut-off event, an unknown event, a mid-stream error."""
    if kind == "malformed":
        return [_sse(MALFORMED)]
    if kind == "unknown":  # e.g. "transcript.sim_unknown": a type of the stream's family the client cannot know
        return [_sse({"type": f"{prefix}.sim_unknown", "note": "simulated unknown event"})]
    if fault.error == "nested":
        return [_sse({"type": "error", "error": midstream_error(fault, True)})]
    return [_sse({"type": "error", **midstream_error(fault, False)})]


class _BodySink(SseSink):
    """A raw (chunked) body: frames are bytes, written as they are."""

    async def send(self, frame: Any) -> None:
        await self.response.write(frame)


async def _stream(request: web.Request, headers: dict, frames: list, render: Callable[[Any], Any],
                  fault: Fault | None, latency: float, delay: float, family: str = "", tail: int = 1) -> web.StreamResponse:
    """Send `frames` after the latency, with the stream faults applied: SSE events of `family`
    ("transcript", "speech"), or raw body pieces when `family` is empty. `failed` replaces the
    last `tail` frames (the terminal events) with an error."""
    raw = not family
    if fault is not None and fault.failed and fault.error is None:
        fault = fault.merged(Fault(error="flat", after=max(0, len(frames) - tail)))
    resp = web.StreamResponse(headers=headers)
    if raw:
        resp.enable_chunked_encoding()
    await _wait_latency(request, latency)
    await resp.prepare(request)
    if raw and fault is not None and fault.error is not None:  # no error frame fits in raw audio: cut it
        fault = fault.merged(Fault(drop=fault.after))
    inject = (lambda kind, f: []) if raw else (lambda kind, f: _inject(kind, f, family))
    if await play((_BodySink if raw else SseSink)(resp, request), frames, render, fault, delay, inject):
        await resp.write_eof()
    return resp


def _transcript(book: Any, data: bytes) -> tuple[str, float]:
    """(deterministic transcript, audio seconds) of an uploaded file."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        try:
            pcm = speech.read_wav(data)
        except (ValueError, EOFError, wave.Error):
            raise ApiError(400, "The audio file could not be decoded or its format is not supported.", "file",
                           "invalid_value") from None  # fmt: skip
        return transcribe(book, pcm), speech.pcm_ms(pcm) / 1000
    return f"[audio {len(data)} bytes]", 0.0


def _timestamp(seconds: float, sep: str) -> str:
    ms = int(round(seconds * 1000))
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"


async def handle_transcriptions(request: web.Request) -> web.StreamResponse:
    sim = request.app["sim"]
    put(request, "sim_t0", asyncio.get_running_loop().time())
    if not request.content_type.startswith("multipart/"):
        raise ApiError(400, "Expected a multipart/form-data body with a 'file' field.", "file", "invalid_value")
    form = await request.post()
    upload = form.get("file")
    if upload is None or not hasattr(upload, "file"):
        raise missing("file")
    if not form.get("model"):
        raise missing("model")
    data = upload.file.read()
    fields = {k: v for k, v in form.items() if k != "file"}
    sim.record("audio", {"endpoint": request.path, "form": fields,
                         "file": {"filename": upload.filename, "content_type": upload.content_type, "bytes": len(data)}})  # fmt: skip
    model, fmt = str(form["model"]), str(form.get("response_format") or "json")
    if fmt not in TRANSCRIBE_FORMATS:
        raise invalid_value("response_format", fmt, TRANSCRIBE_FORMATS)
    text, seconds = await asyncio.to_thread(_transcript, sim.phrases, data)  # recognition: ~1 ms per known phrase
    out_tokens = brain.count_tokens(text)
    audio_tokens = max(1, int(seconds * 10))
    if model == "whisper-1":
        usage = {"type": "duration", "seconds": math.ceil(seconds)}  # whole seconds, as recorded
    else:
        usage = {"type": "tokens", "input_tokens": audio_tokens, "output_tokens": out_tokens,
                 "total_tokens": audio_tokens + out_tokens, "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens}}  # fmt: skip
    fault = request.get("fault")
    latency, delay = _delays(sim, fault)
    if str(form.get("stream", "false")).lower() == "true" and model != "whisper-1":
        events: list = [{"type": "transcript.text.delta", "delta": piece} for piece in (brain.split_deltas(text) if text else [])]
        events += [{"type": "transcript.text.done", "text": text, "usage": usage}, "[DONE]"]
        headers = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-store"}
        return await _stream(request, headers, events, _sse, fault, latency, delay, "transcript", tail=2)
    if fmt == "text":
        reply = web.Response(text=text + "\n", content_type="text/plain")
    elif fmt in ("srt", "vtt"):
        sep = "," if fmt == "srt" else "."
        cue = f"{_timestamp(0, sep)} --> {_timestamp(seconds, sep)}\n{text}\n"
        reply = web.Response(text=f"1\n{cue}\n" if fmt == "srt" else f"WEBVTT\n\n{cue}\n", content_type="text/plain")
    elif fmt == "verbose_json":
        # as recorded: the segment text starts with a space, tokens are ids between two timestamp tokens
        tokens = [50364, *range(1000, 1000 + out_tokens), 50364 + int(seconds * 50)]
        segment = {"id": 0, "seek": 0, "start": 0.0, "end": round(seconds, 2), "text": f" {text}", "tokens": tokens,
                   "temperature": 0.0, "avg_logprob": 0.0, "compression_ratio": 1.0, "no_speech_prob": 0.0}  # fmt: skip
        reply = web.json_response({"task": "transcribe", "language": str(form.get("language") or "english"),
                                   "duration": round(seconds, 2), "text": text, "segments": [segment],
                                   "usage": {"type": "duration", "seconds": math.ceil(seconds)}})  # fmt: skip
    else:
        reply = web.json_response({"text": text, "usage": usage})
    return await _answer(request, reply, fault, latency)


async def _answer(request: web.Request, reply: web.Response, fault: Fault | None, latency: float) -> web.StreamResponse:
    """A one-piece answer, with what the stream faults mean for it."""
    f = fault or Fault()
    await _wait_latency(request, latency)
    if f.stall:
        await asyncio.sleep(f.stall)
    if f.drop is not None or f.close is not None:
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=500)
    if f.error is not None or f.failed:
        raise ApiError(500, midstream_error(f, False)["message"], None, None, "server_error")
    if f.malformed is not None and reply.body is not None:
        body = bytes(reply.body)
        return web.Response(body=body[: len(body) // 2], content_type=reply.content_type)
    return reply


async def handle_speech(request: web.Request) -> web.StreamResponse:
    sim = request.app["sim"]
    put(request, "sim_t0", asyncio.get_running_loop().time())
    body = parse_json(await request.read())
    for name in ("model", "input", "voice"):
        if body.get(name) in (None, ""):
            raise missing(name)
    text, model = body["input"], str(body["model"])
    if not isinstance(text, str):
        raise ApiError(400, "Invalid type for 'input': expected a string.", "input", "invalid_type")
    if len(text) > 4096:
        raise ApiError(400, f"'input' is too long: {len(text)} characters, the maximum is 4096.", "input",
                       "string_above_max_length")  # fmt: skip
    fmt = body.get("response_format") or "mp3"
    if fmt not in SPEECH_FORMATS:
        raise invalid_value("response_format", fmt, SPEECH_FORMATS)
    if fmt not in ("pcm", "wav"):
        raise ApiError(400, f"The simulator can only produce response_format 'pcm' or 'wav', not '{fmt}'.",
                       "response_format", "unsupported_value")  # fmt: skip
    speed = body.get("speed", 1.0)
    if not isinstance(speed, (int, float)) or not 0.25 <= speed <= 4.0:
        raise ApiError(400, "'speed' must be between 0.25 and 4.0.", "speed", "invalid_value")
    stream_format = body.get("stream_format") or "audio"
    if stream_format not in ("audio", "sse"):
        raise invalid_value("stream_format", stream_format, ["audio", "sse"])
    if stream_format == "sse" and model.startswith("tts-1"):
        raise ApiError(400, f"stream_format 'sse' is not supported for model '{model}'.", "stream_format",
                       "unsupported_value")  # fmt: skip
    pcm = speech.synthesize(text)
    sim.phrases.add(text, pcm)
    pieces = [pcm[i : i + SPEECH_CHUNK] for i in range(0, len(pcm), SPEECH_CHUNK)]
    fault = request.get("fault")
    latency, delay = _delays(sim, fault)
    if stream_format == "sse":
        tokens_in, tokens_out = brain.count_tokens(text), int(speech.pcm_ms(pcm) / 50)
        usage = {"input_tokens": tokens_in, "output_tokens": tokens_out, "total_tokens": tokens_in + tokens_out}
        audio = speech.wav_bytes(pcm) if fmt == "wav" else pcm
        events = [{"type": "speech.audio.delta", "audio": base64.b64encode(audio[i : i + SPEECH_CHUNK]).decode()}
                  for i in range(0, len(audio), SPEECH_CHUNK)]  # fmt: skip
        events.append({"type": "speech.audio.done", "usage": usage})
        headers = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
        return await _stream(request, headers, events, _sse, fault, latency, delay, "speech")
    if fmt == "wav":  # the 44-byte header rides with the first 100 ms
        pieces[0] = speech.wav_bytes(pcm)[:44] + pieces[0]
    headers = {"Content-Type": "audio/wav" if fmt == "wav" else "audio/pcm"}
    return await _stream(request, headers, pieces, lambda piece: piece, fault, latency, delay)
