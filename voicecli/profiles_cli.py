"""`voicecli profiles …`: list, show, path, new, set, validate."""

from __future__ import annotations

import re
import sys
from typing import Any

from voicecli import paths, profiles
from voicecli.errors import ConfigError
from voicecli.ui.listing import print_json, print_table

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
    print_table(rows, ["name", "source", "model", "transport", "description"])


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
    _, text = profiles.read_toml(ref.path)  # also reports invalid TOML with file:line:column
    new_text = _edit(text, section, field_name, value)
    if not new_text.endswith("\n"):
        new_text += "\n"
    paths.write_private(ref.path, new_text)
    try:
        profiles.load(str(ref.path), env={})
    except ConfigError:
        paths.write_private(ref.path, text)  # never leave a broken file behind
        raise
    shown = f"{section}.{field_name}" if section else field_name
    print(f"{ref.path}: {shown} unset" if value is None else f"{ref.path}: {shown} = {_render(value)}")


def _typed_value(key: str, raw_value: str) -> tuple[str | None, str, Any]:
    if key in profiles.TOP_LEVEL:
        return None, key, raw_value
    section, field_name = profiles.resolve_key(key)
    probe = profiles.Profile(name="(set)", source="path", path=None)
    if profiles.apply_setting(probe, f"{section}.{field_name}", raw_value, origin=f"value for {key}"):
        return section, field_name, None  # "none": the key goes, back to the inherited value
    return section, field_name, getattr(getattr(probe, section), field_name)


def _render(value: Any) -> str:
    import tomli_w

    if isinstance(value, dict):
        inner = ", ".join(tomli_w.dumps({k: v}).strip() for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    return tomli_w.dumps({"v": value}).strip()[len("v = "):]


_COMMENTED_HEADER = r"^[ \t]*#[ \t]*\[[ \t]*{}[ \t]*\][ \t]*(#.*)?$"
_COMMENTED_KEY = re.compile(r"^\s*#\s*([A-Za-z0-9_-]+)\s*=")
_ANY_COMMENTED_HEADER = re.compile(r"^\s*#\s*\[")


def _edit(text: str, section: str | None, key: str, value: Any) -> str:
    """The file with `key` set in `section`, every other line and comment kept (tomlkit).

    A table that exists only as a commented sample (`# [model]`, as `profiles new` writes) is
    uncommented in place, and the key takes the place of its commented sample line, so uncommenting
    the rest of the sample later never makes a second table or a duplicate key."""
    import tomlkit

    doc = tomlkit.parse(text)
    if section is not None and section not in doc:
        pattern = re.compile(_COMMENTED_HEADER.format(re.escape(section)), re.M)
        uncommented = pattern.sub(f"[{section}]", text, count=1)
        if uncommented != text:
            try:
                candidate = tomlkit.parse(uncommented)
            except tomlkit.exceptions.ParseError:  # the "comment" was inside a multi-line string
                candidate = None
            if candidate is not None and isinstance(candidate.get(section), tomlkit.items.Table):
                doc = candidate
        if section not in doc:
            doc.add(section, tomlkit.table())
    table = doc if section is None else doc[section]
    if value is None:  # "none": back to the inherited value
        table.pop(key, None)
        return tomlkit.dumps(doc)
    item = _toml_item(value)
    if key in table:
        table[key] = item  # in place: position and layout kept
        return tomlkit.dumps(doc)
    container = table if section is None else table.value
    index = _insert_index(container.body, key, top=section is None)
    if index is None or index >= len(container.body):
        table[key] = item
    else:
        k, v = container.body[index]
        replaced = _COMMENTED_KEY.match(v.as_string()) if k is None else None
        if replaced and replaced.group(1) == key:
            del container.body[index]  # the commented sample of this key gives way to the real one
        container._insert_at(index, key, item)
    return tomlkit.dumps(doc)


def _insert_index(body: list, key: str, *, top: bool) -> int | None:
    """Where a new key goes in a table's items: on its commented sample line, else after the last
    real key (before trailing comments, which may be the next commented sample table), else first in a
    table; None leaves it to tomlkit (the top level of a file without top-level keys)."""
    import tomlkit

    last_key, sample = None, None
    for i, (k, v) in enumerate(body):
        if isinstance(v, (tomlkit.items.Table, tomlkit.items.AoT)):
            break
        if k is not None:
            last_key = i
            continue
        line = v.as_string()
        if _ANY_COMMENTED_HEADER.match(line):
            break  # the rest belongs to a commented sample of another table
        found = _COMMENTED_KEY.match(line)
        if found and found.group(1) == key and sample is None:
            sample = i
    if sample is not None:
        return sample
    if last_key is not None:
        return last_key + 1
    return None if top else 0


def _toml_item(value: Any):
    import tomlkit

    if isinstance(value, dict):  # one line, as typed: { X-Team = "blue" }
        table = tomlkit.inline_table()
        table.update(value)
        return table
    return tomlkit.item(value)


def _check_urls(p: profiles.Profile) -> None:
    """The API roots the profile sets, checked as a run would check them (a run says "usage error"
    for a flag; here the value is in the file: a configuration error, exit 3)."""
    from voicecli.errors import UsageError
    from voicecli.transport.urls import check_base_url

    for key, url in (("connection.base_url", p.connection.base_url),
                     ("voice.transcription_base_url", p.voice.transcription_base_url),
                     ("voice.speech_base_url", p.voice.speech_base_url)):
        if url is None or url == profiles.SIM_BASE_URL:  # "sim": the built-in simulator
            continue
        try:
            check_base_url(url)
        except UsageError as exc:
            hint = exc.hint and exc.hint.replace("--base-url, OPENAI_BASE_URL or the profile's connection.base_url", key)
            section, _, name = key.partition(".")
            text = p.path.read_text(encoding="utf-8") if p.path and p.path.is_file() else ""
            where = profiles._Source(p.path, text).where(section, name)  # file:line when this file sets it
            raise ConfigError(f"{where}: {key}: {exc.message}", hint=hint) from None


def validate(names: list[str]) -> None:
    for name in names:
        warnings: list[tuple[str, str]] = []
        p = profiles.load(name, env={}, warnings=warnings)
        _check_urls(p)
        for text, hint in warnings:
            print(f"voicecli: warning: {text}\n  hint: {hint}", file=sys.stderr)
        tools = f", {len(p.tools)} tool{'s' * (len(p.tools) != 1)}" if p.tools else ""
        if p.mcp:
            tools += f", {len(p.mcp)} MCP server{'s' * (len(p.mcp) != 1)}"
        print(f"ok: {p.path} ({p.model.name} over {p.connection.transport}{tools})")
