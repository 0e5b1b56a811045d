"""Function tools from the profile: argument checks, approval, and running them locally.

`ToolBox.run(calls)` is the conversation's `ToolRunner`: for each call of one model round it checks
the call (known tool, JSON arguments, schema), asks the `Approver` one call at a time, then runs
the approved calls together and returns one result per call, in order. Nothing the model sends
can crash the session: every problem becomes an error *result* the model can read and act on.

Command tools run as an argv (never a shell) in their own process group, so a timeout or Ctrl-C
kills the whole group (and any process that left the group but still holds its output pipes); their
pipes are never read past the deadline. Python tools are called in-process, in a daemon thread, so
one that hangs or blocks ends at its timeout too. MCP servers' tools (`[[mcp]]`) join the box when
`start()` brings the servers up, and are called through `voicecli.mcp`. Hosted tools (web_search,
…) are run by the server and never reach here.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from voicecli.errors import ConfigError
from voicecli.events import ToolCall, ToolResult
from voicecli.sanitize import bounded_text
from voicecli.sanitize import escape_controls, redact
from voicecli.tool_schema import PLACEHOLDER, argument_errors, drop_absent
from voicecli.items import FunctionOutput, ToolDef

STDERR_TAIL = 2000  # bytes of a failing command's stderr sent back to the model


@dataclass
class Approval:
    allowed: bool
    reason: str | None = None  # sent back to the model on denial
    always: bool = False  # remember "yes" for this tool for the rest of the session


class Approver(Protocol):
    async def __call__(self, tool: ToolDef, call: ToolCall) -> Approval: ...


class NonInteractiveApprover:
    """For `infer` and other sessions that cannot ask: `ask` tools run only when allowed up front."""

    def __init__(self, allow: Iterable[str] = (), yes: bool = False):
        self.allow = set(allow)
        self.yes = yes

    async def __call__(self, tool: ToolDef, call: ToolCall) -> Approval:
        if self.yes or tool.name in self.allow:
            return Approval(True)
        return Approval(False, f"tool '{tool.name}' needs the user's approval and this session cannot ask "
                               f"(the user can allow it with --allow-tool {tool.name} or --yes)")


@dataclass(frozen=True, slots=True)
class ToolOutput(FunctionOutput):
    """A FunctionOutput that also says how the run went (for ToolResult events and logs)."""

    ok: bool = True
    duration_ms: float = 0.0
    arguments: str = ""


def to_event(call: ToolCall, output: FunctionOutput, duration_ms: float) -> ToolResult:
    """The neutral event for one finished call; `duration_ms` is used when the output lacks its own."""
    return ToolResult(call.call_id, call.name, call.arguments, getattr(output, "ok", True), output.output,
                      getattr(output, "duration_ms", duration_ms))


def result_line(event: ToolResult) -> str:
    """One line for humans per finished call: name, arguments, duration, then ok or the error."""
    args = event.arguments if len(event.arguments) <= 200 else event.arguments[:199] + "…"
    status = "ok"
    if not event.ok:
        status = (event.output.splitlines() or ["error"])[0][:200]
    # the name, arguments and error come from the model: escape what could drive the terminal
    return escape_controls(f"tool {event.name} {args} · {event.duration_ms:.0f} ms · {status}")


class ToolBox:
    def __init__(self, tools: Sequence[ToolDef], approver: Approver, *, base_dir: Path | None = None,
                 secret_env: Iterable[str] = (), debug: bool = False, mcp_servers: Sequence[Any] = (),
                 profile: Any = None):
        self.tools = list(tools)
        self.mcp_servers = list(mcp_servers)  # [[mcp]] tables, started by start()
        self.mcp: Any = None  # voicecli.mcp.McpHub once started
        self._profile = profile
        self.approver = approver
        self.base_dir = base_dir
        # the usual key variable is withheld even when a caller forgets to name it
        self.secret_env = {"OPENAI_API_KEY", *(v for v in secret_env if v)}
        self.debug = debug
        self._functions = {t.name: t for t in self.tools if t.type == "function"}
        self._always: set[str] = set()

    @classmethod
    def for_profile(cls, profile: Any, approver: Approver, *, debug: bool = False) -> ToolBox:
        """The profile's tools; python tools import from its folder; its key variable stays secret."""
        return cls(profile.tools, approver, base_dir=profile.path.parent if profile.path else None,
                   secret_env=(profile.connection.api_key_env,), debug=debug,
                   mcp_servers=getattr(profile, "mcp", ()), profile=profile)

    async def start(self, *, require: bool = False, only: Iterable[str] | None = None) -> None:
        """Start the profile's MCP servers (in parallel; `only`: just these). Their tools join this box
        and the profile's tool list, which is what requests offer. `require`: a failure is fatal."""
        specs = [s for s in self.mcp_servers if only is None or s.name in set(only)]
        if any(getattr(t, "server", None) for t in self.tools):
            return  # already running for this profile (chat's /talk): those tools call their own hub
        if not specs or self.mcp is not None:
            return
        from voicecli.mcp import McpHub

        self.mcp = McpHub(specs, base_dir=self.base_dir, debug=self.debug)
        tools = await self.mcp.start(require=require, taken=[t.name for t in self.tools])
        self.tools += tools
        self._functions.update((t.name, t) for t in tools)
        if self._profile is not None:
            self._profile.tools.extend(tools)

    async def aclose(self) -> None:
        """Stop the MCP servers (no process outlives this) and take their tools back out."""
        if self.mcp is None:
            return
        hub, self.mcp = self.mcp, None
        gone = {id(t) for t in hub.tools}
        self.tools = [t for t in self.tools if id(t) not in gone]
        self._functions = {n: t for n, t in self._functions.items() if id(t) not in gone}
        if self._profile is not None:
            self._profile.tools[:] = [t for t in self._profile.tools if id(t) not in gone]
        await hub.aclose()

    def approval_state(self, name: str) -> str:
        if name in self._always:
            return "always (this session)"
        tool = self._functions.get(name)
        return tool.effective_approval if tool else "never"

    async def run(self, calls: list[ToolCall]) -> list[FunctionOutput]:
        # checks and approvals one call at a time (one prompt at a time), then the approved run together
        outputs: list[FunctionOutput] = [None] * len(calls)  # type: ignore[list-item]  # all filled below
        approved: list[tuple[int, ToolDef, ToolCall, dict]] = []
        for i, call in enumerate(calls):
            tool, args, problem = self._check(call)
            if problem is None:
                problem = await self._approve(tool, call)
            if problem is None:
                approved.append((i, tool, call, args))
            else:
                outputs[i] = self._output(call, False, problem, 0.0)
        done = await asyncio.gather(*(self._timed(tool, call, args) for _, tool, call, args in approved))
        for (i, *_), output in zip(approved, done):
            outputs[i] = output
        return outputs

    # ---- checks and approval ---------------------------------------------------------------

    def _check(self, call: ToolCall) -> tuple[ToolDef | None, dict, str | None]:
        tool = self._functions.get(call.name)
        if tool is None:
            known = ", ".join(self._functions) or "none"
            return None, {}, f"error: there is no tool named '{call.name}' (tools: {known})"
        try:
            args = json.loads(call.arguments or "{}")
        except ValueError as exc:
            return tool, {}, f"error: the arguments are not valid JSON ({exc}); send one JSON object"
        if not isinstance(args, dict):
            return tool, {}, "error: the arguments must be a JSON object"
        args = drop_absent(tool.parameters, args)
        problems = argument_errors(tool.parameters, args)
        if problems:
            return tool, args, f"error: the arguments do not match the schema of {tool.name}: " + "; ".join(problems)
        return tool, args, None

    async def _approve(self, tool: ToolDef, call: ToolCall) -> str | None:
        """None when the call may run, else the denial text for the model."""
        policy = tool.effective_approval
        if policy == "never":
            return f"denied: tool '{tool.name}' is disabled (approval = \"never\")"
        if policy == "auto" or tool.name in self._always:
            return None
        try:
            answer = await self.approver(tool, call)
        except Exception as exc:  # a broken prompt denies; it never ends the session
            answer = Approval(False, f"the approval prompt failed ({type(exc).__name__})")
        if not answer.allowed:
            return f"denied: {answer.reason or 'the user did not allow this call'}"
        if answer.always:
            self._always.add(tool.name)
        return None

    # ---- running ---------------------------------------------------------------------------

    async def _timed(self, tool: ToolDef, call: ToolCall, args: dict) -> ToolOutput:
        started = time.monotonic()
        images: tuple[str, ...] = ()
        if getattr(tool, "server", None):
            hub = getattr(tool, "hub", None) or self.mcp
            if hub is None:
                ok, text = False, f"error: the MCP server of {tool.name} is not running"
            else:
                ok, text, images = await hub.call(tool, args)
        elif tool.command:
            ok, text = await self._run_command(tool, args)
        else:
            ok, text = await self._run_python(tool, args)
        return self._output(call, ok, text, (time.monotonic() - started) * 1000, images)

    def _output(self, call: ToolCall, ok: bool, text: str, duration_ms: float,
                images: tuple[str, ...] = ()) -> ToolOutput:
        # a tool that was handed the key must not echo it onward (a short value is no key)
        text = redact(text, *(s for s in map(os.environ.get, self.secret_env) if s and len(s) >= 8),
                      urls=False)
        return ToolOutput(call.call_id, text, call.name, images, ok=ok, duration_ms=duration_ms, arguments=call.arguments)

    async def _run_command(self, tool: ToolDef, args: dict) -> tuple[bool, str]:
        argv = command_argv(tool.command or [], args)
        cwd = self._cwd(tool)
        if cwd is not None and not cwd.is_dir():
            return False, f"error: the tool's working folder {cwd} does not exist"
        stdin = json.dumps(args).encode() if tool.stdin == "json" else None
        try:
            transport, capture = await _start(
                lambda: _Capture(tool.max_output_bytes), *argv,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=self._env(tool), cwd=cwd, start_new_session=True)  # own process group: killable as one
        except OSError as exc:
            return False, f"error: cannot start {argv[0]}: {exc.strerror or exc}"
        finished = False
        try:
            if stdin is not None:
                pipe = transport.get_pipe_transport(0)
                pipe.write(stdin)  # a child that never reads it only breaks the pipe, silently
                pipe.close()
            async with asyncio.timeout(tool.timeout):
                await capture.done  # exited, and its output pipes are at end of file
            finished = True
        except TimeoutError:
            why = ""
            if capture.exited.done():  # it ended, but something it started still holds its output
                why = ": a process it started kept its output open"
            return False, f"error: {tool.name} did not finish within {tool.timeout:g} s and was stopped{why}"
        finally:
            if not finished:  # timeout or cancellation: partial output discarded
                await _stop(transport, capture)
            transport.close()
        code = transport.get_returncode()
        if code != 0:
            how = f"exited with status {code}" if code > 0 else f"was killed by signal {-code}"
            tail = capture.err.decode("utf-8", "replace").strip()
            return False, f"error: {tool.name} {how}" + (f": {tail}" if tail else "")
        return True, bounded_text(bytes(capture.out), capture.total, tool.max_output_bytes)

    def _env(self, tool: ToolDef) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in self.secret_env}
        env.update({k: os.path.expandvars(v) for k, v in tool.env.items()})  # only what the profile lists
        return env

    def _cwd(self, tool: ToolDef) -> Path | None:
        if not tool.cwd:
            return None
        path = Path(tool.cwd).expanduser()
        return path if path.is_absolute() or self.base_dir is None else self.base_dir / path

    async def _run_python(self, tool: ToolDef, args: dict) -> tuple[bool, str]:
        try:
            func = self._import(tool.python or "")
        except Exception as exc:
            return False, f"error: cannot load {tool.python}: {type(exc).__name__}: {exc}"
        try:
            async with asyncio.timeout(tool.timeout):
                # in a daemon thread (an async tool in an event loop of its own there), so a tool that
                # blocks cannot stall the session past its timeout, nor keep voicecli from exiting
                value = await in_daemon_thread(func, **args)
        except TimeoutError:
            return False, f"error: {tool.name} did not finish within {tool.timeout:g} s"
        except (Exception, SystemExit) as exc:
            text = f"error: {tool.name} raised {type(exc).__name__}: {exc}"
            if self.debug:
                text += "\n" + "".join(traceback.format_exception(exc)).rstrip()
            return False, text
        if value is None:
            raw = b""
        elif isinstance(value, str):
            raw = value.encode()
        else:
            raw = json.dumps(value, ensure_ascii=False, default=str).encode()
        return True, bounded_text(raw[: tool.max_output_bytes], len(raw), tool.max_output_bytes)

    def _import(self, ref: str) -> Any:
        module_name, _, attr = ref.partition(":")
        folder = str(self.base_dir) if self.base_dir else None
        added = folder is not None and folder not in sys.path
        if added:
            sys.path.insert(0, folder)
        try:
            obj = importlib.import_module(module_name)
        finally:
            if added:
                sys.path.remove(folder)
        for part in attr.split("."):
            obj = getattr(obj, part)
        if not callable(obj):
            raise TypeError(f"{ref} is not callable")
        return obj


