"""The neutral event vocabulary shared by every layer (see DESIGN.md).

`wire/` turns Responses, Chat Completions and Realtime traffic into these; front ends consume only
these and never see a wire dict. Plain dataclasses: cheap to build on the hot path, easy
to compare in tests, and `to_json()` gives the `--events` JSON Lines form.

They are not `frozen`: nothing hashes an event or changes one (a changed copy is made with
`dataclasses.replace`), and on Python 3.11 `frozen=True` costs each class three more generated
methods, compiled at import (~0.5 ms a class, on every command's start-up path). Each class has a
docstring for the same reason: without one, @dataclass writes one from `inspect.signature`.
"""

from __future__ import annotations

import base64
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal


@dataclass(slots=True)
class TextDelta:
    """A piece of the answer's text."""

    text: str
    item_id: str | None = None
    refusal: bool = False  # a refusal part rather than ordinary output text


@dataclass(slots=True)
class ReasoningDelta:
    """A piece of a reasoning summary."""

    text: str
    item_id: str | None = None


@dataclass(slots=True)
class ToolCall:
    """The model asks for a local tool to run."""

    call_id: str
    name: str
    arguments: str  # the JSON text exactly as the model sent it
    item_id: str | None = None


@dataclass(slots=True)
class HostedToolProgress:
    """Progress of a server-side tool (web_search, file_search, code_interpreter)."""

    tool: str
    status: str
    item_id: str | None = None


@dataclass(slots=True)
class ToolResult:
    """A local tool call finished (or was refused); the session sends `output` back to the model."""

    call_id: str
    name: str
    arguments: str
    ok: bool
    output: str
    duration_ms: float = 0.0


@dataclass(slots=True)
class AudioDelta:
    """A piece of the spoken answer."""

    pcm: bytes  # PCM16 LE mono 24 kHz
    item_id: str | None = None
    response_id: str | None = None
    # cascade: the sentence this audio begins to speak (text-to-speech knows it; Realtime does not),
    # so a barge-in can tell which sentences were heard
    spoken: str | None = None


@dataclass(slots=True)
class Transcript:
    """Text of what the user or the assistant said (a part, or the whole with `final`)."""

    role: Literal["user", "assistant"]
    text: str
    final: bool = False
    item_id: str | None = None


@dataclass(slots=True)
class SpeechStarted:
    """The server heard the user start speaking."""

    audio_start_ms: int = 0
    item_id: str | None = None


@dataclass(slots=True)
class SpeechStopped:
    """The server heard the user stop speaking."""

    audio_end_ms: int = 0
    item_id: str | None = None


@dataclass(slots=True)
class Usage:
    """Token counts of a response; `+` adds two, for a turn's or a session's totals."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    # Realtime: the audio part of the counts above (priced higher); 0 for text
    audio_input_tokens: int = 0
    audio_output_tokens: int = 0
    audio_cached_tokens: int = 0

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


TurnStatus = Literal["completed", "incomplete", "failed", "cancelled"]


@dataclass(slots=True)
class TurnEnd:
    """The response is over: how it ended, and its id."""

    status: TurnStatus
    response_id: str | None = None
    reason: str | None = None  # incomplete/cancelled reason, e.g. "max_output_tokens"
    # Responses only: the output items as the server holds them, echoed back in the next request
    output_items: tuple[dict[str, Any], ...] = field(default=(), repr=False)


@dataclass(slots=True)
class ResponseStarted:
    """A Realtime response began (`response.created`): its audio and text follow."""

    response_id: str | None = None


@dataclass(slots=True)
class Disconnected:
    """The voice session lost its connection (or renewed it); a new one follows with the history replayed."""

    reason: str
    planned: bool = False  # a renewal before the server's age limit, not a failure


ErrorKind = Literal["auth", "rate_limit", "quota", "network", "timeout", "invalid_request", "not_found", "server", "protocol"]


@dataclass(slots=True)
class Error:
    """A failure, classified: `kind` says what went wrong, `retryable` whether trying again may help."""

    kind: ErrorKind
    message: str
    retryable: bool = False
    request_id: str | None = None
    code: str | None = None
    status: int | None = None
    retry_after: float | None = None  # seconds, from headers or the error frame


Event = (
    TextDelta | ReasoningDelta | ToolCall | ToolResult | HostedToolProgress | AudioDelta | Transcript
    | SpeechStarted | SpeechStopped | Usage | TurnEnd | Error | ResponseStarted | Disconnected
)


def to_json(event: Event) -> dict[str, Any]:
    """The `--events` form: {"type": "text_delta", ...fields}; audio as base64."""
    name = type(event).__name__
    kind = "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")
    data = asdict(event)
    if isinstance(event, Usage):  # text usage keeps its four fields
        data = {k: v for k, v in data.items() if v or not k.startswith("audio_")}
    if isinstance(event, AudioDelta):
        data["pcm"] = base64.b64encode(event.pcm).decode("ascii")
    return {"type": kind, **data}
