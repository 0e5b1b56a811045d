"""One neutral `ToolDef` → each wire dialect's tool JSON (protocols.md §1.3).

Responses: flat with `strict`. Chat Completions: nested under `function`, `strict` only when true.
Realtime: flat, no `strict`. Strict mode needs a normalised schema (every object closed, every
property required, optional ones nullable), built here once for Responses and Chat.
"""

from __future__ import annotations

import copy
from typing import Any

from voicecli.items import HOSTED_TYPES, ToolDef

TOOL_CHOICE_MODES = ("auto", "none", "required")
# JSON Schema keywords strict mode rejects; a schema using them cannot be made strict
_NOT_STRICT = ("allOf", "oneOf", "not", "if", "then", "else", "dependentRequired", "dependentSchemas",
               "patternProperties", "unevaluatedProperties", "propertyNames")


def to_responses(tool: ToolDef) -> dict[str, Any]:
    if tool.type in HOSTED_TYPES:
        return _hosted(tool)
    out: dict[str, Any] = {"type": "function", "name": tool.name}
    if tool.description:
        out["description"] = tool.description
    # strict is always sent: Responses would otherwise make the schema strict on its own (§1.3)
    out["parameters"] = strict_schema(tool) if tool.strict else tool.parameters
    out["strict"] = tool.strict
    return out


def to_chat(tool: ToolDef) -> dict[str, Any]:
    _refuse_hosted(tool, "chat")
    function: dict[str, Any] = {"name": tool.name}
    if tool.description:
        function["description"] = tool.description
    function["parameters"] = strict_schema(tool) if tool.strict else tool.parameters
    if tool.strict:
        function["strict"] = True
    return {"type": "function", "function": function}


def to_realtime(tool: ToolDef) -> dict[str, Any]:
    _refuse_hosted(tool, "realtime")
    out: dict[str, Any] = {"type": "function", "name": tool.name}
    if tool.description:
        out["description"] = tool.description
    out["parameters"] = tool.parameters
    return out


def forced_tool_name(choice: str | dict) -> str | None:
    """The tool a `tool_choice` setting forces by name, or None for a mode or a raw dict."""
    return None if isinstance(choice, dict) or choice in TOOL_CHOICE_MODES else choice


def strict_schema(tool: ToolDef) -> dict[str, Any]:
    """The tool's parameters normalised for strict mode; ValueError naming the tool if impossible."""
    try:
        return close_schema(tool.parameters, "parameters")
    except ValueError as exc:
        raise _strict_error(tool, str(exc)) from None


def close_schema(schema: dict[str, Any], path: str = "schema") -> dict[str, Any]:
    """A copy of an object schema normalised for strict mode (tools, structured output); ValueError
    with the reason when the schema cannot be made strict."""
    if schema.get("type", "object") != "object" or "anyOf" in schema:
        raise ValueError(f"the {path} root must be a plain object schema")
    try:
        return _close(copy.deepcopy(schema), path)
    except _NotStrict as exc:
        raise ValueError(str(exc)) from None


class _NotStrict(Exception):
    pass


def _strict_error(tool: ToolDef, reason: str) -> ValueError:
    return ValueError(f"tool '{tool.name}': cannot use strict mode: {reason} "
                      f"(fix the schema, or set strict = false for this tool)")


def _close(schema: Any, path: str) -> Any:
    """Recursively apply strict-mode rules in place; `path` names the spot for error messages."""
    if not isinstance(schema, dict):
        return schema
    for keyword in _NOT_STRICT:
        if keyword in schema:
            raise _NotStrict(f"'{keyword}' at {path} is not supported")
    kind = schema.get("type")
    if kind == "object" or (isinstance(kind, list) and "object" in kind) or "properties" in schema:
        extra = schema.get("additionalProperties", False)
        if extra is not False:
            raise _NotStrict(f"{path} allows additional properties")
        schema["additionalProperties"] = False
        props = schema.setdefault("properties", {})
        required = set(schema.get("required", ()))
        for name, sub in props.items():
            sub = _close(sub, f"{path}.{name}")
            props[name] = sub if name in required else _nullable(sub)
        schema["required"] = list(props)
    for key in ("items", "additionalItems"):
        if key in schema:
            schema[key] = _close(schema[key], f"{path}[]")
    if "prefixItems" in schema:
        schema["prefixItems"] = [_close(s, f"{path}[{i}]") for i, s in enumerate(schema["prefixItems"])]
    if "anyOf" in schema:
        schema["anyOf"] = [_close(s, f"{path}.anyOf[{i}]") for i, s in enumerate(schema["anyOf"])]
    for key in ("$defs", "definitions"):
        for name, sub in schema.get(key, {}).items():
            schema[key][name] = _close(sub, f"{key}.{name}")
    return schema


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """An originally-optional property: strict mode requires it, so let it be null instead."""
    kind = schema.get("type")
    if isinstance(kind, str):
        if kind != "null":
            schema["type"] = [kind, "null"]
    elif isinstance(kind, list):
        if "null" not in kind:
            schema["type"] = [*kind, "null"]
    else:  # $ref, anyOf, enum without a type: wrap it
        if any(isinstance(s, dict) and s.get("type") == "null" for s in schema.get("anyOf", ())):
            return schema
        return {"anyOf": [schema, {"type": "null"}]}
    if "enum" in schema and None not in schema["enum"]:
        schema["enum"] = [*schema["enum"], None]
    return schema


def _hosted(tool: ToolDef) -> dict[str, Any]:
    out = {"type": tool.type, **tool.options}
    if tool.type == "code_interpreter":
        out.setdefault("container", {"type": "auto"})  # the API requires one; "auto" is the usual choice
    return out


def _refuse_hosted(tool: ToolDef, transport: str) -> None:
    if tool.type in HOSTED_TYPES:
        raise ValueError(f"tool '{tool.name}': the hosted {tool.type} tool works only with the Responses "
                         f"API (transport ws or sse), not with transport '{transport}'")