class _Capture(asyncio.SubprocessProtocol):
    """A command's stdout (the first `limit` bytes and the full size) and its stderr's tail.
    Reads everything as it comes, so a chatty child never blocks on a full pipe."""

    def __init__(self, limit: int):
        loop = asyncio.get_running_loop()
        self.limit = limit
        self.out, self.total, self.err = bytearray(), 0, bytearray()
        self.exited = loop.create_future()
        self.done = loop.create_future()  # exited and both pipes closed

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd == 1:
            self.total += len(data)
            self.out += data[: max(0, self.limit - len(self.out))]
        else:
            self.err += data
            del self.err[:-STDERR_TAIL]

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def _start(factory: Any, *argv: str, **kwargs: Any) -> tuple[asyncio.SubprocessTransport, _Capture]:
    """`loop.subprocess_exec`, never abandoned halfway. Cancelled while asyncio connects the pipes
    (a moment a busy machine stretches), Python 3.11 kills only the command, then waits for its pipes
    to close — which a child that left the group (setsid) may hold for as long as it runs. Instead
    the start completes, then the command is stopped as on any cancellation, and the cancellation
    goes on."""
    starting = asyncio.ensure_future(asyncio.get_running_loop().subprocess_exec(factory, *argv, **kwargs))
    try:
        return await asyncio.shield(starting)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):  # it could not start after all: nothing to stop
            transport, capture = await starting
            try:
                await _stop(transport, capture)
            finally:
                transport.close()
        raise


