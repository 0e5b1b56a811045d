"""`voicecli logs`: list, show and search the conversation log (see convlog.py for the format).

Built to stay fast on thousands of conversations: listing stats the files and parses only the N it
shows; search reads each file once as text and skips it unless the (JSON-escaped, lower-cased)
search text occurs in it somewhere, so only candidate files are parsed. Conversations are ordered
by their last activity (the file's mtime), the same order `-c` uses.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from voicecli import convlog
from voicecli.errors import ConfigError, UsageError
from voicecli.ui.listing import print_json

FIRST_WORDS = 40  # characters of the first user message in a listing row
LINE_CONTEXT = 120  # characters of a matching line shown by search
LINES_PER_CONVERSATION = 3  # matching lines shown per conversation (all of them with --json)
_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)\s*$", re.I)
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


# ---- reading ---------------------------------------------------------------------------------


@dataclass
class Conversation:
    """One log file, parsed: its meta line, history items (with their times) and turn records."""

    cid: str
    path: Path
    updated: float
    meta: dict[str, Any] = field(default_factory=dict)
    items: list[dict[str, Any]] = field(default_factory=list)  # {"time": …, **item_to_json(item)}
    turns: list[dict[str, Any]] = field(default_factory=list)
    tool_results: list[dict[str, Any]] = field(default_factory=list)
    given_title: str | None = None  # set with `logs title`; the latest wins

    @property
    def title(self) -> str:
        """The title given to it, else its first prompt, shortened."""
        if self.given_title:
            return self.given_title
        users = self.messages("user")
        first = " ".join((users[0].get("text") or "").split()) if users else ""
        return first[: FIRST_WORDS - 1] + "…" if len(first) > FIRST_WORDS else first

    @property
    def created(self) -> float:
        return self.meta.get("created") or self.updated

    @property
    def model(self) -> str:
        for turn in reversed(self.turns):
            if turn.get("model"):
                return turn["model"]
        return self.meta.get("model") or "?"

    def messages(self, *roles: str) -> list[dict[str, Any]]:
        return [i for i in self.items if i.get("kind") == "message" and (not roles or i.get("role") in roles)]

    def usage(self) -> dict[str, int]:
        total = {"input_tokens": 0, "cached_tokens": 0, "output_tokens": 0, "reasoning_tokens": 0}
        for turn in self.turns:
            for key in total:
                total[key] += (turn.get("usage") or {}).get(key) or 0
        return total

    def cost_usd(self) -> float | None:
        """The sum of the turns' recorded costs; None if any turn that used tokens has no price."""
        total = 0.0
        for turn in self.turns:
            cost = turn.get("cost_usd")
            if cost is None:
                used = any((turn.get("usage") or {}).get(k) for k in ("input_tokens", "output_tokens"))
                if used:
                    return None
                continue
            total += cost
        return total

    def summary(self) -> dict[str, Any]:
        users = self.messages("user")
        return {"cid": self.cid, "created": _iso(self.created), "updated": _iso(self.updated),
                "profile": self.meta.get("profile"), "model": self.model, "transport": self.meta.get("transport"),
                "title": self.title, "first_message": users[0].get("text", "") if users else "", "turns": len(users),
                **self.usage(), "cost_usd": _round_cost(self.cost_usd()), "path": str(self.path)}


def read(path: Path | str, updated: float | None = None, *, brief: bool = False) -> Conversation:
    """Parse a log file. `brief` (for listings) skips the lines a summary does not need: assistant
    messages and tool items, recognised by their head as convlog writes it (anything else is parsed)."""
    path = Path(path)
    conv = Conversation(path.stem, path, updated if updated is not None else path.stat().st_mtime)
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if brief and line.startswith('{"type": "item"') and _SKIPPABLE.search(line, 0, 200):
                continue
            _add_record(conv, line)
    return conv


_SKIPPABLE = re.compile(r'"role": "assistant"|"kind": "(?:function_call|function_output|opaque)"')


