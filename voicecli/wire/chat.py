"""Chat Completions: the request body and a tolerant stream decoder.

The decoder is written for OpenAI and for the OpenAI-compatible servers that deviate from it
(Ollama, llama.cpp, vLLM, Groq — protocols.md §3.3). Tool calls are accumulated and emitted,
with usage and the TurnEnd, by `finish()`, which the transport calls at `[DONE]` or EOF.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from voicecli.events import Event, ReasoningDelta, TextDelta, ToolCall, TurnEnd, Usage
from voicecli.wire import errors, tools
from voicecli.wire.types import usage_from
from voicecli.items import FunctionCall, FunctionOutput, HistoryItem, Message, Request

_SAME_NAME = ("temperature", "top_p", "frequency_penalty", "presence_penalty", "seed", "service_tier",
              "reasoning_effort", "verbosity")
# finish reasons that mean the answer was cut short, in the Responses vocabulary
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}
# an in-stream provider error that means "the answer was cut by a limit", not a failure
# Chat tool messages carry text only: say that an image was there rather than drop it silently
IMAGES_LEFT_OUT = "\n[images left out: Chat Completions tool results carry text only; use -t ws or -t sse]"
_LIMIT_MESSAGE = re.compile(r"token limit|max(imum)?[ _-]?(output[ _-]?)?tokens|length limit|context (length|window)", re.I)


# --------------------------------------------------------------------------------------------
# Requests


def build_body(req: Request, *, stream: bool, include_usage: bool = True) -> dict[str, Any]:
    """The `POST /v1/chat/completions` JSON body. Responses-only settings are dropped."""
    body: dict[str, Any] = {"model": req.model, "messages": messages(req.instructions, req.items)}
    if req.tools:
        body["tools"] = [tools.to_chat(t) for t in req.tools]
    body.update(settings_fields(req.settings, has_tools=bool(req.tools)))
    if req.text_format:
        body["response_format"] = {"type": "json_schema", "json_schema": dict(req.text_format)}
    if stream:
        body["stream"] = True
        if include_usage:  # some compatible servers reject stream_options; the transport may retry without
            body["stream_options"] = {"include_usage": True}
    return body


def settings_fields(settings: Mapping[str, Any], *, has_tools: bool) -> dict[str, Any]:
    out = {k: settings[k] for k in _SAME_NAME if settings.get(k) is not None}
    if settings.get("max_output_tokens") is not None:
        out["max_completion_tokens"] = settings["max_output_tokens"]
    if has_tools:  # OpenAI rejects tool settings without tools
        if settings.get("parallel_tool_calls") is not None:
            out["parallel_tool_calls"] = settings["parallel_tool_calls"]
        choice = settings.get("tool_choice")
        if choice is not None:
            name = tools.forced_tool_name(choice)
            out["tool_choice"] = {"type": "function", "function": {"name": name}} if name else choice
    return out


def messages(instructions: str | None, items: Sequence[HistoryItem]) -> list[dict[str, Any]]:
    """Neutral history → Chat messages. Consecutive function calls join one assistant message
    (with the assistant text before them, if any); opaque items of other dialects are skipped."""
    out: list[dict[str, Any]] = [{"role": "system", "content": instructions}] if instructions else []
    for item in items:
        if isinstance(item, Message):
            out.append(_message(item))
        elif isinstance(item, FunctionCall):
            call = {"id": item.call_id, "type": "function",
                    "function": {"name": item.name, "arguments": item.arguments}}
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif isinstance(item, FunctionOutput):
            out.append({"role": "tool", "tool_call_id": item.call_id, "content": item.output + IMAGES_LEFT_OUT * bool(item.images)})
    return out


def _message(msg: Message) -> dict[str, Any]:
    if not msg.images or msg.role != "user":
        return {"role": msg.role, "content": msg.text}
    parts: list[dict[str, Any]] = [{"type": "text", "text": msg.text}] if msg.text else []
    parts += [{"type": "image_url", "image_url": {"url": url}} for url in msg.images]
    return {"role": "user", "content": parts}


# --------------------------------------------------------------------------------------------
# Stream decoding


@dataclass(slots=True)
class _PendingCall:
    call_id: str | None = None
    name: str = ""
    arguments: str = ""


class ChatDecoder:
    """Chat Completions chunks → neutral events. Text and reasoning stream out at once; tool
    calls, usage and the TurnEnd come from `finish()` (call it at `[DONE]` or EOF)."""

    def __init__(self, think_tags: str = "auto") -> None:
        self.response_id: str | None = None
        self._think = ThinkSplitter() if think_tags == "auto" else None
        self._limit: str | None = None  # a provider's "cut by a limit" message
        self._calls: dict[int, _PendingCall] = {}
        self._index_by_id: dict[str, int] = {}
        self._last_index = 0  # where an index-less, id-less fragment goes
        self._finish_reason: str | None = None
        self._usage: Usage | None = None
        self._error = False
        self._finished = False

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        """One chunk (or the data of an `event: error` message) → events."""
        out: list[Event] = []
        if chunk.get("error"):  # with or without choices (OpenRouter sends both, Groq an `error` event)
            out += self._provider_error(chunk)
            if not chunk.get("choices"):
                return out
        self.response_id = chunk.get("id") or self.response_id
        raw_usage = chunk.get("usage") or (chunk.get("x_groq") or {}).get("usage")
        if raw_usage:
            self._usage = usage_from(raw_usage, input_key="prompt_tokens", output_key="completion_tokens",
                                     input_details="prompt_tokens_details",
                                     output_details="completion_tokens_details")
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # n > 1 is never requested; ignore stray choices
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if reasoning:
                out.append(ReasoningDelta(reasoning))
            if delta.get("content"):
                out += self._content(delta["content"])
            if delta.get("refusal"):
                out.append(TextDelta(delta["refusal"], refusal=True))
            for position, fragment in enumerate(delta.get("tool_calls") or ()):
                self._add_fragment(position, fragment)
            if choice.get("finish_reason"):
                self._finish_reason = choice["finish_reason"]
        return out

    def finish(self) -> list[Event]:
        """Tool calls, usage and the TurnEnd; idempotent."""
        if self._finished:
            return []
        self._finished = True
        out: list[Event] = []
        unclosed_think = False
        if self._think is not None:
            out += [ReasoningDelta(t) if kind == "reasoning" else TextDelta(t) for kind, t in self._think.finish()]
            unclosed_think = self._think.unclosed
        for index in sorted(self._calls):
            call = self._calls[index]
            out.append(ToolCall(call.call_id or f"call_{index}", call.name, call.arguments or "{}"))
        if self._usage:
            out.append(self._usage)
        if self._error:
            out.append(TurnEnd("failed", self.response_id))
        elif self._limit is not None:
            out.append(TurnEnd("incomplete", self.response_id, f"provider limit: {self._limit}"))
        elif self._finish_reason in _INCOMPLETE:
            out.append(TurnEnd("incomplete", self.response_id, _INCOMPLETE[self._finish_reason]))
        elif self._finish_reason is None and not self._calls:
            # no finish_reason at all: the connection dropped mid-answer
            out.append(errors.connection_error("the stream ended before the answer was complete"))
            out.append(TurnEnd("failed", self.response_id, "stream_ended"))
        elif unclosed_think and not self._calls:
            out.append(TurnEnd("incomplete", self.response_id, "unclosed_think"))
        else:
            # a tool turn is decided by the calls themselves: some servers say "stop" after them
            out.append(TurnEnd("completed", self.response_id))
        return out

    def _content(self, text: str) -> list[Event]:
        if self._think is None:
            return [TextDelta(text)]
        return [ReasoningDelta(t) if kind == "reasoning" else TextDelta(t) for kind, t in self._think.feed(text)]

    def _provider_error(self, chunk: dict[str, Any]) -> list[Event]:
        """An error object inside the stream: a limit cuts the answer (incomplete); anything else fails it."""
        error = errors.from_error_frame(chunk)
        finish = next((c.get("finish_reason") for c in chunk.get("choices") or () if c.get("finish_reason")), None)
        if finish == "length" or _LIMIT_MESSAGE.search(error.message):
            self._limit = error.message
            return []
        self._error = True
        return [error]

    def _add_fragment(self, position: int, fragment: dict[str, Any]) -> None:
        call_id = fragment.get("id")
        index = fragment.get("index")
        if index is None:  # not sent by some servers: match by id, else the call in progress
            if call_id and call_id in self._index_by_id:
                index = self._index_by_id[call_id]
            elif call_id and self._calls:
                index = max(self._calls) + 1
            else:
                index = position if not self._calls else self._last_index
        call = self._calls.get(index)
        if call is None:
            call = self._calls[index] = _PendingCall()
        self._last_index = index
        if call_id and call.call_id is None:
            call.call_id = call_id
            self._index_by_id[call_id] = index
        function = fragment.get("function") or {}
        if function.get("name"):
            call.name = function["name"]  # some servers repeat it on every fragment
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            call.arguments += arguments
        elif arguments is not None:  # an object instead of JSON text
            call.arguments = json.dumps(arguments)


class ThinkSplitter:
    """A leading `<think>…</think>` block in `content` → reasoning; only what follows is the answer.

    Reasoning models behind servers without a reasoning parser (Qwen3 and DeepSeek-R1 distills on
    Ollama/llama.cpp/vLLM, Groq's and Together's raw format) stream their thoughts this way. Tags may
    be split across deltas and preceded by whitespace; a `<think>` later in an ordinary answer is
    text. `feed`/`finish` return `("reasoning"|"text", str)` pieces in order.
    """

    OPEN, CLOSE = "<think>", "</think>"

    def __init__(self) -> None:
        self._state = "start"  # start → thinking → after (whitespace after the block) → text
        self._pending = ""  # text held back: maybe the start of a tag
        self._lead = False  # inside the block, nothing but whitespace seen yet
        self.unclosed = False

    def feed(self, text: str) -> list[tuple[str, str]]:
        if self._state == "text":
            return [("text", text)]
        self._pending += text
        out: list[tuple[str, str]] = []
        while True:
            pending = self._pending
            if self._state == "start":
                head = pending.lstrip()
                if not head or (len(head) < len(self.OPEN) and self.OPEN.startswith(head)):
                    return out  # only whitespace, or a tag cut short: wait for more
                if not head.startswith(self.OPEN):
                    self._state, self._pending = "text", ""
                    return out + [("text", pending)]
                self._state, self._pending = "thinking", head[len(self.OPEN):].lstrip()
                self._lead = True
            elif self._state == "thinking":
                if self._lead:  # the newline after `<think>` is layout, not reasoning
                    pending = self._pending = pending.lstrip()
                    if not pending:
                        return out
                    self._lead = False
                end = pending.find(self.CLOSE)
                if end < 0:
                    keep = _partial_suffix(pending, self.CLOSE)
                    if len(pending) > keep:
                        out.append(("reasoning", pending[: len(pending) - keep]))
                    self._pending = pending[len(pending) - keep:]
                    return out
                if end:
                    out.append(("reasoning", pending[:end]))
                self._state, self._pending = "after", pending[end + len(self.CLOSE):]
            else:  # "after": drop the blank lines between the block and the answer
                answer = pending.lstrip()
                if not answer:
                    self._pending = ""
                    return out
                self._state, self._pending = "text", ""
                return out + [("text", answer)]

    def finish(self) -> list[tuple[str, str]]:
        pending, self._pending = self._pending, ""
        if self._state == "thinking":
            self.unclosed = True
            return [("reasoning", pending)] if pending else []
        if self._state == "start" and pending.strip():
            return [("text", pending)]  # "<thi" and then the end: it was text after all
        return []


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest end of `text` that could be the start of `tag`."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-n:]):
            return n
    return 0


def completion_events(completion: dict[str, Any]) -> list[Event]:
    """A whole (non-streamed) chat completion — a Batch API result — as the neutral events its
    stream would have given: its message fed to the decoder as one delta."""
    decoder = ChatDecoder()
    choices = [{"index": c.get("index", 0), "delta": c.get("message") or {}, "finish_reason": c.get("finish_reason")}
               for c in completion.get("choices") or ()]
    out = decoder.feed({"id": completion.get("id"), "choices": choices, "usage": completion.get("usage")})
    return out + decoder.finish()
