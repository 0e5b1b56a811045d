"""The playback jitter buffer, pull by pull (as the audio thread drives it): the prebuffer, the end of
an item releasing it, underruns, and the played-sample counts barge-in relies on."""

from __future__ import annotations

import numpy as np
import pytest

from voicecli.audio.speaker import PlaybackBuffer

MS = 24  # samples per millisecond at 24 kHz


def ramp(ms: int, start: int = 1) -> np.ndarray:
    """Distinct non-zero samples, so every one can be found in what was played."""
    return np.arange(start, start + ms * MS, dtype="<i2")


def pull_ms(buf: PlaybackBuffer, ms: int, block_ms: int = 10) -> np.ndarray:
    return np.concatenate([buf.pull(block_ms * MS) for _ in range(ms // block_ms)])


@pytest.mark.parametrize("ms", [10, 30, 59])
def test_a_short_answer_plays_in_full_once_it_ends(ms):
    buf = PlaybackBuffer(prebuffer_ms=60)
    answer = ramp(ms)
    buf.push("a", answer.tobytes())
    assert not buf.pull(10 * MS).any()  # less than the prebuffer: more may be on its way
    buf.end("a")  # the response is over: nothing more will fill the prebuffer
    out = pull_ms(buf, ms + 20)
    assert np.array_equal(out[: answer.size], answer) and not out[answer.size:].any()
    assert buf.played["a"] == answer.size and buf.played_ms("a") == ms
    assert not buf.active and buf.pending() == 0


def test_an_underrun_then_a_short_tail_plays_the_tail():
    buf = PlaybackBuffer(prebuffer_ms=60)
    head, tail = ramp(100), ramp(20, start=5000)
    buf.push("a", head.tobytes())
    assert np.array_equal(pull_ms(buf, 100), head)
    assert not buf.pull(10 * MS).any()  # ran dry: waits for the prebuffer again
    buf.push("a", tail.tobytes())
    assert not buf.pull(10 * MS).any()  # 20 ms queued, still waiting
    buf.end("a")
    out = pull_ms(buf, 30)
    assert np.array_equal(out[: tail.size], tail) and not out[tail.size:].any()
    assert buf.played["a"] == head.size + tail.size and buf.played_ms("a") == 120
    assert not buf.active


def test_a_finished_item_does_not_release_the_next_ones_prebuffer():
    buf = PlaybackBuffer(prebuffer_ms=60)
    buf.push("a", ramp(20).tobytes())
    buf.end("a")
    buf.push("b", ramp(20, start=3000).tobytes())  # the next item is still streaming
    assert not buf.pull(10 * MS).any()
    buf.push("b", ramp(20, start=4000).tobytes())
    assert buf.pull(10 * MS).all()  # 60 ms queued: the prebuffer is full
    buf.end("b")
    pull_ms(buf, 60)
    assert buf.played == {"a": 20 * MS, "b": 40 * MS}


def test_an_ended_item_queued_again_later_waits_for_the_prebuffer():
    """`end` applies to what was queued: once played, later audio buffers as usual."""
    buf = PlaybackBuffer(prebuffer_ms=60)
    buf.push("a", ramp(10).tobytes())
    buf.end("a")
    pull_ms(buf, 20)
    buf.push("b", ramp(30).tobytes())
    assert not buf.pull(10 * MS).any()
    assert buf.played == {"a": 10 * MS}
