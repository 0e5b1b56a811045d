"""The session layer: neutral history, one user turn (with tool rounds), usage totals.

Front ends call `Conversation.send(message)` and consume neutral events. The conversation always
holds the full history; it passes the transport an `Anchor` (the last response and how much of the
history it covers) when nothing but new items changed, and the transport decides whether it can
continue from it (WebSocket cache, stored responses) or must send everything.
"""

from __future__ import annotations

import dataclasses
import json
import time
from contextlib import aclosing
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from voicecli.convlog import ConversationLog
from voicecli.events import Error, Event, ReasoningDelta, TextDelta, ToolCall, ToolResult, TurnEnd, Usage
from voicecli.profiles import Profile
from voicecli.transport.base import Anchor, Transport
from voicecli.items import FunctionCall, FunctionOutput, HistoryItem, Message, OpaqueItem, Request

ToolRunner = Callable[[list[ToolCall]], Awaitable[list[FunctionOutput]]]


@dataclass
class TurnResult:
    """What one user turn produced, for --json, footers and logs."""

    text: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_results: list[ToolResult] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    status: str = "completed"
    reason: str | None = None
    response_id: str | None = None
    error: Error | None = None
    refusal: bool = False
    cost_usd: float | None = None  # None: the model has no known price
    started: float = field(default_factory=time.monotonic)
    first_token: float | None = None
    finished: float | None = None
    paused: float = 0.0  # seconds spent waiting for the user (an approval prompt): not the model's time
    paused_before_first: float = 0.0

    @property
    def ttft_ms(self) -> float | None:
        if self.first_token is None:
            return None
        return (self.first_token - self.started - self.paused_before_first) * 1000

    @property
    def total_ms(self) -> float:
        return ((self.finished or time.monotonic()) - self.started - self.paused) * 1000


@dataclass
class ToolRound:
    """One round of tool calls: the outputs to send back, their events, or why it was not run."""

    outputs: list[FunctionOutput]
    results: list[ToolResult]
    stopped: Error | None = None  # max_tool_rounds reached: the outputs say the calls were not run


