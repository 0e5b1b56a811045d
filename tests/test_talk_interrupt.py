"""Interrupting a Realtime answer on a leaking speaker with echo cancellation on (issues #24 §2,
#27 §2): the real CLI against the simulator on the PulseAudio stack, the speaker fed back into the
microphone. The timing targets live in bench/echo.py; these tests check the behaviour: one spoken
interruption stops the answer once, is held until the user stops (the session's turn detection off
meanwhile) and becomes one user turn with one answer after it."""

from __future__ import annotations

import json

import pytest

from test_talk_audio import (LONG_REPLY, TalkProcess, entries, leaky_stack, own_stack,  # noqa: F401
                             sim_voice_wav, wait_quiet)

pytestmark = [pytest.mark.audio, pytest.mark.slow]

SENTENCE = "Stop, wait a moment please."


def detection(event: dict):
    return event["session"].get("audio", {}).get("input", {}).get("turn_detection", "absent")


@pytest.mark.alone  # real-time echo cancellation, which busy CPUs disturb (issue 27)
def test_a_spoken_interruption_is_held_until_the_user_stops_and_answered_once(own_stack, make_sim, tmp_path):
    pytest.importorskip("livekit.rtc")
    leaky_stack(own_stack)
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"turns": [{"reply": LONG_REPLY}, {"reply": "Okay, I am listening."}]}))
    sim = make_sim(script=script, phrases=(SENTENCE,))
    stop = sim_voice_wav(tmp_path / "stop.wav", sim, SENTENCE, lead_s=0.0)
    tr = tmp_path / "talk.jsonl"
    talk = TalkProcess(tmp_path, sim, "--full-duplex", "--transcript", str(tr), env=own_stack.env)
    try:
        talk.wait_streaming()
        # the client takes interruptions over from the server: its own interrupt_response is off
        talk.wait(lambda: any(detection(e) not in ("absent", None) and detection(e).get("interrupt_response") is False
                              for e in talk.events("session.update")), 10, "the turn detection without interruptions")
        talk.line("tell me a story")
        talk.wait(lambda: talk.events("conversation.item.create"), 20, "the typed question")
        monitor = own_stack.monitor()
        try:
            talk.wait(lambda: monitor.sound_ms() >= 1200, 30, "the answer playing")
            own_stack.play(stop)
            talk.wait(lambda: len(entries(tr, "assistant")) >= 2, 30, "the answer to the interruption")
            # anything more the interruption might still set off comes while that answer plays (its echo)
            wait_quiet(talk, monitor, seconds=1.5)
        finally:
            monitor.stop()
        code, out, err = talk.quit()
    finally:
        talk.proc.kill()
    assert code == 0, err
    updates = [detection(e) for e in talk.events("session.update")]
    assert None in updates, updates  # held: the server could not end the turn on a fragment
    held = updates.index(None)
    assert any(d not in ("absent", None) for d in updates[held:]), updates  # and given back after the commit
    assert len(talk.events("input_audio_buffer.commit")) == 1
    assert len(talk.events("conversation.item.truncate")) == 1  # stopped once: no second truncate or cancel
    assert len(talk.events("response.cancel")) <= 1
    users, answers = entries(tr, "user"), entries(tr, "assistant")
    spoken = [e for e in users if e["text"] != "tell me a story"]
    assert len(spoken) == 1, users  # one turn holding the interruption
    assert answers[0].get("interrupted"), answers
    assert len(answers) == 2 and not answers[1].get("interrupted"), answers  # one answer after it
    # nothing after talk's own lines: its local VAD's native resampler went with it (no nanobind report)
    assert not any("nanobind" in line or "leaked" in line for line in err.splitlines()), err
