"""Tool schemas: a structural check of `[[tools]]` schemas when a profile loads, argument checks when a tool runs.

Pure functions with no I/O, kept apart from `tools.py` (which runs tools with asyncio and
subprocesses) so that loading a profile stays cheap.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from voicecli.items import ToolDef

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
    params = _parameters(tool)
    out = schema_problems(params)
    if not out and tool.get("strict", True):
        from voicecli.wire.tools import strict_schema

        try:
            strict_schema(ToolDef(name=str(tool.get("name")), parameters=params))
        except ValueError as exc:
            out.append(str(exc).split(": ", 1)[-1])
    if "python" in tool:
        out += [f"{key} applies only to command tools" for key in ("env", "cwd", "stdin") if key in tool]
    return out


def _parameters(tool: dict[str, Any]) -> dict[str, Any]:
    return tool.get("parameters") or placeholder_schema(tool.get("command") or [])


EMBEDDED = re.compile(r"\{([A-Za-z_]\w*)\}")  # `{name}` inside a longer element: never substituted


def command_problems(tool: dict[str, Any]) -> list[str]:
    """Placeholders in a command template that would reach the program as literal text."""
    props = _parameters(tool).get("properties")
    names = set(props) if isinstance(props, dict) else set()
    out = []
    for part in tool.get("command") or []:
        m = PLACEHOLDER.match(part)
        if m and m.group(1) not in names:
            out.append(f"command placeholder {part} names no parameter "
                       f"(parameters: {', '.join(sorted(names)) or 'none'})")
        elif not m and (inner := EMBEDDED.search(part)):
            name = inner.group(1)
            option = re.match(r"^(-[\w-]+)=", part)
            example = json.dumps([option.group(1) if option else f"--{name}", f"{{{name}}}"])
            out.append(f"command element '{part}' has a placeholder inside other text, which is never "
                       f"substituted; a placeholder is a whole argv element: write {example}")
    return out


def command_warnings(tool: dict[str, Any]) -> list[tuple[str, str]]:
    """(warning, hint) when a `{name}` element could carry an option: a value starting with '-'
    (`--output=/tmp/x`) is read as one unless a "--" element comes before it."""
    command = list(tool.get("command") or [])
    props = _parameters(tool).get("properties")
    props = props if isinstance(props, dict) else {}
    risky = []
    for i, part in enumerate(command):
        if part == "--":
            break
        m = PLACEHOLDER.match(part)
        if m is None or i == 0:
            continue
        before = command[i - 1]
        if before.startswith("--") and "=" not in before:
            continue  # the value of a long option (`--city {city}`): the program takes it as is
        if _may_start_with_dash(props.get(m.group(1))):
            risky.append(i)
    if not risky:
        return []
    shown = ", ".join(f'"{command[i]}"' for i in risky)
    fixed = json.dumps([*command[:risky[0]], "--", *command[risky[0]:]])
    return [(f"command element{'s' * (len(risky) > 1)} {shown} come{'s' * (len(risky) == 1)} before any \"--\": "
             "a value starting with '-' (say --output=/tmp/x) would be read as an option",
             f"end the options with \"--\": {fixed}")]


def _may_start_with_dash(schema: Any) -> bool:
    """Whether a value valid under `schema` could become an argv element starting with '-'."""
    if not isinstance(schema, dict):
        return True
    if "enum" in schema and isinstance(schema["enum"], list):
        return any(str(v).startswith("-") or isinstance(v, (int, float)) and not isinstance(v, bool) and v < 0
                   for v in schema["enum"] if v is not None)
    kind = schema.get("type")
    kinds = set(kind if isinstance(kind, list) else [kind]) - {"null"}
    if kinds and kinds <= {"boolean"}:
        return False
    if kinds and kinds <= {"integer", "number", "boolean"}:
        low = schema.get("minimum")
        return not (isinstance(low, (int, float)) and low >= 0)
    return True
