"""What a turn cost in US dollars: the shipped price table (pricing.toml) or a profile's `[model.price]`.

A price is USD per 1M tokens: `input`, `cached_input` (cache hits, a part of the input tokens),
`output` (reasoning tokens are output tokens), and for Realtime models `audio_input`,
`audio_cached_input`, `audio_output`. A model that is in neither place has an unknown price:
we say so rather than guess (no prefix matching — gpt-5 and gpt-5-mini differ fivefold); only a
dated snapshot (`gpt-4o-2024-08-06`) falls back to its base name. The simulator's own models
(`sim-1`, `sim-realtime`, …) are in the table at $0.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

BATCH_DISCOUNT = 0.5  # the Batch API's price: half the table's
PRICE_KEYS = ("input", "cached_input", "output", "audio_input", "audio_cached_input", "audio_output")
_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")
TABLE = Path(__file__).with_name("pricing.toml")


@dataclass(frozen=True)
class Price:
    """USD per 1M tokens; None where the table has no number."""

    input: float
    output: float
    cached_input: float | None = None
    audio_input: float | None = None
    audio_cached_input: float | None = None
    audio_output: float | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "Price":
        return cls(**{k: float(v) for k, v in data.items() if k in PRICE_KEYS})

    def cost(self, *, input_tokens: int, output_tokens: int, cached_tokens: int = 0,
             audio_input_tokens: int = 0, audio_cached_tokens: int = 0, audio_output_tokens: int = 0) -> float | None:
        """Dollars for these counts; `input_tokens` and `output_tokens` include the audio ones.
        None when audio tokens were used but the price has no audio rates."""
        if (audio_input_tokens or audio_output_tokens) and (self.audio_input is None or self.audio_output is None):
            return None
        text_in = input_tokens - audio_input_tokens
        text_cached = min(cached_tokens - audio_cached_tokens, text_in)
        cached_rate = self.input if self.cached_input is None else self.cached_input
        total = (text_in - text_cached) * self.input + text_cached * cached_rate
        total += (output_tokens - audio_output_tokens) * self.output
        if audio_input_tokens or audio_output_tokens:
            audio_cached_rate = self.audio_input if self.audio_cached_input is None else self.audio_cached_input
            total += (audio_input_tokens - audio_cached_tokens) * self.audio_input  # type: ignore[operator]
            total += audio_cached_tokens * audio_cached_rate + audio_output_tokens * self.audio_output  # type: ignore[operator]
        return total / 1_000_000


def price_problems(data: Any) -> list[str]:
    """Why a `[model.price]` table is not usable (empty when it is)."""
    if not isinstance(data, dict):
        return ["must be a table like { input = 1.25, output = 10.0 }"]
    out = [f"unknown key '{k}' (known: {', '.join(PRICE_KEYS)})" for k in data if k not in PRICE_KEYS]
    out += [f"{k} must be a number of US dollars per 1M tokens, at least 0" for k, v in data.items()
            if k in PRICE_KEYS and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0)]
    out += [f"{k} is required" for k in ("input", "output") if k not in data]
    return out


@functools.cache
def table() -> dict[str, Any]:
    import tomllib

    with open(TABLE, "rb") as f:
        return tomllib.load(f)


def lookup(model: str, override: Mapping[str, Any] | None = None) -> Price | None:
    """The profile's price if it sets one, else the table's for `model` (or its undated name)."""
    if override:
        return Price.from_mapping(override)
    models = table().get("models", {})
    data = models.get(model) or models.get(_SNAPSHOT.sub("", model))
    return Price.from_mapping(data) if data else None


def cost_usd(model: str, usage: Any, override: Mapping[str, Any] | None = None) -> float | None:
    """Dollars for a neutral `Usage` on `model`; None when the price is unknown."""
    price = lookup(model, override)
    if price is None:
        return None
    return price.cost(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                      cached_tokens=usage.cached_tokens, audio_input_tokens=getattr(usage, "audio_input_tokens", 0),
                      audio_output_tokens=getattr(usage, "audio_output_tokens", 0),
                      audio_cached_tokens=getattr(usage, "audio_cached_tokens", 0))


def format_usd(cost: float | None) -> str:
    if cost is None:
        return "unknown price"
    if cost == 0:
        return "$0"
    if cost < 0.0001:
        return "<$0.0001"
    return f"${cost:.4f}" if cost < 1 else f"${cost:,.2f}"


def speech_cost(model: str, *, seconds: float = 0.0, chars: int = 0) -> float | None:
    """Dollars for speech-to-text or text-to-speech on `model`: `seconds` of audio (transcribed, or
    spoken) or `chars` of text, as the table prices the model; None when it is not in the table."""
    speech = table().get("speech", {})
    data = speech.get(model) or speech.get(_SNAPSHOT.sub("", model))
    if not data:
        return None
    if "per_1m_chars" in data:
        return chars * float(data["per_1m_chars"]) / 1_000_000
    return seconds / 60 * float(data.get("per_minute", 0.0))
