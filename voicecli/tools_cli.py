"""`voicecli tools list|run`: see what a profile offers the model, and try a tool by hand."""

from __future__ import annotations

import asyncio
import json
import shlex
import sys

from voicecli.errors import ExitCode, UsageError
from voicecli.events import ToolCall
from voicecli.profiles import HOSTED_TYPES, Profile, ToolDef
from voicecli.tools import NonInteractiveApprover, ToolBox, dialect_spec


def _how(tool: ToolDef) -> str:
    if tool.type in HOSTED_TYPES:
        return "hosted by the server (Responses API only)"
    if tool.command:
        return "command: " + shlex.join(tool.command) + (" (arguments as JSON on stdin)" if tool.stdin == "json" else "")
    return f"python: {tool.python}"


def list_tools(profile: Profile, json_out: bool = False) -> None:
    """Each tool, how it runs, its approval policy and the JSON each dialect receives (stdout)."""
    if json_out:
        from voicecli.profiles_cli import print_json

        print_json([_tool_json(tool) for tool in profile.tools])
        return
    if not profile.tools:
        print(f"profile '{profile.name}' defines no tools; add [[tools]] tables "
              "(try `voicecli tools list -p tools-demo`)", file=sys.stderr)
        return
    for i, tool in enumerate(profile.tools):
        if i:
            print()
        policy = "-" if tool.type in HOSTED_TYPES else tool.effective_approval
        print(f"{tool.name}  ·  approval: {policy}  ·  timeout: {tool.timeout:g} s")
        print(f"  {_how(tool)}")
        if tool.description:
            print(f"  {tool.description}")
        for dialect in ("responses", "chat", "realtime"):
            try:
                spec = json.dumps(dialect_spec(tool, dialect), ensure_ascii=False)
            except ValueError as exc:
                spec = f"(not available: {str(exc).split(': ', 1)[-1]})"
            print(f"  {dialect + ':':10} {spec}")


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
    if name not in names:
        raise UsageError(f"profile '{profile.name}' has no local tool named '{name}'",
                         hint=f"its tools: {', '.join(names)}" if names else "it defines no [[tools]]")
    # typing the command is the approval for `ask` tools; `never` tools stay refused
    box = ToolBox.for_profile(profile, NonInteractiveApprover(yes=True), debug=debug)
    (output,) = asyncio.run(box.run([ToolCall("cli", name, arguments)]))
    if not getattr(output, "ok", True):
        print(f"voicecli: {name}: {output.output.removeprefix('error: ')}", file=sys.stderr)
        return ExitCode.INTERNAL
    sys.stdout.write(output.output + "\n")
    return ExitCode.OK
