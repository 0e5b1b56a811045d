"""MCP servers as tools: start a profile's `[[mcp]]` servers, offer their tools, call them, stop them.

The official `mcp` SDK (an optional extra) is imported only when a profile declares servers: it
costs most of a second. Each server lives in its own task, which enters and leaves the SDK's
context managers (stdio child process or Streamable HTTP session, then `ClientSession`) — they must
be entered and left by one task. Calls from the session go through that `ClientSession`.

Servers start in parallel; a server that cannot start (missing program, crash, hang, HTTP error)
costs one line on stderr and the session goes on without its tools. Its tools become neutral
`ToolDef`s named `SERVER__TOOL`, run through the same checks and approval as `[[tools]]`.
Shutdown closes stdin, then the SDK kills the server's process group; SIGTERM does the same
before voicecli dies of it, so no server outlives voicecli.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import re
import shlex
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voicecli.errors import ConfigError
from voicecli.profiles import McpServerDef
from voicecli.items import ToolDef
from voicecli.tool_schema import schema_problems

log = logging.getLogger("voicecli")
SEP = "__"  # SERVER__TOOL: unique per server, and still a valid function name
INSTALL_HINT = "install the MCP extra: pip install 'voicecli[mcp]' (from a checkout: bash scripts/install.sh --mcp)"
SHUTDOWN_TIMEOUT = 10.0  # the SDK bounds each step (2 s grace, SIGTERM, 2 s, SIGKILL); this is the backstop
# The largest message a stdio server may send (one JSON-RPC line). A bigger tool result is answered
# with an error for the model instead, its bytes skipped as they arrive, never held (`_BoundedLines`).
MAX_MESSAGE_BYTES = 8 * 1024 * 1024


@dataclass
class McpTool(ToolDef):
    """A tool an MCP server listed, under its offered name."""

    server: str = ""
    remote: str = ""  # its name on the server


def import_sdk() -> Any:
    try:
        import mcp
        from mcp.client.streamable_http import streamable_http_client  # noqa: F401  (mcp 2.x)
    except ImportError:
        raise ConfigError("this profile declares [[mcp]] servers, but the mcp package (2.x) is not installed",
                          hint=INSTALL_HINT) from None
    return mcp


def route_sdk_logs(debug: bool) -> None:
    """The SDK's own log lines ("Unknown SSE event: ping", reconnects) are details: on stderr with
    --debug (as `voicecli: mcp: …`), else dropped — never Python's bare last-resort output."""
    sdk = logging.getLogger("mcp")
    sdk.propagate = False
    for handler in sdk.handlers[:]:
        sdk.removeHandler(handler)
    if debug:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("voicecli: mcp: %(message)s"))
        sdk.addHandler(handler)
        sdk.setLevel(logging.DEBUG)
    else:
        sdk.addHandler(logging.NullHandler())


def offered_name(server: str, remote: str, taken: set[str]) -> str:
    """SERVER__TOOL with characters a function name cannot hold replaced, ≤ 64, unique in `taken`."""
    base = f"{server}{SEP}{re.sub(r'[^A-Za-z0-9_-]', '_', remote)}"[:64]
    name, n = base, 2
    while name in taken:
        suffix = f"_{n}"
        name, n = base[: 64 - len(suffix)] + suffix, n + 1
    return name


def tool_defs(spec: McpServerDef, listed: Sequence[dict], taken: set[str]) -> tuple[list[McpTool], list[str]]:
    """The server's listed tools (wire dicts) as ToolDefs after the allow/deny lists, and notes on the
    ones left out."""
    tools, notes = [], []
    names = [t.get("name") for t in listed]
    for wanted in spec.tools or ():
        if wanted not in names:
            notes.append(f"tools lists '{wanted}', which the server does not offer")
    for raw in listed:
        remote = raw.get("name")
        if not isinstance(remote, str) or (spec.tools is not None and remote not in spec.tools) \
                or remote in spec.exclude_tools:
            continue
        schema = {k: v for k, v in (raw.get("inputSchema") or {}).items() if k != "$schema"}
        schema.setdefault("type", "object")
        problems = schema_problems(schema)
        if schema.get("type") != "object":
            problems.insert(0, "its type is not 'object'")
        if problems:
            notes.append(f"tool '{remote}' has an invalid input schema ({problems[0]}); left out")
            continue
        schema.setdefault("properties", {})
        name = offered_name(spec.name, remote, taken)
        taken.add(name)
        tools.append(McpTool(
            name=name, description=raw.get("description") or "", parameters=schema,
            strict=False,  # servers' schemas rarely meet strict mode's rules; arguments are checked here anyway
            timeout=spec.timeout, approval=spec.tool_approval.get(remote, spec.approval),
            max_output_bytes=spec.max_output_bytes, server=spec.name, remote=remote))
    return tools, notes


