"""`CascadeSession`'s turn logic with stand-in stages (no network, no VAD model): what it does when
the user goes on speaking, when a tool is called, when text-to-speech breaks. The real stages are
tested end to end in test_talk_cascade.py."""

from __future__ import annotations

import asyncio
import types

from voicecli.conversation import Conversation
from collections import Counter

from voicecli.audio.vad import VadEvent
from voicecli.events import (AudioDelta, ResponseStarted, SpeechStarted, SpeechStopped, TextDelta, ToolCall, ToolResult,
                             Transcript, TurnEnd, Usage)
from voicecli.items import FunctionOutput
from voicecli.profiles import Profile
from voicecli.voice.cascade import CascadeSession, end_silence


class Transport:
    name, base_url, bytes_sent = "chat", "http://model", 0

    def __init__(self, *rounds):
        self.rounds, self.requests = list(rounds), []

    async def stream(self, request, anchor=None):
        self.requests.append(request)
        for event in self.rounds.pop(0):
            yield event

    async def aclose(self):
        pass


class SpeechToText:
    def __init__(self, *texts, delay=0.0):
        self.texts, self.delay = list(texts), delay

    async def transcribe(self, wav, **kw):
        await asyncio.sleep(self.delay)
        yield Transcript("user", self.texts.pop(0), final=True)


class TextToSpeech:
    def __init__(self, fail: Exception | None = None):
        self.asked, self.fail = [], fail

    async def speak(self, text, **kw):
        self.asked.append(text)
        if self.fail is not None:
            raise self.fail
        yield b"\x01\x00" * 2400


def session(*rounds, stt=(), stt_delay=0.0, tts=None, tool_runner=None):
    profile = Profile("t", "builtin", None)
    profile.voice.turn_detection = "none"  # push-to-talk: utterances are queued by hand here
    conversation = Conversation(profile, None)
    s = CascadeSession(profile, conversation, tool_runner=tool_runner)
    conversation.transport = Transport(*rounds)
    s.stt, s.tts = SpeechToText(*stt, delay=stt_delay), tts or TextToSpeech()
    s._jobs.spawn(s._work(), "cascade")
    return s, conversation


async def events_until(s, predicate, timeout=5.0):
    out = []

    async def read():
        async for event in s.events():
            out.append(event)
            if predicate(event, out):
                return

    await asyncio.wait_for(read(), timeout)
    return out


def test_an_utterance_said_while_the_previous_one_is_transcribed_joins_it():
    async def main():
        s, conv = session([TextDelta("Sunny."), TurnEnd("completed", "r1")],
                          stt=("What is the weather", "in Paris"), stt_delay=0.3)
        s._segmenter = types.SimpleNamespace(vad=types.SimpleNamespace(speaking=False))
        s._queue_audio(b"\0" * 4800)  # the first part ends
        await asyncio.sleep(0.1)
        s._queue_audio(b"\0" * 4800)  # the second part starts and ends while the first is transcribed
        out = await events_until(s, lambda e, _: isinstance(e, TurnEnd))
        await s.aclose()
        said = [e.text for e in out if isinstance(e, Transcript) and e.final]
        assert said == ["What is the weather in Paris"]
        assert conv.transport.requests[0].items[-1].text == "What is the weather in Paris"

    asyncio.run(main())


def test_what_is_said_before_a_tool_call_is_spoken_while_the_tool_runs():
    order = []

    async def runner(calls):
        order.append("tool starts")
        await asyncio.sleep(0.2)
        order.append("tool ends")
        return [FunctionOutput(c.call_id, "sunny", c.name) for c in calls]

    async def main():
        s, _ = session([TextDelta("Let me check the weather."), ToolCall("c1", "weather", "{}"),
                        TurnEnd("completed", "r1")],
                       [TextDelta("It is sunny."), TurnEnd("completed", "r2")], tool_runner=runner)
        await s.say("weather?")

        def seen(event, _):
            if isinstance(event, AudioDelta) and event.pcm:
                order.append(f"spoken: {event.spoken}")
            return isinstance(event, TurnEnd)

        out = await events_until(s, seen)
        await s.aclose()
        assert order.index("spoken: Let me check the weather.") < order.index("tool ends")
        items = [e.item_id for e in out if isinstance(e, TextDelta)]
        assert len(set(items)) == 2  # the follow-up answer is a message of its own
        assert any(isinstance(e, ToolResult) for e in out)

    asyncio.run(main())


def test_a_broken_text_to_speech_ends_the_session_instead_of_skipping_the_sentence():
    async def main():
        s, _ = session([TextDelta("Hello there."), TurnEnd("completed", "r1")],
                       tts=TextToSpeech(fail=RuntimeError("decoder exploded")))
        await s.say("hi")
        try:
            await events_until(s, lambda e, _: False)
        except Exception as exc:  # events() raises why the session ended
            assert "decoder exploded" in str(exc)
        else:
            raise AssertionError("the session went on")
        finally:
            await s.aclose()

    asyncio.run(main())


class Segmenter:
    """Stands in for the VAD: `feed` hands out the next scripted events."""

    def __init__(self):
        self.required, self.script = [], []
        self.vad = types.SimpleNamespace(speaking=True, silence_ms=500, require=self.required.append, position_ms=0)

    def feed(self, pcm):
        return self.script.pop(0) if self.script else []

    def peek(self):
        return types.SimpleNamespace(pcm=b"\0" * 4800)

    def take(self):
        return None