def _add_record(conv: Conversation, line: str) -> None:
    try:
        record = json.loads(line)
    except ValueError:
        return  # a torn last line from a crash
    if not isinstance(record, dict):
        return
    kind = record.get("type")
    if kind == "item" and isinstance(record.get("item"), dict):
        conv.items.append({"time": record.get("time"), **record["item"]})
    elif kind == "heard":  # a spoken answer cut off: only what was heard stays (see convlog)
        pairs = [(i.get("role", ""), i.get("text", "")) if i.get("kind") == "message" else ("", "") for i in conv.items]
        at = convlog.heard_index(pairs, str(record.get("said", "")))
        if at is not None and record.get("heard"):
            conv.items[at] = {**conv.items[at], "text": record["heard"], "interrupted": True}
        elif at is not None:
            del conv.items[at]
    elif kind == "turn":
        conv.turns.append(record)
    elif kind == "tool_result":
        conv.tool_results.append(record)
    elif kind == "meta":
        conv.meta = record
    elif kind == "title" and isinstance(record.get("title"), str):
        conv.given_title = record["title"] or None  # "" takes a title back


def conversation_files(since: float | None = None) -> list[tuple[float, str]]:
    """(mtime, path) of every conversation, newest first; only those active at or after `since`.
    Paths stay strings: making 5,000 Path objects costs 60 ms."""
    folder = convlog.conversations_dir()
    out = []
    try:
        entries = os.scandir(folder)
    except OSError:
        return []
    with entries:
        for entry in entries:
            if not entry.name.endswith(".jsonl"):
                continue
            try:
                mtime = entry.stat().st_mtime
            except OSError:
                continue
            if since is None or mtime >= since:
                out.append((mtime, entry.name, entry.path))
    out.sort(reverse=True)
    return [(mtime, path) for mtime, _, path in out]


def _cid(path: str) -> str:
    return os.path.basename(path).removesuffix(".jsonl")


def find(cid: str | None) -> Conversation:
    """The conversation `cid` names (an id or a unique start of one), or the latest when None."""
    files = conversation_files()
    if cid is None:  # the latest that holds a message, as -c takes it
        files = list(itertools.islice(((m, p) for m, p in files if convlog.has_items(p)), 1))
    if not files:
        raise ConfigError("there are no conversations yet", hint=f"conversations are kept in {convlog.conversations_dir()}")
    if cid is None:
        return read(files[0][1], files[0][0])
    if not cid or not all(c.isalnum() or c in "-_" for c in cid):
        raise UsageError(f"not a conversation id: '{cid}'", hint="`voicecli logs` lists them")
    exact = [(m, p) for m, p in files if _cid(p) == cid]
    matches = exact or [(m, p) for m, p in files if _cid(p).startswith(cid)]
    if len(matches) == 1:
        return read(matches[0][1], matches[0][0])
    if not matches:
        raise ConfigError(f"no conversation with id '{cid}'", hint="`voicecli logs` lists them")
    shown = ", ".join(_cid(p) for _, p in matches[:5]) + (" …" if len(matches) > 5 else "")
    raise UsageError(f"'{cid}' is the start of {len(matches)} conversation ids: {shown}",
                     hint="give more of the id")


@dataclass
class Match:
    conversation: Conversation
    role: str
    time: float | None
    line: str


def search(text: str, *, limit: int, since: float | None = None) -> list[tuple[Conversation, list[Match]]]:
    """Conversations whose user or assistant messages contain `text` (any case), newest first."""
    needle = text.lower()
    # what the text looks like inside a JSON string in the file, for the cheap pre-checks
    escaped = json.dumps(text, ensure_ascii=False)[1:-1].lower()
    found = []
    for mtime, path in conversation_files(since):
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                raw = f.read()
        except OSError:
            continue
        low = raw.lower()
        if escaped not in low:
            continue
        conv = Conversation(_cid(path), Path(path), mtime)
        lines = raw.split("\n")  # not splitlines(): a text may hold U+2028, which JSON leaves unescaped
        for line, low_line in zip(lines, low.split("\n")):
            # parse only the lines where the text occurs after the first `"text": "`: past the keys that
            # name the kind and role, so searching for "user" or "message" does not parse every line
            if low_line.find(escaped, max(low_line.find('"text": "'), 0)) >= 0:
                _add_record(conv, line)
        matches = [Match(conv, item.get("role", "?"), item.get("time"), line)
                   for item in conv.messages("user", "assistant")
                   for line in (item.get("text") or "").splitlines() if needle in line.lower()]
        if conv.given_title and needle in conv.given_title.lower():
            matches.insert(0, Match(conv, "title", None, conv.given_title))
        if matches:  # which model answered: the meta line and the last turn line
            _add_record(conv, lines[0])
            last_turn = next((x for x in reversed(lines) if x.startswith('{"type": "turn"')), None)
            if last_turn:
                _add_record(conv, last_turn)
            found.append((conv, matches))
            if len(found) >= limit:
                break
    return found


