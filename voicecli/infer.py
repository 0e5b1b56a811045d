"""`voicecli infer`: one answer for scripts and pipes.

stdout carries only the answer (or `--json` / `--events`); everything else goes to stderr.
Ctrl-C keeps what was received (exit 130), and so do SIGTERM (143) and SIGHUP (129); an incomplete
answer is printed and exits 8.
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import json
import signal
import sys
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path

from voicecli import convlog
from voicecli.errors import ExitCode, UsageError
from voicecli.events import Error, Event, HostedToolProgress, ReasoningDelta, TextDelta, ToolResult, to_json
from voicecli.profiles import Profile
from voicecli.sanitize import for_terminal, redact_data
from voicecli.ui.term import dim, make_renderer, wants_markdown
from voicecli.ui.spinner import Spinner
from voicecli.ui.status import describe_error, error_hint, setup_logging, usage_line
from voicecli.items import Message

MIB = 1024 * 1024


@dataclass
class InferOptions:
    """The flags of `voicecli infer` beyond the profile's."""

    prompt: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # -f: paths and http(s) URLs
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
    schema: str | None = None  # --schema: inline JSON, a file, or the concise form
    extract: str | None = None  # -x: "first" or "last" fenced code block only
    speak: bool = False  # --speak: also say the answer on the speaker (voicecli.say's pipeline)


def build_prompt(opts: InferOptions, stdin_data: bytes | None, limit_mib: float, connection=None) -> str:
    """stdin text, a blank line, attached files, then the prompt from the arguments.
    `connection`: the profile's timeouts for `-f URL`."""
    stdin_text = decode_text(stdin_data, "stdin", limit_mib) if stdin_data is not None else ""
    parts, given = [], bool(stdin_data or opts.files or opts.prompt)
    if stdin_text.strip():
        parts.append(stdin_text.rstrip("\n"))
    blank = not parts
    for spec in opts.files:
        label, content = attachment_text(str(spec), limit_mib, connection)
        blank = blank and not content.strip()
        parts.append(attachment_block(label, content))
    words = " ".join(opts.prompt)
    if words.strip():
        parts.append(words)
        blank = False
    if not given:
        raise UsageError("no prompt: give it as arguments or on stdin", hint='voicecli infer "hello"')
    if blank:  # never spend a request on nothing
        raise UsageError("the prompt is empty: the arguments, stdin and files hold only whitespace",
                         hint='voicecli infer "hello"')
    return "\n\n".join(parts)


def attachment_block(label: str, content: str) -> str:
    """How an attached file or page appears in the prompt."""
    return f"{label}:\n\n```\n{content.rstrip()}\n```"


def attachment_text(spec: str, limit_mib: float, connection=None) -> tuple[str, str]:
    """(label, text) of a `-f` file or http(s) URL (a web page becomes readable text)."""
    from voicecli.webpage import is_url

    if not is_url(spec):
        path = Path(spec).expanduser()
        return f"File `{path.name}`", decode_text(_read_file(path, limit_mib), str(path), limit_mib)
    page = fetch_page(spec, limit_mib, connection)
    return page_text(page, spec, limit_mib)


def fetch_page(url: str, limit_mib: float, connection=None):
    from voicecli.webpage import fetch

    return fetch(url, limit_mib=limit_mib, what=f"cannot attach {url}",
                 connect_timeout=connection.connect_timeout if connection else 10.0,
                 read_timeout=connection.read_timeout if connection else 60.0)


def page_text(page, url: str, limit_mib: float) -> tuple[str, str]:
    """A fetched page as prompt text: its content type checked, HTML made readable, its charset honoured."""
    from voicecli.webpage import html_to_text, is_html, is_text_type

    data = page.data
    if len(data) <= _limit_bytes(limit_mib) and image_type(data) is None:
        looks = _looks_like(data[:4096])
        if not is_text_type(page.content_type) or (not page.content_type and looks != "it looks like text"):
            what = page.content_type or "not text"
            raise UsageError(f"cannot attach {url}: it is {what}, not text"
                             + ("" if looks == "it looks like text" else f" ({looks})"),
                             hint="-f takes web pages and text, JSON, XML or Markdown files")
    charset = page.charset
    if charset is None and is_html(page):  # <meta charset=…> when the server did not say
        import re

        meta = re.search(rb"<meta[^>]+charset=[\"']?([\w.:-]+)", data[:4096], re.I)
        charset = meta.group(1).decode("ascii") if meta else None
    charset = (charset or "utf-8").lower()
    if charset in ("utf-8", "utf8", "us-ascii", "ascii") or image_type(data) is not None:
        text = decode_text(data, url, limit_mib)
    else:
        try:
            text = data.decode(charset, errors="replace")
        except LookupError:  # a charset Python does not know: read it as UTF-8
            text = decode_text(data, url, limit_mib)
    if is_html(page):
        return f"Web page `{page.url}`", html_to_text(text)
    return f"File `{page.url}`", text


