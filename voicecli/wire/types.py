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
    details_in, details_out = raw.get(input_details) or {}, raw.get(output_details) or {}
    cached = details_in.get("cached_tokens") or 0
    reasoning = details_out.get("reasoning_tokens") or 0
    # Realtime (and Chat audio models): how much of it was audio, priced apart
    audio_cached = (details_in.get("cached_tokens_details") or {}).get("audio_tokens") or 0
    return Usage(raw.get(input_key) or 0, raw.get(output_key) or 0, cached, reasoning,
                 details_in.get("audio_tokens") or 0, details_out.get("audio_tokens") or 0, audio_cached)
