"""Streaming answer output: line-by-line markdown on a terminal (raw text for pipes: `ui/term.py`).

The markdown renderer formats the text in one pass as it arrives, so its cost is linear in the
answer's length and a finished row is never drawn again:

- prose is shown word by word: inline styles (bold, italics, `code`, links) switch on and off as
  their markers stream in, and words are wrapped to the terminal width as they complete (a word
  still growing is shown when it fits on the row, and moved down if it outgrows it);
- what a line is (heading, list item, quote, rule, code fence, table row) is decided from its
  first few characters, which are held back until then, so no markup is ever shown;
- a code line is shown raw while it streams and rewritten once, highlighted, when it ends; its
  live part is cut at the screen width, so the rewrite touches only the cursor's row;
- a table is held until it ends, then printed with its columns aligned.

Simplifications: emphasis is styled as soon as its opening marker arrives, so an unclosed `*x`
stays italic to the end of its line (without the `*`); each source line is its own row(s), soft
line breaks are kept; code is highlighted line by line (a multi-line string loses its colour after
its first line); setext headings, HTML and footnotes are shown as typed.
"""

from __future__ import annotations

import re
import sys
from typing import IO

from voicecli.ui.size import terminal_columns

CODE_THEME = "monokai"  # minus its near-white default text colour, so plain code suits any background
RESET = "\x1b[0m"
PUNCT = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")

# SGR codes of the inline styles; headings have a base style for the whole line
BOLD, ITALIC, STRIKE, CODE, LINK, URL = "1", "3", "9", "36", "4;94", "2"
HEADING = {1: "1;4;35", 2: "1;4", 3: "1"}  # h4..h6 like h3
BULLETS = "•◦▪"
BAR = "\x1b[2m▌\x1b[0m "  # one per quote level
DIM = "\x1b[2m"

_SPECIAL = re.compile(r"[*_`~\[\\]")  # characters that may start inline markup
_TICK = re.compile(r"`")  # inside a code span only a backtick run matters
_RUNS = re.compile(r"[ \t]+|[^ \t]+")
_QUOTE = re.compile(r"(?:>[ \t]?)+")
_HEADING = re.compile(r"(#{1,6})(?:[ \t]+|$)")
_NUMBER = re.compile(r"(\d{1,9}[.)])(?:[ \t]+|$)")
_NUMBER_START = re.compile(r"\d{1,9}[.)]?")
_TABLE_SEP = re.compile(r"\|?(?:[ \t]*:?-+:?[ \t]*\|)*[ \t]*:?-+:?[ \t]*\|?[ \t]*")
_CELL = re.compile(r"(?<!\\)\|")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _width(text: str) -> int:
    if text.isascii():
        return len(text)
    from rich.cells import cell_len

    return cell_len(text)


def _cut(text: str, room: int) -> tuple[str, int]:
    """The longest start of `text` at most `room` cells wide, and its width."""
    if text.isascii():
        return text[:room], min(room, len(text))
    from rich.cells import get_character_cell_size

    used = 0
    for i, ch in enumerate(text):
        size = get_character_cell_size(ch)
        if used + size > room:
            return text[:i], used
        used += size
    return text, used


_SGR: dict[tuple, str] = {}


def _sgr(codes: tuple) -> str:
    """One absolute style (reset first), so re-sending it after a wrap or an erase is harmless."""
    sgr = _SGR.get(codes)
    if sgr is None:
        on = ";".join(c for c in codes if c)
        sgr = _SGR[codes] = RESET + (f"\x1b[{on}m" if on else "")
    return sgr


