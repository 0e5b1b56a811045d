"""Connections, retries, reconnects and timeouts around the wire layer.

`open_transport(profile)` picks the transport the profile (or `-t`) names and resolves where it
connects: the profile's base URL, or the in-process simulator for `base_url = "sim"`.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from voicecli.profiles import Profile
    from voicecli.transport.base import Transport

_sim_handle = None


def resolve_base_url(profile: "Profile") -> str:
    """The API root; for the simulator profile, start it once per process on a free loopback port.

    A base URL no transport can use is a usage error here, before any connection or retry."""
    global _sim_handle
    if not profile.uses_simulator:
        from voicecli.transport.urls import check_base_url

        check_base_url(profile.connection.base_url)
        return profile.connection.base_url.rstrip("/")
    if _sim_handle is None:
        from voicecli.sim.config import SimConfig
        from voicecli.sim.server import start_in_thread

        _sim_handle = start_in_thread(SimConfig())
    return _sim_handle.base_url


def open_transport(profile: "Profile") -> "Transport":
    base_url = resolve_base_url(profile)
    api_key = profile.api_key()
    kind = profile.connection.transport
    if kind == "ws":
        from voicecli.transport.responses_ws import ResponsesWebSocketTransport

        return ResponsesWebSocketTransport(profile.connection, base_url, api_key)
    from voicecli.transport.http import HttpStreamTransport

    return HttpStreamTransport(profile.connection, base_url, api_key, "responses" if kind == "sse" else "chat")


async def close_clients() -> None:
    """Close the process-wide HTTP client if this process made one; a `ws`-only run never imports
    it at all."""
    http = sys.modules.get("voicecli.transport.http")
    if http is not None:
        await http.close_shared_client()
