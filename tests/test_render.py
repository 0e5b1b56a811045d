"""The streaming renderers: markdown formatted line by line for a terminal, raw text for pipes.

The markdown renderer's output is replayed on a tiny terminal emulator (`Screen`) to check what a
user would see, however the answer was cut into deltas, and that no finished row is drawn again.
"""

from __future__ import annotations

import io
import os
import random
import re

import pytest

from voicecli.ui.render import MarkdownRenderer
from voicecli.ui.term import RawRenderer, make_renderer

_TOKEN = re.compile(r"\x1b\[([0-9;]*)([A-Za-z])|\r|\n|[^\x1b\r\n]")


class Screen:
    """Just enough of a terminal to replay the renderer: xterm's delayed wrap at the last column,
    CR, LF (as CR LF, like a tty's onlcr), erase in line, cursor left/up, SGR (ignored).

    `went_up`: a character was written on a row above the lowest one reached, i.e. a finished row
    was drawn again. `writes[r]`: characters written on row r, erased ones included."""

    def __init__(self, width: int):
        self.width = width
        self.rows: list[list[str]] = [[]]
        self.writes = [0]
        self.r = self.c = 0
        self.pending = False  # the cursor sits past the last column; the next character wraps
        self.went_up = False

    def feed(self, data: str) -> Screen:
        for m in _TOKEN.finditer(data):
            tok, cmd = m.group(), m.group(2)
            if cmd == "m":
                continue
            if cmd:
                n = int(m.group(1) or 1) if cmd in "AD" else 0
                self.pending = False
                if cmd == "D":
                    self.c = max(0, self.c - n)
                elif cmd == "A":
                    self.r = max(0, self.r - n)
                elif cmd == "K":
                    del self.rows[self.r][0 if m.group(1) == "2" else self.c:]
                else:
                    raise AssertionError(f"unexpected escape {tok!r}")
            elif tok in "\r\n":
                self.c, self.pending = 0, False
                self.r += tok == "\n"
            else:
                if self.pending:
                    self.r, self.c, self.pending = self.r + 1, 0, False
                self._grow()
                self.went_up |= self.r < len(self.rows) - 1
                row = self.rows[self.r]
                row.extend(" " * (self.c + 1 - len(row)))
                row[self.c] = tok
                self.writes[self.r] += 1
                if self.c == self.width - 1:
                    self.pending = True
                else:
                    self.c += 1
            self._grow()
        return self

    def _grow(self) -> None:
        while len(self.rows) <= self.r:
            self.rows.append([])
            self.writes.append(0)

    @property
    def lines(self) -> list[str]:
        return "\n".join("".join(row).rstrip() for row in self.rows).strip("\n").split("\n")

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def render(deltas, width: int = 40) -> tuple[Screen, str]:
    """Stream `deltas` through a markdown renderer `width` columns wide; the screen and the bytes."""
    out = io.StringIO()
    renderer = MarkdownRenderer(out, width=width)
    for delta in deltas:
        renderer.text(delta)
    renderer.finish()
    return Screen(width).feed(out.getvalue()), out.getvalue()


DOC = ("# Title\n\nSome **bold**, *italic*, ~~gone~~ and `code` text with a [link](https://x.io) that wraps.\n\n"
       "- one\n- two\n  - nested\n3. third\n\n> quoted\n\n---\n\n```python\ndef f(x):\n    return x  # done\n```\n\n"
       "| name | n |\n|:-----|--:|\n| a | 1 |\n| bbb | 22 |\n\nsnake_case, 2 * 3 and \\*escaped\\*.\n")

SHOWN = """\
Title

Some bold, italic, gone and code text
with a link (https://x.io) that wraps.

• one
• two
  ◦ nested
3. third

▌ quoted

────────────────────────────────────────

  def f(x):
      return x  # done

 name │  n
──────┼────
 a    │  1
 bbb  │ 22

snake_case, 2 * 3 and *escaped*."""

PROSE = ("A paragraph of ordinary words that is long enough to wrap several times on a narrow screen, "
         "with **bold words that cross a wrap** and `a code span`, then a https://very.long/url/that/is/"
         "wider/than/the/screen/itself.html to cut.\n- an item that wraps onto a second row, indented\n")
