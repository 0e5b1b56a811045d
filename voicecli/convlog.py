"""The conversation log shared by `infer`, `chat` and `talk`: one JSON Lines file per conversation.

`<data dir>/conversations/<cid>.jsonl` (the data dir is relocated by VOICECLI_HOME). JSONL rather
than SQLite because it is append-only, readable and greppable with everyday tools. A turn (the user
line, the answer, tool calls and results, the turn record) is appended as one unit when it ends —
also when it is interrupted — under an exclusive `flock`, so runs continuing the same conversation
at once (`infer --cid X` in parallel, a `chat` and an `infer`) never interleave their turns; a crash
(SIGKILL) loses the turn in progress. Nothing is written before a turn's request goes out (a run
that fails earlier leaves no file). `-c` picks the most recently written file that holds a message;
`--cid ID` one.

Lines: {"type": "meta", cid, created, profile, model, transport, base_url} once (`profile_path`
for a profile given as a file; `base_url` without a password, and never a key), then
{"type": "item", "item": {...}} for each history item and {"type": "turn", ...} with the profile,
model, transport and base URL it ran with, usage and timings after each model response. A spoken
answer cut off by the user (cascaded talk writes the answer before it is heard) is corrected by
{"type": "heard", "said": TEXT, "heard": TEXT}: the last assistant message that said TEXT keeps
only what was heard, marked interrupted (dropped if nothing).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from voicecli import paths
from voicecli.errors import ConfigError
from voicecli.items import FunctionCall, FunctionOutput, HistoryItem, Message, OpaqueItem


def conversations_dir() -> Path:
    return paths.data_dir() / "conversations"


def new_cid() -> str:
    # os.urandom, as secrets.token_hex uses, without `secrets` (hmac, hashlib: ~5 ms of every start)
    return time.strftime("%Y%m%d-%H%M%S") + "-" + os.urandom(3).hex()


TEXT_TRANSPORTS = ("ws", "sse", "chat")


def where(profile, transport: str | None = None) -> dict[str, Any]:
    """What a conversation runs with, for its log records: so `-c` can go back to it."""
    out: dict[str, Any] = {"profile": profile.name}
    if profile.source == "path" and profile.path is not None:
        out["profile_path"] = str(profile.path)
    out["model"] = profile.model.name
    out["transport"] = transport or profile.connection.transport
    url = profile.connection.base_url
    if not profile.uses_simulator and "@" not in url:  # a URL with user:password@ stays out of the log
        out["base_url"] = url
    return out


def ran_with(cid: str | None) -> dict[str, str]:
    """The profile (name or file), model, transport and base URL conversation `cid` (else the
    latest) last ran with, as far as its log says; {} when there is no such conversation.
    Model and transport only from text turns: a voice turn's model is a Realtime one."""
    cid = cid or latest_cid()
    path = conversations_dir() / f"{cid}.jsonl" if cid and all(c.isalnum() or c in "-_" for c in cid) else None
    out: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as f:  # type: ignore[arg-type]
            for line in f:
                if not line.startswith(('{"type": "meta"', '{"type": "turn"')):
                    continue  # items may be large (images): only these records are parsed
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if record.get("profile"):
                    out["profile"] = record.get("profile_path") or record["profile"]
                    out.pop("base_url", None)
                if record.get("base_url"):
                    out["base_url"] = record["base_url"]
                if record.get("transport") in TEXT_TRANSPORTS and record.get("model"):
                    out["model"], out["transport"] = record["model"], record["transport"]
    except (OSError, TypeError):
        return {}
    return out


def item_to_json(item: HistoryItem) -> dict[str, Any]:
    if isinstance(item, Message):
        out: dict[str, Any] = {"kind": "message", "role": item.role, "text": item.text}
        if item.images:
            out["images"] = list(item.images)
        if item.interrupted:
            out["interrupted"] = True
        return out
    if isinstance(item, FunctionCall):
        return {"kind": "function_call", "call_id": item.call_id, "name": item.name, "arguments": item.arguments}
    if isinstance(item, FunctionOutput):
        out = {"kind": "function_output", "call_id": item.call_id, "output": item.output, "name": item.name}
        if item.images:
            out["images"] = list(item.images)
        return out
    return {"kind": "opaque", "dialect": item.dialect, "data": dict(item.data)}


def heard_index(messages: list[tuple[str, str]], said: str) -> int | None:
    """Which of the (role, text) messages a "heard" record corrects: the last assistant one saying `said`."""
    for i in range(len(messages) - 1, -1, -1):
        if messages[i] == ("assistant", said):
            return i
    return None


def item_from_json(data: dict[str, Any]) -> HistoryItem | None:
    kind = data.get("kind")
    if kind == "message":
        return Message(data["role"], data.get("text", ""), tuple(data.get("images", ())), data.get("interrupted", False))
    if kind == "function_call":
        return FunctionCall(data["call_id"], data["name"], data.get("arguments", "{}"))
    if kind == "function_output":
        return FunctionOutput(data["call_id"], data.get("output", ""), data.get("name"), tuple(data.get("images", ())))
    if kind == "opaque":
        return OpaqueItem(data["dialect"], data.get("data", {}))
    return None


