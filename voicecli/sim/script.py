"""Scripts: fix the simulator's answers and faults turn by turn.

A script is a JSON or TOML file (chosen by suffix; `.toml` is TOML, anything else JSON) with a
list of turns. Every request that produces a model turn, on any front (Responses over HTTP or
WebSocket, Chat Completions, Realtime), takes the next turn in order; when the list runs out the
deterministic brain (`voicecli.sim.brain`) answers again.

    {"turns": [
      {"reply": "Hello there."},
      {"tool_calls": [{"name": "get_time", "arguments": {"tz": "UTC"}}]},
      {"reply": "Thinking done.", "reasoning": "Let me think."},
      {"fault": {"status": 429, "retry_after_ms": 100}},
      {"fault": "error=nested; after=3"},
      {"replay": "recorded/responses_sse_text_01.sse"}
    ]}

or in TOML:

    [[turns]]
    reply = "Hello there."

    [[turns]]
    tool_calls = [{ name = "get_time", arguments = { tz = "UTC" } }]

Turn keys:

- `reply` (str): the assistant text.
- `tool_calls` (list): function calls, each `{"name", "arguments": object or JSON text,
  "call_id"?}`. Only `reply` or `tool_calls` and the turn is that; with both, the text comes
  first and the calls follow (Responses) / are sent together (Chat).
- `reasoning` (str): a reasoning summary (Responses) before the output.
- `fault` (table or string): a fault for this turn, same keys as the `x-sim-fault` header
  (`voicecli.sim.faults`). A turn with only a refusing fault (`status`, `quota`) answers with
  that error; a turn with only stream knobs (latency, drop, …) lets the brain write the text.
- `replay` (path, relative to the script file): send a recorded stream verbatim. `.sse` files
  are sent event by event (HTTP) or as one JSON per WebSocket message; `.jsonl` files hold one
  JSON event per line (the `realtime_ws_*.jsonl` layout, or `{"dir":"recv","event":…}` wire
  lines, of which only the received ones are replayed).
"""

from __future__ import annotations

import json
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .brain import Plan, PlannedCall
from .faults import Fault, parse


class ScriptError(ValueError):
    pass


@dataclass
class ScriptTurn:
    reply: str | None = None
    tool_calls: list[dict] = field(default_factory=list)
    reasoning: str | None = None
    fault: Fault | None = None
    replay: Path | None = None
    index: int = 0

    @property
    def has_output(self) -> bool:
        return self.reply is not None or bool(self.tool_calls)

    def plan(self, fallback: Plan) -> Plan:
        """The turn as a brain `Plan` (the brain's own plan when the turn fixes no output)."""
        if not self.has_output:
            if self.reasoning is not None:
                return Plan(text=fallback.text, calls=fallback.calls, reasoning=self.reasoning)
            return fallback
        calls = []
        for call in self.tool_calls:
            args = call.get("arguments", {})
            calls.append(PlannedCall(str(call["name"]), args if isinstance(args, str) else json.dumps(args)))
        return Plan(text=self.reply, calls=calls, reasoning=self.reasoning or fallback.reasoning)

    def call_id(self, i: int) -> str | None:
        if i < len(self.tool_calls):
            return self.tool_calls[i].get("call_id")
        return None

    def replay_frames(self) -> list[tuple[str | None, str]]:
        """The recorded stream as (event name or None, data text) pairs, in order."""
        assert self.replay is not None
        text = self.replay.read_text(encoding="utf-8")
        if self.replay.suffix == ".jsonl":
            frames = []
            for line in text.splitlines():
                if not line.strip():
                    continue
                obj = json.loads(line)
                if "dir" in obj and "event" in obj:  # interleaved wire log: keep what the server sent
                    if obj["dir"] != "recv":
                        continue
                    obj = obj["event"]
                frames.append((obj.get("type"), json.dumps(obj)))
            return frames
        return parse_sse(text)

    def replay_sse(self) -> list[str]:
        """The recorded stream as SSE frames: an `.sse` file's own bytes, block by block."""
        assert self.replay is not None
        if self.replay.suffix == ".jsonl":
            return [(f"event: {e}\n" if e else "") + f"data: {d}\n\n" for e, d in self.replay_frames()]
        text = self.replay.read_text(encoding="utf-8")
        return [block + "\n\n" for block in text.split("\n\n") if block.strip()]


def parse_sse(text: str) -> list[tuple[str | None, str]]:
    """Split an SSE body into (event, data) pairs; comment lines are skipped."""
    frames = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        event, data = None, []
        for line in block.split("\n"):
            if line.startswith(":") or not line:
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
        if data:
            frames.append((event, "\n".join(data)))
    return frames


class Script:
    """The turns of one script file, handed out in order (thread-safe)."""

    def __init__(self, turns: list[ScriptTurn], path: Path | None = None) -> None:
        self.turns = turns
        self.path = path
        self._next = 0
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str | Path) -> Script:
        path = Path(path)
        try:
            raw = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ScriptError(f"cannot read script {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise ScriptError(f"cannot read script {path}: not UTF-8 text") from None
        try:
            data = tomllib.loads(raw) if path.suffix == ".toml" else json.loads(raw)
        except ValueError as exc:
            kind = "TOML" if path.suffix == ".toml" else "JSON"
            raise ScriptError(f"cannot read script {path}: invalid {kind}: {exc}") from None
        try:
            return cls.from_data(data, base=path.parent, path=path)
        except ScriptError as exc:
            raise ScriptError(f"script {path}: {exc}") from None

    @classmethod
    def from_data(cls, data: dict | list, base: Path | None = None, path: Path | None = None) -> Script:
        items = data.get("turns") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise ScriptError("a script needs a list of turns (`turns`)")
        turns = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise ScriptError(f"turn {i}: must be a table")
            unknown = set(item) - {"reply", "tool_calls", "reasoning", "fault", "replay"}
            if unknown:
                raise ScriptError(f"turn {i}: unknown key(s) {sorted(unknown)}")
            calls = item.get("tool_calls") or []
            if not isinstance(calls, list) or not all(isinstance(c, dict) and "name" in c for c in calls):
                raise ScriptError(f"turn {i}: tool_calls must be a list of {{name, arguments}}")
            replay = None
            if item.get("replay"):
                replay = (base or Path.cwd()) / item["replay"]
                if not replay.is_file():
                    raise ScriptError(f"turn {i}: replay file {replay} not found")
            try:
                fault = parse(item.get("fault"))
            except ValueError as exc:
                raise ScriptError(f"turn {i}: {exc}") from None
            turns.append(
                ScriptTurn(
                    reply=item.get("reply"),
                    tool_calls=calls,
                    reasoning=item.get("reasoning"),
                    fault=fault,
                    replay=replay,
                    index=i,
                )
            )
        return cls(turns, path)

    def next_turn(self) -> ScriptTurn | None:
        """Take the next scripted turn; None once the script is used up."""
        with self._lock:
            if self._next >= len(self.turns):
                return None
            turn = self.turns[self._next]
            self._next += 1
            return turn

    @property
    def remaining(self) -> int:
        return len(self.turns) - self._next

    def rewind(self) -> None:
        with self._lock:
            self._next = 0