CODE = "Before:\n\n~~~js\nlet x = 1;\n\n``not a fence\n  ~~~~\n\nafter = 2\n"  # the ~~~~ line closes it
TABLE = ("| key | a much longer header | n |\n|:-:|---|--:|\n| `k` | some **words** in a long cell that "
         "must wrap | 1 |\n| k2 | short | 22 |\nafter the table\n")
DOCS = [DOC, PROSE, CODE, TABLE]


def chunks(doc: str, seed: int) -> list[str]:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(doc)), len(doc) // 4))
    return [doc[a:b] for a, b in zip([0] + cuts, cuts + [len(doc)])]


def test_a_document_as_the_user_sees_it():
    screen, out = render([DOC])
    assert screen.text == SHOWN
    assert not screen.went_up


@pytest.mark.parametrize("doc", DOCS, ids=["doc", "prose", "code", "table"])
def test_any_split_into_deltas_gives_the_same_screen(doc):
    whole = render([doc], width=30)[0].text
    for i in range(len(doc) + 1):
        screen = render([doc[:i], doc[i:]], width=30)[0]
        assert screen.text == whole, f"split at {i}: {doc[:i]!r}"
    assert render(list(doc), width=30)[0].text == whole  # one character at a time
    for seed in range(5):
        assert render(chunks(doc, seed), width=30)[0].text == whole


@pytest.mark.parametrize("doc", DOCS, ids=["doc", "prose", "code", "table"])
@pytest.mark.parametrize("width", [30, 80])
def test_finished_rows_are_never_drawn_again(doc, width):
    screen, out = render(list(doc), width=width)
    assert not screen.went_up and "\x1b[" + "A" not in out
    final = ["".join(row) for row in screen.rows]
    for row, written in zip(final, screen.writes):
        # a row gets its own text, plus at most a raw copy of a code line or one word moved down
        assert written <= 2 * len(row) + width


def test_cost_is_linear_in_the_answer():
    one = render(list(DOC * 3), width=40)[1]
    four = render(list(DOC * 12), width=40)[1]
    assert len(four) <= 4.1 * len(one)


def test_markup_never_reaches_the_terminal():
    for deltas in (list(DOC), [DOC], chunks(DOC, 1)):
        out = render(deltas)[1]
        assert "**" not in out and "```" not in out and "](" not in out and "~~" not in out
        assert "\n#" not in out and "|--" not in out


def test_code_is_highlighted_per_line_and_redrawn_only_once():
    screen, out = render(list("```python\nx = 1\ny = 'two'\n```\n"), width=40)
    assert screen.lines == ["  x = 1", "  y = 'two'"]
    assert "\x1b[38;5;" in out  # the Terminal256 palette
    assert out.count("\r\x1b[2K") == 2  # each line: shown raw as it streams, then once highlighted
    plain = render(list("```nosuchlanguage\nx = 1\n```\n"))[1]
    assert "\x1b[38;5;" not in plain and "x = 1" in plain


def test_a_long_code_line_is_shown_live_up_to_the_edge_only():
    line = "x = [" + ", ".join(str(i) for i in range(40)) + "]"
    screen, out = render(["```python\n"] + list(line) + ["\n```\n"], width=40)
    assert "".join(screen.lines).replace(" ", "") == line.replace(" ", "")  # wrapped by the terminal
    live = out[:out.index("\r")]
    assert len(live) < 40  # the raw copy stayed on one row, so \r can erase it


@pytest.mark.parametrize("width", [30, 80, 300])
def test_prose_wraps_at_the_width_between_words(width):
    text = " ".join(f"word{i}" for i in range(120))
    screen, _ = render([w + " " for w in text.split()], width=width)
    assert max(len(line) for line in screen.lines) <= width
    assert " ".join(screen.lines).split() == text.split()  # no word cut or lost
    if width == 300:
        assert max(len(line) for line in screen.lines) > 250


def test_wrapped_rows_keep_the_indent_of_lists_and_quotes():
    screen, _ = render(list("- " + "item " * 12 + "\n> " + "quote " * 10 + "\n"), width=30)
    lines = screen.lines
    assert lines[0].startswith("• ") and lines[1].startswith("  item")
    quoted = [line for line in lines if line.startswith("▌")]
    assert len(quoted) >= 2 and all(line.startswith("▌ quote") for line in quoted)


