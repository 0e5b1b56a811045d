"""`voicecli profiles …`: list, show, path, new, set, validate."""

from __future__ import annotations

import re
import sys
import tomllib
from typing import Any

from voicecli import paths, profiles
from voicecli.errors import ConfigError

NEW_PROFILE_TEMPLATE = """\
# voicecli profile '{name}'. Unset keys come from '{base}'.
# Reference: README.md, "Profiles". Check it with `voicecli profiles validate {name}`.
{body}
# [connection]
# base_url = "https://api.openai.com/v1"
# api_key_env = "OPENAI_API_KEY"     # the NAME of the variable holding the key
# transport = "ws"                    # ws | sse | chat
#
# [model]
# name = "gpt-5.5"
# instructions = "Be brief."
# temperature = 0.7
# reasoning_effort = "low"
#
# [voice]
# voice = "marin"
# turn_detection = "server_vad"       # server_vad | semantic_vad | none (push-to-talk)
#
# [[tools]]
# name = "clock"
# description = "Current date and time"
# command = ["date", "-Iseconds"]
"""


def _to_stdout_table(rows: list[list[str]], headers: list[str]) -> None:
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(*headers, box=None, header_style="bold")
        for row in rows:
            table.add_row(*row)
        Console().print(table)
    else:  # pipes get tab-separated lines, no header decoration
        print("\t".join(headers))
        for row in rows:
            print("\t".join(row))


def print_json(data: Any) -> None:
    """`--json` output of the listing commands: indented on a terminal, one line when piped."""
    import json

    print(json.dumps(data, ensure_ascii=False, indent=2 if sys.stdout.isatty() else None))


def list_profiles(json_out: bool = False) -> None:
    rows, records = [], []
    for ref in profiles.discover():
        try:
            p = profiles.load(str(ref.path), env={})
            rows.append([ref.name, ref.source, p.model.name, p.connection.transport, p.description])
            records.append({"name": ref.name, "source": ref.source, "path": str(ref.path), "model": p.model.name,
                            "transport": p.connection.transport, "description": p.description, "error": None})
        except ConfigError as exc:
            rows.append([ref.name, ref.source, "?", "?", f"invalid: {exc.message}"])
            records.append({"name": ref.name, "source": ref.source, "path": str(ref.path), "model": None,
                            "transport": None, "description": None, "error": exc.message})
    if json_out:
        print_json(records)
        return
    _to_stdout_table(rows, ["name", "source", "model", "transport", "description"])


def show_profile(name: str, json_out: bool = False) -> None:
    import tomli_w

    p = profiles.load(name)
    where = str(p.path) if p.path else "(built-in)"
    var = p.connection.api_key_env
    key_state = "not needed" if not var or p.uses_simulator else f"{var} is {'set' if _env_has(var) else 'NOT set'}"
    if json_out:  # the same redacted settings as the TOML form
        needed = bool(var) and not p.uses_simulator
        print_json({"name": p.name, "source": p.source, "path": str(p.path) if p.path else None,
                    "api_key": {"variable": var or None, "needed": needed, "set": needed and _env_has(var)},
                    "settings": p.as_dict(redact=True)})
        return
    print(f"# profile '{p.name}' ({p.source}: {where})")
    print(f"# API key: {key_state}")
    print(tomli_w.dumps(p.as_dict(redact=True)), end="")


def _env_has(var: str) -> bool:
    import os

    return bool(os.environ.get(var))


def profile_path(name: str | None) -> None:
    print(profiles.find(name).path if name else paths.user_profiles_dir())


def new_profile(name: str, base: str, force: bool) -> None:
    import tomli_w

    if not re.match(r"^[A-Za-z0-9_.-]+$", name) or name.endswith(".toml"):
        raise ConfigError(f"profile names may hold letters, digits, '.', '_' and '-'; got '{name}'")
    base_ref = profiles.find(base)
    profiles.load(str(base_ref.path), env={})  # refuse to extend a broken profile
    target = paths.user_profiles_dir() / f"{name}.toml"
    if target.exists() and not force:
        raise ConfigError(f"profile '{name}' already exists: {target}", hint="use --force to overwrite it")
    extends = base_ref.name if base_ref.source != "path" else str(base_ref.path)
    body = tomli_w.dumps({"description": f"my profile, based on {base_ref.name}", "extends": extends})
    paths.write_private(target, NEW_PROFILE_TEMPLATE.format(name=name, base=base_ref.name, body=body))
    print(target)


