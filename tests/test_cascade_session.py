"""`CascadeSession`'s turn logic with stand-in stages (no network, no VAD model): what it does when
the user goes on speaking, when a tool is called, when text-to-speech breaks. The real stages are
tested end to end in test_talk_cascade.py."""

from __future__ import annotations

import asyncio
import types

from voicecli.conversation import Conversation
from voicecli.events import AudioDelta, TextDelta, ToolCall, ToolResult, Transcript, TurnEnd
from voicecli.items import FunctionOutput
from voicecli.profiles import Profile
from voicecli.voice.cascade import CascadeSession


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
