"""Strict checks of simulator output against the official SDK's types (test-only).

The SDK's pydantic models accept unknown fields (extra="allow"), so validating alone would miss a
misspelt field name; `assert_strict` also walks the parsed model and fails on any extra key.

openai and pydantic are imported inside the functions, not at the top: every pytest-xdist worker
imports each test module at collection, and the SDK costs about 0.8 s of CPU per worker.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pydantic

# Fields the real API sends that this SDK version does not model (seen in tests/traffic/*.sse).
REAL_EXTRAS = {"store"}


def extra_keys(obj: Any, path: str = "$") -> list[str]:
    from openai import BaseModel

    found: list[str] = []
    if isinstance(obj, BaseModel):
        for key in obj.model_extra or {}:
            if key not in REAL_EXTRAS:
                found.append(f"{path}.{key}")
        for name in type(obj).model_fields:
            found += extra_keys(getattr(obj, name), f"{path}.{name}")
    elif isinstance(obj, (list, tuple)):
        for i, item in enumerate(obj):
            found += extra_keys(item, f"{path}[{i}]")
    elif isinstance(obj, dict):
        for key, value in obj.items():
            found += extra_keys(value, f"{path}.{key}")
    return found


def assert_strict(obj: Any) -> None:
    extras = extra_keys(obj)
    assert not extras, f"fields unknown to the SDK: {extras}"


_adapters: dict[Any, pydantic.TypeAdapter] = {}


def validate(type_: Any, data: dict | str) -> Any:
    """Validate `data` as `type_` (a model or a union) and check it has no unknown fields."""
    if isinstance(data, str):
        data = json.loads(data)
    if type_ not in _adapters:
        import pydantic

        _adapters[type_] = pydantic.TypeAdapter(type_)
    value = _adapters[type_].validate_python(data)
    assert_strict(value)
    return value


def sse_events(text: str) -> list[tuple[str | None, str]]:
    """(event, data) pairs of an SSE body."""
    from voicecli.sim.script import parse_sse

    return parse_sse(text)
