"""Settings of one simulator instance (shared by every protocol front)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class SimConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0 = an ephemeral port
    api_key: str | None = None  # when set, requests must carry `Authorization: Bearer <api_key>` (else 401)
    script: Path | None = None  # JSON/TOML script fixing replies and faults per turn (voicecli.sim.script)
    latency: float = 0.0  # seconds before the first byte of a reply
    delta_delay: float = 0.0  # seconds between streamed deltas
    ws_max_age: float = 3600.0  # Responses WebSocket lifetime before websocket_connection_limit_reached
    realtime_max_age: float = 3600.0  # Realtime session lifetime before session_expired
    realtime_speed: float = 1.0  # Realtime output audio is streamed at this multiple of real time
    think: bool = False  # Chat: stream the reasoning as a leading <think>…</think> block in `content`
    batch_delay: float = 0.0  # seconds a batch (POST /v1/batches) takes from validating to completed
    phrases: tuple[str, ...] = field(default_factory=tuple)  # known to the phrasebook from the start
