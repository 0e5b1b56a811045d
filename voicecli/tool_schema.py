"""Tool schemas: a structural check of `[[tools]]` schemas when a profile loads, argument checks when a tool runs.

Pure functions with no I/O, kept apart from `tools.py` (which runs tools with asyncio and
subprocesses) so that loading a profile stays cheap.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

PLACEHOLDER = re.compile(r"^\{(\w+)\}$")


# ---- JSON Schema: a structural check at load time (cheap: no validator imported) -------------

JSON_TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")


def schema_problems(schema: Any, path: str = "parameters") -> list[str]:
    """Why `schema` is not a usable JSON Schema (empty when it is)."""
    if not isinstance(schema, dict):
        return [f"{path} must be a table"]
    out = []
    kind = schema.get("type")
    for k in kind if isinstance(kind, list) else [] if kind is None else [kind]:
        if k not in JSON_TYPES:
            out.append(f"{path}.type: '{k}' is not a JSON type ({', '.join(JSON_TYPES)})")
    props = schema.get("properties", {})
    if not isinstance(props, dict):
        out.append(f"{path}.properties must be a table of schemas")
        props = {}
    for name, sub in props.items():
        out += schema_problems(sub, f"{path}.properties.{name}")
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        out.append(f"{path}.required must be an array of property names")
    else:
        out += [f"{path}.required names '{r}', which is not in properties" for r in required if r not in props]
    for key in ("items", "additionalProperties"):
        sub = schema.get(key)
        if sub is not None and not isinstance(sub, bool):
            out += schema_problems(sub, f"{path}.{key}")
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            subs = schema[key]
            if not isinstance(subs, list) or not subs:
                out.append(f"{path}.{key} must be a non-empty array of schemas")
            else:
                for i, sub in enumerate(subs):
                    out += schema_problems(sub, f"{path}.{key}[{i}]")
    if "enum" in schema and not isinstance(schema["enum"], list):
        out.append(f"{path}.enum must be an array")
    for key in ("$defs", "definitions"):
        for name, sub in (schema.get(key) or {}).items():
            out += schema_problems(sub, f"{path}.{key}.{name}")
    return out


def argument_errors(schema: dict, value: Any) -> list[str]:
    """Where `value` breaks `schema`, one short line per problem: a full JSON Schema check (pattern,
    lengths, formats, $ref, allOf/not …) by `jsonschema`, imported on the first tool call, not here."""
    from voicecli.schema import errors

    try:
        return errors(schema, value)
    except Exception as exc:  # noqa: BLE001 -- a broken schema (bad regex, bad $ref) must not end the session
        return [f"the tool's parameters are not a usable JSON Schema ({type(exc).__name__}: {exc})"]


def drop_absent(schema: dict, args: dict) -> dict:
    """Strict mode makes optional parameters required-but-nullable; null there means "not given"."""
    required = set(schema.get("required", ()))
    return {k: v for k, v in args.items() if v is not None or k in required}


def placeholder_schema(command: Sequence[str]) -> dict[str, Any]:
    """The parameters a command tool without `parameters` gets: each `{name}` a required string."""
    names = list(dict.fromkeys(m.group(1) for part in command if (m := PLACEHOLDER.match(part))))
    return {"type": "object", "properties": {n: {"type": "string"} for n in names}, "required": names}


def tool_problems(tool: dict[str, Any]) -> list[str]:
    """What a raw [[tools]] function table gets wrong beyond key types (used when a profile loads)."""
    params = tool.get("parameters") or placeholder_schema(tool.get("command") or [])
    out = schema_problems(params)
    if not out and tool.get("strict", True):
        from voicecli.wire.tools import strict_schema

        try:
            strict_schema(_tool_def(name=str(tool.get("name")), parameters=params))
        except ValueError as exc:
            out.append(str(exc).split(": ", 1)[-1])
    names = set(params.get("properties", {})) if isinstance(params.get("properties"), dict) else set()
    for part in tool.get("command") or []:
        m = PLACEHOLDER.match(part)
        if m and m.group(1) not in names:
            out.append(f"command placeholder {part} names no parameter (parameters: {', '.join(sorted(names)) or 'none'})")
        elif not m and any(f"{{{n}}}" in part for n in names):
            out.append(f"command element '{part}' has a placeholder inside other text; placeholders are "
                       "whole argv elements, e.g. [\"--city\", \"{city}\"]")
    if "python" in tool:
        out += [f"{key} applies only to command tools" for key in ("env", "cwd", "stdin") if key in tool]
    return out


def _tool_def(**fields: Any):
    from voicecli.profiles import ToolDef  # lazily: profiles imports this module while loading

    return ToolDef(**fields)
