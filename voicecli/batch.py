"""`voicecli batch`: many prompts from a file, concurrently (local mode) or on the Batch API.

INPUT is JSON Lines (`{"id", "prompt"}` plus optional `system`, `schema`, `options`, `image`,
`file`) or plain text (one prompt a line, id = line number); `-` reads stdin (spooled to a private
temporary file: the input is read twice — once to check it all before anything is sent, then as
it is sent — and never held in memory).

OUT gets one JSON line per input, `{"id", "text", "usage", "cost_usd"}` (+ `"json"` with a schema,
+ `"error"` when the item failed), in completion order, each line one `write(2)` on a file opened
O_APPEND: a reader tailing it, or a `kill -9`, never leaves half a line. A rerun with the same OUT
skips every id that has a line without an error; lines with an error are dropped (OUT is rewritten
atomically, without them) and their items sent again. One batch at a time per OUT (`flock`).

Local mode keeps `-j N` requests in flight over the profile's transport (each worker its own
transport — one WebSocket each for `ws` — over one pooled HTTP client for sse/chat). A 429/503 (and
other 5xx, dropped connections, timeouts) is retried on a budget of its own (`RATE_LIMIT_BUDGET`
seconds per item, not the profile's `max_retries`), and a `retry-after` holds every worker, as does `x-ratelimit-remaining-requests/-tokens: 0` until its
reset: a run at -j 64 against a limited endpoint slows down instead of failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicecli.errors import ExitCode, UsageError, VoicecliError

KEYS = ("id", "prompt", "system", "schema", "options", "image", "file")
RATE_LIMIT_BUDGET = 900.0  # seconds an item may keep retrying 429/5xx/network failures before it is an error line
MAX_HOLD = 120.0  # the longest pause a rate-limit header can impose at once
FATAL_KINDS = ("auth", "quota")  # every other item would fail the same way: stop the batch


@dataclass
class BatchOptions:
    """The flags of `voicecli batch` beyond the profile's."""

    input: str
    out: str | None = None
    jobs: int = 8
    api: str = "local"  # "local" | "batch"
    json_out: bool = False
    log: bool = False
    schema: str | None = None
    debug: bool = False


@dataclass
class Item:
    """One input line."""

    id: Any  # as given: a string, or an integer (plain text: the line number)
    line: int
    prompt: str
    system: str | None = None
    schema: Any = None
    options: dict | None = None
    images: tuple[str, ...] = ()
    files: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return str(self.id)


# ---- input ------------------------------------------------------------------------------------


