"""The conversation log shared by `infer` and `chat`: one JSON Lines file per conversation.

`<data dir>/conversations/<cid>.jsonl` (the data dir is relocated by VOICECLI_HOME). JSONL rather
than SQLite because it is append-only (a crash loses at most the line being written; every line is
flushed as it happens), readable and greppable with everyday tools, and needs no locking between a
`chat` and an `infer` running at once. `-c` picks the most recently written file; `--cid ID` one.

Lines: {"type": "meta", cid, created, profile, model, transport} once, then
{"type": "item", "item": {...}} for each history item and {"type": "turn", ...} with usage and
timings after each model response.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from voicecli import paths
from voicecli.errors import ConfigError
from voicecli.wire.types import FunctionCall, FunctionOutput, HistoryItem, Message, OpaqueItem


def conversations_dir() -> Path:
    return paths.data_dir() / "conversations"


def new_cid() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


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

    @classmethod
    def create(cls, **meta: Any) -> "ConversationLog":
        cid = new_cid()
        log = cls(cid, conversations_dir() / f"{cid}.jsonl")
        log.write({"type": "meta", "cid": cid, "created": time.time(), **meta})
        return log

    def write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()

    def add_item(self, item: HistoryItem) -> None:
        self.write({"type": "item", "time": time.time(), "item": item_to_json(item)})

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def latest_cid() -> str | None:
    folder = conversations_dir()
    files = sorted(folder.glob("*.jsonl"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    return files[-1].stem if files else None


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
    os.utime(path)  # continuing makes it the latest
    return ConversationLog(cid, path), items
