"""Transcript writers: JSON Lines and Markdown by extension, appended and flushed entry by entry."""

from __future__ import annotations

import json

import pytest

from voicecli.errors import UsageError
from voicecli.events import Usage
from voicecli.transcript import Entry, markdown_entry, open_transcript


def test_jsonl_entries_are_on_disk_as_soon_as_written(tmp_path):
    path = tmp_path / "t.jsonl"
    t = open_transcript(path)
    t.session(profile="offline", model="sim-1")
    t.write(Entry("user", "hello", start=100.0))
    assert len(path.read_text().splitlines()) == 2  # flushed before close
    t.write(Entry("assistant", "hi th", start=101.0, end=102.5, interrupted=True, usage=Usage(10, 3, 4, 0),
                  meta={"model": "sim-1"}))
    t.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["type"] == "session" and lines[0]["model"] == "sim-1"
    assert lines[1] == {"type": "entry", "role": "user", "text": "hello", "start": 100.0, "end": 100.0}
    assert lines[2]["interrupted"] is True and lines[2]["end"] == 102.5 and lines[2]["model"] == "sim-1"
    assert lines[2]["usage"] == {"input_tokens": 10, "cached_tokens": 4, "output_tokens": 3, "reasoning_tokens": 0}


def test_sessions_append_to_the_same_file(tmp_path):
    path = tmp_path / "t.md"
    for word in ("one", "two"):
        t = open_transcript(path)
        t.session(model="sim-1")
        t.write(Entry("user", word))
        t.write(Entry("tool", "42", meta={"name": "answer"}))
        t.close()
    text = path.read_text()
    assert text.count("## Session") == 2 and text.count("\n---\n") == 1  # a rule between sessions only
    assert text.index("one") < text.index("two")
    assert "### Tool (answer)" in text


def test_markdown_entry():
    text = markdown_entry("assistant", "Some *text*\n", interrupted=True, usage=Usage(5, 2))
    assert text.startswith("### Assistant\n\nSome *text*\n\n_[interrupted]_")
    assert "5 in (0 cached), 2 out" in text
    assert markdown_entry("user", "").startswith("### You\n\n_(no text)_")


def test_unknown_extension_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match=r"\.md or \.jsonl"):
        open_transcript(tmp_path / "t.txt")