# ---- options -----------------------------------------------------------------------------------


def parse_since(value: str | None, now: float | None = None) -> float | None:
    """`30m`, `2h`, `3d`, `1w`, or a local date/time like `2026-05-01` or `2026-05-01T14:00`."""
    if value is None:
        return None
    now = time.time() if now is None else now
    m = _SINCE.match(value)
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2).lower()]
    try:
        return datetime.fromisoformat(value.strip()).timestamp()
    except ValueError:
        raise UsageError(f"--since: cannot read '{value}'",
                         hint="give an age like 30m, 2h, 3d, 1w or a date like 2026-05-01 or 2026-05-01T14:00") from None


def _check_limit(n: int) -> None:
    if n < 1:
        raise UsageError(f"-n must be at least 1; got {n}")


# ---- commands ----------------------------------------------------------------------------------


def list_conversations(n: int, since: str | None, json_out: bool) -> None:
    _check_limit(n)
    convs = []
    for mtime, path in conversation_files(parse_since(since)):
        try:
            conv = read(path, mtime, brief=True)
        except OSError:
            continue
        if conv.items or conv.turns:  # a file with only its meta line (older versions left them): no entry
            convs.append(conv)
            if len(convs) >= n:
                break
    if json_out:
        print_json([c.summary() for c in convs])
        return
    if not convs:
        print("no conversations" + (" in that time" if since else " yet") +
              f" (they are kept in {convlog.conversations_dir()})", file=sys.stderr)
        return
    from voicecli.sanitize import for_terminal

    rows = [[for_terminal(cell, sys.stdout) for cell in _row(c)] for c in convs]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) if i < len(row) - 1 else cell for i, (cell, w) in enumerate(zip(row, widths))))


def _row(conv: Conversation) -> list[str]:
    usage = conv.usage()
    tokens = usage["input_tokens"] + usage["output_tokens"]
    return [conv.cid, _local(conv.updated), conv.model, conv.title or "(no message)",
            _turns(len(conv.messages("user"))), f"{tokens:,} tokens", _cost_text(conv.cost_usd())]


def show_conversation(cid: str | None, json_out: bool, raw: bool) -> None:
    conv = find(cid)
    if json_out:
        print_json({**conv.summary(), "meta": conv.meta, "items": conv.items, "turns": conv.turns,
                     "tool_results": conv.tool_results})
        return
    from voicecli.ui.term import make_renderer, wants_markdown

    renderer = make_renderer(sys.stdout, markdown=wants_markdown(sys.stdout, raw=raw))
    renderer.text(markdown(conv))
    renderer.finish()


def markdown(conv: Conversation) -> str:
    """The conversation as Markdown: a heading with what it was, then each item."""
    from voicecli.transcript import markdown_entry

    s = conv.summary()
    out = [f"# Conversation {conv.cid}\n\n",
           f"{_local(conv.created)} · {s['model']} · profile {s['profile'] or '?'} · {_turns(s['turns'])} · "
           f"{s['input_tokens'] + s['output_tokens']:,} tokens · {_cost_text(conv.cost_usd())}\n\n"]
    for item in conv.items:
        kind = item.get("kind")
        when = item.get("time")
        if kind == "message":
            out.append(markdown_entry(item.get("role", "?"), item.get("text", ""), when=when,
                                      interrupted=item.get("interrupted", False)))
        elif kind == "function_call":
            out.append(markdown_entry("tool", f"```json\n{item.get('arguments', '')}\n```", when=when,
                                      note=f"call {item.get('name', '?')}"))
        elif kind == "function_output":
            out.append(markdown_entry("tool", f"```\n{item.get('output', '')}\n```", when=when,
                                      note=f"output of {item.get('name') or item.get('call_id', '?')}"))
    return "".join(out)