def call_output(result: dict, limit: int) -> tuple[bool, str, tuple[str, ...]]:
    """A tools/call result (wire dict) → (ok, text for the model, image data URLs).

    Text blocks become the text; structured content is used when there is no text (servers should
    send both); images go out as data URLs (the text names them, for transports without images);
    audio and binary resources are named, not sent. `isError` results are errors for the model."""
    parts, images = [], []
    for block in result.get("content") or []:
        kind = block.get("type")
        if kind == "text":
            parts.append(block.get("text", ""))
        elif kind in ("image", "audio"):
            data, mime = block.get("data", ""), block.get("mimeType", "application/octet-stream")
            size = len(data) * 3 // 4 - data[-2:].count("=")
            if kind == "image":
                images.append(f"data:{mime};base64,{data}")
                parts.append(f"[image: {mime}, {size} bytes]")
            else:
                parts.append(f"[audio: {mime}, {size} bytes; not passed on]")
        elif kind == "resource_link":
            parts.append(f"[resource: {block.get('uri')}" + (f" ({block['name']})" if block.get("name") else "") + "]")
        elif kind == "resource":
            res = block.get("resource") or {}
            if isinstance(res.get("text"), str):
                parts.append(res["text"])
            else:
                parts.append(f"[resource: {res.get('uri')}, {res.get('mimeType') or 'binary'}; not passed on]")
    structured = result.get("structuredContent")
    if structured is not None and not any(p for p in parts if not p.startswith("[")):
        parts.insert(0, json.dumps(structured, ensure_ascii=False))
    from voicecli.sanitize import bounded_text

    raw = "\n".join(parts).encode()
    text = bounded_text(raw[:limit], len(raw), limit)
    if result.get("isError"):
        return False, "error: " + (text if text != "(no output)" else "the tool reported an error"), ()
    return True, text, tuple(images)


