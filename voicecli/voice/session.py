"""`RealtimeSession`: one voice conversation over the Realtime API, across as many sockets as it takes.

It owns everything between the front end and the socket: `session.update` from the profile, the
conversation so far replayed as text into every new session (after `talk -c`, a dropped socket,
`session_expired`, or a renewal before the server's 60-minute cap), reconnecting with the transport
layer's backoff, and tool rounds — run through `Conversation.tool_round`, like text turns:
`max_tool_rounds`, the approver, `ToolResult` events, errors returned to the model, everything in
the conversation log.

Front ends call typed methods (`append_audio`, `commit`, `clear`, `say`, `cancel`, `truncate`) and
read neutral events from `events()`; they never see a wire dict. A lost connection shows up as one
`Disconnected` event before the new session starts; a reconnect that fails for good ends `events()`
with `SessionError`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from voicecli.conversation import Conversation, ToolRunner
from voicecli.events import (Disconnected, Error, Event, ResponseStarted, SpeechStarted, ToolCall, Transcript,
                             TurnEnd)
from voicecli.profiles import Profile
from voicecli.transport import resolve_base_url
from voicecli.transport.base import Retries
from voicecli.transport.realtime import RealtimeTransport
from voicecli.transport.ws import ConnectError
from voicecli.voice.jobs import Jobs, drain_events
from voicecli.errors import exit_code_for
from voicecli.wire import realtime as rt
from voicecli.items import FunctionCall, Message

log = logging.getLogger("voicecli")

QUIET_ERRORS = {"response_cancel_not_active"}  # expected races (we cancel, the server already had)


class SessionError(Exception):
    """Connecting (or, in a cascade, a `stage` at `base_url`) failed for good; `error` says why,
    after `retries` retries."""

    def __init__(self, error: Error, retries: int = 0, *, stage: str | None = None, base_url: str | None = None):
        super().__init__(error.message)
        self.error, self.retries, self.stage, self.base_url = error, retries, stage, base_url
        self.exit_code = exit_code_for(error)


class RealtimeSession:
    def __init__(self, profile: Profile, conversation: Conversation, *, base_url: str | None = None,
                 tool_runner: ToolRunner | None = None, query: dict[str, str] | None = None,
                 unheard: Callable[[], list[str]] = list, clock: Callable[[], float] = time.monotonic):
        self.profile = profile
        self.voice = profile.voice
        self.conversation = conversation
        self.base_url = base_url or resolve_base_url(profile)
        self.api_key = profile.api_key()
        self.tool_runner = tool_runner
        self.functions = [t for t in profile.tools if t.type == "function"] if tool_runner else []
        hosted = [t.name for t in profile.tools if t.type != "function"]
        if hosted:
            log.warning("the Realtime API has no hosted tools; not offered in talk: %s", ", ".join(hosted))
        if self.voice.speed is not None and self.voice.speed > 1.5:
            from voicecli.errors import ConfigError

            raise ConfigError(f"voice.speed {self.voice.speed:g} is above the Realtime API's 1.5",
                              hint="up to 4 works with --engine cascade (text-to-speech)")
        self.query = query or {}
        self.unheard = unheard  # answers still playing: not in the history yet, but they will be heard
        self.clock = clock
        self.transport: RealtimeTransport | None = None
        self.reconnecting = False
        self.started = 0.0  # clock() when the current server session began
        self.sessions = 0
        self._queue: asyncio.Queue[Event | SessionError | None] = asyncio.Queue()
        self._pump: asyncio.Task | None = None
        self._jobs = Jobs()  # tool rounds, closing a socket
        self._calls: list[ToolCall] = []  # of the running response
        self._rounds = 0  # tool rounds since the user last said something
        self._expired = False  # the server said session_expired: its close is not a failure
        self._planned = False  # we closed the socket to renew the session
        self._closing = False

    def describe(self) -> str:
        mode = self.voice.turn_detection
        return f"{self.voice.model} · {'push-to-talk' if mode == 'none' else mode.replace('_', ' ')}"

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (no retry: a wrong URL or key should fail at once) and start the first session."""
        transport = self._new_transport()
        try:
            await transport.connect()
        except ConnectError as exc:
            raise SessionError(exc.error) from None
        await self._begin(transport)
        self._pump = asyncio.get_running_loop().create_task(self._read(), name="realtime")

    def events(self) -> AsyncIterator[Event]:
        return drain_events(self._queue)

    @property
    def busy(self) -> bool:
        """Tool rounds (or closing a socket) in progress."""
        return bool(self._jobs)

    def due_for_renewal(self) -> bool:
        """Time to renew the server session before its age limit (do it at a quiet moment)."""
        return (not self.reconnecting and self.transport is not None
                and self.clock() - self.started >= self.voice.session_max_age)

    def renew(self) -> None:
        """Close the socket on purpose: the reader starts a new session with the history replayed."""
        if self.transport is None or self.reconnecting:
            return
        self._planned = self.reconnecting = True
        self._jobs.spawn(self.transport.aclose())

    async def aclose(self) -> None:
        self._closing = True
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
        await self._jobs.cancel()
        if self.transport is not None:
            await self.transport.aclose()
        self._queue.put_nowait(None)

    def remember(self, role: str, text: str, *, interrupted: bool = False, item_id: str | None = None) -> None:
        """A finished utterance (what was heard, for the assistant) joins the conversation and its log."""
        if text:
            self.conversation.add(Message(role, text, interrupted=interrupted))

    # -- typed commands -------------------------------------------------------------------------

    def speech_end_ms(self, audio_end_ms: int) -> int | None:
        """Where the user's speech ended, in the audio sent, for a `speech_stopped` at `audio_end_ms`.
        The server's `audio_end_ms` includes the silence that ended the turn (so the API reference
        says, and the simulator does): server VAD's `silence_duration_ms` (default 500) comes off;
        semantic VAD's silence is not known (None: the latency line says so)."""
        v = self.voice
        if v.turn_detection != "server_vad":
            return None
        silence = v.vad_silence_duration_ms if v.vad_silence_duration_ms is not None else 500
        return max(0, audio_end_ms - silence)

    async def append_audio(self, pcm: bytes) -> bool:
        return await self._send(rt.append_audio(pcm))

    async def input_ended(self) -> None:
        pass  # the server's VAD has had the audio (and the file's trailing silence)

    async def commit(self) -> None:
        """End a push-to-talk turn: the recorded audio is the user's message; ask for an answer."""
        self._rounds = 0
        await self._send(rt.commit())
        await self._send(rt.response_create())

    async def clear(self) -> None:
        await self._send(rt.clear())

    async def hold_turn(self, on: bool) -> None:
        """Turn detection off (`on`: the client ends the user's turn, `commit`) or back to the profile's,
        less the server's own interruptions (the client's local VAD makes them: voice/interrupt.py)."""
        await self._send(rt.turn_detection_update(self.voice, not on))

    async def say(self, text: str) -> None:
        """A typed line as the user's message, then an answer."""
        self._rounds = 0
        await self._send(rt.create_text_message(text))
        await self._send(rt.response_create())

    async def cancel(self) -> None:
        await self._send(rt.response_cancel())

    async def truncate(self, item_id: str, audio_end_ms: int) -> None:
        """Cut the server's copy of an answer to what the user heard."""
        await self._send(rt.truncate(item_id, audio_end_ms))

    async def _send(self, event: dict[str, Any]) -> bool:
        transport = self.transport
        return await transport.send(event) if transport is not None else False

    # -- connections ----------------------------------------------------------------------------

    def _new_transport(self) -> RealtimeTransport:
        return RealtimeTransport(self.profile.connection, self.base_url, self.api_key, self.voice.model,
                                 query=self.query)

    async def _begin(self, transport: RealtimeTransport) -> None:
        self.transport = transport
        self.started = self.clock()
        self.sessions += 1
        instructions = self.voice.instructions or self.profile.model.instructions
        await self._send(rt.session_update(self.voice, instructions, self.functions, self.profile.model.tool_choice))
        said = [(m.role, m.text.strip()) for m in self.conversation.history
                if isinstance(m, Message) and m.role in ("user", "assistant") and m.text.strip()]
        for role, text in said + [("assistant", text) for text in self.unheard()]:
            await self._send(rt.history_message(role, text))

    async def _read(self) -> None:
        """Server events into the queue; a lost socket is replaced by a new session."""
        try:
            while not self._closing:
                reason = "connection lost"
                async for event in self.transport.events():
                    if isinstance(event, Disconnected):
                        reason = event.reason
                        break
                    for out in self._on_event(event):
                        self._queue.put_nowait(out)
                if self._closing:
                    return
                planned, self._planned = self._planned, False
                if self._expired:
                    reason, self._expired = "the session expired", False
                self._queue.put_nowait(Disconnected(reason, planned))
                await self._reconnect()
        except SessionError as exc:
            self._queue.put_nowait(exc)

    async def _reconnect(self) -> None:
        self.reconnecting = True
        old, self.transport = self.transport, None
        if old is not None:
            await old.aclose()
        self._calls = []
        retries = Retries(max(1, self.profile.connection.max_retries), self.api_key, quiet=True)
        while True:
            transport = self._new_transport()
            try:
                await transport.connect()
                break
            except ConnectError as exc:
                if not await retries.wait(exc.error):
                    raise SessionError(exc.error, retries.used) from None
        await self._begin(transport)
        self.reconnecting = False

    # -- server events --------------------------------------------------------------------------

    def _on_event(self, event: Event) -> list[Event]:
        if isinstance(event, Error):
            if event.code in QUIET_ERRORS:
                log.debug("server: %s", event.message)
                return []
            if event.code == "session_expired":
                self._expired = True  # the server closes the socket next; _read reconnects
                return []
        elif isinstance(event, ResponseStarted):
            self._calls = []
        elif isinstance(event, SpeechStarted) or (isinstance(event, Transcript) and event.role == "user"):
            self._rounds = 0  # the user spoke: a new turn, a new allowance of tool rounds
        elif isinstance(event, ToolCall):
            self._calls.append(event)
        elif isinstance(event, TurnEnd) and event.status == "completed" and self._calls and self.tool_runner:
            calls, self._calls = self._calls, []
            for call in calls:
                self.conversation.add(FunctionCall(call.call_id, call.name, call.arguments))
            self._jobs.spawn(self._tool_round(calls))
        return [event]

    async def _tool_round(self, calls: list[ToolCall]) -> None:
        self._rounds += 1
        done = await self.conversation.tool_round(calls, self._rounds, self.tool_runner)
        for output in done.outputs:
            await self._send(rt.function_call_output(output.call_id, output.output))
        for event in [*done.results, *([done.stopped] if done.stopped else [])]:
            self._queue.put_nowait(event)
        if done.stopped is None:
            await self._send(rt.response_create())