def search_conversations(text: str, n: int, since: str | None, json_out: bool) -> None:
    _check_limit(n)
    if not text.strip():
        raise UsageError("logs search needs some text to look for", hint='voicecli logs search "docker"')
    found = search(text, limit=n, since=parse_since(since))
    if json_out:
        print_json([{"cid": conv.cid, "updated": _iso(conv.updated), "model": conv.model, "role": m.role,
                      "time": _iso(m.time) if m.time else None, "line": m.line.strip()}
                     for conv, matches in found for m in matches])
        return
    if not found:  # not an error (exit 0): like an empty listing
        print(f"no conversation mentions '{text}'", file=sys.stderr)
        return
    from voicecli.sanitize import for_terminal

    bold = sys.stdout.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
    for conv, matches in found:  # stored text is shown on a terminal, never obeyed
        print(for_terminal(f"{conv.cid}  {_local(conv.updated)}  {conv.model}", sys.stdout))
        for m in matches[:LINES_PER_CONVERSATION]:
            print(f"  {for_terminal(m.role, sys.stdout)}: {_excerpt(for_terminal(m.line, sys.stdout), text, bold)}")
        if len(matches) > LINES_PER_CONVERSATION:
            more = len(matches) - LINES_PER_CONVERSATION
            print(f"  (+{more} more line{'s' * (more != 1)}: voicecli logs show {conv.cid})")


def _excerpt(line: str, text: str, bold: bool) -> str:
    """The matching line, cut to LINE_CONTEXT characters around the first match."""
    line = " ".join(line.split())
    at = line.lower().find(text.lower())
    if len(line) > LINE_CONTEXT and at >= 0:
        start = max(0, min(at - LINE_CONTEXT // 3, len(line) - LINE_CONTEXT))
        line = ("…" if start else "") + line[start:start + LINE_CONTEXT] + ("…" if start + LINE_CONTEXT < len(line) else "")
        at = line.lower().find(text.lower())
    if bold and at >= 0:
        line = f"{line[:at]}\x1b[1m{line[at:at + len(text)]}\x1b[0m{line[at + len(text):]}"
    return line


def set_title(cid: str | None, title: str) -> None:
    """Give a conversation a title ("" takes it back): a `title` line appended to its log, its last
    activity left as it was (a title is not a turn: `-c` still takes the conversation it took)."""
    title = " ".join(title.split())
    from voicecli.sanitize import escape_controls

    if escape_controls(title) != title:  # a title is shown on terminals
        raise UsageError("a title is one line of text without control characters")
    conv = find(cid)
    stat = conv.path.stat()
    log = convlog.ConversationLog(conv.cid, conv.path)
    log.write({"type": "title", "time": time.time(), "title": title})
    log.close()
    os.utime(conv.path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    print(f"{conv.cid}: " + (f"titled '{title}'" if title else "title removed"), file=sys.stderr)


def remove_conversations(cids: list[str], older_than: str | None, yes: bool) -> None:
    """Delete conversations: those named (ids or unique starts) and those whose last activity is older
    than `older_than` (an age: 30d, 12h…). Asks on a terminal unless `yes`; a script must pass -y."""
    if not cids and older_than is None:
        raise UsageError("logs rm needs conversation ids or --older-than AGE", hint="voicecli logs rm 20260501-abc1 "
                                                                                   "or voicecli logs rm --older-than 30d")
    paths = {find(cid).path for cid in cids}
    if older_than is not None:
        if not _SINCE.match(older_than):
            raise UsageError(f"--older-than: cannot read '{older_than}'", hint="give an age like 12h, 30d or 8w")
        cutoff = parse_since(older_than)
        paths |= {Path(p) for mtime, p in conversation_files() if mtime < cutoff}
    if not paths:
        print("no conversation is that old" if older_than else "nothing to remove", file=sys.stderr)
        return
    what = f"{len(paths)} conversation{'s' * (len(paths) != 1)}"
    if not yes:
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            raise UsageError(f"logs rm would delete {what}; pass -y to delete without asking")
        sys.stderr.write(f"delete {what} from {convlog.conversations_dir()}? [y/N] ")
        sys.stderr.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            print("nothing deleted", file=sys.stderr)
            return
    gone = 0
    for path in sorted(paths):
        try:
            path.unlink()
            gone += 1
        except FileNotFoundError:
            pass  # removed meanwhile: it is gone either way
    print(f"deleted {gone} conversation{'s' * (gone != 1)}", file=sys.stderr)


def print_path(json_out: bool) -> None:
    path = str(convlog.conversations_dir())
    print(json.dumps({"path": path}) if json_out else path)


# ---- formatting --------------------------------------------------------------------------------


def _turns(n: int) -> str:
    return f"{n} turn{'s' * (n != 1)}"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


def _local(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def _round_cost(cost: float | None) -> float | None:
    return None if cost is None else round(cost, 6)


def _cost_text(cost: float | None) -> str:
    from voicecli.pricing import format_usd

    return format_usd(cost)