def _leaf(exc: BaseException) -> BaseException:
    """The first real exception inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = next((e for e in exc.exceptions if not isinstance(e, asyncio.CancelledError)), exc.exceptions[0])
    return exc


class _Server:
    """One server: its task owns the connection; `call` uses the session from any task."""

    def __init__(self, spec: McpServerDef, base_dir: Path | None, debug: bool):
        self.spec = spec
        self.base_dir = base_dir
        self.debug = debug
        self.listed: list[dict] = []
        self.problem: str | None = None  # why it is not available
        self.session: Any = None
        self.ready = asyncio.Event()
        self.task: asyncio.Task | None = None
        self._scope: Any = None
        self._stopping = False
        self._errlog: Any = None

    async def _connect(self, stack: contextlib.AsyncExitStack) -> Any:
        """The transport's (read, write) streams; everything entered on `stack`, left in reverse."""
        spec = self.spec
        if spec.command:
            from mcp.client.stdio import StdioServerParameters, stdio_client

            cwd = Path(spec.cwd).expanduser() if spec.cwd else None
            if cwd is not None and not cwd.is_absolute() and self.base_dir is not None:
                cwd = self.base_dir / cwd
            # the SDK passes a minimal environment (HOME, PATH, USER, …) plus these: no API keys by default
            env = {k: os.path.expandvars(v) for k, v in spec.env.items()}
            self._errlog = sys.stderr if self.debug else tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")
            params = StdioServerParameters(command=spec.command[0], args=spec.command[1:], env=env or None, cwd=cwd)
            _bound_stdio_messages()
            return await stack.enter_async_context(stdio_client(params, errlog=self._errlog))
        from mcp.client.streamable_http import streamable_http_client

        headers = {}
        for key, value in spec.headers.items():
            expanded = os.path.expandvars(value)
            unset = re.search(r"\$\{?(\w+)", expanded)
            if unset:  # never send the literal text; never show the value
                raise ConfigError(f"header {key} uses ${unset.group(1)}, which is not set")
            headers[key] = expanded
        # a client we pass in is ours to close: entered first, so it is closed after the transport
        client = await stack.enter_async_context(_http_client(headers, spec.startup_timeout))
        return await stack.enter_async_context(streamable_http_client(spec.url, http_client=client,
                                                                      max_sse_event_size=MAX_MESSAGE_BYTES))

    async def run(self, sdk: Any) -> None:
        import anyio

        with anyio.CancelScope() as self._scope:
            try:
                async with contextlib.AsyncExitStack() as stack:
                    streams = await self._connect(stack)
                    session = await stack.enter_async_context(sdk.ClientSession(streams[0], streams[1]))
                    try:
                        with anyio.fail_after(self.spec.startup_timeout):
                            await session.initialize()
                            self.listed = await _list_tools(session)
                    except Exception as exc:  # say so now; leaving the stack stops the server meanwhile
                        self.problem = self._why(_leaf(exc))
                        self.ready.set()
                        return
                    self.session = session
                    self.ready.set()
                    await anyio.sleep_forever()
            except Exception as exc:
                if not self._stopping:
                    self.problem = self._why(_leaf(exc))
            finally:
                self.session = None
                self.ready.set()
                self._close_errlog()

    def _why(self, exc: BaseException) -> str:
        if isinstance(exc, ConfigError):
            return exc.message
        if isinstance(exc, TimeoutError):
            return f"did not start and list its tools within {self.spec.startup_timeout:g} s (startup_timeout)"
        if isinstance(exc, OSError) and self.spec.command:
            return f"cannot start {self.spec.command[0]}: {exc.strerror or exc}"
        text = str(exc) or type(exc).__name__
        if "connection closed" in text.lower() and self.spec.command:
            tail = self._stderr_tail()
            return "exited while starting" + (f": {tail}" if tail else " (it printed nothing on stderr)")
        if self.spec.url and type(exc).__module__.startswith("httpx"):
            return f"cannot reach {self.spec.url}: {text}"
        return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text

    def _stderr_tail(self) -> str:
        log = self._errlog
        if log is None or log is sys.stderr:
            return ""
        with contextlib.suppress(OSError, ValueError):
            log.seek(0)
            lines = [line.strip() for line in log.read()[-4000:].splitlines() if line.strip()]
            return lines[-1][:300] if lines else ""
        return ""

    def _close_errlog(self) -> None:
        if self._errlog is not None and self._errlog is not sys.stderr:
            with contextlib.suppress(OSError):
                self._errlog.close()

    async def stop(self) -> None:
        self._stopping = True
        if self._scope is not None:
            self._scope.cancel()
        if self.task is not None:
            # the SDK's shutdown is shielded and bounded; the timeout only guards against a bug
            done, _ = await asyncio.wait({self.task}, timeout=SHUTDOWN_TIMEOUT)
            if not done:
                self.task.cancel()

    async def call(self, tool: McpTool, args: dict) -> tuple[bool, str, tuple[str, ...]]:
        session = self.session
        if session is None:
            why = f" ({self.problem})" if self.problem else ""
            return False, f"error: MCP server '{self.spec.name}' is not running{why}", ()
        from mcp import MCPError

        try:
            async with asyncio.timeout(tool.timeout + 2):  # the SDK's own timeout fires first
                result = await session.call_tool(tool.remote, args, read_timeout_seconds=tool.timeout)
        except (TimeoutError, MCPError) as exc:
            if isinstance(exc, TimeoutError) or "timed out" in str(exc).lower():
                return False, f"error: {tool.name} did not finish within {tool.timeout:g} s", ()
            if "connection closed" in str(exc).lower():
                tail = self._stderr_tail()
                return False, (f"error: MCP server '{self.spec.name}' has stopped (the connection closed"
                               + (f"; its last words: {tail}" if tail else "") + ")"), ()
            return False, f"error: MCP server '{self.spec.name}': {exc}", ()
        except Exception as exc:
            return False, f"error: MCP server '{self.spec.name}' failed: {self._why(_leaf(exc))}", ()
        data = result.model_dump(mode="json", by_alias=True, exclude_none=True)
        return call_output(data, tool.max_output_bytes)


