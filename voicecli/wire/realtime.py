"""Realtime API (GA): client-event builders and the server-event decoder (protocols.md §4).

GA names only (`audio.input.turn_detection`, `response.output_audio.delta`, …): the beta shape is
retired and its header is now rejected.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Protocol

from voicecli.events import (AudioDelta, Event, ResponseStarted, SpeechStarted, SpeechStopped, TextDelta, ToolCall,
                             Transcript, TurnEnd, TurnStatus)
from voicecli.items import ToolDef
from voicecli.wire import errors
from voicecli.wire import tools as tool_specs
from voicecli.wire.types import usage_from

class VoiceOptions(Protocol):
    """What `session_update` reads (a profile's `[voice]` table fits): wire/ imports no configuration."""

    output_modalities: str
    voice: str
    speed: float | None
    turn_detection: str
    vad_threshold: float | None
    vad_prefix_padding_ms: int | None
    vad_silence_duration_ms: int | None
    vad_eagerness: str | None
    transcription_model: str | None
    transcription_language: str | None
    noise_reduction: str | None
    max_output_tokens: int | None


PCM_FORMAT = {"type": "audio/pcm", "rate": 24000}
DICTATION_SILENCE_MS = 500  # transcription sessions: server VAD silence unless the profile sets one  # PCM16 LE mono 24 kHz, both directions
_STATUSES = ("completed", "incomplete", "failed", "cancelled")
# server errors after which the client should reconnect and carry on
_RECONNECT_CODES = ("session_expired", "websocket_connection_limit_reached")


# --------------------------------------------------------------------------------------------
# Client events


def session_update(voice: VoiceOptions, instructions: str | None, tools: Sequence[ToolDef] = (),
                   tool_choice: str | dict | None = None) -> dict[str, Any]:
    """`session.update` in the GA shape; settings left unset are omitted (the server keeps its own)."""
    session: dict[str, Any] = {"type": "realtime", "output_modalities": [voice.output_modalities]}
    if instructions:
        session["instructions"] = instructions
    audio_in: dict[str, Any] = {"format": dict(PCM_FORMAT), "turn_detection": _turn_detection(voice)}
    if voice.transcription_model is not None:
        # '' switches input transcription off explicitly (null); a model name switches it on
        transcription = {"model": voice.transcription_model} if voice.transcription_model else None
        if transcription and voice.transcription_language:
            transcription["language"] = voice.transcription_language
        audio_in["transcription"] = transcription
    if voice.noise_reduction is not None:
        audio_in["noise_reduction"] = None if voice.noise_reduction == "none" else {"type": voice.noise_reduction}
    audio_out: dict[str, Any] = {"format": dict(PCM_FORMAT), "voice": voice.voice}
    if voice.speed is not None:
        audio_out["speed"] = voice.speed
    session["audio"] = {"input": audio_in, "output": audio_out}
    if tools:
        session["tools"] = [tool_specs.to_realtime(t) for t in tools]
        if tool_choice is not None:  # without tools it means nothing
            session["tool_choice"] = _tool_choice(tool_choice)
    if voice.max_output_tokens is not None:
        session["max_output_tokens"] = voice.max_output_tokens
    return {"type": "session.update", "session": session}


def transcription_session_update(voice: VoiceOptions, prompt: str | None = None) -> dict[str, Any]:
    """`session.update` of a transcription session (`?intent=transcription`): speech in, transcripts
    out, no responses. Turns are always detected by the server (dictation has no manual turns)."""
    transcription: dict[str, Any] = {"model": voice.transcription_model}
    if voice.transcription_language:
        transcription["language"] = voice.transcription_language
    if prompt:
        transcription["prompt"] = prompt
    detection = _turn_detection(voice) or {"type": "server_vad"}
    if detection["type"] == "server_vad":  # a line ends at a pause, not at a comma: 500 ms, as the local VAD
        detection.setdefault("silence_duration_ms", DICTATION_SILENCE_MS)
    audio_in: dict[str, Any] = {"format": dict(PCM_FORMAT), "transcription": transcription,
                                "turn_detection": detection}
    if voice.noise_reduction is not None:
        audio_in["noise_reduction"] = None if voice.noise_reduction == "none" else {"type": voice.noise_reduction}
    return {"type": "session.update", "session": {"type": "transcription", "audio": {"input": audio_in}}}


def _turn_detection(voice: VoiceOptions) -> dict[str, Any] | None:
    """null = manual turns: the client commits the buffer and asks for a response itself."""
    if voice.turn_detection == "none":
        return None
    detection: dict[str, Any] = {"type": voice.turn_detection}
    if voice.turn_detection == "server_vad":
        optional = {"threshold": voice.vad_threshold, "prefix_padding_ms": voice.vad_prefix_padding_ms,
                    "silence_duration_ms": voice.vad_silence_duration_ms}
    else:
        optional = {"eagerness": voice.vad_eagerness}
    detection.update({k: v for k, v in optional.items() if v is not None})
    return detection


def turn_detection_update(voice: VoiceOptions, on: bool) -> dict[str, Any]:
    """`session.update` changing only the turn detection, for a client whose local VAD interrupts the
    assistant: the profile's without the server's own interruptions (`on`), or none (manual turns:
    while an interruption is held, the client commits it)."""
    detection = _turn_detection(voice) if on else None
    if detection is not None:
        detection["interrupt_response"] = False
    return {"type": "session.update",
            "session": {"type": "realtime", "audio": {"input": {"turn_detection": detection}}}}


def _tool_choice(choice: str | dict) -> str | dict:
    """A forced tool in the Realtime shape: flat, like Responses ({"type": "function", "name": …})."""
    name = tool_specs.forced_tool_name(choice)
    return {"type": "function", "name": name} if name else choice


def append_audio(pcm: bytes) -> dict[str, Any]:
    return {"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode("ascii")}


def commit() -> dict[str, Any]:
    return {"type": "input_audio_buffer.commit"}


def clear() -> dict[str, Any]:
    return {"type": "input_audio_buffer.clear"}


def create_text_message(text: str) -> dict[str, Any]:
    return {"type": "conversation.item.create",
            "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}}


def history_message(role: str, text: str) -> dict[str, Any]:
    """A message of an earlier conversation as a text item, for replaying it into a new session."""
    part = {"type": "input_text" if role == "user" else "output_text", "text": text}
    return {"type": "conversation.item.create", "item": {"type": "message", "role": role, "content": [part]}}


def function_call_output(call_id: str, output: str) -> dict[str, Any]:
    return {"type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": call_id, "output": output}}


def response_create() -> dict[str, Any]:
    return {"type": "response.create"}


def response_cancel(response_id: str | None = None) -> dict[str, Any]:
    return {"type": "response.cancel", **({"response_id": response_id} if response_id else {})}


def truncate(item_id: str, audio_end_ms: int) -> dict[str, Any]:
    """Cut the assistant item to what was actually played (barge-in, §4.8)."""
    return {"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0,
            "audio_end_ms": max(0, int(audio_end_ms))}


# --------------------------------------------------------------------------------------------
# Server events


class RealtimeDecoder:
    """Realtime server events → neutral events. One decoder per connection."""

    def __init__(self) -> None:
        self._called: set[str] = set()  # call_ids already emitted as ToolCall
        self.configured = False  # a session.updated came: the server took the session's settings
        self._handlers: dict[str, Callable[[dict[str, Any]], list[Event]]] = {
            "response.output_audio.delta": self._audio,
            "response.output_audio_transcript.delta": self._assistant_delta,
            "response.output_audio_transcript.done": self._assistant_done,
            "conversation.item.input_audio_transcription.delta": self._user_delta,
            "conversation.item.input_audio_transcription.completed": self._user_done,
            "conversation.item.input_audio_transcription.failed": self._user_failed,
            "response.output_text.delta": self._text,
            "input_audio_buffer.speech_started": self._speech_started,
            "input_audio_buffer.speech_stopped": self._speech_stopped,
            "response.function_call_arguments.done": self._arguments_done,
            "response.output_item.done": self._item_done,
            "response.created": self._response_created,
            "response.done": self._response_done,
            "error": self._error,
        }

    def feed(self, event: dict[str, Any]) -> list[Event]:
        if event.get("type") == "session.updated":
            self.configured = True
        handler = self._handlers.get(event.get("type", ""))
        return handler(event) if handler is not None else []

    def _audio(self, event: dict[str, Any]) -> list[Event]:
        return [AudioDelta(base64.b64decode(event.get("delta", "")), event.get("item_id"), event.get("response_id"))]

    def _assistant_delta(self, event: dict[str, Any]) -> list[Event]:
        return [Transcript("assistant", event.get("delta", ""), False, event.get("item_id"))]

    def _assistant_done(self, event: dict[str, Any]) -> list[Event]:
        return [Transcript("assistant", event.get("transcript") or "", True, event.get("item_id"))]

    def _user_delta(self, event: dict[str, Any]) -> list[Event]:
        return [Transcript("user", event.get("delta", ""), False, event.get("item_id"))]

    def _user_done(self, event: dict[str, Any]) -> list[Event]:
        return [Transcript("user", event.get("transcript") or "", True, event.get("item_id"))]

    def _user_failed(self, event: dict[str, Any]) -> list[Event]:
        """The words of one utterance could not be transcribed: said, and the utterance ends empty."""
        error = errors.from_error_frame({"error": event.get("error") or {}})
        error = replace(error, message=f"transcription failed: {error.message}")
        return [error, Transcript("user", "", True, event.get("item_id"))]

    def _text(self, event: dict[str, Any]) -> list[Event]:
        return [TextDelta(event.get("delta", ""), event.get("item_id"))]

    def _speech_started(self, event: dict[str, Any]) -> list[Event]:
        return [SpeechStarted(event.get("audio_start_ms", 0), event.get("item_id"))]

    def _speech_stopped(self, event: dict[str, Any]) -> list[Event]:
        return [SpeechStopped(event.get("audio_end_ms", 0), event.get("item_id"))]

    def _arguments_done(self, event: dict[str, Any]) -> list[Event]:
        if not event.get("name"):
            return []  # older servers omit it here; output_item.done carries the whole call
        return self._tool_call(event, event.get("item_id"))

    def _item_done(self, event: dict[str, Any]) -> list[Event]:
        item = event.get("item") or {}
        return self._tool_call(item, item.get("id")) if item.get("type") == "function_call" else []

    def _tool_call(self, source: dict[str, Any], item_id: str | None) -> list[Event]:
        call_id = source.get("call_id")
        if not call_id or call_id in self._called:
            return []  # both arguments.done and output_item.done announce the call: emit it once
        self._called.add(call_id)
        return [ToolCall(call_id, source.get("name", ""), source.get("arguments") or "{}", item_id)]

    def _response_created(self, event: dict[str, Any]) -> list[Event]:
        return [ResponseStarted((event.get("response") or {}).get("id"))]

    def _response_done(self, event: dict[str, Any]) -> list[Event]:
        response = event.get("response") or {}
        output = response.get("output") or []
        out: list[Event] = []
        for item in output:  # a call whose item events were missed
            if item.get("type") == "function_call":
                out += self._tool_call(item, item.get("id"))
        usage = usage_from(response.get("usage"), input_key="input_tokens", output_key="output_tokens",
                           input_details="input_token_details", output_details="output_token_details")
        if usage:
            out.append(usage)
        status: TurnStatus = response.get("status") if response.get("status") in _STATUSES else "completed"
        details = response.get("status_details") or {}
        reason = details.get("reason")
        if status == "failed":
            error = errors.from_error_frame({"error": details.get("error") or {"message": "the response failed"}})
            reason = reason or error.code
            out.append(error)
        out.append(TurnEnd(status, response.get("id"), reason))  # the session keeps its own history
        return out

    def _error(self, event: dict[str, Any]) -> list[Event]:
        error = errors.from_error_frame(event)
        if error.code in _RECONNECT_CODES:
            error = replace(error, retryable=True)
        return [error]