async def _stop(transport: asyncio.SubprocessTransport, capture: _Capture) -> None:
    """Kill a command's process group and whatever still holds its output pipes, then stop reading.

    A child that left the group (`setsid`) escapes killpg; it is found by the pipe it holds. The
    pipes are closed whatever happens, so nothing ever waits on them past the deadline."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(transport.get_pid(), signal.SIGKILL)
    pipes = set()
    for fd in (1, 2):
        pipe = transport.get_pipe_transport(fd)
        file = pipe.get_extra_info("pipe") if pipe is not None else None
        if file is not None and not pipe.is_closing():
            with contextlib.suppress(OSError, ValueError):
                pipes.add(os.fstat(file.fileno()).st_ino)
    _kill_pipe_holders(pipes)
    # reaped before the pipes close, so asyncio's child watcher gets the status (bounded: SIGKILL was sent)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(2):
            await asyncio.shield(capture.exited)


def _kill_pipe_holders(inodes: set[int]) -> None:
    """SIGKILL every other process holding one of these pipes (Linux: found through /proc; elsewhere
    they are only cut off when the pipes close). Repeated in case one forked meanwhile."""
    if not inodes or not os.path.isdir("/proc/self/fd"):
        return
    names = {f"pipe:[{inode}]" for inode in inodes}
    me = os.getpid()
    for _ in range(3):
        found = False
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) == me:
                continue
            try:
                holds = any(os.readlink(fd.path) in names for fd in os.scandir(f"/proc/{entry.name}/fd"))
                if holds:
                    os.kill(int(entry.name), signal.SIGKILL)
                    found = True
            except OSError:  # gone meanwhile, or not ours to look at
                continue
        if not found:
            return


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def in_daemon_thread(func: Any, /, *args: Any, **kwargs: Any) -> asyncio.Future:
    """`func(*args, **kwargs)` in a daemon thread (an awaitable result is run in an event loop of its
    own there): awaiting it can be abandoned, and the thread never keeps the process alive."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def settle(value: Any, exc: BaseException | None) -> None:
        if future.done():
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(value)

    def work() -> None:
        try:
            value, exc = func(*args, **kwargs), None
            if inspect.isawaitable(value):
                value = asyncio.run(_awaited(value))
        except BaseException as e:  # even sys.exit() in a tool is only that tool's failure
            value, exc = None, e if isinstance(e, Exception) else RuntimeError(f"{type(e).__name__}: {e}")
        with contextlib.suppress(RuntimeError):  # the loop may be gone after a timeout
            loop.call_soon_threadsafe(settle, value, exc)

    threading.Thread(target=work, name="voicecli-tool", daemon=True).start()
    return future


