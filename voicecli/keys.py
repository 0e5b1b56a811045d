"""Stored API keys (`voicecli keys`), for users who would rather not export them in every shell.

A profile reads its key from the variable `api_key_env` names; when that variable is unset, the
key stored under the same name is used (`voicecli keys set OPENAI_API_KEY`). The keys live in one
JSON file in the config folder, 0600 in a 0700 folder, written whole (a new file renamed over the
old one, so a crash never leaves half of it). A key is never printed: `keys list` shows names.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from voicecli.errors import ConfigError, ExitCode, VoicecliError
from voicecli.paths import config_dir, open_private

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def keys_path() -> Path:
    return config_dir() / "keys.json"


def load() -> dict[str, str]:
    """Every stored key by name; {} when none was stored."""
    path = keys_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read the stored keys in {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:  # the message quotes no content: it may hold a key
        raise ConfigError(f"{path} is not valid JSON (line {exc.lineno})",
                          hint="fix it, or remove it and store the keys again: voicecli keys set NAME") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ConfigError(f"{path} should be a JSON object of names to keys")
    return data


def stored(name: str) -> str | None:
    """The key stored under `name`, None if there is none (an unreadable file counts as none:
    the caller then says which variable to set)."""
    try:
        return load().get(name)
    except ConfigError:
        return None


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise VoicecliError(f"{name!r} is not a key name: use the variable's name, e.g. OPENAI_API_KEY",
                            exit_code=ExitCode.USAGE)
    return name


def save(name: str, key: str) -> None:
    from voicecli.sanitize import header_value_problem, remember_secret

    check_name(name)
    remember_secret(key)
    problem = header_value_problem(key)
    if problem:
        raise VoicecliError(f"the key {problem}; nothing was stored", exit_code=ExitCode.USAGE,
                            hint="paste the key alone, without spaces or line breaks")
    keys = load()
    keys[name] = key
    _write(keys)


def remove(name: str) -> bool:
    keys = load()
    if name not in keys:
        return False
    del keys[name]
    _write(keys)
    return True


def _write(keys: dict[str, str]) -> None:
    path = keys_path()
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open_private(partial, "w") as f:
        json.dump(keys, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)


def read_key_from_user(name: str) -> str:
    """The key typed without echo on a terminal, or the first line of stdin from a pipe."""
    import sys

    if sys.stdin is not None and sys.stdin.isatty():
        import getpass

        try:
            value = getpass.getpass(f"{name} (input hidden): ")
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            raise VoicecliError("nothing was stored", exit_code=ExitCode.INTERRUPTED) from None
    else:
        value = sys.stdin.readline() if sys.stdin is not None else ""
        value = value.removesuffix("\n").removesuffix("\r")
    if not value.strip():
        raise VoicecliError("no key given; nothing was stored", exit_code=ExitCode.USAGE,
                            hint=f"type or paste it when asked, or pipe it: pass show openai | voicecli keys set {name}")
    return value
