"""`voicecli talk`: a live voice conversation over the Realtime API or a cascade, with barge-in.

    mic / --input WAV ──append──► RealtimeSession | CascadeSession ──neutral events──► Talk.on_event
                                                                      ├► Turns → PlaybackBuffer → speaker / --output WAV
                                                                      └► TalkView, transcript file, conversation log

This front end only wires devices, pumps and keys to the voice session and shows what happens:
the session (`voice/session.py` Realtime, `voice/cascade.py` speech-to-text → text model →
text-to-speech) owns connections, turn-taking, replay, tool rounds; `voice/turns.py` what is playing
and was heard; `voice/audio_io.py` devices and files; `voice/interrupt.py` the local VAD's barge-in
with echo cancellation; `ui/` keys and screen. Barge-in: see `Turns.barge_in`.
"""

from __future__ import annotations

import asyncio
import functools
import signal
import sys
import time

from voicecli.errors import VoicecliError
from voicecli.events import (Disconnected, Error, ResponseStarted, SpeechStarted, SpeechStopped, ToolCall, ToolResult,
                             Transcript, TurnEnd, Usage)
from voicecli.profiles import Profile
from voicecli.sanitize import escape_controls
from voicecli.signals import on_leave_signals, on_signal
from voicecli.transcript import open_transcript
from voicecli.ui.status import session_failure
from voicecli.voice import session_class
from voicecli.voice.jobs import Jobs
from voicecli.voice.options import VAD_MODES, TalkOptions, ctrl_c_rule
from voicecli.voice.record import TalkRecord
from voicecli.voice.session import SessionError

BYTES_PER_MS = 48
IDLE_EXIT_S = 1.0  # --input: quiet time after the file ends before talk exits
DOUBLE_PRESS_S = 2.0  # even if a new answer started in between (its own echo, say)


def run_talk(profile: Profile, opts: TalkOptions) -> int:
    from voicecli import convlog
    from voicecli.conversation import Conversation
    from voicecli.ui.status import setup_logging

    setup_logging(opts.debug)
    if opts.vad:
        profile.voice.turn_detection = VAD_MODES[opts.vad]
    if opts.voice:
        profile.voice.voice = opts.voice
    # the same log as chat and infer: `infer -c` continues a voice conversation, `talk -c` a text one
    log_, history = convlog.open_for(opts.continue_, opts.cid, opts.no_log, profile=profile.name,
                                     model=_model(profile, opts), transport=_transport(profile, opts))
    try:
        return asyncio.run(Talk(profile, opts, Conversation(profile, None, history=history, log=log_)).run())
    finally:
        if log_ is not None:
            log_.close()


def _model(profile: Profile, opts: TalkOptions) -> str:
    return profile.model.name if opts.engine == "cascade" else profile.voice.model


def _transport(profile: Profile, opts: TalkOptions) -> str:
    return profile.connection.transport if opts.engine == "cascade" else "realtime"


