"""The streaming renderers: the block splitter, markdown into a fake terminal, raw text."""

from __future__ import annotations

import io
import re

import pytest

from voicecli.ui.render import BlockSplitter, MarkdownRenderer, RawRenderer, make_renderer

DOC = ("# Title\n\nA paragraph\nover two lines.\n\n```python\nx = 1\n\ny = 2\n```\nAfter the code.\n\n"
       "~~~\nplain ~~~ fence\n~~~\n- one\n- two\n")


def blocks(deltas) -> tuple[list[str], str]:
    splitter = BlockSplitter()
    done = [b for d in deltas if (b := splitter.feed(d))]
    return done, splitter.flush()


def test_blocks_end_at_blank_lines_and_closing_fences():
    done, rest = blocks([DOC])
    assert done == ["# Title\n\nA paragraph\nover two lines.\n\n```python\nx = 1\n\ny = 2\n```\nAfter the code.\n\n"
                    "~~~\nplain ~~~ fence\n~~~\n"]  # one delta: everything finished comes back at once
    assert rest == "- one\n- two\n"


@pytest.mark.parametrize("size", [1, 2, 3, 7, 50])
def test_any_split_of_the_deltas_loses_nothing(size):
    done, rest = blocks(DOC[i:i + size] for i in range(0, len(DOC), size))
    assert "".join(done) + rest == DOC and rest == "- one\n- two\n"


@pytest.mark.parametrize("size", [1, 2, 3])
def test_small_deltas_give_one_block_at_a_time(size):
    done, _ = blocks(DOC[i:i + size] for i in range(0, len(DOC), size))
    assert done == ["# Title\n\n", "A paragraph\nover two lines.\n\n", "```python\nx = 1\n\ny = 2\n```\n",
                    "After the code.\n\n", "~~~\nplain ~~~ fence\n~~~\n"]  # a blank line inside a fence does not split it


def test_pending_is_the_open_block_and_flush_resets():
    splitter = BlockSplitter()
    assert splitter.feed("para\n\n```\ncode") == "para\n\n"
    assert splitter.pending == "```\ncode"
    assert splitter.flush() == "```\ncode"
    assert splitter.feed("new\n\n") == "new\n\n"  # the fence state was reset too


def fake_tty(width=80) -> tuple[MarkdownRenderer, io.StringIO]:
    from rich.console import Console

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=width, height=25, color_system="truecolor")
    return MarkdownRenderer(console=console), out


def test_markdown_renderer_prints_each_block_once_with_highlighted_code():
    renderer, out = fake_tty()
    for ch in "Some **bold** text.\n\n```python\ndef f():\n    return 1\n```\n\nThe end.":
        renderer.text(ch)
    renderer.finish()
    text = out.getvalue()
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    assert "**" not in plain and "```" not in plain
    assert plain.index("Some bold text.") < plain.index("def f():") < plain.rindex("The end.")
    assert "\x1b[1m" in text and "38;2;" in text  # bold, and the code highlighter's colours


def test_markdown_renderer_can_be_reused_after_finish():
    renderer, out = fake_tty()
    renderer.text("first\n")
    renderer.finish()
    renderer.text("second")
    renderer.finish()
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    assert plain.index("first") < plain.index("second")


def test_raw_renderer_and_the_choice():
    out = io.StringIO()
    renderer = make_renderer(out)  # not a TTY: raw
    assert isinstance(renderer, RawRenderer)
    renderer.text("a **b**")
    renderer.finish()
    assert out.getvalue() == "a **b**\n"
