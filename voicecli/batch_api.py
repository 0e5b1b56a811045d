"""`voicecli batch --api batch`: the items run on the provider's Batch API (half price, within 24 h).

The requests file (`/v1/responses` bodies for the ws and sse transports, `/v1/chat/completions`
for chat; `custom_id` = the item's id) is uploaded to `/v1/files` (purpose `batch`) and a batch
created — several when there are more than MAX_REQUESTS items or MAX_BYTES of requests. Before
each batch is created its record goes into `OUT.batch.json` (0600, replaced atomically) with a
token also set as the batch's metadata: a rerun after the process was killed polls the batches
recorded there — finding by its token a batch whose creation it did not see answered — instead
of paying twice. Once a batch ends, its output and error files are streamed into OUT in local
mode's format; items it did not do (expired, cancelled, failed) become error lines, which a
rerun submits again. When every batch is written, OUT.batch.json is removed.

`voicecli batch status [BATCH_ID]` and `voicecli batch cancel BATCH_ID` work on any batch.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from voicecli.batch import Item, Progress, message_for, record, summarize
from voicecli.errors import ExitCode, UsageError, VoicecliError

MAX_REQUESTS = 50_000  # per batch (the API's limit)
MAX_BYTES = 190 << 20  # per input file (the API's limit is 200 MB)
DOWNLOAD_LIMIT = 1 << 40  # result files are streamed line by line, not held
MAX_LINE = 64 << 20
TERMINAL = ("completed", "failed", "expired", "cancelled")
POLL_FIRST, POLL_MAX = 0.5, 30.0


class _Replay:
    """A transport that replays the events of an answer already received (a batch result), so
    that the conversation layer makes of it what it makes of a streamed one."""

    name, base_url, bytes_sent = "batch", "", 0

    def __init__(self, events: list):
        self.events = events

    async def stream(self, request, anchor=None):
        for event in self.events:
            yield event

    async def aclose(self, *, leaving: bool = False) -> None:
        pass


class Api:
    """The Files and Batches endpoints, over the one HTTP client, with the profile's retries."""

    def __init__(self, profile: Any):
        from voicecli.transport import resolve_base_url

        self.profile, self.conn = profile, profile.connection
        self.base_url = resolve_base_url(profile)
        self.api_key = profile.api_key()

    def _fail(self, error: Any) -> VoicecliError:
        from voicecli.ui.status import failure

        return failure(error, self.base_url, profile=self.profile)

    async def call(self, method: str, path: str, params: dict | None = None, **kwargs: Any) -> Any:
        """The JSON reply of one request; retried as the profile says; VoicecliError when it fails."""
        if method == "GET" and not kwargs and not params:
            from voicecli.transport.http import get_json

            data, error = await get_json(self.conn, self.base_url, self.api_key, path)
            if error is not None:
                raise self._fail(error)
            return data
        from voicecli.transport.base import Retries, request_headers
        from voicecli.transport.client import TransportError
        from voicecli.transport.http import _failure, shared_client
        from voicecli.transport.urls import endpoint_url
        from voicecli.wire import errors

        client = shared_client(self.conn)
        url = endpoint_url(self.base_url, path, params)
        headers = {**request_headers(self.conn, self.api_key), **kwargs.pop("headers", {})}
        retries = Retries(self.conn.max_retries, self.api_key)
        while True:
            answered = False
            try:
                resp = await client.request(method, url, headers=headers, **kwargs)
                answered = True
                if resp.status_code < 300:
                    try:
                        return resp.json()
                    except ValueError:
                        raise VoicecliError(f"expected JSON from {url} but got: {resp.text[:120]!r}",
                                            exit_code=ExitCode.API) from None
                failure = errors.from_http(resp.status_code, resp.content, resp.headers)
            except TransportError as exc:
                failure = _failure(exc, self.conn, self.base_url, self.api_key, answered)
            if not await retries.wait(failure):
                raise self._fail(failure)

    async def lines(self, file_id: str):
        """The lines of a file's content, as they arrive (a result file may be large)."""
        from voicecli.transport.base import request_headers
        from voicecli.transport.client import TransportError
        from voicecli.transport.http import _failure, shared_client
        from voicecli.transport.urls import endpoint_url
        from voicecli.wire import errors

        url = endpoint_url(self.base_url, f"/files/{file_id}/content")
        try:
            async with shared_client(self.conn).stream("GET", url, headers=request_headers(self.conn, self.api_key)) as resp:
                if resp.status_code >= 300:
                    raise self._fail(errors.from_http(resp.status_code, await resp.aread(), resp.headers))
                rest = b""
                async for chunk in resp.aiter_bytes(limit=DOWNLOAD_LIMIT):
                    rest += chunk
                    *whole, rest = rest.split(b"\n")
                    if len(rest) > MAX_LINE:
                        raise VoicecliError(f"a line of file {file_id} is over {MAX_LINE >> 20} MiB",
                                            exit_code=ExitCode.API)
                    for line in whole:
                        if line.strip():
                            yield line
                if rest.strip():
                    yield rest
        except TransportError as exc:
            raise self._fail(_failure(exc, self.conn, self.base_url, self.api_key, False)) from None


