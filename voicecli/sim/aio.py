"""What the simulator's server and its fronts share about aiohttp, in a module of its own so that
the fronts never import the server that loads them."""

from __future__ import annotations

import warnings
from typing import Any


def put(mapping: Any, key: str, value: Any) -> None:
    """mapping[key] = value without aiohttp's NotAppKeyWarning: the fronts share plain string keys
    (`app["sim"]`, `request["fault"]`), an agreed contract that works on every aiohttp 3.x."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mapping[key] = value
