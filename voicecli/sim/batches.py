"""The Files and Batch API fronts: `/v1/files` (upload, retrieve, content) and `/v1/batches`
(create, retrieve, cancel, list), in the real objects' shapes (`openai.types.FileObject`, `Batch`).

A batch runs in the simulator's event loop: `validating`, then `in_progress` with its
`request_counts` rising over `config.batch_delay` seconds, then `finalizing` and `completed`. Each
input line (`{"custom_id", "method": "POST", "url", "body"}`) is answered as the synchronous
endpoint would answer its body (not streamed); successes go to the output file as
`{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error": null}`, failures
(a 4xx) to the error file in the same shape. Faults from `x-sim-fault` on `POST /v1/batches`:
`fail_items=N` (every Nth request answers 400), `expire_after=N` (the batch expires after N: the
rest go to the error file with code `batch_expired`), `batch_failed` (validation fails).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

from . import brain, validate
from .faults import Fault, dumps
from .validate import ApiError

ENDPOINTS = ("/v1/responses", "/v1/chat/completions")
MAX_FILE_BYTES = 200 << 20


def _state(sim: Any) -> tuple[dict, dict]:
    """(files, batches) of this simulator, made on first use."""
    if not hasattr(sim, "files"):
        sim.files, sim.batches = {}, {}
    return sim.files, sim.batches


def _file_object(entry: dict) -> dict:
    return {"id": entry["id"], "object": "file", "bytes": len(entry["data"]), "created_at": entry["created_at"],
            "filename": entry["filename"], "purpose": entry["purpose"], "status": "processed",
            "expires_at": None, "status_details": None}


def _store_file(sim: Any, data: bytes, filename: str, purpose: str) -> dict:
    files, _ = _state(sim)
    entry = {"id": "file-" + sim.new_id("x")[2:24], "data": data, "filename": filename, "purpose": purpose,
             "created_at": int(time.time())}
    files[entry["id"]] = entry
    return entry


def _file(request: web.Request) -> dict:
    files, _ = _state(request.app["sim"])
    file_id = request.match_info["file_id"]
    if file_id not in files:
        raise ApiError(404, f"No such File object: {file_id}", "id", None)
    return files[file_id]


async def upload(request: web.Request) -> web.Response:
    if not request.content_type.startswith("multipart/"):
        raise ApiError(400, "Invalid request: expected a multipart/form-data body.", None, None)
    data, filename, purpose = None, "upload", None
    reader = await request.multipart()
    async for part in reader:
        if part.name == "file":
            filename = part.filename or filename
            data = bytes(await part.read(decode=False))
        elif part.name == "purpose":
            purpose = (await part.text()).strip()
    if data is None:
        raise validate.missing("file")
    if purpose is None:
        raise validate.missing("purpose")
    if purpose not in ("assistants", "batch", "fine-tune", "vision", "user_data", "evals"):
        raise validate.invalid_value("purpose", purpose, ["assistants", "batch", "fine-tune", "vision", "user_data", "evals"])
    if len(data) > MAX_FILE_BYTES:
        raise ApiError(400, "File is too large.", "file", None)
    return web.json_response(_file_object(_store_file(request.app["sim"], data, filename, purpose)))


async def retrieve_file(request: web.Request) -> web.Response:
    return web.json_response(_file_object(_file(request)))


async def file_content(request: web.Request) -> web.Response:
    return web.Response(body=_file(request)["data"], content_type="application/octet-stream")


# -- batches ------------------------------------------------------------------------------------


def _batch(request: web.Request) -> dict:
    _, batches = _state(request.app["sim"])
    batch_id = request.match_info["batch_id"]
    if batch_id not in batches:
        raise ApiError(404, f"No batch found with id '{batch_id}'.", "batch_id", None)
    return batches[batch_id]


def _public(entry: dict) -> dict:
    return {k: v for k, v in entry.items() if not k.startswith("_")}


async def create_batch(request: web.Request) -> web.Response:
    sim = request.app["sim"]
    files, batches = _state(sim)
    body = validate.parse_json(await request.read())
    for name in ("input_file_id", "endpoint", "completion_window"):
        if name not in body:
            raise validate.missing(name)
    if body["endpoint"] not in ENDPOINTS:
        raise validate.invalid_value("endpoint", body["endpoint"], list(ENDPOINTS))
    if body["completion_window"] != "24h":
        raise validate.invalid_value("completion_window", body["completion_window"], ["24h"])
    source = files.get(body["input_file_id"])
    if source is None:
        raise ApiError(404, f"No such File object: {body['input_file_id']}", "input_file_id", None)
    if source["purpose"] != "batch":
        raise ApiError(400, "The input file must have purpose 'batch'.", "input_file_id", "invalid_value")
    now = int(time.time())
    entry = {"id": "batch_" + sim.new_id("x")[2:34], "object": "batch", "endpoint": body["endpoint"],
             "model": None, "errors": None, "input_file_id": body["input_file_id"], "completion_window": "24h",
             "status": "validating", "output_file_id": None, "error_file_id": None, "created_at": now,
             "in_progress_at": None, "expires_at": now + 86400, "finalizing_at": None, "completed_at": None,
             "failed_at": None, "expired_at": None, "cancelling_at": None, "cancelled_at": None,
             "request_counts": {"total": 0, "completed": 0, "failed": 0}, "metadata": body.get("metadata"),
             "usage": None}
    batches[entry["id"]] = entry
    entry["_task"] = asyncio.get_running_loop().create_task(_run(sim, entry, source["data"], request.get("fault")))
    return web.json_response(_public(entry))


async def retrieve_batch(request: web.Request) -> web.Response:
    return web.json_response(_public(_batch(request)))


async def cancel_batch(request: web.Request) -> web.Response:
    entry = _batch(request)
    if entry["status"] in ("failed", "completed", "expired", "cancelled"):
        raise ApiError(409, f"Cannot cancel a batch with status '{entry['status']}'.", None, None)
    if entry["status"] != "cancelling":
        entry["status"], entry["cancelling_at"] = "cancelling", int(time.time())
    return web.json_response(_public(entry))


async def list_batches(request: web.Request) -> web.Response:
    _, batches = _state(request.app["sim"])
    try:
        limit = max(1, min(100, int(request.query.get("limit", "20"))))
    except ValueError:
        raise ApiError(400, "Invalid 'limit': expected an integer.", "limit", "invalid_type") from None
    data = [_public(b) for b in sorted(batches.values(), key=lambda b: b["created_at"], reverse=True)][:limit]
    return web.json_response({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                              "last_id": data[-1]["id"] if data else None, "has_more": len(batches) > limit})


def _parse_lines(data: bytes, endpoint: str) -> tuple[list[dict], list[dict]]:
    """The input file's requests, and the validation errors (`BatchError` shape) if any."""
    requests, problems, seen = [], [], set()
    for number, raw in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
            if not isinstance(line, dict):
                raise ValueError
        except ValueError:
            problems.append({"code": "invalid_json_line", "message": "This line is not parseable as valid JSON.",
                             "param": None, "line": number})
            continue
        custom_id = line.get("custom_id")
        if not isinstance(custom_id, str):
            problems.append({"code": "missing_custom_id", "message": "Each request needs a string custom_id.",
                             "param": "custom_id", "line": number})
        elif custom_id in seen:
            problems.append({"code": "duplicate_custom_id", "message": "The custom_id for this request is a "
                             "duplicate of another request. The custom_id parameter must be unique for each "
                             "request in a batch.", "param": "custom_id", "line": number})
        elif line.get("url") != endpoint:
            problems.append({"code": "mismatched_endpoint", "message": f"The url of this request does not match "
                             f"the batch's endpoint {endpoint}.", "param": "url", "line": number})
        elif line.get("method") != "POST" or not isinstance(line.get("body"), dict):
            problems.append({"code": "invalid_request", "message": "Each request needs method POST and a body.",
                             "param": "body", "line": number})
        else:
            seen.add(custom_id)
            requests.append(line)
    if not requests and not problems:
        problems.append({"code": "empty_file", "message": "The batch input file is empty.", "param": None,
                         "line": None})
    return requests, problems