async def vad(s, *events):
    s._segmenter.script.append(list(events))
    await s.append_audio(b"\0" * 960)


async def until(condition, timeout=5.0):
    """Wait for `condition()` (checked each loop turn) with a deadline."""
    async def poll():
        while not condition():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


def voice_session(*rounds, stt=(), tool_runner=None):
    s, conversation = session(*rounds, stt=stt, tool_runner=tool_runner)
    s.ptt, s._segmenter = False, Segmenter()
    return s, conversation


def test_a_preemptive_answer_is_discarded_when_the_user_goes_on_and_kept_when_the_turn_ends():
    async def main():
        s, conv = voice_session([TextDelta("Paris is the capital."), Usage(5, 3), TurnEnd("completed", "r1")],
                                [TextDelta("It is the Seine."), Usage(9, 4), TurnEnd("completed", "r2")],
                                stt=("What is the capital", "What is the capital of France and its river?"))
        await vad(s, VadEvent("start", 0))
        await vad(s, VadEvent("pause", 900))  # answered (and spoken to the stand-in) while the silence runs
        pre = s._pre
        await until(pre.task.done)
        # held at the longest until the words came (a slow transcript must not let 500 ms cut the user
        # off mid-clause), then "…the capital": the usual turn-end silence
        assert s._segmenter.required == [1200, 500]
        assert [m.text for m in conv.history] == ["What is the capital", "Paris is the capital."]  # tentative
        await vad(s, VadEvent("resume", 1200))  # the user goes on
        assert conv.history == [] and s.discarded == 1
        assert s.wasted == Counter({"speech-to-text": 1, "text model": 1, "text-to-speech": 1})
        assert (s.wasted_usage.input_tokens, s.wasted_usage.output_tokens) == (5, 3)  # billed, counted once
        await vad(s, VadEvent("pause", 2000))
        await until(s._pre.task.done)
        assert s._segmenter.required[-1] == 250  # a finished sentence: voice.eager_end_ms
        await vad(s, VadEvent("stop", 2000))
        out = await events_until(s, lambda e, _: isinstance(e, TurnEnd))
        await s.aclose()
        assert [type(e) for e in out[:4]] == [SpeechStarted, SpeechStopped, Transcript, ResponseStarted]
        assert out[2].text == "What is the capital of France and its river?" and out[2].final
        assert "Paris" not in repr(out)  # nothing of the discarded answer reached the front end
        assert [e.input_tokens for e in out if isinstance(e, Usage)] == [9]
        assert [m.text for m in conv.history] == ["What is the capital of France and its river?", "It is the Seine."]
        assert s.tts.asked == ["Paris is the capital.", "It is the Seine."]

    asyncio.run(main())


def test_a_preemptive_answer_runs_no_tool_before_the_turn_has_ended():
    order = []

    async def runner(calls):
        order.append("tool")
        return [FunctionOutput(c.call_id, "sunny", c.name) for c in calls]

    async def main():
        s, conv = voice_session([ToolCall("c1", "weather", "{}"), TurnEnd("completed", "r1")],
                                [TextDelta("Sunny."), TurnEnd("completed", "r2")], stt=("Weather?",),
                                tool_runner=runner)
        await vad(s, VadEvent("start", 0))
        await vad(s, VadEvent("pause", 900))
        pre = s._pre
        await until(lambda: any(isinstance(e, ToolCall) for e in pre.outbox.held or []))
        for _ in range(50):  # loop turns enough for the call to reach the runner, were it not held back
            await asyncio.sleep(0)
        assert order == [] and len(conv.transport.requests) == 1
        order.append("stop")
        await vad(s, VadEvent("stop", 900))
        await events_until(s, lambda e, out: isinstance(e, TurnEnd) and e.response_id.endswith("_1")
                           and any(isinstance(x, TextDelta) for x in out))
        await s.aclose()
        assert order == ["stop", "tool"]

    asyncio.run(main())


def test_the_turn_end_silence_follows_the_words_so_far():
    assert end_silence("What is the capital of France?", 500, 250, 1200) == 250
    assert end_silence("Tell me about Paris.", 500, 250, 1200) == 250
    assert end_silence("I want to go to Paris and", 500, 250, 1200) == 1200
    assert end_silence("First, the trains,", 500, 250, 1200) == 1200
    assert end_silence("Tell me about the", 500, 250, 1200) == 1200
    assert end_silence("Tell me about Paris", 500, 250, 1200) == 500
    assert end_silence("Okay.", 200, 250, 1200) == 200  # never longer than the setting after a full stop


def test_a_line_typed_during_a_pause_replaces_the_preemptive_answer():
    async def main():
        s, conv = voice_session([TextDelta("Paris is the capital."), TurnEnd("completed", "r1")],
                                [TextDelta("Typed answer."), TurnEnd("completed", "r2")], stt=("What is the capital",))
        await vad(s, VadEvent("start", 0))
        await vad(s, VadEvent("pause", 900))
        await until(s._pre.task.done)
        await s.say("a typed line")
        out = await events_until(s, lambda e, _: isinstance(e, TurnEnd))
        await s.aclose()
        assert "Paris" not in repr(out) and s.discarded == 1
        assert [m.text for m in conv.history] == ["a typed line", "Typed answer."]

    asyncio.run(main())
