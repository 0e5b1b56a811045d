"""The simulator's audio endpoints, for the cascaded STT → LLM → TTS path (protocols.md §5).

`POST /v1/audio/transcriptions` (multipart): the simulator cannot recognise speech, so the
transcript of a WAV upload is `vad.describe_speech(audio)` ("[speech 1.23 s]", "" for silence);
other containers (mp3, ogg, …) are not decoded and read "[audio N bytes]". `response_format`
json (default) | text | verbose_json | srt | vtt; `stream=true` gives SSE `transcript.text.delta`
/ `transcript.text.done` (ignored for whisper-1, as the real API does).

`POST /v1/audio/speech` (JSON): `voicecli.sim.speech.synthesize(input)` as `pcm` (raw 24 kHz
PCM16 mono) or `wav`; other formats (mp3, opus, aac, flac — the API default is mp3) get a 400
saying so. `stream_format` audio (chunked body) or sse (`speech.audio.delta` / `.done`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import wave

from aiohttp import web

from . import brain, speech
from .validate import ApiError, invalid_value, missing, parse_json
from .vad import describe_speech

TRANSCRIBE_FORMATS = ["json", "text", "srt", "verbose_json", "vtt"]
SPEECH_FORMATS = ["mp3", "opus", "aac", "flac", "wav", "pcm"]
SPEECH_CHUNK = 4800  # 100 ms of PCM per streamed piece


def _sse(event: dict) -> bytes:
    return f"data: {json.dumps(event)}\n\n".encode()


def _transcript(data: bytes) -> tuple[str, float]:
    """(deterministic transcript, audio seconds) of an uploaded file."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        try:
            pcm = speech.read_wav(data)
        except (ValueError, EOFError, wave.Error):
            raise ApiError(400, "The audio file could not be decoded or its format is not supported.", "file",
                           "invalid_value") from None  # fmt: skip
        return describe_speech(pcm), speech.pcm_ms(pcm) / 1000
    return f"[audio {len(data)} bytes]", 0.0


def _timestamp(seconds: float, sep: str) -> str:
    ms = int(round(seconds * 1000))
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"


async def handle_transcriptions(request: web.Request) -> web.StreamResponse:
    sim = request.app["sim"]
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
    text, seconds = _transcript(data)
    out_tokens = brain.count_tokens(text)
    audio_tokens = max(1, int(seconds * 10))
    if model == "whisper-1":
        usage = {"type": "duration", "seconds": round(seconds, 2)}
    else:
        usage = {"type": "tokens", "input_tokens": audio_tokens, "output_tokens": out_tokens,
                 "total_tokens": audio_tokens + out_tokens, "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens}}  # fmt: skip
    if sim.config.latency:
        await asyncio.sleep(sim.config.latency)
    if str(form.get("stream", "false")).lower() == "true" and model != "whisper-1":
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        for piece in brain.split_deltas(text) if text else []:
            await resp.write(_sse({"type": "transcript.text.delta", "delta": piece}))
            if sim.config.delta_delay:
                await asyncio.sleep(sim.config.delta_delay)
        await resp.write(_sse({"type": "transcript.text.done", "text": text, "usage": usage}))
        await resp.write_eof()
        return resp
    if fmt == "text":
        return web.Response(text=text + "\n", content_type="text/plain")
    if fmt in ("srt", "vtt"):
        sep = "," if fmt == "srt" else "."
        cue = f"{_timestamp(0, sep)} --> {_timestamp(seconds, sep)}\n{text}\n"
        body = f"1\n{cue}\n" if fmt == "srt" else f"WEBVTT\n\n{cue}\n"
        return web.Response(text=body, content_type="text/plain")
    if fmt == "verbose_json":
        segment = {"id": 0, "seek": 0, "start": 0.0, "end": round(seconds, 2), "text": text, "tokens": [],
                   "temperature": 0.0, "avg_logprob": 0.0, "compression_ratio": 1.0, "no_speech_prob": 0.0}  # fmt: skip
        return web.json_response({"task": "transcribe", "language": str(form.get("language") or "english"),
                                  "duration": round(seconds, 2), "text": text, "segments": [segment],
                                  "usage": {"type": "duration", "seconds": round(seconds, 2)}})  # fmt: skip
    return web.json_response({"text": text, "usage": usage})


async def handle_speech(request: web.Request) -> web.StreamResponse:
    sim = request.app["sim"]
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
    payload = speech.wav_bytes(pcm) if fmt == "wav" else pcm
    if sim.config.latency:
        await asyncio.sleep(sim.config.latency)
    if stream_format == "sse":
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    else:
        resp = web.StreamResponse(headers={"Content-Type": "audio/wav" if fmt == "wav" else "audio/pcm"})
        resp.enable_chunked_encoding()
    await resp.prepare(request)
    for offset in range(0, len(payload), SPEECH_CHUNK):
        piece = payload[offset : offset + SPEECH_CHUNK]
        if stream_format == "sse":
            await resp.write(_sse({"type": "speech.audio.delta", "audio": base64.b64encode(piece).decode()}))
        else:
            await resp.write(piece)
        if sim.config.delta_delay:
            await asyncio.sleep(sim.config.delta_delay)
    if stream_format == "sse":
        tokens_in, tokens_out = brain.count_tokens(text), int(speech.pcm_ms(pcm) / 50)
        usage = {"input_tokens": tokens_in, "output_tokens": tokens_out, "total_tokens": tokens_in + tokens_out}
        await resp.write(_sse({"type": "speech.audio.done", "usage": usage}))
    await resp.write_eof()
    return resp
