"""The Chat Completions front: `POST /v1/chat/completions`, streamed (SSE chunks) or as one object.

Chunks follow protocols.md §3.2: a first chunk with the role, content deltas, tool calls as
fragments by index (id/type/name in the first fragment of each call, arguments split over later
ones), a chunk with `finish_reason` (stop / tool_calls / length), a usage chunk with
`choices: []` only when `stream_options.include_usage`, then `data: [DONE]`.
`max_completion_tokens` / `max_tokens` cut the text and give `finish_reason: "length"`.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import string
import time
from typing import Any, Iterator

from aiohttp import web

from . import brain, validate
from .faults import MALFORMED, UNKNOWN_TYPE, Fault, SseSink, dumps, midstream_error, play, refuse
from .responses import _delays, _take, content_text, split_args, stream_raw
from .validate import ApiError

FINGERPRINT = "fp_sim0000000"


def to_turn(body: dict) -> brain.Turn:
    messages = body.get("messages") or []
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    user_text = content_text(messages[last_user].get("content")) if last_user >= 0 else ""
    names = {}
    for m in messages:
        for call in m.get("tool_calls") or []:
            names[call.get("id")] = (call.get("function") or {}).get("name")
    results = [
        (names.get(m.get("tool_call_id")) or m.get("tool_call_id"), content_text(m.get("content")))
        for m in messages[last_user + 1 :]
        if m.get("role") == "tool"
    ]
    system = [content_text(m.get("content")) for m in messages if m.get("role") in ("system", "developer")]
    tools = [
        t["function"]["name"]
        for t in body.get("tools") or []
        if t.get("type") == "function" and isinstance(t.get("function"), dict) and t["function"].get("name")
    ]
    effort = body.get("reasoning_effort")
    return brain.Turn(
        user_text=user_text,
        tool_names=tools,
        tool_results=results,
        instructions="\n".join(system) or None,
        wants_reasoning=bool(effort) and effort != "none",
        input_chars=len(json.dumps(messages)),
        output_schema=_json_schema(body.get("response_format")),
    )


def _json_schema(fmt: Any) -> dict | None:
    """The schema of a `response_format` of type json_schema (else None: plain text)."""
    spec = fmt.get("json_schema") if isinstance(fmt, dict) and fmt.get("type") == "json_schema" else None
    return spec["schema"] if isinstance(spec, dict) and isinstance(spec.get("schema"), dict) else None


def _obfuscation() -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(4 + secrets.randbelow(12)))


class ChatBuilder:
    def __init__(self, sim: Any, body: dict, plan: brain.Plan, turn: brain.Turn, fault: Fault | None, call_ids: list) -> None:
        self.sim, self.body, self.plan, self.turn = sim, body, plan, turn
        self.fault = fault or Fault()
        self.id = sim.new_id("chatcmpl")
        self.created = int(time.time())
        opts = body.get("stream_options") or {}
        self.include_usage = bool(opts.get("include_usage"))
        self.obfuscate = opts.get("include_obfuscation", True) is not False
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if self.fault.incomplete:
            limit = max(1, brain.count_tokens(plan.text or "x") // 2)
        self.pieces, self.cut = _take(brain.split_deltas(plan.text), limit) if plan.text is not None else ([], False)
        self.calls = [] if self.cut else [
            (call_ids[i] if i < len(call_ids) and call_ids[i] else sim.new_id("call"), c) for i, c in enumerate(plan.calls)
        ]
        self.text = "".join(self.pieces) if plan.text is not None else None
        self.finish = "length" if self.cut else ("tool_calls" if self.calls else "stop")
        think = self.fault.think or sim.config.think
        self.think = (plan.reasoning or f"Considering: {turn.user_text[:80]}") if think else None

    def usage(self) -> dict:
        prompt = brain.count_tokens(self.turn.input_chars)
        out_chars = len(self.text or "") + len(self.think or "") + sum(len(c.arguments) for _, c in self.calls)
        completion = brain.count_tokens(out_chars)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def _chunk(self, choices: list, usage: dict | None = None) -> dict:
        chunk = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.body.get("model"),
            "service_tier": "default",
            "system_fingerprint": FINGERPRINT,
            "choices": choices,
        }
        if self.include_usage:  # without include_usage the real chunks carry no usage key
            chunk["usage"] = usage
        if self.obfuscate:
            chunk["obfuscation"] = _obfuscation()
        return chunk

    def _delta(self, delta: dict, finish: str | None = None) -> dict:
        return self._chunk([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}])

    def chunks(self) -> Iterator[dict]:
        first: dict = {"role": "assistant", "content": "" if self.text is not None else None, "refusal": None}
        yield self._delta(first)
        if self.think is not None:  # the raw format of reasoning models without a reasoning parser
            for piece in ["<thi", "nk>\n", *brain.split_deltas(self.think), "\n</th", "ink>\n\n"]:
                yield self._delta({"content": piece})
        for piece in self.pieces:
            yield self._delta({"content": piece})
        for index, (call_id, call) in enumerate(self.calls):
            head = {"index": index, "id": call_id, "type": "function", "function": {"name": call.name, "arguments": ""}}
            yield self._delta({"tool_calls": [head]})
            for piece in split_args(call.arguments):
                yield self._delta({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        yield self._delta({}, self.finish)
        if self.include_usage:
            yield self._chunk([], self.usage())

    def completion(self) -> dict:
        content = self.text if self.think is None else f"<think>\n{self.think}\n</think>\n\n{self.text or ''}"
        message: dict = {"role": "assistant", "content": content, "refusal": None, "annotations": []}
        if self.calls:
            message["tool_calls"] = [
                {"id": cid, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for cid, c in self.calls
            ]
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.body.get("model"),
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": self.finish}],
            "usage": self.usage(),
            "service_tier": "default",
            "system_fingerprint": FINGERPRINT,
        }


def data_frame(obj: dict | str) -> str:
    return f"data: {obj if isinstance(obj, str) else dumps(obj)}\n\n"


async def handle(request: web.Request) -> web.StreamResponse:
    sim = request.app["sim"]
    body = validate.parse_json(await request.read())
    validate.check_chat(body)
    script_turn = sim.next_script_turn()
    turn = to_turn(body)
    plan = brain.plan(turn)
    fault = request.get("fault")
    call_ids: list = []
    if script_turn is not None:
        plan = script_turn.plan(plan)
        if script_turn.fault:
            fault = (fault or Fault()).merged(script_turn.fault)
        call_ids = [script_turn.call_id(i) for i in range(len(plan.calls))]
    latency, delay = _delays(sim, fault)
    refusal = await refuse(fault, latency)
    if refusal is not None:
        return refusal
    stream = bool(body.get("stream"))

    if script_turn is not None and script_turn.replay is not None:
        if not stream:
            raise ApiError(500, "The simulator can replay a recorded stream only to stream=true requests.", None, None, "server_error")
        await asyncio.sleep(latency)
        return await stream_raw(request, script_turn.replay_sse(), fault, delay)

    builder = ChatBuilder(sim, body, plan, turn, fault, call_ids)
    if not stream:
        await asyncio.sleep(latency)
        if fault is not None and (fault.failed or fault.error):
            raise ApiError(500, midstream_error(fault, False)["message"], None, None, "server_error")
        if fault is not None and (fault.drop is not None or fault.close is not None):
            request.transport.close()
            return web.Response(status=500)
        return web.json_response(builder.completion())
    chunks = list(builder.chunks())
    if fault is not None and fault.failed:  # a chat stream has no failed status: end with an error chunk
        fault = (fault).merged(Fault(error="flat", after=min(fault.after, len(chunks))))
    return await _stream(request, chunks + ["[DONE]"], data_frame, fault, latency, delay, builder)


async def _stream(request, frames, render, fault, latency, delay, builder) -> web.StreamResponse:
    response = web.StreamResponse(headers={"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"})
    await asyncio.sleep(latency)
    await response.prepare(request)

    def inject(kind: str, f: Fault) -> list[str]:
        if kind == "malformed":
            return [data_frame(MALFORMED)]
        if kind == "unknown":  # an unknown object shape, as an OpenAI-compatible gateway might send
            return [data_frame({"object": UNKNOWN_TYPE, "id": builder.id if builder else "x"})]
        e = midstream_error(f, f.error == "nested")
        return [data_frame({"error": {"message": e["message"], "type": e.get("type", "server_error"), "param": None, "code": e["code"]}})]

    if await play(SseSink(response, request), frames, render, fault, delay, inject):
        await response.write_eof()
    return response