# ---- the state beside OUT ----------------------------------------------------------------------------


class State:
    """OUT.batch.json: the batches this OUT is waiting for."""

    def __init__(self, out_path: Path):
        self.path = out_path.with_name(out_path.name + ".batch.json")
        self.data: dict = {"batches": []}
        if self.path.exists():
            try:
                self.data = json.loads(self.path.read_text(encoding="utf-8"))
                assert isinstance(self.data.get("batches"), list)
            except (ValueError, AssertionError, OSError):
                raise UsageError(f"{self.path} is not a batch state file voicecli wrote",
                                 hint="move it away to submit the items again (the batches it names may "
                                      "still be running: `voicecli batch status`)") from None

    @property
    def batches(self) -> list[dict]:
        return self.data["batches"]

    def save(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(self.data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def remove(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


# ---- running a batch ---------------------------------------------------------------------------------


def run_api(profile: Any, opts: Any) -> int:
    """`--api batch`: submit (or resume), poll, write OUT."""
    from voicecli.batch import opened

    if opts.out == "-":
        raise UsageError("--api batch needs an --out file: the batch id is kept beside it")
    with opened(profile, opts) as (source, settings, out, done, tally):
        return _run(_Runner(profile, opts, source, settings, out, done, tally), opts, out, tally)


def _run(runner: "_Runner", opts: Any, out: Any, tally: Any) -> int:
    interrupted = False
    try:
        asyncio.run(runner.main())
    except KeyboardInterrupt:
        interrupted = True
    ended = None
    if interrupted or runner.signal:
        ended = ("interrupted; the batch goes on at the provider: rerun the same command to collect it "
                 f"({runner.state.path.name} keeps its id)") if runner.state.batches else "interrupted"
    summarize(tally, out, opts, ended, {"batch_ids": [b.get("id") for b in runner.state.batches]})
    if runner.signal:
        return 128 + runner.signal
    if interrupted:
        return ExitCode.INTERRUPTED
    return ExitCode.INCOMPLETE if tally.failed else ExitCode.OK


class _Runner:
    def __init__(self, profile, opts, source, settings, out, done, tally):
        self.profile, self.opts, self.source, self.settings = profile, opts, source, settings
        self.out, self.done, self.tally = out, done, tally
        self.state = State(out.path)
        self.signal: int | None = None
        kind = profile.connection.transport
        self.endpoint = "/v1/chat/completions" if kind == "chat" else "/v1/responses"

    async def main(self) -> None:
        from voicecli.signals import on_leave_signals
        from voicecli.transport import close_clients

        task = asyncio.current_task()

        def leave(sig: int) -> None:
            self.signal = sig
            task.cancel()

        remove = on_leave_signals(leave)
        self.api = Api(self.profile)
        progress = Progress(self.tally)
        self.progress = progress
        try:
            if self.state.batches:
                print(f"voicecli: resuming {len(self.state.batches)} batch(es) recorded in {self.state.path.name}",
                      file=sys.stderr)
                self.endpoint = self.state.data.get("endpoint", self.endpoint)
            elif self.tally.total > self.tally.skipped:
                await self._submit()
            progress.start()
            await self._collect()
        except asyncio.CancelledError:
            if self.signal is None:
                raise
            task.uncancel()
        finally:
            progress.stop()
            remove()
            await close_clients()

    async def _submit(self) -> None:
        """Write the requests of the items not done, upload them and create the batches."""
        from voicecli.conversation import Conversation
        from voicecli.wire import chat, responses

        self.state.data.update(endpoint=self.endpoint, created=time.time())
        chunk: list[bytes] = []
        size = 0
        for item in self.source.items():
            if item.key in self.done:
                continue
            profile, text_format = self.settings.for_item(item)
            conversation = Conversation(profile, None, history=[await message_for(item, profile)])
            conversation.text_format = text_format
            request = conversation.request()
            body = (chat.build_body(request, stream=False) if self.endpoint == "/v1/chat/completions"
                    else responses.build_body(request, stream=False))
            line = (json.dumps({"custom_id": item.key, "method": "POST", "url": self.endpoint, "body": body},
                               ensure_ascii=False) + "\n").encode("utf-8")
            if chunk and (len(chunk) >= MAX_REQUESTS or size + len(line) > MAX_BYTES):
                await self._create(chunk)
                chunk, size = [], 0
            chunk.append(line)
            size += len(line)
        if chunk:
            await self._create(chunk)

    async def _create(self, lines: list[bytes]) -> None:
        name = f"{self.out.path.stem}-{len(self.state.batches) + 1}.jsonl"
        uploaded = await self.api.call("POST", "/files", files={"file": (name, b"".join(lines), "application/jsonl")},
                                       data={"purpose": "batch"})
        token = os.urandom(8).hex()
        entry = {"id": None, "token": token, "input_file_id": uploaded["id"], "requests": len(lines)}
        self.state.batches.append(entry)
        self.state.save()  # before creating it: a rerun looks for the token rather than paying twice
        batch = await self.api.call("POST", "/batches", content=json.dumps({
            "input_file_id": uploaded["id"], "endpoint": self.endpoint, "completion_window": "24h",
            "metadata": {"voicecli_out": self.out.path.name[:512], "voicecli_token": token}}).encode(),
            headers={"Content-Type": "application/json"})
        entry["id"] = batch["id"]
        self.state.save()

    async def _find(self, entry: dict) -> None:
        """A batch whose creation was not seen answered: find it by its token, else create it now."""
        listing = await self.api.call("GET", "/batches", {"limit": "100"})
        for batch in listing.get("data") or ():
            if (batch.get("metadata") or {}).get("voicecli_token") == entry["token"]:
                entry["id"] = batch["id"]
                self.state.save()
                return
        batch = await self.api.call("POST", "/batches", content=json.dumps({
            "input_file_id": entry["input_file_id"], "endpoint": self.endpoint, "completion_window": "24h",
            "metadata": {"voicecli_out": self.out.path.name[:512], "voicecli_token": entry["token"]}}).encode(),
            headers={"Content-Type": "application/json"})
        entry["id"] = batch["id"]
        self.state.save()

    async def _collect(self) -> None:
        """Poll every recorded batch until it ends; write its results; then the items not done."""
        for entry in self.state.batches:
            if entry.get("id") is None:
                await self._find(entry)
        pending = [e for e in self.state.batches if not e.get("written")]
        interval = POLL_FIRST
        ends: dict[str, str] = {}
        while pending:
            counts = 0
            for entry in list(pending):
                batch = await self.api.call("GET", f"/batches/{entry['id']}")
                rc = batch.get("request_counts") or {}
                counts += (rc.get("completed") or 0) + (rc.get("failed") or 0)
                if batch.get("status") in TERMINAL:
                    await self._write(entry, batch)
                    ends[batch["id"]] = batch["status"]
                    pending.remove(entry)
            self.progress.note = f" · {len(pending)} batch(es) at the provider, {counts} requests done there" \
                if pending else ""
            if pending:
                await asyncio.sleep(interval)
                interval = min(interval * 1.5, POLL_MAX)
        # what no batch answered: error lines, submitted again by a rerun
        why = ", ".join(f"{b} {s}" for b, s in ends.items() if s != "completed") or "no batch answered it"
        if self.tally.done + self.tally.skipped < self.tally.total:
            for item in self.source.items():
                if item.key not in self.done:
                    self._emit({"id": item.id, "text": "", "usage": _NO_USAGE, "cost_usd": None,
                                "error": f"not answered by the Batch API ({why}); a rerun submits it again"})
        self.state.remove()

    def _emit(self, rec: dict) -> None:
        key = str(rec["id"])
        if key in self.done:
            return  # written before the process was killed: never twice
        self.done.add(key)
        self.out.write(rec)
        self.tally.add(rec)

    async def _write(self, entry: dict, batch: dict) -> None:
        items = self._todo()
        for file_id in (batch.get("output_file_id"), batch.get("error_file_id")):
            if not file_id:
                continue
            async for raw in self.api.lines(file_id):
                try:
                    line = json.loads(raw)
                except ValueError:
                    print(f"voicecli: warning: skipped a malformed line of {file_id}", file=sys.stderr)
                    continue
                item = items.get(str(line.get("custom_id")))
                if item is not None:
                    self._emit(await self._record(item, line))
        if batch.get("status") == "failed" and (batch.get("errors") or {}).get("data"):
            first = batch["errors"]["data"][0]
            where = f"line {first['line']}: " if first.get("line") else ""
            print(f"voicecli: batch {batch['id']} failed: {where}{first.get('message')}", file=sys.stderr)
        entry["written"] = True
        entry["status"] = batch.get("status")
        self.state.save()

    def _todo(self) -> dict[str, Item]:
        return {item.key: item for item in self.source.items() if item.key not in self.done}

    async def _record(self, item: Item, line: dict) -> dict:
        from voicecli import pricing
        from voicecli.conversation import Conversation
        from voicecli.wire import chat, errors, responses

        response = line.get("response") or {}
        status, body = response.get("status_code"), response.get("body")
        if line.get("error") or status != 200 or not isinstance(body, dict):
            err = line.get("error") or {}
            if status and status != 200:
                error = errors.from_http(status, body if isinstance(body, dict) else None, {})
                message = f"{error.kind} ({status}): {error.message}"
            else:
                message = f"{err.get('code') or 'error'}: {err.get('message') or 'the request failed'}"
            return {"id": item.id, "text": "", "usage": _NO_USAGE, "cost_usd": None, "error": message}
        events = (chat.completion_events(body) if self.endpoint == "/v1/chat/completions"
                  else responses.response_events(body))
        profile, text_format = self.settings.for_item(item)
        conversation = Conversation(profile, _Replay(events))
        conversation.text_format = text_format
        from voicecli.items import Message

        async for _ in conversation.send(Message("user", item.prompt)):
            pass
        return record(item, conversation.last, text_format, pricing.BATCH_DISCOUNT)


_NO_USAGE = {"input_tokens": 0, "cached_tokens": 0, "output_tokens": 0, "reasoning_tokens": 0}


# ---- status and cancel ---------------------------------------------------------------------------------


def _line(batch: dict) -> str:
    rc = batch.get("request_counts") or {}
    created = time.strftime("%Y-%m-%d %H:%M", time.localtime(batch.get("created_at") or 0))
    out = (batch.get("metadata") or {}).get("voicecli_out")
    return (f"{batch.get('id')}  {batch.get('status'):<11} {rc.get('completed', 0)}/{rc.get('total', 0)} done, "
            f"{rc.get('failed', 0)} failed  {batch.get('endpoint')}  created {created}" + (f"  → {out}" if out else ""))


def batch_status(profile: Any, batch_id: str | None, json_out: bool, debug: bool) -> int:
    """One batch (BATCH_ID, or the ones OUT's state file names when given OUT), or the recent ones."""
    from voicecli.ui.status import setup_logging

    setup_logging(debug)
    ids = [batch_id] if batch_id else []
    if batch_id and Path(batch_id).is_file():
        state = State(Path(batch_id))
        if not state.path.exists():
            raise UsageError(f"{batch_id}: no batch is pending for it ({state.path.name} is not there)")
        ids = [b["id"] for b in state.batches if b.get("id")]

    async def go():
        from voicecli.transport import close_clients

        try:
            api = Api(profile)
            if ids:
                return [await api.call("GET", f"/batches/{one}") for one in ids]
            return await api.call("GET", "/batches", {"limit": "20"})
        finally:
            await close_clients()

    data = asyncio.run(go())
    if ids and not (batch_id and Path(batch_id).is_file()):
        data = data[0]
    elif ids:
        data = {"object": "list", "data": data}
        batch_id = None
    if json_out:
        print(json.dumps(data, ensure_ascii=False))
    elif batch_id:
        print(_line(data))
        for problem in ((data.get("errors") or {}).get("data") or [])[:5]:
            print(f"  line {problem.get('line')}: {problem.get('message')}", file=sys.stderr)
    else:
        for batch in data.get("data") or ():
            print(_line(batch))
    return ExitCode.OK


def batch_cancel(profile: Any, batch_id: str, json_out: bool, debug: bool) -> int:
    from voicecli.ui.status import setup_logging

    setup_logging(debug)

    async def go():
        from voicecli.transport import close_clients

        try:
            return await Api(profile).call("POST", f"/batches/{batch_id}/cancel")
        finally:
            await close_clients()

    data = asyncio.run(go())
    print(json.dumps(data, ensure_ascii=False) if json_out else _line(data))
    return ExitCode.OK
