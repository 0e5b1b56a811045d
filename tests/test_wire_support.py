"""Shared helpers for the wire tests: recorded traffic, SSE replay, and a strict checker that a
body fits one of the openai SDK's param TypedDicts (no unknown keys, required keys present,
literals and scalar types right). Its own sanity tests are at the bottom."""

from __future__ import annotations

import collections.abc
import json
import types
import typing
from typing import Any, Literal, Union

import typing_extensions
from shared_data import recording

from voicecli.wire.sse import SSEDecoder

SPLITS = (1, 7, 64, None)  # byte chunk sizes for SSE replay; None = the whole body at once


def traffic_bytes(name: str) -> bytes:
    return recording(name).read_bytes()


def traffic_jsonl(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in recording(name).read_text().splitlines() if line.strip()]


def chunks(data: bytes, size: int | None) -> list[bytes]:
    return [data] if size is None else [data[i:i + size] for i in range(0, len(data), size)]


def replay_sse(data: bytes, size: int | None, decoder: Any) -> list[Any]:
    """Bytes → SSE → JSON payloads → `decoder`, the way a transport drives it; then finish()."""
    sse = SSEDecoder()
    events: list[Any] = []
    for chunk in chunks(data, size):
        for message in sse.feed(chunk):
            if not message.is_done:
                events += decoder.feed(message.json())
    for message in sse.flush():
        if not message.is_done:
            events += decoder.feed(message.json())
    return events + decoder.finish()


def of_type(events: list[Any], cls: type) -> list[Any]:
    return [e for e in events if isinstance(e, cls)]


# --------------------------------------------------------------------------------------------
# TypedDict conformance


def conformance_problems(value: Any, tp: Any, path: str = "$") -> list[str]:
    """Problems that keep `value` from fitting `tp` (an SDK param type); [] when it fits."""
    if tp is Any or tp is object:
        return []
    if typing_extensions.is_typeddict(tp):
        if not isinstance(value, dict):
            return [f"{path}: expected an object, got {type(value).__name__}"]
        hints = typing.get_type_hints(tp)
        problems = [f"{path}.{k}: unknown key" for k in value if k not in hints]
        problems += [f"{path}.{k}: required key missing" for k in _required_keys(tp) if k not in value]
        for k, v in value.items():
            if k in hints:
                problems += conformance_problems(v, hints[k], f"{path}.{k}")
        return problems
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        attempts = [conformance_problems(value, a, path) for a in args]
        return [] if any(not a for a in attempts) else min(attempts, key=len)
    if origin is Literal:
        return [] if value in args else [f"{path}: {value!r} is not one of {args}"]
    if tp is type(None):
        return [] if value is None else [f"{path}: expected null"]
    if tp is bool:
        return [] if isinstance(value, bool) else [f"{path}: expected a bool"]
    if tp is int:
        return [] if isinstance(value, int) and not isinstance(value, bool) else [f"{path}: expected an int"]
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return [] if ok else [f"{path}: expected a number"]
    if tp is str:
        return [] if isinstance(value, str) else [f"{path}: expected a string"]
    if origin in (dict, collections.abc.Mapping) or tp is dict:
        return [] if isinstance(value, dict) else [f"{path}: expected an object"]
    if origin in (list, collections.abc.Iterable, collections.abc.Sequence) or (
            origin is not None and getattr(origin, "__name__", "") == "SequenceNotStr"):
        if not isinstance(value, list):
            return [f"{path}: expected an array"]
        return [p for i, v in enumerate(value) for p in conformance_problems(v, args[0] if args else Any, f"{path}[{i}]")]
    return []  # a construct this checker does not model: do not judge it


def _required_keys(tp: Any) -> list[str]:
    # the SDK writes `Required[...]` under `from __future__ import annotations`, which hides it
    # from __required_keys__; read it from the resolved hints instead
    extras = typing_extensions.get_type_hints(tp, include_extras=True)
    required = (typing.Required, typing_extensions.Required)
    not_required = (typing.NotRequired, typing_extensions.NotRequired)
    return [k for k, hint in extras.items() if typing.get_origin(hint) in required
            or (k in tp.__required_keys__ and typing.get_origin(hint) not in not_required)]


def assert_conforms(value: Any, tp: Any) -> None:
    problems = conformance_problems(value, tp)
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------------------------
# sanity checks of the helpers themselves


def test_checker_rejects_unknown_and_missing_keys_and_bad_literals():
    from openai.types.responses.function_tool_param import FunctionToolParam

    good = {"type": "function", "name": "f", "parameters": {}, "strict": True}
    assert conformance_problems(good, FunctionToolParam) == []
    assert conformance_problems({**good, "bogus": 1}, FunctionToolParam) == ["$.bogus: unknown key"]
    assert "$.name: required key missing" in conformance_problems(
        {k: v for k, v in good.items() if k != "name"}, FunctionToolParam)
    assert conformance_problems({**good, "type": "fn"}, FunctionToolParam)


def test_chunks_cover_every_byte():
    data = bytes(range(200))
    for size in SPLITS:
        assert b"".join(chunks(data, size)) == data
