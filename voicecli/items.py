"""The neutral things that go down to the wire layer: history items, tool specs and the request.

The session layer keeps its history as these items; each dialect module in `wire/` (`responses`,
`chat`, `realtime`) converts them into its own JSON. A `ToolDef` is one tool as a profile's
`[[tools]]` table declares it (its field metadata drives the profile checks) and as every dialect
receives it. Nothing here imports configuration or I/O, so `wire/` can depend on it.

The history items and the request are frozen: they are shared by the history, the requests already
sent and the conversation log, so changing one in place would make them disagree. Every class has
a docstring: without one, @dataclass writes one from `inspect.signature` at import.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

HOSTED_TYPES = ("web_search", "file_search", "code_interpreter", "mcp")  # tools the server runs itself


def option(default: Any = None, *, choices: tuple = (), lo: float | None = None, hi: float | None = None,
           help: str = "", factory: Any = None) -> Any:
    """A settings field with what the profile checks need: allowed values, range, help text."""
    meta = {"choices": choices, "lo": lo, "hi": hi, "help": help}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class ToolDef:
    """One tool: a `[[tools]]` table of a profile, a hosted tool, or an MCP server's tool."""

    name: str = option("")
    description: str = option("")
    type: str = option("function", choices=("function", "web_search", "file_search", "code_interpreter", "mcp"))
    parameters: dict = option(factory=lambda: {"type": "object", "properties": {}})
    strict: bool = option(True)
    command: list[str] | None = option()
    stdin: str = option("none", choices=("none", "json"))
    python: str | None = option(help="package.module:function")
    timeout: float = option(30.0, lo=0.1, hi=3600)
    approval: str | None = option(choices=("ask", "auto", "never"), help="default: ask for command, auto for python")
    env: dict[str, str] = option(factory=dict)
    cwd: str | None = option()
    max_output_bytes: int = option(65536, lo=1)
    options: dict = option(factory=dict, help="hosted tools: passed through as-is")

    @property
    def effective_approval(self) -> str:
        return self.approval or ("auto" if self.python else "ask")



Role = Literal["user", "assistant", "system"]
Dialect = Literal["responses", "chat", "realtime"]


@dataclass(frozen=True, slots=True)
class Message:
    """A user, assistant or system message in the history."""

    role: Role
    text: str
    images: Sequence[str] = ()  # image URLs or data: URLs (user messages)
    interrupted: bool = False  # the assistant was cut off (barge-in, Ctrl-C); text is what was kept


@dataclass(frozen=True, slots=True)
class FunctionCall:
    """A tool call the model made, kept in the history."""

    call_id: str
    name: str
    arguments: str  # JSON text exactly as the model sent it


@dataclass(frozen=True, slots=True)
class FunctionOutput:
    """A tool call's result, sent back to the model."""

    call_id: str
    output: str
    name: str | None = None  # the tool's name, for dialects/logs that want it
    images: Sequence[str] = ()  # data: URLs an MCP tool returned; only Responses can carry them


@dataclass(frozen=True, slots=True)
class OpaqueItem:
    """A wire item that must be echoed back unchanged (e.g. a Responses reasoning item).

    Only the dialect that produced it understands it; other dialects skip it.
    """

    dialect: Dialect
    data: Mapping[str, Any]


HistoryItem = Message | FunctionCall | FunctionOutput | OpaqueItem


@dataclass(frozen=True, slots=True)
class Request:
    """One request to the model: settings, instructions, the history to send and the tools offered."""

    model: str
    instructions: str | None
    items: Sequence[HistoryItem]
    tools: Sequence[ToolDef] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)  # ModelSettings.request_settings()
    previous_response_id: str | None = None  # Responses only; `items` then holds just the new items
    store: bool = False  # the one source of `store`; settings["store"] is ignored by the builders
    text_format: Mapping[str, Any] | None = None  # structured output: {"name", "schema", "strict"}