class Talk:
    def __init__(self, profile: Profile, opts: TalkOptions, conversation):
        self.profile, self.opts, self.voice = profile, opts, profile.voice
        self.conversation = conversation  # voice turns are appended here (and to its log)
        self.ptt = self.voice.turn_detection == "none"
        self.user_speaking = self.recording = self.cancel_armed = False
        self.user_text, self.quiet_since = "", None
        self.recorded_ms, self.last_sigint = 0, 0.0  # last_sigint: a second Ctrl-C soon after always quits
        self.stop = asyncio.Event()
        self.stats = {"mic_to_send": [], "sent_blocks": 0}  # for bench/talk.py
        self.session = self.turns = self.audio = self.buffer = self.transcript = self.view = self.interrupts = None
        self.keys = self.key_input = self.toolbox = self.timeline = None  # timeline: voice.turns.AudioTimeline
        self.jobs = Jobs(on_error=self._fail)  # pumps, and short jobs started from keys and signals
        self.fatal: VoicecliError | None = None  # why talk has to end (a reconnect failed, no device left)
        self.record = None  # utterances on screen, in the conversation and transcript; the closing line
        self.input_ended = False
        self.signal: int | None = None  # SIGTERM / SIGHUP that ended talk

    # -- setup and teardown -------------------------------------------------------------------

    async def run(self) -> int:
        from voicecli.ui.keys import KeyInput, TalkKeys
        from voicecli.ui.talk_view import TalkView
        from voicecli.voice.audio_io import AudioIO
        from voicecli.voice.interrupt import local_interrupts
        from voicecli.voice.turns import AudioTimeline, Turns

        o = self.opts
        self.audio = AudioIO(self.voice, input_device=o.input_device, output_device=o.output_device,
                             input_wav=o.input_wav, output_wav=o.output_wav, half_duplex=o.half_duplex,
                             echo_cancellation=o.aec, no_mic=o.no_mic)
        self.buffer = self.audio.buffer
        self.turns, self.timeline = Turns(self.buffer), AudioTimeline()
        if o.transcript is not None:
            self.transcript = open_transcript(o.transcript)
            self.transcript.session(command="talk", model=_model(self.profile, o))
        keys = (["Space/Enter: record/send"] if self.ptt else []) + [
            "type + Enter: send text", ctrl_c_rule(o.leave), f"Ctrl-D: {o.leave}"]
        self.view = TalkView(footer=" · ".join(keys), level=lambda: self.audio.level,
                             data_out=sys.stdout if not sys.stdout.isatty() else None)
        self.record = TalkRecord(self.profile, model=_model(self.profile, o), cascade=o.engine == "cascade",
                                 view=self.view, transcript=self.transcript)
        self.keys = TalkKeys(self.view, ptt=self.ptt, send=lambda t: self.jobs.spawn(self.send_text(t)),
                             toggle=lambda: self.jobs.spawn(self.toggle_recording()), quit=self.stop.set,
                             ended=self.audio.typing_ended)
        loop, unhook = asyncio.get_running_loop(), lambda: None  # unhook: SIGINT back to the default
        unhook_leave = on_leave_signals(self.on_leave)  # before MCP servers start: they stop with talk
        try:
            await self._start_session()
            self.audio.open()
            self.interrupts = local_interrupts(o.engine, self.voice, self.audio, self.session, self.barge_in,
                                               self._held_turn_ended)
            self.view.start()
            self.key_input = KeyInput(loop, self.keys.key, self.keys.line)
            self.key_input.start()
            unhook = on_signal(signal.SIGINT, self.on_sigint)
            self.view.note(f"talk: {self.session.describe()} · {self.audio.mode}")
            for job, name in ((self._pump_mic(), "mic"), (self._pump_server(), "server"), (self._tick(), "tick")):
                self.jobs.spawn(job, name)
            await self.stop.wait()
            if self.fatal is not None:
                raise self.fatal
            return 128 + self.signal if self.signal else 0
        finally:
            await self._shutdown()  # Ctrl-C during this is ignored (on_sigint): the exit stays clean
            unhook()
            unhook_leave()

    async def _start_session(self) -> None:
        runner = None
        if any(t.type == "function" for t in self.profile.tools) or self.profile.mcp:
            from voicecli.tools import ToolBox
            from voicecli.ui import approval

            # the prompt shared with chat, answered by one key; the mic pauses while it is open
            approve = functools.partial(approval.approve, say=self.view.note, ask=self.keys.ask, reason=False,
                                        single_key=sys.stdin.isatty())  # else lines from a pipe
            self.toolbox = ToolBox.for_profile(self.profile, approve, debug=self.opts.debug)
            await self.toolbox.start(require=self.opts.require_mcp)  # MCP tools join the session.update
            runner = self.toolbox.run
        self.session = session_class(self.opts.engine)(self.profile, self.conversation, tool_runner=runner,
                                                       unheard=self.turns.unfinished)
        self.record.session = self.session
        try:
            await self.session.start()
        except SessionError as exc:
            raise session_failure(exc, self.session.base_url, self.profile) from None

    async def _shutdown(self) -> None:
        self.stop.set()
        await self.jobs.cancel()
        if self.key_input is not None:
            self.key_input.close()
        await self.audio.aclose()
        self.interrupts = None  # its local VAD's native soxr resampler goes now (see `voicecli.cli.main`)
        if self.session is not None:
            await self.session.aclose()
            self.record.finalise(self.turns, force=True)
        self.audio.close_recording()
        if self.transcript is not None:
            self.transcript.close()
        if self.toolbox is not None:
            await self.toolbox.aclose()  # MCP servers stop with talk
        self.view.stop()
        closing = self.record.closing_line() if self.record is not None else None
        if closing:
            print(f"voicecli: talk: {closing}", file=sys.stderr)

    # -- the session's events -------------------------------------------------------------------

    async def _pump_server(self) -> None:
        try:
            async for event in self.session.events():
                await self.on_event(event)
        except SessionError as exc:
            raise session_failure(exc, self.session.base_url, self.profile) from None

    def _fail(self, exc: VoicecliError) -> None:
        self.fatal = self.fatal or exc
        self.stop.set()

    async def on_event(self, event) -> None:
        self.quiet_since = None
        partial = self.turns.feed(event)
        if partial is not None:
            self.view.partial("assistant", partial)
        if isinstance(event, Transcript) and event.role == "user":
            if event.final:
                self.user_text = ""
                self.record.said("user", event.text.strip())
            else:
                self.user_text += event.text
                self.view.partial("user", self.user_text)
        elif isinstance(event, SpeechStarted):
            self.user_speaking, self.user_text = True, ""
            await self.interrupts.server_started(self.turns.busy)
        elif isinstance(event, SpeechStopped):
            self.user_speaking = False
            await self.interrupts.server_stopped()
            speech_end = getattr(self.session, "speech_end_ms", lambda ms: ms)(event.audio_end_ms)
            self.turns.speech_stopped(self.timeline, speech_end, event.audio_end_ms, self.audio.latencies.get("in", 0.0))
        elif isinstance(event, ToolCall):
            self.view.note(escape_controls(f"tool call: {event.name}({event.arguments})"))
        elif isinstance(event, ToolResult):
            self.turns.start_clock(since="tool result")  # the follow-up answer is a new turn for the latency line
            self.record.write("tool", event.output, start=time.time(), meta={"call_id": event.call_id, "name": event.name})
        elif isinstance(event, ResponseStarted):
            self.cancel_armed = False
        elif isinstance(event, Usage):
            self.record.count(event)
        elif isinstance(event, TurnEnd):
            if event.status in ("failed", "incomplete") and event.reason:
                self.view.note(f"the response ended {event.status} ({event.reason})")
        elif isinstance(event, Disconnected):
            self.turns.lost()
            self.timeline.reset()  # the next session's audio positions count from 0
            self.interrupts.reset()
            self.user_speaking = False
            if not event.planned:
                self.view.note(f"{event.reason}; starting a new session with the conversation so far")
        elif isinstance(event, Error):
            self.view.error(event.message + (f" ({event.code})" if event.code else ""))

    async def barge_in(self) -> None:
        """Stop the assistant, if it is talking: flush the speaker, cancel, truncate to what was heard."""
        if not self.turns.busy:
            return
        cut = self.turns.barge_in()
        if cut.cancel:
            await self.session.cancel()
        if cut.truncate is not None:
            await self.session.truncate(*cut.truncate)
        self.record.finalise(self.turns)  # the history says what was heard before the next turn is sent

    def _held_turn_ended(self, end_ms: int, decided_ms: int) -> None:  # committed by the local VAD
        self.user_speaking = False
        self.turns.speech_stopped(self.timeline, end_ms, decided_ms, self.audio.latencies.get("in", 0.0))

    async def _pump_mic(self) -> None:
        async for pcm, captured in self.audio.source.blocks():
            if self.stop.is_set():
                return
            if self.session.reconnecting or self.keys.asking:
                continue
            if self.ptt:
                if not self.recording:
                    continue
                self.recorded_ms += len(pcm) // BYTES_PER_MS
            elif self.audio.muted():
                continue
            if await self.session.append_audio(pcm):
                self.timeline.sent(len(pcm), captured)
                await self.interrupts.audio(pcm, self.turns)
                self.stats["sent_blocks"] += 1
                if len(self.stats["mic_to_send"]) < 100000:
                    self.stats["mic_to_send"].append(time.monotonic() - captured)

    async def send_text(self, text: str) -> None:
        await self.barge_in()
        self.user_text = ""
        self.record.said("user", text)
        self.turns.start_clock(since="line sent")
        await self.session.say(text)

    async def toggle_recording(self) -> None:
        if not self.recording:
            await self.barge_in()
            await self.session.clear()
            self.recording, self.recorded_ms = True, 0
            return
        self.recording = False
        if self.recorded_ms < 120:  # the server refuses to commit under 100 ms
            await self.session.clear()
            self.view.note("too short — nothing sent")
            return
        self.turns.start_clock(since="recording sent")
        await self.session.commit()

    def on_sigint(self) -> None:
        """Ctrl-C cancels what is going on (`ctrl_c_rule`); if nothing is, or again within DOUBLE_PRESS_S, quits."""
        if self.stop.is_set():
            return  # already on the way out
        again, self.last_sigint = time.monotonic() - self.last_sigint < DOUBLE_PRESS_S, time.monotonic()
        if (self.turns.busy or self.recording or self.user_speaking) and not (self.cancel_armed or again):
            self.cancel_armed = True
            self.jobs.spawn(self._cancel_all())
            self.view.note(f"interrupted — Ctrl-C again to {self.opts.leave}")
        else:
            self.stop.set()

    def on_leave(self, sig: int) -> None:
        """SIGTERM / SIGHUP (a `kill`, the terminal closing): quit as a second Ctrl-C does (the answer
        kept as far as heard, files closed, devices released) with exit 128 + the signal (143, 129)."""
        self.signal = sig
        self.stop.set()

    async def _cancel_all(self) -> None:
        await self.barge_in()
        if self.recording:
            self.recording = False
            await self.session.clear()

    async def _tick(self) -> None:
        while not self.stop.is_set():
            await asyncio.sleep(0.05)
            self.audio.drain()
            await self.interrupts.tick()
            self.record.finalise(self.turns)
            latency = self.turns.latency()
            if latency is not None:
                self.view.latency(*latency)
            self.view.set_state(self._state())
            if self.session.due_for_renewal() and self._idle():
                self.view.note("renewing the session before the server's time limit")
                self.session.renew()
            self._check_input_done()
            for device in self.audio.lost_devices():  # unplugged: the default one, or exit 3
                self.jobs.spawn(self.audio.replace(device, self.view.note))

    def _state(self) -> str:
        for state, on in (("reconnecting", self.session.reconnecting), ("approval", self.keys.asking),
                          ("speaking", self.buffer.active), ("recording", self.recording),
                          ("user", self.user_speaking), ("thinking", self.turns.in_progress or self.session.busy)):
            if on:
                return state
        return "idle" if self.ptt else "muted" if self.audio.muted() else "listening"

    def _idle(self) -> bool:
        return not (self.turns.busy or self.user_speaking or self.recording or self.keys.asking
                    or self.session.reconnecting or self.session.busy or self.turns.order)

    def _check_input_done(self) -> None:
        """--input: exit once the file was sent and everything has been quiet for a moment."""
        if self.audio.input_done and not self.input_ended:
            self.input_ended = True  # an utterance still open ends with the file
            self.jobs.spawn(self.session.input_ended())
        if not self.audio.input_done or not self._idle():
            self.quiet_since = None
        elif self.quiet_since is None:
            self.quiet_since = time.monotonic()
        elif time.monotonic() - self.quiet_since >= IDLE_EXIT_S:
            self.stop.set()
