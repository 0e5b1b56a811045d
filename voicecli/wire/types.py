"""A neutral usage helper shared by the dialect modules (the items themselves are in `voicecli.items`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from voicecli.events import Usage


def usage_from(raw: Mapping[str, Any] | None, *, input_key: str, output_key: str,
               input_details: str, output_details: str) -> Usage | None:
    """Token usage in any dialect's spelling (they differ only in key names) → neutral Usage."""
    if not raw:
        return None
    cached = (raw.get(input_details) or {}).get("cached_tokens") or 0
    reasoning = (raw.get(output_details) or {}).get("reasoning_tokens") or 0
    return Usage(raw.get(input_key) or 0, raw.get(output_key) or 0, cached, reasoning)