class _Flow:
    """Inline markdown of one line, styled and word-wrapped as it streams, into `out`.

    Output for the current word (and the gap before it) waits in `_p` until the word ends: then it
    goes on this row if it fits, else on the next. `show()` writes a growing word early when it fits
    on the row with a column to spare; if it outgrows the row it is erased (cursor left + clear to
    end of line, on the same row) and moved down. Ambiguous markup at the end of a delta (a `*`
    that may become `**`, a `[` that may start a link) waits in `_hold` for the next delta.
    """

    def __init__(self, out: list[str], width: int, rows: list[int] | None = None):
        self.out = out
        self.width = width
        self.rows = rows  # visible width of each finished row, for table cells
        self.start("", 0, "", 0)

    def start(self, prefix: str, prefix_w: int, indent: str, indent_w: int, base: str = "") -> None:
        self.indent, self.indent_w, self.base = indent, indent_w, base
        self.col = prefix_w
        self.bold = self.italic = self.strike = self.link = self.url = False
        self.code = 0  # length of the backtick run that opened the code span
        self.prev = " "  # the source character before the next one (for * and _ flanking)
        self._hold = ""
        self._any = False  # a word was seen on this line
        self._cur = _sgr((base,))
        if prefix:
            self.out.append(prefix)
        if base:
            self.out.append(self._cur)
        self._new_word()

    def _new_word(self) -> None:
        self._p: list[str] = []
        self._pw = 0  # visible width of _p
        self._word = -1  # index in _p where the word starts (-1: only a gap so far)
        self._shown = 0  # pieces of _p already written
        self._shown_w = 0
        self._sgr0 = self._cur  # the style in force before _p

    # -- inline markup ----------------------------------------------------------------------------

    def feed(self, text: str, final: bool = False) -> None:
        if self._hold:
            text, self._hold = self._hold + text, ""
        elif not (_TICK if self.code else _SPECIAL).search(text):  # the common case: no markup
            if (self.code or self.col + self._pw + len(text) >= self.width or "  " in text or "\t" in text
                    or text[0] == " " and self._word < 0 or not text.isascii()):
                self._words(text)
            else:
                self._fits(text)
            return
        i, n = 0, len(text)
        while i < n:
            m = (_TICK if self.code else _SPECIAL).search(text, i)
            j = m.start() if m else n
            if j > i:
                self._words(text[i:j])
            if m is None:
                break
            i = self._markup(text, j, final)
            if i < 0:  # undecided until more text arrives
                self._hold = text[j:]
                break

    def _markup(self, text: str, j: int, final: bool) -> int:
        """Handle the markup character at text[j]; return where to go on, or -1 to wait for more."""
        c, n = text[j], len(text)
        if c == "\\":
            if j + 1 == n:
                return j + 1 if self._literal("\\", final) else -1
            nxt = text[j + 1]
            self._words(nxt if nxt in PUNCT else "\\" + nxt)
            return j + 2
        if c == "[":
            return self._link(text, j, final)
        k = j + 1
        while k < n and text[k] == c:
            k += 1
        if k == n and not final:
            return -1  # the run may grow, and the character after it decides what it is
        run = k - j
        if c == "`":
            if not self.code:
                self.code = run
            elif run == self.code:
                self.code = 0
            else:
                self._words(c * run)
                return k
            self._style()
            self.prev = c
            return k
        prev, nxt = self.prev, text[k] if k < n else " "
        if c == "~":
            if run == 2 and (self.strike or not nxt.isspace()):
                self.strike = not self.strike
                self._style()
            else:
                self._words(c * run)
            self.prev = c
            return k
        # * and _: CommonMark's flanking rules, without its delimiter stack (styles are optimistic)
        left = not nxt.isspace() and (nxt not in PUNCT or prev.isspace() or prev in PUNCT)
        right = not prev.isspace() and (prev not in PUNCT or nxt.isspace() or nxt in PUNCT)
        if c == "_":
            can_open, can_close = left and (not right or prev in PUNCT), right and (not left or nxt in PUNCT)
        else:
            can_open, can_close = left, right
        if run > 3:
            self._words(c * run)
            return k
        bold, italic = run in (2, 3), run in (1, 3)
        if can_close and (not bold or self.bold) and (not italic or self.italic):
            self.bold ^= bold
            self.italic ^= italic
        elif can_open and (not bold or not self.bold) and (not italic or not self.italic):
            self.bold |= bold
            self.italic |= italic
        else:
            self._words(c * run)
            return k
        self._style()
        self.prev = c
        return k

    def _literal(self, text: str, final: bool) -> bool:
        if final:
            self._words(text)
        return final

    def _link(self, text: str, j: int, final: bool) -> int:
        """[text](url): the text underlined, the URL after it, dim. Held until its `)` arrives."""
        n = len(text)
        end = text.find("]", j + 1)
        if end >= 0 and end + 1 < n and text[end + 1] == "(":
            close = text.find(")", end + 2)
            if close >= 0:
                label, url = text[j + 1:end], text[end + 2:close].split(" ")[0].strip("<>")
                saved = self.bold, self.italic, self.strike, self.code
                self.link = True
                self._style()
                self.feed(label, final=True)
                self.bold, self.italic, self.strike, self.code = saved
                self.link = False
                if url and url != label:
                    self.url = True
                    self._style()
                    self._words(f" ({url})")
                    self.url = False
                self._style()
                self.prev = ")"
                return close + 1
        undecided = end < 0 or end + 1 == n or text[end + 1] == "("
        if undecided and not final and n - j < 300:  # a link's text and URL are short
            return -1
        self._words("[")
        return j + 1

    def _style(self) -> None:
        if self.code:
            codes = (self.base, CODE)
        else:
            codes = (self.base, BOLD if self.bold else "", ITALIC if self.italic else "",
                     STRIKE if self.strike else "", LINK if self.link else "", URL if self.url else "")
        sgr = _sgr(codes)
        if sgr != self._cur:
            self._cur = sgr
            self._p.append(sgr)

    # -- words and wrapping -----------------------------------------------------------------------

    def _words(self, text: str) -> None:
        self.prev = text[-1]
        for part in _RUNS.findall(text):
            if part[0] not in " \t":
                if self._word < 0:
                    self._word = len(self._p)
                    self._any = True
                self._p.append(part)
                self._pw += len(part) if part.isascii() else _width(part)
                continue
            if self._word >= 0:
                self._commit()
            if self.code:  # spaces in a code span are kept
                self._p.append(part)
                self._pw += len(part)
            elif not self._pw and self._any:  # elsewhere they collapse, and go at the start of a line
                self._p.append(" ")
                self._pw = 1

    def _fits(self, text: str) -> None:
        """_words() for plain text that fits on the row: what precedes its last space is settled."""
        self.prev = text[-1]
        k = text.rfind(" ")
        if k < 0:  # the word grows
            if self._word < 0:
                self._word = len(self._p)
                self._any = True
            self._p.append(text)
            self._pw += len(text)
            return
        p = self._p
        if self._shown < len(p):
            self.out.extend(p[self._shown:])
        if k:
            self.out.append(text[:k])
        self.col += self._pw + k
        tail = text[k + 1:]
        self._p = [" ", tail] if tail else [" "]
        self._pw, self._word, self._any = len(text) - k, 1 if tail else -1, True
        self._shown = self._shown_w = 0
        self._sgr0 = self._cur

    def _commit(self) -> None:
        """Place the finished word: on this row if it fits, else on the next (never a row above)."""
        p = self._p
        if self.col + self._pw <= self.width:
            if self._shown < len(p):
                self.out.extend(p[self._shown:])
            self.col += self._pw
        else:
            gap_w = sum(len(x) for x in p[:self._word] if x[0] != "\x1b")
            if self._shown_w:
                self.out.append(f"\x1b[{self._shown_w}D\x1b[K")  # erase its early copy, same row
            if self.col > self.indent_w:
                self._newline()
            self.out.append(self._sgr0)
            self.out.extend(x for x in p[:self._word] if x[0] == "\x1b")  # styles begun in the gap
            word, word_w = p[self._word:], self._pw - gap_w
            if self.col + word_w <= self.width:
                self.out.extend(word)
                self.col += word_w
            else:
                self._hard_break(word)
        self._new_word()

    def _hard_break(self, pieces: list[str]) -> None:
        """A word wider than the row (a long URL): cut it at the edge."""
        cur = self._sgr0
        for piece in pieces:
            if piece[0] == "\x1b":
                cur = piece
                self.out.append(piece)
                continue
            while piece:
                room = self.width - self.col
                chunk, chunk_w = _cut(piece, room)
                if not chunk and self.col <= self.indent_w:  # a row too narrow for one character
                    chunk, chunk_w = piece[0], _width(piece[0])
                if chunk:
                    self.out.append(chunk)
                    self.col += chunk_w
                    piece = piece[len(chunk):]
                if piece:
                    self._newline()
                    self.out.append(cur)

    def _newline(self) -> None:
        self.out.append(RESET + "\n")
        if self.rows is not None:
            self.rows.append(self.col)
        self.out.append(self.indent)
        self.col = self.indent_w

    def show(self) -> None:
        """Write the word in progress now if it fits on the row with a column to spare."""
        if self._word >= 0 and self._shown < len(self._p) and self.col + self._pw < self.width:
            self.out.extend(self._p[self._shown:])
            self._shown = len(self._p)
            self._shown_w = self._pw

    def end(self) -> None:
        """The line is over: settle held markup literally, place the last word, end the row."""
        if self._hold:
            self.feed("", final=True)
        if self._word >= 0:
            self._commit()
        self.out.append(RESET + "\n")
        if self.rows is not None:
            self.rows.append(self.col)
        self.col = 0


