"""The simulator's Realtime API (GA): `GET /v1/realtime?model=…` upgraded to a WebSocket.

It speaks the GA event protocol (docs: protocols.md §4; event order copied from the recorded
sessions in ../shared/traffic/realtime_ws_*) on real audio:

- input audio (PCM16 24 kHz mono) goes through an energy VAD (`voicecli.sim.vad`) when
  `turn_detection` is `server_vad` or `semantic_vad` (treated alike);
- the simulator cannot recognise speech: an audio turn's "transcript" is
  `vad.describe_speech(audio)` ("[speech 1.23 s]"), unless the script fixes it or the audio is
  speech the simulator made itself (`voicecli.sim.phrasebook`: then it is the exact text);
- what the assistant says comes from `voicecli.sim.brain.plan()` on the last user text;
- its voice is a real waveform (`voicecli.sim.speech.synthesize`), streamed in 50 ms
  `response.output_audio.delta` chunks paced at `SimConfig.realtime_speed` × real time
  (≤ 0 = unpaced), with the transcript deltas slightly ahead of the audio, as the real server does.

Differences from the recorded server worth knowing: `rate_limits.updated` is sent right after
every `response.created` (the recorded GA sessions show none), and a cancelled response still
closes its open part and item (`*.done` events, item status `incomplete`) before `response.done`.

Faults (`voicecli.sim.faults` syntax, e.g. `drop=20` or `close=1011; after=5`) come from the
`x-sim-fault` header of the upgrade request, a `sim_fault` query parameter on the connect URL
(`/v1/realtime?model=x&sim_fault=drop%3D20`; merged over the header), or a script turn. A
connection's fault counts the server events since connect (session.created is the first) and is
taken once per connection (so `times=1` lets a reconnect through); a script turn's fault counts
the events of that response (response.created is the first). Knobs honoured here:
  drop=N            cut the TCP connection (no close frame) once N events were sent
  close=C, after=N  close with code C once N events were sent
  stall=S, after=N  pause S seconds once N events were sent
  malformed=N / unknown=N   after N events, one frame of broken JSON / of an unknown type
  latency=S, delta_delay=S  before a response's first output / between its deltas
  error=…, after=N  (turn) an `error` event, then `response.done` with status `failed`
  failed / incomplete       (turn) end with status `failed` / `incomplete` (max_output_tokens)
  status=…          refused before the upgrade (done by the server's middleware)
`sim_max_age=S` on the connect URL sets this session's lifetime (else SimConfig.realtime_max_age).
Script turns (`voicecli.sim.script`) fix the reply (`reply` / `tool_calls`), the fault, or
`replay` a recorded session's server events verbatim (minus session.*); a turn's `transcript`
attribute, if the script format ever grows one, replaces the audio transcript of a VAD turn.

Transcription sessions (`?intent=transcription`, or a first `session.update` with `session.type:
"transcription"`): the session object is the GA transcription shape (`type`, `audio.input`,
`include`); speech the VAD ends (or a commit) is committed and transcribed
(`conversation.item.input_audio_transcription.delta` / `.completed`), never answered;
`response.create` and `conversation.item.create` are refused.

Every client event is logged with `Simulator.record("ws", {"endpoint": "/v1/realtime", "conn",
"event"})` (`"raw"` instead of `"event"` when it was not JSON). Not simulated: `idle_timeout_ms`
(`input_audio_buffer.timeout_triggered`), G.711 formats, images, MCP tools, WebRTC-only events.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from . import brain, faults, speech
from .faults import Fault
from .phrasebook import transcribe
from .vad import EnergyVad

log = logging.getLogger(__name__)

ENDPOINT = "/v1/realtime"
BYTES_PER_MS = 48  # PCM16 mono 24 kHz
CHUNK_MS = 50  # audio per response.output_audio.delta
MIN_COMMIT_MS = 100  # the real server refuses to commit less
PCM_FORMAT = {"type": "audio/pcm", "rate": 24000}
DEFAULT_INSTRUCTIONS = "You are the voicecli simulator. Answer briefly."

SERVER_VAD_DEFAULTS = {
    "type": "server_vad",
    "threshold": 0.5,
    "prefix_padding_ms": 300,
    "silence_duration_ms": 200,
    "idle_timeout_ms": None,
    "create_response": True,
    "interrupt_response": True,
}
SEMANTIC_VAD_DEFAULTS = {"type": "semantic_vad", "eagerness": "auto", "create_response": True, "interrupt_response": True}
EAGERNESS_SILENCE_MS = {"low": 800, "medium": 500, "auto": 500, "high": 250}

TRANSCRIPTION_SESSION_KEYS = {"type", "audio", "include"}
SESSION_KEYS = {
    "type", "output_modalities", "instructions", "audio", "tools", "tool_choice", "max_output_tokens",
    "tracing", "truncation", "include", "prompt", "model", "parallel_tool_calls", "reasoning",
    "id", "object", "expires_at",  # echoed back by some clients; ignored
}  # fmt: skip


class _Invalid(Exception):
    """A client event the real server would answer with an `error` event."""

    def __init__(self, message: str, code: str | None = "invalid_value", param: str | None = None):
        super().__init__(message)
        self.message, self.code, self.param = message, code, param


class _Closed(Exception):
    """The socket is gone: stop producing events."""


class _Failed(Exception):
    """A scripted `error` fault struck mid-response: end it as `failed`."""


def _need(event: dict, key: str, kind: type | tuple, prefix: str = "") -> object:
    if key not in event or event[key] is None:
        raise _Invalid(f"Missing required parameter: '{prefix}{key}'.", "missing_required_parameter", prefix + key)
    if not isinstance(event[key], kind) or (kind is int and isinstance(event[key], bool)):
        raise _Invalid(f"Invalid type for '{prefix}{key}'.", "invalid_type", prefix + key)
    return event[key]


def _duration_words(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds:g} seconds"


@dataclass
class _Response:
    id: str
    opts: dict
    script_turn: object = None  # a voicecli.sim.script.ScriptTurn, when the script fixes this turn
    fault: Fault | None = None
    sent: int = 0  # events of this response (for the turn's fault)
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str | None = None
    task: asyncio.Task | None = None


async def handle(request: web.Request) -> web.StreamResponse:
    sim = request.app["sim"]
    try:
        query_fault = faults.parse(request.query.get("sim_fault"))
        max_age = float(request.query.get("sim_max_age", sim.config.realtime_max_age))
    except ValueError as exc:
        body = faults.error_body(f"Bad sim_fault/sim_max_age: {exc}", "invalid_request_error", "sim_fault")
        return web.json_response(body, status=400)
    header_fault = request.get("fault")
    fault = header_fault.merged(query_fault) if header_fault else query_fault
    if fault is not None and fault.rejects:  # the middleware refuses header faults; this is the query's
        status, body, headers = faults.rejection(fault)
        return web.json_response(body, status=status, headers=headers)
    ws = web.WebSocketResponse(max_msg_size=32 * 1024 * 1024)  # 15 MiB of audio per append, base64
    if not ws.can_prepare(request).ok:
        body = faults.error_body("Expected a WebSocket upgrade for GET /v1/realtime.", "invalid_request_error")
        return web.json_response(body, status=400)
    await ws.prepare(request)
    if hasattr(sim, "track"):
        sim.track(ws)
    await RealtimeConnection(sim, request, ws, sim.take_fault(fault) if fault else None, max_age).run()
    return ws


class RealtimeConnection:
    def __init__(self, sim, request: web.Request, ws: web.WebSocketResponse, fault: Fault | None, max_age: float):
        self.sim, self.request, self.ws, self.fault = sim, request, ws, fault
        self.config = sim.config
        self.conn = sim.new_connection_id() if hasattr(sim, "new_connection_id") else ""
        self.model = request.query.get("model") or "gpt-realtime"
        # `?intent=transcription`: a transcription session (speech in, transcripts out, no responses)
        self.transcription = request.query.get("intent") == "transcription"
        self.max_age = max_age
        self.conversation_id = self._id("conv")
        self.session = self._default_session()
        self.items: list[dict] = []  # the conversation, as the server shows it (no audio)
        self.audio: dict[str, bytearray] = {}  # item id → its audio (user input, or assistant audio sent)
        self.user_text: dict[str, str] = {}  # audio item id → its (deterministic) transcript
        self.buffer = bytearray()  # input audio buffer since the last commit/clear
        self.buffer_start_ms = 0  # session audio clock at buffer[0]
        self.received_bytes = 0  # audio clock: everything ever appended
        self.vad: EnergyVad | None = None
        self.speech_item_id: str | None = None
        self.speech_start_ms = 0
        self.response: _Response | None = None
        self.sent = 0  # server events sent on this connection (for the connection's fault)
        self.assistant_audio_sent = False  # voice is fixed from then on
        self.closed = False
        self._send_lock = asyncio.Lock()
        self._configure_vad()

    def _id(self, prefix: str) -> str:
        """Realtime ids look like `item_` + 21 alphanumerics, for every kind (event, item, resp…)."""
        return prefix + self.sim.new_id("event")[len("event") :]

    # -- plumbing ---------------------------------------------------------------------------

    async def run(self) -> None:
        expiry = None
        try:
            if "realtime=v1" in self.request.headers.get("OpenAI-Beta", ""):
                # The retired beta interface: the real server refuses it this way (protocols.md §4.1).
                await self.error(
                    "The Realtime API beta interface (OpenAI-Beta: realtime=v1) is no longer available; "
                    "connect without that header to use the GA interface.",
                    "beta_api_shape_disabled",
                )
                await self.close(4000, "beta_api_shape_disabled")
                return
            await self.send({"type": "session.created", "session": self.session})
            expiry = asyncio.create_task(self._expire())
            async for msg in self.ws:
                if msg.type == WSMsgType.TEXT:
                    await self.on_text(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await self.error("Binary frames are not supported; send JSON text events.", "invalid_value")
                else:
                    break
        except _Closed:
            pass
        finally:
            self.closed = True
            tasks = [t for t in (expiry, self.response and self.response.task) if t]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def send(self, event: dict, r: _Response | None = None) -> None:
        """Send one server event; `r` when it belongs to a response (its turn fault applies)."""
        event = {"type": event["type"], "event_id": self._id("event"), **event}
        await self._send_raw(json.dumps(event))
        self.sent += 1
        await self._strike(self.fault, self.sent)
        if r is not None:
            r.sent += 1
            await self._strike(r.fault, r.sent)

    async def _send_raw(self, frame: str) -> None:
        if self.closed or self.ws.closed:
            raise _Closed
        async with self._send_lock:
            try:
                await self.ws.send_str(frame)
            except (ConnectionError, RuntimeError) as exc:
                self.closed = True
                raise _Closed from exc

    async def _strike(self, f: Fault | None, n: int) -> None:
        """Apply a fault's mid-stream knobs once `n` events were sent."""
        if f is None:
            return
        if f.drop is not None and n >= f.drop:
            self.closed = True
            if self.request.transport is not None:
                self.request.transport.abort()  # no close frame: what a client sees as a dropped network
            raise _Closed
        if f.close is not None and n == f.after:
            await self.close(f.close, "simulated close")
            raise _Closed
        if f.stall is not None and n == f.after:
            await asyncio.sleep(f.stall)
        if f.malformed is not None and n == f.malformed:
            await self._send_raw('{"type":"response.output_audio.delta","event_id":')  # JSON cut short
        if f.unknown is not None and n == f.unknown:
            await self._send_raw(json.dumps({"type": "sim.unknown_event", "event_id": self._id("event")}))
        if f.error is not None and n == f.after and f is not self.fault:
            raise _Failed

    async def close(self, code: int, reason: str = "") -> None:
        self.closed = True
        await self.ws.close(code=code, message=reason.encode())

    async def error(self, message: str, code: str | None = None, param: str | None = None, event_id: str | None = None,
                    kind: str = "invalid_request_error") -> None:  # fmt: skip
        err = {"type": kind, "code": code, "message": message, "param": param, "event_id": event_id}
        await self.send({"type": "error", "error": err})

    async def _expire(self) -> None:
        await asyncio.sleep(self.max_age)
        try:
            await self.error(f"Your session hit the maximum duration of {_duration_words(self.max_age)}.", "session_expired")
            if self.response and self.response.task:
                self.response.task.cancel()
            await self.close(1000, "session expired")
        except _Closed:
            pass

    # -- client events ----------------------------------------------------------------------

    async def on_text(self, text: str) -> None:
        try:
            event = json.loads(text)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            self.sim.record("ws", {"endpoint": ENDPOINT, "conn": self.conn, "raw": text[:4096]})
            await self.error("We could not parse the JSON body of your request.", "invalid_json")
            return
        self.sim.record("ws", {"endpoint": ENDPOINT, "conn": self.conn, "event": event})
        event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        handler = getattr(self, "on_" + str(event.get("type", "")).replace(".", "_"), None)
        try:
            if "type" not in event:
                raise _Invalid("Missing required parameter: 'type'.", "missing_required_parameter", "type")
            if handler is None or event["type"] not in CLIENT_EVENTS:
                raise _Invalid(f"Invalid value: '{event['type']}'. Supported values are: {', '.join(CLIENT_EVENTS)}.",
                               "invalid_value", "type")  # fmt: skip
            await handler(event)
        except _Invalid as exc:
            await self.error(exc.message, exc.code, exc.param, event_id)

    async def on_session_update(self, event: dict) -> None:
        s = _need(event, "session", dict)
        if "type" not in s:
            raise _Invalid("Missing required parameter: 'session.type'.", "missing_required_parameter", "session.type")
        if s["type"] not in ("realtime", "transcription"):
            raise _Invalid(f"Invalid value: '{s['type']}'. Supported values are: 'realtime' and 'transcription'.",
                           param="session.type")  # fmt: skip
        if (s["type"] == "transcription") != self.transcription:
            if self.items or self.received_bytes:  # a session's type is fixed once it is in use
                raise _Invalid(f"Cannot change the session type to '{s['type']}' once the session is in use.",
                               param="session.type")  # fmt: skip
            self.transcription = s["type"] == "transcription"
            self.session = self._default_session()
        if self.transcription:
            await self._update_transcription_session(s)
            return
        unknown = sorted(set(s) - SESSION_KEYS)
        if unknown:  # e.g. the beta shape's `modalities` or `voice`
            raise _Invalid(f"Unknown parameter: 'session.{unknown[0]}'.", "unknown_parameter", f"session.{unknown[0]}")
        new = copy.deepcopy(self.session)
        for key in ("instructions", "tools", "tool_choice", "max_output_tokens", "tracing", "truncation", "include",
                    "prompt", "parallel_tool_calls", "reasoning"):  # fmt: skip
            if key in s:
                new[key] = s[key]
        if "output_modalities" in s:
            mods = s["output_modalities"]
            if not isinstance(mods, list) or len(mods) != 1 or mods[0] not in ("audio", "text"):
                raise _Invalid("'session.output_modalities' must be [\"audio\"] or [\"text\"].",
                               param="session.output_modalities")  # fmt: skip
            new["output_modalities"] = mods
        for tool in new.get("tools") or []:
            if not isinstance(tool, dict) or tool.get("type", "function") == "function" and not tool.get("name"):
                raise _Invalid("Missing required parameter: 'session.tools[].name'.", "missing_required_parameter",
                               "session.tools")  # fmt: skip
        self._merge_audio(new, s.get("audio"))
        self.session = new
        self._configure_vad()
        await self.send({"type": "session.updated", "session": self.session})

    async def _update_transcription_session(self, s: dict) -> None:
        """`session.update` of a transcription session: only `audio.input` and `include` (GA shape)."""
        unknown = sorted(set(s) - TRANSCRIPTION_SESSION_KEYS)
        if unknown:
            raise _Invalid(f"Unknown parameter: 'session.{unknown[0]}'.", "unknown_parameter", f"session.{unknown[0]}")
        audio = s.get("audio")
        if isinstance(audio, dict) and audio.get("output"):
            raise _Invalid("Unknown parameter: 'session.audio.output'.", "unknown_parameter", "session.audio.output")
        new = copy.deepcopy(self.session)
        if "include" in s:
            new["include"] = s["include"]
        self._merge_audio(new, audio)
        self.session = new
        self._configure_vad()
        await self.send({"type": "session.updated", "session": self.session})

    def _merge_audio(self, new: dict, audio: object) -> None:
        if audio is None:
            return
        if not isinstance(audio, dict):
            raise _Invalid("Invalid type for 'session.audio'.", "invalid_type", "session.audio")
        inp, out = audio.get("input") or {}, audio.get("output") or {}
        cur_in, cur_out = new["audio"]["input"], new["audio"].get("output", {})
        for where, fmt in (("input", inp.get("format")), ("output", out.get("format"))):
            if fmt is not None and (fmt.get("type") != "audio/pcm" or fmt.get("rate", 24000) != 24000):
                raise _Invalid("The simulator supports only audio/pcm at 24000 Hz.", param=f"session.audio.{where}.format")
        if inp.get("format"):
            cur_in["format"] = dict(PCM_FORMAT)
        if "transcription" in inp:
            t = inp["transcription"]
            cur_in["transcription"] = None if t is None else {"model": None, "language": None, "prompt": None, **t}
        if "noise_reduction" in inp:
            cur_in["noise_reduction"] = inp["noise_reduction"]
        if "turn_detection" in inp:
            td = inp["turn_detection"]
            if td is None:
                cur_in["turn_detection"] = None
            elif td.get("type") == "server_vad":
                cur_in["turn_detection"] = {**SERVER_VAD_DEFAULTS, **td}
            elif td.get("type") == "semantic_vad":
                cur_in["turn_detection"] = {**SEMANTIC_VAD_DEFAULTS, **td}
            else:
                raise _Invalid(f"Invalid value: '{td.get('type')}'. Supported values are: 'server_vad' and "
                               "'semantic_vad'.", param="session.audio.input.turn_detection.type")  # fmt: skip
        if out.get("format"):
            cur_out["format"] = dict(PCM_FORMAT)
        if "voice" in out and out["voice"] != cur_out["voice"]:
            if self.assistant_audio_sent:
                raise _Invalid("Cannot update a conversation's voice if assistant audio is present.",
                               "cannot_update_voice", "session.audio.output.voice")  # fmt: skip
            cur_out["voice"] = out["voice"]
        if "speed" in out:
            cur_out["speed"] = out["speed"]

    def _configure_vad(self) -> None:
        td = self.session["audio"]["input"]["turn_detection"]
        if td is None:
            self.vad = None
            return
        silence = td.get("silence_duration_ms") or EAGERNESS_SILENCE_MS.get(td.get("eagerness", "auto"), 500)
        self.vad = EnergyVad(td.get("threshold", 0.5), td.get("prefix_padding_ms", 300), silence)
        self.vad.position_ms = self.received_bytes // BYTES_PER_MS

    async def on_input_audio_buffer_append(self, event: dict) -> None:
        try:
            pcm = base64.b64decode(_need(event, "audio", str), validate=True)
        except binascii.Error:
            raise _Invalid("Invalid 'audio'. Expected base64-encoded audio bytes.", param="audio") from None
        self.buffer += pcm
        self.received_bytes += len(pcm)
        for vad_event in self.vad.feed(pcm) if self.vad else []:
            if vad_event.kind == "start":
                await self._speech_started(vad_event.audio_ms)
            else:
                await self._speech_stopped(vad_event.audio_ms)

    async def _speech_started(self, audio_start_ms: int) -> None:
        self.speech_item_id, self.speech_start_ms = self._id("item"), audio_start_ms
        await self.send({"type": "input_audio_buffer.speech_started", "audio_start_ms": audio_start_ms,
                         "item_id": self.speech_item_id})  # fmt: skip
        td = self.session["audio"]["input"]["turn_detection"] or {}
        if self.response and td.get("interrupt_response", True):
            await self.cancel_response("turn_detected")

    async def _speech_stopped(self, audio_end_ms: int) -> None:
        item_id, self.speech_item_id = self.speech_item_id or self._id("item"), None
        await self.send({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": audio_end_ms, "item_id": item_id})
        start = max(0, (self.speech_start_ms - self.buffer_start_ms) * BYTES_PER_MS)
        end = max(0, (audio_end_ms - self.buffer_start_ms) * BYTES_PER_MS)
        pcm = bytes(self.buffer[start:end])
        del self.buffer[:end]
        self.buffer_start_ms = max(self.buffer_start_ms, audio_end_ms)
        td = self.session["audio"]["input"]["turn_detection"] or {}
        if td.get("create_response", True) and not self.response and not self.transcription:
            # The script turn is taken now, so that it can also fix this audio's transcript.
            turn = self.sim.next_script_turn() if hasattr(self.sim, "next_script_turn") else None
            await self._commit_audio(item_id, pcm, getattr(turn, "transcript", None))
            self._start_response({}, transcribe=item_id, script_turn=turn)
        else:
            await self._commit_audio(item_id, pcm)
            await self._transcribe(item_id)

    async def on_input_audio_buffer_commit(self, event: dict) -> None:
        ms = len(self.buffer) / BYTES_PER_MS
        if ms < MIN_COMMIT_MS:
            raise _Invalid(f"Error committing input audio buffer: buffer too small. Expected at least {MIN_COMMIT_MS}ms "
                           f"of audio, but buffer only has {ms:.2f}ms of audio.", "input_audio_buffer_commit_empty")  # fmt: skip
        item_id, self.speech_item_id = self.speech_item_id or self._id("item"), None
        pcm = bytes(self.buffer)
        self._reset_buffer()
        await self._commit_audio(item_id, pcm)
        await self._transcribe(item_id)

    async def on_input_audio_buffer_clear(self, event: dict) -> None:
        self._reset_buffer()
        self.speech_item_id = None
        await self.send({"type": "input_audio_buffer.cleared"})

    def _reset_buffer(self) -> None:
        self.buffer.clear()
        self.buffer_start_ms = self.received_bytes // BYTES_PER_MS
        if self.vad:
            self.vad.reset()

    def _hear(self, pcm: bytes | bytearray) -> str:
        """The user's words: exact for speech this simulator made, else "[speech N s]"."""
        return transcribe(getattr(self.sim, "phrases", None), bytes(pcm))

    async def _commit_audio(self, item_id: str, pcm: bytes, transcript: str | None = None) -> None:
        prev = self.items[-1]["id"] if self.items else None
        item = {"id": item_id, "type": "message", "status": "completed", "role": "user",
                "content": [{"type": "input_audio", "transcript": None}]}  # fmt: skip
        self.items.append(item)
        self.audio[item_id] = bytearray(pcm)
        self.user_text[item_id] = transcript if transcript is not None else self._hear(pcm)
        await self.send({"type": "input_audio_buffer.committed", "previous_item_id": prev, "item_id": item_id})
        await self.send({"type": "conversation.item.added", "previous_item_id": prev, "item": copy.deepcopy(item)})
        await self.send({"type": "conversation.item.done", "previous_item_id": prev, "item": copy.deepcopy(item)})

    async def _transcribe(self, item_id: str, r: _Response | None = None) -> None:
        """Input transcription events, when the session asks for them."""
        config = self.session["audio"]["input"]["transcription"]
        if not config:
            return
        text, model = self.user_text.get(item_id, ""), str(config.get("model") or "")
        for piece in brain.split_deltas(text) if text else []:
            await self.send({"type": "conversation.item.input_audio_transcription.delta", "item_id": item_id,
                             "content_index": 0, "delta": piece}, r)  # fmt: skip
        seconds = len(self.audio.get(item_id, b"")) / BYTES_PER_MS / 1000
        if "whisper" in model:
            usage = {"type": "duration", "seconds": round(seconds, 2)}
        else:
            audio_tokens, out_tokens = max(1, int(seconds * 10)), brain.count_tokens(text)
            usage = {"type": "tokens", "input_tokens": audio_tokens, "output_tokens": out_tokens,
                     "total_tokens": audio_tokens + out_tokens,
                     "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens}}  # fmt: skip
        await self.send({"type": "conversation.item.input_audio_transcription.completed", "item_id": item_id,
                         "content_index": 0, "transcript": text, "usage": usage}, r)  # fmt: skip
        item = self._find(item_id)
        if item:
            item["content"][0]["transcript"] = text

    # -- conversation items -----------------------------------------------------------------

    def _find(self, item_id: str) -> dict | None:
        return next((i for i in self.items if i["id"] == item_id), None)

    def _normalize_item(self, item: dict) -> tuple[dict, bytes | None]:
        """A client item → the server's view of it (+ its audio), or _Invalid."""
        kind = _need(item, "type", str, "item.")
        item_id = item.get("id") or self._id("item")
        if kind == "function_call_output":
            out = {"id": item_id, "type": kind, "call_id": _need(item, "call_id", str, "item."),
                   "output": _need(item, "output", str, "item.")}  # fmt: skip
            return out, None
        if kind == "function_call":
            return {"id": item_id, "type": kind, "status": "completed", "name": _need(item, "name", str, "item."),
                    "call_id": _need(item, "call_id", str, "item."), "arguments": item.get("arguments", "")}, None  # fmt: skip
        if kind != "message":
            raise _Invalid(f"Invalid value: '{kind}'. Supported values are: 'message', 'function_call' and "
                           "'function_call_output'.", param="item.type")  # fmt: skip
        role = _need(item, "role", str, "item.")
        allowed = {"user": ("input_text", "input_audio", "input_image"), "system": ("input_text",),
                   "assistant": ("output_text", "output_audio")}.get(role)  # fmt: skip
        if allowed is None:
            raise _Invalid(f"Invalid value: '{role}'. Supported values are: 'user', 'assistant' and 'system'.",
                           param="item.role")  # fmt: skip
        content, audio = [], None
        for i, part in enumerate(_need(item, "content", list, "item.")):
            ptype = part.get("type") if isinstance(part, dict) else None
            if ptype not in allowed:
                raise _Invalid(f"Invalid value: '{ptype}'. Supported values for a {role} message are: "
                               f"{', '.join(allowed)}.", param=f"item.content[{i}].type")  # fmt: skip
            part = dict(part)
            if "audio" in part:  # kept aside; items echo without audio
                try:
                    audio = base64.b64decode(part.pop("audio") or "", validate=True)
                except binascii.Error:
                    raise _Invalid("Invalid base64 audio.", param=f"item.content[{i}].audio") from None
                part.setdefault("transcript", None)
            content.append(part)
        return {"id": item_id, "type": "message", "status": "completed", "role": role, "content": content}, audio

    async def on_conversation_item_create(self, event: dict) -> None:
        self._not_in_transcription("conversation.item.create")
        item, audio = self._normalize_item(_need(event, "item", dict))
        if self._find(item["id"]):
            raise _Invalid(f"Item with id '{item['id']}' already exists.", "item_id_already_exists", "item.id")
        after = event.get("previous_item_id")
        if after is None:
            index = len(self.items)
        elif after == "root":
            index = 0
        else:
            prev_item = self._find(after)
            if prev_item is None:
                raise _Invalid(f"Previous item with item_id not found: {after}.", "item_not_found", "previous_item_id")
            index = self.items.index(prev_item) + 1
        self.items.insert(index, item)
        if audio is not None:
            self.audio[item["id"]] = bytearray(audio)
            if item["role"] == "user":
                self.user_text[item["id"]] = self._hear(audio)
        prev = self.items[index - 1]["id"] if index else None
        await self.send({"type": "conversation.item.added", "previous_item_id": prev, "item": copy.deepcopy(item)})
        await self.send({"type": "conversation.item.done", "previous_item_id": prev, "item": copy.deepcopy(item)})

    def _need_item(self, event: dict) -> dict:
        item_id = _need(event, "item_id", str)
        item = self._find(item_id)
        if item is None:
            raise _Invalid(f"Item with item_id not found: {item_id}.", "item_not_found", "item_id")
        return item

    async def on_conversation_item_retrieve(self, event: dict) -> None:
        item = copy.deepcopy(self._need_item(event))
        audio = self.audio.get(item["id"])
        for part in item.get("content", []):
            if part.get("type") in ("input_audio", "output_audio") and audio is not None:
                part["audio"] = base64.b64encode(audio).decode()
        await self.send({"type": "conversation.item.retrieved", "item": item})

    async def on_conversation_item_delete(self, event: dict) -> None:
        item = self._need_item(event)
        self.items.remove(item)
        self.audio.pop(item["id"], None)
        await self.send({"type": "conversation.item.deleted", "item_id": item["id"]})

    async def on_conversation_item_truncate(self, event: dict) -> None:
        content_index = _need(event, "content_index", int)
        end_ms = _need(event, "audio_end_ms", int)
        item = self._need_item(event)
        parts = item.get("content", [])
        is_audio = item.get("role") == "assistant" and item["id"] in self.audio
        if not is_audio or content_index >= len(parts) or parts[content_index].get("type") != "output_audio":
            raise _Invalid("Only model output audio messages can be truncated", "unsupported_content_type", "item_id")
        audio = self.audio[item["id"]]
        have_ms = len(audio) // BYTES_PER_MS
        if end_ms < 0 or end_ms > have_ms:  # the real server's check: not past the audio it sent
            raise _Invalid(f"Audio content of {have_ms}ms is already shorter than {end_ms}ms", param="audio_end_ms")
        del audio[end_ms * BYTES_PER_MS :]
        # Also drop the unheard part of the transcript, proportionally, at a word boundary.
        text = parts[content_index].get("transcript") or ""
        keep = int(len(text) * end_ms / have_ms) if have_ms else 0
        parts[content_index]["transcript"] = text[:keep].rsplit(" ", 1)[0] if keep < len(text) else text
        await self.send({"type": "conversation.item.truncated", "item_id": item["id"], "content_index": content_index,
                         "audio_end_ms": end_ms})  # fmt: skip

    async def on_output_audio_buffer_clear(self, event: dict) -> None:
        raise _Invalid("output_audio_buffer.clear is only supported for WebRTC and SIP connections.", param="type")

    # -- responses --------------------------------------------------------------------------

    async def on_response_create(self, event: dict) -> None:
        self._not_in_transcription("response.create")
        if self.response:
            raise _Invalid(f"Conversation already has an active response in progress: {self.response.id}. Wait until "
                           "the response is finished before creating a new one.",
                           "conversation_already_has_active_response")  # fmt: skip
        opts = event.get("response") or {}
        if not isinstance(opts, dict):
            raise _Invalid("Invalid type for 'response'.", "invalid_type", "response")
        mods = opts.get("output_modalities")
        if mods is not None and (not isinstance(mods, list) or len(mods) != 1 or mods[0] not in ("audio", "text")):
            raise _Invalid("'response.output_modalities' must be [\"audio\"] or [\"text\"].",
                           param="response.output_modalities")  # fmt: skip
        if opts.get("conversation", "auto") not in ("auto", "none"):
            raise _Invalid("The simulator supports response.conversation 'auto' or 'none'.", param="response.conversation")
        if "input" in opts:
            self._response_input(opts)  # validate now, so the error answers this event
        self._start_response(opts)

    async def on_response_cancel(self, event: dict) -> None:
        rid = event.get("response_id")
        if not self.response or (rid and rid != self.response.id):
            raise _Invalid("Cancellation failed: no active response found", "response_cancel_not_active")
        await self.cancel_response("client_cancelled")

    async def cancel_response(self, reason: str) -> None:
        r = self.response
        if r is None:
            return
        r.reason = reason
        r.cancel.set()
        await asyncio.gather(r.task, return_exceptions=True)  # its response.done goes out first

    def _start_response(self, opts: dict, transcribe: str | None = None, script_turn: object = None) -> None:
        if script_turn is None and hasattr(self.sim, "next_script_turn"):
            script_turn = self.sim.next_script_turn()
        r = _Response(self._id("resp"), opts, script_turn, getattr(script_turn, "fault", None))
        r.task = asyncio.create_task(self._run_response(r, transcribe))
        self.response = r

    async def _run_response(self, r: _Response, transcribe: str | None) -> None:
        try:
            if getattr(r.script_turn, "replay", None) is not None:
                await self._replay(r)
            else:
                await self._respond(r, transcribe)
        except _Closed:
            pass
        except Exception:
            log.exception("realtime response failed")
            try:
                await self.error("The simulator failed while generating a response.", "server_error", kind="server_error")
            except _Closed:
                pass
        finally:
            if self.response is r:
                self.response = None

    async def _replay(self, r: _Response) -> None:
        """A script turn that replays recorded server events verbatim (the session ones left out)."""
        delay = self._delta_delay(r)
        for kind, frame in r.script_turn.replay_frames():
            if kind and kind.startswith("session."):
                continue
            if await self._wait(r, delay):
                break
            await self._send_raw(frame)
            self.sent += 1
            r.sent += 1
            await self._strike(self.fault, self.sent)
            await self._strike(r.fault, r.sent)

    def _delta_delay(self, r: _Response) -> float:
        for f in (r.fault, self.fault):
            if f is not None and f.delta_delay is not None:
                return f.delta_delay
        return self.config.delta_delay

    async def _wait(self, r: _Response, seconds: float) -> bool:
        """Sleep, but wake at once on cancellation. True if cancelled."""
        if seconds > 0 and not r.cancel.is_set():
            try:
                await asyncio.wait_for(r.cancel.wait(), seconds)
            except asyncio.TimeoutError:
                pass
        return r.cancel.is_set()

    def _response_input(self, opts: dict) -> list[dict]:
        if "input" not in opts:
            return self.items
        items = []
        for raw in opts["input"] or []:
            if isinstance(raw, dict) and raw.get("type") == "item_reference":
                ref = self._find(str(raw.get("id")))
                if ref is None:
                    raise _Invalid(f"Item with item_id not found: {raw.get('id')}.", "item_not_found", "response.input")
                items.append(ref)
            elif isinstance(raw, dict):
                items.append(self._normalize_item(raw)[0])
            else:
                raise _Invalid("Invalid type for 'response.input[]'.", "invalid_type", "response.input")
        return items

    def _plan(self, opts: dict, items: list[dict], script_turn: object) -> brain.Plan:
        """The conversation → a brain.Turn → what to say or call (or what the script says)."""
        tools = opts.get("tools", self.session.get("tools")) or []
        choice = opts.get("tool_choice", self.session.get("tool_choice", "auto"))
        names = [t["name"] for t in tools if t.get("type", "function") == "function" and t.get("name")]
        user_text, results, call_names, since_user = "", [], {}, False
        for item in items:
            if item["type"] == "function_call":
                call_names[item["call_id"]] = item["name"]
            elif item["type"] == "function_call_output" and since_user:
                results.append((call_names.get(item["call_id"], item["call_id"]), item["output"]))
            elif item["type"] == "message" and item["role"] == "user":
                user_text, results, since_user = self._item_text(item), [], True
            elif item["type"] == "message" and item["role"] == "assistant":
                results = []
        turn = brain.Turn(
            user_text=user_text,
            tool_names=[] if choice == "none" else names,
            tool_results=results,
            instructions=opts.get("instructions", self.session.get("instructions")),
            input_chars=sum(len(self._item_text(i)) for i in items),
        )
        plan = brain.plan(turn)
        forced = choice.get("name") if isinstance(choice, dict) else None
        if forced and not any(c.name == forced for c in plan.calls) and not results:
            plan = brain.Plan(calls=[brain.PlannedCall(forced, "{}")])
        elif choice == "required" and not plan.calls and names and not results:
            plan = brain.Plan(calls=[brain.PlannedCall(names[0], "{}")])
        return script_turn.plan(plan) if script_turn is not None else plan

    def _item_text(self, item: dict) -> str:
        if item["type"] == "function_call_output":
            return item["output"]
        if item["type"] == "function_call":
            return item.get("arguments", "")
        texts = []
        for part in item.get("content", []):
            if part.get("type") == "input_audio":
                texts.append(part.get("transcript") or self.user_text.get(item["id"], ""))
            else:
                texts.append(part.get("text") or part.get("transcript") or "")
        return " ".join(t for t in texts if t)

    async def _respond(self, r: _Response, transcribe: str | None) -> None:
        sess, o, f = self.session, r.opts, r.fault
        modalities = o.get("output_modalities") or sess["output_modalities"]
        voice = ((o.get("audio") or {}).get("output") or {}).get("voice") or sess["audio"]["output"]["voice"]
        in_conversation = o.get("conversation", "auto") != "none"
        max_tokens = o.get("max_output_tokens", sess["max_output_tokens"])
        resp = {
            "object": "realtime.response", "id": r.id, "status": "in_progress", "status_details": None,
            "output": [], "conversation_id": self.conversation_id if in_conversation else None,
            "output_modalities": modalities, "max_output_tokens": max_tokens,
            "audio": {"output": {"format": dict(PCM_FORMAT), "voice": voice}},
            "usage": None, "metadata": o.get("metadata"),
        }  # fmt: skip
        ctx = _Out(r, resp, in_conversation)
        items = self._response_input(o)
        failed = cancelled = incomplete = False
        try:
            await self.send({"type": "response.created", "response": copy.deepcopy(resp)}, r)
            await self.send({"type": "rate_limits.updated", "rate_limits": [
                {"name": "requests", "limit": 5000, "remaining": 4999, "reset_seconds": 0.012},
                {"name": "tokens", "limit": 800000, "remaining": 799000, "reset_seconds": 0.075}]}, r)  # fmt: skip
            if transcribe:
                await self._transcribe(transcribe, r)
            plan = self._plan(o, items, r.script_turn)
            latency = self.config.latency + sum(x.latency or 0 for x in (f, self.fault) if x is not None)
            cancelled = await self._wait(r, latency)
            if f is not None and f.failed:
                failed = True
            elif not cancelled and plan.calls:
                for i, call in enumerate(plan.calls):
                    call_id = r.script_turn.call_id(i) if hasattr(r.script_turn, "call_id") else None
                    if await self._function_call(ctx, call, call_id):
                        cancelled = True
                        break
            elif not cancelled:
                text = plan.text or ""
                incomplete = f is not None and f.incomplete
                if isinstance(max_tokens, int) and brain.count_tokens(text) > max_tokens:
                    text, incomplete = text[: max_tokens * 4], True
                if incomplete:
                    text = " ".join(text.split()[: max(1, len(text.split()) // 2)])
                if "audio" in modalities:
                    cancelled = await self._audio_message(ctx, text)
                else:
                    cancelled = await self._text_message(ctx, text)
        except _Failed:
            failed = True
            await self.error(f.message or "The server had an error while processing your request. Sorry about that!",
                             f.code or "server_error", kind="server_error")  # fmt: skip
        if failed:
            resp["status"] = "failed"
            resp["status_details"] = {"type": "failed", "error": {"type": "server_error", "code": "server_error",
                                      "message": "The server had an error while processing your request."}}  # fmt: skip
        elif cancelled:
            resp["status"] = "cancelled"
            resp["status_details"] = {"type": "cancelled", "reason": r.reason or "client_cancelled"}
        elif incomplete:
            resp["status"] = "incomplete"
            resp["status_details"] = {"type": "incomplete", "reason": "max_output_tokens"}
        else:
            resp["status"] = "completed"
        resp["usage"] = self._usage(items, ctx)
        if f is not None and f.error is not None:  # it has struck: response.done still goes out
            r.fault = dataclasses.replace(f, error=None)
        await self.send({"type": "response.done", "response": resp}, r)

    async def _add_output(self, ctx: _Out, item: dict) -> None:
        ctx.index = len(ctx.resp["output"])
        await self.send({"type": "response.output_item.added", "response_id": ctx.r.id, "output_index": ctx.index,
                         "item": copy.deepcopy(item)}, ctx.r)  # fmt: skip
        if ctx.in_conversation:
            ctx.prev = self.items[-1]["id"] if self.items else None
            self.items.append(item)
            await self.send({"type": "conversation.item.added", "previous_item_id": ctx.prev,
                             "item": copy.deepcopy(item)}, ctx.r)  # fmt: skip

    async def _finish_output(self, ctx: _Out, item: dict) -> None:
        if ctx.in_conversation:
            await self.send({"type": "conversation.item.done", "previous_item_id": ctx.prev,
                             "item": copy.deepcopy(item)}, ctx.r)  # fmt: skip
        await self.send({"type": "response.output_item.done", "response_id": ctx.r.id, "output_index": ctx.index,
                         "item": copy.deepcopy(item)}, ctx.r)  # fmt: skip
        ctx.resp["output"].append(copy.deepcopy(item))

    async def _function_call(self, ctx: _Out, call: brain.PlannedCall, call_id: str | None) -> bool:
        item = {"id": self._id("item"), "type": "function_call", "status": "in_progress", "name": call.name,
                "call_id": call_id or self.sim.new_id("call"), "arguments": ""}  # fmt: skip
        await self._add_output(ctx, item)
        ids = {"response_id": ctx.r.id, "item_id": item["id"], "output_index": ctx.index, "call_id": item["call_id"]}
        delay = self._delta_delay(ctx.r)
        for piece in brain.split_deltas(call.arguments):
            if await self._wait(ctx.r, delay):
                break
            await self.send({"type": "response.function_call_arguments.delta", **ids, "delta": piece}, ctx.r)
            item["arguments"] += piece
        cancelled = ctx.r.cancel.is_set()
        if not cancelled:
            await self.send({"type": "response.function_call_arguments.done", **ids, "name": call.name,
                             "arguments": item["arguments"]}, ctx.r)  # fmt: skip
        item["status"] = "incomplete" if cancelled else "completed"
        ctx.out_text += item["arguments"]
        await self._finish_output(ctx, item)
        return cancelled

    async def _text_message(self, ctx: _Out, text: str) -> bool:
        item = {"id": self._id("item"), "type": "message", "status": "in_progress", "role": "assistant",
                "content": []}  # fmt: skip
        await self._add_output(ctx, item)
        ids = {"response_id": ctx.r.id, "item_id": item["id"], "output_index": ctx.index, "content_index": 0}
        await self.send({"type": "response.content_part.added", **ids, "part": {"type": "text", "text": ""}}, ctx.r)
        sent, delay = "", self._delta_delay(ctx.r)
        for piece in brain.split_deltas(text) if text else []:
            if await self._wait(ctx.r, delay):
                break
            await self.send({"type": "response.output_text.delta", **ids, "delta": piece}, ctx.r)
            sent += piece
        cancelled = ctx.r.cancel.is_set()
        await self.send({"type": "response.output_text.done", **ids, "text": sent}, ctx.r)
        await self.send({"type": "response.content_part.done", **ids, "part": {"type": "text", "text": sent}}, ctx.r)
        item["status"] = "incomplete" if cancelled else "completed"
        item["content"] = [{"type": "output_text", "text": sent}]
        ctx.out_text += sent
        await self._finish_output(ctx, item)
        return cancelled

    async def _audio_message(self, ctx: _Out, text: str) -> bool:
        r = ctx.r
        item = {"id": self._id("item"), "type": "message", "status": "in_progress", "role": "assistant",
                "content": []}  # fmt: skip
        await self._add_output(ctx, item)
        ids = {"response_id": r.id, "item_id": item["id"], "output_index": ctx.index, "content_index": 0}
        await self.send({"type": "response.content_part.added", **ids, "part": {"type": "audio", "transcript": ""}}, r)
        pcm = speech.synthesize(text) if text else b""
        if text and getattr(self.sim, "phrases", None) is not None:
            self.sim.phrases.add(text, pcm)  # so a transcription of this answer (its echo, say) is exact
        audio = self.audio.setdefault(item["id"], bytearray())
        # Each transcript piece is due when the audio reaches its share of the text.
        pieces, due, pos = brain.split_deltas(text) if text else [], [], 0
        total_ms = len(pcm) / BYTES_PER_MS
        for piece in pieces:
            due.append(total_ms * pos / max(1, len(text)))
            pos += len(piece)
        transcript, next_piece = "", 0
        speed = self.config.realtime_speed
        loop = asyncio.get_running_loop()
        start, chunk, cancelled = loop.time(), CHUNK_MS * BYTES_PER_MS, False
        for offset in range(0, len(pcm), chunk):
            end_ms = min(offset + chunk, len(pcm)) / BYTES_PER_MS
            while next_piece < len(pieces) and due[next_piece] < end_ms:  # the transcript runs ahead of the audio
                await self.send({"type": "response.output_audio_transcript.delta", **ids, "delta": pieces[next_piece]}, r)
                transcript += pieces[next_piece]
                next_piece += 1
            data = pcm[offset : offset + chunk]
            await self.send({"type": "response.output_audio.delta", **ids, "delta": base64.b64encode(data).decode()}, r)
            audio += data
            self.assistant_audio_sent = True
            # Pace: the next chunk leaves once this one has had time to play (≤ 0 = no pacing).
            wait = start + end_ms / 1000 / speed - loop.time() if speed > 0 else 0
            if await self._wait(r, wait):
                cancelled = True
                break
        if not cancelled:
            for piece in pieces[next_piece:]:
                await self.send({"type": "response.output_audio_transcript.delta", **ids, "delta": piece}, r)
                transcript += piece
        await self.send({"type": "response.output_audio.done", **ids}, r)
        await self.send({"type": "response.output_audio_transcript.done", **ids, "transcript": transcript}, r)
        await self.send({"type": "response.content_part.done", **ids, "part": {"type": "audio", "transcript": transcript}}, r)
        item["status"] = "incomplete" if cancelled else "completed"
        item["content"] = [{"type": "output_audio", "transcript": transcript}]
        ctx.out_text += transcript
        ctx.out_audio_ms += len(audio) / BYTES_PER_MS
        await self._finish_output(ctx, item)
        return cancelled

    def _usage(self, items: list[dict], ctx: _Out) -> dict:
        """Stand-in token counts: ~4 characters a text token, 10 input / 20 output audio tokens a second."""
        text_in = brain.count_tokens(sum(len(self._item_text(i)) for i in items) + len(self.session.get("instructions") or ""))
        audio_in = int(sum(len(self.audio.get(i["id"], b"")) for i in items if i.get("role") == "user") / BYTES_PER_MS / 100)
        text_out, audio_out = brain.count_tokens(ctx.out_text), int(ctx.out_audio_ms / 50)
        return {
            "total_tokens": text_in + audio_in + text_out + audio_out,
            "input_tokens": text_in + audio_in,
            "output_tokens": text_out + audio_out,
            "input_token_details": {"text_tokens": text_in, "audio_tokens": audio_in, "image_tokens": 0, "cached_tokens": 0,
                                    "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0}},
            "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
        }  # fmt: skip

    def _not_in_transcription(self, kind: str) -> None:
        if self.transcription:
            raise _Invalid(f"'{kind}' is not supported in a transcription session.", param="type")

    def _default_session(self) -> dict:
        if self.transcription:  # the GA transcription session object (RealtimeTranscriptionSessionCreateRequest)
            return {"type": "transcription",
                    "audio": {"input": {"format": dict(PCM_FORMAT), "transcription": None, "noise_reduction": None,
                                        "turn_detection": dict(SERVER_VAD_DEFAULTS)}},
                    "include": None}  # fmt: skip
        return {
            "type": "realtime", "object": "realtime.session", "id": self._id("sess"), "model": self.model,
            "output_modalities": ["audio"], "instructions": DEFAULT_INSTRUCTIONS, "tools": [], "tool_choice": "auto",
            "max_output_tokens": "inf", "tracing": None, "truncation": "auto", "prompt": None,
            "expires_at": int(time.time() + self.max_age),
            "audio": {
                "input": {"format": dict(PCM_FORMAT), "transcription": None, "noise_reduction": None,
                          "turn_detection": dict(SERVER_VAD_DEFAULTS)},
                "output": {"format": dict(PCM_FORMAT), "voice": "alloy", "speed": 1.0},
            },
            "include": None,
        }  # fmt: skip


@dataclass
class _Out:
    """Bookkeeping for the output items of one response."""

    r: _Response
    resp: dict
    in_conversation: bool
    index: int = 0
    prev: str | None = None
    out_text: str = ""
    out_audio_ms: float = 0.0


CLIENT_EVENTS = (
    "session.update", "input_audio_buffer.append", "input_audio_buffer.commit", "input_audio_buffer.clear",
    "conversation.item.create", "conversation.item.retrieve", "conversation.item.truncate",
    "conversation.item.delete", "response.create", "response.cancel", "output_audio_buffer.clear",
)  # fmt: skip
