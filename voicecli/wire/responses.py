"""Responses API: request bodies (HTTP and WebSocket `response.create`) and the stream decoder.

The decoder takes one parsed event dict at a time — an SSE `data:` payload or a WebSocket text
frame, which carry the same objects (protocols.md §2.3) — and returns neutral events.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from voicecli.events import (Event, HostedToolProgress, ReasoningDelta, TextDelta, ToolCall, TurnEnd,
                             TurnStatus)
from voicecli.wire import errors, tools
from voicecli.wire.types import usage_from
from voicecli.items import FunctionCall, FunctionOutput, HistoryItem, Message, OpaqueItem, Request

# settings sent under the same name; the rest are mapped below or are not Responses settings
_SAME_NAME = ("temperature", "top_p", "max_output_tokens", "service_tier")
_HOSTED_CALLS = {"web_search_call": "web_search", "file_search_call": "file_search",
                 "code_interpreter_call": "code_interpreter"}
_TERMINAL_STATUS: dict[str, TurnStatus] = {
    "response.completed": "completed", "response.done": "completed",
    "response.incomplete": "incomplete", "response.failed": "failed", "response.cancelled": "cancelled",
}


# --------------------------------------------------------------------------------------------
# Requests


def build_body(req: Request, *, stream: bool) -> dict[str, Any]:
    """The `POST /v1/responses` JSON body."""
    body = _create_fields(req)
    if stream:
        body["stream"] = True
    return body


def build_ws_create(req: Request) -> dict[str, Any]:
    """The WebSocket `response.create` client event: the same fields, no `stream` (§2.2)."""
    return {"type": "response.create", **_create_fields(req)}


def _create_fields(req: Request) -> dict[str, Any]:
    body: dict[str, Any] = {"model": req.model}
    if req.instructions:
        body["instructions"] = req.instructions  # never inherited via previous_response_id: always resend
    body["input"] = input_items(req.items)
    if req.tools:
        body["tools"] = [tools.to_responses(t) for t in req.tools]
    body.update(settings_fields(req.settings, has_tools=bool(req.tools)))
    if req.text_format:  # structured output sits next to verbosity in `text`
        body["text"] = {**body.get("text", {}), "format": {"type": "json_schema", **req.text_format}}
    body["store"] = req.store
    if req.previous_response_id:
        body["previous_response_id"] = req.previous_response_id
    return body


def settings_fields(settings: Mapping[str, Any], *, has_tools: bool) -> dict[str, Any]:
    """ModelSettings.request_settings() → Responses fields; unset ones never appear (never null)."""
    out = {k: settings[k] for k in _SAME_NAME if settings.get(k) is not None}
    reasoning = {}
    if settings.get("reasoning_effort") is not None:
        reasoning["effort"] = settings["reasoning_effort"]
    if settings.get("reasoning_summary") is not None:
        reasoning["summary"] = settings["reasoning_summary"]
    if reasoning:
        out["reasoning"] = reasoning
    if settings.get("verbosity") is not None:
        out["text"] = {"verbosity": settings["verbosity"]}
    if has_tools:  # tool settings without tools are at best meaningless
        if settings.get("parallel_tool_calls") is not None:
            out["parallel_tool_calls"] = settings["parallel_tool_calls"]
        if settings.get("tool_choice") is not None:
            out["tool_choice"] = _tool_choice(settings["tool_choice"])
    return out


def _tool_choice(choice: str | dict) -> str | dict:
    name = tools.forced_tool_name(choice)
    return {"type": "function", "name": name} if name else choice


def input_items(items: Sequence[HistoryItem]) -> list[dict[str, Any]]:
    """Neutral history → Responses input items; other dialects' opaque items are skipped."""
    out: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, Message):
            out.append(_message(item))
        elif isinstance(item, FunctionCall):
            out.append({"type": "function_call", "call_id": item.call_id, "name": item.name,
                        "arguments": item.arguments})
        elif isinstance(item, FunctionOutput):
            output: str | list = item.output
            if item.images:  # the array form: the text, then each image
                output = [{"type": "input_text", "text": item.output},
                          *({"type": "input_image", "image_url": url} for url in item.images)]
            out.append({"type": "function_call_output", "call_id": item.call_id, "output": output})
        elif isinstance(item, OpaqueItem) and item.dialect == "responses":
            out.append(dict(item.data))
    return out