HEAD, PROSE, HELD = range(3)  # HELD: a fence line or table row, acted on when complete


class MarkdownRenderer:
    """Markdown for a terminal, formatted as it streams (see the module docstring)."""

    def __init__(self, stream: IO[str] | None = None, *, width: int | None = None):
        self.stream = stream or sys.stdout
        self._fixed_width = width  # for tests; else the terminal's width, read at each line
        self._out: list[str] = []  # what this delta writes, in one write() at its end
        self._flow = _Flow(self._out, 80)
        self._reset()

    def _reset(self) -> None:
        self._mode = HEAD
        self._head = ""  # the start of a line, until we know what kind of line it is
        self._held: list[str] = []  # a fence line or table row being collected
        self._table: list[str] = []
        self._blank = True  # the last line printed was blank (or none was): blank lines collapse
        self._fence: tuple[str, int, int] | None = None  # (character, length, indent) of an open code block
        self._lexer = None
        self._code: list[str] = []  # the current code line
        self._code_live = False  # some of it is on the screen, raw
        self._code_shown = 0  # its width there
        self._code_room = 0  # how much of it fits on the row
        self._code_indent = ""

    def _columns(self) -> int:
        return self._fixed_width or terminal_columns(self.stream)

    # -- the stream -------------------------------------------------------------------------------

    def text(self, delta: str) -> None:
        if not delta:
            return
        if _CONTROL.search(delta):  # the model's ESC, OSC 52 (clipboard), CSI 2J… shown, never obeyed
            from voicecli.sanitize import escape_controls

            delta = escape_controls(delta, keep="\n\t\r")  # a CR is dropped below
        if self._mode == PROSE and "\n" not in delta and "\r" not in delta:  # the common case, in short
            self._flow.feed(delta)
            self._flow.show()
            self._write()
            return
        if "\r" in delta:
            delta = delta.replace("\r", "")
        i, n = 0, len(delta)
        while i < n:
            nl = delta.find("\n", i)
            if nl < 0:
                self._segment(delta[i:], False)
                break
            self._segment(delta[i:nl], True)
            i = nl + 1
        if self._mode == PROSE:
            self._flow.show()
        self._write()

    def finish(self) -> None:
        """End the answer (completing its last line); the renderer can be used for the next one."""
        if self._mode != HEAD or self._head or self._code:
            self._segment("", True)
        if self._table:
            self._print_table()
        self._reset()
        self._write()

    def _write(self) -> None:
        if self._out:
            self.stream.write("".join(self._out))
            self._out.clear()
        self.stream.flush()

    def _segment(self, text: str, complete: bool) -> None:
        """Part of the current line (`complete`: the line ends after it)."""
        mode = self._mode
        if mode == PROSE:
            if text:
                self._flow.feed(text)
            if complete:
                self._flow.end()
                self._mode = HEAD
        elif mode == HELD:
            self._held.append(text)
            if complete:
                self._mode = HEAD
                self._held_line("".join(self._held))
                self._held = []
        elif self._fence is not None:
            self._code_text(text, complete)
        else:
            self._head_text(self._head + text, complete)

    # -- what kind of line ------------------------------------------------------------------------

    def _head_text(self, line: str, complete: bool) -> None:
        self._head = ""
        rest = line.lstrip(" \t")
        if self._table and (rest[:1] != "|" if rest else complete):
            self._print_table()
        if not rest:
            if not complete:
                self._head = line
            elif not self._blank:
                self._out.append("\n")
                self._blank = True
            return
        c = rest[0]
        if c in "`~|":
            run = len(rest) - len(rest.lstrip(c))
            if c == "|" or run >= 3:  # a table row or a code fence: nothing to show until it ends
                if complete:
                    self._held_line(line)
                else:
                    self._mode, self._held = HELD, [line]
                return
            if run == len(rest) and not complete:  # ` or ``: a fence, maybe
                self._head = line
                return
        kind = self._classify(rest, len(line) - len(rest), complete)
        if kind is None:
            self._head = line
            return
        width = self._columns()
        if kind == "hr":
            self._out.append(f"{DIM}{'─' * width}{RESET}\n")
            self._blank = False
            return
        prefix, prefix_w, indent, indent_w, base, start = kind
        self._prose(rest[start:], complete, prefix, prefix_w, indent, indent_w, base, width)

    def _prose(self, text: str, complete: bool, prefix="", prefix_w=0, indent="", indent_w=0, base="",
               width=0) -> None:
        flow = self._flow
        flow.width = width or self._columns()
        flow.start(prefix, prefix_w, indent, indent_w, base)
        self._mode = PROSE
        self._blank = False
        if text:
            flow.feed(text)
        if complete:
            flow.end()
            self._mode = HEAD

    def _classify(self, rest: str, lead: int, complete: bool):
        """None (not known yet), "hr", or how to show a prose line: (prefix, its width, indent of
        wrapped rows, its width, base style, where the text starts in `rest`)."""
        quote, quote_w, start = "", 0, 0
        if rest[0] == ">":
            m = _QUOTE.match(rest)
            if m.end() == len(rest) and not complete:
                return None
            depth = rest.count(">", 0, m.end())
            quote, quote_w, start, lead = BAR * depth, 2 * depth, m.end(), 0
        body = rest[start:]
        c = body[:1]
        pad = " " * lead
        if c == "#":
            m = _HEADING.match(body)
            if m and not complete and m.end() == len(body):
                return None  # more spaces may follow: the text starts after them
            if m:
                return quote, quote_w, quote, quote_w, HEADING.get(len(m.group(1)), HEADING[3]), start + m.end()
            if not complete and len(body) <= 6 and body == "#" * len(body):
                return None
        elif c and c in "-*_+":
            if not body.strip(c + " \t"):  # only markers so far: a rule, or a list item to be
                if not complete:
                    return None
                if c != "+" and body.count(c) >= 3 and not quote:
                    return "hr"
            if c != "_" and body[1:2] in (" ", "\t", ""):
                item = len(body) - len(body[1:].lstrip(" \t"))
                bullet = BULLETS[(lead // 2) % len(BULLETS)]
                width = quote_w + lead + 2
                return (f"{quote}{pad}\x1b[1;33m{bullet}{RESET} ", width, quote + " " * (lead + 2), width, "",
                        start + item)
        elif c.isdigit():
            m = _NUMBER.match(body)
            if m and not complete and m.end() == len(body):
                return None
            if m:
                number = m.group(1)
                width = quote_w + lead + len(number) + 1
                return (f"{quote}{pad}\x1b[1;33m{number}{RESET} ", width, quote + " " * (width - quote_w), width,
                        "", start + m.end())
            if not complete and _NUMBER_START.fullmatch(body):
                return None
        return quote + pad, quote_w + lead, quote + pad, quote_w + lead, "", start

    def _held_line(self, line: str) -> None:
        """A complete line that was held whole: a table row or a code fence."""
        rest = line.lstrip(" \t")
        if rest.startswith("|"):
            self._table.append(rest.rstrip())
            return
        c = rest[0]
        run = len(rest) - len(rest.lstrip(c))
        info = rest[run:].strip()
        if c == "`" and "`" in info:  # not a fence (CommonMark): inline code after all
            self._prose(rest, True)
            return
        self._fence = (c, run, len(line) - len(rest))
        self._lexer = _lexer(info.split()[0] if info else "")
        self._code_indent = " " * (self._fence[2] + 2)

    # -- code blocks ------------------------------------------------------------------------------

    def _code_text(self, text: str, complete: bool) -> None:
        code = self._code
        if text:
            code.append(text)
        # a line of only fence characters may be the closing fence: show nothing of it yet
        held = not self._code_live and self._fence_like()
        if not complete:
            if text and not held:
                self._show_code(text if self._code_live else "".join(code))
            return
        line = "".join(code)
        code.clear()
        live, self._code_live, self._code_shown = self._code_live, False, 0
        char, length, indent = self._fence
        stripped = line.strip()
        if held and len(stripped) >= length and stripped == char * len(stripped):
            self._fence = self._lexer = None  # the closing fence: no row of its own
            return
        body = line[min(indent, len(line) - len(line.lstrip(" "))):].expandtabs(4)
        if live:
            self._out.append("\r\x1b[2K")  # the raw copy is on this row only
        self._out.append(self._code_indent + _highlight(body, self._lexer) + "\n" if body else "\n")
        self._blank = False

    def _fence_like(self) -> bool:
        text = "".join(self._code).lstrip(" ")
        return text == self._fence[0] * len(text)

    def _show_code(self, text: str) -> None:
        """Write raw code as it arrives, up to a column short of the screen's edge."""
        if not self._code_live:
            self._code_live = True
            self._code_room = self._columns() - 1 - len(self._code_indent)
            self._out.append(self._code_indent)
        chunk, chunk_w = _cut(text.expandtabs(4), self._code_room - self._code_shown)
        if chunk:
            self._out.append(chunk)
            self._code_shown += chunk_w

    # -- tables -----------------------------------------------------------------------------------

    def _print_table(self) -> None:
        rows, self._table = self._table, []
        if len(rows) < 2 or not _TABLE_SEP.fullmatch(rows[1]):
            for row in rows:  # pipes, but not a table
                self._prose(row, True)
            return
        cells = [_cells(row) for row in rows]
        ncols = len(cells[0])
        aligns = [("^" if a.startswith(":") and a.endswith(":") else ">" if a.endswith(":") else "<")
                  for a in (c.strip() for c in cells[1])]
        aligns = (aligns + ["<"] * ncols)[:ncols]
        body = [cells[0]] + [(r + [""] * ncols)[:ncols] for r in cells[2:]]
        natural = [max(_Cell(text, 10 ** 6, BOLD if r == 0 else "").widest for r, text in enumerate(col))
                   for col in zip(*body)]
        widths = _fit(natural, self._columns() - 3 * ncols + 1)
        out, sep = self._out, f"{DIM}│{RESET}"
        for r, row in enumerate(body):
            rendered = [_Cell(text, w, BOLD if r == 0 else "") for text, w in zip(row, widths)]
            for line in range(max(len(c.rows) for c in rendered)):
                parts = []
                for cell, w, align in zip(rendered, widths, aligns):
                    text, text_w = cell.rows[line] if line < len(cell.rows) else ("", 0)
                    space = w - text_w
                    left = space // 2 if align == "^" else space if align == ">" else 0
                    parts.append(" " * (left + 1) + text + " " * (space - left + 1))
                out.append(sep.join(parts).rstrip(" ") + "\n")
            if r == 0:
                out.append(DIM + "┼".join("─" * (w + 2) for w in widths) + RESET + "\n")
        self._blank = False


class _Cell:
    """A table cell's inline markdown, wrapped to `width`: rows of (styled text, visible width)."""

    def __init__(self, text: str, width: int, base: str):
        out: list[str] = []
        widths: list[int] = []
        flow = _Flow(out, max(1, width), widths)
        flow.start("", 0, "", 0, base)
        flow.feed(text.strip().replace("\\|", "|"), final=True)
        flow.end()
        texts = "".join(out).split("\n")
        self.rows = [(t, w) for t, w in zip(texts, widths)]
        self.widest = max(widths, default=0)


def _cells(row: str) -> list[str]:
    row = row.strip()
    row = row[1:] if row.startswith("|") else row
    row = row[:-1] if row.endswith("|") and not row.endswith("\\|") else row
    return [c.strip() for c in _CELL.split(row)]


def _fit(widths: list[int], room: int) -> list[int]:
    """Narrow the widest columns until the table fits in `room` cells (their text then wraps)."""
    widths = [max(1, w) for w in widths]
    while sum(widths) > room and max(widths) > 6:
        widths[widths.index(max(widths))] -= 1
    return widths


# -- syntax highlighting ----------------------------------------------------------------------------

_LEXERS: dict[str, object] = {}
_STYLES: dict = {}
_FORMATTER = None


def _lexer(name: str):
    """A pygments lexer for a fence's language (None: plain), looked up once per name."""
    if not name:
        return None
    if name not in _LEXERS:
        from pygments.lexers import get_lexer_by_name
        from pygments.util import ClassNotFound

        try:
            _LEXERS[name] = get_lexer_by_name(name)
        except ClassNotFound:
            _LEXERS[name] = None
    return _LEXERS[name]


def _token_style(ttype) -> tuple[str, str]:
    """The Terminal256Formatter's (on, off) escapes for a token type (or its nearest parent)."""
    global _FORMATTER
    style = _STYLES.get(ttype)
    if style is None:
        if _FORMATTER is None:
            from pygments.formatters import Terminal256Formatter
            from pygments.style import Style
            from pygments.styles import get_style_by_name

            base = get_style_by_name(CODE_THEME)
            plain = {k: v.replace("#f8f8f2", "").strip() for k, v in base.styles.items()}
            _FORMATTER = Terminal256Formatter(style=type("CodeStyle", (Style,), {"styles": plain}))
        strings, t = _FORMATTER.style_string, ttype
        while str(t) not in strings and t.parent is not None:
            t = t.parent
        style = _STYLES[ttype] = strings.get(str(t), ("", ""))
    return style


def _highlight(line: str, lexer) -> str:
    """One code line, coloured by `lexer` (tokens styled as the Terminal256Formatter would, with
    escapes only where the style changes)."""
    if lexer is None:
        return line
    from voicecli.ui.fastlex import tokens

    parts, cur = [], ("", "")
    for _, ttype, value in tokens(lexer, line + "\n"):
        value = value.rstrip("\n")
        if value:
            style = _STYLES.get(ttype) or _token_style(ttype)
            if style != cur:
                parts.append(cur[1] + style[0])
                cur = style
            parts.append(value)
    return "".join(parts) + (RESET if cur[0] else "")
