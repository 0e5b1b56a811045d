"""Keep secrets and terminal controls out of what we print, log and write.

The one place for: redacting the API key (in every form a library may quote it), masking the
password of a `scheme://user:password@host` URL, checking header values before they go on the
wire, and escaping control characters in model-supplied text shown on the terminal.
Standard library only, imported lazily: `--version` never loads it.
"""

from __future__ import annotations

import json
import re
from typing import Any

MASK = "***"
# the userinfo of a URL: everything from `//` to the last `@` before the path (a password may hold
# an unescaped `@`; a user name alone may be a token, as in `http://sk-…@host`)
_URL_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://)[^\s/?#]*@")
# C0 controls, DEL, C1 controls (0x9b is CSI on some terminals) and the bidi overrides that can
# make shown text differ from what runs
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def secret_forms(secret: str) -> list[str]:
    """The key as it may appear in a message: raw, as a str or bytes repr (`'sk-…\\r'`,
    `b'Bearer sk-…\\r'`), JSON-escaped, and without surrounding whitespace; longest first."""
    forms = {secret, repr(secret)[1:-1], repr(secret.encode("utf-8", "backslashreplace"))[2:-1],
             json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    stripped = secret.strip()
    if len(stripped) >= 8:  # never blank out a short common word
        forms.add(stripped)
    return sorted((f for f in forms if f), key=len, reverse=True)


_remembered: set[str] = set()  # every key this process loaded (see `remember_secret`)


def remember_secret(secret: str | None) -> None:
    """Note a secret this process holds (an API key as it is loaded), so that `redact` removes it
    from any text even where the caller does not hold the key: the last line of defence in the
    conversation log, the JSON output and the error lines. Short values are not kept: blanking
    out a common word everywhere would garble text and protect nothing."""
    if secret and len(secret.strip()) >= 8:
        _remembered.add(secret)


def redact(text: str, *secrets: str | None, urls: bool = True) -> str:
    """`text` with every form of each secret (and of every remembered one) replaced by `***` and
    (unless `urls` is false) the userinfo of any URL in it masked."""
    for secret in (*secrets, *_remembered) if _remembered else secrets:
        if secret:
            for form in secret_forms(secret):
                text = text.replace(form, MASK)
    return mask_url_password(text) if urls else text


def redact_data(data: Any, *secrets: str | None) -> Any:
    """JSON-like `data` (dicts, lists, strings) with every string redacted as `redact` does, URLs
    left as they are (a log keeps the user's own text); `data` itself when there is nothing to
    hide. For writers that hold no key: the conversation log, `--json` and `--events`."""
    if not _remembered and not any(secrets):
        return data

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return redact(value, *secrets, urls=False) if value else value
        if isinstance(value, dict):
            return {walk(k) if isinstance(k, str) else k: walk(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [walk(v) for v in value]
        return value

    return walk(data)


def mask_url_password(text: str) -> str:
    """`https://user:pa55@host/v1` → `https://***@host/v1`, wherever it occurs in `text`: the whole
    userinfo goes (up to the last `@` of the authority), user name included, which may be a token."""
    return _URL_USERINFO.sub(lambda m: m.group("head") + MASK + "@", text) if "@" in text else text


def header_value_problem(value: str) -> str | None:
    """Why `value` cannot be sent as an HTTP header value (None if it can). Never quotes the value:
    it may be a key. A CR or LF would end the header and start another (header injection)."""
    for ch in value:
        if ch in "\r\n":
            return "contains a line break (\\r or \\n)"
        if _CONTROLS.match(ch) and ch != "\t":
            return f"contains a control character ({escape_controls(ch)})"
        if ord(ch) > 0x7E:
            return "contains a non-ASCII character"
    if value != value.strip(" \t"):  # HTTP strips it, so h11 and websockets refuse to send it
        return "begins or ends with whitespace"
    return None


def escape_controls(text: str, *, keep: str = "") -> str:
    """Control characters as visible escapes (`\\x1b`, `\\r`, `\\u202e`), so text from a model
    cannot move the cursor, clear the screen or set the terminal title; `keep` lists exceptions."""
    def visible(m: re.Match) -> str:
        ch = m.group()
        return ch if ch in keep else ch.encode("unicode_escape").decode("ascii")

    return _CONTROLS.sub(visible, text)


def for_terminal(text: str, stream) -> str:
    """`text` as it may be written to `stream`: on a terminal, control characters escaped (keeping
    line breaks and tabs; a CR before a line break goes), so text a server or a model chose — an
    answer, an error message, a stored log, a tool description — cannot write the clipboard (OSC
    52), set the title or clear the screen; to a pipe or a file, exactly as it is."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        tty = False
    if not tty:
        return text
    return escape_controls(text.replace("\r\n", "\n"), keep="\n\t")


def bounded_text(data: bytes, total: int, limit: int) -> str:
    """A tool's (or MCP server's) output for the model: the first `limit` of `total` bytes as text,
    saying when the rest was dropped."""
    text = data.decode("utf-8", "replace").rstrip()
    if total > limit:
        text += f"\n[output truncated: showing the first {limit} of {total} bytes]"
    return text or "(no output)"