def command_argv(template: Sequence[str], args: dict) -> list[str]:
    """`{name}` elements become the argument's value as one argv element (JSON text for non-strings);
    an element whose argument is absent is left out. Nothing else is substituted."""
    argv = []
    for part in template:
        m = PLACEHOLDER.match(part)
        if m is None:
            argv.append(part)
        elif args.get(m.group(1)) is not None:
            value = args[m.group(1)]
            argv.append(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
    return argv


# ---- profile checks and dialects ------------------------------------------------------------

DIALECT_OF = {"ws": "responses", "sse": "responses", "chat": "chat", "realtime": "realtime"}


def dialect_spec(tool: ToolDef, dialect: str) -> dict:
    """The tool's JSON as `dialect` receives it; ValueError when it cannot carry the tool."""
    from voicecli.wire import tools as wire_tools

    convert = {"responses": wire_tools.to_responses, "chat": wire_tools.to_chat, "realtime": wire_tools.to_realtime}
    return convert[dialect](tool)


def check_transport(tools: Sequence[ToolDef], transport: str) -> None:
    """Refuse, before anything is sent, tools the transport cannot carry (hosted tools on chat/realtime)."""
    for tool in tools:
        try:
            dialect_spec(tool, DIALECT_OF[transport])
        except ValueError as exc:
            hint = "use -t ws or -t sse, or remove the tool from the profile"
            if tool.type == "mcp":
                hint = "use -t ws or -t sse, or run the server locally with an [[mcp]] table (every transport)"
            raise ConfigError(str(exc), hint=hint) from None
        for key, value in (tool.options.get("headers") or {}).items() if tool.type == "mcp" else ():
            unset = re.search(r"\$\{?(\w+)", str(value))
            if unset:  # never send the literal ${VAR} to a third party
                raise ConfigError(f"tool '{tool.name}': header {key} uses ${unset.group(1)}, which is not set")