class Conversation:
    def __init__(self, profile: Profile, transport: Transport | None, *, history: list[HistoryItem] | None = None,
                 log: ConversationLog | None = None, tool_runner: ToolRunner | None = None):
        self.profile = profile
        self.transport = transport
        self.history: list[HistoryItem] = list(history or [])
        self.log = log
        self.tool_runner = tool_runner
        self.total_usage = Usage()
        self.last: TurnResult | None = None
        self.text_format: dict | None = None  # structured output for the answers (schema.response_format)
        self._anchor: Anchor | None = None
        self._anchor_fingerprint: str | None = None
        self._held: int | None = None  # a tentative turn: the history's length before it (see `tentative`)
        self._held_logged = False

    def request(self) -> Request:
        m = self.profile.model
        tools = [t for t in self.profile.tools] if self.tool_runner is not None else []
        return Request(model=m.name, instructions=m.instructions, items=tuple(self.history), tools=tuple(tools),
                       settings=m.request_settings(), store=m.store, text_format=self.text_format)

    @staticmethod
    def _fingerprint(req: Request) -> str:
        tools = [dataclasses.asdict(t) for t in req.tools]
        return json.dumps([req.model, req.instructions, tools, sorted(req.settings.items()), req.store,
                           req.text_format], sort_keys=True, default=str)

    def add(self, item: HistoryItem) -> None:
        """Append an item said elsewhere (e.g. in a voice session) to the history and the log."""
        self._append(item)

    def heard(self, said: str, heard: str) -> None:
        """An answer already in the history was cut off while spoken: keep only what was heard.

        Cascaded talk writes each answer when the model finishes it, before it is spoken; a
        barge-in later replaces it with the heard part, marked interrupted (dropped if none)."""
        from voicecli.convlog import apply_heard

        if said == heard or not apply_heard(self.history, said, heard):
            return
        self._anchor = None  # the server's copy still holds the whole answer: send the history next time
        if self.log is not None:
            self.log.write({"type": "heard", "time": time.time(), "said": said, "heard": heard})

    # -- a turn that may be taken back (a voice cascade's preemptive answer) ----------------------

    def tentative(self) -> None:
        """The next turn may be taken back: its log lines are held until `confirm` (then written as
        usual), and `discard` (after its task ended) removes it from the history and the log. What its
        requests were billed stays in `total_usage`."""
        self._held, self._held_logged = len(self.history), False

    def confirm(self) -> None:
        held, self._held = self._held, None
        if held is not None and self._held_logged and self.log is not None:
            self.log.end_turn()  # it ended while tentative: its lines go now

    def discard(self) -> None:
        held, self._held = self._held, None
        if held is None:
            return
        del self.history[held:]
        self._anchor = None  # the server's last response is the discarded one: send the history next time
        if self.log is not None:
            self.log.drop_turn()

    def _append(self, item: HistoryItem) -> None:
        self.history.append(item)
        if self.log is not None:
            self.log.add_item(item)

    async def send(self, message: Message) -> AsyncIterator[Event]:
        """Run one user turn: the model's answer, and tool rounds until it answers in text."""
        result = self.last = TurnResult()
        if self.log is not None:
            self.log.begin_turn()  # the whole turn is appended to the log at once, at its end
        self._append(message)
        rounds = 0
        while True:
            req = self.request()
            fingerprint = self._fingerprint(req)
            anchor = self._anchor if fingerprint == self._anchor_fingerprint else None
            text: list[str] = []
            calls: list[ToolCall] = []
            end: TurnEnd | None = None
            try:
                # aclosing: if our caller stops early, the transport cleans up now, inside this task
                async with aclosing(self.transport.stream(req, anchor)) as stream:
                    async for event in stream:
                        if isinstance(event, TextDelta):
                            if result.first_token is None:
                                result.first_token = time.monotonic()
                                result.paused_before_first = result.paused
                            text.append(event.text)
                            result.refusal = result.refusal or event.refusal
                        elif isinstance(event, ReasoningDelta):
                            result.reasoning += event.text
                        elif isinstance(event, ToolCall):
                            calls.append(event)
                        elif isinstance(event, Usage):
                            result.usage = result.usage + event
                            self.total_usage = self.total_usage + event
                        elif isinstance(event, Error):
                            result.error = event
                        elif isinstance(event, TurnEnd):
                            end = event
                        yield event
            except BaseException:  # Ctrl-C or cancellation: keep what was received, marked as cut
                partial = "".join(text)
                result.text += partial
                if partial:
                    self._append(Message("assistant", partial, interrupted=True))
                self._cut(result)
                raise
            result.text += "".join(text)
            end = end or TurnEnd("failed", None, "no_terminal_event")
            result.status, result.reason, result.response_id = end.status, end.reason, end.response_id
            self._record_outputs(end, "".join(text), calls)
            if end.status == "completed" and end.response_id:
                self._anchor, self._anchor_fingerprint = Anchor(end.response_id, len(self.history)), fingerprint
            else:
                self._anchor = None
            result.tool_calls += calls
            if not calls or end.status != "completed" or self.tool_runner is None:
                break
            rounds += 1
            try:
                done = await self.tool_round(calls, rounds, self.tool_runner)
            except BaseException:  # Ctrl-C while tools run: tool_round gave the calls their outputs
                self._cut(result)
                raise
            if done.stopped is not None:
                result.status, result.reason = "incomplete", "max_tool_rounds"
                yield done.stopped
                break
            result.tool_results += done.results
            for event in done.results:
                yield event
        result.finished = time.monotonic()
        self._log_turn(result)

    async def tool_round(self, calls: list[ToolCall], rounds: int, runner: ToolRunner) -> ToolRound:
        """Round number `rounds` of local tool calls, for text and voice turns alike.

        Past `max_tool_rounds` the calls are not run; otherwise `runner` (approval included) runs
        them. Either way every call gets its output in the history (and the log) before this
        returns, even when cancelled: a call without an output breaks the next request.
        """
        limit = self.profile.model.max_tool_rounds
        if rounds > limit:
            outputs = self._close_calls(calls, f"not run: the turn was stopped after {limit} tool rounds")
            return ToolRound(outputs, [], Error("invalid_request", f"stopped after {limit} tool rounds without "
                                                "a final answer (raise model.max_tool_rounds to allow more)"))
        started = time.monotonic()
        try:
            outputs = await runner(calls)
        except BaseException:
            self._close_calls(calls, "not run: cancelled by the user")
            raise
        elapsed = (time.monotonic() - started) * 1000
        from voicecli.tools import to_event  # loaded by the tool runner already

        by_id = {c.call_id: c for c in calls}
        events = [to_event(by_id.get(o.call_id) or ToolCall(o.call_id, o.name or "", ""), o, elapsed)
                  for o in outputs]
        for output, event in zip(outputs, events):  # into the history before anything is yielded
            self._append(FunctionOutput(output.call_id, output.output, output.name, output.images))
            if self.log is not None:
                self.log.write({"type": "tool_result", "time": time.time(), "call_id": event.call_id,
                                "name": event.name, "arguments": event.arguments, "ok": event.ok,
                                "duration_ms": round(event.duration_ms, 1)})
        return ToolRound(list(outputs), events)

    def _cut(self, result: TurnResult) -> None:
        result.status, result.reason, result.finished = "cancelled", "interrupted", time.monotonic()
        self._anchor = None
        self._log_turn(result)

    def _close_calls(self, calls: list[ToolCall], why: str) -> list[FunctionOutput]:
        """Every call in the history needs an output, or the next request is rejected."""
        outputs = [FunctionOutput(call.call_id, why, call.name) for call in calls]
        for output in outputs:
            self._append(output)
        return outputs

    def _record_outputs(self, end: TurnEnd, text: str, calls: list[ToolCall]) -> None:
        """Append the model's output to the history the way the server holds it."""
        if end.output_items:
            for raw in end.output_items:
                kind = raw.get("type")
                if kind == "message":
                    parts = [c.get("text") or c.get("refusal") or "" for c in raw.get("content", [])]
                    self._append(Message("assistant", "".join(parts)))
                elif kind == "function_call":
                    self._append(FunctionCall(raw.get("call_id", ""), raw.get("name", ""), raw.get("arguments", "")))
                elif kind == "reasoning":
                    self._append(OpaqueItem("responses", raw))
            return
        # an empty answer is kept only when it is the answer: a rejected or failed request said nothing
        if text or (not calls and end.status == "completed"):
            self._append(Message("assistant", text, interrupted=end.status != "completed"))
        for call in calls:
            self._append(FunctionCall(call.call_id, call.name, call.arguments))

    def _log_turn(self, result: TurnResult) -> None:
        from voicecli import pricing

        # priced as the turn ends, with the model and price it ran with (/model may change them later)
        result.cost_usd = pricing.cost_usd(self.profile.model.name, result.usage, self.profile.model.price)
        if self.log is None:
            return
        from voicecli.convlog import where

        u = result.usage
        self.log.write({"type": "turn", "time": time.time(),
                        **where(self.profile, self.transport.name if self.transport else "realtime"),
                        "status": result.status, "reason": result.reason,
                        "response_id": result.response_id,
                        "usage": {"input_tokens": u.input_tokens, "cached_tokens": u.cached_tokens,
                                  "output_tokens": u.output_tokens, "reasoning_tokens": u.reasoning_tokens},
                        "cost_usd": result.cost_usd, "ttft_ms": result.ttft_ms, "total_ms": result.total_ms,
                        "error": result.error.message if result.error else None})
        if self._held is not None:
            self._held_logged = True  # written when confirmed, dropped when discarded
            return
        self.log.end_turn()
