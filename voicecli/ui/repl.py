"""`voicecli chat`: the interactive text REPL.

Input comes from prompt_toolkit on a terminal (history file, completion, multi-line, Ctrl-C that
clears or quits) and from plain lines otherwise (`voicecli chat < questions.txt`). Each message is
one `Conversation.send` turn run in its own task, so Ctrl-C (SIGINT: while the answer streams the
terminal is out of prompt_toolkit's raw mode, and `hold_keys` keeps other keys for the next
prompt) cancels just that turn; the conversation keeps the partial answer marked as interrupted.
SIGTERM and SIGHUP do the same, then leave (exit 143 / 129). Answers go to stdout (markdown on a
TTY); everything else — footers, notices, errors, reasoning — goes to stderr.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path

from voicecli import convlog, paths, profiles
from voicecli.errors import VoicecliError
from voicecli.events import Event, HostedToolProgress, ReasoningDelta, TextDelta, ToolCall, ToolResult, Usage
from voicecli.profiles import Profile
from voicecli.sanitize import escape_controls, for_terminal
from voicecli.transcript import Entry, markdown_entry, open_transcript
from voicecli.ui.term import dim, make_renderer, wants_markdown
from voicecli.ui.spinner import Spinner
from voicecli.ui.status import describe_error, error_hint, setup_logging, usage_line
from voicecli.ui.typeahead import hold_keys, let_go
from voicecli.items import FunctionCall, FunctionOutput, HistoryItem, Message

PROMPT = "> "
HISTORY_FILE = "chat_history"
RECENT_EXCHANGES = 2  # shown when resuming with -c / --cid
TRANSPORTS = ("ws", "sse", "chat")
CLIPBOARD_TOOLS = (  # (program, arguments, environment variable it needs)
    ("pbcopy", [], None),
    ("wl-copy", [], "WAYLAND_DISPLAY"),
    ("xclip", ["-selection", "clipboard"], "DISPLAY"),
    ("xsel", ["--clipboard", "--input"], "DISPLAY"),
)

COMMANDS = {  # name → (arguments, help); /help prints this table and the completer offers it
    "help": ("", "this list"),
    "exit": ("", "leave (also Ctrl-D, or Ctrl-C twice at an empty prompt)"),
    "clear": ("", "start a new conversation"),
    "system": ("[TEXT]", "show or set the system instructions"),
    "model": ("[NAME]", "show or switch the model"),
    "transport": ("[ws|sse|chat]", "show or switch the transport"),
    "profile": ("NAME", "switch to another profile (the conversation is kept)"),
    "set": ("KEY VALUE", "change a setting, e.g. /set temperature 0.2 (unset: /set KEY none)"),
    "tools": ("", "the profile's tools and whether each asks before running"),
    "schema": ("[JSON|FILE|FIELDS|off]", "answer as JSON matching a schema, e.g. /schema name, age int (off: text)"),
    "usage": ("", "tokens per turn and in total"),
    "history": ("", "the conversation so far"),
    "retry": ("", "ask again for the last answer (or re-send a message that failed)"),
    "save": ("PATH", "write the conversation to PATH (.md or .json)"),
    "copy": ("", "copy the last answer to the clipboard"),
    "edit": ("[TEXT]", "write the next message in $EDITOR"),
    "file": ("[PATH|URL]", "attach a file, image or web page to your next message (alone: list them)"),
    "talk": ("", "continue by voice (devices: /set voice.input_device, voice.output_device); Ctrl-D (or Ctrl-C "
             "when idle) returns"),
}
ALIASES = {"quit": "exit", "q": "exit", "?": "help", "new": "clear"}


@dataclass
class ChatOptions:
    continue_: bool = False
    cid: str | None = None
    transcript: Path | None = None
    vi: bool = False
    raw: bool = False
    debug: bool = False
    require_mcp: bool = False


@dataclass
class TurnRecord:
    """One turn for /usage: the model and transport it ran on and what it cost."""

    model: str
    transport: str
    usage: Usage
    ttft_ms: float | None
    total_ms: float
    status: str
    cost_usd: float | None = None  # None: unknown price


def run_chat(profile: Profile, opts: ChatOptions) -> int:
    setup_logging(opts.debug)
    history: list[HistoryItem] = []
    log = None
    if opts.continue_ or opts.cid:
        log, history = convlog.open_existing(opts.cid)
    repl = Repl(profile, opts, history, log)
    return asyncio.run(repl.run())


# ---- input ---------------------------------------------------------------------------------------


class LineInput:
    """Plain lines from a pipe or file: one message (or command) per line."""

    async def read(self, default: str = "") -> str | None:
        from voicecli.tools import in_daemon_thread

        # a daemon thread, not the loop's executor: leaving on a signal must not wait for a line
        line = await in_daemon_thread(sys.stdin.readline)
        return line.rstrip("\n") if line else None

    async def ask(self, question: str) -> str | None:
        sys.stderr.write(question)
        sys.stderr.flush()
        return await self.read()


class PromptInput:
    """prompt_toolkit on a terminal: Enter sends, Alt-Enter or Ctrl-J adds a line, pastes keep theirs."""

    def __init__(self, completer, *, vi: bool):
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory

        history = paths.data_dir() / HISTORY_FILE
        paths.open_private(history, "a").close()  # FileHistory appends to it: create it private first
        with _terminal_output():
            self.session = PromptSession(history=FileHistory(str(history)), multiline=True, vi_mode=vi,
                                         key_bindings=_key_bindings(), completer=completer,
                                         complete_while_typing=True, enable_open_in_editor=True,
                                         prompt_continuation=lambda width, line, wrap: "." * (width - 1) + " ")
        self._vi = vi

    async def read(self, default: str = "") -> str | None:
        try:
            # handle_sigint=False: SIGINT belongs to the REPL (it cancels a streaming answer)
            return await self.session.prompt_async(PROMPT, default=default, handle_sigint=False)
        except EOFError:
            return None

    async def ask(self, question: str) -> str | None:
        """A one-line answer that stays out of the message history; Ctrl-C / Ctrl-D give None."""
        from prompt_toolkit import PromptSession

        with _terminal_output():
            session = PromptSession(vi_mode=self._vi)
        try:
            return await session.prompt_async(question, handle_sigint=False)
        except (EOFError, KeyboardInterrupt):
            return None


def _terminal_output():
    """The context to make prompt sessions in. On TERM=dumb (Emacs' shell buffer and the like),
    prompt_toolkit keeps its plain dumb-terminal prompt only with its default output, which still
    writes cursor resets (ESC[?12l ESC[?25h) to stdout: the default output is swapped for one
    that writes text only."""
    if os.environ.get("TERM") != "dumb":
        return contextlib.nullcontext()
    from prompt_toolkit.application.current import create_app_session
    from prompt_toolkit.output.vt100 import Vt100_Output

    class TextOnly(Vt100_Output):
        def write_raw(self, data: str) -> None:  # every escape sequence goes through here
            pass

    return create_app_session(output=TextOnly.from_pty(sys.stdout, term="dumb"))


def _key_bindings():
    from prompt_toolkit.key_binding import KeyBindings

    kb = KeyBindings()

    @kb.add("enter")
    def _send(event) -> None:
        event.current_buffer.validate_and_handle()  # a highlighted completion is already in the text

    @kb.add("escape", "enter")
    @kb.add("c-j")
    def _newline(event) -> None:
        event.current_buffer.insert_text("\n")

    @kb.add("c-c")
    def _interrupt(event) -> None:
        if event.current_buffer.text:
            event.current_buffer.reset()  # Ctrl-C on a half-typed message clears it
        else:
            event.app.exit(exception=KeyboardInterrupt())

    return kb


def _make_completer(repl: "Repl"):
    from prompt_toolkit.completion import Completer, Completion

    class SlashCompleter(Completer):
        """Slash commands, then their arguments: models, profiles, transports, setting keys."""

        def get_completions(self, document, complete_event):
            text = document.text_before_cursor
            if not text.startswith("/") or "\n" in text:
                return
            name, space, arg = text[1:].partition(" ")
            if not space:
                for cmd, (args, help_) in COMMANDS.items():
                    if cmd.startswith(name):
                        yield Completion(cmd, start_position=-len(name), display_meta=help_)
                return
            for choice in repl.argument_choices(ALIASES.get(name, name)):
                if choice.startswith(arg) and choice != arg:
                    yield Completion(choice, start_position=-len(arg))

    return SlashCompleter()


# ---- the REPL ------------------------------------------------------------------------------------


class Repl:
    def __init__(self, profile: Profile, opts: ChatOptions, history: list[HistoryItem], log):
        self.profile = profile
        self.opts = opts
        self.log = log  # created at the first message, so an empty session leaves no conversation file
        self.resumed = bool(history)
        self.markdown = profile.ui.markdown and wants_markdown(sys.stdout, raw=opts.raw)
        self.renderer = make_renderer(sys.stdout, markdown=self.markdown)
        self.transcript = open_transcript(opts.transcript) if opts.transcript else None
        self.turns: list[TurnRecord] = []
        self.toolbox = None
        self.conversation = None
        self._initial_history = history
        self._turn_task: asyncio.Task | None = None
        self._main_task: asyncio.Task | None = None
        self.signal: int | None = None  # SIGTERM / SIGHUP: finish like Ctrl-C, then leave
        self._next_default = ""  # text /edit leaves in the next prompt
        self._choices: dict[str, list[str]] = {}
        self.text_format: dict | None = None  # /schema: structured output for the next answers
        self.input = None
        self._reasoning = None  # the WordWrap of a reasoning summary being shown
        self._attachments: list[tuple[str, str | None, str | None]] = []  # /file: (label, text, image URL)

    # -- lifecycle ---------------------------------------------------------------------------------

    async def run(self) -> int:
        from voicecli.conversation import Conversation
        from voicecli.signals import on_leave_signals
        from voicecli.tools import check_transport
        from voicecli.transport import open_transport

        check_transport(self.profile.tools, self.profile.connection.transport)  # hosted tools need Responses
        transport = open_transport(self.profile)  # the ws transport connects at the first turn
        self.conversation = Conversation(self.profile, transport, history=self._initial_history, log=self.log,
                                         tool_runner=self._tool_runner())
        interactive = sys.stdin.isatty()
        self.input = PromptInput(_make_completer(self), vi=self.opts.vi or self.profile.ui.vi_mode) \
            if interactive else LineInput()
        loop = asyncio.get_running_loop()
        self._main_task = asyncio.current_task()
        remove_handlers = on_leave_signals(self._on_leave)  # before MCP servers start: they stop on the way out
        if self.transcript is not None:
            self.transcript.session(profile=self.profile.name, model=self.profile.model.name)
        try:
            with hold_keys():  # from here on no key typed outside a prompt is echoed or line-edited
                await self._start_mcp()  # Ctrl-C meanwhile is a KeyboardInterrupt: the finally stops them
                loop.add_signal_handler(signal.SIGINT, self._on_sigint)
                if interactive:
                    self._note(f"voicecli chat · {self.profile.model.name} over {transport.name} · "
                               "/help for commands · Ctrl-D to exit")
                if self.resumed:
                    self._show_recent()
                await self._loop()
        except asyncio.CancelledError:  # a signal while waiting for input
            if self.signal is None:
                raise
            self._main_task.uncancel()
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            remove_handlers()
            await self._close()
        return 128 + self.signal if self.signal else 0

    async def _loop(self) -> None:
        armed = False  # Ctrl-C pressed once at an empty prompt
        while self.signal is None:
            default, self._next_default = self._next_default, ""
            try:
                line = await self.input.read(default)
            except KeyboardInterrupt:
                if armed:
                    return
                armed = True
                self._note("(Ctrl-C again or Ctrl-D to exit)")
                continue
            armed = False
            if line is None:
                return
            if not line.strip():
                continue
            if line.startswith("/") and not line.startswith("//"):
                if await self.command(line) == "exit":
                    return
                continue
            await self.turn(self._attach(line[1:] if line.startswith("//") else line))

    async def _close(self) -> None:
        from voicecli.transport import close_clients

        if self.toolbox is not None:
            await self.toolbox.aclose()  # MCP servers stop here: none outlives the chat
        await self.conversation.transport.aclose()
        await close_clients()
        if self.log is not None:
            self.log.close()
        if self.transcript is not None:
            self.transcript.close()

    def _on_sigint(self) -> None:
        if self._turn_task is not None and not self._turn_task.done():
            self._turn_task.cancel()

    def _on_leave(self, sig: int) -> None:
        """SIGTERM / SIGHUP: a turn in progress ends as with Ctrl-C (and the loop then stops);
        otherwise stop waiting for input."""
        self.signal = sig
        if self._turn_task is not None and not self._turn_task.done():
            self._turn_task.cancel()
        else:
            self._main_task.cancel()

    # -- output helpers ------------------------------------------------------------------------------

    @staticmethod
    def _note(text: str) -> None:
        dim(text + "\n")

    @staticmethod
    def _say(text: str) -> None:
        # errors, tool descriptions, approval prompts, /history: server or model text, shown never obeyed
        print(for_terminal(text, sys.stderr), file=sys.stderr, flush=True)

    @staticmethod
    def _columns() -> int | None:
        """The width to wrap /help and /tools to: the terminal's (a file or pipe gets whole lines)."""
        from voicecli.ui.size import terminal_columns

        return terminal_columns(sys.stderr) if sys.stderr.isatty() else None

    # -- one turn ----------------------------------------------------------------------------------

    async def turn(self, message: Message) -> None:
        if self.log is None:
            self._start_log(self.conversation.history)
            self.conversation.log = self.log
        self._record(Entry("user", message.text))
        self.conversation.text_format = self.text_format  # also after /clear and /retry rebuilt it
        self._turn_task = asyncio.create_task(self._stream(message))
        await asyncio.wait([self._turn_task])  # keys typed meanwhile wait (hold_keys), unseen, for the next prompt  # wait() does not raise if the turn was cancelled
        task, self._turn_task = self._turn_task, None
        result = self.conversation.last
        if task.cancelled():
            came = result is not None and bool(result.text or result.reasoning or result.tool_calls)
            self._note("[interrupted — the partial answer is kept]" if came else "[interrupted — nothing had arrived]")
        elif task.exception() is not None:
            exc = task.exception()
            if self.opts.debug:
                import traceback

                traceback.print_exception(exc)
            message_ = exc.message if isinstance(exc, VoicecliError) else f"{type(exc).__name__}: {exc}"
            self._say(f"voicecli: {message_} — /retry sends the message again")
        if result is None:
            return
        self._finish_turn(result)

    async def _stream(self, message: Message) -> None:
        fence = self.text_format is not None and self.markdown  # JSON answers: highlighted, not read as markdown
        spinner = Spinner()  # until the first token (and each tool follow-up's); erased before any output
        try:
            if fence:
                self.renderer.text("```json\n")  # the opening fence prints nothing
            spinner.start()
            async with aclosing(self.conversation.send(message)) as events:
                async for event in events:
                    spinner.stop()
                    self._show(event)
                    if isinstance(event, (ToolResult, HostedToolProgress)):  # waiting again
                        spinner.start()
        finally:
            spinner.stop()
            self._end_reasoning()
            if fence:
                self.renderer.text("\n```\n")
            self.renderer.finish()  # also on Ctrl-C: the partial answer stays on the screen

    def _show(self, event: Event) -> None:
        if isinstance(event, ReasoningDelta):
            if self._reasoning is None:  # on a terminal: wrapped between words, not cut at the edge
                from voicecli.ui.wrap import WordWrap

                self._reasoning = WordWrap() if sys.stderr.isatty() else None
            if self._reasoning is not None:
                self._reasoning.text(event.text)
            else:
                dim(event.text)
            return
        self._end_reasoning()
        if isinstance(event, TextDelta):
            self.renderer.text(event.text)
        elif isinstance(event, ToolCall):
            self.renderer.finish()
            self._note(escape_controls(f"→ {event.name} {event.arguments}"))
        elif isinstance(event, HostedToolProgress):
            self._note(f"[{event.tool}: {event.status}]")
        elif isinstance(event, ToolResult):
            from voicecli.tools import result_line

            self._note(result_line(event))
            self._record(Entry("tool", event.output, meta={"name": event.name, "arguments": event.arguments,
                                                           "ok": event.ok}))

    def _end_reasoning(self) -> None:
        """The answer (or a tool call) starts on its own line after a reasoning summary."""
        if self._reasoning is not None:
            self._reasoning.finish()
            self._reasoning = None

    def _finish_turn(self, result) -> None:
        transport = self.conversation.transport
        self.turns.append(TurnRecord(self.profile.model.name, transport.name, result.usage, result.ttft_ms,
                                     result.total_ms, result.status, result.cost_usd))
        if result.text or result.status != "completed":
            now = time.time()
            self._record(Entry("assistant", result.text, start=now - result.total_ms / 1000 - result.paused, end=now,
                               interrupted=result.status in ("cancelled", "incomplete"), usage=result.usage,
                               meta={"model": self.profile.model.name}))
        if result.error is not None:
            retries = getattr(transport, "retries_used", 0)
            self._say(f"voicecli: {describe_error(result.error, transport.base_url, retries)} — /retry sends it again")
            hint = error_hint(result.error, transport.base_url, self.profile)
            if hint:
                self._say(f"  hint: {hint}")
        elif result.status == "incomplete":
            self._say(f"voicecli: the answer is incomplete ({result.reason or 'unknown reason'})")
        elif result.status == "failed":
            self._say(f"voicecli: the response failed ({result.reason or 'no reason given'}) — /retry sends it again")
        if result.refusal:
            self._say("voicecli: the model refused to answer")
        if self.text_format is not None and result.status == "completed" and result.error is None:
            self._check_schema(result.text)
        self._note(usage_line(result.usage, ttft_ms=result.ttft_ms, total_ms=result.total_ms,
                              model=self.profile.model.name, transport=transport.name,
                              cost_usd=result.cost_usd, priced=True))

    def _check_schema(self, text: str) -> None:
        from voicecli.schema import errors

        try:
            problems = errors(self.text_format["schema"], json.loads(text))
        except ValueError as exc:
            problems = [f"it is not JSON ({exc})"]
        if problems:
            self._say(f"voicecli: the answer does not match the schema: {'; '.join(problems)}")

    def _record(self, entry: Entry) -> None:
        if self.transcript is not None:
            self.transcript.write(entry)

    def _start_log(self, items: list[HistoryItem]) -> None:
        # lazy: the file appears with the first turn written, so a /talk that cannot start leaves none
        self.log = convlog.ConversationLog.create(lazy=True, **convlog.where(self.profile))
        for item in items:
            self.log.add_item(item)

    def _rebuild(self, history: list[HistoryItem]) -> None:
        """A fresh Conversation over `history` (same transport and tools): /clear and /retry.

        The log is append-only, so a rewritten history continues in a new file, started with the
        next message (`-c` then finds it)."""
        from voicecli.conversation import Conversation

        if self.log is not None:
            self.log.close()
        self.log = None
        self.conversation = Conversation(self.profile, self.conversation.transport, history=history,
                                         log=self.log, tool_runner=self._tool_runner())

    # -- tools -------------------------------------------------------------------------------------

    def _tool_runner(self):
        if not self.profile.tools and not self.profile.mcp:
            return None
        if self.toolbox is None:
            from voicecli.tools import ToolBox

            self.toolbox = ToolBox.for_profile(self.profile, self.approve, debug=self.opts.debug)
        return self.toolbox.run

    async def _start_mcp(self) -> None:
        if self.toolbox is not None and self.toolbox.mcp_servers:
            await self.toolbox.start(require=self.opts.require_mcp)

    async def approve(self, tool, call):
        """The interactive approver (ui/approval.py): y once, a always, n deny with an optional reason."""
        from voicecli.ui import approval

        self.renderer.finish()  # no live markdown area under the question
        runs_on = None
        if getattr(tool, "server", None) and self.toolbox is not None and self.toolbox.mcp is not None:
            runs_on = self.toolbox.mcp.describe(tool)
        asked, result = time.monotonic(), self.conversation.last
        try:
            return await approval.approve(tool, call, say=self._say, ask=self.input.ask, runs_on=runs_on)
        finally:  # the user's time at the prompt is not the model's: keep it out of the footer's times
            if result is not None:
                result.paused += time.monotonic() - asked

    # -- slash commands ------------------------------------------------------------------------------

    async def command(self, line: str) -> str | None:
        name, _, arg = line[1:].strip().partition(" ")
        name, arg = ALIASES.get(name.lower(), name.lower()), arg.strip()
        handler = getattr(self, f"cmd_{name}", None)
        if name not in COMMANDS or handler is None:
            close = difflib.get_close_matches(name, COMMANDS, n=1)
            hint = f" — did you mean /{close[0]}?" if close else " — /help lists the commands"
            self._say(f"unknown command /{name}{hint}")
            return None
        try:
            return await handler(arg)
        except VoicecliError as exc:  # a bad /set value, an unknown profile: say so, stay in the REPL
            self._say(f"voicecli: {exc.message}" + (f"\n  hint: {exc.hint}" if exc.hint else ""))
            return None

    async def cmd_help(self, arg: str) -> None:
        from voicecli.ui.wrap import hanging

        width, columns = max(len(f"/{n} {a}") for n, (a, _) in COMMANDS.items()), self._columns()
        lines = [hanging(f"  {f'/{n} {a}'.ljust(width)}  ", h, columns) for n, (a, h) in COMMANDS.items()]
        keys = ("Enter sends · Alt-Enter or Ctrl-J adds a line · Ctrl-X Ctrl-E edits in $EDITOR · "
                "Ctrl-C stops an answer · Tab completes · start a message with // to send a leading /")
        self._say("\n".join(lines) + "\n" + hanging("", keys, columns))

    async def cmd_exit(self, arg: str) -> str:
        return "exit"

    async def cmd_clear(self, arg: str) -> None:
        self._rebuild([])
        self._attachments.clear()
        self._note("new conversation")

    async def cmd_system(self, arg: str) -> None:
        if arg:
            profiles.apply_setting(self.profile, "model.instructions", arg)
        self._note(f"system: {self.profile.model.instructions or '(none)'}")

    async def cmd_model(self, arg: str) -> None:
        if arg:
            profiles.apply_setting(self.profile, "model.name", arg)
        self._note(f"model: {self.profile.model.name}")

    async def cmd_transport(self, arg: str) -> None:
        if arg and arg not in TRANSPORTS:
            self._say(f"/transport takes ws, sse or chat; got '{arg}'")
            return
        if arg:
            from voicecli.tools import check_transport

            check_transport(self.profile.tools, arg)  # refuse the switch, keep the session
            profiles.apply_setting(self.profile, "connection.transport", arg)
            await self._reopen_transport()
        self._note(f"transport: {self.conversation.transport.name}")

    async def cmd_profile(self, arg: str) -> None:
        if not arg:
            self._note(f"profile: {self.profile.name}")
            return
        new = profiles.load(arg)
        new.api_key()  # a missing key is reported now, not at the next message
        if self.toolbox is not None:
            await self.toolbox.aclose()
        self.profile = self.conversation.profile = new
        self.toolbox = None
        self.conversation.tool_runner = self._tool_runner()
        await self._start_mcp()
        await self._reopen_transport()
        self._note(f"profile: {new.name} · {new.model.name} over {self.conversation.transport.name}")

    async def cmd_set(self, arg: str) -> None:
        key, _, value = arg.partition(" ")
        if not key or not value.strip():
            self._say("usage: /set KEY VALUE, e.g. /set temperature 0.2 or /set reasoning_effort low")
            return
        section, name = profiles.resolve_key(key)
        profiles.apply_setting(self.profile, f"{section}.{name}", value.strip())
        if section == "connection":
            await self._reopen_transport()
        self._note(f"{section}.{name} = {getattr(getattr(self.profile, section), name)!r}")

    async def _reopen_transport(self) -> None:
        from voicecli.transport import open_transport

        new = open_transport(self.profile)
        await self.conversation.transport.aclose()
        self.conversation.transport = new
        self._choices.pop("model", None)  # another base URL may offer other models

    async def cmd_tools(self, arg: str) -> None:
        if not self.profile.tools:
            self._say("this profile has no tools")
            return
        from voicecli.ui.wrap import hanging

        for tool in self.profile.tools:
            state = self.toolbox.approval_state(tool.name) if self.toolbox else tool.effective_approval
            what = shlex.join(tool.command) if tool.command else tool.python or tool.type
            if getattr(tool, "server", None):
                what = f"MCP server {tool.server}"
            about = what + (f" — {tool.description}" if tool.description else "")
            self._say(hanging(f"  {tool.name:<20} {state:<8} ", about, self._columns()))

    async def cmd_schema(self, arg: str) -> None:
        if arg.lower() in ("off", "none"):
            self.text_format = None
        elif arg:
            from voicecli.schema import load, response_format

            self.text_format = response_format(load(arg, "/schema"))
        if self.text_format is None:
            self._note("schema: none — answers are text")
        else:
            strict = "strict" if self.text_format["strict"] else "not strict"
            self._note(f"schema ({strict}): {json.dumps(self.text_format['schema'], ensure_ascii=False)}")

    async def cmd_usage(self, arg: str) -> None:
        if not self.turns:
            self._say("no turns yet")
            return
        from voicecli.pricing import format_usd

        total = Usage()
        for n, t in enumerate(self.turns, 1):
            total = total + t.usage
            ttft = f"{t.ttft_ms:.0f} ms" if t.ttft_ms is not None else "–"
            self._say(f"  #{n:<3} {t.model} over {t.transport} · {t.usage.input_tokens} in "
                      f"({t.usage.cached_tokens} cached) · {t.usage.output_tokens} out · first token {ttft} · "
                      f"{t.total_ms:.0f} ms · {format_usd(t.cost_usd)}" + ("" if t.status == "completed" else f" · {t.status}"))
        costs = [t.cost_usd for t in self.turns]
        cost = None if None in costs else sum(costs)  # one unpriced turn makes the total unknown
        self._say(f"  total: {total.input_tokens} in ({total.cached_tokens} cached) · {total.output_tokens} out "
                  f"({total.reasoning_tokens} reasoning) · {format_usd(cost)} "
                  f"over {len(self.turns)} turn{'s' * (len(self.turns) != 1)}")

    async def cmd_history(self, arg: str) -> None:
        items = self.conversation.history
        if not items:
            self._say("the conversation is empty")
        for item in items:
            self._say(_history_line(item))

    async def cmd_retry(self, arg: str) -> None:
        history = self.conversation.history
        last_user = next((i for i in range(len(history) - 1, -1, -1)
                          if isinstance(history[i], Message) and history[i].role == "user"), None)
        if last_user is None:
            self._say("nothing to retry yet")
            return
        message = history[last_user]
        self._rebuild(history[:last_user])
        await self.turn(message)

    async def cmd_save(self, arg: str) -> None:
        if not arg:
            self._say("usage: /save PATH (.md or .json)")
            return
        path = Path(arg).expanduser()
        if path.suffix.lower() == ".json":
            text = json.dumps({"profile": self.profile.name, "model": self.profile.model.name,
                               "instructions": self.profile.model.instructions,
                               "cid": self.log.cid if self.log else None,
                               "items": [convlog.item_to_json(i) for i in self.conversation.history]},
                              indent=2, ensure_ascii=False) + "\n"
        elif path.suffix.lower() in (".md", ".markdown"):
            text = f"# Conversation with {self.profile.model.name}\n\n" + "".join(
                _markdown_item(i) for i in self.conversation.history)
        else:
            self._say("/save: the file name must end in .md or .json")
            return
        try:
            paths.write_private(path, text)
        except OSError as exc:
            self._say(f"/save: cannot write {path}: {exc.strerror or exc}")
            return
        self._note(f"saved {len(self.conversation.history)} items to {path}")

    async def cmd_copy(self, arg: str) -> None:
        text = next((i.text for i in reversed(self.conversation.history)
                     if isinstance(i, Message) and i.role == "assistant"), None)
        if not text:
            self._say("no answer to copy yet")
            return
        tool = next(((prog, args) for prog, args, needs in CLIPBOARD_TOOLS
                     if shutil.which(prog) and (needs is None or os.environ.get(needs))), None)
        if tool is None:
            self._say("no clipboard tool found: install wl-copy (Wayland), xclip or xsel (X11), or use /save")
            return
        try:
            subprocess.run([tool[0], *tool[1]], input=text.encode(), check=True, timeout=5,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except (OSError, subprocess.SubprocessError) as exc:
            self._say(f"/copy: {tool[0]} failed: {exc}")
            return
        self._note(f"copied {len(text)} characters with {tool[0]}")

    async def cmd_edit(self, arg: str) -> None:
        editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
        with tempfile.NamedTemporaryFile("w+", suffix=".md", prefix="voicecli-", delete=False) as f:
            f.write(arg)
        try:
            with let_go():  # the editor gets the terminal as the user left it
                done = await asyncio.get_running_loop().run_in_executor(
                    None, lambda: subprocess.run([*shlex.split(editor), f.name]).returncode)
            text = Path(f.name).read_text(encoding="utf-8").rstrip("\n")
        except OSError as exc:
            self._say(f"/edit: cannot run {editor}: {exc.strerror or exc}")
            return
        finally:
            Path(f.name).unlink(missing_ok=True)
        if done != 0:
            self._say(f"/edit: {editor} exited with {done}; nothing taken")
        elif text.strip():
            self._next_default = text  # shown in the next prompt: Enter sends it
        else:
            self._note("/edit: empty message, nothing to send")

    async def cmd_file(self, arg: str) -> None:
        """Attach a file, image or web page to the next message: read now (errors now), sent with it."""
        if not arg:
            if not self._attachments:
                self._say("no attachments: /file PATH|URL attaches one to your next message")
            for label, text, image in self._attachments:
                self._say(f"  {label}" + (" (image)" if image else f" ({len(text or '')} characters)"))
            return
        from voicecli import infer
        from voicecli.webpage import is_url

        spec = arg.strip().strip("'\"")
        limit = self.profile.ui.max_input_mib
        if is_url(spec):
            page = await asyncio.to_thread(infer.fetch_page, spec, limit, self.profile.connection)
            data, name, kind = page.data, page.url, infer.image_type(page.data)
        else:
            path = Path(spec).expanduser()
            data, name = infer._read_file(path, limit), str(path)
            kind = infer.image_type(data)
        if kind is not None and len(data) <= limit * infer.MIB:
            import base64

            url = f"data:{kind[1]};base64,{base64.b64encode(data).decode('ascii')}"
            self._attachments.append((f"{kind[0]} image `{name}`", None, url))
        elif is_url(spec):
            label, text = infer.page_text(page, spec, limit)
            self._attachments.append((label, text, None))
        else:
            self._attachments.append((f"File `{Path(name).name}`", infer.decode_text(data, name, limit), None))
        label, text, image = self._attachments[-1]
        size = "an image" if image else f"{len(text or '')} characters"
        self._note(f"attached {label} ({size}); it goes with your next message")

    def _attach(self, text: str) -> Message:
        """The next message, with what /file attached (as `infer -f` puts files in the prompt)."""
        if not self._attachments:
            return Message("user", text)
        from voicecli.infer import attachment_block

        blocks = [attachment_block(label, body) for label, body, _ in self._attachments if body is not None]
        images = tuple(image for _, _, image in self._attachments if image is not None)
        self._attachments.clear()
        return Message("user", "\n\n".join([*blocks, text]), images)

    async def cmd_talk(self, arg: str) -> None:
        """Continue this conversation by voice; what is said comes back into the chat."""
        from voicecli.talk import Talk
        from voicecli.voice.options import TalkOptions, ctrl_c_rule

        if self.log is None:  # voice turns go to the conversation log like typed ones
            self._start_log(self.conversation.history)
            self.conversation.log = self.log
        before = len(self.conversation.history)
        leave = "return to chat"
        talk = Talk(self.profile, TalkOptions(debug=self.opts.debug, leave=leave),
                    self.conversation)  # replayed, then added to
        self._note(f"talk: speak, or type a line · {ctrl_c_rule(leave)} · Ctrl-D: {leave}")
        loop = asyncio.get_running_loop()
        try:
            await talk.run()
        except VoicecliError as exc:  # talk's flags cannot be given to /talk: name the settings instead
            raise VoicecliError(_talk_flags_to_settings(exc.message), exit_code=exc.exit_code,
                                hint=_talk_flags_to_settings(exc.hint)) from None
        finally:
            loop.add_signal_handler(signal.SIGINT, self._on_sigint)  # talk had taken Ctrl-C over
        said = [m for m in self.conversation.history[before:] if isinstance(m, Message)]
        for m in said:
            self._record(Entry(m.role, m.text, meta={"via": "talk"}))
        self._note(f"back in chat · {len(said)} spoken message{'s' * (len(said) != 1)} added to the conversation")

    # -- completion data ---------------------------------------------------------------------------

    def argument_choices(self, command: str) -> list[str]:
        if command == "transport":
            return list(TRANSPORTS)
        if command in ("model", "profile", "set") and command not in self._choices:
            self._choices[command] = _choices_for(command, self.profile)
        return self._choices.get(command, [])

    # -- resuming ----------------------------------------------------------------------------------

    def _show_recent(self) -> None:
        history = self.conversation.history
        users = [i for i, item in enumerate(history) if isinstance(item, Message) and item.role == "user"]
        start = users[-RECENT_EXCHANGES] if len(users) >= RECENT_EXCHANGES else 0
        cid = self.log.cid if self.log else "?"
        self._note(f"resuming conversation {cid} ({len(history)} items); the last exchanges:")
        for item in history[start:]:
            if isinstance(item, Message) and item.role == "user":
                self._say(PROMPT + item.text)
            elif isinstance(item, Message) and item.role == "assistant":
                self.renderer.text(item.text)
                self.renderer.finish()
                if item.interrupted:
                    self._note("[interrupted]")
            elif isinstance(item, FunctionCall):
                self._note(escape_controls(f"→ {item.name} {item.arguments}"))


DEVICE_SETTINGS = "/set voice.input_device NAME or /set voice.output_device NAME (`voicecli devices` lists them)"


def _talk_flags_to_settings(text: str | None) -> str | None:
    """A talk error as chat's /talk should say it: the device flags become the voice.* settings that
    /set changes, and the WAV-file alternatives (talk --input/--output), which chat lacks, a pointer to them."""
    if not text or "--" not in text:
        return text
    if "FILE.wav" in text or "--input-device/--output-device" in text:
        head = text.split(", or ")[0].split("; or ")[0]
        return f"{head.rstrip(',;')}; in chat, choose devices with {DEVICE_SETTINGS}" if "--" not in head \
            else f"choose devices with {DEVICE_SETTINGS}"
    return text.replace("--input-device", "voice.input_device").replace("--output-device", "voice.output_device")


def _choices_for(command: str, profile: Profile) -> list[str]:
    """Completion candidates, computed once: profile names; model names from the profiles and the
    server's list as `voicecli models` cached it (no network call)."""
    if command == "set":
        keys = [f"{s}.{n}" for s in ("model", "connection", "ui") for n in profiles._field_info(profiles.SECTIONS[s])]
        return keys + [k.split(".", 1)[1] for k in keys if k.startswith("model.")]
    from voicecli.completion import model_names, profile_names

    return profile_names() if command == "profile" else model_names(profile)


def _history_line(item: HistoryItem) -> str:
    if isinstance(item, Message):
        mark = " [interrupted]" if item.interrupted else ""
        return f"{'you' if item.role == 'user' else item.role}: {item.text}{mark}"
    if isinstance(item, FunctionCall):
        return f"tool call: {item.name} {item.arguments}"
    if isinstance(item, FunctionOutput):
        return f"tool output ({item.name or item.call_id}): {item.output}"
    return f"({item.dialect} item: {item.data.get('type', '?')})"


def _markdown_item(item: HistoryItem) -> str:
    if isinstance(item, Message):
        return markdown_entry(item.role, item.text, interrupted=item.interrupted)
    if isinstance(item, FunctionCall):
        return markdown_entry("tool", f"```json\n{item.arguments}\n```", note=f"call {item.name}")
    if isinstance(item, FunctionOutput):
        return markdown_entry("tool", f"```\n{item.output}\n```", note=f"output of {item.name or item.call_id}")
    return ""