def test_a_word_wider_than_the_screen_is_cut_at_the_edge():
    url = "https://example.com/" + "x" * 70
    screen, _ = render(list(f"see {url} now\n"), width=30)
    assert all(len(line) <= 30 for line in screen.lines)
    assert "".join(screen.lines).replace(" ", "") == f"see{url}now"


def test_tables_are_aligned_and_wrap_to_fit():
    screen, out = render(list(TABLE), width=80)
    rows = screen.lines[:-1]
    assert len({row.index("│") for row in rows if "│" in row}) == 1  # the columns line up
    assert rows[1].startswith("─") and "┼" in rows[1]
    assert rows[2].rstrip().endswith(" 1") and rows[3].rstrip().endswith("22")  # right-aligned column
    assert "\x1b[1mkey" in out  # bold header
    assert screen.lines[-1] == "after the table"
    narrow, _ = render(list(TABLE), width=30)
    assert max(len(line) for line in narrow.lines) <= 30
    assert "wrap" in narrow.text and len(narrow.lines) > len(screen.lines)


def test_pipes_without_a_table_are_text():
    screen, _ = render(["| not a table |\nnext line\n"])
    assert screen.lines == ["| not a table |", "next line"]


def test_unbalanced_markers_stay_as_typed():
    screen, _ = render(list("snake_case_name, 2 * 3, a ** b, [brackets] and ~tilde\n"), width=80)
    assert screen.text == "snake_case_name, 2 * 3, a ** b, [brackets] and ~tilde"


def test_the_renderer_can_be_reused_after_finish():
    out = io.StringIO()
    renderer = MarkdownRenderer(out, width=40)
    renderer.text("```\nopen code block")
    renderer.finish()  # an answer cut short (Ctrl-C) inside a code block
    renderer.text("**second** answer")
    renderer.finish()
    assert Screen(40).feed(out.getvalue()).lines == ["  open code block", "second answer"]


def test_the_width_is_the_terminal_width():
    import fcntl
    import struct
    import termios

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 50, 0, 0))
    with open(slave, "w", encoding="utf-8") as tty:
        renderer = make_renderer(tty, markdown=True)
        renderer.text(" ".join(f"w{i}" for i in range(60)))
        renderer.finish()
    data = b""
    try:
        while chunk := os.read(master, 65536):
            data += chunk
    except OSError:  # EIO: the other side is closed and all was read
        pass
    os.close(master)
    lines = Screen(50).feed(data.decode()).lines
    assert 40 < max(len(line) for line in lines) <= 50 and len(lines) > 1


def test_raw_renderer_and_the_choice(monkeypatch):
    out = io.StringIO()
    renderer = make_renderer(out)  # not a TTY: raw
    assert isinstance(renderer, RawRenderer)
    renderer.text("a **b**")
    renderer.finish()
    assert out.getvalue() == "a **b**\n"

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    assert isinstance(make_renderer(Tty()), MarkdownRenderer)
    monkeypatch.setenv("NO_COLOR", "1")
    assert isinstance(make_renderer(Tty()), RawRenderer)
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "dumb")
    assert isinstance(make_renderer(Tty()), RawRenderer)


def test_hanging_rows_break_between_words_under_their_text():
    from voicecli.ui.wrap import hanging

    assert hanging("  /x  ", "short text", 60) == "  /x  short text"
    assert hanging("  /x  ", "one two three four", None) == "  /x  one two three four"  # not a terminal
    assert hanging("  /x  ", "alpha beta gamma delta epsilon zeta", 30) == (
        "  /x  alpha beta gamma delta\n      epsilon zeta")
    # a word wider than the column is cut after its last . : / _ - that fits, and only then
    assert hanging("  t  ", "voicecli.examples.units:convert — x", 25) == "  t  voicecli.examples.\n     units:convert — x"
    # a head that leaves under 20 cells: the text goes below it, indented by four
    assert hanging(f"  {'/schema [JSON]':<30}", "answer as JSON matching a schema", 40) == (
        "  /schema [JSON]\n    answer as JSON matching a schema")