class Input:
    """The input file (stdin spooled to a private temporary file), read as many times as needed."""

    def __init__(self, spec: str, limit_mib: float):
        self.spec, self.limit = spec, int(limit_mib * (1 << 20))
        self._spool: str | None = None
        if spec == "-":
            fd, self._spool = tempfile.mkstemp(prefix="voicecli-batch-", suffix=".jsonl")  # 0600
            with os.fdopen(fd, "wb") as f:
                while chunk := sys.stdin.buffer.read(1 << 20):
                    f.write(chunk)
            self.path, self.name = Path(self._spool), "stdin"
        else:
            self.path, self.name = Path(spec).expanduser(), spec
            if not self.path.is_file():
                raise UsageError(f"{spec}: no such file" if not self.path.exists() else f"{spec}: not a file")
        self.jsonl = self._is_jsonl()

    def close(self) -> None:
        if self._spool:
            os.unlink(self._spool)
            self._spool = None

    def _is_jsonl(self) -> bool:
        for _, raw in self._lines():
            if raw.strip():
                return raw.lstrip().startswith("{")
        return False

    def _lines(self) -> Iterator[tuple[int, str]]:
        with open(self.path, "rb") as f:
            for number, raw in enumerate(f, 1):
                try:
                    yield number, raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise self.error(number, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})")

    def error(self, number: int, message: str) -> UsageError:
        return UsageError(f"{self.name}, line {number}: {message}; nothing was sent")

    def items(self) -> Iterator[Item]:
        """Every item, checked for shape (not for settings: `Settings.check` does that)."""
        for number, raw in self._lines():
            if not raw.strip():
                continue
            if len(raw) > self.limit:
                raise self.error(number, f"over the {self.limit >> 20} MiB input limit (ui.max_input_mib)")
            yield self._item(number, raw) if self.jsonl else Item(number, number, raw.rstrip("\r\n"))

    def _item(self, number: int, raw: str) -> Item:
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise self.error(number, f"not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise self.error(number, 'expected a JSON object like {"id": "1", "prompt": "…"}')
        unknown = [k for k in data if k not in KEYS]
        if unknown:
            raise self.error(number, f"unknown key '{unknown[0]}' (known: {', '.join(KEYS)})")
        ident = data.get("id")
        if isinstance(ident, bool) or not isinstance(ident, (str, int)) or ident == "":
            raise self.error(number, "needs an \"id\": a non-empty string or an integer")
        prompt = data.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise self.error(number, "needs a \"prompt\": a non-empty string")
        if data.get("system") is not None and not isinstance(data["system"], str):
            raise self.error(number, "\"system\" must be a string")
        if data.get("options") is not None and not isinstance(data["options"], dict):
            raise self.error(number, "\"options\" must be an object like {\"temperature\": 0.2}")
        if data.get("schema") is not None and not isinstance(data["schema"], (dict, str)):
            raise self.error(number, "\"schema\" must be a JSON schema object or the concise form")
        attached = []
        for key in ("image", "file"):
            value = data.get(key)
            value = [] if value is None else [value] if isinstance(value, str) else value
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise self.error(number, f"\"{key}\" must be a path or URL, or a list of them")
            for spec in value:
                if not spec.startswith(("http://", "https://", "data:")) and not Path(spec).expanduser().is_file():
                    raise self.error(number, f"\"{key}\": {spec}: no such file")
            attached.append(tuple(value))
        return Item(ident, number, prompt, data.get("system"), data.get("schema"), data.get("options"), *attached)


class Settings:
    """The profile each item runs with (its `system` and `options` over the command's) and its
    structured-output format; a few recent ones are kept, as most items share them."""

    def __init__(self, profile: Any, schema: str | None):
        self.profile = profile
        self.default_format = _text_format(schema, "--schema") if schema is not None else None
        self._profiles: dict[str, Any] = {}
        self._formats: dict[str, Any] = {}

    def for_item(self, item: Item) -> tuple[Any, dict | None]:
        profile = self.profile
        if item.system is not None or item.options:
            key = json.dumps([item.system, item.options], sort_keys=True)
            profile = self._profiles.get(key)
            if profile is None:
                profile = self._derive(item)
                if len(self._profiles) > 256:
                    self._profiles.clear()
                self._profiles[key] = profile
        text_format = self.default_format
        if item.schema is not None:
            key = json.dumps(item.schema, sort_keys=True)
            text_format = self._formats.get(key)
            if text_format is None:
                text_format = _text_format(item.schema, "\"schema\"")
                if len(self._formats) > 256:
                    self._formats.clear()
                self._formats[key] = text_format
        return profile, text_format

    def _derive(self, item: Item) -> Any:
        from voicecli import profiles

        derived = copy.copy(self.profile)
        derived.model = dataclasses.replace(self.profile.model)
        for key, value in (item.options or {}).items():
            section, name = profiles.resolve_key(str(key), origin="\"options\"")
            if section != "model":
                raise UsageError(f"\"options\": {key}: only model settings can change per item")
            if value is not None and not isinstance(value, str):
                profiles.apply_setting(derived, f"model.{name}", value, origin="\"options\"")
            else:
                profiles.apply_setting(derived, f"model.{name}", "none" if value is None else value,
                                       origin="\"options\"")
        if item.system is not None:
            derived.model.instructions = item.system
        return derived


def _text_format(spec: Any, label: str) -> dict:
    from voicecli.schema import check, load, response_format

    if isinstance(spec, dict):
        check(spec, label)
        return response_format(spec)
    return response_format(load(spec, label))


def check_input(source: Input, settings: Settings, done: set[str]) -> tuple[int, int]:
    """Read the whole input before anything is sent: (items, items already done in OUT). A bad
    line, a duplicate id or a bad setting is a UsageError naming the line."""
    seen: dict[str, int] = {}
    total = skipped = 0
    for item in source.items():
        first = seen.get(item.key)
        if first is not None:
            raise source.error(item.line, f"duplicate id {json.dumps(item.id)} (first on line {first})")
        seen[item.key] = item.line
        try:
            settings.for_item(item)
        except VoicecliError as exc:
            raise source.error(item.line, exc.message) from None
        total += 1
        skipped += item.key in done
    if total == 0:
        raise UsageError(f"{source.name}: no prompts in it")
    return total, skipped


# ---- output -----------------------------------------------------------------------------------


class Output:
    """OUT, appended one whole line per `write(2)`; locked against a second batch writing it."""

    def __init__(self, spec: str):
        self.spec = spec
        self.stdout = spec == "-"
        self.path = None if self.stdout else Path(spec).expanduser()
        self.fd: int | None = 1 if self.stdout else None
        self.dropped = 0  # error lines removed to be retried

    def open(self) -> set[str]:
        """Open (create 0600) and lock OUT; return the ids it already holds without an error."""
        if self.stdout:
            return set()
        try:
            self.fd = self._lock(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        except OSError as exc:
            raise UsageError(f"cannot write {self.spec}: {exc.strerror or exc}") from None
        done, keep, rewrite = set(), [], False
        with open(self.path, "rb") as f:
            for number, raw in enumerate(f, 1):
                record = _parse(raw) if raw.endswith(b"\n") else None
                if record is None and raw.endswith(b"\n") and raw.strip():
                    self.close()  # not ours: never rewrite a file voicecli batch did not write
                    raise UsageError(f"{self.spec}, line {number}: not an answer line of voicecli batch; "
                                     "nothing was sent", hint="choose another --out")
                if record is None or record.get("error") or str(record.get("id")) in done:
                    rewrite = True  # a cut last line, a failed item (to retry), a repeat
                    self.dropped += record is not None and bool(record.get("error"))
                    continue
                done.add(str(record["id"]))
                keep.append(raw)
        if rewrite:  # atomically: a kill -9 now leaves either the old OUT or the new one
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.writelines(keep)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            old, self.fd = self.fd, self._lock(os.open(self.path, os.O_WRONLY | os.O_APPEND))
            os.close(old)
        del keep
        return done

    def _lock(self, fd: int) -> int:
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:
            pass
        except OSError:
            os.close(fd)
            raise UsageError(f"{self.spec} is being written by another voicecli batch",
                             hint="wait for it to finish, or choose another --out") from None
        return fd

    def write(self, record: dict) -> None:
        data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        while data:  # one write(2) for a regular file; a pipe may take less
            data = data[os.write(self.fd, data):]

    def close(self) -> None:
        if self.fd is not None and not self.stdout:
            os.close(self.fd)
        self.fd = None


def _parse(raw: bytes) -> dict | None:
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    return record if isinstance(record, dict) and "id" in record else None


def default_out(input_spec: str) -> str:
    if input_spec == "-":
        raise UsageError("reading stdin: give --out FILE (or --out - for stdout)")
    path = Path(input_spec)
    stem = path.name[:-6] if path.name.endswith(".jsonl") else path.stem if path.suffix else path.name
    return str(path.with_name(stem + ".out.jsonl"))


# ---- one item's answer as an OUT line -----------------------------------------------------------


def record(item: Item, result: Any, text_format: dict | None, cost_factor: float = 1.0) -> dict:
    """The OUT line of a finished item (`result`: the conversation's TurnResult)."""
    u = result.usage
    cost = result.cost_usd
    out: dict[str, Any] = {"id": item.id, "text": result.text,
                           "usage": {"input_tokens": u.input_tokens, "cached_tokens": u.cached_tokens,
                                     "output_tokens": u.output_tokens, "reasoning_tokens": u.reasoning_tokens},
                           "cost_usd": None if cost is None else round(cost * cost_factor, 8)}
    problem, data = _problem(result, text_format)
    if text_format is not None:
        out["json"] = data
    if problem:
        out["error"] = problem
    return out


def _problem(result: Any, text_format: dict | None) -> tuple[str | None, Any]:
    """Why an answer is not a success (None if it is), and the parsed JSON of a structured one."""
    if result.error is not None:
        status = f" ({result.error.status})" if result.error.status else ""
        return f"{result.error.kind}{status}: {result.error.message}", None
    if result.refusal:
        return "the model refused to answer", None
    if result.status == "incomplete":
        return f"the answer is incomplete ({result.reason or 'unknown reason'})", None
    if result.status != "completed":
        return f"the response ended with status '{result.status}' ({result.reason})", None
    if text_format is None:
        return None, None
    from voicecli.schema import errors

    try:
        data = json.loads(result.text)
    except ValueError as exc:
        return f"the answer does not match the schema: it is not JSON ({exc})", None
    problems = errors(text_format["schema"], data)
    if problems:
        return "the answer does not match the schema: " + "; ".join(problems), data
    return None, data


async def message_for(item: Item, profile: Any):
    """The user message of an item: attached files (read off the event loop) and the prompt."""
    from voicecli.items import Message

    if not item.files and not item.images:
        return Message("user", item.prompt)

    def build():
        from voicecli.infer import attachment_block, attachment_text, image_url

        limit = profile.ui.max_input_mib
        parts = [attachment_block(*attachment_text(spec, limit, profile.connection)) for spec in item.files]
        return Message("user", "\n\n".join(parts + [item.prompt]), tuple(image_url(s) for s in item.images))

    return await asyncio.to_thread(build)


# ---- rate limits ------------------------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_duration(text: str) -> float | None:
    """`x-ratelimit-reset-*` values: '6ms', '1s', '6m0s', '1h2m3.5s', or plain seconds."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(a + b for a, b in parts) != text:
        return None
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(amount) * scale[unit] for amount, unit in parts)


class Pacer:
    """Holds every worker before its next request while the server says to wait."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.resume_at = 0.0
        self.holds = 0

    def hold(self, seconds: float) -> None:
        until = self.clock() + min(max(seconds, 0.0), MAX_HOLD)
        if until > self.resume_at:
            self.resume_at = until
            self.holds += 1

    async def ready(self) -> None:
        while (wait := self.resume_at - self.clock()) > 0:
            await asyncio.sleep(wait)

    def observe(self, headers: Any) -> None:
        """A reply's `x-ratelimit-remaining-requests/-tokens` at 0: hold until their reset."""
        for kind in ("requests", "tokens"):
            remaining = headers.get(f"x-ratelimit-remaining-{kind}")
            if remaining is None:
                continue
            try:
                left = float(remaining)
            except ValueError:
                continue
            if left <= 0:
                reset = parse_duration(headers.get(f"x-ratelimit-reset-{kind}") or "")
                self.hold(1.0 if reset is None else reset)


def batch_retries(pacer: Pacer, max_retries: int, api_key: str | None, stats: dict):
    """The retry policy of one item: 429 and 503 — and the other 5xx, dropped connections and
    timeouts, which an overnight run meets too — are retried for up to RATE_LIMIT_BUDGET seconds
    from the item's first such failure; a `retry-after` holds every worker. The rest as the
    profile says."""
    from voicecli.transport.base import Retries, backoff_delay

    class BatchRetries(Retries):
        def __init__(self) -> None:
            super().__init__(max_retries, api_key, quiet=True)
            self.limited = 0
            self.since: float | None = None

        async def wait(self, failure, *, emitted: bool = False, force: bool = False) -> bool:
            transient = failure.retryable and (failure.kind in ("rate_limit", "server", "network", "timeout")
                                               or failure.status in (429, 503))
            if not transient:
                return await super().wait(failure, emitted=emitted, force=force)
            if emitted:
                return False
            now = time.monotonic()
            self.since = self.since if self.since is not None else now
            delay = backoff_delay(min(self.limited, 6), failure.retry_after)
            if delay is None or now + delay > self.since + RATE_LIMIT_BUDGET:
                return False
            self.limited += 1
            self.used += 1
            limited = failure.kind == "rate_limit" or failure.status in (429, 503)
            key = "rate_limited" if limited else "retried"
            stats[key] = stats.get(key, 0) + 1
            if failure.retry_after is not None:
                pacer.hold(delay)  # the server's word holds everyone
                await pacer.ready()
            else:
                await asyncio.sleep(delay)
            return True

    return BatchRetries


# ---- progress and summary -------------------------------------------------------------------------


@dataclass
class Tally:
    """What the run has done so far."""

    total: int  # items in INPUT
    skipped: int  # already in OUT
    ok: int = 0
    failed: int = 0
    usage: Any = None
    cost: float | None = 0.0
    started: float = field(default_factory=time.monotonic)
    stats: dict = field(default_factory=dict)

    def add(self, rec: dict) -> None:
        if rec.get("error"):
            self.failed += 1
        else:
            self.ok += 1
        u = rec["usage"]
        self.usage = [a + b for a, b in zip(self.usage or [0, 0, 0, 0], (u["input_tokens"], u["cached_tokens"],
                                                                           u["output_tokens"], u["reasoning_tokens"]))]
        if rec["cost_usd"] is None:
            self.cost = None
        elif self.cost is not None:
            self.cost += rec["cost_usd"]

    @property
    def done(self) -> int:
        return self.ok + self.failed

    def line(self) -> str:
        from voicecli.pricing import format_usd

        todo = self.total - self.skipped
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.done / elapsed
        eta = f"{(todo - self.done) / rate:.0f} s" if rate > 0 and self.done < todo else "–"
        tokens = sum((self.usage or [0, 0, 0, 0])[i] for i in (0, 2))
        failed = f", {self.failed} failed" if self.failed else ""
        return (f"batch {self.done + self.skipped}/{self.total}{failed} · {rate:.1f}/s · ETA {eta} · "
                f"{tokens:,} tokens · {format_usd(self.cost)}")


class Progress:
    """A one-line progress bar on a terminal's stderr; nothing otherwise."""

    def __init__(self, tally: Tally):
        from voicecli.ui.term import is_terminal

        self.tally = tally
        self.enabled = is_terminal(sys.stderr)
        self.note = ""
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self.enabled:
            self._task = asyncio.get_running_loop().create_task(self._draw())

    async def _draw(self) -> None:
        while True:
            sys.stderr.write("\r\x1b[K" + self.tally.line() + self.note)
            sys.stderr.flush()
            await asyncio.sleep(0.25)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def summarize(tally: Tally, out: Output, opts: BatchOptions, ended: str | None, extra: dict | None = None) -> None:
    """The summary line on stderr (always), and with --json the summary object on stdout."""
    elapsed = time.monotonic() - tally.started
    where = "stdout" if out.stdout else out.spec
    todo = tally.total - tally.skipped
    skipped = f" ({tally.skipped} already in {where})" if tally.skipped else ""
    line = (f"voicecli: batch: {tally.done} of {todo} to do{skipped} answered in {elapsed:.1f} s, "
            f"{tally.failed} failed")
    if tally.stats.get("rate_limited"):
        line += f"; rate-limited {tally.stats['rate_limited']} times, retried"
    if tally.stats.get("retried"):
        line += f"; {tally.stats['retried']} server or network failures retried"
    if ended:
        line += f"; {ended}"
    print(line, file=sys.stderr)
    if tally.failed:
        print(f"voicecli: {tally.failed} item{'s' * (tally.failed != 1)} failed: see the lines with an \"error\" in "
              f"{where} (jq 'select(.error)'); rerunning the same command retries them", file=sys.stderr)
    if opts.json_out:
        u = tally.usage or [0, 0, 0, 0]
        summary = {"input": opts.input, "out": out.spec, "total": tally.total, "skipped": tally.skipped,
                   "done": tally.done, "ok": tally.ok, "failed": tally.failed,
                   "remaining": todo - tally.done, "seconds": round(elapsed, 3),
                   "usage": {"input_tokens": u[0], "cached_tokens": u[1], "output_tokens": u[2],
                             "reasoning_tokens": u[3]},
                   "cost_usd": None if tally.cost is None else round(tally.cost, 6),
                   "rate_limited": tally.stats.get("rate_limited", 0), "retried": tally.stats.get("retried", 0),
                   "interrupted": bool(ended),
                   **(extra or {})}
        print(json.dumps(summary, ensure_ascii=False), flush=True)


# ---- running it ---------------------------------------------------------------------------------


class Stop(Exception):
    """An error every item would meet (authentication, quota): the batch stops."""

    def __init__(self, error: Any):
        super().__init__(error.message)
        self.error = error


@contextlib.contextmanager
def opened(profile: Any, opts: BatchOptions) -> Iterator[tuple]:
    """What both modes start from, INPUT checked whole and OUT open and locked:
    (source, settings, out, done ids, tally); closed on the way out."""
    from voicecli.ui.status import setup_logging

    setup_logging(opts.debug)
    if opts.jobs < 1 or opts.jobs > 1024:
        raise UsageError(f"-j must be between 1 and 1024; got {opts.jobs}")
    settings = Settings(profile, opts.schema)
    out = Output(opts.out or default_out(opts.input))
    source = Input(opts.input, profile.ui.max_input_mib)
    try:
        if out.path is not None and out.path.exists() and os.path.samefile(out.path, source.path):
            raise UsageError(f"--out {out.spec} is the input file",
                             hint="answers go to another file, e.g. INPUT.out.jsonl")
        done = out.open()
        total, skipped = check_input(source, settings, done)
        yield source, settings, out, done, Tally(total, skipped)
    finally:
        source.close()
        out.close()


def run_batch(profile: Any, opts: BatchOptions) -> int:
    """Local mode: `-j` requests in flight from here."""
    pending = Path(opts.out or default_out(opts.input)).expanduser()
    pending = pending.with_name(pending.name + ".batch.json")
    if opts.out != "-" and pending.exists():  # the items are paid for at the provider already
        raise UsageError(f"a Batch API batch is pending for this OUT ({pending.name})",
                         hint="rerun with --api batch to collect it, or `voicecli batch cancel` it and remove "
                              f"{pending.name}")
    with opened(profile, opts) as (source, settings, out, done, tally):
        return _Local(profile, opts, source, settings, out, done, tally).run()


class _Local:
    def __init__(self, profile, opts, source, settings, out, done, tally):
        self.profile, self.opts, self.source, self.settings = profile, opts, source, settings
        self.out, self.done, self.tally = out, done, tally
        self.stop: Stop | None = None
        self.signal: int | None = None
        self.broken = False  # stdout was closed by its reader

    def run(self) -> int:
        interrupted = False
        try:
            asyncio.run(self._main())
        except KeyboardInterrupt:
            interrupted = True
        ended = None
        if self.broken:
            from voicecli.signals import stdout_gone

            stdout_gone()
            return ExitCode.OK
        if self.signal or interrupted:
            import signal

            how = f"by {signal.Signals(self.signal).name}" if self.signal else "by Ctrl-C"
            ended = f"interrupted {how}; the finished answers were kept, a rerun does the rest"
        elif self.stop is not None:
            ended = "stopped: every item would fail the same way"
        summarize(self.tally, self.out, self.opts, ended)
        if self.stop is not None:  # the error line (and hint) under the summary, with its exit code
            from voicecli.ui.status import failure

            raise failure(self.stop.error, getattr(self, "base_url", self.profile.connection.base_url),
                          profile=self.profile)
        if self.signal:
            return 128 + self.signal
        if interrupted:
            return ExitCode.INTERRUPTED
        return ExitCode.INCOMPLETE if self.tally.failed else ExitCode.OK

    async def _main(self) -> None:
        from voicecli.signals import on_leave_signals
        from voicecli.transport import close_clients, resolve_base_url

        task = self.main_task = asyncio.current_task()

        def leave(sig: int) -> None:
            self.signal = sig
            task.cancel()

        remove = on_leave_signals(leave)
        self.base_url = resolve_base_url(self.profile)
        if self.profile.connection.transport != "ws":
            from voicecli.transport.client import tls_context

            self.tls = tls_context()  # one for every job's client: the certificates are read once
        pacer = Pacer()
        self.make_retries = batch_retries(pacer, self.profile.connection.max_retries, self.profile.api_key(),
                                          self.tally.stats)
        queue: asyncio.Queue = asyncio.Queue(maxsize=self.opts.jobs * 2)
        progress = Progress(self.tally)
        progress.start()
        workers = [asyncio.create_task(self._work(queue, pacer)) for _ in range(self.opts.jobs)]
        workers.append(asyncio.create_task(self._produce(queue, self.opts.jobs)))
        try:
            await asyncio.gather(*workers)  # a worker that fails ends the wait at once
        except asyncio.CancelledError:
            if self.signal is None and self.stop is None and not self.broken:
                raise
            task.uncancel()
        finally:
            progress.stop()
            remove()
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            await close_clients()

    async def _produce(self, queue: asyncio.Queue, workers: int) -> None:
        """The items not done yet, read as the workers take them (the queue holds a few)."""
        for item in self.source.items():
            if item.key not in self.done:
                await queue.put(item)
        for _ in range(workers):
            await queue.put(None)

    async def _work(self, queue: asyncio.Queue, pacer: Pacer) -> None:
        from voicecli.transport import open_transport

        transport = open_transport(self.profile)
        transport.make_retries = self.make_retries
        if hasattr(transport, "on_headers"):
            from voicecli.transport.client import Client

            transport.on_headers = pacer.observe
            conn = self.profile.connection  # a client of its own per job: one connection kept, no pool to scan
            transport.client = Client(connect_timeout=conn.connect_timeout, read_timeout=conn.read_timeout,
                                      context=self.tls)
        try:
            while (item := await queue.get()) is not None:
                await pacer.ready()
                rec = await self._answer(item, transport)
                if rec is None:
                    return
                try:
                    self.out.write(rec)
                except BrokenPipeError:  # `--out - | head`: the reader has what it wanted
                    self.broken = True
                    self.main_task.cancel()
                    return
                self.tally.add(rec)
        finally:
            await transport.aclose(leaving=True)

    async def _answer(self, item: Item, transport: Any) -> dict | None:
        """The OUT line of one item; None when its error stops the batch (the item stays to do)."""
        from voicecli import convlog
        from voicecli.conversation import Conversation

        profile, text_format = self.settings.for_item(item)
        log = convlog.ConversationLog.create(lazy=True, **convlog.where(profile)) if self.opts.log else None
        conversation = Conversation(profile, transport, log=log)
        conversation.text_format = text_format
        try:
            message = await message_for(item, profile)
        except VoicecliError as exc:  # an attachment that went away or a page that failed since the check
            return {"id": item.id, "text": "", "usage": _NO_USAGE, "cost_usd": None, "error": exc.message}
        try:
            async for _ in conversation.send(message):
                pass
        finally:
            if log is not None:
                log.close()
        result = conversation.last
        if result.error is not None and (result.error.kind in FATAL_KINDS
                                         or (result.error.kind == "network" and not result.error.retryable)):
            if self.stop is None:
                self.stop = Stop(result.error)
                self.main_task.cancel()
            return None
        return record(item, result, text_format)


_NO_USAGE = {"input_tokens": 0, "cached_tokens": 0, "output_tokens": 0, "reasoning_tokens": 0}
