"""Streamed model text → sentences to speak, so speech starts while the model is still writing.

`Sentences.feed(delta)` returns the sentences completed so far as `Chunk(text, spoken)`: `text` is
exactly what the model wrote (joined, the chunks give back the whole answer), `spoken` is what the
text-to-speech gets — markdown marks, code blocks and link targets removed, which no voice should
read out. A sentence ends at `.`, `!`, `?`, `…` (and closing quotes or brackets) followed by white
space, at a blank line, or at a line break before a list item; not after "e.g." or "Dr." and not
inside a number. A run-on longer than `max_chars` is cut at a comma or a space, outside links and
inline code. With `first_clause_words`, the first chunk of an answer may end sooner: at its first
clause boundary (a comma, colon, semicolon or dash followed by a space) once that many words came
before it, so the first audio can be asked for sooner; later chunks stay sentences.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ABBREVIATIONS = {"e.g", "i.e", "etc", "vs", "mr", "mrs", "ms", "dr", "prof", "st", "approx", "cf", "fig"}
_END = re.compile(r"""([.!?…]+["'”’)\]]*)(\s+)|(\n\s*\n)|\n(?=\s*(?:[-*+]\s|\d+[.)]\s|#))""")
_FENCE = re.compile(r"^\s*(```|~~~)", re.M)
_HEADING = re.compile(r"\s*#{1,6} [^\n]*\n")
_ATOMIC = re.compile(r"!?\[[^\]\n]*\](?:\([^)\n]*\)?)?|`[^`\n]*`?")  # links, images, inline code (or their unfinished start)


@dataclass(frozen=True)
class Chunk:
    text: str  # as written (with its trailing white space)
    spoken: str  # what to say; may be empty (a code block, a lone bullet)


_CLAUSE = re.compile(r"[,;:](?=\s)|\s[-–—](?=\s)")


class Sentences:
    def __init__(self, max_chars: int = 300, first_clause_words: int = 0):
        self.max_chars = max_chars
        self.first_clause_words = first_clause_words  # 0: the first chunk is a sentence too
        self.buffer = ""
        self.first = True

    def feed(self, delta: str) -> list[Chunk]:
        self.buffer += delta
        out: list[Chunk] = []
        while True:
            cut = self._boundary()
            if cut is None:
                return out
            text, self.buffer = self.buffer[:cut], self.buffer[cut:]
            out.append(Chunk(text, self._speakable(text)))
            self.first = False

    def flush(self) -> list[Chunk]:
        """The rest, at the end of the answer."""
        text, self.buffer = self.buffer, ""
        return [Chunk(text, self._speakable(text))] if text else []

    def _boundary(self) -> int | None:
        fence = _FENCE.search(self.buffer)
        if fence and not self.buffer[: fence.start()].strip():
            # a code block goes out whole, as one silent chunk, once its closing fence arrived
            opened = self.buffer.find("\n", fence.end())
            close = _FENCE.search(self.buffer, opened + 1) if opened >= 0 else None
            end = self.buffer.find("\n", close.end()) if close else -1
            return end + 1 if end >= 0 else None
        heading = _HEADING.match(self.buffer)
        if heading:  # a heading is a sentence of its own
            return heading.end()
        for match in _END.finditer(self.buffer, 0, fence.start() if fence else len(self.buffer)):
            if match.group(1) and not self._real_end(match.start()):
                continue
            return match.end()
        if fence:  # the text before a code block is a sentence of its own
            return fence.start()
        if self.first and self.first_clause_words:
            cut = self._first_clause()
            if cut is not None:
                return cut
        if len(self.buffer) > self.max_chars:
            return self._run_on_cut()
        return None

    def _first_clause(self) -> int | None:
        """The end of the first clause (its mark and the space after it), if it has enough words and
        is not inside a link or inline code; else None."""
        whole = [m.span() for m in _ATOMIC.finditer(self.buffer)]
        for m in _CLAUSE.finditer(self.buffer):
            head = self.buffer[: m.start()]
            if any(start < m.start() < end for start, end in whole):
                continue
            if len(speakable(head).split()) < self.first_clause_words:
                continue
            space = re.match(r"\s+", self.buffer[m.end():])
            return m.end() + space.end() if space else None
        return None

    def _run_on_cut(self) -> int:
        """Where a run-on is cut: after its last ", ", "; " or ": " past the first third, else after
        its last space — never inside a link or inline code, which would then be read out (or lose
        its text) in halves."""
        head = self.buffer[: self.max_chars]
        whole = [m.span() for m in _ATOMIC.finditer(self.buffer)]

        def free(at: int) -> bool:
            return not any(start < at < end for start, end in whole)

        clauses = [m.end() for m in re.finditer(r"[,;:] ", head) if m.start() > self.max_chars // 3 and free(m.start())]
        spaces = [m.end() for m in re.finditer(r" ", head) if free(m.start())]
        return (clauses or spaces or [self.max_chars])[-1]

    def _real_end(self, at: int) -> bool:
        """A period after an abbreviation or an initial ("J. Smith") does not end the sentence."""
        if self.buffer[at] != ".":
            return True
        word = re.search(r"([\w.]+)$", self.buffer[:at])
        if word is None:
            return True
        w = word.group(1)
        return not (w.lower() in ABBREVIATIONS or (len(w) == 1 and w.isupper()))

    @staticmethod
    def _speakable(text: str) -> str:
        return "" if _FENCE.match(text) else speakable(text)


def speakable(text: str) -> str:
    """Markdown → words a voice can say."""
    text = re.sub(r"!\[([^\]]*)\]\([^)]*\)", r"\1", text)  # images: their alt text
    text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", text)  # links: their text
    text = re.sub(r"`([^`]*)`", r"\1", text)
    text = re.sub(r"^\s{0,3}(#{1,6}\s+|>\s?|[-*+]\s+|\d+[.)]\s+)", "", text, flags=re.M)
    text = re.sub(r"(\*\*|\*|~~)(?=\S)(.+?)(?<=\S)\1", r"\2", text)
    text = re.sub(r"(?<!\w)(__|_)(?=\S)(.+?)(?<=\S)\1(?!\w)", r"\2", text)  # not inside my_var_name
    text = re.sub(r"^\s*([-*_]\s*){3,}$", "", text, flags=re.M)  # horizontal rules
    text = re.sub(r"\|", " ", text)  # table bars
    return re.sub(r"\s+", " ", text).strip()
