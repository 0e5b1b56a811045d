"""The local-VAD barge-in and the held interruption (voicecli/voice/interrupt.py): the decision
logic with a fake clock, and its glue with a fake session and detector."""

from __future__ import annotations

import asyncio

from voicecli.voice.interrupt import (AFTER_CUT_S, BARGE_IN, CLEAR, COMMIT, CONFIRM_S, FALSE_START, HOLD, HOLD_WAIT_S,
                                      MIN_TURN_MS, ONSET_S, RECOVER_S, RELEASE, SETTLE_S, Interruption,
                                      LocalInterrupts)


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_local_start_barges_in_once_and_the_server_confirms_it_into_a_hold():
    clock = Clock()
    logic = Interruption(clock)
    assert logic.local("start", busy=True) == [BARGE_IN]
    assert logic.local("start", busy=True) == []  # not twice
    clock.t += 0.2
    assert logic.server_started(busy=True) == [HOLD]  # confirmed: no second barge-in, the turn is held
    assert logic.server_started(busy=False) == []
    clock.t += 5
    assert logic.tick() == []  # held while the user speaks, however long
    assert logic.local("stop", busy=False, ms=7000) == [COMMIT]
    assert logic.end_ms == 7000 and logic.false_starts == 0


def test_a_pause_right_after_the_barge_in_does_not_end_the_held_turn():
    """"Stop, — wait a moment please": the canceller still swallows the voice after the first word."""
    clock = Clock()
    logic = Interruption(clock)
    assert logic.server_started(busy=True) == [BARGE_IN, HOLD]
    assert logic.local("start", busy=False, ms=100) == []
    clock.t += 0.6
    assert logic.local("stop", busy=False, ms=300) == []  # too soon after the barge-in
    assert logic.tick() == []
    clock.t += 0.2
    assert logic.local("start", busy=False, ms=900) == []  # the sentence goes on: one turn
    clock.t += SETTLE_S
    assert logic.tick() == []
    assert logic.local("stop", busy=False, ms=2100) == [COMMIT]
    assert logic.end_ms == 2100


def test_a_short_word_is_committed_once_the_canceller_has_settled():
    clock = Clock()
    logic = Interruption(clock)
    logic.local("start", busy=True, ms=100)
    logic.server_started(busy=True)
    clock.t += 0.7
    assert logic.local("stop", busy=False, ms=400) == []
    clock.t += SETTLE_S - 0.7 - 0.01
    assert logic.tick() == []
    clock.t += 0.02
    assert logic.tick() == [COMMIT]
    assert logic.tick() == []


def test_a_local_start_the_server_never_confirms_is_a_false_start_and_resumes_nothing():
    clock = Clock()
    logic = Interruption(clock)
    assert logic.local("start", busy=True) == [BARGE_IN]
    clock.t += CONFIRM_S - 0.01
    assert logic.tick() == []
    clock.t += 0.02
    assert logic.tick() == [FALSE_START]
    assert logic.tick() == []
    assert logic.local("stop", busy=False) == []  # nothing held: nothing committed
    assert logic.false_starts == 1


def test_a_server_first_start_stops_the_assistant_at_once_and_holds():
    clock = Clock()
    logic = Interruption(clock)
    assert logic.server_started(busy=True) == [BARGE_IN, HOLD]
    clock.t += 0.3
    assert logic.local("start", busy=True) == []  # the same speech: no second barge-in
    clock.t += HOLD_WAIT_S * 3
    assert logic.tick() == []  # the local VAD hears the user: held until it stops
    assert logic.local("stop", busy=False, ms=5000) == [COMMIT]


def test_a_server_start_the_local_vad_never_hears_was_echo_and_makes_no_turn():
    clock = Clock()
    logic = Interruption(clock)
    assert logic.server_started(busy=True) == [BARGE_IN, HOLD]
    clock.t += HOLD_WAIT_S - 0.01
    assert logic.tick() == []
    clock.t += 0.02
    assert logic.tick() == [CLEAR, RELEASE]  # no phantom turn of the echo
    assert logic.echo_starts == 1
    assert logic.local("stop", busy=False) == []


def test_the_servers_speech_right_after_a_barge_in_is_held_too():
    """The canceller swallowed the user's voice for a while: when the server hears it again the
    answer is already stopped, and the interruption is still one turn."""
    clock = Clock()
    logic = Interruption(clock)
    assert logic.server_started(busy=True) == [BARGE_IN, HOLD]
    clock.t += HOLD_WAIT_S
    assert logic.tick() == [CLEAR, RELEASE]
    clock.t += 0.2
    assert logic.server_started(busy=False) == [HOLD]
    assert logic.local("start", busy=False, ms=3000) == []
    clock.t += AFTER_CUT_S
    assert logic.local("stop", busy=False, ms=4500) == [COMMIT]
    assert logic.server_started(busy=False) == []  # long after: the server's own turn


def test_speech_while_the_assistant_is_quiet_is_the_servers_turn():
    logic = Interruption(Clock())
    assert logic.local("start", busy=False) == []
    assert logic.server_started(busy=False) == []
    assert logic.local("stop", busy=False) == []


def test_a_word_over_before_the_confirmation_is_left_to_the_server():
    logic = Interruption(Clock())
    assert logic.local("start", busy=True) == [BARGE_IN]
    assert logic.local("stop", busy=False) == []
    assert logic.server_started(busy=False) == []  # confirmed, nothing to hold: the server ends the turn


def test_the_server_ending_the_turn_first_releases_without_a_commit():
    logic = Interruption(Clock())
    logic.local("start", busy=True)
    assert logic.server_started(busy=True) == [HOLD]
    assert logic.server_stopped() == [RELEASE]
    assert logic.local("stop", busy=False) == []


