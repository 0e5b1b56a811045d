"""JSON Schemas the user gives (`infer --schema`, `/schema`) and the one validator for them and for tool arguments.

A schema comes inline (`'{"type": "object", …}'`), from a file (`person.json`), or in llm's concise
form: `'name, age int, bio: one sentence'` — fields separated by commas (or newlines), each a
name, an optional type (str, int, float, bool; default str) and an optional `: description`.

Validation uses the `jsonschema` package (Draft 2020-12, formats checked where the standard
library can), imported only when something is validated: it costs ~70 ms, which commands that
validate nothing should not pay.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from voicecli.errors import UsageError

CONCISE_TYPES = {"str": "string", "string": "string", "int": "integer", "integer": "integer",
                 "float": "number", "number": "number", "bool": "boolean", "boolean": "boolean"}
_NAME = re.compile(r"^[A-Za-z_][\w-]*$")
MAX_ERRORS = 5  # reasons listed for one invalid value


def load(spec: str, label: str = "--schema") -> dict[str, Any]:
    """A schema from JSON text, a .json file, or the concise form; UsageError when it is none of them."""
    text = spec.strip()
    source = label
    if not text.startswith("{") and (text.endswith(".json") or Path(text).expanduser().is_file()):
        path = Path(text).expanduser()
        try:
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"{label} {spec}: cannot read it: {getattr(exc, 'strerror', None) or 'not UTF-8'}") from None
        source = str(path)
    if text.startswith("{"):
        try:
            schema = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"{source}: not valid JSON: {exc}") from None
    else:
        schema = concise(text, label)
    check(schema, source)
    return schema


def concise(text: str, label: str = "--schema") -> dict[str, Any]:
    """llm's concise schema syntax → an object schema with every field required."""
    parts = text.split("\n") if "\n" in text else text.split(",")
    properties: dict[str, Any] = {}
    for part in (p.strip() for p in parts):
        if not part:
            continue
        head, _, description = part.partition(":")
        words = head.split()
        if not words or len(words) > 2 or not _NAME.match(words[0]):
            raise UsageError(f"{label}: cannot read the field '{part}'",
                             hint="fields look like 'name, age int, bio: one sentence' (types: str, int, float, bool)")
        kind = CONCISE_TYPES.get(words[1].lower()) if len(words) == 2 else "string"
        if kind is None:
            raise UsageError(f"{label}: unknown type '{words[1]}' for field '{words[0]}'",
                             hint="types: str, int, float, bool")
        prop: dict[str, Any] = {"type": kind}
        if description.strip():
            prop["description"] = description.strip()
        properties[words[0]] = prop
    if not properties:
        raise UsageError(f"{label}: no fields given", hint=f"e.g. {label} 'name, age int, bio: one sentence'")
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def check(schema: Any, source: str = "--schema") -> None:
    """UsageError unless `schema` is a valid JSON Schema (Draft 2020-12)."""
    if not isinstance(schema, dict):
        raise UsageError(f"{source}: a JSON Schema must be an object, got {type(schema).__name__}")
    validator_class = _validator_class()
    from jsonschema.exceptions import SchemaError

    try:
        validator_class.check_schema(schema)
    except SchemaError as exc:
        where = "".join(f"[{p!r}]" for p in exc.path)
        raise UsageError(f"{source}: not a valid JSON Schema: {exc.message}" + (f" (at {where})" if where else "")) from None


def errors(schema: dict[str, Any], value: Any, *, root: str = "") -> list[str]:
    """Why `value` does not match `schema`: up to MAX_ERRORS lines like `path: reason` (empty when it does)."""
    validator = _validator(json.dumps(schema, sort_keys=True))
    found = sorted(validator.iter_errors(value), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    out = []
    for error in found[:MAX_ERRORS]:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
        where = f"{root}.{where}" if root and where else (where or root)
        out.append(f"{where}: {error.message}" if where else error.message)
    if len(found) > MAX_ERRORS:
        out.append(f"(and {len(found) - MAX_ERRORS} more)")
    return out


def response_format(schema: dict[str, Any]) -> dict[str, Any]:
    """The neutral structured-output request: a name, the schema to send, and whether it is strict.

    Strict mode needs every object closed and every property required; a schema that can be made so
    is normalised (optional properties become required-but-nullable) and sent strict, else as given."""
    from voicecli.wire.tools import close_schema

    name = re.sub(r"[^A-Za-z0-9_-]", "_", str(schema.get("title") or "answer"))[:64] or "answer"
    try:
        return {"name": name, "schema": close_schema(schema), "strict": True}
    except ValueError:
        return {"name": name, "schema": schema, "strict": False}


# ---- the validator, cached per schema -----------------------------------------------------------

_VALIDATORS: dict[str, Any] = {}


def _validator_class():
    from jsonschema import Draft202012Validator

    return Draft202012Validator


def _validator(key: str):
    validator = _VALIDATORS.get(key)
    if validator is None:
        cls = _validator_class()
        validator = _VALIDATORS[key] = cls(json.loads(key), format_checker=cls.FORMAT_CHECKER)
    return validator
