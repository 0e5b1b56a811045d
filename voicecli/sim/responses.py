"""The Responses API front: `POST /v1/responses` (JSON or SSE) and `GET /v1/responses` (WebSocket mode).

Every turn is reduced to a brain `Turn`, answered by `brain.plan` (or the next script turn) and
streamed back as the real event sequence (protocols.md §1.5/1.6): created, in_progress, then per
output item added/…delta…/done, then completed (or incomplete/failed). A request with
`reasoning` (effort other than "none") gets a reasoning item first; its summary is streamed when
`reasoning.summary` is set. `max_output_tokens` (which counts reasoning tokens) cuts the text and
ends the turn with `response.incomplete`. Delta events carry no `obfuscation` padding (the real API
adds it unless `stream_options.include_obfuscation` is false, but the SDK does not model it).

State: responses with `store` (default true) are kept server-wide, so `previous_response_id` works
across connections; each WebSocket also keeps its latest response (the connection-local cache),
which is what makes `store: false` chains work — and only on that socket, only for the latest id.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

from aiohttp import WSMsgType, web

from . import brain, validate
from .faults import (
    MALFORMED,
    UNKNOWN_TYPE,
    Fault,
    SseSink,
    WsSink,
    dumps,
    midstream_error,
    play,
    refuse,
    rejection,
)
from .validate import ApiError

ENDPOINT = "/v1/responses"


# -- request → Turn -------------------------------------------------------------------------


def normalize_input(value: Any) -> list[dict]:
    if value is None:
        return []
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    return [dict(item) for item in value]


def content_text(content: Any) -> str:
    """Text of a message's content: a string, or the text parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def wants_reasoning(body: dict) -> bool:
    r = body.get("reasoning")
    return isinstance(r, dict) and bool(r) and r.get("effort") != "none"


def to_turn(body: dict, items: list[dict]) -> brain.Turn:
    last_user = -1
    for i, item in enumerate(items):
        if item.get("type", "message") == "message" and item.get("role") == "user":
            last_user = i
    user_text = content_text(items[last_user].get("content")) if last_user >= 0 else ""
    names = {i.get("call_id"): i.get("name") for i in items if i.get("type") == "function_call"}
    results = [
        (names.get(i.get("call_id")) or i.get("call_id"), _output_text(i.get("output")))
        for i in items[last_user + 1 :]
        if i.get("type") == "function_call_output"
    ]
    tools = [t.get("name") for t in body.get("tools") or [] if t.get("type") == "function" and t.get("name")]
    instructions = body.get("instructions")
    return brain.Turn(
        user_text=user_text,
        tool_names=tools,
        tool_results=results,
        instructions=instructions,
        wants_reasoning=wants_reasoning(body),
        input_chars=len(json.dumps(items)) + len(instructions or ""),
        output_schema=_json_schema((body.get("text") or {}).get("format")),
    )


def _json_schema(fmt: Any) -> dict | None:
    """The schema of a `text.format` of type json_schema (else None: plain text)."""
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
        return fmt["schema"]
    return None


def _output_text(output: Any) -> str:
    return output if isinstance(output, str) else content_text(output)


# -- Plan → events --------------------------------------------------------------------------


def split_args(arguments: str) -> list[str]:
    """Token-sized pieces of the arguments JSON, like the real streams."""
    return re.findall(r'"[^"]{0,6}|[^"]{1,6}', arguments) or [""]


@dataclass
class TurnSpec:
    """Everything one response needs beyond the request body."""

    plan: brain.Plan
    turn: brain.Turn
    fault: Fault | None = None
    call_ids: list[str | None] = field(default_factory=list)
    generate: bool = True


