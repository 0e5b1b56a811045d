"""`voicecli talk`: a live voice conversation over the Realtime API, with barge-in.

    microphone / --input WAV ──append──► RealtimeTransport ──events──► Talk.on_event
                                                                        │  audio → PlaybackBuffer → speaker / --output WAV
                                                                        └► TalkView, transcript file, stdout

`Talk` owns the session state: which response is running, which assistant item is playing and
how much of it was received and played, the conversation so far (replayed as text into a new
session after a drop, on `session_expired`, or before the server's 60-minute cap). Audio I/O
lives in `voicecli.audio`, the wire format in `voicecli.wire.realtime`, the socket in
`voicecli.transport.realtime`, the screen in `voicecli.ui.talk_view`.

Barge-in (protocols.md §4.8): when the user starts speaking (server VAD) or starts recording
(push-to-talk) or types a message while the assistant talks, the speaker is flushed with a 5 ms
fade, `response.cancel` goes out if a response is still running, and the playing item is
truncated to the audio actually played (clamped to what was received — pipecat #2106).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from voicecli.errors import VoicecliError
from voicecli.events import (AudioDelta, Error, SpeechStarted, SpeechStopped, TextDelta, ToolCall, Transcript,
                             TurnEnd, Usage)
from voicecli.profiles import Profile

log = logging.getLogger("voicecli")

BYTES_PER_MS = 48
HANG_S = 0.3  # half-duplex: keep the mic muted this long after the assistant's last sound
IDLE_EXIT_S = 1.0
PREBUFFER_MS = 60  # jitter buffer: start (or restart after running dry) once this much audio is queued  # --input: quiet time after the file ends before talk exits
QUIET_ERRORS = {"response_cancel_not_active"}  # expected races (we cancel, the server already had)


@dataclass
class TalkOptions:
    vad: str | None = None  # server | semantic | off
    half_duplex: bool | None = None
    input_device: str | None = None
    output_device: str | None = None
    input_wav: Path | None = None
    output_wav: Path | None = None
    transcript: Path | None = None
    voice: str | None = None
    debug: bool = False
    require_mcp: bool = False
    sim_query: dict[str, str] = field(default_factory=dict)  # tests: sim_fault / sim_max_age on the URL


@dataclass
class AssistantItem:
    item_id: str
    response_id: str | None
    start: float  # epoch seconds
    text: str = ""  # transcript (or text) received so far
    final_text: str | None = None
    received: int = 0  # audio bytes received
    done: bool = False  # its response has ended
    interrupted: bool = False
    played_ms: int | None = None  # where it was cut, when interrupted
    truncated: bool = False
    usage: Usage | None = None


@dataclass
class TurnClock:
    """Latency of one turn: end of user speech → first audio received → first sample played."""

    end: float | None = None
    first_audio: float | None = None
    item: str | None = None
    reported: bool = False


VAD_MODES = {"server": "server_vad", "semantic": "semantic_vad", "off": "none"}


def run_talk(profile: Profile, opts: TalkOptions) -> int:
    from voicecli.ui.status import setup_logging

    setup_logging(opts.debug)
    if opts.vad:
        profile.voice.turn_detection = VAD_MODES[opts.vad]
    if opts.voice:
        profile.voice.voice = opts.voice
    talk = Talk(profile, opts)
    return asyncio.run(talk.run())


class Talk:
    def __init__(self, profile: Profile, opts: TalkOptions, history: Sequence[tuple[str, str]] = ()):
        self.profile = profile
        self.opts = opts
        self.voice = profile.voice
        self.instructions = self.voice.instructions or profile.model.instructions
        self.ptt = self.voice.turn_detection == "none"
        self.headless = opts.input_wav is not None and opts.output_wav is not None
        # (role, text) for replay into a new session; seeded when chat hands its conversation over
        self.history: list[tuple[str, str]] = list(history)
        self.items: dict[str, AssistantItem] = {}
        self.order: list[str] = []  # assistant items in arrival order, for finalising in order
        self.response_id: str | None = None
        self.in_progress = False
        self.cancelled: set[str] = set()
        self.calls: list[ToolCall] = []
        self.usage: Usage | None = None
        self.user_speaking = False
        self.user_text = ""
        self.recording = False
        self.recorded_ms = 0
        self.turn = TurnClock()
        self.reconnecting = False
        self.approving = False
        self.cancel_armed = False
        self.session_started = 0.0
        self.sessions = 0
        self.quiet_since: float | None = None
        self.stop = asyncio.Event()
        self.stats = {"mic_to_send": [], "sent_blocks": 0}  # for bench/talk.py
        self.latencies: dict[str, float] = {}  # PortAudio's stream latencies, seconds
        self.transport = None
        self.source = None  # Microphone or WavSource
        self.buffer = None
        self.player = None
        self.recorder = None
        self.transcript = None
        self.view = None
        self.toolbox = None
        self._tasks: list[asyncio.Task] = []
        self._tool_task: asyncio.Task | None = None
        self._approval: asyncio.Future | None = None
        self._keys = None
        self._expired = False  # the server said session_expired: its close is not a failure
        self._planned_rollover = False  # we closed the socket to renew the session
        self.fatal: VoicecliError | None = None  # why talk has to end (a reconnect failed for good)

    # -- setup and teardown -------------------------------------------------------------------

    async def run(self) -> int:
        from voicecli.audio.speaker import ClockSpeaker, DeviceSpeaker, PlaybackBuffer
        from voicecli.audio.wav import WavRecorder, WavSource
        from voicecli.transport import resolve_base_url
        from voicecli.ui.talk_view import TalkView

        in_dev, out_dev = self._pick_devices()
        half = self.opts.half_duplex
        if half is None:
            half = self.voice.half_duplex
        if half is None:
            from voicecli.audio.devices import looks_like_headset

            names = [d["name"] for d in (in_dev, out_dev) if d]
            half = not (names and looks_like_headset(*names))
        self.half_duplex = bool(half) and self.opts.input_wav is None
        self.base_url = resolve_base_url(self.profile)
        self.api_key = self.profile.api_key()
        self.toolbox = self._make_toolbox()

        self.buffer = PlaybackBuffer(prebuffer_ms=PREBUFFER_MS, record=self.opts.output_wav is not None)
        if self.opts.input_wav is not None:
            self.source = WavSource(self.opts.input_wav)
        if self.opts.output_wav is not None:
            self.recorder = WavRecorder(self.opts.output_wav)
        if self.opts.transcript is not None:
            from voicecli.transcript import open_transcript

            self.transcript = open_transcript(self.opts.transcript)
            self.transcript.session(command="talk", model=self.voice.model)
        stdout_is_data = not sys.stdout.isatty()
        self.view = TalkView(footer=self._footer(), level=lambda: self.source.level if self.source else 0.0,
                             data_out=sys.stdout if stdout_is_data else None)
        loop = asyncio.get_running_loop()
        try:
            if self.toolbox is not None:  # MCP servers: their tools go into the first session.update
                await self.toolbox.start(require=self.opts.require_mcp)
            await self._connect_first()
            if self.source is None:
                from voicecli.audio.mic import Microphone

                self.source = Microphone(in_dev["index"] if in_dev else None)
                self._open_device(self.source.start, "microphone")
            if out_dev is not None:
                self.player = DeviceSpeaker(self.buffer, out_dev["index"])
                self._open_device(self.player.start, "speaker")
            else:
                self.player = ClockSpeaker(self.buffer)
                self.player.start()
            self.latencies = {"in": getattr(self.source, "latency", 0.0), "out": getattr(self.player, "latency", 0.0)}
            self.view.start()
            self._keys = KeyInput(loop, self.on_key, self.on_line)
            self._keys.start()
            try:
                loop.add_signal_handler(signal.SIGINT, self.on_sigint)
            except (NotImplementedError, RuntimeError):  # not on this platform: KeyboardInterrupt ends talk
                pass
            mode = "push-to-talk" if self.ptt else self.voice.turn_detection.replace("_", " ")
            duplex = "half-duplex (mic muted while the assistant speaks)" if self.half_duplex else "full-duplex"
            self.view.note(f"talk: {self.voice.model} · {mode} · {duplex}")
            self._tasks = [loop.create_task(c, name=n) for c, n in (
                (self._pump_mic(), "mic"), (self._pump_server(), "server"), (self._tick(), "tick"))]
            await self.stop.wait()
            if self.fatal is not None:
                raise self.fatal
            return 0
        finally:
            await self._shutdown()  # Ctrl-C during this is ignored (on_sigint): the exit stays clean
            try:
                loop.remove_signal_handler(signal.SIGINT)
            except (NotImplementedError, RuntimeError, ValueError):
                pass

    def _pick_devices(self):
        """Check the devices before connecting, so a wrong name fails fast (exit 3)."""
        from voicecli.audio.devices import resolve_device

        want_in = self.opts.input_wav is None
        want_out = not self.headless
        in_spec = self.opts.input_device or self.voice.input_device
        out_spec = self.opts.output_device or self.voice.output_device
        in_dev = resolve_device(in_spec, "input") if want_in else None
        out_dev = resolve_device(out_spec, "output") if want_out else None
        return in_dev, out_dev

    def _open_device(self, start, what: str) -> None:
        from voicecli.audio.devices import import_sounddevice
        from voicecli.errors import ConfigError

        sd = import_sounddevice()
        try:
            start()
        except sd.PortAudioError as exc:
            raise ConfigError(f"cannot open the {what}: {exc}",
                              hint="check `voicecli devices`, or pick one with --input-device/--output-device") from None

    def _make_toolbox(self):
        hosted = [t.name for t in self.profile.tools if t.type != "function"]
        if hosted:
            log.warning("the Realtime API has no hosted tools; not offered in talk: %s", ", ".join(hosted))
        if not self.functions and not self.profile.mcp:
            return None
        from voicecli.tools import ToolBox

        return ToolBox.for_profile(self.profile, self.approve, debug=self.opts.debug)

    @property
    def functions(self):
        return [t for t in self.profile.tools if t.type == "function"]

    def _footer(self) -> str:
        keys = ["type + Enter: send text"]
        if self.ptt:
            keys.insert(0, "Space/Enter: record/send")
        keys.append("Ctrl-C: interrupt · twice: quit")
        return " · ".join(keys)

    async def _shutdown(self) -> None:
        self.stop.set()
        for task in [*self._tasks, self._tool_task]:
            if task is not None:
                task.cancel()
        await asyncio.gather(*[t for t in [*self._tasks, self._tool_task] if t is not None], return_exceptions=True)
        if self._keys is not None:
            self._keys.close()
        for closer in (getattr(self.source, "close", None), getattr(self.player, "close", None)):
            if closer is not None:
                try:
                    closer()
                except Exception as exc:  # a device vanished: nothing to save
                    log.debug("closing audio: %s", exc)
        if self.player is not None and hasattr(self.player, "aclose"):
            await self.player.aclose()
        self._drain_tap()
        self._finalise(force=True)
        if self.recorder is not None:
            self.recorder.close()
        if self.transcript is not None:
            self.transcript.close()
        if self.view is not None:
            self.view.stop()
        if self.transport is not None:
            await self.transport.aclose()
        if self.toolbox is not None:
            await self.toolbox.aclose()

    # -- the session ----------------------------------------------------------------------------

    def _new_transport(self):
        from voicecli.transport.realtime import RealtimeTransport

        return RealtimeTransport(self.profile.connection, self.base_url, self.api_key, self.voice.model,
                                 query=self.opts.sim_query)

    async def _connect_first(self) -> None:
        from voicecli.transport.realtime import ConnectError
        from voicecli.ui.status import describe_error
        from voicecli.wire.errors import exit_code

        transport = self._new_transport()
        try:
            await transport.connect()
        except ConnectError as exc:
            raise VoicecliError(describe_error(exc.error, self.base_url), exit_code=exit_code(exc.error)) from None
        await self._begin(transport, replay=bool(self.history))

    async def _begin(self, transport, *, replay: bool) -> None:
        from voicecli.transport.realtime import history_item
        from voicecli.wire import realtime as rt

        self.transport = transport
        self.session_started = time.monotonic()
        self.sessions += 1
        update = rt.session_update(self.voice, self.instructions, self.functions if self.toolbox else ())
        if self.profile.model.tool_choice is not None and self.toolbox:
            update["session"]["tool_choice"] = self.profile.model.tool_choice
        await transport.send(update)
        if replay:
            # answers still playing are not in the history yet, but they will be heard
            playing = [("assistant", (i.final_text or i.text).strip()) for i in map(self.items.get, self.order)
                       if i is not None and not i.interrupted and (i.final_text or i.text).strip()]
            for role, text in self.history + playing:
                await transport.send(history_item(role, text))

    async def _reconnect(self, reason: str, planned: bool) -> None:
        """A new session with the conversation so far replayed as text items."""
        from voicecli.transport.base import backoff_delay
        from voicecli.transport.realtime import ConnectError
        from voicecli.ui.status import describe_error
        from voicecli.wire.errors import exit_code

        self.reconnecting = True
        old, self.transport = self.transport, None
        if old is not None:
            await old.aclose()
        self._response_lost()
        if not planned:
            self.view.note(f"{reason}; starting a new session with the conversation so far")
        attempt, limit = 0, max(1, self.profile.connection.max_retries)
        while True:
            transport = self._new_transport()
            try:
                await transport.connect()
                break
            except ConnectError as exc:
                delay = backoff_delay(attempt, exc.error.retry_after) if exc.error.retryable else None
                attempt += 1
                if delay is None or attempt > limit:
                    self.fatal = VoicecliError(describe_error(exc.error, self.base_url, attempt - 1),
                                               exit_code=exit_code(exc.error))
                    self.stop.set()
                    return
                await asyncio.sleep(delay)
        await self._begin(transport, replay=True)
        self.reconnecting = False

    def _response_lost(self) -> None:
        """The socket went away: what was running will never finish."""
        if self.in_progress and self.response_id:
            self.cancelled.add(self.response_id)
        self.in_progress = False
        self.user_speaking = False
        for item in self.items.values():
            item.done = True

    async def send(self, event: dict) -> bool:
        transport = self.transport
        return await transport.send(event) if transport is not None else False

    async def _pump_server(self) -> None:
        from voicecli.transport.realtime import Disconnected

        while not self.stop.is_set():
            transport = self.transport
            reason = "connection lost"
            async for event in transport.events():
                if isinstance(event, Disconnected):
                    reason = event.reason
                    break
                await self.on_event(event)
            if self.stop.is_set():
                return
            planned, self._planned_rollover = self._planned_rollover, False
            await self._reconnect(reason if not self._expired else "the session expired", planned)
            self._expired = False

    # -- server events --------------------------------------------------------------------------

    async def on_event(self, event) -> None:
        from voicecli.transport.realtime import ResponseStarted

        self.quiet_since = None
        if isinstance(event, AudioDelta):
            self._on_audio(event)
        elif isinstance(event, Transcript):
            self._on_transcript(event)
        elif isinstance(event, TextDelta):
            self._on_transcript(Transcript("assistant", event.text, False, event.item_id))
        elif isinstance(event, SpeechStarted):
            self.user_speaking = True
            self.user_text = ""
            if self._assistant_busy():
                await self.barge_in()
        elif isinstance(event, SpeechStopped):
            self.user_speaking = False
            self.turn = TurnClock(end=time.monotonic())
        elif isinstance(event, ResponseStarted):
            self.response_id, self.in_progress = event.response_id, True
            self.cancel_armed = False
            self.calls, self.usage = [], None
            if self.turn.end is None:  # a response we did not see the speech end of (tool follow-up)
                self.turn = TurnClock(end=time.monotonic())
        elif isinstance(event, ToolCall):
            self.calls.append(event)
        elif isinstance(event, Usage):
            self.usage = event
        elif isinstance(event, TurnEnd):
            await self._on_turn_end(event)
        elif isinstance(event, Error):
            self._on_error(event)

    def _on_audio(self, event: AudioDelta) -> None:
        if event.response_id in self.cancelled or not event.item_id:
            return  # late audio of a cancelled response
        item = self._item(event.item_id, event.response_id)
        item.received += len(event.pcm)
        if self.turn.first_audio is None:
            self.turn.first_audio, self.turn.item = time.monotonic(), event.item_id
        self.buffer.push(event.item_id, event.pcm)

    def _item(self, item_id: str, response_id: str | None) -> AssistantItem:
        item = self.items.get(item_id)
        if item is None:
            item = self.items[item_id] = AssistantItem(item_id, response_id or self.response_id, time.time())
            self.order.append(item_id)
        return item

    def _on_transcript(self, event: Transcript) -> None:
        if event.role == "user":
            if event.final:
                self._user_said(event.text.strip())
            else:
                self.user_text += event.text
                self.view.partial("user", self.user_text)
            return
        if not event.item_id:
            return
        known = self.items.get(event.item_id)
        if (known.response_id if known else self.response_id) in self.cancelled:
            return  # late text of a cancelled response
        item = self._item(event.item_id, self.response_id)
        if event.final:
            item.final_text = event.text
        else:
            item.text += event.text
            self.view.partial("assistant", item.text)

    def _user_said(self, text: str, start: float | None = None) -> None:
        self.user_text = ""
        if not text:
            self.view.partial("user", "")
            return
        self.history.append(("user", text))
        self.view.final("user", text)
        self._write("user", text, start=start or time.time())

    async def _on_turn_end(self, event: TurnEnd) -> None:
        rid = event.response_id
        for item in self.items.values():
            if item.response_id == rid or item.response_id is None:
                item.done = True
                item.usage = self.usage
                if event.status == "cancelled":
                    item.interrupted = True
        if rid == self.response_id:
            self.in_progress = False
        if event.status in ("failed", "incomplete") and event.reason:
            self.view.note(f"the response ended {event.status} ({event.reason})")
        if event.status == "completed" and self.calls:
            calls, self.calls = self.calls, []
            self._tool_task = asyncio.get_running_loop().create_task(self._run_tools(calls), name="tools")

    def _on_error(self, error: Error) -> None:
        if error.code in QUIET_ERRORS:
            log.debug("server: %s", error.message)
            return
        if error.code == "session_expired":
            self._expired = True  # the server closes the socket next; _pump_server reconnects
            return
        self.view.error(error.message + (f" ({error.code})" if error.code else ""))

    # -- barge-in and cancelling ----------------------------------------------------------------

    def _assistant_busy(self) -> bool:
        return self.in_progress or self.buffer.active

    async def barge_in(self) -> None:
        """Stop the assistant now: flush the speaker, cancel the response, truncate what was heard."""
        cut = self.buffer.flush()
        if self.in_progress and self.response_id and self.response_id not in self.cancelled:
            self.cancelled.add(self.response_id)
            await self.send(_response_cancel())
            for item in self.items.values():
                if item.response_id == self.response_id:
                    item.interrupted = True
        cut = cut or self.buffer.current_item  # ran dry mid-response: the last item played
        item = self.items.get(cut) if cut else None
        if item is None or item.truncated:
            return
        # what the device was handed, plus the faded tail it is about to get
        played = (self.buffer.played.get(cut, 0) + self.buffer.pending(cut)) * 1000 // 24000
        received = item.received // BYTES_PER_MS
        end_ms = min(played, received)  # never past what the server sent (pipecat #2106)
        if end_ms >= received and item.done:
            return  # it was heard to the end: nothing to cut
        item.interrupted, item.played_ms, item.truncated = True, end_ms, True
        from voicecli.wire.realtime import truncate

        await self.send(truncate(cut, end_ms))

    # -- microphone -----------------------------------------------------------------------------

    def _muted(self) -> bool:
        if not self.half_duplex:
            return False
        return self.buffer.active or time.monotonic() - self.buffer.last_sound < HANG_S

    async def _pump_mic(self) -> None:
        from voicecli.wire.realtime import append_audio

        async for pcm, captured in self.source.blocks():
            if self.stop.is_set():
                return
            if self.reconnecting or self.transport is None or self.approving:
                continue
            if self.ptt:
                if not self.recording:
                    continue
                self.recorded_ms += len(pcm) // BYTES_PER_MS
            elif self._muted():
                continue
            if await self.send(append_audio(pcm)):
                self.stats["sent_blocks"] += 1
                if len(self.stats["mic_to_send"]) < 100000:
                    self.stats["mic_to_send"].append(time.monotonic() - captured)

    # -- keyboard -------------------------------------------------------------------------------

    def on_key(self, key: str) -> None:
        """One key from a terminal (cbreak mode)."""
        if self._approval is not None and not self._approval.done():
            if key.lower() in ("y", "a", "n"):
                self._approval.set_result(key.lower())
            return
        typed = self.view.typed
        if key in ("\r", "\n"):
            if typed.strip():
                self.view.set_typed("")
                self._spawn(self.send_text(typed.strip()))
            elif self.ptt:
                self._spawn(self.toggle_recording())
        elif key == " " and not typed and self.ptt:
            self._spawn(self.toggle_recording())
        elif key in ("\x7f", "\x08"):
            self.view.set_typed(typed[:-1])
        elif key == "\x04":  # Ctrl-D
            if not typed:
                self.stop.set()
        elif key == "\x15":  # Ctrl-U
            self.view.set_typed("")
        elif key.isprintable():
            self.view.set_typed(typed + key)

    def on_line(self, line: str | None) -> None:
        """One line from a pipe: text to send; an empty line toggles recording in push-to-talk."""
        if line is None:
            return  # EOF on a pipe: keep talking (the microphone is still there)
        if self._approval is not None and not self._approval.done():
            self._approval.set_result(line.strip().lower()[:1] or "n")
            return
        if line.strip():
            self._spawn(self.send_text(line.strip()))
        elif self.ptt:
            self._spawn(self.toggle_recording())

    def _spawn(self, coro) -> None:
        """A short job started from a key or a signal; tracked so shutdown can cancel it."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.append(task)
        task.add_done_callback(self._spawned_done)

    def _spawned_done(self, task: asyncio.Task) -> None:
        if task in self._tasks:
            self._tasks.remove(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s", task.exception())

    async def send_text(self, text: str) -> None:
        from voicecli.wire.realtime import create_text_message, response_create

        if self._assistant_busy():
            await self.barge_in()
        self._user_said(text)
        self.turn = TurnClock(end=time.monotonic())
        await self.send(create_text_message(text))
        await self.send(response_create())

    async def toggle_recording(self) -> None:
        from voicecli.wire.realtime import clear, commit, response_create

        if not self.recording:
            if self._assistant_busy():
                await self.barge_in()
            await self.send(clear())
            self.recording, self.recorded_ms = True, 0
            return
        self.recording = False
        if self.recorded_ms < 120:  # the server refuses to commit under 100 ms
            await self.send(clear())
            self.view.note("too short — nothing sent")
            return
        self.turn = TurnClock(end=time.monotonic())
        await self.send(commit())
        await self.send(response_create())

    def on_sigint(self) -> None:
        """First Ctrl-C cancels what is going on; a second one (or one when idle) quits."""
        if self.stop.is_set():
            return  # already on the way out
        busy = self._assistant_busy() or self.recording or self.user_speaking
        if busy and not self.cancel_armed:
            self.cancel_armed = True
            self._spawn(self._cancel_all())
            self.view.note("interrupted — Ctrl-C again to quit")
        else:
            self.stop.set()

    async def _cancel_all(self) -> None:
        from voicecli.wire.realtime import clear

        if self._assistant_busy():
            await self.barge_in()
        if self.recording:
            self.recording = False
            await self.send(clear())

    # -- tools ----------------------------------------------------------------------------------

    async def approve(self, tool, call):
        """Keyboard approver: the conversation pauses until y (yes), a (always) or n (no)."""
        from voicecli.tools import Approval

        self.approving = True
        self._approval = asyncio.get_running_loop().create_future()
        self.view.ask(f"run tool {call.name}({call.arguments})? [y]es / [a]lways / [n]o")
        try:
            answer = await self._approval
        finally:
            self._approval = None
            self.approving = False
        if answer == "a":
            return Approval(True, always=True)
        return Approval(answer == "y", None if answer == "y" else "denied by the user")

    async def _run_tools(self, calls: list[ToolCall]) -> None:
        from voicecli.wire.realtime import function_call_output, response_create

        for call in calls:
            self.view.note(f"tool call: {call.name}({call.arguments})")
        outputs = await self.toolbox.run(calls) if self.toolbox else []
        for out in outputs:
            await self.send(function_call_output(out.call_id, out.output))
            self._write("tool", out.output, start=time.time(), meta={"call_id": out.call_id, "name": out.name})
        if outputs:
            self.turn = TurnClock(end=time.monotonic())
            await self.send(response_create())

    # -- periodic work --------------------------------------------------------------------------

    async def _tick(self) -> None:
        while not self.stop.is_set():
            await asyncio.sleep(0.05)
            self._drain_tap()
            self._finalise()
            self._report_latency()
            self.view.set_state(self._state())
            self._check_rollover()
            self._check_input_done()

    def _drain_tap(self) -> None:
        if self.recorder is not None and self.buffer is not None:
            from voicecli.audio.speaker import drain_tap

            drain_tap(self.buffer, self.recorder.write)

    def _state(self) -> str:
        if self.reconnecting:
            return "reconnecting"
        if self.approving:
            return "approval"
        if self.buffer.active:
            return "speaking"
        if self.recording:
            return "recording"
        if self.user_speaking:
            return "user"
        if self.in_progress:
            return "thinking"
        if self.ptt:
            return "idle"
        return "muted" if self._muted() else "listening"

    def _finalise(self, force: bool = False) -> None:
        """Write each assistant item once its response is over and its audio played (or was cut)."""
        while self.order:
            item = self.items[self.order[0]]
            if not force and not (item.done and (item.interrupted or self.buffer.pending(item.item_id) == 0)):
                return
            self.order.pop(0)
            text = item.final_text if item.final_text is not None else item.text
            if item.interrupted or (force and self.buffer.pending(item.item_id)):
                item.interrupted = True
                text = _heard(text, item.played_ms if item.played_ms is not None else self.buffer.played_ms(item.item_id),
                              item.received // BYTES_PER_MS)
            text = text.strip()
            if not text and not item.interrupted:
                continue
            self.view.final("assistant", text, interrupted=item.interrupted)
            if text:
                self.history.append(("assistant", text))
            self._write("assistant", text, start=item.start, interrupted=item.interrupted, usage=item.usage,
                        meta={"played_ms": item.played_ms} if item.interrupted else {})

    def _write(self, role: str, text: str, *, start: float, interrupted: bool = False,
               usage: Usage | None = None, meta: dict | None = None) -> None:
        if self.transcript is not None:
            from voicecli.transcript import Entry

            self.transcript.write(Entry(role, text, start, time.time(), interrupted, usage, meta or {}))

    def _report_latency(self) -> None:
        t = self.turn
        if t.reported or t.end is None or t.item is None:
            return
        played = self.buffer.first_played.get(t.item)
        if played is None:
            return
        t.reported = True
        self.view.latency((t.first_audio - t.end) * 1000, (played - t.end) * 1000)

    def _idle(self) -> bool:
        return not (self._assistant_busy() or self.user_speaking or self.recording or self.approving
                    or self.reconnecting or (self._tool_task is not None and not self._tool_task.done())
                    or self.order)

    def _check_rollover(self) -> None:
        age = time.monotonic() - self.session_started
        if age < self.voice.session_max_age or self.reconnecting or not self._idle() or self.transport is None:
            return
        self.view.note("renewing the session before the server's time limit")
        self._planned_rollover = True
        self.reconnecting = True
        self._spawn(self.transport.aclose())  # the server pump sees the close and reconnects

    def _check_input_done(self) -> None:
        done = getattr(self.source, "done", None)
        if done is None or not done.is_set():
            return
        if not self._idle():
            self.quiet_since = None
            return
        now = time.monotonic()
        if self.quiet_since is None:
            self.quiet_since = now
        elif now - self.quiet_since >= IDLE_EXIT_S:
            self.stop.set()


def _response_cancel() -> dict:
    from voicecli.wire.realtime import response_cancel

    return response_cancel()


def _heard(text: str, played_ms: int, received_ms: int) -> str:
    """The part of an interrupted answer that was heard: its share of the text, cut at a word."""
    if received_ms <= 0 or played_ms >= received_ms:
        return text
    keep = int(len(text) * played_ms / received_ms)
    head = text[:keep]
    return head.rsplit(" ", 1)[0] if " " in head and keep < len(text) else head


class KeyInput:
    """Keys from a terminal (cbreak: Ctrl-C still raises SIGINT) or lines from a pipe."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_key, on_line):
        self.loop, self.on_key, self.on_line = loop, on_key, on_line
        self.fd: int | None = None
        self._saved = None
        self._pending = ""
        self._reading = False

    def start(self) -> None:
        try:
            fd = sys.stdin.fileno()
        except (AttributeError, ValueError, OSError):
            return
        self.fd = fd
        if os.isatty(fd):
            import termios
            import tty

            try:
                self._saved = termios.tcgetattr(fd)
                tty.setcbreak(fd)
            except termios.error:
                self._saved = None
        try:
            self.loop.add_reader(fd, self._readable)
            self._reading = True
        except (PermissionError, OSError, ValueError):  # a regular file: read it whole
            for line in sys.stdin.read().splitlines():
                self.loop.call_soon(self.on_line, line)

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, 1024)
        except OSError:
            data = b""
        if not data:
            self._stop_reading()
            if self._saved is None:
                if self._pending:
                    self.on_line(self._pending)
                self.on_line(None)
            return
        text = data.decode("utf-8", "replace")
        if self._saved is not None:
            if text.startswith("\x1b"):
                return  # arrows and other escape sequences: not used
            for ch in text:
                self.on_key(ch)
            return
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self.on_line(line)

    def _stop_reading(self) -> None:
        if self._reading and self.fd is not None:
            self.loop.remove_reader(self.fd)
            self._reading = False

    def close(self) -> None:
        self._stop_reading()
        if self._saved is not None and self.fd is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            self._saved = None
