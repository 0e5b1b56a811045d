"""SSE framing: the WHATWG rules protocols.md §0 relies on, chunked at every split."""

from __future__ import annotations

import pytest
from shared_data import TRAFFIC, recording
from test_wire_support import SPLITS, chunks

from voicecli.wire.sse import ServerSentEvent, SSEDecoder


def decode(data: bytes, size: int | None = None) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    out = [e for chunk in chunks(data, size) for e in decoder.feed(chunk)]
    return out + decoder.flush()


def every_split(data: bytes) -> list[ServerSentEvent]:
    """Decode at byte sizes 1..len and check they all agree; return the agreed events."""
    whole = decode(data)
    for size in range(1, len(data) + 1):
        assert decode(data, size) == whole, f"split size {size}"
    return whole


def test_event_and_data_with_optional_space():
    events = every_split(b"event: response.created\ndata: {\"a\":1}\n\nevent:x\ndata:{}\n\n")
    assert events == [ServerSentEvent("response.created", '{"a":1}'), ServerSentEvent("x", "{}")]
    assert events[0].json() == {"a": 1}


def test_only_one_space_is_stripped():
    assert every_split(b"data:  two\n\n") == [ServerSentEvent(data=" two")]


def test_comments_and_keepalives_are_ignored():
    events = every_split(b": keep-alive\n\n:\ndata: x\n: in the middle\ndata: y\n\n")
    assert events == [ServerSentEvent(data="x\ny")]


def test_multiline_data_joined_with_newline():
    assert every_split(b"data: a\ndata:\ndata: c\n\n") == [ServerSentEvent(data="a\n\nc")]


@pytest.mark.parametrize("eol", [b"\r\n", b"\r", b"\n"])
def test_line_endings(eol):
    data = eol.join([b"event: e", b"data: 1", b"", b"data: 2", b"", b""])
    assert every_split(data) == [ServerSentEvent("e", "1"), ServerSentEvent(data="2")]


def test_crlf_split_between_chunks_is_one_line_end():
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\n\r") == [ServerSentEvent(data="a")]
    assert decoder.feed(b"\n") == []  # the LF completing that CRLF, not another blank line
    assert decoder.feed(b"data: b\n\n") == [ServerSentEvent(data="b")]


def test_utf8_split_inside_a_character():
    data = "data: Exchange\u2011Rates — 😀 ok\n\n".encode()
    assert every_split(data) == [ServerSentEvent(data="Exchange\u2011Rates — 😀 ok")]


def test_bom_at_stream_start_is_dropped():
    assert every_split(b"\xef\xbb\xbfdata: x\n\n") == [ServerSentEvent(data="x")]


def test_id_persists_and_retry_is_per_event():
    events = every_split(b"id: 7\nretry: 1500\ndata: a\n\ndata: b\n\nid\ndata: c\n\nretry: x1\ndata: d\n\n")
    assert events == [ServerSentEvent(data="a", id="7", retry=1500), ServerSentEvent(data="b", id="7"),
                      ServerSentEvent(data="c", id=""), ServerSentEvent(data="d", id="")]


def test_event_without_data_is_not_dispatched_and_unknown_fields_ignored():
    assert every_split(b"event: ping\n\nfoo: bar\ndata: x\n\n") == [ServerSentEvent(data="x")]


def test_empty_data_line_dispatches_empty_string():
    assert every_split(b"data\n\n") == [ServerSentEvent(data="")]


def test_flush_finishes_an_unterminated_last_event():
    decoder = SSEDecoder()
    assert decoder.feed(b"data: [DONE]") == []
    [done] = decoder.flush()
    assert done.is_done
    assert decoder.flush() == []


def test_long_line_in_many_chunks():
    line = b"data: " + b"x" * 200_000 + b"\n\n"
    [event] = decode(line, 4096)
    assert event.data == "x" * 200_000


def test_event_type_does_not_leak_into_the_next_event():
    assert every_split(b"event: a\ndata: 1\n\ndata: 2\n\n")[1].event == "message"


# tests/traffic's streams and those read from ../shared (see shared_data.py)
SHARED_SSE = ["responses_sse_text_after_tool_01.sse", "responses_sse_tool_01.sse",
              *(f"mcp_http_deepwiki_session_01.{part}.sse"
                for part in ("i00.initialize", "i03.tools_list", "i05.tools_call", "i06.tools_list"))]


@pytest.mark.parametrize("name", sorted({p.name for p in TRAFFIC.glob("*.sse")} | set(SHARED_SSE)),
                         ids=lambda name: name.removesuffix(".sse"))
@pytest.mark.parametrize("size", SPLITS)
def test_recorded_streams_frame_the_same_at_any_split(name, size):
    path = recording(name)
    data = path.read_bytes()
    events = decode(data, size)
    assert events == decode(data)
    # every recorded event is one JSON object (or Chat's [DONE]); Responses names it twice
    assert len(events) == data.count(b"data: ")
    for event in events:
        if event.is_done or (path.name.startswith("mcp_") and event.event == "ping"):
            continue  # DeepWiki's MCP streams end with a keep-alive whose data is the bare word "ping"
        payload = event.json()
        if event.event != "message":
            assert payload["type"] == event.event