class _BoundedLines:
    """A stdio server's stdout, handed on to the SDK in whole lines of at most `limit` bytes.

    The SDK's reader joins its buffer to every chunk and splits the lot again: a 50 MB line took
    minutes and hundreds of MiB. Here a line is gathered once, and one over the limit is skipped
    as it arrives; in its place goes a JSON-RPC error for the request it answered (its id is near
    the start), so the call fails at once with a clear message instead of waiting for its timeout."""

    _HEAD = 512  # bytes kept from the start of a skipped line, to find its id

    def __init__(self, stream: Any, limit: int):
        self._stream, self._limit = stream, limit
        self._pieces: list[bytes] = []
        self._size = 0
        self._head = b""
        self._over = False

    @property
    def extra_attributes(self) -> Any:
        return self._stream.extra_attributes

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def receive(self, max_bytes: int = 65536) -> bytes:
        while True:
            out = self._take(await self._stream.receive(max_bytes))
            if out:
                return out

    def _take(self, chunk: bytes) -> bytes:
        lines: list[bytes] = []
        while chunk:
            end = chunk.find(b"\n")
            part = chunk if end < 0 else chunk[:end]
            if len(self._head) < self._HEAD:
                self._head += part[: self._HEAD - len(self._head)]
            self._size += len(part)
            if self._size > self._limit:
                self._over, self._pieces = True, []
            elif not self._over:
                self._pieces.append(part)
            if end < 0:
                break
            lines.append(self._too_big() if self._over else b"".join(self._pieces) + b"\n")
            self._pieces, self._size, self._head, self._over = [], 0, b"", False
            chunk = chunk[end + 1:]
        return b"".join(lines)

    def _too_big(self) -> bytes:
        found = re.search(rb'"id"\s*:\s*(-?\d+|"(?:[^"\\]|\\.)*")', self._head)
        mib = self._limit // (1024 * 1024)
        if found is None:  # not an answer to a request of ours: nothing waits for it
            log.warning("an MCP server sent a message over %d MiB; it was skipped", mib)
            return b""
        error = {"code": -32603, "message": f"its answer was over {mib} MiB (voicecli's limit for one MCP message) "
                                            "and was skipped"}
        return json.dumps({"jsonrpc": "2.0", "id": json.loads(found.group(1)), "error": error}).encode() + b"\n"


_bounded_classes: dict[type, type] = {}


def _bound_stdio_messages() -> None:
    """Make the SDK's stdio client read each server's stdout through `_BoundedLines`.

    The SDK has no limit of its own; its process factory is wrapped (once) so the process it returns
    — still the same object and class, as the SDK's shutdown checks — shows a bounded stdout."""
    import mcp.client.stdio as stdio

    create = getattr(stdio, "_create_platform_compatible_process", None)
    if create is None or getattr(create, "voicecli_bounded", False):
        return  # another SDK layout: its own reader, unbounded

    async def bounded(*args: Any, **kwargs: Any) -> Any:
        process = await create(*args, **kwargs)
        cls = type(process)
        if process.stdout is None or not hasattr(process, "__dict__"):
            return process
        if cls not in _bounded_classes:
            _bounded_classes[cls] = type(cls.__name__, (cls,), {
                "stdout": property(lambda self: self.__dict__["voicecli_stdout"]), "__module__": cls.__module__})
        process.__dict__["voicecli_stdout"] = _BoundedLines(process.stdout, MAX_MESSAGE_BYTES)
        process.__class__ = _bounded_classes[cls]
        return process

    bounded.voicecli_bounded = True  # type: ignore[attr-defined]
    stdio._create_platform_compatible_process = bounded


async def _list_tools(session: Any) -> list[dict]:
    """Every page of tools/list, as wire dicts."""
    from mcp.types import PaginatedRequestParams

    tools, cursor = [], None
    for _ in range(100):  # a bound on pages: a server that loops on its cursor cannot hang us
        result = await session.list_tools(params=PaginatedRequestParams(cursor=cursor) if cursor else None)
        tools += [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in result.tools]
        cursor = result.next_cursor
        if not cursor:
            break
    return tools


def _http_client(headers: dict[str, str], connect_timeout: float) -> Any:
    """The SDK's HTTP client (httpx2) with our headers; reads may idle for 5 minutes (SSE streams)."""
    import httpx2

    timeout = httpx2.Timeout(connect_timeout, read=300)
    try:
        from mcp.shared._httpx_utils import create_mcp_http_client  # what the SDK's own helpers use
    except ImportError:  # pragma: no cover - a later 2.x moved it
        client = httpx2.AsyncClient(headers=headers, timeout=timeout)
    else:
        client = create_mcp_http_client(headers=headers, timeout=timeout)
    client.event_hooks["response"].append(_bound_json_body)
    return client


async def _bound_json_body(response: Any) -> None:
    """A JSON answer is read whole by the SDK (`response.aread()`): past `MAX_MESSAGE_BYTES` of it
    (decoded) the read fails as a stream error, which the SDK turns into an error answer for the
    request. Event streams are bounded per event by the SDK itself (`max_sse_event_size`)."""
    if response.headers.get("content-type", "").lower().startswith("application/json"):
        response.aread = functools.partial(_bounded_aread, response, MAX_MESSAGE_BYTES)