def answer(sim: Any, endpoint: str, body: dict) -> tuple[int, dict]:
    """(status, body) the synchronous endpoint gives `body` (not streamed; no latency, no faults)."""
    body = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
    try:
        if endpoint == "/v1/responses":
            from .responses import ResponseBuilder, plan_turn, remember, resolve_items

            validate.check_responses(body)
            items = resolve_items(sim, body)
            spec, _ = plan_turn(sim, body, items, None)
            builder = ResponseBuilder(sim, body, spec)
            remember(sim, body, items, builder, None)
            return 200, builder.final
        from .chat import ChatBuilder, to_turn

        validate.check_chat(body)
        turn = to_turn(body)
        return 200, ChatBuilder(sim, body, brain.plan(turn), turn, None, []).completion()
    except ApiError as err:
        return err.status, err.body()


async def _pause(entry: dict, seconds: float) -> None:
    """Wait, but a cancel is seen within 50 ms."""
    until = time.monotonic() + seconds
    while entry["status"] != "cancelling" and (left := until - time.monotonic()) > 0:
        await asyncio.sleep(min(left, 0.05))


async def _run(sim: Any, entry: dict, data: bytes, fault: Fault | None) -> None:
    f = fault or Fault()
    await asyncio.sleep(0)
    requests, problems = _parse_lines(data, entry["endpoint"])
    if f.batch_failed and not problems:
        problems = [{"code": "invalid_request", "message": "Simulated validation failure.", "param": None,
                     "line": 1}]
    if problems:
        entry.update(status="failed", failed_at=int(time.time()), errors={"object": "list", "data": problems[:100]})
        return
    counts = entry["request_counts"]
    counts["total"] = len(requests)
    entry.update(status="in_progress", in_progress_at=int(time.time()))
    out, err = [], []
    steps = max(1, min(len(requests), 20))
    per_step = sim.config.batch_delay / steps
    done = 0
    ended: str | None = None
    for index, line in enumerate(requests, 1):
        if entry["status"] == "cancelling":
            ended = "cancelled"
            break
        if f.expire_after is not None and done >= f.expire_after:
            ended = "expired"
            break
        request_id = sim.new_id("req")
        if f.fail_items and index % f.fail_items == 0:
            status, body = 400, {"error": {"message": "Simulated failure of this request.",
                                           "type": "invalid_request_error", "param": None, "code": None}}
        else:
            status, body = answer(sim, entry["endpoint"], line["body"])
        record = {"id": "batch_req_" + sim.new_id("x")[2:34], "custom_id": line["custom_id"],
                  "response": {"status_code": status, "request_id": request_id, "body": body}, "error": None}
        (out if status == 200 else err).append(dumps(record))
        counts["completed" if status == 200 else "failed"] += 1
        done += 1
        if per_step and index % max(1, len(requests) // steps) == 0:
            await _pause(entry, per_step)
    if ended == "expired":
        for line in requests[done:]:
            err.append(dumps({"id": "batch_req_" + sim.new_id("x")[2:34], "custom_id": line["custom_id"],
                              "response": None, "error": {"code": "batch_expired", "message": "This request "
                              "could not be executed before the completion window expired."}}))
    entry.update(status="finalizing", finalizing_at=int(time.time()))
    if out:
        entry["output_file_id"] = _store_file(sim, ("\n".join(out) + "\n").encode(), "batch_output.jsonl",
                                              "batch_output")["id"]
    if err:
        entry["error_file_id"] = _store_file(sim, ("\n".join(err) + "\n").encode(), "batch_errors.jsonl",
                                             "batch_output")["id"]
    now = int(time.time())
    if ended == "cancelled":
        entry.update(status="cancelled", cancelled_at=now)
    elif ended == "expired":
        entry.update(status="expired", expired_at=now)
    else:
        entry.update(status="completed", completed_at=now)
