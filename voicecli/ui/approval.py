"""The one tool-approval prompt, for `chat` (a prompt line) and `talk` (a key, or a line from a pipe).

The user sees the tool and its exact arguments and answers y (once), a (always, this session) or
n (no; chat also asks for an optional reason, which goes back to the model). The question says what
to press: chat reads a line (y, then Enter); talk on a terminal takes the key alone. Chat keeps
line input on purpose: keys typed ahead while an answer streams reach the next prompt, and one of
them must not approve a tool by itself.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Awaitable, Callable

from voicecli.sanitize import escape_controls

CHOICES = "Allow? y once · a always · n no"
QUESTION = f"{CHOICES} [y/a/N, Enter]: "  # a line: the answer needs Enter (empty is no)
QUESTION_KEY = f"{CHOICES} [press y, a or n]: "  # talk on a terminal: one key answers, no Enter


def describe(tool, call, runs_on: str | None = None) -> str:
    """What is about to run: the tool, its arguments (pretty JSON) and the command line or MCP
    server, if any."""
    try:
        arguments = json.dumps(json.loads(call.arguments), indent=2, ensure_ascii=False)
    except ValueError:
        arguments = call.arguments
    arguments = escape_controls(arguments, keep="\n")  # the model wrote them: no terminal controls
    command = f"\n  runs: {shlex.join(tool.command)}" if tool.command else ""
    if runs_on:
        command = f"\n  runs on: {runs_on}"
    return f"The model wants to run the tool '{tool.name}' with these arguments:\n{arguments}{command}"


async def approve(tool, call, *, say: Callable[[str], None], ask: Callable[[str], Awaitable[str | None]],
                  reason: bool = True, runs_on: str | None = None, single_key: bool = False):
    """Ask until the answer is clear; None (Ctrl-C, Ctrl-D, end of input) declines. `single_key`:
    `ask` takes one key press (talk's keyboard), not a line ending in Enter, and the question says so."""
    from voicecli.tools import Approval

    say(describe(tool, call, runs_on))
    while True:
        answer = await ask(QUESTION_KEY if single_key else QUESTION)
        if answer is None:
            return Approval(False, "the user declined")
        answer = answer.strip().lower()
        if answer in ("y", "yes"):
            return Approval(True)
        if answer in ("a", "always"):
            return Approval(True, always=True)
        if answer in ("n", "no", ""):
            why = (await ask("Reason for the model (optional), then Enter: ") or "").strip() if reason else ""
            return Approval(False, why or None)