class FakeVad:
    def __init__(self):
        self.queue: list[list] = []
        self.position_ms = 0
        self.resets = 0
        self.candidate_ms = None
        self.min_speech_ms = 64

    def feed(self, pcm):
        self.position_ms += len(pcm) // 48
        return self.queue.pop(0) if self.queue else []

    def reset(self):
        self.resets += 1


class FakeTurns:
    def __init__(self, busy: bool, playing_since: float | None = None):
        self.busy = busy
        self.playback = type("Playback", (), {"first_played": {"a": playing_since} if playing_since else {},
                                              "current_item": "a" if playing_since else None})()


class FakeSession:
    def __init__(self):
        self.calls: list = []

    async def commit(self):
        self.calls.append("commit")

    async def hold_turn(self, on):
        self.calls.append(("hold", on))


def test_the_glue_barges_in_holds_commits_and_restores_turn_detection():
    from voicecli.audio.vad import VadEvent

    async def main():
        clock, vad, session, cuts, ended = Clock(), FakeVad(), FakeSession(), [], []

        async def barge_in():
            cuts.append(clock.t)

        li = LocalInterrupts(None, session, barge_in, lambda end, decided: ended.append((end, decided)),
                             clock=clock, vad=vad)
        vad.queue = [[VadEvent("start", 40)]]
        await li.audio(b"\0" * 960, FakeTurns(True))
        # the first block: the server's own interruptions off (the local VAD makes them)
        assert cuts == [clock.t] and session.calls == [("hold", False)]
        session.calls.clear()
        await li.server_started(busy=True)
        assert cuts == [clock.t] and session.calls == [("hold", True)]
        vad.queue = [[VadEvent("stop", 900)]]
        await li.audio(b"\0" * 960, FakeTurns(False))
        assert session.calls == [("hold", True)]  # the canceller may still be swallowing the voice
        clock.t += SETTLE_S
        await li.tick()
        assert session.calls == [("hold", True), "commit", ("hold", False)]
        assert ended == [(900, 40)]
        li.reset()
        assert vad.resets == 1 and li.logic.pending is None and li.logic.held is None

    asyncio.run(main())


def test_the_turn_detection_update_leaves_interruptions_to_the_client():
    from voicecli.profiles import VoiceSettings
    from voicecli.wire.realtime import turn_detection_update

    voice = VoiceSettings(vad_silence_duration_ms=700)
    on = turn_detection_update(voice, True)["session"]
    assert on["type"] == "realtime"
    assert on["audio"]["input"]["turn_detection"] == {"type": "server_vad", "silence_duration_ms": 700,
                                                      "interrupt_response": False}
    assert turn_detection_update(voice, False)["session"]["audio"]["input"]["turn_detection"] is None


def test_barge_in_ms_is_validated_like_the_other_voice_settings():
    import pytest

    from voicecli import profiles
    from voicecli.errors import VoicecliError

    prof = profiles.load("offline")
    assert prof.voice.barge_in_ms == 64
    profiles.apply_setting(prof, "voice.barge_in_ms", "96")
    assert prof.voice.barge_in_ms == 96
    for bad in ("-1", "5000", "soon"):
        with pytest.raises(VoicecliError):
            profiles.apply_setting(prof, "voice.barge_in_ms", bad)


def test_a_click_of_echo_after_a_double_talk_makes_no_turn():
    clock = Clock()
    logic = Interruption(clock)
    assert logic.local("start", busy=True, ms=5000) == [BARGE_IN]
    assert logic.server_started(busy=True) == [HOLD]
    assert logic.local("stop", busy=False, ms=5000 + MIN_TURN_MS - 32) == []
    clock.t += SETTLE_S
    assert logic.tick() == [CLEAR, RELEASE]
    assert logic.echo_starts == 1
    # the next interruption counts from its own start
    assert logic.local("start", busy=True, ms=9000) == [BARGE_IN]
    assert logic.server_started(busy=True) == [HOLD]
    clock.t += SETTLE_S
    assert logic.local("stop", busy=False, ms=9000 + MIN_TURN_MS) == [COMMIT]


def test_while_the_canceller_may_leak_the_server_alone_stops_nothing():
    """Early in an answer, or soon after a barge-in, a server start is held without a cut: the
    assistant is stopped only if the local VAD hears a voice; none, and it was echo."""
    clock = Clock()
    logic = Interruption(clock)
    assert logic.careful(playing_since=clock.t - ONSET_S / 2)
    assert not logic.careful(playing_since=clock.t - ONSET_S)
    assert logic.server_started(busy=True, careful=True) == [HOLD]
    clock.t += HOLD_WAIT_S
    assert logic.tick() == [CLEAR, RELEASE]  # the answer went on
    assert logic.server_started(busy=True, careful=True) == [HOLD]
    assert logic.local("start", busy=True, ms=100) == [BARGE_IN]  # a voice: stopped now
    assert logic.careful(playing_since=None)  # and careful for a while after
    clock.t += RECOVER_S
    assert not logic.careful(playing_since=None)


def test_the_glue_asks_for_more_voice_while_the_canceller_may_leak():
    import time as _time

    async def main():
        vad, session = FakeVad(), FakeSession()

        async def barge_in():
            pass

        li = LocalInterrupts(None, session, barge_in, lambda *a: None, vad=vad)
        await li.audio(b"\0" * 960, FakeTurns(True, playing_since=_time.monotonic()))
        assert vad.min_speech_ms == MIN_TURN_MS
        await li.audio(b"\0" * 960, FakeTurns(True, playing_since=_time.monotonic() - 2 * ONSET_S))
        assert vad.min_speech_ms == 64

    asyncio.run(main())
