"""`voicecli tools list|run`: see what a profile offers the model, and try a tool by hand."""

from __future__ import annotations

import asyncio
import builtins
import json
import shlex
import sys

from voicecli.errors import ExitCode, UsageError
from voicecli.events import ToolCall
from voicecli.profiles import Profile
from voicecli.items import HOSTED_TYPES, ToolDef
from voicecli.tools import NonInteractiveApprover, ToolBox, dialect_spec


def _how(tool: ToolDef, box: ToolBox | None = None) -> str:
    if getattr(tool, "server", None) and box is not None and box.mcp is not None:
        return box.mcp.describe(tool)
    if tool.type == "mcp":
        return f"hosted MCP server {tool.options.get('server_url', '')} (called by the API; Responses only)"
    if tool.type in HOSTED_TYPES:
        return "hosted by the server (Responses API only)"
    if tool.command:
        return "command: " + shlex.join(tool.command) + (" (arguments as JSON on stdin)" if tool.stdin == "json" else "")
    return f"python: {tool.python}"


def list_tools(profile: Profile, json_out: bool = False) -> None:
    """Each tool, how it runs, its approval policy and the JSON each dialect receives (stdout).
    MCP servers are started to ask them for their tools, and stopped again."""
    if not profile.tools and not profile.mcp and not json_out:
        print(f"profile '{profile.name}' defines no tools; add [[tools]] or [[mcp]] tables "
              "(try `voicecli tools list -p tools-demo`)", file=sys.stderr)
        return

    def show(box: ToolBox | None) -> None:
        if json_out:
            from voicecli.ui.listing import print_json

            print_json([_tool_json(tool) for tool in profile.tools])
        else:
            _print_tools(profile, box)

    if not profile.mcp:
        show(None)
        return

    async def with_servers() -> None:
        box = ToolBox.for_profile(profile, NonInteractiveApprover())
        try:
            await box.start()
            show(box)
        finally:
            await box.aclose()

    asyncio.run(with_servers())


def _print_tools(profile: Profile, box: ToolBox | None) -> None:
    from voicecli.sanitize import for_terminal

    def print(text: str = "") -> None:  # an MCP server chose the names and descriptions: shown, never obeyed
        builtins.print(for_terminal(text, sys.stdout))

    for i, tool in enumerate(profile.tools):
        if i:
            print()
        policy = "-" if tool.type in HOSTED_TYPES else tool.effective_approval
        print(f"{tool.name}  ·  approval: {policy}  ·  timeout: {tool.timeout:g} s")
        print(f"  {_how(tool, box)}")
        if tool.description:
            print(f"  {tool.description}")
        for dialect in ("responses", "chat", "realtime"):
            try:
                spec = dialect_spec(tool, dialect)
                if isinstance(spec.get("headers"), dict):  # a hosted MCP server's credentials
                    spec = {**spec, "headers": {k: "***" for k in spec["headers"]}}
                text = json.dumps(spec, ensure_ascii=False)
            except ValueError as exc:
                text = f"(not available: {str(exc).split(': ', 1)[-1]})"
            print(f"  {dialect + ':':10} {text}")


def _tool_json(tool: ToolDef) -> dict:
    hosted = tool.type in HOSTED_TYPES
    dialects, problems = {}, {}
    for dialect in ("responses", "chat", "realtime"):
        try:
            dialects[dialect] = dialect_spec(tool, dialect)
        except ValueError as exc:
            dialects[dialect] = None
            problems[dialect] = str(exc).split(": ", 1)[-1]
    return {"name": tool.name, "type": tool.type, "description": tool.description or None,
            "approval": None if hosted else tool.effective_approval, "timeout": None if hosted else tool.timeout,
            "command": tool.command, "stdin": tool.stdin if tool.command else None, "python": tool.python,
            "parameters": None if hosted else tool.parameters, "dialects": dialects, "unavailable": problems}


def run_tool(profile: Profile, name: str, arguments: str, debug: bool = False) -> int:
    """Run one tool as the model would (same checks and limits); its output on stdout."""
    names = [t.name for t in profile.tools if t.type not in HOSTED_TYPES]
    server = next((s.name for s in profile.mcp if name.startswith(f"{s.name}__")), None)
    if name not in names and server is None:
        known = names + [f"{s.name}__…" for s in profile.mcp]
        raise UsageError(f"profile '{profile.name}' has no local tool named '{name}'",
                         hint=f"its tools: {', '.join(known)}" if known else "it defines no [[tools]] or [[mcp]]")
    # typing the command is the approval for `ask` tools; `never` tools stay refused
    box = ToolBox.for_profile(profile, NonInteractiveApprover(yes=True), debug=debug)

    async def run() -> object:
        try:
            if server is not None and name not in names:  # start only the server that has the tool
                await box.start(only=[server])  # problems are printed; a missing tool is the error
                if name not in {t.name for t in box.tools}:
                    offered = [t.name for t in box.tools if getattr(t, "server", None) == server]
                    raise UsageError(f"MCP server '{server}' has no tool offered as '{name}'",
                                     hint=f"its tools: {', '.join(offered) or 'none'}")
            (output,) = await box.run([ToolCall("cli", name, arguments)])
            return output
        finally:
            await box.aclose()

    output = asyncio.run(run())
    if not getattr(output, "ok", True):
        print(f"voicecli: {name}: {output.output.removeprefix('error: ')}", file=sys.stderr)
        return ExitCode.INTERNAL
    sys.stdout.write(output.output + "\n")
    for url in getattr(output, "images", ()):  # a data: URL per line, for `| base64 -d` and friends
        sys.stdout.write(url + "\n")
    return ExitCode.OK