def set_key(name: str, key: str, raw_value: str) -> None:
    ref = profiles.find(name)
    if ref.source == "builtin":
        raise ConfigError(f"'{ref.name}' is a built-in profile and cannot be changed",
                          hint=f"make your own first: voicecli profiles new {ref.name} --from {ref.name}")
    section, field_name, value = _typed_value(key, raw_value)
    data, text = profiles.read_toml(ref.path)
    new_text = _edit_in_place(text, section, field_name, value)
    if new_text is None or _lookup(_parse_or_none(new_text), section, field_name) != value:
        import tomli_w  # the file's layout defeats a line edit: rewrite it whole (comments are lost)

        table = data if section is None else data.setdefault(section, {})
        table[field_name] = value
        new_text = tomli_w.dumps(data)
    paths.write_private(ref.path, new_text)
    try:
        profiles.load(str(ref.path), env={})
    except ConfigError:
        paths.write_private(ref.path, text)  # never leave a broken file behind
        raise
    shown = f"{section}.{field_name}" if section else field_name
    print(f"{ref.path}: {shown} = {_render(value)}")


def _typed_value(key: str, raw_value: str) -> tuple[str | None, str, Any]:
    if key in profiles.TOP_LEVEL:
        return None, key, raw_value
    section, field_name = profiles.resolve_key(key)
    probe = profiles.Profile(name="(set)", source="path", path=None)
    profiles.apply_setting(probe, f"{section}.{field_name}", raw_value, origin=f"value for {key}")
    return section, field_name, getattr(getattr(probe, section), field_name)


def _render(value: Any) -> str:
    import tomli_w

    if isinstance(value, dict):
        inner = ", ".join(tomli_w.dumps({k: v}).strip() for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    return tomli_w.dumps({"v": value}).strip()[len("v = "):]


def _edit_in_place(text: str, section: str | None, key: str, value: Any) -> str | None:
    """Change one `key = value` line, keeping every other line (and comment) as it was."""
    lines = text.splitlines(keepends=True)
    header = re.compile(r"^\s*\[")
    key_line = re.compile(rf"^\s*{re.escape(key)}\s*=")
    new_line = f"{key} = {_render(value)}\n"
    start, end = 0, len(lines)  # the span of the target table
    if section is not None:
        starts = [i for i, ln in enumerate(lines) if re.match(rf"^\s*\[\s*{re.escape(section)}\s*\]", ln)]
        if not starts:
            tail = "" if not text or text.endswith("\n") else "\n"
            return f"{text}{tail}\n[{section}]\n{new_line}"
        start = starts[0] + 1
    for i in range(start, len(lines)):
        if header.match(lines[i]):
            end = i
            break
    for i in range(start, end):
        if key_line.match(lines[i]):
            if lines[i].rstrip().endswith(("[", "{", '"""', "'''")):
                return None  # a multi-line value: leave it to the full rewrite
            lines[i] = new_line
            return "".join(lines)
    insert = end
    while insert > start and not lines[insert - 1].strip():
        insert -= 1
    if insert > 0 and not lines[insert - 1].endswith("\n"):
        lines[insert - 1] += "\n"
    lines.insert(insert, new_line)
    return "".join(lines)


def _parse_or_none(text: str) -> dict | None:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return None


def _lookup(data: dict | None, section: str | None, key: str) -> Any:
    if data is None:
        return object()
    table = data if section is None else data.get(section, {})
    return table.get(key, object()) if isinstance(table, dict) else object()


def validate(names: list[str]) -> None:
    for name in names:
        warnings: list[tuple[str, str]] = []
        p = profiles.load(name, env={}, warnings=warnings)
        for text, hint in warnings:
            print(f"voicecli: warning: {text}\n  hint: {hint}", file=sys.stderr)
        tools = f", {len(p.tools)} tool{'s' * (len(p.tools) != 1)}" if p.tools else ""
        if p.mcp:
            tools += f", {len(p.mcp)} MCP server{'s' * (len(p.mcp) != 1)}"
        print(f"ok: {p.path} ({p.model.name} over {p.connection.transport}{tools})")