def _limit_bytes(limit_mib: float) -> int:
    return int(limit_mib * MIB)


def _read_file(path: Path, limit_mib: float) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(_limit_bytes(limit_mib) + 1)  # one byte more tells "over the limit" from "at it"
    except OSError as exc:
        raise UsageError(f"cannot attach {path}: {exc.strerror or exc}") from None


def decode_text(data: bytes, name: str, limit_mib: float) -> str:
    """UTF-8 text whatever the locale; bad bytes become U+FFFD with one warning, as most Unix tools do."""
    if len(data) > _limit_bytes(limit_mib):
        what = "stdin is" if name == "stdin" else f"cannot attach {name}: it is"
        raise UsageError(f"{what} over the {limit_mib:g} MiB input limit (ui.max_input_mib)",
                         hint="send less, or raise the limit: -o ui.max_input_mib=N, or max_input_mib in the "
                              "profile's [ui] table")
    kind = image_type(data)
    if kind is not None:
        if name == "stdin":
            raise UsageError(f"stdin is a {kind[0]} image, not text",
                             hint="save it to a file and attach it with --image PATH")
        raise UsageError(f"cannot attach {name} as text: it is a {kind[0]} image", hint=f"use --image {name}")
    binary = binary_kind(data)
    if binary is not None:
        if name == "stdin":
            raise UsageError(f"stdin is {binary}, not text", hint="pipe text (UTF-8) to voicecli")
        raise UsageError(f"cannot attach {name}: it is {binary}, not text",
                         hint="-f takes text (UTF-8), JSON, XML or Markdown files and web pages; images go to --image")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        print(f"voicecli: warning: {name} is not valid UTF-8 (first bad byte 0x{data[exc.start]:02x} at offset "
              f"{exc.start}); invalid bytes were replaced with U+FFFD", file=sys.stderr)
        return data.decode("utf-8", errors="replace")


# the image formats the APIs accept, known by their magic bytes (a file's name proves nothing)
def image_type(data: bytes) -> tuple[str, str] | None:
    """(label, MIME type) of a PNG, JPEG, GIF or WEBP image, else None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG", "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG", "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "GIF", "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP", "image/webp"
    return None


# (first bytes, what they are, sure): a `sure` signature refuses a file as text on its own; the others
# only name what a file that is not text looks like ("BM…" may well start a line of text)
_MAGIC = ((b"%PDF-", "a PDF document", True), (b"PK\x03\x04", "a ZIP archive", True),
          (b"\x7fELF", "an ELF executable", True), (b"\x1f\x8b", "a gzip archive", True),
          (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive", True), (b"SQLite format 3\0", "an SQLite database", True),
          (b"\xcf\xfa\xed\xfe", "a Mach-O executable", True), (b"\0asm", "a WebAssembly module", True),
          (b"II*\0", "a TIFF image", True), (b"MM\0*", "a TIFF image", True), (b"BM", "a BMP image", False))
_SNIFF_BYTES = 8192  # how much of a file is looked at to tell binary from text


def _known_type(data: bytes, *, sure: bool = False) -> str | None:
    for magic, what, certain in _MAGIC:
        if data.startswith(magic) and (certain or not sure):
            return what
    return None


def binary_kind(data: bytes) -> str | None:
    """What `data` is when it is certainly not text — a known binary signature, or NUL bytes near the
    start (no text encoding but UTF-16/32 has them) — else None. Images are `image_type`'s business."""
    head = data[:_SNIFF_BYTES]
    what = _known_type(head, sure=True)
    if what is None and b"\0" in head:
        what = _known_type(head) or ("a HEIC/AVIF image or a video" if head[4:8] == b"ftyp" else
                                     "binary data (it holds NUL bytes; UTF-16 text must be converted to UTF-8)")
    return what