async def _bounded_aread(response: Any, limit: int) -> bytes:
    import httpx2

    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            await response.aclose()
            raise httpx2.StreamError(f"its answer was over {limit // (1024 * 1024)} MiB "
                                     "(voicecli's limit for one MCP message) and was skipped")
        chunks.append(chunk)
    return b"".join(chunks)


class McpHub:
    """The profile's servers for one session: `start()`, `call()`, `aclose()`."""

    def __init__(self, specs: Sequence[McpServerDef], *, base_dir: Path | None = None, debug: bool = False,
                 say: Callable[[str], None] | None = None):
        self.specs = list(specs)
        self.base_dir = base_dir
        self.debug = debug
        self.say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        self.servers: dict[str, _Server] = {}
        self.tools: list[McpTool] = []
        self._sigterm = False
        self._terminating: asyncio.Task | None = None

    async def start(self, *, require: bool = False, taken: Sequence[str] = ()) -> list[McpTool]:
        """Start every server in parallel; the tools of those that came up. `require`: any failure is
        a ConfigError (exit 3), after the others are stopped again."""
        sdk = import_sdk()
        route_sdk_logs(self.debug)
        loop = asyncio.get_running_loop()
        self.servers = {s.name: _Server(s, self.base_dir, self.debug) for s in self.specs}
        for server in self.servers.values():
            server.task = loop.create_task(server.run(sdk), name=f"mcp {server.spec.name}")
        self._catch_sigterm(loop)
        for server in self.servers.values():
            try:
                await asyncio.wait_for(server.ready.wait(), server.spec.startup_timeout + 5)
            except TimeoutError:  # the server's own timeout did not fire: stop it the hard way
                server.problem = server.problem or f"did not start within {server.spec.startup_timeout:g} s"
                await server.stop()
        names = set(taken)
        problems = []
        for server in self.servers.values():
            if server.problem:
                problems.append(f"MCP server '{server.spec.name}': {server.problem}")
                continue
            tools, notes = tool_defs(server.spec, server.listed, names)
            for tool in tools:
                tool.hub = self  # not a dataclass field: request fingerprints and logs never see it
            for note in notes:
                problems.append(f"MCP server '{server.spec.name}': {note}")
            self.tools += tools
        if problems and require:
            await self.aclose()
            raise ConfigError(problems[0], hint="check its [[mcp]] table (command or url, startup_timeout); "
                              "`voicecli tools list` shows what each server offers")
        for line in problems:
            left_out = "; its tools are left out" if "left out" not in line and "does not offer" not in line else ""
            self.say(f"voicecli: {line}{left_out}")
        return self.tools

    async def call(self, tool: McpTool, args: dict) -> tuple[bool, str, tuple[str, ...]]:
        server = self.servers.get(tool.server)
        if server is None:
            return False, f"error: no MCP server named '{tool.server}'", ()
        return await server.call(tool, args)

    def describe(self, tool: McpTool) -> str:
        """Where a tool runs, for approval prompts and `tools list`."""
        server = self.servers.get(tool.server)
        where = "" if server is None else f" ({shlex.join(server.spec.command) if server.spec.command else server.spec.url})"
        return f"MCP server '{tool.server}'{where}, tool {tool.remote}"

    async def aclose(self) -> None:
        from voicecli.signals import leave_signals_handled

        await asyncio.gather(*(s.stop() for s in self.servers.values()), return_exceptions=True)
        if self._sigterm:
            self._sigterm = False
            if leave_signals_handled():
                return  # the front end's handler took SIGTERM over since: it is not ours to remove
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)

    # SIGTERM: stop the servers first (bounded), then die of the signal as voicecli always has
    def _catch_sigterm(self, loop: asyncio.AbstractEventLoop) -> None:
        """Only where no front end handles SIGTERM itself (infer and chat do, and stop the servers
        on their way out): e.g. `tools run`, talk."""
        from voicecli.signals import leave_signals_handled

        if leave_signals_handled():
            return
        try:
            loop.add_signal_handler(signal.SIGTERM, self._on_sigterm)
            self._sigterm = True
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or not POSIX
            pass

    def _on_sigterm(self) -> None:
        if self._terminating is not None:
            return

        async def stop_then_die() -> None:
            try:
                await asyncio.wait_for(self.aclose(), SHUTDOWN_TIMEOUT)
            finally:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGTERM)

        self._terminating = asyncio.get_running_loop().create_task(stop_then_die())