class ConversationLog:
    def __init__(self, cid: str, path: Path):
        self.cid = cid
        self.path = path
        self._file = None
        self._turn: list[str] | None = None  # lines of the turn in progress, written at its end
        self._meta: dict[str, Any] | None = None  # a lazy log's first line, written with the second

    @classmethod
    def create(cls, *, lazy: bool = False, **meta: Any) -> "ConversationLog":
        """A new conversation; `lazy`: no file until something is written (an empty session leaves none)."""
        cid = new_cid()
        log = cls(cid, conversations_dir() / f"{cid}.jsonl")
        record = {"type": "meta", "cid": cid, "created": time.time(), **meta}
        if lazy:
            log._meta = record
        else:
            log.write(record)
        return log

    def write(self, record: dict[str, Any]) -> None:
        if self._meta is not None:
            meta, self._meta = self._meta, None
            self.write(meta)
        from voicecli.sanitize import redact_data

        # the transports redacted errors already: this is the last line of defence for the key
        line = json.dumps(redact_data(record), ensure_ascii=False) + "\n"
        if self._turn is not None:
            self._turn.append(line)
        else:
            self._append(line)

    def begin_turn(self) -> None:
        """Hold the lines written from now on until `end_turn`, then append them together."""
        self.end_turn()
        self._turn = []

    def end_turn(self) -> None:
        lines, self._turn = self._turn, None
        if lines:
            self._append("".join(lines))

    def drop_turn(self) -> None:
        """Forget the lines held since `begin_turn` (a turn taken back: never written) — all but a
        lazy log's meta line, which the next write needs first."""
        lines, self._turn = self._turn or [], None
        if lines and lines[0].startswith('{"type": "meta"'):
            self._meta = json.loads(lines[0])

    def _append(self, text: str) -> None:
        if self._file is None:
            self._file = paths.open_private(self.path, "a")
        with _locked(self._file):  # one write under the lock: other writers append before or after
            self._file.write(text)
            self._file.flush()

    def add_item(self, item: HistoryItem) -> None:
        self.write({"type": "item", "time": time.time(), "item": item_to_json(item)})

    def close(self) -> None:
        self.end_turn()  # a turn left open (its caller stopped early) is still kept
        if self._file is not None:
            self._file.close()
            self._file = None


@contextlib.contextmanager
def _locked(file) -> Iterator[None]:
    """An exclusive advisory lock on the whole file (where fcntl exists)."""
    try:
        import fcntl
    except ImportError:  # no flock here: appends are still whole lines
        yield
        return
    fcntl.flock(file.fileno(), fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(file.fileno(), fcntl.LOCK_UN)


def apply_heard(items: list[HistoryItem], said: str, heard: str) -> bool:
    """Correct `items` for a spoken answer cut off by the user: the last assistant message saying
    `said` keeps only `heard`, marked interrupted. With nothing heard it goes, and with it the
    reasoning items just before it (Responses refuses a reasoning item without its output).
    False when there is no such message."""
    pairs = [(i.role, i.text) if isinstance(i, Message) else ("", "") for i in items]
    at = heard_index(pairs, said)
    if at is None:
        return False
    if heard:
        items[at] = Message("assistant", heard, interrupted=True)
        return True
    first = at
    while first > 0 and isinstance(items[first - 1], OpaqueItem) and items[first - 1].data.get("type") == "reasoning":
        first -= 1
    del items[first:at + 1]
    return True


def latest_cid() -> str | None:
    """The conversation `-c` continues: the most recently written one that holds a message or other
    history item (an empty file, which older versions left after a failed run, is passed over)."""
    folder = conversations_dir()
    files = sorted(folder.glob("*.jsonl"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    return next((path.stem for path in reversed(files) if has_items(path)), None)


def has_items(path: Path | str) -> bool:
    """Whether a log file holds at least one history item (not only its meta line)."""
    try:
        with open(path, "rb") as f:
            return any(line.startswith(b'{"type": "item"') for line in f)
    except OSError:
        return False


def open_for(continue_: bool, cid: str | None, no_log: bool, **meta: Any) -> tuple[ConversationLog | None, list[HistoryItem]]:
    """The log a command writes to and the history it starts from: the latest conversation (-c), one
    by id (--cid), or a new one (created at its first line); `no_log` reads the history, writes nothing."""
    log, history = open_existing(cid) if continue_ or cid else (None, [])
    if no_log:
        return None, history
    return log or ConversationLog.create(lazy=True, **meta), history


def open_existing(cid: str | None) -> tuple[ConversationLog, list[HistoryItem]]:
    """The log of `cid` (or the latest conversation) and its history items, for -c / --cid."""
    cid = cid or latest_cid()
    if cid is None:
        raise ConfigError("there is no earlier conversation to continue",
                          hint=f"conversations are kept in {conversations_dir()}")
    if not all(c.isalnum() or c in "-_" for c in cid):
        raise ConfigError(f"not a conversation id: '{cid}'")
    path = conversations_dir() / f"{cid}.jsonl"
    if not path.is_file():
        raise ConfigError(f"no conversation with id '{cid}'", hint=f"see {conversations_dir()}")
    items: list[HistoryItem] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a torn last line from a crash: skip it, keep the rest
            if record.get("type") == "item":
                item = item_from_json(record.get("item", {}))
                if item is not None:
                    items.append(item)
            elif record.get("type") == "heard":
                apply_heard(items, str(record.get("said", "")), str(record.get("heard", "")))
    os.utime(path)  # continuing makes it the latest
    return ConversationLog(cid, path), items
