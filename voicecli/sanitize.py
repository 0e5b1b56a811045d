"""Keep secrets and terminal controls out of what we print, log and write.

The one place for: redacting the API key (in every form a library may quote it), masking the
password of a `scheme://user:password@host` URL, checking header values before they go on the
wire, and escaping control characters in model-supplied text shown on the terminal.
Standard library only, imported lazily: `--version` never loads it.
"""

from __future__ import annotations

import json
import re

MASK = "***"
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/@:]*:)[^\s/@]+@")
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


def redact(text: str, *secrets: str | None, urls: bool = True) -> str:
    """`text` with every form of each secret replaced by `***` and (unless `urls` is false) the
    password of any URL in it masked."""
    for secret in secrets:
        if secret:
            for form in secret_forms(secret):
                text = text.replace(form, MASK)
    return mask_url_password(text) if urls else text


def mask_url_password(text: str) -> str:
    """`https://user:pa55@host/v1` → `https://user:***@host/v1`, wherever it occurs in `text`."""
    return _URL_PASSWORD.sub(lambda m: m.group("head") + MASK + "@", text) if "@" in text else text


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
    return None


def escape_controls(text: str, *, keep: str = "") -> str:
    """Control characters as visible escapes (`\\x1b`, `\\r`, `\\u202e`), so text from a model
    cannot move the cursor, clear the screen or set the terminal title; `keep` lists exceptions."""
    def visible(m: re.Match) -> str:
        ch = m.group()
        return ch if ch in keep else ch.encode("unicode_escape").decode("ascii")

    return _CONTROLS.sub(visible, text)
