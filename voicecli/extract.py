"""`infer -x/--extract`: the contents of a fenced code block of a markdown answer, so that
`voicecli infer -x "a one-liner to …" | sh` gets the command and not the prose around it."""

from __future__ import annotations

import re

# CommonMark: up to three spaces, then three or more backticks or tildes; a backtick fence's info
# string holds no backtick
_OPEN = re.compile(r"^( {0,3})(`{3,}|~{3,})([^`]*|~.*)$")


def code_blocks(text: str) -> list[str]:
    """Every fenced code block's contents, in order (one left open runs to the end)."""
    blocks: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = _OPEN.match(lines[i])
        if opening is None or (opening.group(2)[0] == "`" and "`" in opening.group(3)):
            i += 1
            continue
        indent, fence = len(opening.group(1)), opening.group(2)
        closing = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        body: list[str] = []
        i += 1
        while i < len(lines) and not closing.match(lines[i]):
            line = lines[i]
            strip = len(line) - len(line.lstrip(" "))
            body.append(line[min(indent, strip):])  # the opening fence's indentation comes off
            i += 1
        blocks.append("".join(f"{line}\n" for line in body))
        i += 1
    return blocks


def extract(text: str, *, last: bool = False) -> str | None:
    """The first (or last) code block's contents, None when the answer has none."""
    blocks = code_blocks(text)
    if not blocks:
        return None
    return blocks[-1] if last else blocks[0]