class ResponseBuilder:
    """Builds one response's events (without sequence numbers) and its final object."""

    def __init__(self, sim: Any, body: dict, spec: TurnSpec) -> None:
        self.sim, self.body, self.spec = sim, body, spec
        self.id = sim.new_id("resp")
        self.created_at = int(time.time())
        self.output: list[dict] = []
        self.final: dict | None = None
        self.events = list(self._events())

    # the response object, echoing the request like the real API
    def response(self, status: str, output: list[dict], usage: dict | None = None, **extra: Any) -> dict:
        b = self.body
        r = b.get("reasoning") if isinstance(b.get("reasoning"), dict) else {}
        text = {"format": {"type": "text"}, "verbosity": "medium"}
        if isinstance(b.get("text"), dict):
            text.update(b["text"])
        obj = {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": False,
            "completed_at": int(time.time()) if status == "completed" else None,
            "error": extra.get("error"),
            "incomplete_details": extra.get("incomplete_details"),
            "instructions": b.get("instructions"),
            "max_output_tokens": b.get("max_output_tokens"),
            "max_tool_calls": b.get("max_tool_calls"),
            "model": b.get("model"),
            "output": output,
            "parallel_tool_calls": b.get("parallel_tool_calls", True),
            "previous_response_id": b.get("previous_response_id"),
            "prompt_cache_key": b.get("prompt_cache_key"),
            "reasoning": {"effort": r.get("effort"), "summary": r.get("summary")},
            "safety_identifier": b.get("safety_identifier"),
            "service_tier": b.get("service_tier") or ("auto" if status == "in_progress" else "default"),
            "store": b.get("store", True),
            "temperature": b.get("temperature", 1.0),
            "text": text,
            "tool_choice": b.get("tool_choice", "auto"),
            "tools": [_echo_tool(t) for t in b.get("tools") or []],
            "top_logprobs": b.get("top_logprobs", 0),
            "top_p": b.get("top_p", 1.0),
            "truncation": b.get("truncation", "disabled"),
            "usage": usage,
            "user": b.get("user"),
            "metadata": b.get("metadata") or {},
        }
        return obj

    def _usage(self, out_chars: int, reasoning_tokens: int) -> dict:
        inp = brain.count_tokens(self.spec.turn.input_chars)
        out = brain.count_tokens(out_chars) + reasoning_tokens
        return {
            "input_tokens": inp,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},  # required by SDK >= 3.51
            "output_tokens": out,
            "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
            "total_tokens": inp + out,
        }

    def _events(self) -> Iterator[dict]:
        plan, fault = self.spec.plan, self.spec.fault or Fault()
        start = self.response("in_progress", [])
        yield {"type": "response.created", "response": start}
        yield {"type": "response.in_progress", "response": start}
        if not self.spec.generate:  # WebSocket warm-up: state only, no output
            self.final = self.response("completed", [], self._usage(0, 0))
            yield {"type": "response.completed", "response": self.final}
            return

        budget = self.body.get("max_output_tokens")
        if fault.incomplete:  # force a cut: half of the text
            budget = max(1, brain.count_tokens(plan.text or "x") // 2)
        reasoning_tokens = 0
        out_chars = 0
        cut = False
        index = 0

        if self.spec.turn.wants_reasoning:
            summary = (self.body.get("reasoning") or {}).get("summary")
            text = plan.reasoning or ""
            reasoning_tokens = brain.count_tokens(text) if summary else max(8, brain.count_tokens(text))
            yield from self._reasoning_item(index, text if summary else None)
            index += 1

        if plan.text is not None:
            remaining = None if budget is None else max(0, budget - reasoning_tokens)
            pieces, cut = _take(brain.split_deltas(plan.text), remaining)
            yield from self._message_item(index, pieces, cut)
            out_chars += sum(len(p) for p in pieces)
            index += 1

        if not cut:
            for n, call in enumerate(plan.calls):
                call_id = self.spec.call_ids[n] if n < len(self.spec.call_ids) else None
                yield from self._call_item(index, call, call_id or self.sim.new_id("call"))
                out_chars += len(call.arguments)
                index += 1

        usage = self._usage(out_chars, reasoning_tokens)
        if fault.failed:
            self.final = self.response("failed", self.output, usage, error=_failure(fault))
            yield {"type": "response.failed", "response": self.final}
        elif cut:
            self.final = self.response(
                "incomplete", self.output, usage, incomplete_details={"reason": "max_output_tokens"}
            )
            yield {"type": "response.incomplete", "response": self.final}
        else:
            self.final = self.response("completed", self.output, usage)
            yield {"type": "response.completed", "response": self.final}

    def _reasoning_item(self, index: int, summary: str | None) -> Iterator[dict]:
        rid = self.sim.new_id("rs")
        yield {"type": "response.output_item.added", "output_index": index, "item": {"id": rid, "type": "reasoning", "summary": []}}
        parts = []
        if summary is not None:
            base = {"item_id": rid, "output_index": index, "summary_index": 0}
            yield {"type": "response.reasoning_summary_part.added", **base, "part": {"type": "summary_text", "text": ""}}
            for piece in brain.split_deltas(summary):
                yield {"type": "response.reasoning_summary_text.delta", **base, "delta": piece}
            yield {"type": "response.reasoning_summary_text.done", **base, "text": summary}
            part = {"type": "summary_text", "text": summary}
            yield {"type": "response.reasoning_summary_part.done", **base, "part": part}
            parts.append(part)
        item = {"id": rid, "type": "reasoning", "summary": parts}
        self.output.append(item)
        yield {"type": "response.output_item.done", "output_index": index, "item": item}

    def _message_item(self, index: int, pieces: list[str], cut: bool) -> Iterator[dict]:
        mid = self.sim.new_id("msg")
        added = {"id": mid, "type": "message", "status": "in_progress", "content": [], "role": "assistant"}
        yield {"type": "response.output_item.added", "output_index": index, "item": added}
        base = {"item_id": mid, "output_index": index, "content_index": 0}
        yield {"type": "response.content_part.added", **base, "part": _text_part("")}
        for piece in pieces:
            yield {"type": "response.output_text.delta", **base, "delta": piece, "logprobs": []}
        text = "".join(pieces)
        yield {"type": "response.output_text.done", **base, "text": text, "logprobs": []}
        yield {"type": "response.content_part.done", **base, "part": _text_part(text)}
        item = {**added, "status": "incomplete" if cut else "completed", "content": [_text_part(text)]}
        self.output.append(item)
        yield {"type": "response.output_item.done", "output_index": index, "item": item}

    def _call_item(self, index: int, call: brain.PlannedCall, call_id: str) -> Iterator[dict]:
        fid = self.sim.new_id("fc")
        added = {"id": fid, "type": "function_call", "status": "in_progress", "arguments": "", "call_id": call_id, "name": call.name}
        yield {"type": "response.output_item.added", "output_index": index, "item": added}
        for piece in split_args(call.arguments):
            yield {"type": "response.function_call_arguments.delta", "item_id": fid, "output_index": index, "delta": piece}
        yield {"type": "response.function_call_arguments.done", "item_id": fid, "output_index": index, "arguments": call.arguments}
        item = {**added, "status": "completed", "arguments": call.arguments}
        self.output.append(item)
        yield {"type": "response.output_item.done", "output_index": index, "item": item}

    def error_events(self, fault: Fault, websocket: bool) -> list[dict]:
        """The events that end a turn hit by `error=flat|nested`: the error, then response.failed."""
        nested = fault.error == "nested"
        err = midstream_error(fault, nested)
        if nested:
            event: dict = {"type": "error", "error": err}
            if websocket:
                event["status"] = 429 if err["code"] == "rate_limit_exceeded" else 500
        else:
            event = {"type": "error", **err}
        failure = {"code": err["code"], "message": err["message"]}
        self.final = self.response("failed", self.output, None, error=failure)
        return [event, {"type": "response.failed", "response": self.final}]


def _echo_tool(tool: dict) -> dict:
    """How the response object echoes a tool: function tools with their defaults filled in."""
    if tool.get("type") != "function":
        return tool
    return {
        "type": "function",
        "name": tool.get("name"),
        "description": tool.get("description"),
        "parameters": tool.get("parameters"),
        "strict": tool.get("strict", True),
    }


def _failure(fault: Fault) -> dict:
    return {
        "code": fault.code or "server_error",
        "message": fault.message or "The server had an error while processing your request. Sorry about that!",
    }


def _text_part(text: str) -> dict:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def _take(pieces: list[str], budget: int | None) -> tuple[list[str], bool]:
    """The pieces that fit in `budget` tokens, and whether any were cut."""
    if budget is None:
        return pieces, False
    out, text = [], ""
    for piece in pieces:
        if brain.count_tokens(text + piece) > budget:
            return out, True
        out.append(piece)
        text += piece
    return out, False


# -- shared by HTTP and WebSocket -----------------------------------------------------------


def not_found(prev_id: str) -> ApiError:
    return ApiError(400, f"Previous response with id '{prev_id}' not found.", "previous_response_id", "previous_response_not_found")


def resolve_items(sim: Any, body: dict, cache: dict | None = None) -> list[dict]:
    """The full input: the previous response's input and output (if chained), then the new items."""
    items = normalize_input(body.get("input"))
    prev_id = body.get("previous_response_id")
    if not prev_id:
        return items
    if cache is not None and cache.get("id") == prev_id:
        prev = cache
    elif prev_id in sim.stored:
        prev = sim.stored[prev_id]
    else:
        raise not_found(prev_id)
    return prev["input"] + prev["output"] + items


def plan_turn(sim: Any, body: dict, items: list[dict], header_fault: Fault | None) -> tuple[TurnSpec, Any]:
    """Take the next script turn (if any), merge its fault over the header's, and plan."""
    script_turn = sim.next_script_turn()
    turn = to_turn(body, items)
    plan = brain.plan(turn)
    fault = header_fault
    call_ids: list[str | None] = []
    if script_turn is not None:
        plan = script_turn.plan(plan)
        fault = (header_fault or Fault()).merged(script_turn.fault) if script_turn.fault else header_fault
        call_ids = [script_turn.call_id(i) for i in range(len(plan.calls))]
    return TurnSpec(plan=plan, turn=turn, fault=fault, call_ids=call_ids), script_turn


def remember(sim: Any, body: dict, items: list[dict], builder: ResponseBuilder, cache: dict | None) -> None:
    final = builder.final
    if final is None or final["status"] == "failed":
        return  # a failed turn is not a point to continue from
    entry = {"id": builder.id, "input": items, "output": builder.output, "response": final}
    if body.get("store", True):
        sim.stored[builder.id] = entry
    if cache is not None:
        cache.clear()
        cache.update(entry)


def _delays(sim: Any, fault: Fault | None) -> tuple[float, float]:
    f = fault or Fault()
    latency = f.latency if f.latency is not None else sim.config.latency
    delay = f.delta_delay if f.delta_delay is not None else sim.config.delta_delay
    return latency, delay


class Numberer:
    """Adds sequence_number (and stream_id over WebSocket) as events are framed."""

    def __init__(self, stream_id: str | None = None) -> None:
        self.n = 0
        self.stream_id = stream_id

    def __call__(self, event: dict) -> dict:
        out = {"type": event["type"], "sequence_number": self.n, **{k: v for k, v in event.items() if k != "type"}}
        if self.stream_id is not None:
            out["stream_id"] = self.stream_id
        self.n += 1
        return out


def sse_frame(event: dict) -> str:
    return f"event: {event['type']}\ndata: {dumps(event)}\n\n"


# -- HTTP -------------------------------------------------------------------------------------


async def handle_http(request: web.Request) -> web.StreamResponse:
    sim = request.app["sim"]
    body = validate.parse_json(await request.read())
    validate.check_responses(body)
    items = resolve_items(sim, body)
    spec, script_turn = plan_turn(sim, body, items, request.get("fault"))
    fault = spec.fault
    latency, delay = _delays(sim, fault)
    refusal = await refuse(fault, latency)
    if refusal is not None:
        return refusal
    stream = bool(body.get("stream"))

    if script_turn is not None and script_turn.replay is not None:
        return await _replay_http(request, script_turn, stream, fault, latency, delay)

    builder = ResponseBuilder(sim, body, spec)
    if not stream:
        await asyncio.sleep(latency)
        if fault is not None and (fault.error or fault.drop is not None or fault.close is not None):
            if fault.error:
                raise ApiError(500, _failure(fault)["message"], None, None, "server_error")
            request.transport.close()  # drop: no answer at all
            return web.Response(status=500)
        if builder.final and builder.final["status"] == "failed":
            raise ApiError(500, builder.final["error"]["message"], None, None, "server_error")
        remember(sim, body, items, builder, None)
        return web.json_response(builder.final)

    response = web.StreamResponse(headers={"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"})
    await asyncio.sleep(latency)
    await response.prepare(request)
    number = Numberer()

    def inject(kind: str, f: Fault) -> list[str]:
        if kind == "malformed":
            return [f"event: response.output_text.delta\ndata: {MALFORMED}\n\n"]
        if kind == "unknown":
            return [sse_frame(number({"type": UNKNOWN_TYPE, "note": "simulated unknown event"}))]
        return [sse_frame(number(e)) for e in builder.error_events(f, websocket=False)]

    finished = await play(SseSink(response, request), builder.events, lambda e: sse_frame(number(e)), fault, delay, inject)
    if finished:
        remember(sim, body, items, builder, None)
        await response.write_eof()
    return response


async def _replay_http(request, script_turn, stream, fault, latency, delay) -> web.StreamResponse:
    await asyncio.sleep(latency)
    if not stream:  # the terminal event's response object is the JSON answer
        for _, data in reversed(script_turn.replay_frames()):
            obj = json.loads(data) if data.startswith("{") else {}
            if isinstance(obj.get("response"), dict):
                return web.json_response(obj["response"])
        raise ApiError(500, "replayed stream has no response object", None, None, "server_error")
    return await stream_raw(request, script_turn.replay_sse(), fault, delay)


async def stream_raw(request: web.Request, frames: list[str], fault: Fault | None, delay: float) -> web.StreamResponse:
    """Send ready-made SSE frames verbatim (replays), still subject to the stream faults."""
    response = web.StreamResponse(headers={"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"})
    await response.prepare(request)

    def inject(kind: str, f: Fault) -> list[str]:
        if kind == "malformed":
            return [f"data: {MALFORMED}\n\n"]
        if kind == "unknown":
            return [f"event: {UNKNOWN_TYPE}\ndata: {{\"type\":\"{UNKNOWN_TYPE}\"}}\n\n"]
        return [f"event: error\ndata: {dumps({'type': 'error', **midstream_error(f, False)})}\n\n"]

    if await play(SseSink(response, request), frames, lambda frame: frame, fault, delay, inject):
        await response.write_eof()
    return response


# -- WebSocket mode -----------------------------------------------------------------------------


def ws_error(err: ApiError, stream_id: str | None = None) -> dict:
    event: dict = {"type": "error", "status": err.status, "error": {"type": err.type, "code": err.code, "message": err.message, "param": err.param}}
    if err.headers:
        event["error"]["headers"] = err.headers
    if stream_id is not None:
        event["stream_id"] = stream_id
    return event


async def handle_ws(request: web.Request) -> web.StreamResponse:
    sim = request.app["sim"]
    ws = web.WebSocketResponse(max_msg_size=0, autoping=True)
    if not ws.can_prepare(request).ok:
        raise ApiError(400, "Expected a WebSocket upgrade for GET /v1/responses.")
    await ws.prepare(request)
    sim.track(ws)
    conn = sim.new_connection_id()
    opened = time.monotonic()
    cache: dict = {}  # this connection's latest response
    async for msg in ws:
        if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            break
        raw = msg.data if msg.type == WSMsgType.TEXT else msg.data.decode("utf-8", "replace")
        try:
            event = validate.parse_json(raw)
        except ApiError as err:
            sim.record("ws", {"endpoint": ENDPOINT, "conn": conn, "raw": raw[:4096]})
            await ws.send_str(dumps(ws_error(err)))
            continue
        sim.record("ws", {"endpoint": ENDPOINT, "conn": conn, "event": event})
        if time.monotonic() - opened > sim.config.ws_max_age:
            err = ApiError(
                400,
                "Responses websocket connection limit reached (60 minutes). Create a new websocket connection to continue.",
                None,
                "websocket_connection_limit_reached",
            )
            await ws.send_str(dumps(ws_error(err)))
            await ws.close(code=1000, message=b"connection limit reached")
            break
        kind = event.get("type")
        try:
            if kind == "response.create":
                if not await _ws_turn(request, ws, event, cache):
                    break
            elif kind == "response.steer":
                raise ApiError(400, "The simulator does not support response.steer.", "type", "steering_not_supported")
            elif kind is None:
                raise validate.missing("type")
            else:
                raise validate.invalid_value("type", kind, ["response.create", "response.steer"])
        except ApiError as err:
            await ws.send_str(dumps(ws_error(err, event.get("stream_id"))))
    return ws


async def _ws_turn(request: web.Request, ws: web.WebSocketResponse, event: dict, cache: dict) -> bool:
    """One response.create; returns False when the socket was closed or dropped."""
    sim = request.app["sim"]
    body = {k: v for k, v in event.items() if k not in ("type", "stream_id", "generate")}
    stream_id = event.get("stream_id")
    validate.check_responses(body, websocket=True)
    try:
        items = resolve_items(sim, body, cache)
    except ApiError:
        cache.clear()  # a failed continuation evicts the cached state
        raise
    header_fault = sim.take_fault(request.get("fault"))
    spec, script_turn = plan_turn(sim, body, items, header_fault)
    spec.generate = event.get("generate", True) is not False
    fault = spec.fault
    latency, delay = _delays(sim, fault)
    await asyncio.sleep(latency)
    if fault is not None and fault.rejects:
        status, err, headers = rejection(fault)
        e = err["error"]
        raise ApiError(status, e["message"], e["param"], e["code"], e["type"], headers)
    number = Numberer(stream_id)
    sink = WsSink(ws, request)
    if script_turn is not None and script_turn.replay is not None:
        frames = [data for _, data in script_turn.replay_frames()]
        return await play(sink, frames, lambda d: d, fault, delay, lambda kind, f: [MALFORMED])
    builder = ResponseBuilder(sim, body, spec)

    def inject(kind: str, f: Fault) -> list[str]:
        if kind == "malformed":
            return [MALFORMED]
        if kind == "unknown":
            return [dumps(number({"type": UNKNOWN_TYPE, "note": "simulated unknown event"}))]
        return [dumps(number(e)) for e in builder.error_events(f, websocket=True)]

    finished = await play(sink, builder.events, lambda e: dumps(number(e)), fault, delay, inject)
    if finished:
        remember(sim, body, items, builder, cache)
    return finished or (not ws.closed and fault is not None and fault.error is not None)
