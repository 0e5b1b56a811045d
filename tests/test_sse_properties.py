"""Property tests of the SSE decoder: the same events however the stream is split, whatever its line
ends, and when it arrives gzip-compressed and is inflated by zlib piece by piece."""

from __future__ import annotations

import gzip
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voicecli.wire.sse import SSEDecoder

_values = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=12)
_field = st.one_of(
    st.tuples(st.just("data"), _values),
    st.tuples(st.just("event"), _values),
    st.tuples(st.just("id"), _values),
    st.tuples(st.just("retry"), st.one_of(st.integers(0, 10**6).map(str), _values)),
    st.tuples(st.just(""), _values),  # a comment (": …")
    st.tuples(st.just("blank"), st.integers(1, 5)),  # blank lines in a row
)
_stream_lines = st.lists(_field, max_size=25)
_eols = st.sampled_from(["\n", "\r\n", "\r"])


def _render(lines, eol_choices: list[str], bom: bool) -> bytes:
    out = ["\ufeff"] if bom else []
    for i, (name, value) in enumerate(lines):
        eol = eol_choices[i % len(eol_choices)]
        if name == "blank":
            out.append(eol * value)
        elif name == "":
            out.append(f":{value}{eol}")
        else:
            out.append(f"{name}: {value}{eol}")
    return "".join(out).encode("utf-8")


def _decode(chunks) -> list:
    d = SSEDecoder()
    events = []
    for chunk in chunks:
        events += d.feed(chunk)
    return events + d.flush()


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, start = [], 0
    for p in points + [len(data)]:
        pieces.append(data[start:p])
        start = p
    return pieces


def _normalized(data: bytes) -> bytes:
    """The same stream with every line end an LF (a CR is its own line end unless an LF follows)."""
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


_settings = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_settings
@given(_stream_lines, st.lists(_eols, min_size=1, max_size=4), st.booleans(), st.lists(st.integers(0, 10**6)))
@pytest.mark.slow
def test_any_split_gives_the_same_events(lines, eols, bom, cuts):
    data = _render(lines, eols, bom)
    whole = _decode([data])
    assert _decode(_split(data, cuts)) == whole
    assert _decode([data[i:i + 1] for i in range(len(data))]) == whole  # byte by byte
    # CRLF, CR or LF: the same events
    assert _decode([_normalized(data)]) == whole


@_settings
@given(_stream_lines, st.lists(_eols, min_size=1, max_size=4), st.lists(st.integers(0, 10**6)),
       st.integers(1, 64))
@pytest.mark.slow
def test_gzip_inflated_in_pieces_gives_the_same_events(lines, eols, cuts, max_out):
    data = _render(lines, eols, False)
    compressed = gzip.compress(data)
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    d = SSEDecoder()
    events = []
    for piece in _split(compressed, cuts):
        out = inflater.decompress(piece, max_out)  # bounded output per call, as a careful client does
        while True:
            events += d.feed(out)
            if not inflater.unconsumed_tail:
                break
            out = inflater.decompress(inflater.unconsumed_tail, max_out)
    events += d.feed(inflater.flush())
    events += d.flush()
    assert events == _decode([data])


@_settings
@given(st.integers(3, 200), st.lists(st.integers(0, 10**4)), _eols)
def test_blank_line_runs_mean_one_blank_line(n, cuts, eol):
    data = f"data: a{eol}data: b{eol}".encode() + eol.encode() * n + f"data: c{eol}{eol}".encode()
    events = _decode(_split(data, cuts))
    assert [e.data for e in events] == ["a\nb", "c"]


def test_a_line_or_an_event_over_the_cap_raises_a_clear_error_at_once():
    import pytest

    from voicecli.errors import ExitCode
    from voicecli.wire.sse import MAX_EVENT_BYTES, EventTooLarge

    d = SSEDecoder()
    d.feed(b"data: ")
    with pytest.raises(EventTooLarge) as caught:
        for _ in range(MAX_EVENT_BYTES // 65536 + 2):  # a line that never ends, 64 KiB at a time
            d.feed(b"x" * 65536)
    assert caught.value.exit_code == ExitCode.NETWORK
    assert caught.value.message == "the server sent a line over 16 MiB; the stream was dropped"
    d = SSEDecoder()
    with pytest.raises(EventTooLarge, match="an event over 16 MiB"):
        for _ in range(MAX_EVENT_BYTES // 65536 + 2):  # short data lines, never a blank one
            d.feed(b"data: " + b"y" * 65529 + b"\n")
    d = SSEDecoder()  # just under the cap, in one chunk: still an event
    (event,) = d.feed(b"data: " + b"z" * (MAX_EVENT_BYTES - 8) + b"\n\n")
    assert len(event.data) == MAX_EVENT_BYTES - 8
