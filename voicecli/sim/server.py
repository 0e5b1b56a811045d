"""The simulator's HTTP/WebSocket server (aiohttp), shared by every protocol front.

    sim = Simulator(SimConfig())
    base_url = await sim.start()        # "http://127.0.0.1:PORT/v1"
    ...
    await sim.stop()

or, from synchronous code (tests, the offline profile):

    handle = start_in_thread(SimConfig())
    handle.base_url; handle.log; handle.stop()

Routes: `POST /v1/responses` (+ `GET` WebSocket mode), `POST /v1/chat/completions`,
`GET /v1/realtime` (WebSocket), `POST /v1/audio/transcriptions`, `POST /v1/audio/speech`,
`GET /v1/models` (+ `/v1/models/{id}`), `/v1/files` and `/v1/batches` (sim/batches.py), and for tests in another process `GET /_sim/log` (recorded
requests and client events as JSON) and `POST /_sim/reset` (clear the log and the fault counters,
rewind the script; the phrasebook of what it has said stays).

Every response carries `x-request-id`; with `config.api_key` set, a request (or WebSocket
upgrade) without the right `Authorization: Bearer` gets the real 401 (`/_sim/*` needs no key).
Each request is recorded in `Simulator.log` (method, endpoint, headers without any credential,
`credentials`: the names of the credential headers it carried, JSON body); WebSocket fronts add one entry per client event (`kind: "ws"`, endpoint, `conn`). Errors always have the
real shape `{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import string
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable

from aiohttp import WSCloseCode, web

from .aio import put
from .config import SimConfig
from .faults import FAULT_HEADER, Fault, FaultCounter, FaultSpecError, echo_credential, error_body, parse, rejection
from .script import Script
from .validate import ApiError

SECRET_HEADERS = {"authorization", "api-key", "x-api-key", "openai-api-key", "proxy-authorization", "cookie"}
NO_KEY_MESSAGE = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header using "
    "Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if "
    "you're accessing the API from your browser and are prompted for a username and password. You can "
    "obtain an API key from https://platform.openai.com/account/api-keys."
)

log = logging.getLogger("voicecli.sim")


_ALNUM = string.ascii_letters + string.digits
# id shapes seen in real traffic: resp_/msg_/fc_/rs_ + 50 hex, call_ + 24, chatcmpl- + 29, req_ + 32 hex
_HEX_IDS = {"resp": 50, "msg": 50, "fc": 50, "rs": 50, "req": 32}
_ALNUM_IDS = {"call": 24, "chatcmpl": 29}


def json_error(status: int, body: dict, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


def api_error_response(err: ApiError) -> web.Response:
    return json_error(err.status, err.body(), err.headers)


def mask_key(key: str) -> str:
    """How the real 401 quotes a wrong key: its start and its last four characters."""
    if len(key) <= 12:
        return "*" * 5 + key[-2:]
    return f"{key[:8]}*****{key[-4:]}"


class Simulator:
    """One simulator instance: the aiohttp app plus the state the protocol fronts share."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.log: list[dict] = []
        self.script: Script | None = Script.load(self.config.script) if self.config.script else None
        self.faults = FaultCounter()
        self.stored: dict[str, dict] = {}  # responses created with store=true: id -> {"input", "output"}
        self._phrases: Any = None  # voicecli.sim.phrasebook.Phrasebook, made on first use (numpy)
        self.base_url: str | None = None
        self.port: int | None = None
        self._runner: web.AppRunner | None = None
        self._sockets: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()
        self._conn_seq = 0
        self.app = self._make_app()

    # -- shared helpers for the fronts -------------------------------------------------------

    def record(self, kind: str, payload: dict) -> None:
        """Append one entry to the log: {"kind", "time", **payload} (never secrets)."""
        self.log.append({**payload, "kind": kind, "time": time.time()})

    def new_id(self, prefix: str) -> str:
        """A fresh id shaped like the real ones: new_id("resp") -> "resp_<50 hex>"."""
        stem = prefix.rstrip("_-")
        sep = prefix[len(stem):] or ("-" if stem == "chatcmpl" else "_")
        if stem in _HEX_IDS:
            body = secrets.token_hex(_HEX_IDS[stem])[: _HEX_IDS[stem]]
        else:
            body = "".join(secrets.choice(_ALNUM) for _ in range(_ALNUM_IDS.get(stem, 21)))
        return f"{stem}{sep}{body}"

    def new_connection_id(self) -> str:
        self._conn_seq += 1
        return f"conn_{self._conn_seq}"

    def next_script_turn(self):
        return self.script.next_turn() if self.script else None

    def take_fault(self, spec: Fault | None) -> Fault | None:
        """Count one use of a fault with `times=N`; None once it is spent."""
        return self.faults.take(spec)

    @property
    def phrases(self) -> Any:
        """What this simulator has said (a `Phrasebook`), so it can transcribe that speech exactly."""
        if self._phrases is None:
            from .phrasebook import Phrasebook

            self._phrases = Phrasebook()
            for text in self.config.phrases:
                self._phrases.add(text)
        return self._phrases

    def track(self, ws: web.WebSocketResponse) -> None:
        """Register an open WebSocket so stop() can close it."""
        self._sockets.add(ws)

    def reset(self) -> None:
        self.log.clear()
        self.faults.reset()
        if self.script:
            self.script.rewind()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> str:
        self._runner = web.AppRunner(self.app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port, reuse_address=True)
        await site.start()
        sock = site._server.sockets[0]  # type: ignore[union-attr]  # the real port when port=0
        self.port = sock.getsockname()[1]
        self.base_url = f"http://{self.config.host}:{self.port}/v1"
        return self.base_url

    async def stop(self) -> None:
        for ws in list(self._sockets):
            if not ws.closed:
                await ws.close(code=WSCloseCode.GOING_AWAY, message=b"simulator shutting down")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- the app -----------------------------------------------------------------------------

    def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        put(app, "sim", self)  # the fronts reach shared state through request.app["sim"]
        app.on_response_prepare.append(_add_headers)
        r = app.router
        r.add_post("/v1/responses", _responses_http)
        r.add_get("/v1/responses", _responses_ws)
        r.add_post("/v1/chat/completions", _chat)
        r.add_get("/v1/realtime", _realtime)
        r.add_post("/v1/audio/transcriptions", _transcriptions)
        r.add_post("/v1/audio/speech", _speech)
        r.add_get("/v1/models", _models)
        r.add_get("/v1/models/{model}", _model)
        r.add_post("/v1/files", _batches("upload"))
        r.add_get("/v1/files/{file_id}", _batches("retrieve_file"))
        r.add_get("/v1/files/{file_id}/content", _batches("file_content"))
        r.add_post("/v1/batches", _batches("create_batch"))
        r.add_get("/v1/batches", _batches("list_batches"))
        r.add_get("/v1/batches/{batch_id}", _batches("retrieve_batch"))
        r.add_post("/v1/batches/{batch_id}/cancel", _batches("cancel_batch"))
        r.add_get("/_sim/log", _sim_log)
        r.add_post("/_sim/reset", _sim_reset)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        put(request, "request_id", self.new_id("req"))
        if request.path.startswith("/_sim/"):
            return await handler(request)
        try:
            await self._record_request(request)
        except ConnectionError:  # the client left while sending its body (a batch stopped): nothing to answer
            log.debug("client left during %s %s", request.method, request.path)
            return web.Response(status=499)
        if self.config.api_key is not None:
            denied = self._check_auth(request)
            if denied is not None:
                return denied
        # x-sim-fault: refusing faults answer here, for every endpoint (and WebSocket upgrades);
        # stream faults travel on to the front in request["fault"].
        try:
            fault = echo_credential(parse(request.headers.get(FAULT_HEADER)), request.headers)
        except FaultSpecError as exc:
            return json_error(400, error_body(f"Bad {FAULT_HEADER} header: {exc}", "invalid_request_error", FAULT_HEADER))
        is_ws = request.headers.get("upgrade", "").lower() == "websocket"
        if fault is not None and (fault.rejects or not is_ws):
            fault = self.take_fault(fault)  # WebSocket stream faults are counted per turn instead
        if fault is not None and fault.rejects:
            if fault.latency:
                await asyncio.sleep(fault.latency)
            status, body, headers = rejection(fault)
            return json_error(status, body, headers)
        put(request, "fault", fault)
        try:
            return await handler(request)
        except ApiError as err:
            return api_error_response(err)
        except web.HTTPException as exc:
            if exc.status == 404:
                msg = f"Invalid URL ({request.method} {request.path})"
            elif exc.status == 405:
                msg = f"Invalid method for URL ({request.method} {request.path})"
            else:
                msg = exc.reason
            return json_error(exc.status, error_body(msg, "invalid_request_error"))
        except ConnectionError:
            if request.transport is None or request.transport.is_closing():
                # the client went away mid-reply (Ctrl-C, barge-in): nothing to answer, nothing to log
                log.debug("client left during %s %s", request.method, request.path)
                return web.Response(status=499)
            raise
        except asyncio.CancelledError:
            raise
        except Exception:  # a simulator bug still answers in the real error shape
            log.exception("simulator error on %s %s", request.method, request.path)
            return json_error(500, error_body("The simulator failed on this request (see its log).", "server_error"))

    def _check_auth(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip() == self.config.api_key:
            return None
        if not header or scheme.lower() != "bearer" or not token.strip():
            body = error_body(NO_KEY_MESSAGE, "invalid_request_error", None, None)
        else:
            body = error_body(
                f"Incorrect API key provided: {mask_key(token.strip())}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                "invalid_request_error",
                None,
                "invalid_api_key",
            )
        return json_error(401, body)

    async def _record_request(self, request: web.Request) -> None:
        entry: dict[str, Any] = {
            "method": request.method,
            "endpoint": request.path,
            "query": dict(request.query),
            "headers": {k.lower(): v for k, v in request.headers.items() if k.lower() not in SECRET_HEADERS},
            # which credential headers came (never their values): a test can tell "no key was sent"
            "credentials": sorted({k.lower() for k in request.headers if k.lower() in SECRET_HEADERS}),
        }
        ctype = request.content_type
        if request.body_exists and not ctype.startswith("multipart/"):  # multipart is left for the handler to read
            raw = await request.read()
            try:
                entry["body"] = json.loads(raw)
            except ValueError:
                entry["body_text"] = raw[:4096].decode("utf-8", "replace")
        elif request.body_exists:
            entry["content_type"] = ctype
            entry["content_length"] = request.content_length
        entry["request_id"] = request["request_id"]
        self.record("http", entry)


async def _add_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("x-request-id", request.get("request_id", ""))
    if request.path.startswith("/v1/"):
        response.headers.setdefault("openai-version", "2020-10-01")
        response.headers.setdefault("openai-processing-ms", "1")
        response.headers.setdefault("x-ratelimit-limit-requests", "10000")
        response.headers.setdefault("x-ratelimit-remaining-requests", "9999")
        response.headers.setdefault("x-ratelimit-reset-requests", "6ms")


# -- route wrappers (the fronts are imported lazily, so a missing one fails alone) ------------


async def _responses_http(request: web.Request) -> web.StreamResponse:
    from . import responses

    return await responses.handle_http(request)


async def _responses_ws(request: web.Request) -> web.StreamResponse:
    from . import responses

    return await responses.handle_ws(request)


async def _chat(request: web.Request) -> web.StreamResponse:
    from . import chat

    return await chat.handle(request)


def _missing_front(request: web.Request, name: str) -> web.Response:
    return json_error(501, error_body(f"The simulator has no {name} front yet ({request.path}).", "server_error"))


async def _realtime(request: web.Request) -> web.StreamResponse:
    try:
        from . import realtime
    except ModuleNotFoundError:
        return _missing_front(request, "realtime")
    return await realtime.handle(request)


async def _transcriptions(request: web.Request) -> web.StreamResponse:
    try:
        from . import audio_api
    except ModuleNotFoundError:
        return _missing_front(request, "audio")
    return await audio_api.handle_transcriptions(request)


async def _speech(request: web.Request) -> web.StreamResponse:
    try:
        from . import audio_api
    except ModuleNotFoundError:
        return _missing_front(request, "audio")
    return await audio_api.handle_speech(request)


async def _models(request: web.Request) -> web.StreamResponse:
    from . import models

    return await models.handle_list(request)


async def _model(request: web.Request) -> web.StreamResponse:
    from . import models

    return await models.handle_one(request)


def _batches(name: str) -> Callable:
    async def handler(request: web.Request) -> web.StreamResponse:
        from . import batches

        return await getattr(batches, name)(request)

    return handler


async def _sim_log(request: web.Request) -> web.Response:
    return web.json_response(request.app["sim"].log)


async def _sim_reset(request: web.Request) -> web.Response:
    request.app["sim"].reset()
    return web.json_response({"ok": True})


# -- running it --------------------------------------------------------------------------------


@dataclass
class SimHandle:
    """A simulator running on its own event loop in a daemon thread."""

    sim: Simulator
    base_url: str
    _loop: asyncio.AbstractEventLoop
    _thread: threading.Thread

    @property
    def log(self) -> list[dict]:
        return self.sim.log

    @property
    def config(self) -> SimConfig:
        return self.sim.config

    def reset(self) -> None:
        self._loop.call_soon_threadsafe(self.sim.reset)

    def stop(self, timeout: float = 5.0) -> None:
        if not self._thread.is_alive():
            return
        fut = asyncio.run_coroutine_threadsafe(self.sim.stop(), self._loop)
        try:
            fut.result(timeout)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)

    def __enter__(self) -> SimHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_in_thread(config: SimConfig | None = None) -> SimHandle:
    """Start a simulator on a fresh event loop in a daemon thread; returns once it listens."""
    sim = Simulator(config)
    loop = asyncio.new_event_loop()
    ready: dict[str, Any] = {}
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            ready["url"] = loop.run_until_complete(sim.start())
        except BaseException as exc:  # hand the failure to the caller
            ready["error"] = exc
            started.set()
            loop.close()
            return
        started.set()
        try:
            loop.run_forever()
        finally:
            _drain(loop)

    thread = threading.Thread(target=run, name="voicecli-sim", daemon=True)
    thread.start()
    started.wait(10)
    if "error" in ready:
        thread.join(1)
        raise ready["error"]
    if "url" not in ready:
        raise RuntimeError("the simulator did not start within 10 s")
    return SimHandle(sim, ready["url"], loop, thread)


def _drain(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel and await what is left on the loop, then close it (no leaked tasks)."""
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.run_until_complete(loop.shutdown_default_executor())
    loop.close()


async def serve(config: SimConfig, on_ready: Callable[[str], None] | None = None) -> None:
    """Run until cancelled; `on_ready(base_url)` is called once the port is open."""
    sim = Simulator(config)
    await sim.start()
    if on_ready is not None:
        on_ready(sim.base_url or "")
    try:
        await asyncio.Event().wait()
    finally:
        await sim.stop()


def serve_forever(config: SimConfig, on_ready: Callable[[str], None] | None = None) -> None:
    """Blocking entry point for `voicecli sim`: returns cleanly on Ctrl-C. Prints nothing."""
    try:
        asyncio.run(serve(config, on_ready))
    except KeyboardInterrupt:
        pass