def _message(msg: Message) -> dict[str, Any]:
    if msg.role == "assistant":
        # an output message echoed back; `id` is optional on input, `status` records a cut-off answer
        return {"type": "message", "role": "assistant",
                "status": "incomplete" if msg.interrupted else "completed",
                "content": [{"type": "output_text", "text": msg.text, "annotations": []}]}
    if not msg.images:
        return {"role": msg.role, "content": msg.text}
    parts: list[dict[str, Any]] = [{"type": "input_text", "text": msg.text}] if msg.text else []
    parts += [{"type": "input_image", "image_url": url, "detail": "auto"} for url in msg.images]
    return {"role": msg.role, "content": parts}


# --------------------------------------------------------------------------------------------
# Stream decoding


class ResponsesDecoder:
    """Responses stream events (SSE or WebSocket) → neutral events.

    Every turn ends with exactly one TurnEnd: from the terminal event (`response.completed`,
    `.incomplete`, `.failed`, or WebSocket `response.done`), from an `error` frame that rejects the
    request before any response event (WebSocket), or from `finish()` at EOF / socket close.
    One decoder can serve a whole WebSocket connection: `response.created` starts a new turn.
    `gaps` lists (expected, got) sequence numbers that did not follow on, for `--debug`.
    """

    def __init__(self) -> None:
        self.gaps: list[tuple[int, int]] = []
        self.response_id: str | None = None
        self._last_seq: int | None = None
        self._handlers: dict[str, Callable[[dict[str, Any]], list[Event]]] = {
            "response.output_text.delta": self._text,
            "response.refusal.delta": self._refusal,
            "response.reasoning_summary_text.delta": self._reasoning,
            "response.reasoning_text.delta": self._reasoning,
            "response.reasoning_summary_part.added": self._summary_part,
            "response.output_item.done": self._item_done,
            "response.created": self._created,
            "response.in_progress": self._in_progress,
            "response.queued": self._in_progress,
            "error": self._error,
            **{name: self._terminal for name in _TERMINAL_STATUS},
        }
        self._new_turn()

    def _new_turn(self) -> None:
        self.finished = False
        self._in_turn = False  # a response's events have started arriving
        self._failed = False  # an Error was already emitted for this turn
        self._called: set[str] = set()  # call_ids already emitted as ToolCall
        self._done_items: list[dict[str, Any]] = []

    def feed(self, event: dict[str, Any]) -> list[Event]:
        kind = event.get("type", "")
        seq = event.get("sequence_number")
        if seq is not None:
            if kind == "response.created":
                self._last_seq = None  # numbering restarts with each response
            elif self._last_seq is not None and seq != self._last_seq + 1:
                self.gaps.append((self._last_seq + 1, seq))
            self._last_seq = seq
        if kind != "error":
            self._in_turn = True
        handler = self._handlers.get(kind)
        if handler is not None:
            return handler(event)
        return self._hosted_progress(kind, event)

    def finish(self) -> list[Event]:
        """At EOF or socket close: a turn without a terminal event did not complete."""
        if self.finished:
            return []
        self.finished, self._in_turn = True, False
        out: list[Event] = []
        if not self._failed:
            out.append(errors.connection_error("the stream ended before the response was complete"))
        out.append(TurnEnd("failed", self.response_id, "stream_ended"))
        return out

    # handlers -----------------------------------------------------------------------------

    def _text(self, event: dict[str, Any]) -> list[Event]:
        return [TextDelta(event.get("delta", ""), event.get("item_id"))]

    def _refusal(self, event: dict[str, Any]) -> list[Event]:
        return [TextDelta(event.get("delta", ""), event.get("item_id"), refusal=True)]

    def _reasoning(self, event: dict[str, Any]) -> list[Event]:
        return [ReasoningDelta(event.get("delta", ""), event.get("item_id"))]

    def _summary_part(self, event: dict[str, Any]) -> list[Event]:
        # summary parts are separate paragraphs; their deltas alone would run together
        if event.get("summary_index", 0) > 0:
            return [ReasoningDelta("\n\n", event.get("item_id"))]
        return []

    def _created(self, event: dict[str, Any]) -> list[Event]:
        self._new_turn()
        self._in_turn = True
        return self._in_progress(event)

    def _in_progress(self, event: dict[str, Any]) -> list[Event]:
        self.response_id = (event.get("response") or {}).get("id") or self.response_id
        return []

    def _item_done(self, event: dict[str, Any]) -> list[Event]:
        item = event.get("item") or {}
        self._done_items.append(item)
        return self._tool_calls([item])

    def _tool_calls(self, items: Sequence[dict[str, Any]]) -> list[Event]:
        """Function calls from finished items (authoritative), each emitted once."""
        out: list[Event] = []
        for item in items:
            call_id = item.get("call_id")
            if item.get("type") == "function_call" and call_id and call_id not in self._called:
                self._called.add(call_id)
                out.append(ToolCall(call_id, item.get("name", ""), item.get("arguments") or "{}", item.get("id")))
        return out

    def _terminal(self, event: dict[str, Any]) -> list[Event]:
        response = event.get("response") or {}
        self.response_id = response.get("id") or self.response_id
        status = response.get("status")
        if status not in ("completed", "incomplete", "failed", "cancelled"):
            status = _TERMINAL_STATUS[event["type"]]
        output = response.get("output") or self._done_items  # a bare WS `response.done` has no output
        out = self._tool_calls(output)  # calls a gateway never sent output_item.done for
        usage = usage_from(response.get("usage"), input_key="input_tokens", output_key="output_tokens",
                           input_details="input_tokens_details", output_details="output_tokens_details")
        if usage:
            out.append(usage)
        reason = (response.get("incomplete_details") or {}).get("reason")
        if status == "failed":
            error = errors.from_error_frame({"error": response.get("error") or {"message": "the response failed"}})
            reason = error.code
            if not self._failed:
                out.append(error)
        out.append(TurnEnd(status, self.response_id, reason, tuple(output)))
        self.finished, self._in_turn = True, False
        return out

    def _error(self, event: dict[str, Any]) -> list[Event]:
        error = errors.from_error_frame(event)
        if self._in_turn:  # mid-stream: `response.failed` (or EOF) ends the turn
            self._failed = True
            return [error]
        # before any response event: the request itself was rejected (WebSocket mode), turn over
        self.finished = True
        return [error, TurnEnd("failed", None, error.code)]

    def _hosted_progress(self, kind: str, event: dict[str, Any]) -> list[Event]:
        """`response.web_search_call.searching` and the like; other unknown events are ignored."""
        parts = kind.split(".")
        if len(parts) == 3 and parts[1] in _HOSTED_CALLS:
            return [HostedToolProgress(_HOSTED_CALLS[parts[1]], parts[2], event.get("item_id"))]
        return []


def response_events(response: dict[str, Any]) -> list[Event]:
    """A whole (non-streamed) response object — a Batch API result — as the neutral events its
    stream would have given: the output text and refusals, then what the terminal event gives."""
    out: list[Event] = []
    for item in response.get("output") or ():
        if item.get("type") == "message":
            for part in item.get("content") or ():
                if part.get("type") == "output_text" and part.get("text"):
                    out.append(TextDelta(part["text"], item.get("id")))
                elif part.get("type") == "refusal" and part.get("refusal"):
                    out.append(TextDelta(part["refusal"], item.get("id"), refusal=True))
    kind = {"incomplete": "response.incomplete", "failed": "response.failed",
            "cancelled": "response.cancelled"}.get(response.get("status"), "response.completed")
    return out + ResponsesDecoder().feed({"type": kind, "response": response})
