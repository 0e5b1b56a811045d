"""The neutral request that goes down to the wire layer (plus one neutral usage helper).

The session layer keeps its history as these items; each dialect module (`responses`, `chat`,
`realtime`) converts them into its own JSON. Frozen and slotted: cheap, comparable, hashable
where their contents are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from voicecli.events import Usage
from voicecli.profiles import ToolDef

Role = Literal["user", "assistant", "system"]
Dialect = Literal["responses", "chat", "realtime"]


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    text: str
    images: Sequence[str] = ()  # image URLs or data: URLs (user messages)
    interrupted: bool = False  # the assistant was cut off (barge-in, Ctrl-C); text is what was kept


@dataclass(frozen=True, slots=True)
class FunctionCall:
    call_id: str
    name: str
    arguments: str  # JSON text exactly as the model sent it


@dataclass(frozen=True, slots=True)
class FunctionOutput:
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
    model: str
    instructions: str | None
    items: Sequence[HistoryItem]
    tools: Sequence[ToolDef] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)  # ModelSettings.request_settings()
    previous_response_id: str | None = None  # Responses only; `items` then holds just the new items
    store: bool = False  # the one source of `store`; settings["store"] is ignored by the builders
    text_format: Mapping[str, Any] | None = None  # structured output: {"name", "schema", "strict"}


def usage_from(raw: Mapping[str, Any] | None, *, input_key: str, output_key: str,
               input_details: str, output_details: str) -> Usage | None:
    """Token usage in any dialect's spelling (they differ only in key names) → neutral Usage."""
    if not raw:
        return None
    cached = (raw.get(input_details) or {}).get("cached_tokens") or 0
    reasoning = (raw.get(output_details) or {}).get("reasoning_tokens") or 0
    return Usage(raw.get(input_key) or 0, raw.get(output_key) or 0, cached, reasoning)
