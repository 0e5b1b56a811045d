"""A JSON value that conforms to a JSON Schema: how the simulator answers a structured-output request.

Deterministic and small: the first string field carries the user's words (so tests can see which
turn answered); enums and consts use their first value; numbers start at their minimum; arrays
get `minItems` items (at least one); every property of an object is present. Covers what
structured outputs use (type, properties, required, items, enum, const, anyOf/oneOf, $ref into
$defs, min/max, minLength/maxLength, a few formats). `pattern` is not solved: such strings are
left as plain text.
"""

from __future__ import annotations

from typing import Any

FORMATS = {"date": "2026-01-02", "date-time": "2026-01-02T03:04:05Z", "time": "03:04:05Z",
           "email": "sim@example.com", "uri": "https://example.com/", "uuid": "00000000-0000-4000-8000-000000000000",
           "ipv4": "192.0.2.1", "ipv6": "2001:db8::1", "hostname": "example.com"}


def instance(schema: Any, text: str = "") -> Any:
    """A value valid for `schema`; `text` fills the first free-form string."""
    return _Builder(schema, text).build(schema, depth=0)


class _Builder:
    def __init__(self, root: Any, text: str):
        self.root = root
        self.text = text

    def _string(self, schema: dict) -> str:
        if schema.get("format") in FORMATS:
            return FORMATS[schema["format"]]
        value, self.text = (self.text or "text"), ""  # the user's words once, then a placeholder
        low, high = schema.get("minLength", 0), schema.get("maxLength")
        value = value.ljust(low, ".")
        return value[:high] if high is not None else value

    def build(self, schema: Any, depth: int) -> Any:
        if not isinstance(schema, dict) or depth > 32:
            return None
        if "$ref" in schema:
            return self.build(self._resolve(schema["$ref"]), depth + 1)
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            return schema["enum"][0]
        for key in ("anyOf", "oneOf"):
            if schema.get(key):  # prefer a branch that is not just null
                options = [s for s in schema[key] if not (isinstance(s, dict) and s.get("type") == "null")]
                return self.build((options or schema[key])[0], depth + 1)
        if "allOf" in schema:
            merged: dict = {}
            for part in schema["allOf"]:
                merged.update(part if isinstance(part, dict) else {})
            return self.build({**merged, **{k: v for k, v in schema.items() if k != "allOf"}}, depth + 1)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
        if kind == "object":
            return {name: self.build(sub, depth + 1) for name, sub in (schema.get("properties") or {}).items()}
        if kind == "array":
            count = max(1, schema.get("minItems", 1))
            if schema.get("maxItems") is not None:
                count = min(count, schema["maxItems"])
            return [self.build(schema.get("items", {}), depth + 1) for _ in range(count)]
        if kind == "string":
            return self._string(schema)
        if kind in ("integer", "number"):
            value = schema.get("minimum", schema.get("exclusiveMinimum", -1) + 1)
            value = min(value, schema.get("maximum", value))
            return int(value) if kind == "integer" else float(value)
        if kind == "boolean":
            return True
        return None

    def _resolve(self, ref: str) -> Any:
        if not ref.startswith("#"):
            return {}
        node = self.root
        for part in ref.lstrip("#").strip("/").split("/") if ref != "#" else []:
            node = node.get(part.replace("~1", "/").replace("~0", "~"), {}) if isinstance(node, dict) else {}
        return node
