"""The terminal's width, in a module of its own: the renderers (`render`, `wrap`) and the terminal
helpers (`term`, which loads the markdown renderer) all need it without importing each other."""

from __future__ import annotations

import os


def terminal_columns(stream) -> int:
    """The width of the terminal `stream` writes to (at least 20), or 80 when it is none."""
    try:
        return max(20, os.get_terminal_size(stream.fileno()).columns)
    except (AttributeError, ValueError, OSError):
        return 80