def _looks_like(data: bytes) -> str:
    """A few words on what some bytes are, for an error message."""
    if not data:
        return "the file is empty"
    what = _known_type(data)
    if what is not None:
        return f"it looks like {what}"
    if data[4:8] == b"ftyp":
        return "it looks like a HEIC/AVIF image or a video: convert it to JPEG or PNG"
    try:  # incremental: a character cut at the end of the sample is not an error
        text = codecs.getincrementaldecoder("utf-8")().decode(data[:4096])
    except UnicodeDecodeError:
        text = None
    if text is not None and "\0" not in text:
        if "<svg" in text:
            return "it looks like an SVG image, which the APIs do not take: convert it to PNG"
        return "it looks like text"
    return "it starts with bytes " + " ".join(f"{b:02x}" for b in data[:8])


def image_url(spec: str) -> str:
    if spec.startswith(("http://", "https://", "data:")):
        return spec
    path = Path(spec).expanduser()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"--image {spec}: {exc.strerror or exc}") from None
    kind = image_type(data)
    if kind is None:
        raise UsageError(f"--image {spec}: not a PNG, JPEG, GIF or WEBP image ({_looks_like(data)})")
    return f"data:{kind[1]};base64,{base64.b64encode(data).decode('ascii')}"


def read_stdin(limit_mib: float) -> bytes | None:
    """Piped stdin as bytes, at most one byte over the limit: decoding is ours, not the locale's."""
    if sys.stdin is None or sys.stdin.closed:
        return None
    try:
        if sys.stdin.isatty():
            return None
        limit = _limit_bytes(limit_mib) + 1
        buffer = getattr(sys.stdin, "buffer", None)
        if buffer is None:  # a replaced text stream (tests, embedding)
            return sys.stdin.read(limit).encode("utf-8", "surrogateescape")
        return buffer.read(limit)
    except (OSError, ValueError):
        return None


def run_infer(profile: Profile, opts: InferOptions) -> int:
    setup_logging(opts.debug)
    text_format = None
    if opts.schema is not None:
        from voicecli.schema import load, response_format

        text_format = response_format(load(opts.schema))
    prompt = build_prompt(opts, read_stdin(profile.ui.max_input_mib), profile.ui.max_input_mib, profile.connection)
    images = tuple(image_url(s) for s in opts.images)
    toolbox = _toolbox(profile, opts)
    sink = None
    if opts.speak:  # the speaker is checked before anything is sent: none is exit 3
        from voicecli.say import open_sink

        sink = open_sink(None, profile.voice.output_device)
    # a new conversation's file appears with its first turn: a run that fails before it leaves none
    log, history = convlog.open_for(opts.continue_, opts.cid, opts.no_log, **convlog.where(profile))
    session = _InferSession(profile, opts, history, log, toolbox, text_format)
    session.sink = sink
    try:
        asyncio.run(session.run(Message("user", prompt, images)))
    except KeyboardInterrupt:
        session.interrupted = True
    except BrokenPipeError:
        # the reader stopped reading (`| head`): it has what it wanted; stop quietly
        from voicecli.signals import stdout_gone

        stdout_gone()
        return ExitCode.OK
    finally:
        if log is not None:
            log.close()
        if sink is not None:
            sink.close()
    return session.report()


def _toolbox(profile: Profile, opts: InferOptions):
    """The profile's tools, run without prompts: `ask` tools only when --allow-tool/--yes allow them."""
    if not profile.tools and not profile.mcp:
        if opts.allow_tools:
            raise UsageError(f"--allow-tool {opts.allow_tools[0]}: profile '{profile.name}' defines no tools")
        return None
    from voicecli.tools import NonInteractiveApprover, ToolBox, check_transport

    check_transport(profile.tools, profile.connection.transport)
    names = {t.name for t in profile.tools}
    servers = tuple(f"{s.name}__" for s in profile.mcp)  # MCP tools are named SERVER__TOOL once listed
    for name in opts.allow_tools:
        if name not in names and not name.startswith(servers):
            raise UsageError(f"--allow-tool {name}: profile '{profile.name}' has no tool named '{name}'",
                             hint=f"its tools: {', '.join(sorted(names) + [f'{p}…' for p in servers])}")
    return ToolBox.for_profile(profile, NonInteractiveApprover(opts.allow_tools, opts.yes), debug=opts.debug)


