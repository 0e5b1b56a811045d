"""Echo path detection in the real CLI on the PulseAudio stack: headphones (the null sinks as they
are: the mic never hears the speaker), then unplugged (`module-loopback`: the speaker leaks into
the mic 40 ms later). talk --debug says what the detector decided."""

from __future__ import annotations

import json

import pytest

from test_talk_audio import (LONG_REPLY, StderrLines, TalkProcess, entries, leaky_stack, own_stack,  # noqa: F401
                             wait_quiet)

pytestmark = [pytest.mark.audio, pytest.mark.slow]


# Real-time audio with a leaking speaker, as the other leak tests (issue 27), and alone even where talk
# runs at real-time priority: among the other tests it still failed 2 of 3 (an output underrun as the
# leak began, then the echo taken for the user), a weakness of the echo-path detection left open.
@pytest.mark.alone(even_realtime=True)
def test_headphones_bypass_the_canceller_until_they_are_unplugged(own_stack, make_sim, tmp_path):
    """With headphones the first answer ends with the canceller bypassed; the speaker then leaks
    (headphones unplugged between answers): the next answer starts with the canceller in force,
    the echo path is found, and the assistant does not interrupt itself."""
    pytest.importorskip("livekit.rtc")
    script = tmp_path / "script.json"
    reply = LONG_REPLY[:len(LONG_REPLY) // 2]  # two sentences, ~9 s: the verdicts come within the first second
    script.write_text(json.dumps({"turns": [{"reply": reply}, {"reply": reply}]}))
    sim = make_sim(script=script)
    tr = tmp_path / "talk.jsonl"
    talk = TalkProcess(tmp_path, sim, "--full-duplex", "--debug", "--transcript", str(tr), env=own_stack.env)
    err = StderrLines(talk.proc)
    monitor = own_stack.monitor()
    try:
        talk.wait_streaming()
        talk.line("tell me a story")
        talk.wait(lambda: err.has("echo path: none detected, canceller bypassed"), 60, "the bypass")
        talk.wait(lambda: entries(tr, "assistant"), 90, "the first answer")
        wait_quiet(talk, monitor)
        assert not err.has("echo path found")
        leaky_stack(own_stack)
        talk.line("tell me the story again")
        talk.wait(lambda: err.has("echo path found"), 60, "the echo path")
        talk.wait(lambda: len(entries(tr, "assistant")) == 2, 90, "the second answer")
        wait_quiet(talk, monitor)
        code, _, _ = talk.quit()
    finally:
        talk.proc.kill()
        monitor.stop()
    stderr = err.text
    assert code == 0, stderr
    assert "full-duplex with echo cancellation" in stderr
    assert not talk.events("response.cancel"), stderr
    assert [e["text"] for e in entries(tr, "user")] == ["tell me a story", "tell me the story again"]
    assert not any(e.get("interrupted") for e in entries(tr, "assistant"))
