"""Word-wrapped text outside the markdown renderer, on a terminal.

Reasoning arrives a few characters at a time and goes to stderr dim; left to the terminal, a long
summary is cut at the window's edge in the middle of words. `WordWrap` holds back each word until
it is complete and breaks the line before a word that would not fit. `hanging` does the same for
one row of a table (chat's /help and /tools), its continuation rows indented under the text.
"""

from __future__ import annotations

import sys
from typing import IO, Callable

from voicecli.ui.size import terminal_columns
from voicecli.ui.term import dim


def _cells(text: str) -> int:
    if text.isascii():
        return len(text)
    from rich.cells import cell_len

    return cell_len(text)


class WordWrap:
    def __init__(self, stream: IO[str] | None = None, *, write: Callable[[str], None] | None = None,
                 width: int | None = None):
        self.stream = stream or sys.stderr
        self.write = write or (lambda text: dim(text, self.stream))
        self.width = width
        self.col = 0  # cells on the current row
        self.word = ""  # the word being received, not shown yet
        self.spaces = ""  # spaces after the last shown word: dropped at a line break

    def _columns(self) -> int:
        return self.width or terminal_columns(self.stream)

    def text(self, delta: str) -> None:
        out: list[str] = []
        for ch in delta:
            if ch == "\n":
                self._word(out)
                out.append("\n")
                self.col, self.spaces = 0, ""
            elif ch in " \t":
                self._word(out)
                self.spaces += " "
            else:
                self.word += ch
        if out:
            self.write("".join(out))

    def _word(self, out: list[str]) -> None:
        if not self.word:
            return
        word, self.word = self.word, ""
        width, room = _cells(word), self._columns()
        spaces = self.spaces if self.col else ""
        if self.col and self.col + len(spaces) + width > room:
            out.append("\n")  # the word goes whole to the next row
            self.col, spaces = 0, ""
        out.append(spaces + word)
        self.spaces = ""
        self.col = (self.col + len(spaces) + width) % room if width > room else self.col + len(spaces) + width

    def finish(self) -> None:
        """Show the last word and end the row, so what follows starts on its own line."""
        out: list[str] = []
        self._word(out)
        if self.col:
            out.append("\n")
        self.col, self.spaces = 0, ""
        if out:
            self.write("".join(out))


MIN_COLUMN = 20  # cells: a narrower text column goes below its head instead


def hanging(head: str, text: str, width: int | None) -> str:
    """`head` + `text` broken between words to `width` cells, the continuation rows indented under
    the start of `text`, so a table's last column stays a column. When that column would be
    narrower than MIN_COLUMN, `text` starts on the next row, indented by four. `width` None: one row."""
    indent = _cells(head)
    if width is None or indent + _cells(text) <= width:
        return head + text
    if width - indent < MIN_COLUMN and indent > 4:
        return head.rstrip() + "\n" + hanging("    ", text, width)
    room, rows, row = width - indent, [], ""
    for word in text.split():
        for part in _cut(word, room) if _cells(word) > room else (word,):
            if row and _cells(row) + 1 + _cells(part) > room:
                rows.append(row)
                row = part
            else:
                row = f"{row} {part}" if row else part
    rows.append(row)
    return head + ("\n" + " " * indent).join(rows)


def _cut(word: str, room: int) -> list[str]:
    """A word wider than the column (a long path, a module:function) in pieces that fit, each ending
    after its last `.:/_-` where it has one: the one place a word is split."""
    pieces = []
    while _cells(word) > room:
        fit = 1
        while _cells(word[:fit + 1]) <= room:
            fit += 1
        at = max(word.rfind(mark, 0, fit) for mark in "./:_-") + 1
        at = at if at > 0 else fit
        pieces.append(word[:at])
        word = word[at:]
    return pieces + [word]
