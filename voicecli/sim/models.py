"""`GET /v1/models` and `GET /v1/models/{id}` in the real API's shape.

The simulator answers any model name on its other endpoints; this is the list it advertises.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from .faults import error_body

CREATED = 1767225600  # 2026-01-01T00:00:00Z: fixed, so listings are reproducible
MODELS = ("sim-1", "sim-mini", "sim-realtime", "sim-transcribe", "sim-tts")
OWNER = "voicecli-sim"


def model_object(model_id: str) -> dict:
    return {"id": model_id, "object": "model", "created": CREATED, "owned_by": OWNER}


async def _wait(request: web.Request) -> None:
    fault = request.get("fault")
    latency = (fault.latency if fault is not None else None) or request.app["sim"].config.latency
    if latency:
        await asyncio.sleep(latency)


async def handle_list(request: web.Request) -> web.Response:
    await _wait(request)
    return web.json_response({"object": "list", "data": [model_object(m) for m in MODELS]})


async def handle_one(request: web.Request) -> web.Response:
    await _wait(request)
    model_id = request.match_info["model"]
    if model_id not in MODELS:
        body = error_body(f"The model `{model_id}` does not exist or you do not have access to it.",
                          "invalid_request_error", None, "model_not_found")
        return web.json_response(body, status=404)
    return web.json_response(model_object(model_id))
