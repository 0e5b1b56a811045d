"""`voicecli infer`: one answer for scripts and pipes.

stdout carries only the answer (or `--json` / `--events`); everything else goes to stderr.
Ctrl-C keeps what was received (exit 130); an incomplete answer is printed and exits 8.
"""

from __future__ import annotations

import asyncio
import base64
import json
import mimetypes
import os
import sys
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path

from voicecli import convlog
from voicecli.errors import ExitCode, UsageError
from voicecli.events import Error, Event, HostedToolProgress, ReasoningDelta, TextDelta, ToolResult, to_json
from voicecli.profiles import Profile
from voicecli.tools import NonInteractiveApprover, ToolBox, check_transport, result_line
from voicecli.ui.render import dim, make_renderer, wants_markdown
from voicecli.ui.status import describe_error, setup_logging, usage_line
from voicecli.wire.types import Message

MAX_STDIN_BYTES = 50 * 1024 * 1024


@dataclass
class InferOptions:
    prompt: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    no_stream: bool = False
    json_out: bool = False
    events: bool = False
    usage: bool = False
    raw: bool = False
    continue_: bool = False
    cid: str | None = None
    no_log: bool = False
    allow_tools: list[str] = field(default_factory=list)
    yes: bool = False
    require_mcp: bool = False
    debug: bool = False


def build_prompt(opts: InferOptions, stdin_text: str | None) -> str:
    """stdin text, a blank line, attached files, then the prompt from the arguments."""
    parts = []
    if stdin_text and stdin_text.strip():
        parts.append(stdin_text.rstrip("\n"))
    for path in opts.files:
        try:
            content = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise UsageError(f"cannot attach {path}: {reason}") from None
        parts.append(f"File `{path.name}`:\n\n```\n{content.rstrip()}\n```")
    if opts.prompt:
        parts.append(" ".join(opts.prompt))
    if not parts:
        raise UsageError("no prompt: give it as arguments or on stdin", hint='voicecli infer "hello"')
    return "\n\n".join(parts)


def image_url(spec: str) -> str:
    if spec.startswith(("http://", "https://", "data:")):
        return spec
    path = Path(spec).expanduser()
    mime = mimetypes.guess_type(path.name)[0]
    if not mime or not mime.startswith("image/"):
        raise UsageError(f"--image {spec}: not an image file (png, jpeg, gif, webp) or URL")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"--image {spec}: {exc.strerror}") from None
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def read_stdin() -> str | None:
    if sys.stdin is None or sys.stdin.closed:
        return None
    try:
        if sys.stdin.isatty():
            return None
        return sys.stdin.read(MAX_STDIN_BYTES)
    except (OSError, ValueError):
        return None


def run_infer(profile: Profile, opts: InferOptions) -> int:
    setup_logging(opts.debug)
    prompt = build_prompt(opts, read_stdin())
    images = tuple(image_url(s) for s in opts.images)
    toolbox = _toolbox(profile, opts)
    if opts.continue_ or opts.cid:
        log, history = convlog.open_existing(opts.cid)
        if opts.no_log:
            log = None
    else:
        history = []
        log = None if opts.no_log else convlog.ConversationLog.create(
            profile=profile.name, model=profile.model.name, transport=profile.connection.transport)
    session = _InferSession(profile, opts, history, log, toolbox)
    try:
        asyncio.run(session.run(Message("user", prompt, images)))
    except KeyboardInterrupt:
        session.interrupted = True
    except BrokenPipeError:
        # the reader stopped reading (`| head`): it has what it wanted; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK
    finally:
        if log is not None:
            log.close()
    return session.report()


def _toolbox(profile: Profile, opts: InferOptions):
    """The profile's tools, run without prompts: `ask` tools only when --allow-tool/--yes allow them."""
    if not profile.tools and not profile.mcp:
        if opts.allow_tools:
            raise UsageError(f"--allow-tool {opts.allow_tools[0]}: profile '{profile.name}' defines no tools")
        return None
    check_transport(profile.tools, profile.connection.transport)
    names = {t.name for t in profile.tools}
    servers = tuple(f"{s.name}__" for s in profile.mcp)  # MCP tools are named SERVER__TOOL once listed
    for name in opts.allow_tools:
        if name not in names and not name.startswith(servers):
            raise UsageError(f"--allow-tool {name}: profile '{profile.name}' has no tool named '{name}'",
                             hint=f"its tools: {', '.join(sorted(names) + [f'{p}…' for p in servers])}")
    return ToolBox.for_profile(profile, NonInteractiveApprover(opts.allow_tools, opts.yes), debug=opts.debug)


