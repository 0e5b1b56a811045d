"""A file reader confined to one folder: an example of a python tool that guards its input."""

from __future__ import annotations

import os
from pathlib import Path

MAX_BYTES = 64 * 1024


def read_file(path: str) -> str:
    """The text of `path`, which must lie inside the folder voicecli was started in (or
    $VOICECLI_FILES_ROOT); `..`, absolute paths and symlinks leading outside are refused."""
    root = Path(os.environ.get("VOICECLI_FILES_ROOT") or Path.cwd()).resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root):
        raise PermissionError(f"{path} is outside {root}; only files under it can be read")
    if not target.is_file():
        raise FileNotFoundError(f"no file {path} under {root}")
    with open(target, "rb") as f:
        data = f.read(MAX_BYTES + 1)
    text = data[:MAX_BYTES].decode("utf-8", "replace")
    return text + ("\n[truncated]" if len(data) > MAX_BYTES else "")
