"""The simulator's deterministic "model": what to answer, given a normalised view of a request.

Every protocol front of the simulator (Responses, Chat, Realtime) reduces its request to a
`Turn` and streams the `Plan` back in its own dialect, so all of them answer alike:

- after tool results, it reports them: "Tool get_time returned: 12:00.";
- when the request offers tools and the user text names one or more of them (as a word), it calls
  those, with the first JSON object in the user text as arguments (else `{}`);
- otherwise it echoes: "You said: <last user text>";
- a request for structured output (a JSON Schema) gets, instead of text, a JSON value that conforms
  to the schema (`voicecli.sim.instance`), with the echo in its first string.

A script (see `voicecli.sim.script`) can override any turn.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field


@dataclass
class Turn:
    user_text: str = ""
    tool_names: list[str] = field(default_factory=list)
    tool_results: list[tuple[str, str]] = field(default_factory=list)  # (tool name or call id, output)
    instructions: str | None = None
    wants_reasoning: bool = False
    input_chars: int = 0  # size of everything sent, for usage numbers
    output_schema: dict | None = None  # structured output requested: answer with a conforming JSON value


@dataclass
class PlannedCall:
    name: str
    arguments: str  # JSON text


@dataclass
class Plan:
    text: str | None = None
    calls: list[PlannedCall] = field(default_factory=list)
    reasoning: str | None = None


ECHO_PREFIX = "You said: "


def first_json_object(text: str) -> dict | None:
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def plan(turn: Turn) -> Plan:
    reasoning = f"Considering: {turn.user_text[:80]}" if turn.wants_reasoning else None
    if turn.tool_results:
        text = " ".join(f"Tool {name} returned: {output.strip()}." for name, output in turn.tool_results)
        return Plan(text=text, reasoning=reasoning)
    named = [n for n in turn.tool_names if re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", turn.user_text)]
    if named:
        args = json.dumps(first_json_object(turn.user_text) or {})
        return Plan(calls=[PlannedCall(n, args) for n in named], reasoning=reasoning)
    if turn.output_schema is not None:
        from .instance import instance

        return Plan(text=json.dumps(instance(turn.output_schema, f"{ECHO_PREFIX}{turn.user_text}")), reasoning=reasoning)
    return Plan(text=f"{ECHO_PREFIX}{turn.user_text}", reasoning=reasoning)


def split_deltas(text: str) -> list[str]:
    """Word-sized pieces (each with its trailing space), like a tokenizer's stream."""
    return re.findall(r"\s*\S+\s*|\s+", text) or [text]


def count_tokens(text_or_chars: str | int) -> int:
    """A stable stand-in for a tokenizer: about four characters a token."""
    n = text_or_chars if isinstance(text_or_chars, int) else len(text_or_chars)
    return max(1, (n + 3) // 4) if n else 0