class _InferSession:
    def __init__(self, profile: Profile, opts: InferOptions, history: list, log, toolbox=None):
        self.profile, self.opts, self.history, self.log, self.toolbox = profile, opts, history, log, toolbox
        self.conversation = None
        self.interrupted = False
        self.base_url = ""
        self.show_reasoning = sys.stderr.isatty() and not (opts.json_out or opts.events)

    async def run(self, message: Message) -> None:
        from voicecli.conversation import Conversation
        from voicecli.transport import open_transport
        from voicecli.transport.http import close_shared_client

        transport = open_transport(self.profile)
        self.base_url = transport.base_url
        self.conversation = Conversation(self.profile, transport, history=self.history, log=self.log,
                                         tool_runner=self.toolbox.run if self.toolbox else None)
        streaming = not (self.opts.no_stream or self.opts.json_out or self.opts.events)
        markdown = self.profile.ui.markdown and wants_markdown(sys.stdout, raw=self.opts.raw)
        renderer = make_renderer(sys.stdout, markdown=markdown) if streaming else None
        try:
            if self.toolbox is not None:  # MCP servers start (in parallel) before the first request
                await self.toolbox.start(require=self.opts.require_mcp)
            async with aclosing(self.conversation.send(message)) as events:
                async for event in events:
                    self._show(event, renderer)
        finally:
            if renderer is not None:
                renderer.finish()
            if self.toolbox is not None:
                await self.toolbox.aclose()
            await transport.aclose()
            await close_shared_client()

    def _show(self, event: Event, renderer) -> None:
        if self.opts.events:
            sys.stdout.write(json.dumps(to_json(event), ensure_ascii=False) + "\n")
            sys.stdout.flush()
        elif isinstance(event, TextDelta) and renderer is not None:
            renderer.text(event.text)
        elif isinstance(event, ReasoningDelta) and self.show_reasoning:
            dim(event.text)
        elif isinstance(event, HostedToolProgress) and not self.opts.json_out:
            dim(f"[{event.tool}: {event.status}]\n")
        if isinstance(event, ToolResult):  # on stderr in every mode: a human should see what ran
            dim(result_line(event) + "\n")

    def report(self) -> int:
        """Print what the mode asks for after the stream; return the exit code."""
        result = self.conversation.last if self.conversation else None
        if result is None:
            return ExitCode.INTERRUPTED if self.interrupted else ExitCode.INTERNAL
        if self.interrupted:
            result.status, result.reason = "cancelled", "interrupted"
        if self.opts.json_out:
            print(json.dumps(self._json(result), ensure_ascii=False))
        elif self.opts.no_stream and not self.opts.events:
            sys.stdout.write(result.text + ("" if result.text.endswith("\n") else "\n"))
        sys.stdout.flush()
        if self.opts.usage:
            dim(usage_line(result.usage, ttft_ms=result.ttft_ms, total_ms=result.total_ms,
                           model=self.profile.model.name, transport=self.conversation.transport.name) + "\n")
        if result.refusal:
            print("voicecli: the model refused to answer", file=sys.stderr)
        if self.interrupted:
            print("voicecli: interrupted; the partial answer was kept", file=sys.stderr)
            return ExitCode.INTERRUPTED
        return self._exit_code(result)

    def _exit_code(self, result) -> int:
        from voicecli.wire.errors import exit_code

        retries = getattr(self.conversation.transport, "retries_used", 0)
        if result.error is not None:
            print(f"voicecli: {describe_error(result.error, self.base_url, retries)}", file=sys.stderr)
            return exit_code(result.error)
        if result.reason == "max_tool_rounds":
            print(f"voicecli: stopped after {self.profile.model.max_tool_rounds} tool rounds without a final "
                  "answer (model.max_tool_rounds)", file=sys.stderr)
            return ExitCode.INCOMPLETE
        if result.status == "incomplete":
            print(f"voicecli: the answer is incomplete ({result.reason or 'unknown reason'})", file=sys.stderr)
            return ExitCode.INCOMPLETE
        if result.status != "completed":
            err = Error("server", f"the response ended with status '{result.status}' ({result.reason})")
            print(f"voicecli: {describe_error(err, self.base_url, retries)}", file=sys.stderr)
            return ExitCode.API
        return ExitCode.OK

    def _json(self, result) -> dict:
        u = result.usage
        return {
            "text": result.text,
            "reasoning": result.reasoning or None,
            "model": self.profile.model.name,
            "transport": self.conversation.transport.name,
            "response_id": result.response_id,
            "status": result.status,
            "incomplete_reason": result.reason if result.status == "incomplete" else None,
            "usage": {"input_tokens": u.input_tokens, "cached_tokens": u.cached_tokens,
                      "output_tokens": u.output_tokens, "reasoning_tokens": u.reasoning_tokens},
            "tool_calls": [{"call_id": c.call_id, "name": c.name, "arguments": c.arguments}
                           for c in result.tool_calls],
            "tool_results": [{"call_id": t.call_id, "name": t.name, "ok": t.ok, "output": t.output,
                              "duration_ms": _round(t.duration_ms)} for t in result.tool_results],
            "timings": {"ttft_ms": _round(result.ttft_ms), "total_ms": _round(result.total_ms)},
            "cid": self.log.cid if self.log is not None else None,
            "error": result.error.message if result.error else None,
        }


def _round(ms: float | None) -> float | None:
    return None if ms is None else round(ms, 1)