class _InferSession:
    def __init__(self, profile: Profile, opts: InferOptions, history: list, log, toolbox=None, text_format=None):
        self.profile, self.opts, self.history, self.log, self.toolbox = profile, opts, history, log, toolbox
        self.text_format = text_format  # structured output: the answer is JSON, printed once at the end
        self.data = None  # the parsed answer, when it matched the schema
        self.conversation = None
        self.interrupted = False
        self.signal: int | None = None  # SIGTERM / SIGHUP that ended the turn
        self.base_url = ""
        self.show_reasoning = sys.stderr.isatty() and not (opts.json_out or opts.events)
        self.reasoning = None  # the WordWrap of a reasoning summary being shown
        self.sink = None  # --speak: where the spoken answer goes (voicecli.say)
        self.spoken: asyncio.Queue[str | None] | None = None  # the answer's text for the speaker

    async def run(self, message: Message) -> None:
        from voicecli.conversation import Conversation
        from voicecli.signals import on_leave_signals
        from voicecli.transport import close_clients, open_transport

        transport = open_transport(self.profile)
        self.base_url = transport.base_url
        self.conversation = Conversation(self.profile, transport, history=self.history, log=self.log,
                                         tool_runner=self.toolbox.run if self.toolbox else None)
        self.conversation.text_format = self.text_format
        streaming = not (self.opts.no_stream or self.opts.json_out or self.opts.events or self.text_format
                         or self.opts.extract)
        markdown = self.profile.ui.markdown and wants_markdown(sys.stdout, raw=self.opts.raw)
        renderer = make_renderer(sys.stdout, markdown=markdown) if streaming else None
        task = asyncio.current_task()

        def leave(sig: int) -> None:  # like Ctrl-C: cancel the turn; the conversation keeps what came
            self.signal = sig
            task.cancel()

        remove_handlers = on_leave_signals(leave)
        spinner = Spinner()  # on a terminal's stderr only: scripts never see it
        speaking = self._speak() if self.sink is not None else None
        try:
            if self.toolbox is not None:  # MCP servers start (in parallel) before the first request
                await self.toolbox.start(require=self.opts.require_mcp)
            spinner.start()
            async with aclosing(self.conversation.send(message)) as events:
                async for event in events:
                    spinner.stop()  # erased before anything is printed
                    self._show(event, renderer)
                    if isinstance(event, (ToolResult, HostedToolProgress)):  # waiting again: a follow-up,
                        spinner.start()  # or the server's own tool (web search…) at work
            if speaking is not None:  # the answer is printed: the rest of it is said, to the end
                self.spoken.put_nowait(None)
                await speaking
                await self.sink.drain()
        except asyncio.CancelledError:
            if self.signal is None:
                raise
            task.uncancel()
            self.interrupted = True
        finally:
            spinner.stop()
            if speaking is not None and not speaking.done():
                speaking.cancel()
                await asyncio.gather(speaking, return_exceptions=True)
            remove_handlers()
            self._end_reasoning()
            if renderer is not None:
                renderer.finish()
            if self.toolbox is not None:
                await self.toolbox.aclose()
            await transport.aclose(leaving=True)  # the answer is complete: the process ends here
            await close_clients()

    def _speak(self) -> asyncio.Task:
        """--speak: the answer's text deltas → sentences → text-to-speech → the speaker, as they stream."""
        from voicecli.say import speak
        from voicecli.voice.cascade import audio_client

        tts, url = audio_client(self.profile, "speech")
        self.spoken = asyncio.Queue()
        self.sink.start()

        async def pieces():
            while (text := await self.spoken.get()) is not None:
                yield text

        return asyncio.get_running_loop().create_task(speak(pieces(), tts, self.profile.voice, url, self.sink.write))

    def _show(self, event: Event, renderer) -> None:
        if self.spoken is not None and isinstance(event, TextDelta):
            self.spoken.put_nowait(event.text)
        if self.opts.events:
            sys.stdout.write(json.dumps(redact_data(to_json(event)), ensure_ascii=False) + "\n")
            sys.stdout.flush()
        elif isinstance(event, ReasoningDelta):
            if self.show_reasoning:
                if self.reasoning is None:  # wrapped between words, not cut at the window's edge
                    from voicecli.ui.wrap import WordWrap

                    self.reasoning = WordWrap()
                self.reasoning.text(event.text)
            return
        self._end_reasoning()
        if isinstance(event, TextDelta) and renderer is not None:
            renderer.text(event.text)
        elif isinstance(event, HostedToolProgress) and not self.opts.json_out:
            dim(f"[{event.tool}: {event.status}]\n")
        if isinstance(event, ToolResult):  # on stderr in every mode: a human should see what ran
            from voicecli.tools import result_line

            dim(result_line(event) + "\n")

    def _end_reasoning(self) -> None:
        if self.reasoning is not None:  # what follows starts on its own line
            self.reasoning.finish()
            self.reasoning = None

    def report(self) -> int:
        """Print what the mode asks for after the stream; return the exit code."""
        result = self.conversation.last if self.conversation else None
        if result is None:
            if self.interrupted:
                return self._interrupted(kept=False)
            return ExitCode.INTERNAL
        if self.interrupted:
            result.status, result.reason = "cancelled", "interrupted"
        schema_problem = self._check_schema(result)
        if self.opts.json_out:
            print(json.dumps(redact_data(self._json(result)), ensure_ascii=False))
        elif self.data is not None and not self.opts.events:
            print(json.dumps(redact_data(self.data), ensure_ascii=False, indent=2 if sys.stdout.isatty() else None))
        elif self.opts.extract and not self.interrupted:
            from voicecli.extract import extract

            code = extract(result.text, last=self.opts.extract == "last")
            text = result.text if code is None else code  # no code block: the answer is the command (as llm does)
            sys.stdout.write(for_terminal(text + ("" if text.endswith("\n") or not text else "\n"), sys.stdout))
        elif (self.opts.no_stream or self.text_format or self.opts.extract) and not self.opts.events:
            sys.stdout.write(for_terminal(result.text + ("" if result.text.endswith("\n") else "\n"), sys.stdout))
        sys.stdout.flush()
        if self.opts.usage:
            dim(usage_line(result.usage, ttft_ms=result.ttft_ms, total_ms=result.total_ms,
                           model=self.profile.model.name, transport=self.conversation.transport.name,
                           cost_usd=result.cost_usd, priced=True) + "\n")
        if result.refusal:
            print("voicecli: the model refused to answer", file=sys.stderr)
        if self.interrupted:
            return self._interrupted(kept=bool(result.text or result.reasoning or result.tool_calls))
        code = self._exit_code(result)
        if code == ExitCode.OK and schema_problem:
            print(f"voicecli: the answer does not match the schema: {schema_problem}", file=sys.stderr)
            return ExitCode.INCOMPLETE
        return code

    def _interrupted(self, *, kept: bool) -> int:
        """Say how the run was interrupted and whether anything of the answer had come; the exit code."""
        how = f" by {signal.Signals(self.signal).name}" if self.signal else ""
        what = "the partial answer was kept" if kept else "nothing of the answer had arrived"
        print(f"voicecli: interrupted{how}; {what}", file=sys.stderr)
        return 128 + self.signal if self.signal else ExitCode.INTERRUPTED

    def _check_schema(self, result) -> str | None:
        """With --schema: parse and validate a completed answer; the reason when it is not valid."""
        if self.text_format is None or result.status != "completed" or result.error is not None or self.interrupted:
            return None
        from voicecli.schema import errors

        try:
            data = json.loads(result.text)
        except ValueError as exc:
            return f"it is not JSON ({exc})"
        problems = errors(self.text_format["schema"], data)
        if problems:
            return "; ".join(problems)
        self.data = data
        return None

    def _exit_code(self, result) -> int:
        from voicecli.errors import exit_code_for

        retries = getattr(self.conversation.transport, "retries_used", 0)
        if result.error is not None:
            print(f"voicecli: {describe_error(result.error, self.base_url, retries)}", file=sys.stderr)
            hint = error_hint(result.error, self.base_url, self.profile)
            if hint:
                print(f"  hint: {hint}", file=sys.stderr)
            return exit_code_for(result.error)
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
            "cost_usd": None if result.cost_usd is None else round(result.cost_usd, 6),
            "tool_calls": [{"call_id": c.call_id, "name": c.name, "arguments": c.arguments}
                           for c in result.tool_calls],
            "tool_results": [{"call_id": t.call_id, "name": t.name, "ok": t.ok, "output": t.output,
                              "duration_ms": _round(t.duration_ms)} for t in result.tool_results],
            "timings": {"ttft_ms": _round(result.ttft_ms), "total_ms": _round(result.total_ms)},
            "cid": self.log.cid if self.log is not None else None,
            "error": result.error.message if result.error else None,
            **({"data": self.data} if self.text_format is not None else {}),
        }


def _round(ms: float | None) -> float | None:
    return None if ms is None else round(ms, 1)
